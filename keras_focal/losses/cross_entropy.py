"""Softmax cross-entropy and weighted cross-entropy."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_focal.losses import _base, _softmax
from keras_focal.types import TensorLike


def weighted_cross_entropy_terms(
    y: TensorLike, log_p: TensorLike, class_weights: TensorLike | None = None, axis: int = -1,
) -> TensorLike:
    """The ADFL paper's Eq. (4) per pixel (keepdims): `-sum_i w_i y_i log p_i`.

    Args:
        y: labels (one-hot or soft) of the shape of `log_p`.
        log_p: the log-probabilities.
        class_weights: weights broadcastable along `axis`, or None for 1.
        axis: the class axis.
    """
    terms = y * log_p
    if class_weights is not None:
        terms = terms * class_weights
    return -ops.sum(terms, axis=axis, keepdims=True)


@keras.saving.register_keras_serializable(package="keras_focal")
class WeightedCrossEntropy(_base.CategoricalLoss):
    """Weighted softmax cross-entropy (the ADFL paper's Eq. 4).

    For one pixel with labels `y` and predicted probabilities `p`:

    ```
    loss = -sum_i w_i * y_i * log(p_i)
    ```

    averaged over pixels (`reduction="sum_over_batch_size"`), as MATLAB's
    `pixelClassificationLayer` with `ClassWeights` does. The weights are not
    renormalised per pixel. `keras_focal.class_weights.inverse_frequency_weights`
    gives the paper's inverse pixel-frequency weights (Eq. 5).

    Labels may be integer class maps (`(B, H, W)` or `(B, H, W, 1)` against
    `(B, H, W, C)` predictions) or one-hot / soft labels of the predictions'
    shape; see `keras_focal.losses` for the detection rule.

    Args:
        class_weights: one non-negative weight per class, or None for 1.
        from_logits: whether `y_pred` holds logits. With probabilities that
            come straight from a Keras softmax the logits are recovered, as
            Keras's own cross-entropy does.
        axis: the class axis of `y_pred`.
        ignore_class: integer label excluded from the loss and its mean
            (e.g. 255 for void pixels).
        reduction: Keras reduction, default `"sum_over_batch_size"`.
        name: loss name.
        dtype: computation dtype; float32 by default whatever the policy.

    Examples:
        >>> loss = WeightedCrossEntropy([0.2, 0.8], from_logits=True)
        >>> round(float(loss([1, 0], [[0.0, 1.0], [2.0, 0.0]])), 4)  # (0.8 log(1 + e^-1) + 0.2 log(1 + e^-2)) / 2
        0.138
    """

    def __init__(
        self,
        class_weights: Sequence[float] | None = None,
        from_logits: bool = False,
        axis: int = -1,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "weighted_cross_entropy",
        dtype: str | None = None,
    ) -> None:
        super().__init__(
            from_logits=from_logits,
            axis=axis,
            ignore_class=ignore_class,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )
        self.class_weights = _base._as_class_vector(
            "class_weights", class_weights, allow_scalar=False
        )

    def check_num_classes(self, num_classes: int) -> None:
        if self.class_weights is not None and len(self.class_weights) != num_classes:
            raise ValueError(
                f"`class_weights` must have one entry per class ({num_classes}). "
                f"Received {len(self.class_weights)} weights: {self.class_weights}"
            )

    def dense_loss(self, y_true: TensorLike, prediction: _base.ProbabilityPrediction) -> TensorLike:
        return weighted_cross_entropy_terms(y_true, prediction.log_p(), self._weights(len(y_true.shape), prediction.axis),
                                      prediction.axis)

    def _weights(self, rank, axis: int):
        if self.class_weights is None:
            return None
        return _base.broadcast_class_vector(self.class_weights, rank, axis)

    def logits_loss(self, logits: TensorLike, y: TensorLike, labels: TensorLike | None, axis: int) -> TensorLike:
        # W log S - sum_k w_k y_k s_k with W = sum_k w_k y_k: one formula for
        # one-hot and soft labels (see keras_focal.losses._softmax).
        stats = _softmax.SoftmaxStatistics(logits, y, axis, hard=labels is not None)
        if self.class_weights is None:
            return stats.cross_entropy()
        if labels is not None:  # hard labels: w_t * (-log p_t)
            return self._label_weights(labels) * stats.cross_entropy()
        return stats.cross_entropy(self._weights(len(y.shape), axis))

    def _label_weights(self, labels):
        return ops.take(ops.convert_to_tensor(self.class_weights, "float32"), labels)

    def get_config(self) -> dict:
        config = super().get_config()
        config["class_weights"] = self.class_weights
        return config


@keras.saving.register_keras_serializable(package="keras_focal")
class CrossEntropy(WeightedCrossEntropy):
    """Softmax cross-entropy, `-sum_i y_i log(p_i)`, averaged over pixels.

    `WeightedCrossEntropy` with unit weights. Unlike
    `keras.losses.CategoricalCrossentropy` it takes integer class maps and
    one-hot labels alike, and `ignore_class` for both.

    Args:
        from_logits: whether `y_pred` holds logits.
        axis: the class axis of `y_pred`.
        ignore_class: integer label excluded from the loss and its mean.
        reduction: Keras reduction, default `"sum_over_batch_size"`.
        name: loss name.
        dtype: computation dtype; float32 by default whatever the policy.

    Examples:
        >>> loss = CrossEntropy(from_logits=True)
        >>> round(float(loss([0], [[0.0, 0.0]])), 4)
        0.6931
    """

    def __init__(
        self,
        from_logits: bool = False,
        axis: int = -1,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "cross_entropy",
        dtype: str | None = None,
    ) -> None:
        super().__init__(
            class_weights=None,
            from_logits=from_logits,
            axis=axis,
            ignore_class=ignore_class,
            reduction=reduction,
            name=name,
            dtype=dtype,
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("class_weights")
        return config


def weighted_cross_entropy(
    y_true: TensorLike, y_pred: TensorLike, class_weights: Sequence[float] | None = None, from_logits: bool = False,
    axis: int = -1, ignore_class: int | None = None,
) -> TensorLike:
    """Weighted softmax cross-entropy per pixel: Keras's functional form (`model.compile(loss=...)`).

    Formula (the ADFL paper's Eq. 4), per pixel: `-sum_i w_i y_i log p_i`.

    Takes the options of `WeightedCrossEntropy` and returns its per-pixel
    values (the class axis removed; `ignore_class` pixels 0 and masked out of
    Keras's mean). With options, pass it as
    `functools.partial(weighted_cross_entropy, class_weights=...)`.

    Examples:
        >>> import numpy as np
        >>> values = weighted_cross_entropy(np.array([1]), np.array([[0.0, 0.0]]), [1.0, 3.0], from_logits=True)
        >>> round(float(values[0]), 5)  # 3 * log 2
        2.07944
    """
    loss = WeightedCrossEntropy(class_weights, from_logits=from_logits, axis=axis, ignore_class=ignore_class, reduction=None)
    return loss.call(y_true, y_pred)


def cross_entropy(
    y_true: TensorLike, y_pred: TensorLike, from_logits: bool = False, axis: int = -1,
    ignore_class: int | None = None,
) -> TensorLike:
    """Softmax cross-entropy per pixel: Keras's functional form (`model.compile(loss=cross_entropy)`).

    Formula: `-sum_i y_i log p_i` (the ADFL paper's Eq. 4 with `w_i = 1`), as
    `CrossEntropy`, with exact log-probabilities from logits.

    Examples:
        >>> import numpy as np
        >>> round(float(cross_entropy(np.array([0]), np.array([[0.0, 0.0]]), from_logits=True)[0]), 5)  # log 2
        0.69315
    """
    return CrossEntropy(from_logits=from_logits, axis=axis, ignore_class=ignore_class, reduction=None).call(y_true, y_pred)
