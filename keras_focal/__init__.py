"""keras-focal: losses and layers for training on class-imbalanced data.

Submodules:

- `keras_focal.losses`: cross-entropy, weighted cross-entropy, the sigmoid and
  softmax focal losses (with the stabilising `epsilon` of Note on the Stability
  of the Focal Loss), Hossain et al.'s Dual Focal Loss, the Dice and Tversky
  losses and their weighted sums (`CombinedLoss`), each with its formula
  function.
- `keras_focal.layers`: the Adaptive Class Weight (ACW) layer.
- `keras_focal.initializers`: the prior-probability bias initialiser and the
  bilinear kernel of FCN's upsampling layers.
- `keras_focal.class_weights`: MATLAB-style `countEachLabel` and class-weight
  helpers.
- `keras_focal.metrics`: `DiceScore` and `IoUScore` Keras metrics.
- `keras_focal.evaluation`: MATLAB-style `evaluate_semantic_segmentation`, and
  `volume_metrics`, per-patient 3-D Dice, HD95, ASSD and RVD in millimetres.
- `keras_focal.inference`: `Predictor`, trained networks on slices and whole
  volumes, label volumes back in the input's geometry (`keras-focal
  predict`), a model's evaluation report (`keras-focal evaluate`);
  `keras_focal.export`: SavedModel and ONNX export.
- `keras_focal.reporting`: tables, charts and overlays of results.
- `keras_focal.models`, `keras_focal.data_prep`, `keras_focal.training`:
  network builders, data preparation and the trainer; `keras_focal.loss_names`
  and `keras_focal.model_names` are the tables of the trainer's losses and
  models, `keras_focal.errors` the one rule of bad input and crashes.
- `keras_focal.load_model`: `keras.models.load_model` with the package's
  classes registered.

Every submodule is imported on first use.
"""

from __future__ import annotations

from keras_focal.types import PathLike

__version__ = "0.4.0"

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

# Imported on first use (PEP 562), as scikit-image does: `import keras_focal`
# and the command line start without TensorFlow, Keras or JAX, and
# `keras_focal.losses` etc. work as if imported here.
_SUBMODULES = (
    "class_weights", "cli", "data_prep", "errors", "evaluation", "experiments", "export", "files", "inference",
    "initializers", "layers", "loss_names", "losses", "metrics", "model_names", "models", "optimizer_names", "reporting",
    "run_folder", "training",
)
# The modules that register Keras-serialisable classes (see `load_model`).
_KERAS_OBJECT_MODULES = ("initializers", "layers", "losses", "metrics")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"keras_focal.{name}")
    raise AttributeError(f"module 'keras_focal' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBMODULES))


def register_keras_objects() -> None:
    """Imports every module whose classes a saved model may name (losses, layers, metrics, initialisers).

    Keras finds a registered class only once its module has run;
    `keras_focal.load_model` calls this, as does any use of
    `keras_focal.losses` / `layers` / `metrics` / `initializers`.
    """
    for name in _KERAS_OBJECT_MODULES:
        importlib.import_module(f"keras_focal.{name}")


def load_model(path: PathLike, **kwargs: Any) -> keras.Model:
    """`keras.models.load_model` for models that use keras-focal's losses, layers or metrics.

    Needs no `custom_objects`: the classes are registered first.
    """
    register_keras_objects()
    import zipfile

    import keras

    path_text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if path_text is not None and path_text.endswith(".keras") and os.path.isfile(path_text):
        # Keras reports a damaged archive as "File not found"; say what is wrong.
        try:
            with zipfile.ZipFile(path_text) as archive:
                damaged = archive.testzip()
        except (zipfile.BadZipFile, OSError) as error:
            raise ValueError(f"'{path_text}' is damaged (not a complete .keras archive: {error}); save or copy the model again.") from None
        if damaged is not None:
            raise ValueError(f"'{path_text}' is damaged ({damaged!r} inside it fails its checksum); save or copy the model again.")
    return keras.models.load_model(path, **kwargs)


__all__ = [*_SUBMODULES, "__version__", "load_model", "register_keras_objects"]
