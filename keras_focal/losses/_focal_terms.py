"""The focal factor `(1 - p + epsilon)^gamma` and its derivatives, shared by the sigmoid and softmax focal losses.

- `modulating_factor`: the factor from an exact `log(1 - p)` (the
  probability paths, and the textbook formula functions);
- `focal_value_and_derivative`, `focal_modulation`: `phi(l) = l (1 - p +
  epsilon)^gamma` of a cross-entropy `l = -log p` with its closed-form
  derivative (the logits paths), finite where `1 - p` underflows;
- `soft_focal_loss`: the softmax focal loss of soft labels with its
  closed-form gradient;
- `MULTIPLIED_GAMMAS`, `power_below`: the exponents multiplied out.
"""

from __future__ import annotations

import math

from keras import ops

from keras_focal.losses import _numerics
from keras_focal.losses._numerics import TINY, log_floored
from keras_focal.losses._softmax import SoftmaxStatistics, with_derivative, with_gradient
from keras_focal.types import TensorLike


def modulating_factor(log_one_minus_p, gamma, epsilon):
    """`(1 - p + epsilon)^gamma` from `log(1 - p)`; None when it is 1 (`gamma = 0`)."""
    if gamma == 0:
        return None
    if epsilon > 0:
        log_one_minus_p = _numerics.log_add_exp(log_one_minus_p, math.log(epsilon))
    return ops.exp(gamma * log_one_minus_p)


# Focusing exponents the focal losses multiply out (no transcendental); other
# values go through log space.
MULTIPLIED_GAMMAS = (1.0, 2.0, 3.0)


def power_below(base, gamma):
    """`base^(gamma - 1)` for `gamma` in `MULTIPLIED_GAMMAS`; None for 1 (no factor)."""
    if gamma == 1.0:
        return None
    return base if gamma == 2.0 else base * base


def focal_value_and_derivative(cross_entropy, p, q, gamma, epsilon):
    """`(phi(l), phi'(l))` for `phi(l) = l * (1 - p + epsilon)^gamma`, `l = -log p`.

    `phi'(l) = f + gamma * l * p * (1 - p + epsilon)^(gamma - 1)` with
    `f = (1 - p + epsilon)^gamma`. `p` and `q = 1 - p` must be given with their
    relative precision (`q` is tiny where `p` rounds to 1). Integer `gamma` in
    `MULTIPLIED_GAMMAS` is multiplied out and `gamma = 0.5` is a square root (no
    transcendental); other values are taken in log space, where the negative power `gamma - 1` stays finite (and
    the product 0 in the limit) where `1 - p` underflows; autodiff of the
    textbook form gives `0 * inf` there.
    """
    l = cross_entropy  # noqa: E741 (the paper's name for the cross-entropy)
    base = q + epsilon if epsilon else q
    if gamma in MULTIPLIED_GAMMAS:
        power = power_below(base, gamma)
        factor = base if power is None else base * power
        focus = l * p if power is None else l * p * power
    elif gamma == 0.5:  # the stability paper's value: a square root, no transcendental
        factor = ops.sqrt(ops.maximum(base, 0.0))
        # l <= q / (1 - q) and l = 0 where q = 0, so l * q^(-1/2) is finite (0 there).
        focus = l * p * ops.rsqrt(ops.maximum(base, TINY))
    else:
        log_base = log_floored(base)
        factor = ops.exp(gamma * log_base)
        focus = ops.exp((gamma - 1.0) * log_base + log_floored(l) - l)
    return l * factor, factor + gamma * focus


def focal_modulation(cross_entropy, gamma, epsilon):
    """`phi(l) = l * (1 - exp(-l) + epsilon)^gamma` with a closed-form derivative.

    `l = -log p` is a cross-entropy (per pixel, or per class), so
    `1 - p = -expm1(-l)` keeps its relative precision as `p -> 1`; see
    `focal_value_and_derivative` for the derivative.
    """
    gamma, epsilon = float(gamma), float(epsilon)
    q = -ops.expm1(-cross_entropy)
    p = 1.0 - q  # multiplies a term that the factor dominates near p = 0
    value, derivative = focal_value_and_derivative(cross_entropy, p, q, gamma, epsilon)
    return with_derivative(value, cross_entropy, derivative)


def soft_focal_loss(logits: TensorLike, y, axis: int, gamma, epsilon, class_weights=None):
    """`sum_k w_k y_k phi(-log p_k)` per pixel (keepdims), any dense labels, closed-form gradient.

    With `l_k = -log p_k = log S - s_k` and `dl_k/dx_j = p_j - [j = k]`, the
    gradient is `p_j sum_k c_k - c_j` with `c_k = w_k y_k phi'(l_k)`: one
    exponential per class (the softmax's) and products, no logarithm or
    `expm1` per class for `gamma` in `MULTIPLIED_GAMMAS`. `1 - p_k` is
    `1 - p_k` below the arg-max (`p_k <= 1/2` there) and `(S - 1) / S` at it,
    with `S - 1` the plain sum of the other exponentials (`SoftmaxStatistics`).
    The statistics are those of the logits themselves (no stop-gradient), so
    that the attached gradient is differentiable again.
    """
    stats = SoftmaxStatistics(logits, y, axis, hard=False)
    p = stats.probabilities()
    value, derivative = focal_value_and_derivative(
        stats.class_cross_entropies(), p, stats.complements(), float(gamma), float(epsilon)
    )
    weights = y if class_weights is None else y * class_weights
    loss = ops.sum(weights * value, axis=axis, keepdims=True)
    weighted = weights * derivative
    slope = p * ops.sum(weighted, axis=axis, keepdims=True) - weighted
    return with_gradient(loss, logits, slope, axis)
