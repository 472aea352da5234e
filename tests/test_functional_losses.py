"""Each loss's Keras-style functional form `fn(y_true, y_pred, **options)`: the class's unreduced values, and the
same training loss as the class in `model.compile(loss=...)` — the ignored pixels left out of the mean as well."""

import functools

import keras
import numpy as np
import pytest

from keras_focal import losses
from tests.helpers import to_numpy

pytestmark = pytest.mark.backend_agnostic

CASES = {  # name: (function, class, options)
    "cross_entropy": (losses.cross_entropy, losses.CrossEntropy, {}),
    "weighted_cross_entropy": (losses.weighted_cross_entropy, losses.WeightedCrossEntropy,
                               {"class_weights": [0.5, 2.0, 1.0]}),
    "categorical_focal_loss": (losses.categorical_focal_loss, losses.CategoricalFocalLoss, {"gamma": 2.0, "alpha": 0.25}),
    "dual_focal_loss": (losses.dual_focal_loss, losses.DualFocalLoss, {"gamma": 1.5, "beta": 0.5}),
    "dice_loss": (losses.dice_loss, losses.DiceLoss, {"include_background": False}),
    "tversky_loss": (losses.tversky_loss, losses.TverskyLoss, {"alpha": 0.3, "beta": 0.7}),
}


def _batch():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(4, 5, 5, 3)).astype("float32")
    masks = rng.integers(0, 3, (4, 5, 5)).astype("int32")
    masks[:, 0, :] = 255  # an ignored row in every image
    return masks, logits


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_function_gives_the_class_values_unreduced(name):
    function, loss_class, options = CASES[name]
    masks, logits = _batch()
    options = {**options, "from_logits": True, "ignore_class": 255}
    expected = loss_class(**options, reduction=None)(masks, logits)
    values = function(masks, logits, **options)
    assert tuple(values.shape) == tuple(expected.shape)
    np.testing.assert_allclose(to_numpy(values), to_numpy(expected), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_function_trains_as_the_class_in_compile(name):
    function, loss_class, options = CASES[name]
    masks, logits = _batch()
    options = {**options, "from_logits": True, "ignore_class": 255}
    scores = []
    for loss in (loss_class(**options), functools.partial(function, **options)):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((5, 5, 3)), keras.layers.Conv2D(3, 1)])
        model.compile(optimizer="sgd", loss=loss)
        scores.append(model.evaluate(logits, masks, batch_size=4, verbose=0))
    assert scores[1] == pytest.approx(scores[0], rel=1e-6)


def test_binary_focal_loss_function_matches_its_class():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 6)).astype("float32")
    targets = (rng.random((3, 6)) > 0.7).astype("float32")
    expected = losses.BinaryFocalLoss(gamma=0.5, alpha=0.4, from_logits=True, reduction=None)(targets, logits)
    values = losses.binary_focal_loss(targets, logits, gamma=0.5, alpha=0.4, from_logits=True)
    np.testing.assert_allclose(to_numpy(values), to_numpy(expected), rtol=1e-6)


def test_a_function_is_returned_by_get_and_compiles_with_defaults():
    assert losses.get(losses.dual_focal_loss) is losses.dual_focal_loss
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss=losses.dual_focal_loss)  # probabilities, the defaults of DualFocalLoss
    x = np.random.default_rng(2).normal(size=(8, 4)).astype("float32")
    y = np.arange(8) % 3
    expected = float(losses.DualFocalLoss()(y, model.predict(x, verbose=0)))
    assert model.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-5)
