"""Dual Focal Loss (Hossain, Paplinski and Betts), the loss half of ADFL."""

from __future__ import annotations

import keras
from keras import ops

from keras_focal.losses import _base, _numerics, _softmax
from keras_focal.types import TensorLike

# Above this the plain sum of the non-maximal exponentials is exact to float32
# rounding; below it (its terms reach the subnormal range) the second-largest
# logit's frame is used.
_PLAIN_SUM_LIMIT = 1e-30


def dual_focal_terms(
    y: TensorLike, log_p: TensorLike, log_1mp: TensorLike, alpha: float = 1.0, beta: float = 1.0,
    gamma: float = 1.0, axis: int = -1,
) -> TensorLike:
    """The ADFL paper's Eq. (7) per pixel (keepdims), as its MATLAB code sums it over the classes:

    `sum_i ( -[y_i log p_i + beta (1 - y_i) log(1 - p_i)] + alpha |y_i - p_i|^gamma )`.

    Args:
        y: labels (one-hot or soft) of the shape of `log_p`.
        log_p: exact `log p` of every class.
        log_1mp: exact `log(1 - p)` of every class.
        alpha: as `DualFocalLoss`.
        beta: as `DualFocalLoss`.
        gamma: as `DualFocalLoss`.
        axis: the class axis.
    """
    terms = -y * log_p
    if beta:
        terms = terms - beta * (1.0 - y) * log_1mp
    if alpha:
        terms = terms + alpha * focal_difference_power(y, log_p, log_1mp, gamma)
    return ops.sum(terms, axis=axis, keepdims=True)


def focal_difference_power(y: TensorLike, log_p: TensorLike, log_1mp: TensorLike, gamma: float) -> TensorLike:
    """`|y - p|^gamma` per class from exact logs.

    `y - p = y (1 - p) - (1 - y) p` is exact for hard labels, and there
    `|y - p|^gamma` is taken in log space (`(1 - p)^gamma` or `p^gamma`), so
    it is exact where `1 - p` or `p` is tiny; soft entries go through a
    float32-tiny floor (the cusp of `|d|^gamma` at `d = 0` for `gamma < 1`).
    """
    p, q = ops.exp(log_p), ops.exp(log_1mp)
    difference = ops.abs(y * q - (1.0 - y) * p)
    if gamma == 1:
        return difference
    if gamma == 0:
        return ops.ones_like(difference)
    hard = ops.logical_or(y == 0, y == 1)
    log_difference = ops.where(hard, y * log_1mp + (1.0 - y) * log_p, _numerics.log_floored(difference))
    return ops.exp(gamma * log_difference)


