"""PriorProbability."""

import numpy as np
import pytest
import keras

from keras_focal.initializers import PriorProbability
from tests.helpers import to_numpy

pytestmark = pytest.mark.backend_agnostic


@pytest.mark.parametrize("pi", [0.01, 0.5, 0.9])
def test_sigmoid_bias_gives_the_prior(pi):
    bias = to_numpy(PriorProbability(pi)((3,)))
    np.testing.assert_allclose(bias, -np.log((1 - pi) / pi), rtol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-bias)), pi, rtol=1e-5)


def test_focal_loss_explained_value():
    assert float(to_numpy(PriorProbability(0.01)((1,)))[0]) == pytest.approx(-4.59512, abs=1e-5)


def test_softmax_priors():
    bias = to_numpy(PriorProbability([0.9, 0.05, 0.05], activation="softmax")((3,)))
    np.testing.assert_allclose(np.exp(bias) / np.exp(bias).sum(), [0.9, 0.05, 0.05], rtol=1e-6)


def test_in_a_layer_and_serialised():
    layer = keras.layers.Dense(1, bias_initializer=PriorProbability(0.01))
    layer.build((None, 4))
    assert float(to_numpy(layer.bias)[0]) == pytest.approx(-4.59512, abs=1e-5)
    restored = keras.initializers.deserialize(keras.initializers.serialize(PriorProbability(0.2)))
    assert isinstance(restored, PriorProbability) and restored.probability == 0.2


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, [0.5, 0.5]])
def test_rejects_bad_probability(bad):
    with pytest.raises(ValueError, match=r"`probability` must be a number in the open interval \(0, 1\)"):
        PriorProbability(bad)


def test_rejects_bad_softmax_priors_and_activation():
    with pytest.raises(ValueError, match=r"positive class priors"):
        PriorProbability([0.5, 0.0], activation="softmax")
    with pytest.raises(ValueError, match=r"`activation` must be 'sigmoid' or 'softmax'"):
        PriorProbability(0.1, activation="relu")
    with pytest.raises(ValueError, match=r"has 2 class priors but the bias has shape \(3,\)"):
        PriorProbability([0.5, 0.5], activation="softmax")((3,))
