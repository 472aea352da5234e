"""Log-space helpers of the sigmoid loss and the clipped-probability path.

Computing `log(1 - p)` as `log1p(-p)` loses all precision once `p` rounds to 1
in float32 (a logit margin of about 17), and its gradient becomes `1/0`. From
logits both logarithms come from `log_sigmoid` (sigmoid) or from the softmax
statistics of `keras_focal.losses._softmax`. Probabilities that cannot be
mapped back to logits are clipped to `[1e-7, 1 - 1e-7]`, as Keras's losses
clip them, and use the helpers below.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from keras_focal.types import TensorLike

# Smallest positive normal float32: keeps log() and its gradient finite where
# a complement underflows.
TINY = float(np.finfo(np.float32).tiny)


def clip_probabilities(probabilities: TensorLike):
    """Clip probabilities to `[eps, 1 - eps]` with Keras's fuzz factor."""
    from keras import config

    eps = config.epsilon()
    return ops.clip(probabilities, eps, 1.0 - eps)


def sigmoid_log_probabilities(y_pred: TensorLike, from_logits):
    """Returns `(log p, log(1 - p))` for sigmoid outputs or logits."""
    if from_logits:
        return ops.log_sigmoid(y_pred), ops.log_sigmoid(-y_pred)
    p = clip_probabilities(y_pred)
    return ops.log(p), ops.log1p(-p)


def log_add_exp(a, b):
    """`log(exp(a) + exp(b))` for finite `a` and `b`.

    Written as `(a + b) / 2 + |a - b| / 2 + log1p(exp(-|a - b|))`: the same
    value as `max + log1p(exp(-|a - b|))`, but at a tie `a == b` the gradient
    is the exact `(1/2, 1/2)` (the `max` form hands it all to one argument).
    """
    difference = a - b
    magnitude = ops.abs(difference)
    return 0.5 * (a + b) + 0.5 * magnitude + ops.log1p(ops.exp(-magnitude))


def log_mixture(weight, log_a, log_b):
    """`log(weight * exp(log_a) + (1 - weight) * exp(log_b))` for weight in [0, 1].

    Exact for `weight` in {0, 1} (it returns `log_b` or `log_a` without
    rounding), stable for soft weights. `weight` carries no gradient.
    """
    weight = ops.stop_gradient(weight)
    log_w = ops.log(ops.maximum(weight, TINY))
    log_1mw = ops.log(ops.maximum(1.0 - weight, TINY))
    mixed = log_add_exp(log_w + log_a, log_1mw + log_b)
    return ops.where(weight >= 1, log_a, ops.where(weight <= 0, log_b, mixed))


def softmax_from_probabilities(y_pred: TensorLike, axis: int):
    """Normalised, clipped probabilities (as Keras's categorical losses do)."""
    y_pred = y_pred / ops.sum(y_pred, axis=axis, keepdims=True)
    return clip_probabilities(y_pred)


def log_floored(x):
    """`log(max(x, TINY))` whose derivatives, to every order, are 0 (not NaN) below the floor.

    `log(maximum(x, TINY))` is the same value, but JAX differentiates `maximum`
    by multiplying with a 0/1 mask, and a second derivative of `log` at the
    floor overflows to inf: `inf * 0 = NaN`. Two `where`s keep the masked
    branch finite.
    """
    above = x > TINY
    return ops.where(above, ops.log(ops.where(above, x, 1.0)), float(np.log(TINY)))
