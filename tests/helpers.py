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
