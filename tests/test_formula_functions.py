"""Each loss's public formula function against the float64 textbook reference, and the class against it."""

import numpy as np
import pytest
from keras import ops

from keras_focal import losses
from tests import reference
from tests.helpers import categorical_inputs, to_numpy

pytestmark = pytest.mark.backend_agnostic


def _softmax_case(seed=0):
    labels, logits = categorical_inputs(seed=seed)
    rng = np.random.default_rng(seed)
    soft = rng.dirichlet(np.ones(logits.shape[-1]), size=len(logits)).astype(np.float32)
    hard = np.eye(logits.shape[-1], dtype=np.float32)[labels]
    log_p, log_q = reference.softmax_logs(logits)
    return logits, hard, soft, log_p, log_q


def _f32(*arrays):
    return [ops.convert_to_tensor(np.asarray(a, np.float32)) for a in arrays]


@pytest.mark.parametrize("labels", ["hard", "soft"])
@pytest.mark.parametrize("alpha, beta, gamma", [(1.0, 1.0, 1.0), (0.5, 2.0, 0.5), (1.0, 0.0, 2.0), (0.0, 1.0, 0.0)])
def test_dual_focal_loss_is_eq_7(labels, alpha, beta, gamma):
    _, hard, soft, log_p, log_q = _softmax_case()
    y = hard if labels == "hard" else soft
    ours = losses.dual_focal_terms(*_f32(y, log_p, log_q), alpha=alpha, beta=beta, gamma=gamma)
    expected = reference.dual_focal(y, log_p, log_q, alpha, beta, gamma)
    np.testing.assert_allclose(to_numpy(ours)[:, 0], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("labels", ["hard", "soft"])
@pytest.mark.parametrize("gamma, alpha, epsilon", [(2.0, None, 0.0), (0.5, 0.25, 1e-3), (5.0, [0.1, 0.2, 0.3, 0.4], 0.0)])
def test_categorical_focal_loss_is_eq_6(labels, gamma, alpha, epsilon):
    _, hard, soft, log_p, log_q = _softmax_case(1)
    y = hard if labels == "hard" else soft
    weights = None if alpha is None else ops.convert_to_tensor(np.asarray(alpha, np.float32))
    ours = losses.categorical_focal_terms(*_f32(y, log_p, log_q), gamma=gamma, alpha=weights, epsilon=epsilon)
    expected = reference.categorical_focal(y, log_p, log_q, gamma, alpha, epsilon)
    np.testing.assert_allclose(to_numpy(ours)[:, 0], expected, rtol=1e-5, atol=1e-30)


def test_weighted_cross_entropy_is_eq_4():
    _, _, soft, log_p, _ = _softmax_case(2)
    weights = np.array([0.5, 1.0, 2.0, 4.0], np.float32)
    ours = losses.weighted_cross_entropy_terms(*_f32(soft, log_p, weights))
    np.testing.assert_allclose(to_numpy(ours)[:, 0], reference.weighted_cross_entropy(soft, log_p, weights), rtol=1e-6)


@pytest.mark.parametrize("gamma, alpha, epsilon", [(2.0, 0.25, 0.0), (0.5, None, 1e-3)])
def test_binary_focal_loss_is_the_stability_papers_eq_11(gamma, alpha, epsilon):
    x = np.linspace(-30, 30, 121)[:, None]
    y = np.concatenate([np.ones(40), np.zeros(40), np.full(41, 0.3)])[:, None]
    log_p, log_q = reference.sigmoid_logs(x)
    ours = losses.binary_focal_terms(*_f32(y, log_p, log_q), gamma=gamma, alpha=alpha, epsilon=epsilon)
    np.testing.assert_allclose(to_numpy(ours)[:, 0], reference.binary_focal(y, log_p, log_q, gamma, alpha, epsilon),
                               rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize("loss, formula", [
    (losses.DualFocalLoss(gamma=0.5, reduction=None), lambda y, lp, lq: losses.dual_focal_terms(y, lp, lq, gamma=0.5)),
    (losses.CategoricalFocalLoss(gamma=2.0, reduction=None), lambda y, lp, lq: losses.categorical_focal_terms(y, lp, lq)),
])
@pytest.mark.parametrize("labels", ["integer", "dense"])
def test_the_class_calls_its_formula_for_probabilities(loss, formula, labels):
    """Clipped probabilities (no logits to recover) go through the formula function, integer labels as one-hot."""
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(3), size=50).astype(np.float32)
    integer = rng.integers(0, 3, size=50)
    y = np.eye(3, dtype=np.float32)[integer]
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    expected = formula(*_f32(y, np.log(clipped), np.log1p(-clipped)))
    ours = loss(integer if labels == "integer" else y, p)
    np.testing.assert_allclose(to_numpy(ours), to_numpy(expected)[:, 0], rtol=1e-6)
