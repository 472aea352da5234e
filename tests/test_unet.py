"""The U-Net builder."""

import numpy as np
import pytest

from keras_focal.models import unet


def _trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_ronneberger_layout_at_224():
    model = unet((224, 224, 1), 2)
    assert tuple(model.get_layer("encoder4_relu2").output.shape[1:]) == (14, 14, 1024)
    assert tuple(model.get_layer("decoder3_upconv").output.shape[1:]) == (28, 28, 512)
    assert tuple(model.get_layer("decoder3_concat").output.shape[1:]) == (28, 28, 1024)
    assert not [layer.name for layer in model.layers if layer.name.endswith("_pad")]
    # Table 3 of the stability paper less its one-class 1x1 layer (65), plus ours (130).
    assert _trainable(model) == 31_042_369 - 65 + 130


@pytest.mark.parametrize(
    "size, pads",
    [
        ((28, 28), {"decoder3_pad": ((0, 1), (0, 1)), "decoder2_pad": ((0, 1), (0, 1))}),
        # 30 -> 15 -> 7 -> 3 -> 1 and 17 -> 8 -> 4 -> 2 -> 1.
        (
            (30, 17),
            {
                "decoder3_pad": ((0, 1), (0, 0)),
                "decoder2_pad": ((0, 1), (0, 0)),
                "decoder1_pad": ((0, 1), (0, 0)),
                "decoder0_pad": ((0, 0), (0, 1)),
            },
        ),
    ],
)
def test_odd_sizes_are_padded_back_like_pytorch(size, pads):
    model = unet((*size, 1), 2, base_filters=4)
    found = {layer.name: layer.padding for layer in model.layers if layer.name.endswith("_pad")}
    assert found == pads
    assert model.output.shape == (None, *size, 2)


@pytest.mark.parametrize("depth, base_filters", [(1, 4), (2, 8), (5, 2)])
def test_depth_and_width(depth, base_filters):
    model = unet((64, 64, 1), 3, depth=depth, base_filters=base_filters, batch_norm=False)
    deepest = model.get_layer(f"encoder{depth}_relu2").output
    assert tuple(deepest.shape[1:]) == (64 >> depth, 64 >> depth, base_filters * 2**depth)
    assert not [layer for layer in model.layers if "_bn" in layer.name]
    assert tuple(model.get_layer("encoder0_conv1").kernel.shape) == (3, 3, 1, base_filters)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_shape": (15, 64, 1)}, r"too small: height and width must be at least 16 \(2\*\*depth for depth=4"),
        ({"input_shape": (8, 8, 1), "depth": 3}, None),
        ({"depth": 0}, r"`depth` must be a positive integer"),
        ({"base_filters": 2.5}, r"`base_filters` must be a positive integer"),
    ],
)
def test_size_and_argument_checks(kwargs, message):
    if message is None:
        assert unet(num_classes=2, base_filters=2, **kwargs).output.shape == (None, 8, 8, 2)
        return
    with pytest.raises(ValueError, match=message):
        unet(**kwargs)
