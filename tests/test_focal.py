"""BinaryFocalLoss and CategoricalFocalLoss against the float64 reference."""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from keras_focal.losses import BinaryFocalLoss, CategoricalFocalLoss
from tests import reference
from tests.helpers import (
    ATOL,
    GRADIENT_LOGITS,
    RTOL,
    binary_inputs,
    categorical_inputs,
    central_differences,
    sigmoid_inputs,
    softmax_inputs,
    to_numpy,
    value_and_gradient,
)

pytestmark = pytest.mark.backend_agnostic

GAMMAS = [0.0, 0.1, 0.5, 0.9, 1.0, 2.0, 5.0]
EPSILONS = [0.0, 1e-3]
@pytest.mark.parametrize(
    "gamma,alpha,epsilon,from_logits",
    list(itertools.product(GAMMAS, [None, 0.25], EPSILONS, [True, False])),
)
def test_binary_focal_matches_reference(gamma, alpha, epsilon, from_logits):
    labels, logits = binary_inputs()
    loss = BinaryFocalLoss(
        gamma=gamma, alpha=alpha, epsilon=epsilon, from_logits=from_logits, reduction=None
    )
    y_pred, log_p, log_q = sigmoid_inputs(logits, from_logits)
    expected = reference.binary_focal(labels, log_p, log_q, gamma, alpha, epsilon)
    np.testing.assert_allclose(to_numpy(loss(labels, y_pred)), expected, rtol=RTOL, atol=ATOL)


def test_binary_focal_with_epsilon_is_the_seed_modified_loss():
    """Hand-computed values of sigmoid_focal_loss_modified (appendix A.3), gamma=0.5."""
    x = np.array([[0.0], [2.0], [-3.0]], np.float32)
    y = np.array([[1.0], [1.0], [0.0]], np.float32)
    loss = BinaryFocalLoss(gamma=0.5, alpha=0.25, epsilon=1e-3, from_logits=True, reduction=None)
    p = 1 / (1 + np.exp(-x.astype(np.float64)))
    ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    p_t = p * y + (1 - p) * (1 - y)
    alpha_t = 0.25 * y + 0.75 * (1 - y)
    expected = (alpha_t * ce * (1 - p_t + 1e-3) ** 0.5)[:, 0]
    np.testing.assert_allclose(to_numpy(loss(y, x)), expected, rtol=RTOL)
    # gamma=0.5, x=0, y=1: 0.25 * log 2 * sqrt(0.501)
    assert to_numpy(loss(y, x))[0] == pytest.approx(0.25 * np.log(2) * np.sqrt(0.501), rel=1e-6)


