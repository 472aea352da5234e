"""Intensity normalisation, resizing and slice selection."""

import numpy as np
import pytest

from keras_focal.data_prep.slicing import (
    check_labels,
    foreground_fractions,
    normalize_intensity,
    resize_image,
    resize_mask,
    select_slices,
)


def test_percentile_clipping_then_0_to_255():
    volume = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    volume[0, 0, 0] = 1e6  # one hot spot must not squeeze the contrast
    out = normalize_intensity(volume, (0.5, 99.5))
    lo, hi = np.percentile(volume, [0.5, 99.5])
    expected = np.rint((np.clip(volume, lo, hi) - lo) * 255 / (hi - lo)).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    assert out[5, 0, 0] == 127  # 500 between percentiles ~5 and ~995


def test_constant_volume_and_bad_percentiles():
    assert not normalize_intensity(np.full((2, 3, 3), 7.0)).any()
    with pytest.raises(ValueError, match=r"`percentiles` must satisfy 0 <= low < high <= 100"):
        normalize_intensity(np.zeros((2, 2)), (50, 50))


def test_mask_resize_is_nearest_and_aspect_padding_is_ignore():
    mask = np.zeros((40, 20), np.uint8)
    mask[10:30, 5:15] = 2
    stretched = resize_mask(mask, (32, 32))
    assert set(np.unique(stretched)) == {0, 2}
    padded = resize_mask(mask, (32, 32), keep_aspect=True)
    assert set(np.unique(padded)) == {0, 2, 255}
    assert (padded[:, :8] == 255).all() and (padded[:, -8:] == 255).all()


def test_image_resize_is_anti_aliased():
    stripes = np.zeros((64, 64), np.uint8)
    stripes[:, ::2] = 255  # a pattern above the new Nyquist limit
    small = resize_image(stripes, (16, 16))
    assert small.dtype == np.uint8 and abs(int(small.mean()) - 127) <= 2 and small.std() < 10
    assert resize_image(np.zeros((5, 7, 3), np.uint8), (8, 8)).shape == (8, 8, 3)


def test_slice_selection():
    masks = np.zeros((4, 10, 10), np.uint8)
    masks[1, :1, :1] = 1  # 1 %
    masks[2, :5, :] = 1  # 50 %
    masks[3] = 255
    masks[3, 0, 0] = 1  # 100 % of the labelled pixels
    np.testing.assert_allclose(foreground_fractions(masks), [0, 0.01, 0.5, 1.0])
    assert select_slices(masks, "all") == [0, 1, 2, 3]
    assert select_slices(masks, "foreground") == [1, 2, 3]
    assert select_slices(masks, "foreground", min_foreground=0.1) == [2, 3]
    with pytest.raises(ValueError, match=r"`mode` must be 'all' or 'foreground'"):
        select_slices(masks, "some")


def test_label_check_names_the_bad_labels():
    check_labels(np.array([[0, 1], [255, 1]]), 2)
    with pytest.raises(ValueError, match=r"mask holds labels \[2, 7\]; allowed are 0\.\.1 and 255 \(ignore\)"):
        check_labels(np.array([[0, 2], [7, 255]]), 2)


@pytest.mark.parametrize("height, width", [(512, 512), (192, 256), (100, 300), (16, 16)])
def test_restored_probabilities_are_scikit_image_bilinear_resizes_summing_to_one(height, width):
    from skimage.transform import resize

    from keras_focal.data_prep.slicing import restore_probabilities

    logits = np.random.default_rng(0).normal(size=(3, 32, 32, 3))
    probabilities = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    restored = restore_probabilities(probabilities, height, width)
    expected = resize(probabilities, (3, height, width, 3), order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    assert restored.shape == (3, height, width, 3)
    np.testing.assert_allclose(restored, expected, atol=1e-6)
    np.testing.assert_allclose(restored.sum(-1), 1.0, atol=1e-6)


def test_restoring_a_padded_slice_removes_the_padding():
    from keras_focal.data_prep.slicing import resize_image, restore_probabilities

    image = np.zeros((20, 12), np.uint8)
    image[:, :6] = 200  # left half bright
    padded = resize_image(image, (20, 20), keep_aspect=True)  # padding only, no resize
    probabilities = np.stack([padded == 0, padded != 0], axis=-1).astype(np.float32)[None]
    restored = restore_probabilities(probabilities, 20, 12, keep_aspect=True)
    np.testing.assert_array_equal(restored[0].argmax(-1), (image != 0).astype(int))


def test_labels_of_is_argmax_with_ties_to_the_lower_class():
    from keras_focal.data_prep.slicing import labels_of

    probabilities = np.random.default_rng(1).random((2, 5, 7, 4)).astype(np.float32)
    probabilities[0, 0, 0] = [0.25, 0.25, 0.25, 0.25]
    probabilities[0, 0, 1] = [0.1, 0.4, 0.4, 0.1]
    labels = labels_of(probabilities)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, probabilities.argmax(-1))
    assert labels[0, 0, 0] == 0 and labels[0, 0, 1] == 1
