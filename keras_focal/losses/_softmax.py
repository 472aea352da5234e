"""Softmax statistics from logits, shared by the categorical losses.

Every categorical loss here is computed from one set of per-pixel statistics
of the logits `x` and dense labels `y` (integer labels are turned into one-hot
labels first, by a comparison and a cast):

- the arg-max `a`, decided once by `ops.argmax` (an integer, so no compiler
  rounding can make two consumers of a pixel disagree about it), `s = x - x_a`
  with `s_a` the literal 0, `e = exp(s)` (`e_a = 1` exactly);
- `S - 1 = sum_{k != a} e_k`, the other exponentials summed without
  cancellation. Then `log S = log1p(S - 1)` and `-log p_t = log S - s_t`
  keep full relative precision where `p_t` rounds to 1 (a confident, correct
  pixel), and the values are exact for any logit margin elsewhere.

That is one arg-max, one exponential per class and two or three reductions:
what cross-entropy itself costs. The losses that depend on `p_t` only (CE, WCE,
focal) are scalar functions of the cross-entropy `l = -log p_t`, so their
gradient is `phi'(l) * (p - y)`: autodiff differentiates the cross-entropy
graph and the focal modulation gets a closed-form derivative on the per-pixel
tensor only (`bench/losses.py` measures the cost on every path). With soft
labels the focal loss is a sum of such functions over the classes;
`keras_focal.losses._focal_terms.soft_focal_loss` gives it a closed-form
gradient as well. The focal factors themselves live there.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_focal.losses._numerics import TINY, log_floored
from keras_focal.types import TensorLike


def one_hot(labels, num_classes: int, axis: int):
    """Float32 one-hot labels from int32 class indices with a size-1 class axis."""
    class_ids = class_indices(num_classes, len(labels.shape), axis)
    return ops.cast(ops.equal(class_ids, labels), "float32")


def labels_are_one_hot(y, axis: int):
    """Scalar boolean: every pixel of the dense labels `y` is one-hot.

    `sum_k y_k = 1`, `sum_k y_k^2 = 1` and `y >= 0` hold together exactly for
    one-hot rows (then `0 <= y_k <= 1`, so `y_k^2 <= y_k` with equality only
    at 0 and 1). Three reductions over the labels alone; the losses use it to
    send hard dense labels down the per-pixel path.
    """
    total = ops.sum(y, axis=axis)
    squares = ops.sum(y * y, axis=axis)
    return ops.logical_and(
        ops.all(ops.logical_and(ops.equal(total, 1.0), ops.equal(squares, 1.0))),
        ops.all(y >= 0),  # not ops.min: it refuses an empty batch
    )


class SoftmaxStatistics:
    """Per-pixel softmax statistics of `logits` against dense labels `y`.

    Two frames. By default the shift is the maximum (a constant for autodiff:
    every value is shift-invariant), `s = x - m`, and `S - 1 = sum_k (e_k -
    y_k) + (Y - 1)`, which for a hard label at the arg-max is the plain sum of
    the other exponentials (its own term is `1 - 1 = 0`): cross-entropy's cost,
    and no discrete decision is taken from the floats. Where one is needed
    (`arg_max_frame`, implied by `complements`: which class's `log(1 - p)` is
    `log(others) - log S`, is the label the arg-max), the frame is the arg-max
    `a`, decided once from an integer index (`ops.argmax`) and reused by every
    quantity: `s = x - x_a` with `s_a` the
    literal 0, so `e_a = exp(s_a) = 1` exactly and `S - 1` is the plain sum of
    the other exponentials. Under XLA a producer of the logits (an ACW scale,
    a layer) is recomputed inside each consumer and may round differently
    there; a decision taken from the floats (`s < 0`, `s_t == 0`) can then
    flip between two consumers of one pixel, while an index cannot. The shift
    `x_a` is differentiable: every value is shift-invariant, and with `s_a`
    held at 0 autodiff differentiates the exact function along `s_k = x_k -
    x_a`, to every order.

    Args:
        logits: float32 logits.
        y: float32 labels of the logits' shape (one-hot or soft).
        axis: the class axis (non-negative).
        hard: True when `y` is known to be one-hot (integer labels): then
            `Y = 1` needs no reduction.
        complements: also provide `log_complements()`, `log(1 - p_k)` for
            every class, exact for any margin (the Dual Focal Loss needs it).
        arg_max_frame: the arg-max frame (`is_max`, `label_weight_on_max`)
            without the complements; default: `complements`.
    """

    def __init__(self, logits: TensorLike, y, axis: int, hard, complements: bool = False, arg_max_frame=None) -> None:
        self.axis, self.y = axis, y
        self._label_logit = None
        self.label_sum = 1.0 if hard else self._sum(y)
        if arg_max_frame is None:
            arg_max_frame = complements
        if not arg_max_frame:
            # The cheap frame (cross-entropy's cost: one max): no decision reads
            # the floats, so a compiler's rounding moves values by ulps only.
            self.is_max = None
            self.shifted = logits - ops.stop_gradient(class_max(logits, axis))
            self.exp = ops.exp(self.shifted)
            # S - Y: for a hard label at the arg-max its own term is 1 - 1 = 0, so this is
            # the sum of the other exponentials without cancellation. S - 1 >= 0; no clamp,
            # whose subgradient JAX splits where it rounds to 0.
            self.others = self._sum(self.exp - y) + (self.label_sum - 1.0)
            self.log_total = ops.log1p(self.others)
            return
        self.is_max = argmax_mask(logits, axis)
        top = self._sum(ops.where(self.is_max, logits, 0.0))  # x_a
        self.shifted = ops.where(self.is_max, 0.0, logits - top)
        if complements:
            self.exp = self._second_frame_exp()
        else:
            self.exp = ops.exp(self.shifted)
            self.others = self._sum(ops.where(self.is_max, 0.0, self.exp))
        # S = 1 + others, the others summed without cancellation.
        self.log_total = ops.log1p(self.others)

    def _second_frame_exp(self):
        """`exp(s)`, with the sum of the other exponentials kept in log space.

        `1 - p_a = (sum of the others) / S` underflows once every other class
        is ~87 nats below the arg-max. The other exponentials are therefore
        taken relative to the second-largest logit `m2` (their sum is then
        >= 1) and scaled back by `exp(m2)`, so that `log(sum of the others) =
        m2 + log(sum exp(s_k - m2))` is exact for any margin at the price of
        one more max, not one more exponential.
        """
        below = ops.logical_not(self.is_max)
        # A constant for autodiff: the value is invariant to the frame.
        second, relative, relative_sum = second_frame(self.shifted, below, self.axis, constant_frame=True)
        scale = ops.exp(second)
        self.others = relative_sum * scale  # sum of the exponentials of the other classes
        self.log_others = second + ops.log(ops.maximum(relative_sum, TINY))
        return ops.where(below, relative * scale, 1.0)

    def log_complements(self):
        """`log(1 - p_k)` for every class (needs `complements=True`).

        Every class but the arg-max has `p_k <= 1/2` (`p_k <= p_a` and
        `p_k + p_a <= 1`), where `log1p(-p_k)` is exact; the arg-max uses
        `log(sum of the others) - log S`.
        """
        # The arg-max's p is replaced before log1p, so that no branch (and no
        # derivative of one, to any order) sees log1p(-1).
        p = ops.where(self.is_max, 0.0, self.probabilities())
        return ops.where(self.is_max, self.log_others - self.log_total, ops.log1p(-p))

    def _sum(self, x):
        return ops.sum(x, axis=self.axis, keepdims=True)

    def cross_entropy(self, class_weights=None):
        """`-sum_k w_k y_k log p_k` per pixel (keepdims).

        Args:
            class_weights: per-class weights broadcastable along the class
                axis, or None for 1.
        """
        if class_weights is None:
            return self.label_sum * self.log_total - self.label_shifted_logit()
        weighted = self.y * class_weights
        return self._sum(weighted) * self.log_total - self._sum(weighted * self.shifted)

    def label_shifted_logit(self):
        """`s_t = sum_k y_k s_k`, the shifted logit of a hard label (cached).

        Exactly 0 where the label is the arg-max (`s_a` is the literal 0).
        """
        if self._label_logit is None:
            self._label_logit = self._sum(self.y * self.shifted)
        return self._label_logit

    def label_weight_on_max(self):
        """`y_a`, the labels' weight on the arg-max (0 or 1 for hard labels, decided by index; needs the arg-max frame)."""
        return self._sum(ops.where(self.is_max, self.y, 0.0))

    def log_label_complement(self):
        """`log(1 - p_t)` for hard labels, with an exact gradient.

        `Q = sum_k (1 - y_k) e_k` is the sum of the other exponentials, taken
        directly: its derivative with respect to the label's logit is exactly
        0 (in `D - expm1(s_t)` two roundings of `e_t` would have to cancel,
        and their one-ulp difference over a tiny `Q` swamps the gradient of
        `(1 - p_t)^gamma` where `1 - p_t` is tiny).
        """
        leave_label_out = self._sum((1.0 - self.y) * self.exp)
        return log_floored(leave_label_out) - self.log_total

    def class_cross_entropies(self):
        """`-log p_k` for every class, >= 0 (exact for the arg-max too)."""
        values = self.log_total - self.shifted
        return ops.where(values > 0, values, 0.0)  # where, not maximum: no split subgradient

    def probabilities(self):
        return self.exp * ops.exp(-self.log_total)

    def complements(self):
        """`1 - p_k` for every class with its relative precision: `(S - 1) / S` at the arg-max.

        In the maximum's frame the arg-max is where `s >= 0`; a compiler's
        rounding can only move that choice between classes whose two formulas
        agree to float32 rounding (near ties), so the value stays continuous.
        """
        p = self.probabilities()
        if self.is_max is not None:
            return ops.where(self.is_max, self.others * ops.exp(-self.log_total), 1.0 - p)
        # 1 - p_a = (S - e_a) / S, with S - e_a = (S - 1) - s_a to first order in s_a = 0: the
        # same value, and the derivative of 1 - p_a (which the Hessian needs), not that of
        # (S - 1) / S. S - 1 can round a hair below 0 for soft labels whose sum rounds below 1.
        top = ops.maximum(self.others - self.shifted, 0.0) * ops.exp(-self.log_total)
        return ops.where(self.shifted >= 0, top, 1.0 - p)


