"""`keras-focal export`: a SavedModel and an ONNX file that give the Keras model's probabilities."""

import os

import keras
import numpy as np
import pytest

from keras_focal.cli import main
from keras_focal.models import unet

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                reason="the export tests run on the TensorFlow backend (SavedModel, tf2onnx)")


@pytest.fixture(scope="module")
def acw_model(tmp_path_factory):
    """A small U-Net with the ACW layer and the softmax head, saved as .keras, and a batch with its probabilities."""
    keras.utils.set_random_seed(0)
    model = unet(input_shape=(32, 32, 1), num_classes=3, base_filters=4, depth=2, acw_weights=[0.2, 0.5, 0.3])
    model.get_layer("acw").set_weights([np.array([0.1, 0.6, 0.3], np.float32)])  # not the initial weights
    path = str(tmp_path_factory.mktemp("export") / "model.keras")
    model.save(path)
    batch = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 1)).astype(np.float32)
    return path, batch, np.asarray(model.predict_on_batch(batch))


def test_saved_model_gives_the_same_probabilities(acw_model, tmp_path, capsys):
    import tensorflow as tf

    path, batch, expected = acw_model
    out = str(tmp_path / "saved")
    assert main(["export", path, out, "--format", "saved_model"]) == 0
    assert "exported" in capsys.readouterr().out
    loaded = tf.saved_model.load(out)
    np.testing.assert_allclose(np.asarray(loaded.serve(batch)), expected, atol=1e-5)
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_onnx_gives_the_same_probabilities(acw_model, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    path, batch, expected = acw_model
    out = str(tmp_path / "model.onnx")
    assert main(["export", path, out, "--format", "onnx"]) == 0
    session = onnxruntime.InferenceSession(out)
    probabilities = session.run(None, {session.get_inputs()[0].name: batch})[0]
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)


def test_a_mixed_precision_model_is_exported_in_float32(tmp_path, capsys):
    import tensorflow as tf

    keras.config.set_dtype_policy("mixed_float16")
    keras.utils.set_random_seed(1)
    model = unet(input_shape=(32, 32, 1), num_classes=2, base_filters=4, depth=2)
    keras.config.set_dtype_policy("float32")
    path = str(tmp_path / "mixed.keras")
    model.save(path)
    batch = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    out = str(tmp_path / "saved")
    assert main(["export", path, out]) == 0
    assert "mixed precision: exported a float32 copy" in capsys.readouterr().out
    from keras_focal.export import float32_model

    copy, cast = float32_model(keras.models.load_model(path))
    assert cast and all(layer.dtype_policy.compute_dtype == "float32" for layer in copy.layers)
    loaded = tf.saved_model.load(out)  # held: its variables die with the object
    np.testing.assert_allclose(np.asarray(loaded.serve(batch)), np.asarray(copy.predict_on_batch(batch)), atol=1e-5)
    # float16 activations differ from float32 ones by ~1e-3, not more: the weights are the same.
    np.testing.assert_allclose(np.asarray(model.predict_on_batch(batch)), np.asarray(copy.predict_on_batch(batch)), atol=2e-2)


@pytest.mark.parametrize("arguments, message", [
    (["missing.keras", "out"], "no model at 'missing.keras'"),
    (["MODEL", "out.bin", "--format", "onnx"], "OUT must end in .onnx"),
    (["MODEL", "EXISTING"], "exists: give --force"),
])
def test_bad_export_arguments_exit_2(acw_model, tmp_path, capsys, arguments, message):
    existing = tmp_path / "existing"
    existing.mkdir()
    arguments = [acw_model[0] if a == "MODEL" else str(existing) if a == "EXISTING" else a for a in arguments]
    assert main(["export", *arguments]) == 2
    assert message in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["existing"]
