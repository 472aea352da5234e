"""The shared softmax statistics (`keras_focal.losses._softmax`): every label form
agrees, soft labels have exact gradients, and the precision claims hold."""

import numpy as np
import pytest
from keras import ops

from keras_focal import losses
from keras_focal.losses import _softmax
from tests import reference
from tests.helpers import central_differences, to_numpy, value_and_gradient

pytestmark = pytest.mark.backend_agnostic

WEIGHTS = [0.1, 0.2, 0.3, 0.4]

# (loss, float64 reference of the per-pixel loss from (y, log p, log(1 - p)))
CASES = {
    "ce": (
        lambda: losses.CrossEntropy(from_logits=True, reduction="sum"),
        lambda y, lp, lq: reference.weighted_cross_entropy(y, lp),
    ),
    "wce": (
        lambda: losses.WeightedCrossEntropy(WEIGHTS, from_logits=True, reduction="sum"),
        lambda y, lp, lq: reference.weighted_cross_entropy(y, lp, WEIGHTS),
    ),
    "fl-2": (
        lambda: losses.CategoricalFocalLoss(gamma=2.0, alpha=WEIGHTS, from_logits=True, reduction="sum"),
        lambda y, lp, lq: reference.categorical_focal(y, lp, lq, 2.0, WEIGHTS, 0.0),
    ),
    "fl-0.5-eps": (
        lambda: losses.CategoricalFocalLoss(gamma=0.5, epsilon=1e-3, from_logits=True, reduction="sum"),
        lambda y, lp, lq: reference.categorical_focal(y, lp, lq, 0.5, None, 1e-3),
    ),
    "dfl": (
        lambda: losses.DualFocalLoss(from_logits=True, reduction="sum"),
        lambda y, lp, lq: reference.dual_focal(y, lp, lq),
    ),
    "dfl-0.5": (
        lambda: losses.DualFocalLoss(gamma=0.5, beta=2.0, from_logits=True, reduction="sum"),
        lambda y, lp, lq: reference.dual_focal(y, lp, lq, 1.0, 2.0, 0.5),
    ),
}


def _soft_labels(rng, n, num_classes=4):
    soft = rng.dirichlet(np.ones(num_classes), size=n)
    soft[: n // 2] = 0.9 * np.eye(num_classes)[rng.integers(0, num_classes, n // 2)] + 0.1 / num_classes
    return soft.astype(np.float32)


@pytest.mark.parametrize("name", sorted(CASES))
def test_soft_label_gradients_match_float64_finite_differences(name):
    make_loss, reference_loss = CASES[name]
    rng = np.random.default_rng(21)
    logits = rng.uniform(-6, 6, size=(10, 4)).astype(np.float32)
    soft = _soft_labels(rng, 10)
    loss = make_loss()
    value, gradient = value_and_gradient(lambda v: loss(soft, v), logits)

    def total(z):
        return reference_loss(soft.astype(np.float64), *reference.softmax_logs(z)).sum()

    assert float(value) == pytest.approx(total(logits.astype(np.float64)), rel=1e-5)
    np.testing.assert_allclose(gradient, central_differences(total, logits), rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_integer_and_one_hot_labels_agree_in_value_and_gradient(name):
    make_loss, _ = CASES[name]
    rng = np.random.default_rng(8)
    logits = rng.uniform(-40, 40, size=(64, 4)).astype(np.float32)
    logits[:6] = [[90, -90, 0, 1], [1e4, 0, 0, 0], [0, 0, 0, 0], [5, 5, -3, 0], [300, 200, 0, -1], [-7, 7, 7, 7]]
    labels = rng.integers(0, 4, size=64)
    labels[:6] = [1, 3, 2, 0, 1, 2]
    loss = make_loss()
    value_int, gradient_int = value_and_gradient(lambda v: loss(labels, v), logits)
    one_hot = np.eye(4, dtype=np.float32)[labels]
    value_dense, gradient_dense = value_and_gradient(lambda v: loss(one_hot, v), logits)
    assert float(value_int) == pytest.approx(float(value_dense), rel=1e-5)
    assert np.all(np.isfinite(gradient_int))
    np.testing.assert_allclose(gradient_int, gradient_dense, rtol=1e-4, atol=1e-6)


def test_confident_pixel_cross_entropy_keeps_relative_precision():
    """-log p_t = log1p(sum of the other exponentials) where p_t rounds to 1."""
    logits = np.array([[30.0, 0.0, -5.0], [60.0, 10.0, 10.0]], np.float32)
    loss = losses.CrossEntropy(from_logits=True, reduction=None)
    expected = np.log1p(np.exp(np.array([-30.0, -50.0])) + np.exp(np.array([-35.0, -50.0])))
    for labels in (np.array([0, 0]), np.eye(3, dtype=np.float32)[[0, 0]]):
        np.testing.assert_allclose(to_numpy(loss(labels, logits)), expected, rtol=1e-6)


def test_unnormalised_dense_labels_are_not_assumed_to_sum_to_one():
    """-sum_i y_i log p_i for any y (multi-hot, a zero row), as Keras's CCE."""
    logits = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.0, 2.0, 2.0]], np.float32)
    labels = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.5]], np.float32)
    log_p, log_q = reference.softmax_logs(logits)
    expected = reference.weighted_cross_entropy(labels, log_p)
    loss = losses.CrossEntropy(from_logits=True, reduction=None)
    np.testing.assert_allclose(to_numpy(loss(labels, logits)), expected, rtol=1e-6, atol=1e-7)