@keras.saving.register_keras_serializable(package="keras_focal")
class DualFocalLoss(_base.CategoricalLoss):
    """Dual Focal Loss (DFL) of "Adaptive Class Weight based Dual Focal Loss
    for Improved Semantic Segmentation" (Hossain, Paplinski and Betts).

    Not to be confused with the unrelated "Dual Focal Loss for Calibration"
    (Tao et al., 2023).

    Per pixel, with softmax probabilities `p` and labels `y`, summed over
    classes `i` and averaged over pixels:

    ```
    loss = sum_i ( -[y_i log(p_i) + beta (1 - y_i) log(1 - p_i)]
                   + alpha |y_i - p_i|^gamma )
    ```

    With the defaults (`alpha = beta = gamma = 1`) and hard labels this is the
    paper's Eq. (7), `sum_i |y_i - p_i| - log(1 - |y_i - p_i|)`, which is also
    the authors' published MATLAB form: a cross-entropy on the true class, a
    cross-entropy on every false class, and a focal term `|y_i - p_i|` that
    grows with the error on either. The paper's Eq. (7) prints the first term
    outside the sum over classes; the sum is taken here, as in the MATLAB
    code. DFL has no per-class weight: in ADFL the class weighting comes from
    `keras_focal.layers.AdaptiveClassWeight` placed before the softmax.

    Everything is computed from the logits in log space: `log(1 - p_i)` never
    goes through `1 - softmax`, `|y_i - p_i|` is `1 - p_i` or `p_i` exactly for
    hard labels, and `|y_i - p_i|^gamma` is taken in log space for
    `gamma != 1`, so values are exact and gradients finite for every logit and
    every `gamma >= 0` (for soft labels the gradient of `|d|^gamma` at `d = 0`
    with `gamma < 1` is a cusp; it stays finite through a float32-tiny floor).

    Labels may be integer class maps (`(B, H, W)` or `(B, H, W, 1)` against
    `(B, H, W, C)` predictions) or one-hot / soft labels of the predictions'
    shape.

    Args:
        alpha: weight of the focal term `|y - p|^gamma`, >= 0.
        beta: weight of the false-class cross-entropy, >= 0.
        gamma: exponent of the focal term, >= 0.
        from_logits: whether `y_pred` holds logits (probabilities straight from
            a Keras softmax are mapped back to their logits).
        axis: the class axis of `y_pred`.
        ignore_class: integer label excluded from the loss and its mean.
        reduction: Keras reduction, default `"sum_over_batch_size"`.
        name: loss name.
        dtype: computation dtype; float32 by default whatever the policy.

    Examples:
        >>> loss = DualFocalLoss(from_logits=True)
        >>> round(float(loss([0], [[0.0, 0.0]])), 5)  # 2 * (0.5 - log 0.5)
        2.38629
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 1.0,
        from_logits: bool = False,
        axis: int = -1,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "dual_focal_loss",
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
        for arg_name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            _base._check_non_negative(arg_name, value)
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)

    def dense_loss(self, y_true: TensorLike, prediction: _base.ProbabilityPrediction) -> TensorLike:
        return dual_focal_terms(
            y_true, prediction.log_p(), prediction.log_1mp(), self.alpha, self.beta, self.gamma, prediction.axis
        )

    def logits_loss(self, logits: TensorLike, y: TensorLike, labels: TensorLike | None, axis: int) -> TensorLike:
        if self.gamma in (0.0, 1.0):  # the defaults: one closed form for every label form
            return self._closed_form(logits, y, labels is not None, axis)
        return self._general_loss(logits, y, labels is not None, axis)

    def _closed_form(self, logits: TensorLike, y, hard, axis: int):
        """The loss and its closed-form gradient for `gamma` in {0, 1}, any labels.

        With `p` the softmax, `Y = sum_i y_i`, `odds_k = p_k / (1 - p_k)` and
        `sigma_k = sign(p_k - y_k)`, the gradient with respect to the logits is

            Y p - y                                      cross-entropy
            + beta ((1 - y_k) odds_k - p_k sum_i (1 - y_i) odds_i)
            + alpha (sigma_k p_k - p_k sum_i sigma_i p_i)  (gamma = 1)

        (for one-hot labels the last line is `2 alpha p_t (p - y)`). A single
        arg-max `a` is the one class whose odds can be large; its false-class
        term `-(1 - y_a) log(1 - p_a)` is `(1 - y_a)(log S - log sum_{i != a} e_i)`
        with derivative `(1 - y_a)(p_k - [k != a] e_k / sum_{i != a} e_i)`.

        `sum_{i != a} e_i` is exact for any margin: the plain sum, or (when it
        falls below 1e-30 for some wrong arg-max) the sum relative to the
        second-largest logit. The arg-max `a` is the index of
        `SoftmaxStatistics` (one decision per pixel, reused by every term). The
        cost is cross-entropy's plus one `log1p` and one division per class.
        The gradient is attached with `_softmax.with_gradient`, built from the
        logits by ordinary ops, so that its own derivative (the Hessian) is
        exact too.
        """
        alpha, beta, gamma = self.alpha, self.beta, self.gamma
        sum_ = lambda v: ops.sum(v, axis=axis, keepdims=True)  # noqa: E731
        # The statistics of the logits themselves (no stop-gradient): the slope
        # below is then differentiable again, so second derivatives are exact.
        stats = _softmax.SoftmaxStatistics(logits, y, axis, hard=hard, arg_max_frame=True)
        is_max, shifted, others, log_total = stats.is_max, stats.shifted, stats.others, stats.log_total
        p = stats.probabilities()
        label_sum = stats.label_sum
        cross_entropy = stats.cross_entropy()
        # 1 - y_a, read through the arg-max index: for hard labels exactly 1
        # where the label is not the arg-max and 0 where it is, whatever
        # rounding a compiler gives the logits.
        argmax_weight = 1.0 - stats.label_weight_on_max()
        loss = cross_entropy
        slope = p * label_sum - y
        log_argmax_complement = None
        if beta or (alpha and gamma == 1 and not hard):
            # log(1 - p_a) = log(sum of the others) - log S, exact for any margin: the
            # plain sum is exact down to ~1e-30; below that (a wrong arg-max ~69 nats
            # ahead) the sum is taken relative to the second-largest logit m2, as
            # offset + log_sum with the offset 0 or m2. Both branches agree where both
            # are exact, so which one a pixel near the threshold takes does not matter.
            below = ops.logical_not(is_max)
            offset, log_sum = ops.cond(
                ops.any(ops.logical_and(argmax_weight > 0, others < _PLAIN_SUM_LIMIT)),
                lambda: _softmax.second_frame_log_sum(shifted, below, axis),
                lambda: (ops.zeros_like(others), _numerics.log_floored(others)),
            )
            log_argmax_complement = (offset - log_total) + log_sum
        if beta:
            # Every class but the arg-max has p <= 1/2, where log1p(-p) is exact; the
            # arg-max's p is replaced by 0 (its term is added per pixel), so that no
            # derivative, of any order, meets log1p(-1) or p / (1 - p) at p = 1.
            p_other = ops.where(is_max, 0.0, p)
            false_classes = sum_((1.0 - y) * ops.log1p(-p_other))
            loss = loss - beta * (false_classes + argmax_weight * log_argmax_complement)
            weighted_odds = (1.0 - y) * p_other / (1.0 - p_other)
            # e_k / (sum of the others), any margin (s - offset is exact); 0 at the arg-max.
            log_shares = ops.where(is_max, 0.0, (shifted - offset) - log_sum)
            shares = ops.where(is_max, 0.0, ops.exp(log_shares))
            false_slope = weighted_odds - p * sum_(weighted_odds) + argmax_weight * (p - shares)
        if alpha and gamma == 0:
            loss = loss + alpha * float(y.shape[axis])
        elif alpha and hard:
            loss = loss + (2.0 * alpha) * -ops.expm1(-cross_entropy)
            slope = slope * (1.0 + (2.0 * alpha) * ops.exp(-cross_entropy))
        elif alpha:
            complement = ops.where(is_max, ops.exp(log_argmax_complement), 1.0 - p)
            # y - p = y (1 - p) - (1 - y) p, exact for hard labels.
            difference = y * complement - (1.0 - y) * p
            loss = loss + alpha * sum_(ops.abs(difference))
            sign_p = ops.sign(-difference) * p  # sign(p - y) p
            slope = slope + alpha * (sign_p - p * sum_(sign_p))
        if beta:
            slope = slope + beta * false_slope
        return _softmax.with_gradient(loss, logits, slope, axis)

    def _general_loss(self, logits: TensorLike, y, hard, axis: int):
        """`gamma` not in {0, 1}, any labels: autodiff of the exact per-class formula."""
        # log(1 - p_k) for every class: the false-class term, and |y - p|^gamma of soft labels.
        complements = bool(self.beta) or (not hard and bool(self.alpha) and self.gamma != 0)
        stats = _softmax.SoftmaxStatistics(logits, y, axis, hard=hard, complements=complements)
        cross_entropy = stats.cross_entropy()  # -sum_i y_i log p_i
        loss = cross_entropy
        if self.beta:
            false_class = ops.sum((1.0 - y) * stats.log_complements(), axis=axis, keepdims=True)
            loss = loss - self.beta * false_class
        if self.alpha:
            loss = loss + self.alpha * self._logits_focal_term(stats, hard)
        return loss

    def _logits_focal_term(self, stats, hard):
        """`sum_i |y_i - p_i|^gamma` for `gamma` not in {0, 1} (those take `_closed_form`)."""
        axis, y = stats.axis, stats.y
        if hard:
            # |y_i - p_i| is 1 - p_t for the label and p_i elsewhere.
            log_p = stats.shifted - stats.log_total
            others = ops.sum((1.0 - y) * ops.exp(self.gamma * log_p), axis=axis, keepdims=True)
            return others + ops.exp(self.gamma * stats.log_label_complement())
        return ops.sum(
            focal_difference_power(y, stats.shifted - stats.log_total, stats.log_complements(), self.gamma),
            axis=axis, keepdims=True,
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma})
        return config


def dual_focal_loss(
    y_true: TensorLike, y_pred: TensorLike, alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0,
    from_logits: bool = False, axis: int = -1, ignore_class: int | None = None,
) -> TensorLike:
    """Dual Focal Loss per pixel: Keras's functional form (`model.compile(loss=dual_focal_loss)`).

    Formula (the ADFL paper's Eq. 7, summed over the classes as the authors'
    MATLAB code sums it):
    `sum_i ( -[y_i log p_i + beta (1 - y_i) log(1 - p_i)] + alpha |y_i - p_i|^gamma )`.

    Takes the options of `DualFocalLoss` and returns its per-pixel values
    (the class axis removed; `ignore_class` pixels masked out of Keras's mean).

    Examples:
        >>> import numpy as np
        >>> round(float(dual_focal_loss(np.array([0]), np.array([[0.0, 0.0]]), from_logits=True)[0]), 5)
        2.38629
    """
    loss = DualFocalLoss(alpha=alpha, beta=beta, gamma=gamma, from_logits=from_logits, axis=axis,
                         ignore_class=ignore_class, reduction=None)
    return loss.call(y_true, y_pred)
