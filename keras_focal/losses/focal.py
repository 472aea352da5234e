"""Focal loss (Lin et al., 2017), sigmoid and softmax, with the stabilising epsilon.

The modulating factor is computed in log space from the logits,

```
(1 - p_t + epsilon)^gamma = exp(gamma * log(1 - p_t + epsilon))
```

with `log(1 - p_t)` from `log_sigmoid` / the softmax complement (see
`keras_focal.losses._numerics`). With `epsilon=0` this is the *original* focal
loss, exact in float32 and with finite gradients for every `gamma >= 0`,
including `0 < gamma < 1` where the textbook implementation (torchvision's
`sigmoid_focal_loss`, Keras's `BinaryFocalCrossentropy`) returns NaN once
`|logit| >= 17`. `epsilon > 0` is the modification proposed in "A Note on the
Stability of the Focal Loss" (`sigmoid_focal_loss_modified`, epsilon = 1e-3
in that paper); it changes the loss slightly and is not needed for finiteness
here, but is kept so that the paper's loss can be reproduced exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from keras_focal.losses import _base, _focal_terms, _numerics, _softmax
from keras_focal.losses._focal_terms import modulating_factor
from keras_focal.types import TensorLike


def _validate_focal_arguments(gamma, epsilon):
    _base._check_non_negative("gamma", gamma)
    _base._check_non_negative("epsilon", epsilon)
    return float(gamma), float(epsilon)


def binary_focal_terms(
    y: TensorLike, log_p: TensorLike, log_q: TensorLike, gamma: float = 2.0, alpha: float | None = 0.25,
    epsilon: float = 0.0,
) -> TensorLike:
    """Lin et al.'s sigmoid focal loss, element-wise (the stability paper's Eq. 11 with `epsilon`):

    `-alpha_t (1 - p_t + epsilon)^gamma [y log p + (1 - y) log(1 - p)]`, with
    `1 - p_t = y (1 - p) + (1 - y) p` and `alpha_t = alpha y + (1 - alpha)(1 - y)`.

    Args:
        y: targets in [0, 1].
        log_p: exact `log p`.
        log_q: exact `log(1 - p)`.
        gamma: as `BinaryFocalLoss`.
        alpha: as `BinaryFocalLoss` (`alpha=None`: no `alpha_t`).
        epsilon: as `BinaryFocalLoss`.
    """
    loss = -(y * log_p + (1.0 - y) * log_q)
    # 1 - p_t = y (1 - p) + (1 - y) p, exact for hard labels.
    factor = modulating_factor(_numerics.log_mixture(y, log_q, log_p), gamma, epsilon)
    if factor is not None:
        loss = loss * factor
    if alpha is not None:
        loss = loss * (alpha * y + (1.0 - alpha) * (1.0 - y))
    return loss


def categorical_focal_terms(
    y: TensorLike, log_p: TensorLike, log_1mp: TensorLike, gamma: float = 2.0,
    alpha: float | Sequence[float] | TensorLike | None = None, epsilon: float = 0.0, axis: int = -1,
) -> TensorLike:
    """The ADFL paper's Eq. (6) per pixel (keepdims): `-sum_i alpha_i y_i (1 - p_i + epsilon)^gamma log p_i`.

    Args:
        y: labels (one-hot or soft) of the shape of `log_p`.
        log_p: exact `log p` of every class.
        log_1mp: exact `log(1 - p)` of every class.
        gamma: as `CategoricalFocalLoss`.
        epsilon: as `CategoricalFocalLoss`.
        alpha: None, a number, or per-class weights broadcastable along `axis`.
        axis: the class axis.
    """
    terms = y * log_p
    factor = modulating_factor(log_1mp, gamma, epsilon)
    if factor is not None:
        terms = terms * factor
    if alpha is not None:
        terms = terms * alpha
    return -ops.sum(terms, axis=axis, keepdims=True)


@keras.saving.register_keras_serializable(package="keras_focal")
class BinaryFocalLoss(keras.losses.Loss):
    """Sigmoid focal loss for binary and multi-label targets.

    Element-wise, with `p = sigmoid(x)`, `p_t = p y + (1 - p)(1 - y)` and
    `alpha_t = alpha y + (1 - alpha)(1 - y)`:

    ```
    loss = -alpha_t * (1 - p_t + epsilon)^gamma * [y log p + (1 - y) log(1 - p)]
    ```

    averaged over the last axis (like `keras.losses.BinaryCrossentropy`) and
    then over the batch. With `epsilon=0` this is torchvision's
    `sigmoid_focal_loss` and Keras's `BinaryFocalCrossentropy`
    (`apply_class_balancing=True` when `alpha` is set) wherever those are
    finite; with `epsilon=1e-3` it is the stability paper's
    `sigmoid_focal_loss_modified` (its appendix A.3). Soft labels are allowed.

    Computed in float32 in log space: finite values and gradients for every
    logit and every `gamma >= 0` (see the module docstring).

    Args:
        gamma: focusing parameter, >= 0. 0 gives (alpha-weighted) binary
            cross-entropy.
        alpha: weight of the positive class in [0, 1]; None disables
            `alpha_t`.
        epsilon: smoothing constant of the stabilised focal loss, >= 0.
        from_logits: whether `y_pred` holds logits. Probabilities that come
            straight from a Keras sigmoid are mapped back to their logits, as
            Keras does; other probabilities are clipped to `[1e-7, 1 - 1e-7]`.
        reduction: Keras reduction, default `"sum_over_batch_size"`.
        name: loss name.
        dtype: computation dtype; float32 by default whatever the policy.

    Examples:
        >>> loss = BinaryFocalLoss(gamma=0.5, alpha=0.5, from_logits=True)
        >>> round(float(loss([[1.0]], [[0.0]])), 5)  # 0.5 * sqrt(0.5) * log 2
        0.24506
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | None = 0.25,
        epsilon: float = 0.0,
        from_logits: bool = False,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_focal_loss",
        dtype: str | None = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        self.gamma, self.epsilon = _validate_focal_arguments(gamma, epsilon)
        if alpha is not None and not (np.isscalar(alpha) and 0 <= float(alpha) <= 1):  # type: ignore[arg-type]
            raise ValueError(
                "`alpha` must be a number in [0, 1] or None. "
                f"Received: alpha={alpha!r}"
            )
        self.alpha = None if alpha is None else float(alpha)  # type: ignore[arg-type]
        self.from_logits = bool(from_logits)

    def call(self, y_true: TensorLike, y_pred: TensorLike) -> TensorLike:
        logits = getattr(y_pred, "_keras_logits", None)
        y_true, y_pred = _base.as_tensor(y_true), _base.as_tensor(y_pred)
        if len(y_true.shape) == len(y_pred.shape) - 1:
            y_true = ops.expand_dims(y_true, -1)
        true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
        if len(true_shape) != len(pred_shape) or not all(
            a is None or b is None or a == b for a, b in zip(true_shape, pred_shape)
        ):
            raise ValueError(
                f"{type(self).__name__}: labels and predictions must have the "
                f"same shape. Received: y_true.shape={true_shape}, "
                f"y_pred.shape={pred_shape}"
            )
        values = _base.concrete_value(y_true)
        if values is not None and values.size and (values.min() < 0 or values.max() > 1):
            raise ValueError(
                f"{type(self).__name__}: labels must lie in [0, 1]. Found values "
                f"in [{values.min()}, {values.max()}]."
            )
        y_true = ops.cast(y_true, "float32")
        if self.from_logits:
            logits = y_pred
        if logits is not None:
            loss = self._loss_from_logits(y_true, ops.cast(logits, "float32"))
        else:
            log_p, log_q = _numerics.sigmoid_log_probabilities(ops.cast(y_pred, "float32"), False)
            loss = binary_focal_terms(y_true, log_p, log_q, self.gamma, self.alpha, self.epsilon)
        return ops.mean(loss, axis=-1)

    def _alpha_t(self, y):
        return self.alpha * y + (1.0 - self.alpha) * (1.0 - y)

    def _loss_from_logits(self, y, logits: TensorLike):
        """Element-wise loss with its closed-form gradient.

        With `p = sigmoid(x)`, `q = 1 - p`, `B = -y log p - (1 - y) log q`
        (Keras's `relu(x) - x y + log1p(exp(-|x|))`), `w = y q + (1 - y) p =
        1 - p_t` and `f = (w + epsilon)^gamma`, the loss is `alpha_t f B` and

            dL/dx = alpha_t [f (p - y) + gamma B (1 - 2y) p q (w + epsilon)^(gamma - 1)],

        since `dB/dx = p - y` and `dw/dx = (1 - 2y) p q`. `p - y` is taken as
        `y (-q) + (1 - y) p` (exact for hard labels) and the power is a
        product for integer `gamma`, so every factor keeps its relative
        precision, nothing is `0 * inf` where `w` underflows, and a tie
        `p == y` gives the exact gradient. One exponential, one `log1p` and
        one division per element, as binary cross-entropy.
        """
        gamma, epsilon = self.gamma, self.epsilon

        # The derivative is attached in closed form, built from the logits themselves
        # (no stop-gradient) so that it is differentiable again: second derivatives are exact.
        x = logits
        # One comparison, reused: -|x| and max(x, 0) as selections of x, whose
        # derivatives are right at x = 0 too (those of abs and relu are 0 there,
        # which would zero the second derivative at a zero logit).
        nonnegative = x >= 0
        small = ops.exp(ops.where(nonnegative, -x, x))  # exp(-|x|)
        inverse = 1.0 / (1.0 + small)
        p = ops.where(nonnegative, inverse, small * inverse)
        q = ops.where(nonnegative, small * inverse, inverse)
        cross_entropy = ops.where(nonnegative, x, 0.0) - x * y + ops.log1p(small)
        base = y * q + (1.0 - y) * p
        if epsilon:
            base = base + epsilon
        slope = y * (-q) + (1.0 - y) * p  # p - y, exact for hard labels
        if gamma == 0:
            value = cross_entropy
        else:
            # power = (w + eps)^(gamma - 1), so that f / (w + eps) needs no division.
            if gamma in _focal_terms.MULTIPLIED_GAMMAS:
                power = _focal_terms.power_below(base, gamma)
            else:
                power = ops.exp((gamma - 1.0) * ops.log(ops.maximum(base, _numerics.TINY)))
            factor = base if power is None else power * base
            value = factor * cross_entropy
            # p q (w + eps)^(gamma - 1), multiplied as p (q power): q power = q^gamma for
            # y = 1 (and p power ~ p^(gamma - 1) large for y = 0), so nothing underflows early.
            focus = p * q if power is None else p * (q * power)
            slope = factor * slope + (gamma * cross_entropy) * ((1.0 - 2.0 * y) * focus)
        loss = _softmax.with_derivative(value, logits, slope)
        if self.alpha is not None:
            loss = loss * self._alpha_t(y)
        return loss

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "gamma": self.gamma,
                "alpha": self.alpha,
                "epsilon": self.epsilon,
                "from_logits": self.from_logits,
                "dtype": self.dtype,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_focal")
