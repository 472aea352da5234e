"""Argument checks and building blocks shared by the network builders."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers

from keras_focal.layers import AdaptiveClassWeight
from keras_focal.types import TensorLike

# MATLAB's batchNormalizationLayer and PyTorch's BatchNorm2d both use
# epsilon 1e-5; PyTorch's momentum 0.1 is Keras's 0.9. Keras's own defaults
# (1e-3, 0.99) make the moving statistics lag far behind on the short
# trainings of the papers.
BATCH_NORM_EPSILON = 1e-5
BATCH_NORM_MOMENTUM = 0.9

ACTIVATIONS = ("softmax", "sigmoid", None)


def check_num_classes(num_classes: int):
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(
            "`num_classes` must be an integer >= 1 (1 gives a single sigmoid "
            f"output). Received: num_classes={num_classes!r}"
        )
    return int(num_classes)


def check_input_shape(input_shape: tuple[int | None, ...], min_size: int = 1, why: str = "") -> tuple[int, int, int]:
    """`input_shape` as a tuple `(height, width, channels)` of positive ints."""
    shape: tuple | None
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = None
    if (
        shape is None
        or len(shape) != 3
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in shape)
    ):
        raise ValueError(
            "`input_shape` must be (height, width, channels) with positive integer "
            "sizes, channels last; the spatial size must be known because the "
            f"decoders crop and pad to it. Received: input_shape={input_shape!r}"
        )
    height, width, channels = (int(v) for v in shape)
    shape = (height, width, channels)
    if min(shape[:2]) < min_size:
        raise ValueError(
            f"`input_shape` {shape} is too small: height and width must be at "
            f"least {min_size}{why}."
        )
    return shape


def check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(
            "`activation` must be 'softmax', 'sigmoid' or None (logits, for "
            f"`from_logits=True` losses). Received: activation={activation!r}"
        )
    return activation


def resolve_acw_weights(acw_weights, num_classes: int):
    """The ACW layer's initial weights: None (no layer), or one per class."""
    if acw_weights is None:
        return None
    if isinstance(acw_weights, str):
        if acw_weights != "ones":
            raise ValueError(
                "`acw_weights` must be None (no ACW layer), 'ones' or one initial "
                f"weight per class. Received: acw_weights={acw_weights!r}"
            )
        return [1.0] * num_classes
    array = np.asarray(acw_weights, dtype="float64")
    if array.ndim != 1 or array.size != num_classes or not np.all(np.isfinite(array)):
        raise ValueError(
            f"`acw_weights` must hold one finite weight per class ({num_classes} "
            f"for num_classes={num_classes}), or be 'ones' or None. "
            f"Received: acw_weights={acw_weights!r}"
        )
    return [float(v) for v in array]


def segmentation_head(logits: TensorLike, num_classes: int, acw_weights, activation):
    """The shared output head: `logits` -> optional `acw` -> `probabilities`.

    `logits` must already be the full-resolution output of a layer named
    "logits" computing in float32; the ACW scale and the softmax then run in
    float32 too, whatever the dtype policy (the Keras mixed-precision guide's
    advice for the last layers).
    """
    x = logits
    if acw_weights is not None:
        x = AdaptiveClassWeight(acw_weights, name="acw", dtype="float32")(x)
    if activation is None:
        return x
    if num_classes == 1:
        activation = "sigmoid"
    return layers.Activation(activation, name="probabilities", dtype="float32")(x)


def conv_bn_relu(x, filters, kernel_size, name: str, strides=1, dilation_rate=1):
    """Bias-free convolution, batch normalisation and ReLU ('same' padding)."""
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        dilation_rate=dilation_rate,
        use_bias=False,
        name=f"{name}_conv",
    )(x)
    x = batch_norm(x, f"{name}_bn")
    return layers.ReLU(name=f"{name}_relu")(x)


def batch_norm(x, name: str):
    return layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, momentum=BATCH_NORM_MOMENTUM, name=name)(x)


def spatial_size(x):
    return int(x.shape[1]), int(x.shape[2])


def crop_to(x, size, name: str, dtype=None):
    """Crop the bottom/right excess so that `x` has spatial `size`.

    Strided 'same' convolutions round sizes up, so an upsampled map covers
    the input plus a margin at the bottom/right; cropping there keeps the
    pixels aligned. The layer is always created, so its name is stable.
    """
    height, width = spatial_size(x)
    if height < size[0] or width < size[1]:
        raise ValueError(f"Cannot crop a {height}x{width} map to {size[0]}x{size[1]}.")
    return layers.Cropping2D(((0, height - size[0]), (0, width - size[1])), name=name, dtype=dtype)(x)


def pad_to(x, size, name: str):
    """Zero-pad `x` to spatial `size`, splitting like PyTorch's `F.pad(x, [d // 2, d - d // 2])`."""
    height, width = spatial_size(x)
    pad_h, pad_w = size[0] - height, size[1] - width
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"Cannot pad a {height}x{width} map to {size[0]}x{size[1]}.")
    if pad_h == pad_w == 0:
        return x
    return layers.ZeroPadding2D(((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)), name=name)(x)


def pytorch_default_initializers(fan_in, seed=None):
    """Kernel and bias initialisers equal to PyTorch's defaults for Conv2d/Linear.

    PyTorch draws both from `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` (its
    `kaiming_uniform_(a=sqrt(5))`); Keras's VarianceScaling with scale 1/3,
    fan-in mode, uniform, gives the same kernel bound, and Keras's fan-in of
    a transposed-convolution kernel (`out_channels * k * k`) is PyTorch's too.
    """
    bound = 1.0 / math.sqrt(fan_in)
    kernel = keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_in", distribution="uniform", seed=seed)
    bias = keras.initializers.RandomUniform(-bound, bound, seed=seed)
    return {"kernel_initializer": kernel, "bias_initializer": bias}
