"""Every loss where users run it, and to second order.

Users compile: `model.fit` on JAX always runs under `jax.jit`, and TensorFlow
turns XLA on by default on a GPU. XLA fuses the producer of the logits (here an
ACW-style per-class scale, computed inside the compiled function) into each
consumer and may round it differently in each, so these tests apply the loss
to logits made inside the function, never only to constants. Each mode is
checked against the float64 references (value, and gradient against float64
central differences), and second derivatives (Hessian-vector products by
double autodiff) against differences of the loss's own gradient.
"""

import numpy as np
import pytest
from keras import ops

from keras_focal import losses
from tests import reference
from tests.helpers import (
    central_differences,
    execution_modes,
    hessian_vector_product,
    mode_value_and_gradient,
)

pytestmark = pytest.mark.backend_agnostic

NUM_CLASSES = 3
# An ACW-style scale (the issue's first two weights), applied inside the compiled function.
SCALE = np.array([0.3205876, 0.0277068, 1.7], np.float32)
WEIGHTS = [0.2, 0.5, 0.3]


def _softmax_reference(formula):
    """A total-loss reference from a per-pixel formula of `(y, log p, log(1 - p))`."""

    def total(labels, logits):
        return formula(_dense(labels), *reference.softmax_logs(logits)).sum()

    return total


def _region_reference(**options):
    def total(labels, logits):
        hard = labels if labels.ndim == logits.ndim - 1 else np.argmax(labels, -1)
        return reference.region_loss(hard, logits, **options).sum()

    return total


def _dense(labels):
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu":
        return np.eye(NUM_CLASSES)[labels]
    return labels.astype(np.float64)


# name -> (loss factory, float64 reference total(labels, logits), label forms)
SOFTMAX = ("integer", "one-hot", "soft")
HARD = ("integer", "one-hot")
LOSSES = {
    "ce": (
        lambda: losses.CrossEntropy(from_logits=True, reduction="sum"),
        _softmax_reference(lambda y, lp, lq: reference.weighted_cross_entropy(y, lp)),
        SOFTMAX,
    ),
    "wce": (
        lambda: losses.WeightedCrossEntropy(WEIGHTS, from_logits=True, reduction="sum"),
        _softmax_reference(lambda y, lp, lq: reference.weighted_cross_entropy(y, lp, WEIGHTS)),
        SOFTMAX,
    ),
    "focal gamma=2": (
        lambda: losses.CategoricalFocalLoss(gamma=2.0, alpha=WEIGHTS, from_logits=True, reduction="sum"),
        _softmax_reference(lambda y, lp, lq: reference.categorical_focal(y, lp, lq, 2.0, WEIGHTS, 0.0)),
        SOFTMAX,
    ),
    "focal gamma=0.5 epsilon": (
        lambda: losses.CategoricalFocalLoss(gamma=0.5, epsilon=1e-3, from_logits=True, reduction="sum"),
        _softmax_reference(lambda y, lp, lq: reference.categorical_focal(y, lp, lq, 0.5, None, 1e-3)),
        SOFTMAX,
    ),
    "focal gamma=1.5": (
        lambda: losses.CategoricalFocalLoss(gamma=1.5, alpha=0.25, from_logits=True, reduction="sum"),
        _softmax_reference(lambda y, lp, lq: reference.categorical_focal(y, lp, lq, 1.5, 0.25, 0.0)),
        SOFTMAX,
    ),
    "dfl": (
        lambda: losses.DualFocalLoss(from_logits=True, reduction="sum"),
        _softmax_reference(lambda y, lp, lq: reference.dual_focal(y, lp, lq)),
        SOFTMAX,
    ),
    "dfl gamma=0.5 beta=2": (
        lambda: losses.DualFocalLoss(gamma=0.5, beta=2.0, from_logits=True, reduction="sum"),
        _softmax_reference(lambda y, lp, lq: reference.dual_focal(y, lp, lq, 1.0, 2.0, 0.5)),
        SOFTMAX,
    ),
    "dfl gamma=2 alpha=0.5": (
        lambda: losses.DualFocalLoss(alpha=0.5, gamma=2.0, from_logits=True, reduction="sum"),
        _softmax_reference(lambda y, lp, lq: reference.dual_focal(y, lp, lq, 0.5, 1.0, 2.0)),
        SOFTMAX,
    ),
    "dice": (
        lambda: losses.DiceLoss(from_logits=True, reduction="sum"),
        _region_reference(),
        HARD,
    ),
    "tversky": (
        lambda: losses.TverskyLoss(alpha=0.3, beta=0.7, from_logits=True, reduction="sum"),
        _region_reference(alpha=0.3, beta=0.7),
        HARD,
    ),
    "dice + ce": (
        lambda: losses.CombinedLoss(
            [losses.DiceLoss(from_logits=True), losses.CrossEntropy(from_logits=True)], reduction="sum"
        ),
        lambda labels, logits: (
            _region_reference()(labels, logits) / len(logits)
            + _softmax_reference(lambda y, lp, lq: reference.weighted_cross_entropy(y, lp))(labels, logits)
            / np.prod(np.shape(logits)[:-1])
        ),
        HARD,
    ),
}
CASES = [(name, form) for name, (_, _, forms) in LOSSES.items() for form in forms]


