"""Dual Focal Loss (Hossain, Paplinski and Betts), the loss half of ADFL."""

import keras
from keras import ops

from keras_focal.losses import _base
from keras_focal.losses import _numerics


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

    Example:

    >>> loss = DualFocalLoss(from_logits=True)
    >>> round(float(loss([0], [[0.0, 0.0]])), 5)  # 2 * (0.5 - log 0.5)
    2.38629
    """

    def __init__(
        self,
        alpha=1.0,
        beta=1.0,
        gamma=1.0,
        from_logits=False,
        axis=-1,
        ignore_class=None,
        reduction="sum_over_batch_size",
        name="dual_focal_loss",
        dtype=None,
    ):
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

    def _focal_power(self, log_abs_difference):
        return ops.exp(self.gamma * log_abs_difference)

    def dense_loss(self, y_true, prediction):
        axis = prediction.axis
        log_p, log_1mp = prediction.log_p(), prediction.log_1mp()
        terms = -y_true * log_p
        if self.beta:
            terms = terms - self.beta * (1.0 - y_true) * log_1mp
        if self.alpha:
            p, q = prediction.probabilities(), prediction.complements()
            # y - p = y (1 - p) - (1 - y) p: exact for hard labels.
            difference = ops.abs(y_true * q - (1.0 - y_true) * p)
            if self.gamma == 1:
                focal = difference
            elif self.gamma == 0:
                focal = ops.ones_like(difference)
            else:
                hard = ops.logical_or(y_true == 0, y_true == 1)
                log_difference = ops.where(
                    hard,
                    y_true * log_1mp + (1.0 - y_true) * log_p,
                    ops.log(ops.maximum(difference, _numerics.TINY)),
                )
                focal = self._focal_power(log_difference)
            terms = terms + self.alpha * focal
        return ops.sum(terms, axis=axis, keepdims=True)

    def fused_sparse_gradient(self, prediction, is_label, log_pt, log_1mpt):
        """d loss / d logits for integer labels, in closed form.

        With `t` the label, `p` the softmax, `odds_i = p_i / (1 - p_i)`,
        `O = sum_{i != t} odds_i` and `P = sum_{i != t} p_i^gamma`:

        - `-log p_t`                       -> `p_k - [k = t]`
        - `beta sum_{i != t} -log(1 - p_i)` -> `beta ([k != t] odds_k - p_k O)`
        - `alpha (P + (1 - p_t)^gamma)`     -> `alpha gamma ([k != t] p_k^gamma - p_k P
          + (k = t ? -p_t (1 - p_t)^gamma : p_k p_t (1 - p_t)^(gamma - 1)))`,
          which is `2 alpha p_t (p_k - [k = t])` for gamma = 1.

        Only the arg-max can have odds > 1; when it is a wrong class `a`, its
        entry `odds_a - p_a O` would cancel two huge numbers and is taken as
        `p_a (1 - O')` with `O'` the sum of the other (bounded) odds.
        """
        terms = prediction.terms
        p = terms.probabilities()
        gradient = ops.where(is_label, -ops.exp(log_1mpt), p)
        if self.alpha and self.gamma == 1:
            gradient = gradient * (1.0 + 2.0 * self.alpha * ops.exp(log_pt))
        elif self.alpha and self.gamma != 0:
            powers = ops.where(is_label, 0.0, ops.exp(self.gamma * terms.log_probabilities()))
            power_sum = ops.sum(powers, axis=terms.axis, keepdims=True)
            p_t = ops.exp(log_pt)
            label_term = -p_t * ops.exp(self.gamma * log_1mpt)
            other_term = p * p_t * ops.exp((self.gamma - 1.0) * log_1mpt)
            focal = powers - p * power_sum + ops.where(is_label, label_term, other_term)
            gradient = gradient + (self.alpha * self.gamma) * focal
        if self.beta:
            direct = terms.direct_mask()
            # Odds of every wrong class below the maximum (each <= 1).
            bounded_odds = ops.where(
                ops.logical_and(direct, ops.logical_not(is_label)),
                terms.exp / (terms.total - terms.exp),
                0.0,
            )
            other_odds = ops.sum(bounded_odds, axis=terms.axis, keepdims=True)
            # Per pixel: a single arg-max exists and it is not the label.
            wrong_argmax = ops.logical_and(prediction.label_direct, ops.logical_not(terms.tied))
            argmax_odds = ops.where(wrong_argmax, 1.0 / terms.argmax_others(), 0.0)
            false_class = ops.where(
                ops.logical_and(ops.logical_not(direct), wrong_argmax),
                p * (1.0 - other_odds),
                bounded_odds - p * (other_odds + argmax_odds),
            )
            gradient = gradient + self.beta * false_class
        return gradient

    def _false_class_log_sum(self, prediction, log_1mpt):
        """`sum_{i != t} log(1 - p_i)` from logits, without a per-class label mask.

        Sums `log1p(-p_i)` over the classes below the maximum, removes the
        label's term when the label is among them (|term| <= log 2, and the
        loss is then >= log 2, so no precision is lost) and adds the arg-max's
        term when the arg-max is a wrong class.
        """
        terms = prediction.terms
        below_sum = ops.sum(
            ops.where(
                terms.direct_mask(), ops.log1p(-ops.minimum(terms.probabilities(), 0.5)), 0.0
            ),
            axis=prediction.axis,
            keepdims=True,
        )
        argmax_term = ops.where(terms.tied, 0.0, terms.log_argmax_complement)
        correction = ops.where(prediction.label_direct, argmax_term - log_1mpt, 0.0)
        return below_sum + correction

    def sparse_loss(self, labels, prediction):
        axis = prediction.axis
        log_pt, log_1mpt = prediction.gathered(labels)
        loss = -log_pt
        from_logits = isinstance(prediction, _base._LogitsPrediction)
        shortcut = self.gamma == 0 or (self.gamma == 1 and prediction.sums_to_one)
        needs_mask = (self.beta and not from_logits) or (self.alpha and not shortcut)
        if needs_mask:
            rank = len(labels.shape)
            classes = _base.broadcast_class_vector(
                list(range(prediction.num_classes)), rank, axis
            )
            is_label = ops.equal(classes, ops.cast(labels, "float32"))
        if self.beta and from_logits:
            loss = loss - self.beta * self._false_class_log_sum(prediction, log_1mpt)
        elif self.beta:
            others = ops.where(is_label, 0.0, prediction.log_1mp())
            loss = loss - self.beta * ops.sum(others, axis=axis, keepdims=True)
        if self.alpha:
            if self.gamma == 0:
                focal = float(prediction.num_classes)
            elif shortcut:
                # sum_{i != t} p_i = 1 - p_t, so the focal terms add to 2 (1 - p_t).
                focal = 2.0 * ops.exp(log_1mpt)
            else:
                powers = self._focal_power(prediction.log_p())
                others = ops.sum(ops.where(is_label, 0.0, powers), axis=axis, keepdims=True)
                focal = others + self._focal_power(log_1mpt)
            loss = loss + self.alpha * focal
        return loss

    def get_config(self):
        config = super().get_config()
        config.update({"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma})
        return config