def argmax_mask(logits: TensorLike, axis: int):
    """Boolean mask of one arg-max per pixel (the first of tied maxima), from an integer index.

    The one place where "which class is the largest" is decided: every
    statistic of a pixel reads this mask, so two consumers of one pixel can
    never disagree, whatever rounding a compiler gives the logits in each.
    """
    num_classes = logits.shape[axis]
    index = ops.expand_dims(ops.argmax(logits, axis=axis), axis)
    return ops.equal(class_indices(num_classes, len(logits.shape), axis), ops.cast(index, "int32"))


def class_indices(num_classes: int, rank, axis: int):
    """int32 `[0, ..., num_classes - 1]` along `axis` of a rank-`rank` tensor."""
    return ops.reshape(
        ops.arange(num_classes, dtype="int32"),
        [num_classes if i == axis else 1 for i in range(rank)],
    )


def class_max(x, axis: int):
    """`max` over the class axis (kept) that also takes an empty batch.

    Keras's eager TensorFlow `max` refuses empty tensors; the `initial`
    value keeps an empty batch's loss 0, like Keras's own losses.
    """
    return ops.max(x, axis=axis, keepdims=True, initial=-np.inf)


def second_largest(shifted: TensorLike, below_max: TensorLike, axis: int):
    """The largest shifted logit below the maximum (0 where every class is tied)."""
    second = class_max(ops.where(below_max, shifted, -np.inf), axis)
    return ops.where(ops.isfinite(second), second, 0.0)