def _inputs(form, seed=0, scale=4.0):
    """Pre-scale logits `a` (2 x 4 x 4 pixels, 3 classes) and labels of the asked form.

    Half the pixels are labelled with their arg-max class (where the defect
    of issue 23 lived), the rest at random; three pixels are confident
    (margins of 20-60 after the scale), one is an exact tie.
    """
    rng = np.random.default_rng(seed)
    a = rng.normal(scale=scale, size=(2, 4, 4, NUM_CLASSES)).astype(np.float32)
    a[0, 0, 0] = [60.0, 0.0, -3.0]  # confident, class 0
    a[0, 0, 1] = [0.0, 0.0, 12.0]  # confident, class 2
    a[0, 0, 2] = [-200.0, 900.0, 0.0]  # confident, class 1 (margin ~25 after the scale)
    a[1, 0, 0] = [0.0, 0.0, 0.0]  # a tie
    labels = rng.integers(0, NUM_CLASSES, size=a.shape[:-1])
    take_argmax = rng.random(labels.shape) < 0.5
    labels = np.where(take_argmax, np.argmax(a * SCALE, -1), labels)
    if form == "integer":
        return a, labels.astype(np.int32)
    one_hot = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    if form == "one-hot":
        return a, one_hot
    soft = rng.dirichlet(np.ones(NUM_CLASSES), size=labels.shape).astype(np.float32)
    return a, np.where(take_argmax[..., None], 0.9 * one_hot + 0.1 / NUM_CLASSES, soft).astype(np.float32)


def _scaled_loss(loss, labels):
    scale = ops.convert_to_tensor(SCALE)
    y = ops.convert_to_tensor(labels)
    return lambda a: loss(y, a * scale)


@pytest.mark.parametrize("mode", execution_modes())
@pytest.mark.parametrize("name,form", CASES)
def test_value_and_gradient_match_the_float64_reference_in_every_mode(name, form, mode):
    make_loss, total, _ = LOSSES[name]
    a, labels = _inputs(form)
    value, gradient = mode_value_and_gradient(_scaled_loss(make_loss(), labels), a, mode)

    def reference_total(pre_scale):
        return total(labels, np.asarray(pre_scale, np.float64) * SCALE.astype(np.float64))

    assert float(value) == pytest.approx(reference_total(a), rel=2e-6)
    np.testing.assert_allclose(gradient, central_differences(reference_total, a), rtol=1e-3, atol=2e-6)


