"""DiceLoss and TverskyLoss against a float64 reference; CombinedLoss; their names."""

import keras
import numpy as np
import pytest

from keras_focal import losses
from keras_focal.losses import CombinedLoss, CrossEntropy, DiceLoss, TverskyLoss
from tests import reference
from tests.helpers import to_numpy, value_and_gradient

pytestmark = pytest.mark.backend_agnostic

NUM_CLASSES = 4


def _inputs(seed=0, shape=(3, 5, 6)):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=shape + (NUM_CLASSES,)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, size=shape)
    labels[0][labels[0] == 3] = 2  # class 3 absent from the first image
    return labels, logits


CASES = {
    "per image": {},
    "batch dice": {"batch": True},
    "no background": {"include_background": False},
    "ignore label": {"ignore_class": 255},
    "no smoothing": {"smooth": 0.0},
    "large smoothing": {"smooth": 1.0},
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("form", ["integer", "integer with class axis", "one-hot", "probabilities"])
def test_dice_matches_the_float64_reference(case, form):
    options = CASES[case]
    labels, logits = _inputs()
    if "ignore_class" in options:
        if form in ("one-hot", "probabilities"):
            pytest.skip("an integer ignore label needs integer masks")
        labels[1, :2] = 255
    expected = reference.region_loss(labels, logits, **options)
    from_logits = form != "probabilities"
    loss = DiceLoss(from_logits=from_logits, reduction=None, **options)
    y_pred = logits if from_logits else reference.softmax(logits).astype(np.float32)
    if form == "one-hot":
        y_true = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    else:
        y_true = labels[..., None] if form == "integer with class axis" else labels
    np.testing.assert_allclose(to_numpy(loss(y_true, y_pred)), expected, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("alpha,beta", [(0.5, 0.5), (0.3, 0.7), (0.7, 0.3), (0.0, 1.0)])
@pytest.mark.parametrize("batch", [False, True])
def test_tversky_matches_the_float64_reference(alpha, beta, batch):
    labels, logits = _inputs(1)
    labels[2, 0] = 255
    loss = TverskyLoss(alpha, beta, from_logits=True, batch=batch, ignore_class=255, reduction=None)
    expected = reference.region_loss(labels, logits, alpha, beta, batch=batch, ignore_class=255)
    np.testing.assert_allclose(to_numpy(loss(labels, logits)), expected, rtol=2e-5, atol=1e-6)


def test_tversky_at_one_half_is_dice_without_smoothing():
    labels, logits = _inputs(2)
    dice = DiceLoss(from_logits=True, smooth=0.0)(labels, logits)
    tversky = TverskyLoss(0.5, 0.5, from_logits=True, smooth=0.0)(labels, logits)
    assert float(dice) == pytest.approx(float(tversky), rel=1e-6)


def test_known_values():
    # Two pixels, both class 1, p = (0.5, 0.5): class 0 has TP 0, P 1, G 0; class 1 TP 1, P 1, G 2.
    probabilities = np.full((1, 2, 2), 0.5, np.float32)
    labels = np.array([[1, 1]])
    assert float(DiceLoss(smooth=0.0)(labels, probabilities)) == pytest.approx((1 + (1 - 2 / 3)) / 2)
    assert float(DiceLoss(include_background=False, smooth=0.0)(labels, probabilities)) == pytest.approx(1 / 3)
    assert float(TverskyLoss(0.3, 0.7, include_background=False, smooth=0.0)(labels, probabilities)) == pytest.approx(
        1 - 1 / 1.7)
    # A perfect prediction scores 0, a class absent and predicted nowhere too (smooth / smooth).
    perfect = np.eye(2, dtype=np.float32)[labels]
    assert float(DiceLoss()(labels, perfect)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("loss", [DiceLoss(from_logits=True), DiceLoss(from_logits=True, batch=True),
                                  TverskyLoss(0.3, 0.7, from_logits=True, ignore_class=255)],
                         ids=["dice", "batch dice", "tversky"])
def test_gradient_matches_finite_differences_of_the_reference(loss):
    labels, logits = _inputs(3, shape=(2, 3, 3))
    labels[1, 0, 0] = 255 if loss.ignore_class is not None else labels[1, 0, 0]
    _, gradient = value_and_gradient(lambda x: loss(labels, x), logits)
    options = {"batch": loss.batch, "ignore_class": loss.ignore_class}
    if isinstance(loss, TverskyLoss):
        options.update(alpha=loss.alpha, beta=loss.beta)

    def total(x):
        return reference.region_loss(labels, x, **options).mean()

    numeric = np.zeros(logits.shape)
    step = 1e-6
    for index in np.ndindex(logits.shape):
        shifted = logits.astype(np.float64)
        shifted[index] += step
        upper = total(shifted)
        shifted[index] -= 2 * step
        numeric[index] = (upper - total(shifted)) / (2 * step)
    assert np.all(np.isfinite(gradient))
    np.testing.assert_allclose(gradient, numeric, rtol=1e-3, atol=2e-6)


def test_gradients_finite_for_extreme_logits():
    labels, logits = _inputs(4)
    logits = logits * 1e3  # saturated softmax
    for loss in (DiceLoss(from_logits=True), TverskyLoss(0.3, 0.7, from_logits=True, batch=True)):
        value, gradient = value_and_gradient(lambda x: loss(labels, x), logits)
        assert np.isfinite(value) and np.all(np.isfinite(gradient))


def test_combined_loss_is_the_weighted_sum_and_round_trips():
    labels, logits = _inputs(5)
    ce, dice = CrossEntropy(from_logits=True, ignore_class=255), DiceLoss(from_logits=True, ignore_class=255)
    labels[0, 0, :3] = 255
    combined = CombinedLoss([ce, dice], weights=[1.0, 0.5])
    assert float(combined(labels, logits)) == pytest.approx(float(ce(labels, logits)) + 0.5 * float(dice(labels, logits)), rel=1e-6)
    restored = keras.losses.deserialize(keras.losses.serialize(combined))
    assert type(restored) is CombinedLoss and [type(p) for p in restored.losses] == [CrossEntropy, DiceLoss]
    assert restored.weights == [1.0, 0.5] and restored.losses[1].ignore_class == 255
    assert float(restored(labels, logits)) == pytest.approx(float(combined(labels, logits)), rel=1e-6)
    metrics = combined.part_metrics()
    assert [m.name for m in metrics] == ["cross_entropy", "dice_loss"]
    metrics[1].update_state(labels, logits)
    assert float(metrics[1].result()) == pytest.approx(float(dice(labels, logits)), rel=1e-6)


@pytest.mark.parametrize("name,parts", [("dice_ce", [DiceLoss, CrossEntropy]),
                                        ("dice_fl", [DiceLoss, losses.CategoricalFocalLoss])])
def test_get_builds_the_combined_names(name, parts):
    options = {"gamma": 1.0} if name == "dice_fl" else {}  # dice_ce has no part that takes gamma (tested below)
    loss = losses.get(name, from_logits=True, **options)
    assert type(loss) is CombinedLoss and [type(p) for p in loss.losses] == parts
    assert all(p.from_logits for p in loss.losses) and loss.weights == [1.0, 1.0]
    if name == "dice_fl":
        assert loss.losses[1].gamma == 1.0
    assert type(losses.get("dice")) is DiceLoss and type(losses.get("Tversky")) is TverskyLoss
    with pytest.raises(ValueError, match=r"'dice_ce' \(DiceLoss \+ CrossEntropy\) takes no argument \['gama'\]"):
        losses.get("dice_ce", gama=1.0)  # a misspelt option is not dropped silently


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: DiceLoss(smooth=-1.0), r"`smooth` must be a finite number >= 0. Received: smooth=-1.0"),
        (lambda: TverskyLoss(alpha=-0.1), r"`alpha` must be a finite number >= 0"),
        (lambda: CombinedLoss([]), r"`losses` must be a non-empty list of Keras losses"),
        (lambda: CombinedLoss([DiceLoss()], weights=[1.0, 2.0]), r"`weights` must have one finite weight >= 0 per loss \(1\)"),
        (lambda: CombinedLoss([DiceLoss(from_logits=True), CrossEntropy()]), r"their `from_logits` must agree"),
        (lambda: CombinedLoss(["dice"]), r"every entry of `losses` must be a keras.losses.Loss"),
    ],
)
def test_bad_arguments(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"rank >= 3"):
        DiceLoss()(np.zeros((2,), np.int32), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"integer labels must be in \[0, 4\)"):
        DiceLoss(from_logits=True)(np.full((1, 2, 2), 7), np.zeros((1, 2, 2, 4), np.float32))


def test_empty_class_channels_and_batch_give_finite_values():
    labels = np.zeros((2, 3, 3), np.int64)  # only the background present
    logits = np.zeros((2, 3, 3, NUM_CLASSES), np.float32)
    value = float(DiceLoss(from_logits=True)(labels, logits))
    expected = reference.region_loss(labels, logits).mean()
    assert value == pytest.approx(expected, rel=1e-5)