def second_frame(shifted: TensorLike, below_max: TensorLike, axis: int, constant_frame: bool = False):
    """The classes below the maximum in the frame of the second-largest logit: `(m2, exp(s - m2), sum)`.

    `m2` is the second-largest shifted logit (`second_largest`), so the sum
    of `exp(s_k - m2)` over the classes below the maximum is >= 1 and
    nothing underflows however far the maximum is ahead: `sum of the
    non-maximal exponentials = exp(m2) * sum`, `log of it = m2 + log(sum)`.
    The relative exponentials are 0 at the maximum (exp of 0 there: no
    overflow, no 0 * inf). `constant_frame`: `m2` is a constant for
    autodiff (the values are invariant to the frame).
    """
    second = second_largest(shifted, below_max, axis)
    if constant_frame:
        second = ops.stop_gradient(second)
    relative = ops.where(below_max, ops.exp(ops.where(below_max, shifted - second, 0.0)), 0.0)
    return second, relative, ops.sum(relative, axis=axis, keepdims=True)


def second_frame_log_sum(shifted: TensorLike, below_max: TensorLike, axis: int):
    """`(m2, log sum_k exp(s_k - m2))` over the classes below the maximum (see `second_frame`)."""
    second, _, total = second_frame(shifted, below_max, axis)
    return second, ops.log(ops.maximum(total, TINY))


