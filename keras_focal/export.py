"""`keras-focal export`: a trained model as a TensorFlow SavedModel or an ONNX file (Keras 3's `model.export`)."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

import keras_focal
from keras_focal.files import check_output_folder, replacing, temporary_path
from keras_focal.types import PathLike

if TYPE_CHECKING:
    import keras

# Our names -> Keras's `model.export` formats.
EXPORT_FORMATS = {"saved_model": "tf_saved_model", "onnx": "onnx"}


def check_export(model_path: PathLike, out: PathLike, export_format: str, force: bool = False) -> None:
    """Raises ValueError naming the argument before anything is written."""
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"`format` must be one of {sorted(EXPORT_FORMATS)}. Received: {export_format!r}")
    if not os.path.isfile(model_path):
        raise ValueError(f"no model at '{model_path}'.")
    import zipfile

    if not zipfile.is_zipfile(model_path):  # a .keras file is a zip archive; a volume or an image is not
        raise ValueError(f"'{model_path}' is not a saved Keras model (a .keras file, as `train` writes: RUN/best.keras "
                         "or RUN/last.keras).")
    if export_format == "onnx" and not str(out).endswith(".onnx"):
        raise ValueError(f"an ONNX export is one file: OUT must end in .onnx. Received: '{out}'")
    if os.path.exists(out) and not force:
        raise ValueError(f"'{out}' exists: give --force to replace it, or choose another OUT.")
    if export_format == "onnx":
        import importlib.util

        missing = [name for name in ("onnx", "tf2onnx") if importlib.util.find_spec(name) is None]
        if missing:
            raise ValueError(f"ONNX export needs {', '.join(missing)}: pip install 'keras-focal[onnx]'.")
    parent = os.path.dirname(os.path.abspath(out))

    check_output_folder(parent, "the folder of OUT")


def _float32_config(config):
    """A model config with every mixed-precision dtype policy replaced by float32 (the weights are float32 either way)."""
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and str(
                config.get("config", {}).get("name", "")).startswith("mixed"):
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: _float32_config(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_config(value) for value in config]
    if isinstance(config, str) and config.startswith("mixed_"):
        return "float32"
    return config


def float32_model(model: keras.Model) -> keras.Model:
    """`(model, cast)`: the model itself when it computes in float32, else a float32 copy with its weights."""
    if all(layer.dtype_policy.compute_dtype == "float32" for layer in model.layers):
        return model, False
    copy = model.__class__.from_config(_float32_config(model.get_config()))
    copy.set_weights(model.get_weights())
    return copy, True


def export_model(model_path: PathLike, out: PathLike, export_format: str = "saved_model") -> bool:
    """Exports the model at `model_path` to `out`; returns True when a mixed-precision model was cast to float32.

    The whole network is exported, the ACW layer and the softmax head
    included, with a float32 input `(batch, height, width, channels)` in the
    trainer's scale ([-1, 1]: `keras_focal.data_prep.examples.normalize`). The
    export is written beside `out` and renamed into place.
    """
    import numpy as np

    model, cast = float32_model(keras_focal.load_model(model_path))
    # Keras's ONNX export refuses a model never called (a loaded one has not been): one call on zeros.
    model(np.zeros((1,) + tuple(d or 1 for d in model.input_shape[1:]), np.float32))
    if export_format == "onnx":
        with replacing(out) as temporary:
            model.export(temporary, format=EXPORT_FORMATS[export_format], verbose=False)
        return cast
    temporary = temporary_path(os.path.abspath(out).rstrip(os.sep))
    try:
        model.export(temporary, format=EXPORT_FORMATS[export_format], verbose=False)
        if os.path.exists(out):
            shutil.rmtree(out) if os.path.isdir(out) else os.remove(out)
        os.replace(temporary, out)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return cast
