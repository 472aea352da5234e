"""The ResNet-18 feature extractor of DeepLabV3+."""

from __future__ import annotations

import keras
from keras import layers

from keras_focal.models._blocks import batch_norm, check_input_shape

OUTPUT_STRIDES = (None, 8, 16, 32)
STAGE_FILTERS = {"stage2": 64, "stage3": 128, "stage4": 256, "stage5": 512}


def _conv(x, filters, kernel_size, strides, dilation_rate, name: str):
    """A bias-free convolution padded like torchvision's (symmetric, `(k-1)/2 * d`)."""
    padding = "same"
    if strides > 1:
        x = layers.ZeroPadding2D((kernel_size - 1) // 2, name=f"{name}_pad")(x)
        padding = "valid"
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        dilation_rate=dilation_rate,
        use_bias=False,
        name=name,
    )(x)


def _basic_block(x, filters, strides, dilation_rate, name: str):
    shortcut = x
    if strides > 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False, name=f"{name}_downsample_conv")(x)
        shortcut = batch_norm(shortcut, f"{name}_downsample_bn")
    x = _conv(x, filters, 3, strides, dilation_rate, f"{name}_conv1")
    x = batch_norm(x, f"{name}_bn1")
    x = layers.ReLU(name=f"{name}_relu1")(x)
    x = _conv(x, filters, 3, 1, dilation_rate, f"{name}_conv2")
    x = batch_norm(x, f"{name}_bn2")
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    return layers.ReLU(name=f"{name}_out")(x)


def resnet18_backbone(
    input_shape: tuple[int | None, ...] = (224, 224, 3), output_stride: int | None = None, name: str = "resnet18",
) -> keras.Model:
    """ResNet-18 (He et al., 2016) as a feature extractor with named stage outputs.

    The layout is torchvision's `resnet18` without its pooling and fully
    connected layers: a 7x7/2 stem convolution with batch normalisation and
    ReLU, a 3x3/2 max pooling, and four stages of two basic blocks with 64,
    128, 256 and 512 filters; 11,176,512 trainable parameters. The stages
    are named as in MATLAB's `resnet18` (`res2` ... `res5`):

    | output   | stride (output_stride=None/32, 16, 8) | channels |
    |----------|---------------------------------------|----------|
    | `stage1` | 2, 2, 2                               | 64       |
    | `stage2` | 4, 4, 4                               | 64       |
    | `stage3` | 8, 8, 8                               | 128      |
    | `stage4` | 16, 16, 8                             | 256      |
    | `stage5` | 32, 16, 8                             | 512      |

    For an output stride of 16, stage 5 keeps stride 1 and its 3x3
    convolutions are dilated by 2; for 8, stages 4 and 5 are dilated by 2 and
    4 (DeepLab's atrous ResNet; MATLAB's `deeplabv3plusLayers` does the same).
    No ImageNet weights for ResNet-18 ship with Keras; load your own with
    `backbone.load_weights(path)`.

    Args:
        input_shape: `(height, width, channels)`, any channel count.
        output_stride: None or 32 (plain ResNet), 16 or 8.
        name: the model's name.

    Returns:
        A `keras.Model` whose output is a dict from stage name to feature map.

    Examples:
        >>> backbone = resnet18_backbone((64, 64, 3), output_stride=16)
        >>> {k: tuple(v.shape[1:]) for k, v in backbone.output.items()}["stage5"]
        (4, 4, 512)
    """
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(
            f"`output_stride` must be one of {OUTPUT_STRIDES}. Received: output_stride={output_stride!r}"
        )
    input_shape = check_input_shape(input_shape)
    # (strides, dilation) of stages 4 and 5.
    late_stages = {None: ((2, 1), (2, 1)), 32: ((2, 1), (2, 1)), 16: ((2, 1), (1, 2)), 8: ((1, 2), (1, 4))}
    schedule = {"stage2": (1, 1), "stage3": (2, 1)}
    schedule["stage4"], schedule["stage5"] = late_stages[output_stride]

    inputs = keras.Input(input_shape, name="image")
    x = _conv(inputs, 64, 7, 2, 1, "conv1")
    x = batch_norm(x, "conv1_bn")
    x = layers.ReLU(name="conv1_relu")(x)
    outputs = {"stage1": x}
    # Zero padding equals torchvision's -inf padding here: the input is >= 0.
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for stage, filters in STAGE_FILTERS.items():
        strides, dilation_rate = schedule[stage]
        x = _basic_block(x, filters, strides, dilation_rate, f"{stage}_block1")
        x = _basic_block(x, filters, 1, dilation_rate, f"{stage}_block2")
        outputs[stage] = x
    return keras.Model(inputs, outputs, name=name)
