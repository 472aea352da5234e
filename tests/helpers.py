"""Backend-independent helpers for the tests."""

import numpy as np
import keras
from keras import ops


def value_and_gradient(function, x):
    """Value of `function(x)` (a scalar) and its gradient with respect to `x`."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = function(x)
        return np.asarray(value), np.asarray(tape.gradient(value, x))
    if backend == "jax":
        import jax

        value, gradient = jax.value_and_grad(lambda v: function(v))(ops.convert_to_tensor(x))
        return np.asarray(value), np.asarray(gradient)
    if backend == "torch":
        import torch

        x = torch.tensor(np.asarray(x), requires_grad=True)
        value = function(x)
        value.backward()
        return value.detach().cpu().numpy(), x.grad.detach().cpu().numpy().astype(np.float32)
    raise NotImplementedError(backend)


def to_numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def softmax_inputs(logits, from_logits):
    """`(y_pred, log p, log(1 - p))` for a softmax loss test, logits or probabilities.

    Probabilities are normalised by the backend, as the loss does: near p = 1,
    log p is so ill-conditioned that one ulp of a differently ordered sum shows.
    """
    from tests import reference

    if from_logits:
        return (logits, *reference.softmax_logs(logits))
    y_pred = to_numpy(ops.softmax(logits))
    normalised = to_numpy(y_pred / ops.sum(y_pred, axis=-1, keepdims=True))
    return (y_pred, *reference.probability_logs(normalised))


def sigmoid_inputs(logits, from_logits):
    """`(y_pred, log p, log(1 - p))` for a sigmoid loss test, logits or probabilities."""
    from tests import reference

    if from_logits:
        return (logits, *reference.sigmoid_logs(logits))
    y_pred = to_numpy(ops.sigmoid(logits))
    return (y_pred, *reference.probability_logs(y_pred))


def central_differences(function, x, step=1e-6):
    """Float64 central-difference gradient of a scalar `function` at `x`."""
    base = np.asarray(x, np.float64)
    gradient = np.zeros_like(base)
    for index in np.ndindex(*base.shape):
        plus, minus = base.copy(), base.copy()
        plus[index] += step
        minus[index] -= step
        gradient[index] = (function(plus) - function(minus)) / (2 * step)
    return gradient