@pytest.mark.parametrize("mode", execution_modes())
@pytest.mark.parametrize("name,form", CASES)
def test_compiled_equals_eager_on_the_issue_batch(name, form, mode):
    """Issue 23's case (4 x 16 x 16 pixels, 2 classes, the ACW scale inside the function):
    DualFocalLoss gave 2.6009 under XLA and jax.jit against 2.4186 eagerly."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 16, 16, 2)).astype(np.float32)
    scale = np.array([0.3205876, 0.0277068], np.float32)
    labels = rng.integers(0, 2, (4, 16, 16)).astype(np.int32)
    if form != "integer":
        labels = np.eye(2, dtype=np.float32)[labels]
        if form == "soft":
            labels = 0.9 * labels + 0.05
    loss = LOSSES[name][0]()
    if hasattr(loss, "alpha") and isinstance(loss.alpha, list):
        loss = type(loss)(gamma=loss.gamma, alpha=loss.alpha[:2], from_logits=True, reduction="sum")
    if getattr(loss, "class_weights", None) is not None:
        loss = type(loss)(loss.class_weights[:2], from_logits=True, reduction="sum")

    def function(v):
        return loss(ops.convert_to_tensor(labels), v * ops.convert_to_tensor(scale))

    eager_value, eager_gradient = mode_value_and_gradient(function, a, "eager")
    value, gradient = mode_value_and_gradient(function, a, mode)
    # float32 sums of 1,024 pixels in another order: ~1e-6 apart (the defect was 7.5%).
    assert float(value) == pytest.approx(float(eager_value), rel=1e-5)
    np.testing.assert_allclose(gradient, eager_gradient, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", execution_modes())
@pytest.mark.parametrize("name,form", CASES)
def test_hessian_vector_products_match_differences_of_the_gradient(name, form, mode):
    """Double autodiff (Hessians, HVPs, MAML-style double backprop) gets the true second derivative."""
    make_loss, _, _ = LOSSES[name]
    a, labels = _inputs(form, seed=3, scale=1.5)
    direction = np.random.default_rng(4).normal(size=a.shape).astype(np.float32)
    function = _scaled_loss(make_loss(), labels)
    product = hessian_vector_product(function, a, direction, mode)
    step = 1e-2
    plus = mode_value_and_gradient(function, a + step * direction, mode)[1].astype(np.float64)
    minus = mode_value_and_gradient(function, a - step * direction, mode)[1].astype(np.float64)
    differences = (plus - minus) / (2 * step)
    assert np.all(np.isfinite(product))
    assert np.abs(differences).max() > 1e-3  # a Hessian that is not zero here
    np.testing.assert_allclose(product, differences, rtol=2e-2, atol=2e-3 * np.abs(differences).max())


@pytest.mark.parametrize("mode", execution_modes())
@pytest.mark.parametrize("name,form", CASES)
def test_hessian_vector_products_are_finite_at_extreme_logits(name, form, mode):
    """Margins up to 1e4 (right and wrong arg-max), ties and confident pixels: no NaN or inf."""
    make_loss, _, _ = LOSSES[name]
    a, labels = _inputs(form, seed=5)
    a[1, 1] = [[1e4, 0.0, 0.0], [0.0, -1e4, 1e4], [300.0, 300.0, -300.0], [-80.0, 0.0, 80.0]]
    direction = np.random.default_rng(6).normal(size=a.shape).astype(np.float32)
    product = hessian_vector_product(_scaled_loss(make_loss(), labels), a, direction, mode)
    assert np.all(np.isfinite(product))


BINARY = {
    "binary focal gamma=2": dict(gamma=2.0, alpha=0.25, epsilon=0.0),
    "binary focal gamma=0.5 epsilon": dict(gamma=0.5, alpha=None, epsilon=1e-3),
    "binary focal gamma=1.5": dict(gamma=1.5, alpha=0.25, epsilon=0.0),
    "binary cross-entropy": dict(gamma=0.0, alpha=None, epsilon=0.0),
}


def _binary_inputs(seed=0, scale=4.0):
    rng = np.random.default_rng(seed)
    a = rng.normal(scale=scale, size=(4, 6)).astype(np.float32)
    a[0, :3] = [60.0, -60.0, 0.0]
    labels = (rng.random(a.shape) < 0.3).astype(np.float32)
    labels[1] = 0.3  # soft labels
    return a, labels


@pytest.mark.parametrize("mode", execution_modes())
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_focal_in_every_mode_and_to_second_order(name, mode):
    options = BINARY[name]
    loss = losses.BinaryFocalLoss(from_logits=True, reduction="sum", **options)
    scale = np.float32(0.75)
    a, labels = _binary_inputs()

    def function(v):
        return loss(ops.convert_to_tensor(labels), v * scale)

    def reference_total(pre_scale):
        logits = np.asarray(pre_scale, np.float64) * np.float64(scale)
        return reference.binary_focal(labels, *reference.sigmoid_logs(logits), **options).sum()

    value, gradient = mode_value_and_gradient(function, a, mode)
    assert float(value) == pytest.approx(reference_total(a), rel=2e-6)
    np.testing.assert_allclose(gradient, central_differences(reference_total, a), rtol=1e-3, atol=2e-6)

    moderate, _ = _binary_inputs(seed=1, scale=1.5)
    direction = np.random.default_rng(2).normal(size=a.shape).astype(np.float32)
    product = hessian_vector_product(function, moderate, direction, mode)
    step = 1e-2
    plus = mode_value_and_gradient(function, moderate + step * direction, mode)[1].astype(np.float64)
    minus = mode_value_and_gradient(function, moderate - step * direction, mode)[1].astype(np.float64)
    differences = (plus - minus) / (2 * step)
    assert np.abs(differences).max() > 1e-3
    np.testing.assert_allclose(product, differences, rtol=2e-2, atol=2e-3 * np.abs(differences).max())
    assert np.all(np.isfinite(hessian_vector_product(function, a * 100.0, direction, mode)))
