"""Log-space probability terms shared by the losses.

Every loss in this package is written in terms of `log p` and `log(1 - p)`.
Computing `log(1 - p)` as `log1p(-p)` (or `log(1 - softmax(x))`) loses all
precision once `p` rounds to 1 in float32 (a logit margin of about 17) and its
gradient becomes `1/0`. Here both logarithms come from the logits:

- sigmoid: `log p = log_sigmoid(x)`, `log(1 - p) = log_sigmoid(-x)`;
- softmax: with `m = max_k x_k`, `e_k = exp(x_k - m)` and `S = sum_k e_k`,
  `log p_i = x_i - m - log S` and `log(1 - p_i) = log(S - e_i) - log S`.
  `S - e_i` is exact for every class but the arg-max, where it would cancel;
  there it is taken as the sum of the *other* exponentials, which is computed
  directly. Exact ties for the maximum (all-zero logits at initialisation)
  keep the differentiable form `S - e_i`, which is exact there because
  `S - e_i >= 1`.

The only approximation is a floor of the float32 smallest normal number on the
arg-max's complement when every other exponential underflows (a margin of
about 87 nats): the probabilities are then 0 and 1 to float32 precision, the
loss terms are 0 and the gradients stay finite.
"""

import numpy as np
from keras import ops

# Smallest positive normal float32: keeps log() and its gradient finite where
# a complement underflows.
TINY = float(np.finfo(np.float32).tiny)


def clip_probabilities(probabilities):
    """Clip probabilities to `[eps, 1 - eps]` with Keras's fuzz factor."""
    from keras import config

    eps = config.epsilon()
    return ops.clip(probabilities, eps, 1.0 - eps)


def sigmoid_log_probabilities(y_pred, from_logits):
    """Returns `(log p, log(1 - p))` for sigmoid outputs or logits."""
    if from_logits:
        return ops.log_sigmoid(y_pred), ops.log_sigmoid(-y_pred)
    p = clip_probabilities(y_pred)
    return ops.log(p), ops.log1p(-p)


def log_add_exp(a, b):
    """`log(exp(a) + exp(b))`, finite and with finite gradients if one is -inf."""
    larger = ops.maximum(a, b)
    return larger + ops.log1p(ops.exp(-ops.abs(a - b)))


def log_mixture(weight, log_a, log_b):
    """`log(weight * exp(log_a) + (1 - weight) * exp(log_b))` for weight in [0, 1].

    Exact for `weight` in {0, 1} (it returns `log_b` or `log_a` without
    rounding), stable for soft weights. `weight` carries no gradient.
    """
    weight = ops.stop_gradient(weight)
    neg_inf = float("-inf")
    log_w = ops.where(weight > 0, ops.log(ops.maximum(weight, TINY)), neg_inf)
    log_1mw = ops.where(
        weight < 1, ops.log(ops.maximum(1.0 - weight, TINY)), neg_inf
    )
    return log_add_exp(log_w + log_a, log_1mw + log_b)


class SoftmaxTerms:
    """Per-pixel softmax statistics from which the log-probabilities follow.

    Args:
        logits: float32 tensor of logits.
        axis: the class axis.
    """

    def __init__(self, logits, axis):
        self.axis = axis
        # No stop_gradient on the shift: log1p(others) below is exact only at
        # shift == max(logits), and its gradient reaches the arg-max through it.
        shift = ops.max(logits, axis=axis, keepdims=True)
        self.shifted = logits - shift
        self.exp = ops.exp(self.shifted)
        self.below_max = self.shifted < 0
        self.total = ops.sum(self.exp, axis=axis, keepdims=True)
        # Sum of the exponentials of every class below the maximum: for the
        # arg-max class this *is* S - e_max, computed without cancellation.
        others = ops.sum(
            ops.where(self.below_max, self.exp, 0.0), axis=axis, keepdims=True
        )
        # With two or more tied maxima S - e_max >= 1: subtraction is exact.
        self._tied = (self.total - others) > 1.5
        # log S = log1p(others) keeps log p_max = -log1p(others) exact when
        # p_max rounds to 1 (log S itself would round to 0).
        self.log_total = ops.where(
            self._tied, ops.log(self.total), ops.log1p(others)
        )
        self._others = others
        self._inverse_total = 1.0 / self.total
        self._direct = None
        self._probabilities = None
        self.log_argmax_complement = (
            ops.log(self.argmax_others()) - self.log_total
        )

    def log_probabilities(self):
        """`log p_i` for every class."""
        return self.shifted - self.log_total

    def log_complements(self, exp=None, direct=None):
        """`log(1 - p_i)`, for every class or for gathered ones.

        Every class below the maximum (and every tied maximum) has
        `p_i <= 1/2`, where `log1p(-p_i)` is exact; the single arg-max uses the
        sum of the other exponentials. With no arguments it is computed for
        all classes; pass the gathered `exp` of one class per pixel (keepdims
        along the class axis) and its `direct` mask (`below_max or tied`) for
        the sparse path.
        """
        if exp is None:
            direct, ratio = self.direct_mask(), self.probabilities()
        else:
            ratio = exp * self._inverse_total
        # The cap changes nothing where `direct` holds (p_i <= 1/2 there); it
        # keeps the unselected arg-max branch away from log1p(-1), whose
        # infinite gradient would turn into NaN through `where`.
        ratio = ops.minimum(ratio, 0.5)
        return ops.where(direct, ops.log1p(-ratio), self.log_argmax_complement)

    def direct_mask(self):
        """True where `S - e_i` is exact (every class but a single arg-max); cached."""
        if self._direct is None:
            self._direct = ops.logical_or(self.below_max, self._tied)
        return self._direct

    def probabilities(self):
        """`p_i = e_i / S` for every class; cached."""
        if self._probabilities is None:
            self._probabilities = self.exp * self._inverse_total
        return self._probabilities

    @property
    def tied(self):
        """Per pixel: two or more classes share the maximum logit."""
        return self._tied

    def argmax_others(self):
        """`S - e_max` of the arg-max, floored at float32's smallest normal."""
        return ops.maximum(self._others, TINY)

    def gather(self, labels):
        """Gathers `(shifted, exp, below_max)` of the labelled class.

        Args:
            labels: int32 class indices with a size-1 class axis.
        """
        shifted = ops.take_along_axis(self.shifted, labels, axis=self.axis)
        return shifted, ops.exp(shifted), shifted < 0


def softmax_from_probabilities(y_pred, axis):
    """Normalised, clipped probabilities (as Keras's categorical losses do)."""
    y_pred = y_pred / ops.sum(y_pred, axis=axis, keepdims=True)
    return clip_probabilities(y_pred)
