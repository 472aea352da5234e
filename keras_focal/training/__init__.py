"""Training and comparison of segmentation runs (`keras-focal train|compare|demo`).

- `RunConfig`: one run's settings (MATLAB `trainingOptions` defaults).
- `train_run`: train, resume, evaluate one run and write its files.
- `compare`: the grid models x losses x optimisers x folds x seeds, with
  `results.csv`, `results.md` and `results.png`.
"""

from keras_focal.training.config import LOSSES, MODELS, OPTIMIZERS, RunConfig
from keras_focal.training.data import PreparedDataset
from keras_focal.training.run import RunSetupError, train_run

__all__ = ["LOSSES", "MODELS", "OPTIMIZERS", "PreparedDataset", "RunConfig", "RunSetupError", "train_run"]
