"""Every loss takes what Keras's own losses take as `y_true`/`y_pred`: tensors, variables, NumPy arrays and Python
lists, on every backend, eagerly and compiled, with the same value as from NumPy arrays."""

import keras
import numpy as np
import pytest

from keras_focal import losses
from tests.helpers import execution_modes

pytestmark = pytest.mark.backend_agnostic

SOFTMAX_LOSSES = {
    "CrossEntropy": lambda: losses.CrossEntropy(from_logits=True),
    "WeightedCrossEntropy": lambda: losses.WeightedCrossEntropy([1.0, 2.0, 0.5, 3.0], from_logits=True),
    "CategoricalFocalLoss": lambda: losses.CategoricalFocalLoss(gamma=2.0, from_logits=True),
    "DualFocalLoss": lambda: losses.DualFocalLoss(from_logits=True),
    "DiceLoss": lambda: losses.DiceLoss(from_logits=True),
    "TverskyLoss": lambda: losses.TverskyLoss(from_logits=True),
    "CombinedLoss": lambda: losses.CombinedLoss([losses.DiceLoss(from_logits=True), losses.CrossEntropy(from_logits=True)]),
}


def _inputs(binary):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 3, 3, 1 if binary else 4)).astype("float32")
    labels = (rng.random((2, 3, 3, 1)) > 0.5).astype("float32") if binary else rng.integers(0, 4, (2, 3, 3)).astype("int32")
    return labels, logits


def _kinds(labels, logits):
    """(name, y_true, y_pred) in each form a user may hand a Keras loss on this backend."""
    yield "list", labels.tolist(), logits.tolist()
    yield "tensor", keras.ops.convert_to_tensor(labels), keras.ops.convert_to_tensor(logits)
    yield "keras.Variable", keras.Variable(labels.astype("float32"), trainable=False), keras.Variable(logits)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        yield "tf.Variable", tf.Variable(labels), tf.Variable(logits)
    elif backend == "torch":
        import torch

        yield "torch.nn.Parameter", torch.tensor(labels), torch.nn.Parameter(torch.tensor(logits))


def _value(loss, y_true, y_pred):
    return float(keras.ops.convert_to_numpy(loss(y_true, y_pred)))


@pytest.mark.parametrize("name", list(SOFTMAX_LOSSES) + ["BinaryFocalLoss"])
def test_every_input_kind_gives_the_numpy_value(name):
    binary = name == "BinaryFocalLoss"
    loss = losses.BinaryFocalLoss(gamma=2.0, from_logits=True) if binary else SOFTMAX_LOSSES[name]()
    labels, logits = _inputs(binary)
    expected = _value(loss, labels, logits)
    assert np.isfinite(expected)
    for kind, y_true, y_pred in _kinds(labels, logits):
        np.testing.assert_allclose(_value(loss, y_true, y_pred), expected, rtol=1e-6, err_msg=kind)


@pytest.mark.parametrize("mode", execution_modes())
@pytest.mark.parametrize("name", list(SOFTMAX_LOSSES))
def test_variables_as_predictions_compiled(name, mode):
    loss = SOFTMAX_LOSSES[name]()
    labels, logits = _inputs(False)
    expected = _value(loss, labels, logits)
    backend = keras.backend.backend()
    if mode == "eager":
        value = _value(loss, labels, keras.Variable(logits))
    elif backend == "tensorflow":
        import tensorflow as tf

        variable = tf.Variable(logits)
        value = float(tf.function(lambda: loss(labels, variable), jit_compile=True)())
    else:  # jax: the traced arrays of a jitted train step
        import jax

        value = float(jax.jit(lambda y, p: loss(y, p))(labels, logits))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
