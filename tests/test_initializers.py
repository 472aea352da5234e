"""PriorProbability."""

import keras
import numpy as np
import pytest

from keras_focal.initializers import BilinearUpsampling, PriorProbability, bilinear_filter
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


@pytest.mark.parametrize("size, expected", [(2, [[0.25, 0.25], [0.25, 0.25]]), (3, [[0.25, 0.5, 0.25], [0.5, 1, 0.5], [0.25, 0.5, 0.25]])])
def test_bilinear_filter_values(size, expected):
    np.testing.assert_allclose(bilinear_filter(size), expected)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_bilinear_transposed_convolution_interpolates_like_upsampling(factor):
    """Away from the zero-padded border, the initialised layer is bilinear interpolation."""
    up = keras.layers.Conv2DTranspose(
        2, 2 * factor, strides=factor, padding="same", use_bias=False, kernel_initializer=BilinearUpsampling()
    )
    x = np.random.default_rng(0).random((1, 6, 6, 2), dtype=np.float32)
    ours = to_numpy(up(x))[0, factor:-factor, factor:-factor]
    reference = to_numpy(keras.layers.UpSampling2D(factor, interpolation="bilinear")(x))[0, factor:-factor, factor:-factor]
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)


def test_bilinear_kernel_is_channel_diagonal_and_validated():
    kernel = to_numpy(BilinearUpsampling()((4, 4, 3, 2)))
    assert kernel[:, :, 0, 0].sum() == pytest.approx(4.0) and kernel[:, :, 1, 1].sum() == pytest.approx(4.0)
    assert not kernel[:, :, 0, 1].any() and not kernel[:, :, 2, :].any()
    with pytest.raises(ValueError, match=r"square 2-D transposed-convolution kernel"):
        BilinearUpsampling()((4, 3, 1, 1))
    assert isinstance(keras.initializers.deserialize(keras.initializers.serialize(BilinearUpsampling())), BilinearUpsampling)
