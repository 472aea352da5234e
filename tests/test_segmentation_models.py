"""What the three segmentation builders share: shapes, the output head, training, saving."""

import os

import keras
import numpy as np
import pytest

from keras_focal.losses import CrossEntropy, DualFocalLoss
from keras_focal.models import deeplabv3_plus, unet, vgg19_fcn
from tests.helpers import to_numpy

# Small widths keep CI fast; the architectures are otherwise the real ones.
BUILDERS = {
    "deeplabv3_plus": lambda shape, classes, **kw: deeplabv3_plus(shape, classes, **kw),
    "vgg19_fcn": lambda shape, classes, **kw: vgg19_fcn(shape, classes, fc_filters=16, **kw),
    "unet": lambda shape, classes, **kw: unet(shape, classes, base_filters=8, **kw),
}


def _batch(shape, classes, size=2, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((size, *shape), dtype=np.float32)
    masks = rng.integers(0, classes, size=(size, *shape[:2]))
    return images, masks


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("classes", [2, 11])
def test_output_shape(builder, channels, classes):
    model = BUILDERS[builder]((48, 40, channels), classes)
    assert model.input.shape == (None, 48, 40, channels)
    assert model.output.shape == (None, 48, 40, classes)


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize(
    "kwargs, tail, output",
    [
        ({}, ["logits", "probabilities"], "probabilities"),
        ({"acw_weights": "ones"}, ["logits", "acw", "probabilities"], "probabilities"),
        ({"activation": None}, ["logits"], "logits"),
        ({"acw_weights": [0.2, 0.3, 0.5], "activation": None}, ["logits", "acw"], "acw"),
    ],
)
def test_head_layers(builder, kwargs, tail, output):
    model = BUILDERS[builder]((32, 32, 3), 3, **kwargs)
    names = [layer.name for layer in model.layers]
    assert names[-len(tail):] == tail
    assert "acw" in names if "acw_weights" in kwargs else "acw" not in names
    assert model.layers[-1].name == output


@pytest.mark.parametrize("builder", BUILDERS)
def test_probabilities_are_softmax_of_scaled_logits(builder):
    weights = [0.2, 0.3, 0.5]
    model = BUILDERS[builder]((32, 32, 1), 3, acw_weights=weights)
    images, _ = _batch((32, 32, 1), 3)
    logits = to_numpy(keras.Model(model.input, model.get_layer("logits").output)(images, training=False))
    probabilities = to_numpy(model(images, training=False))
    np.testing.assert_allclose(probabilities, _softmax(logits.astype(np.float64) * weights), atol=1e-6)
    np.testing.assert_allclose(to_numpy(model.get_layer("acw").class_weights), weights)


@pytest.mark.parametrize("builder", BUILDERS)
def test_single_class_gets_a_sigmoid(builder):
    model = BUILDERS[builder]((32, 32, 1), 1)
    images, _ = _batch((32, 32, 1), 1)
    logits = to_numpy(keras.Model(model.input, model.get_layer("logits").output)(images, training=False))
    np.testing.assert_allclose(to_numpy(model(images, training=False)), 1 / (1 + np.exp(-logits)), atol=1e-6)


@pytest.mark.parametrize("builder", BUILDERS)
def test_fit_step_trains_acw_and_survives_save_load(builder, tmp_path):
    model = BUILDERS[builder]((32, 32, 1), 3, acw_weights=[0.2, 0.3, 0.5], activation=None)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=DualFocalLoss(from_logits=True))
    images, masks = _batch((32, 32, 1), 3)
    history = model.fit(images, masks, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.allclose(to_numpy(model.get_layer("acw").class_weights), [0.2, 0.3, 0.5])

    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_array_equal(to_numpy(restored(images)), to_numpy(model(images)))
    assert isinstance(restored.loss, DualFocalLoss)
    restored.fit(images, masks, batch_size=2, epochs=1, verbose=0)


@pytest.mark.slow
@pytest.mark.parametrize("builder", BUILDERS)
def test_fit_step_under_jit_compile(builder):
    model = BUILDERS[builder]((32, 32, 3), 2, acw_weights="ones")
    model.compile(optimizer="adam", loss=DualFocalLoss(), jit_compile=True)
    images, masks = _batch((32, 32, 3), 2)
    history = model.fit(images, masks, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.slow
@pytest.mark.parametrize("builder", BUILDERS)
def test_mixed_float16_keeps_the_head_in_float32(builder):
    keras.config.set_dtype_policy("mixed_float16")
    model = BUILDERS[builder]((32, 32, 3), 2, acw_weights="ones")
    assert model.get_layer("logits").compute_dtype == "float32"
    assert model.get_layer("acw").compute_dtype == "float32"
    assert model.get_layer("probabilities").compute_dtype == "float32"
    assert model.output.dtype == "float32"
    assert any(layer.compute_dtype == "float16" for layer in model.layers if layer.weights)
    model.compile(optimizer="adam", loss=CrossEntropy())
    images, masks = _batch((32, 32, 3), 2)
    history = model.fit(images, masks, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"classes": 0}, r"`num_classes` must be an integer >= 1"),
        ({"classes": 2.0}, r"`num_classes` must be an integer >= 1"),
        ({"shape": (32, 32)}, r"`input_shape` must be \(height, width, channels\)"),
        ({"shape": (None, 32, 3)}, r"`input_shape` must be \(height, width, channels\)"),
        ({"acw_weights": [1.0, 2.0, 3.0]}, r"`acw_weights` must hold one finite weight per class \(2 for num_classes=2\)"),
        ({"acw_weights": "inverse"}, r"`acw_weights` must be None \(no ACW layer\), 'ones'"),
        ({"activation": "relu"}, r"`activation` must be 'softmax', 'sigmoid' or None"),
    ],
)
def test_bad_arguments(builder, kwargs, message):
    kwargs = dict(kwargs)
    shape = kwargs.pop("shape", (32, 32, 3))
    classes = kwargs.pop("classes", 2)
    with pytest.raises(ValueError, match=message):
        BUILDERS[builder](shape, classes, **kwargs)


@pytest.mark.parametrize("builder", BUILDERS)
def test_summary_names_the_head(builder):
    lines = []
    BUILDERS[builder]((32, 32, 3), 2, acw_weights="ones").summary(print_fn=lambda line, **_: lines.append(line))
    text = "\n".join(lines)
    for name in ("logits", "acw", "probabilities", "Trainable params"):
        assert name in text
