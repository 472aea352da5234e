"""Initialisers: the focal-loss prior-probability bias and bilinear upsampling kernels."""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_focal.types import Array, TensorLike


@keras.saving.register_keras_serializable(package="keras_focal")
class PriorProbability(keras.initializers.Initializer):
    """Bias initialiser that makes the untrained network predict a prior.

    For a sigmoid output (Lin et al., 2017; "Focal Loss Explained"):

    ```
    b = -log((1 - pi) / pi)
    ```

    so that `sigmoid(w x + b) ~ pi` while `w x ~ 0` at initialisation; with
    `pi = 0.01`, `b ~ -4.595`. This keeps the many easy negatives from
    dominating the first iterations.

    For a softmax output give one prior per class (e.g. the pixel frequencies
    of the training set) and `activation="softmax"`: `b_i = log(pi_i)` (up to a
    constant that softmax ignores), so that `softmax(b) = pi`.

    Args:
        probability: the prior `pi` in (0, 1); for softmax, a vector of
            positive priors (normalised to sum 1).
        activation: `"sigmoid"` (default) or `"softmax"`.

    Examples:
        >>> init = PriorProbability(0.01)
        >>> round(float(init((1,))[0]), 4)
        -4.5951
    """

    def __init__(self, probability: float | Sequence[float] = 0.01, activation: str = "sigmoid") -> None:
        if activation not in ("sigmoid", "softmax"):
            raise ValueError(
                "`activation` must be 'sigmoid' or 'softmax'. "
                f"Received: activation={activation!r}"
            )
        self.probability: float | list[float]
        array = np.asarray(probability, dtype="float64")
        if activation == "sigmoid":
            if array.ndim != 0 or not 0 < float(array) < 1:
                raise ValueError(
                    "`probability` must be a number in the open interval (0, 1) "
                    f"for a sigmoid output. Received: probability={probability!r}"
                )
            self.probability = float(array)
        else:
            if array.ndim != 1 or array.size < 2 or not np.all(array > 0):
                raise ValueError(
                    "For a softmax output `probability` must be a 1-D sequence of "
                    f"positive class priors. Received: probability={probability!r}"
                )
            self.probability = [float(v) for v in array / array.sum()]
        self.activation = activation

    def __call__(self, shape: tuple[int, ...], dtype: str | None = None) -> TensorLike:
        dtype = dtype or "float32"
        if isinstance(self.probability, float):  # sigmoid: one prior
            pi = self.probability
            return ops.full(shape, -math.log((1.0 - pi) / pi), dtype=dtype)
        if tuple(shape) != (len(self.probability),):
            raise ValueError(
                f"PriorProbability has {len(self.probability)} class priors but "
                f"the bias has shape {tuple(shape)}."
            )
        return ops.convert_to_tensor(np.log(self.probability), dtype=dtype)

    def get_config(self) -> dict:
        return {"probability": self.probability, "activation": self.activation}


def bilinear_filter(size: int) -> Array:
    """The `size`x`size` bilinear interpolation filter of FCN (Long et al., 2015).

    `f(i, j) = (1 - |i - c| / s) (1 - |j - c| / s)` with `s = ceil(size / 2)`
    and centre `c = s - 1` for odd sizes, `s - 1/2` for even sizes.
    """
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    taps = 1.0 - np.abs(np.arange(size) - center) / factor
    return np.outer(taps, taps)


@keras.saving.register_keras_serializable(package="keras_focal")
class BilinearUpsampling(keras.initializers.Initializer):
    """Kernel initialiser that makes a transposed convolution upsample bilinearly.

    For a `Conv2DTranspose` kernel of shape `(k, k, out_channels, in_channels)`
    it puts `bilinear_filter(k)` on the channel diagonal (`c -> c`) and zeros
    elsewhere, so that with `strides=s` and `k = 2s` the untrained layer is
    bilinear interpolation by `s` of each channel; training may then refine it
    (FCN's `upscore` layers).

    Examples:
        >>> up = keras.layers.Conv2DTranspose(
        ...     1, 4, strides=2, padding="same", use_bias=False,
        ...     kernel_initializer=BilinearUpsampling())
        >>> tuple(up(np.ones((1, 2, 2, 1), "float32")).shape)
        (1, 4, 4, 1)
    """

    def __call__(self, shape: tuple[int, ...], dtype: str | None = None) -> TensorLike:
        if len(shape) != 4 or shape[0] != shape[1]:
            raise ValueError(
                "BilinearUpsampling needs a square 2-D transposed-convolution kernel "
                f"of shape (k, k, out_channels, in_channels). Received shape {tuple(shape)}"
            )
        size, _, out_channels, in_channels = (int(v) for v in shape)
        kernel = np.zeros((size, size, out_channels, in_channels), dtype="float32")
        channels = np.arange(min(out_channels, in_channels))
        kernel[:, :, channels, channels] = bilinear_filter(size)[..., None]
        return ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self) -> dict:
        return {}