@pytest.mark.parametrize(
    "gamma,alpha,epsilon,from_logits,sparse",
    list(
        itertools.product(
            GAMMAS, [None, 0.5, [0.1, 0.2, 0.3, 0.4]], EPSILONS, [True, False], [True, False]
        )
    ),
)
def test_categorical_focal_matches_reference(gamma, alpha, epsilon, from_logits, sparse):
    labels, logits = categorical_inputs()
    one_hot = np.eye(4, dtype=np.float32)[labels]
    loss = CategoricalFocalLoss(
        gamma=gamma, alpha=alpha, epsilon=epsilon, from_logits=from_logits, reduction=None
    )
    y_pred, log_p, log_q = softmax_inputs(logits, from_logits)
    expected = reference.categorical_focal(one_hot, log_p, log_q, gamma, alpha, epsilon)
    actual = to_numpy(loss(labels if sparse else one_hot, y_pred))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_categorical_focal_soft_labels_and_channels_first(gamma):
    rng = np.random.default_rng(3)
    logits = rng.uniform(-20, 20, size=(2, 5, 3, 3)).astype(np.float32)  # (B, C, H, W)
    soft = rng.dirichlet(np.ones(5), size=(2, 3, 3)).astype(np.float32)
    soft = np.moveaxis(soft, -1, 1)
    loss = CategoricalFocalLoss(gamma=gamma, from_logits=True, axis=1, reduction=None)
    log_p, log_q = reference.softmax_logs(logits, axis=1)
    expected = reference.categorical_focal(
        np.moveaxis(soft, 1, -1), np.moveaxis(log_p, 1, -1), np.moveaxis(log_q, 1, -1),
        gamma, None, 0.0,
    )
    np.testing.assert_allclose(to_numpy(loss(soft, logits)), expected, rtol=RTOL)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_binary_focal_equals_keras_where_keras_is_finite(gamma, alpha):
    labels, logits = binary_inputs()
    # Keras's JAX/PyTorch binary cross-entropy goes through clipped probabilities
    # and drifts from the exact value (and from ours) beyond |x| ~ 10.
    limit = 15 if keras.backend.backend() == "tensorflow" else 8
    keep = np.abs(logits[:, 0]) <= limit
    labels, logits = labels[keep], logits[keep]
    ours = BinaryFocalLoss(gamma=gamma, alpha=alpha, from_logits=True, reduction=None)
    theirs = keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=alpha is not None,
        alpha=alpha if alpha is not None else 0.25,
        gamma=gamma,
        from_logits=True,
        reduction=None,
    )
    np.testing.assert_allclose(
        to_numpy(ours(labels, logits)), to_numpy(theirs(labels, logits)), rtol=1e-4, atol=1e-7
    )


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_categorical_focal_equals_keras_where_keras_is_not_clipped(gamma):
    rng = np.random.default_rng(1)
    logits = rng.uniform(-4, 4, size=(64, 5)).astype(np.float32)
    one_hot = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 64)]
    ours = CategoricalFocalLoss(gamma=gamma, alpha=0.25, from_logits=True, reduction=None)
    theirs = keras.losses.CategoricalFocalCrossentropy(
        alpha=0.25, gamma=gamma, from_logits=True, reduction=None
    )
    np.testing.assert_allclose(
        to_numpy(ours(one_hot, logits)), to_numpy(theirs(one_hot, logits)), rtol=1e-4
    )


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("epsilon", EPSILONS)
@pytest.mark.parametrize("gamma", [0.1, 0.5, 0.9, 1.0, 2.0, 5.0])
def test_binary_focal_gradients_finite_everywhere(gamma, epsilon, policy):
    keras.config.set_dtype_policy(policy)
    compute = keras.config.dtype_policy().compute_dtype
    x = np.repeat(GRADIENT_LOGITS, 3).reshape(-1, 1)
    y = np.tile(np.array([0.0, 1.0, 0.3], np.float32), len(GRADIENT_LOGITS)).reshape(-1, 1)
    loss = BinaryFocalLoss(gamma=gamma, alpha=0.5, epsilon=epsilon, from_logits=True)
    value, gradient = value_and_gradient(
        lambda v: loss(y, v), ops.cast(ops.convert_to_tensor(x), compute)
    )
    assert np.isfinite(value)
    assert np.all(np.isfinite(gradient.astype(np.float32))), gradient


@pytest.mark.parametrize("epsilon", EPSILONS)
@pytest.mark.parametrize("gamma", [0.1, 0.5, 0.9, 1.0, 2.0, 5.0])
def test_binary_focal_gradient_matches_analytic(gamma, epsilon):
    x = np.concatenate([np.linspace(-40, 40, 161), [-104.0, 104.0, -1e4, 1e4]]).astype(np.float32)
    x = np.repeat(x, 2).reshape(-1, 1)
    y = np.tile(np.array([0.0, 1.0], np.float32), len(x) // 2).reshape(-1, 1)
    loss = BinaryFocalLoss(gamma=gamma, alpha=0.5, epsilon=epsilon, from_logits=True, reduction="sum")
    _, gradient = value_and_gradient(lambda v: loss(y, v), x)
    expected = reference.binary_focal_logit_gradient(y, x.astype(np.float64), gamma, 0.5, epsilon)
    assert np.all(np.isfinite(expected))
    np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-30)


