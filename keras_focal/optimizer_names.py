"""The trainer's optimisers: one table read by the command line, `RunConfig` and the reports.

Like `keras_focal.loss_names` and `keras_focal.model_names`, this module
imports nothing heavy, so that reports and the command line name the
optimisers without Keras.
"""

from __future__ import annotations

# Each optimiser's label in tables and the settings it reads (MATLAB's "adam" and "sgdm").
OPTIMIZER_NAMES = {"adam": ("ADAM", ()), "sgdm": ("SGDM", ("momentum",))}
OPTIMIZERS = tuple(OPTIMIZER_NAMES)
OPTIMIZER_LABELS = {name: label for name, (label, _) in OPTIMIZER_NAMES.items()}
