"""The Adaptive Class Weight (ACW) layer of ADFL."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from keras_focal.types import ArrayLike, TensorLike


@keras.saving.register_keras_serializable(package="keras_focal")
class AdaptiveClassWeight(keras.layers.Layer):
    """Trainable per-class scale of the logits, placed just before softmax.

    `z_i = w_i * x_i` (the ADFL paper's Eq. 16) with one trainable weight per
    class along `axis`. With cross-entropy the gradient with respect to the
    logits becomes `w_i (p_i - y_i)`, with `p = softmax(w * x)`: each class's
    logit is rescaled and its gradient scaled by its own weight. That is not
    weighted cross-entropy, which multiplies a pixel's whole loss by the
    weight of its label, `w_t`; the two differ by a logit-dependent amount,
    not a constant (the paper's section III.E motivates ACW by the analogy).
    With `keras_focal.losses.DualFocalLoss` the layer forms ADFL. The
    paper initialises `w` from the inverse pixel-frequency weights of the
    training set (`keras_focal.class_weights.inverse_frequency_weights`).

    Note that the paper's weights sum to 1, so with C classes they shrink the
    logits by about C at the start, which softens the initial softmax; this is
    the paper's choice and is kept. Pass `initial_weights=None` (ones) for an
    identity start.

    Args:
        initial_weights: one initial weight per class, or None for ones.
        axis: the class axis of the input.
        weight_constraint: optional constraint on `w` (e.g.
            `keras.constraints.NonNeg()`); the paper uses none.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Examples:
        >>> layer = AdaptiveClassWeight([0.25, 0.75])
        >>> layer(np.ones((1, 2), "float32")).numpy().tolist()
        [[0.25, 0.75]]
    """

    def __init__(
        self, initial_weights: ArrayLike | None = None, axis: int = -1, weight_constraint: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if initial_weights is not None:
            array = np.asarray(initial_weights, dtype="float64")
            if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
                raise ValueError(
                    "`initial_weights` must be a 1-D sequence of finite numbers, "
                    f"one per class, or None. Received: {initial_weights!r}"
                )
            initial_weights = [float(v) for v in array]
        self.initial_weights = initial_weights
        self.axis = int(axis)
        self.weight_constraint = keras.constraints.get(weight_constraint)
        self.supports_masking = True

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        num_classes = input_shape[self.axis]
        if num_classes is None:
            raise ValueError(
                "AdaptiveClassWeight needs a static class axis. "
                f"Received input shape {tuple(input_shape)} with axis={self.axis}"
            )
        if self.initial_weights is not None and len(self.initial_weights) != num_classes:
            raise ValueError(
                f"`initial_weights` has {len(self.initial_weights)} entries but the "
                f"input has {num_classes} classes along axis {self.axis} "
                f"(input shape {tuple(input_shape)})."
            )
        initializer = (
            "ones"
            if self.initial_weights is None
            else keras.initializers.Constant(self.initial_weights)
        )
        self.class_weights = self.add_weight(
            name="class_weights",
            shape=(num_classes,),
            initializer=initializer,
            constraint=self.weight_constraint,
            trainable=True,
        )
        self._broadcast_shape = [1] * len(input_shape)
        self._broadcast_shape[self.axis] = num_classes

    def call(self, inputs: TensorLike) -> TensorLike:
        weights = ops.cast(self.class_weights, inputs.dtype)
        return inputs * ops.reshape(weights, self._broadcast_shape)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "initial_weights": self.initial_weights,
                "axis": self.axis,
                "weight_constraint": keras.constraints.serialize(self.weight_constraint),
            }
        )
        return config