class CategoricalFocalLoss(_base.CategoricalLoss):
    """Softmax focal loss (the ADFL paper's Eq. 6), with the stabilising epsilon.

    Per pixel, with softmax probabilities `p` and labels `y`:

    ```
    loss = -sum_i alpha_i * y_i * (1 - p_i + epsilon)^gamma * log(p_i)
    ```

    averaged over pixels. For integer labels `t` this is
    `-alpha_t (1 - p_t + epsilon)^gamma log p_t`. `gamma=0`, `epsilon=0` gives
    (weighted) cross-entropy. With `epsilon=0` and `alpha` a scalar it equals
    Keras's `CategoricalFocalCrossentropy(alpha, gamma)` wherever that is not
    clipped. `1 - p_i` is never formed as `1 - softmax` where that would
    cancel (at the arg-max it comes from the other classes' exponentials), so
    the loss is exact and its gradient finite for any logits and any
    `gamma >= 0`; the focal factor's derivative is attached in closed form.

    Labels may be integer class maps (`(B, H, W)` or `(B, H, W, 1)` against
    `(B, H, W, C)` predictions) or one-hot / soft labels of the predictions'
    shape.

    Args:
        gamma: focusing parameter, >= 0.
        alpha: None (no weighting), a number >= 0, or one weight per class.
        epsilon: smoothing constant of the stabilised focal loss, >= 0.
        from_logits: whether `y_pred` holds logits (probabilities straight from
            a Keras softmax are mapped back to their logits).
        axis: the class axis of `y_pred`.
        ignore_class: integer label excluded from the loss and its mean.
        reduction: Keras reduction, default `"sum_over_batch_size"`.
        name: loss name.
        dtype: computation dtype; float32 by default whatever the policy.

    Examples:
        >>> loss = CategoricalFocalLoss(gamma=2.0, from_logits=True)
        >>> round(float(loss([0], [[0.0, 0.0]])), 5)
        0.17329
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
        epsilon: float = 0.0,
        from_logits: bool = False,
        axis: int = -1,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_focal_loss",
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
        self.gamma, self.epsilon = _validate_focal_arguments(gamma, epsilon)
        self.alpha = _base._as_class_vector("alpha", alpha)

    def check_num_classes(self, num_classes: int) -> None:
        if isinstance(self.alpha, list) and len(self.alpha) != num_classes:
            raise ValueError(
                f"`alpha` must be a number or have one entry per class "
                f"({num_classes}). Received {len(self.alpha)} entries: {self.alpha}"
            )

    def dense_loss(self, y_true: TensorLike, prediction: _base.ProbabilityPrediction) -> TensorLike:
        alpha = self.alpha
        if isinstance(alpha, list):
            alpha = _base.broadcast_class_vector(alpha, len(y_true.shape), prediction.axis)
        return categorical_focal_terms(
            y_true, prediction.log_p(), prediction.log_1mp(), self.gamma, alpha, self.epsilon, prediction.axis
        )

    def logits_loss(self, logits: TensorLike, y: TensorLike, labels: TensorLike | None, axis: int) -> TensorLike:
        # -log p is a cross-entropy l, and the focal loss is phi(l) = l (1 - p + eps)^gamma -> TensorLike:
        # per pixel for hard labels, per class (weighted by y) for soft ones.
        if labels is not None:
            return self._hard_loss(logits, y, ops.take(self._alpha_vector(), labels) if self._per_class_alpha else None, axis)
        if self.gamma == 0:  # (1 - p + eps)^0 = 1: (alpha-weighted) cross-entropy, any labels
            return self._soft_loss(logits, y, axis)

        def hard():
            alpha_t = None
            if self._per_class_alpha:
                weights = _base.broadcast_class_vector(self.alpha, len(y.shape), axis)
                alpha_t = ops.sum(y * weights, axis=axis, keepdims=True)
            return self._hard_loss(logits, y, alpha_t, axis)

        return ops.cond(
            _softmax.labels_are_one_hot(y, axis), hard, lambda: self._soft_loss(logits, y, axis)
        )

    @property
    def _per_class_alpha(self):
        return isinstance(self.alpha, list)

    def _alpha_vector(self):
        return ops.convert_to_tensor(self.alpha, "float32")

    def _hard_loss(self, logits: TensorLike, y, alpha_t, axis: int):
        """One-hot `y`: `alpha_t * phi(-log p_t)`, per pixel."""
        stats = _softmax.SoftmaxStatistics(logits, y, axis, hard=True)
        loss = stats.cross_entropy()
        if self.gamma:
            loss = _focal_terms.focal_modulation(loss, self.gamma, self.epsilon)
        if alpha_t is not None:
            loss = loss * alpha_t
        elif isinstance(self.alpha, float):
            loss = loss * self.alpha
        return loss

    def _soft_loss(self, logits: TensorLike, y, axis: int):
        """Any dense `y`: `sum_i alpha_i y_i phi(-log p_i)`, with its closed-form gradient."""
        weights = None
        if self._per_class_alpha:
            weights = _base.broadcast_class_vector(self.alpha, len(y.shape), axis)
        if self.gamma == 0:
            stats = _softmax.SoftmaxStatistics(logits, y, axis, hard=False)
            loss = stats.cross_entropy(weights)
        else:
            loss = _focal_terms.soft_focal_loss(logits, y, axis, self.gamma, self.epsilon, weights)
        if isinstance(self.alpha, float):
            loss = loss * self.alpha
        return loss

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"gamma": self.gamma, "alpha": self.alpha, "epsilon": self.epsilon})
        return config


def binary_focal_loss(
    y_true: TensorLike, y_pred: TensorLike, gamma: float = 2.0, alpha: float | None = 0.25, epsilon: float = 0.0,
    from_logits: bool = False,
) -> TensorLike:
    """Lin et al.'s sigmoid focal loss per element: Keras's functional form (`model.compile(loss=...)`).

    Formula (the stability paper's Eq. 11, with `epsilon`):
    `-alpha_t (1 - p_t + epsilon)^gamma [y log p + (1 - y) log(1 - p)]`, with
    `1 - p_t = y (1 - p) + (1 - y) p` and `alpha_t = alpha y + (1 - alpha)(1 - y)`.

    Takes the options of `BinaryFocalLoss` and returns its per-element values.

    Examples:
        >>> import numpy as np
        >>> values = binary_focal_loss(np.array([[1.0]]), np.array([[0.0]]), gamma=0.0, alpha=None, from_logits=True)
        >>> round(float(values[0]), 5)  # the mean over the last axis, as Keras's binary losses: log 2
        0.69315
    """
    loss = BinaryFocalLoss(gamma=gamma, alpha=alpha, epsilon=epsilon, from_logits=from_logits, reduction=None)
    return loss.call(y_true, y_pred)


def categorical_focal_loss(y_true: TensorLike, y_pred: TensorLike, gamma: float = 2.0, alpha: float | Sequence[float] | None = None, epsilon: float = 0.0, from_logits: bool = False, axis: int = -1,
                           ignore_class: int | None = None) -> TensorLike:
    """Softmax focal loss per pixel: Keras's functional form (`model.compile(loss=categorical_focal_loss)`).

    Formula (the ADFL paper's Eq. 6, with `epsilon`):
    `-sum_i alpha_i y_i (1 - p_i + epsilon)^gamma log p_i`.

    Takes the options of `CategoricalFocalLoss` and returns its per-pixel
    values (the class axis removed; `ignore_class` pixels masked out of
    Keras's mean).

    Examples:
        >>> import numpy as np
        >>> round(float(categorical_focal_loss(np.array([0]), np.array([[0.0, 0.0]]), from_logits=True)[0]), 5)
        0.17329
    """
    loss = CategoricalFocalLoss(gamma=gamma, alpha=alpha, epsilon=epsilon, from_logits=from_logits, axis=axis,
                                ignore_class=ignore_class, reduction=None)
    return loss.call(y_true, y_pred)
