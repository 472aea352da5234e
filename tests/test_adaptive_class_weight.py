"""The AdaptiveClassWeight layer."""

import keras
import numpy as np
import pytest

from keras_focal.layers import AdaptiveClassWeight
from keras_focal.losses import CrossEntropy, WeightedCrossEntropy
from tests.helpers import to_numpy

pytestmark = pytest.mark.backend_agnostic


def test_scales_each_class_channel():
    layer = AdaptiveClassWeight([0.5, 2.0, 3.0])
    x = np.arange(2 * 2 * 2 * 3, dtype=np.float32).reshape(2, 2, 2, 3)
    np.testing.assert_allclose(to_numpy(layer(x)), x * np.array([0.5, 2.0, 3.0]))
    assert [w.name for w in layer.trainable_weights] == ["class_weights"]


def test_channels_first_and_default_ones():
    layer = AdaptiveClassWeight(axis=1)
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(to_numpy(layer(x)), x)
    assert layer.class_weights.shape == (3,)


def test_weight_length_must_match_classes():
    layer = AdaptiveClassWeight([1.0, 2.0])
    with pytest.raises(ValueError, match=r"`initial_weights` has 2 entries but the input has 3 classes"):
        layer(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"`initial_weights` must be a 1-D sequence"):
        AdaptiveClassWeight([[1.0]])


def test_acw_with_cross_entropy_differs_from_wce_by_a_constant_gradient():
    """Paper, section III.E: with weights w, d(ACW+CE)/d(ACW output) equals plain CE's,
    and for w = 1 the loss equals CE on the raw logits."""
    logits = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2])
    ones = AdaptiveClassWeight()
    ce = CrossEntropy(from_logits=True)
    assert float(ce(labels, ones(logits))) == pytest.approx(float(ce(labels, logits)), rel=1e-6)
    wce_unit = WeightedCrossEntropy([1.0, 1.0, 1.0], from_logits=True)
    assert float(wce_unit(labels, logits)) == pytest.approx(float(ce(labels, logits)), rel=1e-6)


def test_weights_train():
    model = keras.Sequential(
        [keras.Input((4, 4, 2)), keras.layers.Conv2D(3, 1), AdaptiveClassWeight([0.2, 0.3, 0.5], name="acw")]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=CrossEntropy(from_logits=True))
    x = np.random.default_rng(0).normal(size=(8, 4, 4, 2)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 3, size=(8, 4, 4))
    model.fit(x, y, epochs=2, verbose=0)
    assert not np.allclose(to_numpy(model.get_layer("acw").class_weights), [0.2, 0.3, 0.5])
