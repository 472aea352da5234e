"""DeepLabV3+ with a ResNet-18 backbone."""

from __future__ import annotations

import os
from typing import Any

import keras
from keras import layers

from keras_focal.models._blocks import (
    check_activation,
    check_input_shape,
    check_num_classes,
    conv_bn_relu,
    crop_to,
    resolve_acw_weights,
    segmentation_head,
    spatial_size,
)
from keras_focal.models.resnet import resnet18_backbone
from keras_focal.types import ArrayLike

ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}
ASPP_FILTERS = 256
LOW_LEVEL_FILTERS = 48


def check_deeplabv3_plus_arguments(
    input_shape: tuple[int | None, ...] = (224, 224, 3), num_classes: int = 2, output_stride: int = 16, acw_weights: ArrayLike | None = None, activation: str = "softmax",
    image_pooling: bool = False, encoder_weights: str | None = None,
) -> tuple[Any, ...]:
    """Raises ValueError for arguments `deeplabv3_plus` refuses; returns them normalised (without building)."""
    num_classes = check_num_classes(num_classes)
    input_shape = check_input_shape(input_shape)
    activation = check_activation(activation)
    acw_weights = resolve_acw_weights(acw_weights, num_classes)
    if output_stride not in ASPP_RATES:
        raise ValueError(
            f"`output_stride` must be one of {tuple(ASPP_RATES)} for DeepLabV3+. "
            f"Received: output_stride={output_stride!r}"
        )
    if encoder_weights is not None and not (isinstance(encoder_weights, str) and os.path.isfile(encoder_weights)):
        raise ValueError(
            "`encoder_weights` must be None or the path of an existing ResNet-18 "
            "`.weights.h5` file (Keras ships no ImageNet ResNet-18). "
            f"Received: encoder_weights={encoder_weights!r}"
        )
    return input_shape, num_classes, acw_weights, activation


def deeplabv3_plus(
    input_shape: tuple[int | None, ...] = (224, 224, 3),
    num_classes: int = 2,
    output_stride: int = 16,
    acw_weights: ArrayLike | None = None,
    activation: str = "softmax",
    image_pooling: bool = False,
    encoder_weights: str | None = None,
    name: str = "deeplabv3_plus",
) -> keras.Model:
    """DeepLabV3+ (Chen et al., 2018) on ResNet-18, as MATLAB builds it.

    Follows MATLAB's `deeplabv3plusLayers(imageSize, numClasses, "resnet18")`,
    the network of the ADFL paper:

    - encoder: `resnet18_backbone` at output stride 16 (stage 5 dilated by
      2) or 8 (stages 4 and 5 dilated by 2 and 4);
    - ASPP on the 512-channel stage-5 output: a 1x1 convolution and three
      3x3 convolutions dilated by 6, 12 and 18 (doubled at output stride 8,
      as in the DeepLab papers), 256 filters each with batch normalisation
      and ReLU, concatenated and projected to 256 by a 1x1 convolution.
      MATLAB has no image-pooling branch; `image_pooling=True` adds
      DeepLabV3's global-average-pooling branch;
    - decoder: bilinear upsampling of the ASPP output to stride 4, stage-2
      features (64 channels) through a 1x1 convolution of 48 filters,
      concatenation, two 3x3 convolutions of 256 filters, the 1x1 classifier
      and bilinear upsampling by 4 to the input size;
    - head: `logits` -> `acw` (only when `acw_weights` is given) ->
      `probabilities` (softmax, or sigmoid when `num_classes == 1`).

    Any input size works: strided layers round sizes up, and the upsampled
    maps are cropped at the bottom/right to the size they join.

    Args:
        input_shape: `(height, width, channels)`, any channel count.
        num_classes: number of classes (1 for a single sigmoid output).
        output_stride: 16 (default, as MATLAB) or 8.
        acw_weights: None (no ACW layer), "ones", or one initial weight per
            class, e.g. `inverse_frequency_weights(counts)` (ADFL).
        activation: "softmax" (default), "sigmoid", or None to output the
            logits (or ACW-scaled logits) for `from_logits=True` losses.
        image_pooling: add the image-level ASPP branch (not in MATLAB).
        encoder_weights: None, or the path of a `.weights.h5` file saved from
            `resnet18_backbone(input_shape, output_stride)`. Keras ships no
            ImageNet ResNet-18, so there is no "imagenet" option.
        name: the model's name.

    Returns:
        A `keras.Model` from images to per-pixel class scores of shape
        `(batch, height, width, num_classes)`.

    Examples:
        >>> model = deeplabv3_plus((64, 64, 3), num_classes=3, acw_weights="ones")
        >>> model.output.shape
        (None, 64, 64, 3)
    """
    input_shape, num_classes, acw_weights, activation = check_deeplabv3_plus_arguments(
        input_shape, num_classes, output_stride, acw_weights, activation, image_pooling, encoder_weights
    )

    inputs = keras.Input(input_shape, name="image")
    backbone = resnet18_backbone(input_shape, output_stride=output_stride)
    if encoder_weights is not None:
        backbone.load_weights(encoder_weights)
    features = backbone(inputs)

    x = features["stage5"]
    branches = [conv_bn_relu(x, ASPP_FILTERS, 1, "aspp_1x1")]
    for rate in ASPP_RATES[output_stride]:
        branches.append(conv_bn_relu(x, ASPP_FILTERS, 3, f"aspp_3x3_rate{rate}", dilation_rate=rate))
    if image_pooling:
        pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_pool")(x)
        pooled = conv_bn_relu(pooled, ASPP_FILTERS, 1, "aspp_pool_1x1")
        branches.append(layers.UpSampling2D(spatial_size(x), name="aspp_pool_broadcast")(pooled))
    x = layers.Concatenate(name="aspp_concat")(branches)
    x = conv_bn_relu(x, ASPP_FILTERS, 1, "aspp_projection")

    low_level = features["stage2"]
    x = layers.UpSampling2D(output_stride // 4, interpolation="bilinear", name="decoder_upsample")(x)
    x = crop_to(x, spatial_size(low_level), "decoder_crop")
    low_level = conv_bn_relu(low_level, LOW_LEVEL_FILTERS, 1, "decoder_low_level")
    x = layers.Concatenate(name="decoder_concat")([x, low_level])
    x = conv_bn_relu(x, ASPP_FILTERS, 3, "decoder_conv1")
    x = conv_bn_relu(x, ASPP_FILTERS, 3, "decoder_conv2")
    x = layers.Conv2D(num_classes, 1, name="classifier")(x)
    x = layers.UpSampling2D(4, interpolation="bilinear", name="classifier_upsample")(x)
    logits = crop_to(x, input_shape[:2], "logits", dtype="float32")
    outputs = segmentation_head(logits, num_classes, acw_weights, activation)
    return keras.Model(inputs, outputs, name=name)
