"""count_each_label and the class-weight helpers."""

import numpy as np
import pytest

from keras_focal.class_weights import (
    count_each_label,
    inverse_frequency_weights,
    median_frequency_weights,
)


def test_counts_like_matlab_count_each_label():
    masks = np.array([[[0, 0], [0, 1]], [[0, 0], [0, 0]], [[2, 2], [255, 1]]])
    counts = count_each_label(masks, class_names=["bg", "prostate", "other"])
    assert counts.pixel_count.tolist() == [7, 2, 2]
    # ImagePixelCount: pixels of the images in which the class occurs (void included).
    assert counts.image_pixel_count.tolist() == [8, 8, 4]
    frame = counts.to_frame()
    assert frame.columns.tolist() == ["Name", "PixelCount", "ImagePixelCount"]
    assert frame["Name"].tolist() == ["bg", "prostate", "other"]


def test_streams_an_iterable_of_masks_of_different_sizes():
    masks = (np.full((h, h, 1), i % 2) for i, h in enumerate([2, 3, 4]))
    counts = count_each_label(masks, num_classes=3)
    assert counts.pixel_count.tolist() == [4 + 16, 9, 0]
    assert counts.image_pixel_count.tolist() == [20, 9, 0]


@pytest.mark.parametrize(
    "counts,expected",
    [
        ([300, 100], [0.25, 0.75]),
        ([1, 1, 1, 1], [0.25] * 4),
        ([900, 90, 10], [1 / 900 / (1 / 900 + 1 / 90 + 1 / 10), 1 / 90 / (1 / 900 + 1 / 90 + 1 / 10), 1 / 10 / (1 / 900 + 1 / 90 + 1 / 10)]),
    ],
)
def test_inverse_frequency_is_equation_5(counts, expected):
    weights = inverse_frequency_weights(counts)
    np.testing.assert_allclose(weights, expected, rtol=1e-12)
    assert weights.sum() == pytest.approx(1.0)


def test_inverse_frequency_absent_classes():
    with pytest.raises(ValueError, match=r"Classes \[1\] have no pixels"):
        inverse_frequency_weights([10, 0, 30])
    np.testing.assert_allclose(inverse_frequency_weights([10, 0, 30], absent="zero"), [0.75, 0.0, 0.25])
    with pytest.raises(ValueError, match=r"`pixel_count` entries must be finite and >= 0"):
        inverse_frequency_weights([10, -1])
    with pytest.raises(ValueError, match=r"`absent` must be 'error' or 'zero'"):
        inverse_frequency_weights([1, 2], absent="drop")


def test_median_frequency_weights():
    counts = count_each_label(np.array([[[0, 0], [0, 1]], [[0, 0], [0, 0]]]))
    # freq = [7/8, 1/4]; median = 0.5625
    np.testing.assert_allclose(median_frequency_weights(counts), [0.5625 / 0.875, 0.5625 / 0.25])
    with pytest.raises(ValueError, match=r"must have the same length"):
        median_frequency_weights([1, 2], [4])


def test_bad_label_maps():
    with pytest.raises(ValueError, match=r"labels \[3\] outside \[0, 3\) that are not ignore_label=255"):
        count_each_label(np.array([[0, 3]]), num_classes=3)
    with pytest.raises(ValueError, match=r"holds negative labels"):
        count_each_label(np.array([[0, -1]]))
    with pytest.raises(ValueError, match=r"holds no label maps"):
        count_each_label([])
    with pytest.raises(ValueError, match=r"must be 2-D"):
        count_each_label([np.zeros((2, 2, 2))])
