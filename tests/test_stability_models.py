"""The stability paper's CNN (Table 2) and U-Net (Table 3), layer by layer."""

import numpy as np
import pytest

from keras_focal.models import stability_cnn, stability_unet
from tests.helpers import to_numpy


def _trainable(layers):
    return sum(int(np.prod(w.shape)) for layer in layers for w in layer.trainable_weights)


# Table 2: layer, output shape (channels last), parameters.
CNN_TABLE = [
    ("conv1", (24, 24, 6), 156),
    ("pool1", (12, 12, 6), 0),
    ("conv2", (8, 8, 16), 2_416),
    ("pool2", (4, 4, 16), 0),
    ("fc1", (120,), 30_840),
    ("fc2", (84,), 10_164),
    ("logits", (1,), 85),
]

# Table 3: torchinfo's rows (a "Sequential" is a pooling plus a double convolution).
UNET_TABLE = [
    (["encoder0_conv1"], (28, 28, 64), 640),
    (["encoder0_bn1"], (28, 28, 64), 128),
    (["encoder0_conv2"], (28, 28, 64), 36_928),
    (["encoder0_bn2"], (28, 28, 64), 128),
    (["encoder1_conv1", "encoder1_bn1", "encoder1_conv2", "encoder1_bn2"], (14, 14, 128), 221_952),
    (["encoder2_conv1", "encoder2_bn1", "encoder2_conv2", "encoder2_bn2"], (7, 7, 256), 886_272),
    (["encoder3_conv1", "encoder3_bn1", "encoder3_conv2", "encoder3_bn2"], (3, 3, 512), 3_542_016),
    (["encoder4_conv1", "encoder4_bn1", "encoder4_conv2", "encoder4_bn2"], (1, 1, 1024), 14_161_920),
    (["decoder3_upconv"], (2, 2, 512), 2_097_664),
    (["decoder3_conv1", "decoder3_bn1", "decoder3_conv2", "decoder3_bn2"], (3, 3, 512), 7_080_960),
    (["decoder2_upconv"], (6, 6, 256), 524_544),
    (["decoder2_conv1", "decoder2_bn1", "decoder2_conv2", "decoder2_bn2"], (7, 7, 256), 1_771_008),
    (["decoder1_upconv"], (14, 14, 128), 131_200),
    (["decoder1_conv1", "decoder1_bn1", "decoder1_conv2", "decoder1_bn2"], (14, 14, 128), 443_136),
    (["decoder0_upconv"], (28, 28, 64), 32_832),
    (["decoder0_conv1", "decoder0_bn1", "decoder0_conv2", "decoder0_bn2"], (28, 28, 64), 110_976),
    (["logits"], (28, 28, 1), 65),
]


@pytest.fixture(scope="module")
def cnn():
    return stability_cnn()


@pytest.fixture(scope="module")
def unet():
    return stability_unet()


@pytest.mark.parametrize("name, shape, params", CNN_TABLE)
def test_cnn_matches_table_2(cnn, name, shape, params):
    layer = cnn.get_layer(name)
    assert tuple(layer.output.shape[1:]) == shape
    assert _trainable([layer]) == params


def test_cnn_totals(cnn):
    assert _trainable(cnn.layers) == 43_661
    assert cnn.output.shape == (None, 1)


@pytest.mark.parametrize("names, shape, params", UNET_TABLE)
def test_unet_matches_table_3(unet, names, shape, params):
    layers = [unet.get_layer(name) for name in names]
    assert tuple(layers[-1].output.shape[1:]) == shape
    assert _trainable(layers) == params


def test_unet_totals(unet):
    assert _trainable(unet.layers) == 31_042_369
    assert unet.output.shape == (None, 28, 28, 1)
    # Keras lists the moving means and variances separately: 2 per trainable BN pair.
    batch_norm_channels = sum(layer.gamma.shape[0] for layer in unet.layers if "_bn" in layer.name)
    assert sum(int(np.prod(w.shape)) for w in unet.non_trainable_weights) == 2 * batch_norm_channels


@pytest.mark.parametrize("name, fan_in", [("fc1", 256), ("fc2", 120), ("conv2", 150)])
def test_cnn_starts_like_pytorch(cnn, name, fan_in):
    """PyTorch's default init: weights and biases uniform in +-1/sqrt(fan_in)."""
    layer = cnn.get_layer(name)
    kernel, bias = to_numpy(layer.kernel), to_numpy(layer.bias)
    bound = 1 / np.sqrt(fan_in)
    assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
    assert kernel.std() == pytest.approx(bound / np.sqrt(3), rel=0.1)


def test_unet_batch_norm_uses_pytorch_constants(unet):
    layer = unet.get_layer("decoder0_bn2")
    assert (layer.epsilon, layer.momentum) == (1e-5, 0.9)
    kernel = to_numpy(unet.get_layer("decoder3_upconv").kernel)  # fan-in 512 * 2 * 2 as in PyTorch
    assert np.abs(kernel).max() <= 1 / np.sqrt(2048)
