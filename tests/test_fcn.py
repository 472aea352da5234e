"""FCN-8s on VGG19."""

import keras
import numpy as np
import pytest

from keras_focal.initializers import BilinearUpsampling
from keras_focal.models import vgg19_fcn
from tests.helpers import to_numpy


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_fcn8s_layout_at_224():
    model = vgg19_fcn((224, 224, 3), 11, fc_filters=4096)
    shapes = {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers if layer.name != "vgg19"}
    assert shapes["fc6"] == (7, 7, 4096) and shapes["fc7"] == (7, 7, 4096)
    assert shapes["upscore2"] == shapes["fuse_pool4"] == (14, 14, 11)
    assert shapes["upscore_pool4"] == shapes["fuse_pool3"] == (28, 28, 11)
    assert shapes["upscore8"] == shapes["logits"] == (224, 224, 11)
    assert "pad_to_stride" not in shapes and "gray_to_rgb" not in shapes
    vgg19_conv = 20_024_384  # keras.applications.VGG19(include_top=False)
    fc = (49 * 512 * 4096 + 4096) + (4096 * 4096 + 4096)
    scores = (4096 * 11 + 11) + (512 * 11 + 11) + (256 * 11 + 11)
    upsampling = (4 * 4 + 4 * 4 + 16 * 16) * 11 * 11
    assert _trainable(model) == vgg19_conv + fc + scores + upsampling


def test_untrained_network_is_fcn32s_with_bilinear_upsampling():
    """Zero pool scores: the untrained logits are score_fr upsampled x2, x2, x8."""
    model = vgg19_fcn((64, 64, 3), 2, fc_filters=8, dropout=0.0)
    for name, size in (("upscore2", 4), ("upscore_pool4", 4), ("upscore8", 16)):
        np.testing.assert_array_equal(to_numpy(model.get_layer(name).kernel), to_numpy(BilinearUpsampling()((size, size, 2, 2))))
    images = np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)
    probe = keras.Model(model.input, [model.get_layer("score_fr").output, model.get_layer("logits").output])
    coarse, logits = probe(images, training=False)
    upsampled = coarse
    for name in ("upscore2", "upscore_pool4", "upscore8"):
        upsampled = model.get_layer(name)(upsampled)
    np.testing.assert_allclose(to_numpy(logits), to_numpy(upsampled), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("size, margins", [((100, 70), ((14, 14), (13, 13))), ((33, 64), ((15, 16), (0, 0)))])
def test_input_is_padded_to_the_stride_and_cropped_back(size, margins):
    model = vgg19_fcn((*size, 1), 2, fc_filters=8)
    assert model.get_layer("pad_to_stride").padding == margins
    assert model.get_layer("logits").cropping == margins
    assert model.output.shape == (None, *size, 2)


def test_pretrained_weights_from_a_file_repeat_a_gray_channel(tmp_path):
    vgg = keras.applications.VGG19(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = str(tmp_path / "vgg19_notop.weights.h5")
    vgg.save_weights(path)
    model = vgg19_fcn((32, 32, 1), 2, encoder_weights=path, fc_filters=8)
    assert model.get_layer("gray_to_rgb").output.shape == (None, 32, 32, 3)
    for ours, theirs in zip(model.get_layer("vgg19").weights, vgg.weights):
        np.testing.assert_array_equal(to_numpy(ours), to_numpy(theirs))
    images = np.random.default_rng(0).random((1, 32, 32, 1), dtype=np.float32)
    assert np.isfinite(to_numpy(model(images))).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"encoder_weights": "imagenet", "input_shape": (32, 32, 4)}, r"Pretrained VGG19 weights need 3 input channels"),
        ({"encoder_weights": "no/such/file.h5"}, r"`encoder_weights` must be None, 'imagenet' or the path"),
        ({"fc_filters": 0}, r"`fc_filters` must be a positive integer"),
        ({"dropout": 1.0}, r"`dropout` must be in \[0, 1\)"),
    ],
)
def test_bad_arguments(kwargs, message):
    kwargs = {"input_shape": (32, 32, 3), **kwargs}
    with pytest.raises(ValueError, match=message):
        vgg19_fcn(**kwargs)