def test_keras_builtin_binary_focal_gradient_is_nan_and_ours_is_not():
    """Keras 3.15's BinaryFocalCrossentropy: NaN gradients at gamma in (0, 1) once p_t
    rounds to 1 in float32 (x >= 17 for y = 1, x <= -30 for y = 0)."""
    x = np.array([[17.0], [30.0], [-30.0], [-88.0]], np.float32)
    y = np.array([[1.0], [1.0], [0.0], [0.0]], np.float32)
    keras_loss = keras.losses.BinaryFocalCrossentropy(gamma=0.5, from_logits=True)
    ours = BinaryFocalLoss(gamma=0.5, alpha=None, from_logits=True)
    _, keras_gradient = value_and_gradient(lambda v: keras_loss(y, v), x)
    _, our_gradient = value_and_gradient(lambda v: ours(y, v), x)
    assert np.all(np.isnan(keras_gradient))
    assert np.all(np.isfinite(our_gradient))


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("epsilon", EPSILONS)
@pytest.mark.parametrize("gamma", [0.1, 0.5, 0.9, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("sparse", [True, False])
def test_categorical_focal_gradients_finite_everywhere(gamma, epsilon, policy, sparse):
    keras.config.set_dtype_policy(policy)
    compute = keras.config.dtype_policy().compute_dtype
    rows = [[a, b, 0.0] for a in GRADIENT_LOGITS for b in (-1e4, 0.0, 1e4)]
    logits = np.array(rows, np.float32)
    labels = np.arange(len(logits)) % 3
    y_true = labels if sparse else np.eye(3, dtype=np.float32)[labels] * 0.9 + 0.1 / 3
    loss = CategoricalFocalLoss(gamma=gamma, epsilon=epsilon, from_logits=True)
    value, gradient = value_and_gradient(
        lambda v: loss(y_true, v), ops.cast(ops.convert_to_tensor(logits), compute)
    )
    assert np.isfinite(value)
    assert np.all(np.isfinite(gradient.astype(np.float32)))


@pytest.mark.parametrize("gamma,epsilon", [(0.5, 0.0), (2.0, 0.0), (0.5, 1e-3)])
def test_categorical_focal_gradient_matches_finite_differences(gamma, epsilon):
    rng = np.random.default_rng(7)
    logits = rng.uniform(-6, 6, size=(8, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=8)
    one_hot = np.eye(4)[labels]
    loss = CategoricalFocalLoss(gamma=gamma, epsilon=epsilon, from_logits=True, reduction="sum")
    _, gradient = value_and_gradient(lambda v: loss(labels, v), logits)

    def reference_loss(z):
        log_p, log_q = reference.softmax_logs(z)
        return reference.categorical_focal(one_hot, log_p, log_q, gamma, None, epsilon).sum()

    numeric = central_differences(reference_loss, logits)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-3, atol=1e-5)


def test_softmax_output_logits_are_recovered():
    """Probabilities straight from a Keras softmax give the exact logit-space loss."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("Keras attaches _keras_logits on the TensorFlow backend only")
    logits = np.array([[40.0, -40.0, 0.0]], np.float32)
    probabilities = keras.activations.softmax(ops.convert_to_tensor(logits))
    loss = CategoricalFocalLoss(gamma=0.5)
    expected = CategoricalFocalLoss(gamma=0.5, from_logits=True)([1], logits)
    assert float(loss([1], probabilities)) == pytest.approx(float(expected), rel=1e-6)
    assert float(expected) == pytest.approx(80.0, rel=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"gamma": -1.0}, r"`gamma` must be a finite number >= 0. Received: gamma=-1.0"),
        ({"epsilon": -1e-3}, r"`epsilon` must be a finite number >= 0"),
        ({"gamma": float("nan")}, r"`gamma` must be a finite number >= 0"),
        ({"alpha": 1.5}, r"`alpha` must be a number in \[0, 1\] or None"),
    ],
)
def test_binary_focal_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BinaryFocalLoss(**kwargs)


def test_categorical_focal_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"`gamma` must be a finite number >= 0"):
        CategoricalFocalLoss(gamma=-0.5)
    with pytest.raises(ValueError, match=r"`alpha` entries must be finite and >= 0"):
        CategoricalFocalLoss(alpha=[0.5, -0.5])
    loss = CategoricalFocalLoss(alpha=[0.2, 0.3, 0.5], from_logits=True)
    with pytest.raises(ValueError, match=r"`alpha` must be a number or have one entry per class \(4\)"):
        loss(np.array([0]), np.zeros((1, 4), np.float32))


def test_shape_mismatch_names_both_shapes():
    loss = CategoricalFocalLoss(from_logits=True)
    with pytest.raises(
        ValueError, match=r"y_true.shape=\(2, 5, 5\), y_pred.shape=\(2, 4, 4, 3\)"
    ):
        loss(np.zeros((2, 5, 5), np.int32), np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"y_true.shape=\(2, 3\), y_pred.shape=\(2, 1\)"):
        BinaryFocalLoss(from_logits=True)(np.zeros((2, 3)), np.zeros((2, 1), np.float32))


def test_out_of_range_integer_labels_raise_in_eager_mode():
    loss = CategoricalFocalLoss(from_logits=True)
    with pytest.raises(ValueError, match=r"integer labels must be in \[0, 3\)\. Found label values \[3, 7\]"):
        loss(np.array([0, 3, 7]), np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        BinaryFocalLoss(from_logits=True)(np.array([[2.0]]), np.zeros((1, 1), np.float32))


def test_ignore_class_is_left_out_of_the_mean():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]], np.float32)
    labels = np.array([0, 255, 1])
    loss = CategoricalFocalLoss(gamma=2.0, from_logits=True, ignore_class=255)
    log_p, log_q = reference.softmax_logs(logits)
    per_pixel = reference.categorical_focal(np.eye(2)[[0, 0, 1]], log_p, log_q, 2.0, None, 0.0)
    assert float(loss(labels, logits)) == pytest.approx((per_pixel[0] + per_pixel[2]) / 2, rel=1e-5)


@pytest.mark.parametrize("gamma,epsilon", [(0.5, 0.0), (2.0, 0.0), (0.5, 1e-3)])
def test_fused_integer_gradient_equals_autodiff_of_one_hot_path(gamma, epsilon):
    rng = np.random.default_rng(4)
    logits = rng.uniform(-60, 60, size=(64, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=64)
    loss = CategoricalFocalLoss(gamma=gamma, epsilon=epsilon, alpha=[0.1, 0.2, 0.3, 0.4], from_logits=True, reduction="sum")
    _, fused = value_and_gradient(lambda v: loss(labels, v), logits)
    _, autodiff = value_and_gradient(lambda v: loss(np.eye(4, dtype=np.float32)[labels], v), logits)
    np.testing.assert_allclose(fused, autodiff, rtol=2e-4, atol=1e-6)


def test_binary_focal_gradient_is_exact_at_a_soft_label_tie():
    """p == y: label 0.5 at logit 0 has gradient exactly 0 (it was -0.1733: the
    max-form log-add-exp gave the tie's gradient to one branch)."""
    loss = BinaryFocalLoss(gamma=2.0, alpha=None, from_logits=True)
    _, gradient = value_and_gradient(lambda v: loss(np.array([[0.5]], np.float32), v), np.zeros((1, 1), np.float32))
    assert gradient[0, 0] == 0.0


@pytest.mark.parametrize("from_logits", [True, False])
@pytest.mark.parametrize("gamma,alpha,epsilon", [(2.0, None, 0.0), (0.5, 0.25, 0.0), (0.5, None, 1e-3), (3.0, 0.5, 0.0)])
def test_binary_focal_soft_label_gradient_matches_float64(gamma, alpha, epsilon, from_logits):
    """Soft labels, ties p == y included (logit log(y / (1 - y))), against float64
    central differences of the reference."""
    y = np.array([0.3, 0.3, 0.5, 0.5, 0.8, 0.8, 0.0, 1.0], np.float32).reshape(-1, 1)
    x = np.array([np.log(0.3 / 0.7), 2.0, 0.0, -3.0, np.log(4.0), -1.0, 1.5, -1.5], np.float32).reshape(-1, 1)
    loss = BinaryFocalLoss(gamma=gamma, alpha=alpha, epsilon=epsilon, from_logits=from_logits, reduction="sum")
    if from_logits:
        _, gradient = value_and_gradient(lambda v: loss(y, v), x)
    else:  # through a Keras sigmoid: the loss recovers the logits on TensorFlow, clips elsewhere
        _, gradient = value_and_gradient(lambda v: loss(y, keras.activations.sigmoid(v)), x)

    def total(z):
        return reference.binary_focal(y, *reference.sigmoid_logs(z), gamma, alpha, epsilon).sum()

    np.testing.assert_allclose(gradient, central_differences(total, x), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("gamma, epsilon", [(0.5, 0.0), (0.5, 1e-3), (1.5, 0.0), (2.0, 0.0), (3.0, 1e-3)])
def test_categorical_focal_soft_labels_at_confident_pixels(gamma, epsilon):
    """Label-smoothed targets on confident logits (margins 10 to 40, right and wrong).

    The soft-label path has its own closed-form gradient: the float32 label sums
    (0.9 + 0.1/3 + 2 * 0.1/3 rounds off 1) once made `1 - p` at the arg-max a hair
    negative and `(1 - p)^0.5` NaN. Values to 1e-5 of float64, gradients to
    float64 central differences of the same formula.
    """
    margins = np.array([10.0, 25.0, 40.0], np.float32)
    logits = np.zeros((6, 3), np.float32)
    logits[:3, 0] = margins  # the label's class ahead
    logits[3:, 1] = margins  # a wrong class ahead
    labels = np.tile(0.9 * np.eye(3, dtype=np.float32)[0] + np.float32(0.1 / 3), (6, 1))
    loss = CategoricalFocalLoss(gamma=gamma, epsilon=epsilon, from_logits=True, reduction="sum")

    def total(z):
        return reference.categorical_focal(labels.astype(np.float64), *reference.softmax_logs(z), gamma, None, epsilon).sum()

    value, gradient = value_and_gradient(lambda v: loss(labels, v), logits)
    assert np.all(np.isfinite(gradient))
    assert float(value) == pytest.approx(total(logits.astype(np.float64)), rel=1e-5)
    np.testing.assert_allclose(gradient, central_differences(total, logits), rtol=1e-4, atol=1e-6)
