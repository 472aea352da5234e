"""keras-focal: losses and layers for training on class-imbalanced data.

Submodules:

- `keras_focal.losses`: cross-entropy, weighted cross-entropy, the sigmoid and
  softmax focal losses (with the stabilising `epsilon` of Note on the Stability
  of the Focal Loss), and Hossain et al.'s Dual Focal Loss.
- `keras_focal.layers`: the Adaptive Class Weight (ACW) layer.
- `keras_focal.initializers`: the prior-probability bias initialiser and the
  bilinear kernel of FCN's upsampling layers.
- `keras_focal.class_weights`: MATLAB-style `countEachLabel` and class-weight
  helpers.
- `keras_focal.metrics`: `DiceScore` and `IoUScore` Keras metrics.
- `keras_focal.evaluation`: MATLAB-style `evaluate_semantic_segmentation`.
- `keras_focal.models`, `keras_focal.data_prep`, `keras_focal.training`:
  network builders, data preparation and the trainer (imported on demand).
"""

__version__ = "0.1.0"

from keras_focal import class_weights  # noqa: E402,F401
from keras_focal import initializers  # noqa: E402,F401
from keras_focal import layers  # noqa: E402,F401
from keras_focal import losses  # noqa: E402,F401
from keras_focal import metrics  # noqa: E402,F401
from keras_focal import evaluation  # noqa: E402,F401

__all__ = ["class_weights", "evaluation", "initializers", "layers", "losses", "metrics", "__version__"]
