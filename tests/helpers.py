"""Backend-independent helpers for the tests."""

import keras
import numpy as np
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

        if isinstance(x, torch.Tensor):  # e.g. a bfloat16 tensor, which NumPy cannot hold
            x = x.detach().clone().requires_grad_(True)
        else:
            x = torch.tensor(np.asarray(x), requires_grad=True)
        value = function(x)
        value.backward()
        return value.detach().float().cpu().numpy(), x.grad.detach().float().cpu().numpy()
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
    y_pred = ops.softmax(logits)
    # The backend's own division (torch multiplies by the reciprocal; NumPy divides).
    normalised = to_numpy(ops.divide(y_pred, ops.sum(y_pred, axis=-1, keepdims=True)))
    y_pred = to_numpy(y_pred)
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


def execution_modes():
    """The ways a user's training step runs a loss on the current backend.

    `eager`: op by op. `compiled`: `tf.function(jit_compile=True)` (XLA, what
    Keras uses on a GPU by default) on TensorFlow, `jax.jit` on JAX (what
    `model.fit` always does there). Keras's torch backend does not compile by
    default, so torch runs eagerly only.
    """
    return ["eager"] if keras.backend.backend() == "torch" else ["eager", "compiled"]


def mode_value_and_gradient(function, x, mode):
    """`value_and_gradient` of `function` run eagerly or compiled (see `execution_modes`).

    Compiled, `function` is traced as a whole, so whatever it computes from
    `x` (a scale, a layer) is fused with the loss by XLA, as in a train step.
    """
    if mode == "eager":
        return value_and_gradient(function, x)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def step(v):
            with tf.GradientTape() as tape:
                tape.watch(v)
                value = function(v)
            return value, tape.gradient(value, v)

        value, gradient = step(tf.convert_to_tensor(x))
        return np.asarray(value), np.asarray(gradient)
    if backend == "jax":
        import jax

        value, gradient = jax.jit(jax.value_and_grad(function))(ops.convert_to_tensor(x))
        return np.asarray(value), np.asarray(gradient)
    raise ValueError(f"no compiled mode on the {backend} backend")


def hessian_vector_product(function, x, direction, mode):
    """`H v` of a scalar `function` at `x` by double autodiff, eager or compiled.

    TensorFlow: nested gradient tapes; JAX: forward-over-reverse (`jvp` of
    `grad`, as `jax.hessian` does); torch: `create_graph=True` double backward.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        def product(v, u):
            with tf.GradientTape() as outer:
                outer.watch(v)
                with tf.GradientTape() as inner:
                    inner.watch(v)
                    value = function(v)
                gradient = inner.gradient(value, v)
                projected = tf.reduce_sum(gradient * u)
            return outer.gradient(projected, v)

        if mode == "compiled":
            product = tf.function(product, jit_compile=True)
        return np.asarray(product(tf.convert_to_tensor(x), tf.convert_to_tensor(direction)))
    if backend == "jax":
        import jax

        def product(v, u):
            return jax.jvp(jax.grad(function), (v,), (u,))[1]

        if mode == "compiled":
            product = jax.jit(product)
        return np.asarray(product(ops.convert_to_tensor(x), ops.convert_to_tensor(direction)))
    if backend == "torch":
        import torch

        v = torch.tensor(np.asarray(x), requires_grad=True)
        (gradient,) = torch.autograd.grad(function(v), v, create_graph=True)
        (product,) = torch.autograd.grad((gradient * torch.tensor(np.asarray(direction))).sum(), v)
        return product.detach().float().cpu().numpy()
    raise NotImplementedError(backend)


# Shared by the loss tests ----------------------------------------------------------

RTOL = 1e-5
# Values below float32's smallest normal number cannot hold 1e-5 relative precision.
ATOL = 10 * float(np.finfo(np.float32).tiny)


def binary_inputs():
    x = np.linspace(-30, 30, 241, dtype=np.float32)
    logits = np.concatenate([x, x, x]).reshape(-1, 1)
    labels = np.concatenate(
        [np.ones_like(x), np.zeros_like(x), np.full_like(x, 0.3)]
    ).reshape(-1, 1)
    return labels, logits


def categorical_inputs(num_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.uniform(-30, 30, size=(200, num_classes)).astype(np.float32)
    extremes = np.array(
        [
            [30, -30, -30, -30],
            [-30, 30, -30, -30],
            [30, 30, -30, -30],  # tied maxima
            [0, 0, 0, 0],  # all tied (zero-initialised classifier)
            [30, 29.9999, -30, 0],
            [-30, -30, -30, 30],
        ],
        np.float32,
    )[:, :num_classes]
    logits = np.concatenate([logits, extremes])
    sparse = rng.integers(0, num_classes, size=len(logits))
    sparse[-6:] = [0, 0, 1, 2, 1, 0]
    return sparse, logits


# Logits from far below to far above float32's exp range, and 0.
GRADIENT_LOGITS = np.array(
    [-1e4, -1e3, -104, -88, -38, -17, -1, 0, 1, 17, 38, 88, 104, 1e3, 1e4], np.float32
)
