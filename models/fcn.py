"""FCN-8s on VGG19."""

from __future__ import annotations

import math
import os
from typing import Any

import keras
from keras import layers

from keras_focal.initializers import BilinearUpsampling
from keras_focal.models._blocks import (
    check_activation,
    check_input_shape,
    check_num_classes,
    resolve_acw_weights,
    segmentation_head,
)
from keras_focal.types import ArrayLike

ENCODER_STRIDE = 32
SKIP_TAPS = ("block3_pool", "block4_pool", "block5_pool")


def _check_encoder_weights(encoder_weights, channels):
    if encoder_weights is None:
        return channels
    if not isinstance(encoder_weights, str) or (
        encoder_weights != "imagenet" and not os.path.exists(encoder_weights)
    ):
        raise ValueError(
            "`encoder_weights` must be None, 'imagenet' or the path of an existing "
            f"VGG19 weights file. Received: encoder_weights={encoder_weights!r}"
        )
    if channels not in (1, 3):
        raise ValueError(
            f"Pretrained VGG19 weights need 3 input channels (1-channel images are "
            f"repeated to 3); got {channels} channels. Use encoder_weights=None."
        )
    return 3


def check_vgg19_fcn_arguments(
    input_shape: tuple[int | None, ...] = (224, 224, 3), num_classes: int = 2, acw_weights: ArrayLike | None = None, activation: str = "softmax", encoder_weights: str | None = None,
    fc_filters: int = 4096, dropout: float = 0.5,
) -> tuple[Any, ...]:
    """Raises ValueError for arguments `vgg19_fcn` refuses; returns them normalised and the encoder's channels."""
    num_classes = check_num_classes(num_classes)
    input_shape = check_input_shape(input_shape)
    activation = check_activation(activation)
    acw_weights = resolve_acw_weights(acw_weights, num_classes)
    if isinstance(fc_filters, bool) or not isinstance(fc_filters, int) or fc_filters < 1:
        raise ValueError(f"`fc_filters` must be a positive integer. Received: fc_filters={fc_filters!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
    encoder_channels = _check_encoder_weights(encoder_weights, input_shape[-1])
    return input_shape, num_classes, acw_weights, activation, encoder_channels


def vgg19_fcn(
    input_shape: tuple[int | None, ...] = (224, 224, 3),
    num_classes: int = 2,
    acw_weights: ArrayLike | None = None,
    activation: str = "softmax",
    encoder_weights: str | None = None,
    fc_filters: int = 4096,
    dropout: float = 0.5,
    name: str = "vgg19_fcn",
) -> keras.Model:
    """FCN-8s (Long et al., 2015) on the convolutional layers of VGG19.

    The encoder is `keras.applications.VGG19(include_top=False)`; its
    `block3_pool`, `block4_pool` and `block5_pool` outputs (strides 8, 16,
    32) feed the FCN-8s head:

    - `fc6` (7x7 convolution) and `fc7` (1x1), `fc_filters` each with ReLU
      and dropout, then the class scores `score_fr`;
    - `upscore2` (x2), plus `score_pool4`; `upscore_pool4` (x2), plus
      `score_pool3`; `upscore8` (x8). The upsampling layers are transposed
      convolutions initialised to bilinear interpolation (trainable, as in
      FCN), and the pool scores start at zero, so the untrained network is
      FCN-32s and the skips are learned, as Long et al. do;
    - head: `logits` -> `acw` (only when `acw_weights` is given) ->
      `probabilities`.

    Any input size works: the input is zero-padded to a multiple of 32
    (evenly around it) and the logits are cropped back, which replaces
    the original FCN's 100-pixel padding and crop offsets.

    With pretrained weights (`"imagenet"` or a file path), a 1-channel input
    is repeated to three channels by the layer `gray_to_rgb`; channel counts
    other than 1 and 3 raise a ValueError. The ImageNet weights expect
    `keras.applications.vgg19.preprocess_input` ("caffe") scaling; Keras
    downloads them on first use, so a machine without internet needs the
    file path instead.

    Args:
        input_shape: `(height, width, channels)`.
        num_classes: number of classes (1 for a single sigmoid output).
        acw_weights: None (no ACW layer), "ones", or one initial weight per class.
        activation: "softmax" (default), "sigmoid", or None for logits.
        encoder_weights: None (random), "imagenet", or a VGG19 weights file
            (`include_top=False` layout).
        fc_filters: filters of `fc6` and `fc7` (4096 in FCN; small values
            make a light network for tests).
        dropout: dropout rate after `fc6` and `fc7`.
        name: the model's name.

    Returns:
        A `keras.Model` from images to `(batch, height, width, num_classes)`.

    Examples:
        >>> model = vgg19_fcn((64, 64, 1), num_classes=2, fc_filters=64)
        >>> model.output.shape
        (None, 64, 64, 2)
    """
    shape, num_classes, acw_weights, activation, encoder_channels = check_vgg19_fcn_arguments(
        input_shape, num_classes, acw_weights, activation, encoder_weights, fc_filters, dropout
    )
    height, width, channels = shape

    inputs = keras.Input(shape, name="image")
    x = inputs
    if encoder_channels != channels:
        x = layers.Concatenate(name="gray_to_rgb")([x, x, x])
    padded = [ENCODER_STRIDE * math.ceil(size / ENCODER_STRIDE) for size in (height, width)]
    margins = [((p - s) // 2, p - s - (p - s) // 2) for p, s in zip(padded, (height, width))]
    if padded != [height, width]:
        x = layers.ZeroPadding2D(tuple(margins), name="pad_to_stride")(x)

    vgg = keras.applications.VGG19(
        include_top=False, weights=encoder_weights, input_shape=(*padded, encoder_channels)
    )
    encoder = keras.Model(vgg.inputs, [vgg.get_layer(tap).output for tap in SKIP_TAPS], name="vgg19")
    pool3, pool4, pool5 = encoder(x)

    x = layers.Conv2D(fc_filters, 7, padding="same", activation="relu", name="fc6")(pool5)
    x = layers.Dropout(dropout, name="drop6")(x)
    x = layers.Conv2D(fc_filters, 1, activation="relu", name="fc7")(x)
    x = layers.Dropout(dropout, name="drop7")(x)
    x = layers.Conv2D(num_classes, 1, name="score_fr")(x)

    def upsample(tensor, factor, layer_name):
        return layers.Conv2DTranspose(
            num_classes,
            2 * factor,
            strides=factor,
            padding="same",
            use_bias=False,
            kernel_initializer=BilinearUpsampling(),
            name=layer_name,
        )(tensor)

    x = upsample(x, 2, "upscore2")
    x = layers.Add(name="fuse_pool4")([x, layers.Conv2D(num_classes, 1, kernel_initializer="zeros", name="score_pool4")(pool4)])
    x = upsample(x, 2, "upscore_pool4")
    x = layers.Add(name="fuse_pool3")([x, layers.Conv2D(num_classes, 1, kernel_initializer="zeros", name="score_pool3")(pool3)])
    x = upsample(x, 8, "upscore8")
    logits = layers.Cropping2D(tuple(margins), name="logits", dtype="float32")(x)
    outputs = segmentation_head(logits, num_classes, acw_weights, activation)
    return keras.Model(inputs, outputs, name=name)
