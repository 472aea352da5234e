"""CrossEntropy and WeightedCrossEntropy."""

import keras
import numpy as np
import pytest

from keras_focal.losses import CrossEntropy, WeightedCrossEntropy
from tests import reference
from tests.helpers import categorical_inputs, to_numpy

pytestmark = pytest.mark.backend_agnostic


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("weights", [None, [0.1, 0.2, 0.3, 0.4]])
def test_matches_reference(sparse, weights):
    labels, logits = categorical_inputs()
    one_hot = np.eye(4, dtype=np.float32)[labels]
    loss = WeightedCrossEntropy(weights, from_logits=True, reduction=None)
    log_p, _ = reference.softmax_logs(logits)
    expected = reference.weighted_cross_entropy(one_hot, log_p, weights)
    np.testing.assert_allclose(
        to_numpy(loss(labels if sparse else one_hot, logits)), expected, rtol=1e-5, atol=1e-37
    )


def test_cross_entropy_equals_keras():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=5, size=(3, 6, 6, 5)).astype(np.float32)
    masks = rng.integers(0, 5, size=(3, 6, 6))
    keras_sparse = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    keras_dense = keras.losses.CategoricalCrossentropy(from_logits=True)
    ours = CrossEntropy(from_logits=True)
    assert float(ours(masks, logits)) == pytest.approx(float(keras_sparse(masks, logits)), rel=1e-5)
    one_hot = np.eye(5, dtype=np.float32)[masks]
    assert float(ours(one_hot, logits)) == pytest.approx(float(keras_dense(one_hot, logits)), rel=1e-5)


def test_ignore_class_equals_keras():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 5, 5, 3)).astype(np.float32)
    masks = rng.integers(0, 3, size=(2, 5, 5))
    masks[:, :2] = 255
    keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)
    ours = CrossEntropy(from_logits=True, ignore_class=255)
    assert float(ours(masks, logits)) == pytest.approx(float(keras_loss(masks, logits)), rel=1e-5)


def test_weighted_cross_entropy_example_value():
    # label 1 with logits (0, 1): 0.8 * log(1 + e^-1); label 0 with (2, 0): 0.2 * log(1 + e^-2)
    loss = WeightedCrossEntropy([0.2, 0.8], from_logits=True)
    expected = (0.8 * np.log1p(np.exp(-1.0)) + 0.2 * np.log1p(np.exp(-2.0))) / 2
    assert float(loss([1, 0], np.array([[0.0, 1.0], [2.0, 0.0]], np.float32))) == pytest.approx(expected, rel=1e-6)


def test_class_weights_are_validated():
    with pytest.raises(ValueError, match=r"`class_weights` entries must be finite and >= 0"):
        WeightedCrossEntropy([0.5, -0.1])
    with pytest.raises(ValueError, match=r"`class_weights` must be a 1-D sequence"):
        WeightedCrossEntropy(0.5)
    loss = WeightedCrossEntropy([0.5, 0.5], from_logits=True)
    with pytest.raises(ValueError, match=r"one entry per class \(3\)\. Received 2 weights"):
        loss(np.array([0]), np.zeros((1, 3), np.float32))
