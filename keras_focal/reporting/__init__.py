"""Reporting: tables, charts and pictures of results, and the files of an evaluation report.

- `tables`: a comparison's Markdown report (pooled metrics first, the
  per-class IoU, the classes never predicted, per-image means, per-patient
  3-D tables), per-patient summaries, one run's summary line.
- `statistics`: paired differences against a reference loss over the same
  folds and seeds, with 95% intervals and paired tests.
- `figures`: the confusion matrix and the comparison's bar chart.
- `overlays`: contour overlays and label-map panels with their keys.
- `evaluation_files`: the files `keras-focal evaluate` writes.

Reporting computes no prediction: it lies below `keras_focal.inference` and
`keras_focal.training`, which call it.
"""

from __future__ import annotations