def test_one_hot_builds_float_labels_along_any_axis():
    labels = ops.convert_to_tensor(np.array([[[2]], [[0]]], np.int32))  # (2, 1, 1)
    encoded = to_numpy(_softmax.one_hot(labels, 3, axis=1))
    assert encoded.dtype == np.float32
    np.testing.assert_array_equal(encoded[:, :, 0], [[0, 0, 1], [1, 0, 0]])


@pytest.mark.parametrize(
    "rows,expected",
    [
        ([[0, 1, 0], [1, 0, 0]], True),
        ([[0, 1, 0], [0.5, 0.5, 0]], False),  # a soft row
        ([[1, 1, 0]], False),  # multi-hot
        ([[0, 0, 0], [0, 0, 1]], False),  # an all-zero row takes the general path
        ([[0.5, 0.5, 0.5, -0.5]], False),  # sum 1 and squares 1 exactly, but negative
        ([[0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3]], False),  # label smoothing
    ],
)
def test_labels_are_one_hot(rows, expected):
    y = ops.convert_to_tensor(np.array(rows, np.float32))
    assert bool(to_numpy(_softmax.labels_are_one_hot(y, axis=1))) is expected


EMPTY_BATCH_LOSSES = {
    "ce": lambda logits: losses.CrossEntropy(from_logits=logits),
    "wce": lambda logits: losses.WeightedCrossEntropy([0.2, 0.3, 0.5], from_logits=logits),
    "fl": lambda logits: losses.CategoricalFocalLoss(from_logits=logits),
    "fl-0.5-eps": lambda logits: losses.CategoricalFocalLoss(gamma=0.5, epsilon=1e-3, from_logits=logits),
    "dfl": lambda logits: losses.DualFocalLoss(from_logits=logits),
    "dfl-2": lambda logits: losses.DualFocalLoss(gamma=2.0, from_logits=logits),
    "bfl": lambda logits: losses.BinaryFocalLoss(from_logits=logits),
}


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("labels", ["integer", "one-hot"])
@pytest.mark.parametrize("name", sorted(EMPTY_BATCH_LOSSES))
def test_an_empty_batch_gives_zero_with_a_zero_gradient(name, labels, from_logits):
    """Like Keras's own losses (the categorical ones used to raise "Cannot compute the max of an empty tensor")."""
    if name == "bfl" and labels == "integer":
        pytest.skip("the sigmoid loss takes dense labels only")
    y_true = np.zeros((0, 4, 4), np.int32) if labels == "integer" else np.zeros((0, 4, 4, 3), np.float32)
    loss = EMPTY_BATCH_LOSSES[name](from_logits)
    predictions = np.zeros((0, 4, 4, 3), np.float32) + (0.0 if from_logits else 1 / 3)
    value, gradient = value_and_gradient(lambda x: loss(y_true, x), predictions)
    assert float(value) == 0.0
    assert gradient.shape == (0, 4, 4, 3)