@ops.custom_gradient
def _attach_derivative(argument, value, derivative):
    """`value`, with `d/d argument = derivative` (broadcast against the upstream gradient) and no other gradient."""

    def gradient(*upstream_and_inputs, upstream=None):
        if upstream is None:  # TensorFlow, JAX: the upstream gradient alone
            (upstream,) = upstream_and_inputs
            slope = derivative
        else:  # torch: the inputs as saved (with their autograd history), upstream by name
            slope = upstream_and_inputs[2]
        # `slope` is the derivative tensor itself, built from the argument by
        # ordinary ops: differentiating this product again follows its graph,
        # so second derivatives are exact.
        return upstream * slope, None, None

    return ops.add(value, 0.0), gradient


def with_derivative(value, argument, derivative):
    """`value` whose derivative with respect to `argument` is `derivative`, to every order.

    The closed-form `derivative` must be computed from `argument` with
    ordinary (differentiable) ops: the first derivative is then that tensor,
    and autodiff of it (Hessians, Hessian-vector products, double backprop)
    differentiates its graph. `value` carries no gradient of its own, and no
    cotangent is sent into the graph of `derivative` in a first-order
    backward pass, so the cost is that of the closed form alone. Built on
    `keras.ops.custom_gradient`, which works on every backend, under
    `tf.function(jit_compile=True)`, `jax.jit` and inside `ops.cond`.

    (`sg(value) + sg(derivative) * (argument - sg(argument))`, the usual way
    to attach a derivative, is exact to first order only: its second
    derivative is 0.)
    """
    return _attach_derivative(argument, ops.stop_gradient(value), derivative)


def with_gradient(value, logits: TensorLike, gradient, axis: int):
    """Per-pixel `value` (keepdims) whose gradient with respect to `logits` is `gradient`.

    The vector form of `with_derivative`: the upstream gradient of each
    pixel is broadcast along the class axis. Exact to every order when
    `gradient` is built from `logits` by ordinary ops.
    """
    # The upstream gradient of a pixel (size-1 class axis) times `gradient` has the logits' shape.
    return _attach_derivative(logits, ops.stop_gradient(value), gradient)
