"""Ronneberger's U-Net."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers

from keras_focal.models._blocks import (
    batch_norm,
    check_activation,
    check_input_shape,
    check_num_classes,
    pad_to,
    resolve_acw_weights,
    segmentation_head,
    spatial_size,
)
from keras_focal.types import ArrayLike, TensorLike


def keras_default_initializers(fan_in: int) -> dict:
    """Keras's own initialisers (Glorot uniform, zero bias; MATLAB's defaults too)."""
    return {}


def _double_conv(x, filters, use_batch_norm, initializers, name: str):
    for index in (1, 2):
        fan_in = 9 * int(x.shape[-1])
        x = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv{index}", **initializers(fan_in))(x)
        if use_batch_norm:
            x = batch_norm(x, f"{name}_bn{index}")
        x = layers.ReLU(name=f"{name}_relu{index}")(x)
    return x


def unet_logits(
    inputs: TensorLike, num_classes: int, depth: int, base_filters: int, use_batch_norm: bool,
    initializers: Callable[[int], dict],
) -> TensorLike:
    """The U-Net graph up to the full-resolution `logits` layer."""
    x = _double_conv(inputs, base_filters, use_batch_norm, initializers, "encoder0")
    skips = []
    for level in range(1, depth + 1):
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"encoder{level}_pool")(x)
        x = _double_conv(x, base_filters * 2**level, use_batch_norm, initializers, f"encoder{level}")
    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        skip = skips[level]
        x = layers.Conv2DTranspose(
            filters, 2, strides=2, name=f"decoder{level}_upconv", **initializers(filters * 4)
        )(x)
        # Pooling rounds odd sizes down (7 -> 3); pad the upsampled map back (6 -> 7).
        x = pad_to(x, spatial_size(skip), f"decoder{level}_pad")
        x = layers.Concatenate(name=f"decoder{level}_concat")([x, skip])
        x = _double_conv(x, filters, use_batch_norm, initializers, f"decoder{level}")
    return layers.Conv2D(num_classes, 1, name="logits", dtype="float32", **initializers(base_filters))(x)


def _check_positive_int(value, argument):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{argument}` must be a positive integer. Received: {argument}={value!r}")
    return value


def check_unet_arguments(
    input_shape: tuple[int | None, ...] = (224, 224, 1), num_classes: int = 2, depth: int = 4, base_filters: int = 64, batch_norm: bool = True, acw_weights: ArrayLike | None = None,
    activation: str = "softmax",
) -> tuple[Any, ...]:
    """Raises ValueError for arguments `unet` refuses; returns them normalised (without building)."""
    num_classes = check_num_classes(num_classes)
    depth = _check_positive_int(depth, "depth")
    base_filters = _check_positive_int(base_filters, "base_filters")
    input_shape = check_input_shape(
        input_shape, min_size=2**depth, why=f" (2**depth for depth={depth}, so that the deepest level has a pixel)"
    )
    activation = check_activation(activation)
    acw_weights = resolve_acw_weights(acw_weights, num_classes)
    return input_shape, num_classes, depth, base_filters, acw_weights, activation


def unet(
    input_shape: tuple[int | None, ...] = (224, 224, 1),
    num_classes: int = 2,
    depth: int = 4,
    base_filters: int = 64,
    batch_norm: bool = True,
    acw_weights: ArrayLike | None = None,
    activation: str = "softmax",
    name: str = "unet",
) -> keras.Model:
    """U-Net (Ronneberger et al., 2015) with padded convolutions.

    `depth` max-poolings; each level has two 3x3 convolutions ('same'
    padding; batch normalisation before each ReLU when `batch_norm`) with
    `base_filters * 2**level` filters. The decoder upsamples with 2x2
    transposed convolutions, concatenates the encoder features of the same
    level and applies two 3x3 convolutions; a 1x1 convolution gives the
    `logits`, followed by `acw` (only when `acw_weights` is given) and
    `probabilities`.

    Any input of at least `2**depth` pixels works: pooling rounds odd sizes
    down, and each upsampled map is zero-padded back to its skip
    connection's size (split as PyTorch's `F.pad`), as in the stability
    paper's U-Net (28 -> 14 -> 7 -> 3 -> 1 and back).

    Args:
        input_shape: `(height, width, channels)`.
        num_classes: number of classes (1 for a single sigmoid output).
        depth: number of poolings (4 in Ronneberger et al.).
        base_filters: filters of the first level (64 in Ronneberger et al.).
        batch_norm: batch normalisation after each 3x3 convolution.
        acw_weights: None (no ACW layer), "ones", or one initial weight per class.
        activation: "softmax" (default), "sigmoid", or None for logits.
        name: the model's name.

    Returns:
        A `keras.Model` from images to `(batch, height, width, num_classes)`.

    Examples:
        >>> model = unet((28, 28, 1), num_classes=2, depth=2, base_filters=8)
        >>> model.output.shape
        (None, 28, 28, 2)
    """
    input_shape, num_classes, depth, base_filters, acw_weights, activation = check_unet_arguments(
        input_shape, num_classes, depth, base_filters, batch_norm, acw_weights, activation
    )
    inputs = keras.Input(input_shape, name="image")
    logits = unet_logits(inputs, num_classes, depth, base_filters, batch_norm, keras_default_initializers)
    outputs = segmentation_head(logits, num_classes, acw_weights, activation)
    return keras.Model(inputs, outputs, name=name)
