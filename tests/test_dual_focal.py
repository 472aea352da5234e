"""DualFocalLoss against the float64 reference and the paper's Eq. (7)."""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from keras_focal.losses import DualFocalLoss
from tests import reference
from tests.helpers import (
    ATOL,
    GRADIENT_LOGITS,
    RTOL,
    categorical_inputs,
    central_differences,
    softmax_inputs,
    to_numpy,
    value_and_gradient,
)

pytestmark = pytest.mark.backend_agnostic


def test_defaults_equal_the_papers_equation_7():
    """Hand-worked: p = (0.7, 0.2, 0.1), label 0 ->
    (0.3 - log 0.7) + (0.2 - log 0.8) + (0.1 - log 0.9)."""
    p = np.array([[0.7, 0.2, 0.1]], np.float32)
    expected = 0.3 - np.log(0.7) + 0.2 - np.log(0.8) + 0.1 - np.log(0.9)
    loss = DualFocalLoss(reduction=None)
    assert to_numpy(loss(np.array([0]), p))[0] == pytest.approx(expected, rel=1e-6)
    assert reference.dual_focal_eq7(np.eye(3)[[0]], [[0.7, 0.2, 0.1]])[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "alpha,beta,gamma,from_logits,sparse",
    list(
        itertools.product(
            [1.0, 0.5], [1.0, 0.0, 2.0], [0.0, 0.1, 0.5, 0.9, 1.0, 2.0, 5.0], [True, False], [True, False]
        )
    ),
)
def test_matches_reference(alpha, beta, gamma, from_logits, sparse):
    labels, logits = categorical_inputs()
    one_hot = np.eye(4, dtype=np.float32)[labels]
    loss = DualFocalLoss(alpha=alpha, beta=beta, gamma=gamma, from_logits=from_logits, reduction=None)
    y_pred, log_p, log_q = softmax_inputs(logits, from_logits)
    expected = reference.dual_focal(one_hot, log_p, log_q, alpha, beta, gamma)
    actual = to_numpy(loss(labels if sparse else one_hot, y_pred))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_soft_labels(gamma):
    rng = np.random.default_rng(5)
    logits = rng.uniform(-10, 10, size=(50, 3)).astype(np.float32)
    soft = rng.dirichlet(np.ones(3), size=50).astype(np.float32)
    loss = DualFocalLoss(gamma=gamma, from_logits=True, reduction=None)
    log_p, log_q = reference.softmax_logs(logits)
    expected = reference.dual_focal(soft, log_p, log_q, 1.0, 1.0, gamma)
    np.testing.assert_allclose(to_numpy(loss(soft, logits)), expected, rtol=1e-4)


