"""Type aliases of the public API: what a tensor argument, an array argument and a path argument accept.

The backends' tensor types (TensorFlow, JAX, torch) share no base class, so a
tensor argument is `TensorLike`: whatever `keras.ops.convert_to_tensor`
accepts. This module imports nothing heavy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeAlias

import numpy as np

# A tensor of the Keras backend, a NumPy array, a Python scalar or nested lists.
TensorLike: TypeAlias = Any
# A NumPy array or anything `np.asarray` takes (nested lists, a backend tensor on the CPU). Like TensorLike it is
# not narrowed further: the functions that take one call `np.asarray` on it or use it as an array.
ArrayLike: TypeAlias = Any
# A NumPy array as returned (label maps, volumes, probabilities).
Array: TypeAlias = np.ndarray
# A file or folder path.
PathLike: TypeAlias = str | os.PathLike
# Class names in label order.
ClassNames: TypeAlias = Sequence[str]
