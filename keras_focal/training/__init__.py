"""Training and comparison of segmentation runs (`keras-focal train|compare|demo`).

- `RunConfig`: one run's settings (MATLAB `trainingOptions` defaults).
- `prepare_run`: a run's pre-flight (checks everything, writes nothing) -> `PreparedRun`.
- `train_run`: train, resume, evaluate one run and write its files.
- `compare`: the grid models x losses x optimisers x folds x seeds, with
  `results.csv`, `results.md` and `results.png` (`CompareConfig` its settings;
  module `keras_focal.training.comparison`).
"""

from __future__ import annotations

import importlib

# Imported on first use, so that the command line's parser needs no Keras.
_EXPORTS = {
    "LOSSES": "config", "MODELS": "config", "OPTIMIZERS": "config", "RunConfig": "config",
    "CompareConfig": "comparison", "compare": "comparison", "PreparedRun": "run", "RunSetupError": "run", "prepare_run": "run", "train_run": "run",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"keras_focal.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'keras_focal.training' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