def test_confident_pixel_keeps_relative_precision():
    """A pixel that is right with margin 40: every term is ~e^-40, none rounds to 0."""
    logits = np.array([[40.0, 0.0, 0.0]], np.float32)
    loss = DualFocalLoss(from_logits=True, reduction=None)
    log_p, log_q = reference.softmax_logs(logits)
    expected = reference.dual_focal(np.eye(3)[[0]], log_p, log_q)
    assert expected[0] == pytest.approx(8 * np.exp(-40), rel=1e-6)  # 4 (1 - p_0) + ...
    assert to_numpy(loss(np.array([0]), logits))[0] == pytest.approx(expected[0], rel=1e-5)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("gamma", [0.1, 0.5, 0.9, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("labels_kind", ["sparse", "one_hot", "soft"])
def test_gradients_finite_everywhere(gamma, policy, labels_kind):
    keras.config.set_dtype_policy(policy)
    compute = keras.config.dtype_policy().compute_dtype
    rows = [[a, b, 0.0] for a in GRADIENT_LOGITS for b in (-1e4, 0.0, 1e4)]
    logits = np.array(rows, np.float32)
    labels = np.arange(len(logits)) % 3
    y_true = {
        "sparse": labels,
        "one_hot": np.eye(3, dtype=np.float32)[labels],
        "soft": np.eye(3, dtype=np.float32)[labels] * 0.9 + 0.1 / 3,
    }[labels_kind]
    loss = DualFocalLoss(gamma=gamma, from_logits=True)
    value, gradient = value_and_gradient(
        lambda v: loss(y_true, v), ops.cast(ops.convert_to_tensor(logits), compute)
    )
    assert np.isfinite(value)
    assert np.all(np.isfinite(gradient.astype(np.float32)))


@pytest.mark.parametrize("gamma,sparse", [(1.0, True), (1.0, False), (0.5, True), (2.0, False)])
def test_gradient_matches_finite_differences(gamma, sparse):
    rng = np.random.default_rng(11)
    logits = rng.uniform(-6, 6, size=(8, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=8)
    one_hot = np.eye(4)[labels]
    loss = DualFocalLoss(gamma=gamma, from_logits=True, reduction="sum")
    _, gradient = value_and_gradient(lambda v: loss(labels if sparse else one_hot, v), logits)

    def reference_loss(z):
        log_p, log_q = reference.softmax_logs(z)
        return reference.dual_focal(one_hot, log_p, log_q, 1.0, 1.0, gamma).sum()

    numeric = central_differences(reference_loss, logits)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-3, atol=1e-5)


def test_ignore_class_and_integer_masks_with_channel_axis():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    masks = rng.integers(0, 3, size=(2, 4, 4, 1))
    masks[0, 0, 0, 0] = 255
    loss = DualFocalLoss(from_logits=True, ignore_class=255)
    log_p, log_q = reference.softmax_logs(logits)
    valid = masks[..., 0] != 255
    per_pixel = reference.dual_focal(np.eye(3)[np.where(valid, masks[..., 0], 0)], log_p, log_q)
    assert float(loss(masks, logits)) == pytest.approx(per_pixel[valid].mean(), rel=1e-5)


@pytest.mark.parametrize("name", ["alpha", "beta", "gamma"])
def test_rejects_negative_parameters(name):
    with pytest.raises(ValueError, match=rf"`{name}` must be a finite number >= 0. Received: {name}=-1"):
        DualFocalLoss(**{name: -1})


def test_rejects_single_class_and_bad_labels():
    loss = DualFocalLoss(from_logits=True)
    with pytest.raises(ValueError, match=r"needs >= 2 classes"):
        loss(np.zeros((2, 1)), np.zeros((2, 1), np.float32))
    with pytest.raises(ValueError, match=r"integer labels must be in \[0, 2\)\. Found label values \[-1\]"):
        loss(np.array([0, -1]), np.zeros((2, 2), np.float32))


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_fused_integer_gradient_equals_autodiff_of_one_hot_path(gamma, beta):
    """Integer labels use a closed-form gradient; one-hot labels use autodiff."""
    rng = np.random.default_rng(4)
    logits = rng.uniform(-60, 60, size=(64, 4)).astype(np.float32)
    logits[:8] = [[50, -50, 0, 1]] * 8  # confident, right or wrong depending on the label
    labels = rng.integers(0, 4, size=64)
    labels[:4] = 0
    loss = DualFocalLoss(beta=beta, gamma=gamma, from_logits=True, reduction="sum")
    _, fused = value_and_gradient(lambda v: loss(labels, v), logits)
    _, autodiff = value_and_gradient(lambda v: loss(np.eye(4, dtype=np.float32)[labels], v), logits)
    np.testing.assert_allclose(fused, autodiff, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("margin", [50.0, 100.0, 300.0, 1e4])
def test_wrong_arg_max_is_exact_for_any_margin(margin):
    """The false-class term -log(1 - p_max) of a wrong, confident arg-max keeps
    growing with the margin (it used to saturate at -log(float32 tiny) = 87.3),
    and integer and one-hot labels give the same value and gradient."""
    logits = np.array([[margin, 0.0, 0.0]], np.float32)
    labels = np.array([1])
    one_hot = np.eye(3, dtype=np.float32)[labels]
    expected = reference.dual_focal(one_hot, *reference.softmax_logs(logits))[0]
    loss = DualFocalLoss(from_logits=True, reduction="sum")
    value_int, gradient_int = value_and_gradient(lambda v: loss(labels, v), logits)
    value_dense, gradient_dense = value_and_gradient(lambda v: loss(one_hot, v), logits)
    assert float(value_int) == pytest.approx(expected, rel=1e-6)
    assert float(value_dense) == pytest.approx(expected, rel=1e-6)
    # d/dx: CE (p - y) = (1, -1, 0); false classes -log(1 - p_0) -> (1, -1/2, -1/2)
    # and -log(1 - p_2) -> ~0; focal 2 (1 - p_1) -> 0.
    np.testing.assert_allclose(gradient_int, [[2.0, -1.5, -0.5]], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gradient_dense, gradient_int, rtol=1e-6, atol=1e-6)


def test_margin_100_value_from_the_audit():
    """Logits (100, 0, 0), label 1: -log p_1 = 100, -log(1 - p_0) = 100 - log 2,
    -log(1 - p_2) ~ 0 and the focal terms ~ 1 + 1: 202 - log 2. Before, the
    arg-max's complement was floored at float32 tiny and the term capped at 87.3."""
    logits = np.array([[100.0, 0.0, 0.0]], np.float32)
    expected = reference.dual_focal(np.eye(3)[[1]], *reference.softmax_logs(logits))[0]
    assert expected == pytest.approx(202 - np.log(2), rel=1e-12)
    assert float(DualFocalLoss(from_logits=True)(np.array([1]), logits)) == pytest.approx(expected, rel=1e-6)
