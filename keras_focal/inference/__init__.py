"""Inference: trained 2-D networks turned into label maps and label volumes, the one place that does.

- `Predictor` (`predictor.py`): one network or an ensemble, with optional
  test-time flips; built from model files, run folders or a comparison
  (`Predictor.from_files`, `from_runs`, `from_comparison`) or from Keras
  models in memory. `predict_slices`, `predict_volume(s)`, `predict_files`,
  and `labelled_pairs` (the trainer's test scores and `evaluate`).
- `TrainedModel`, `load_trained_model`, `model_paths` (`trained.py`): a
  model file with the preparation settings of its training data.
- `find_input_cases`, `check_input_case`, `read_input_volume` (`cases.py`):
  what an input path holds, checked before work.
- `predict_files`, `PredictionRequest` (`files.py`): `keras-focal predict`,
  resumable and atomic, as a library call.
- `prepared_case_volumes`, `score_prepared_cases`, `run_volume_metrics`,
  `decide_postprocessing` (`prepared_cases.py`): prepared cases back on
  their original grid, scored in 3-D.
- `evaluate_trained` (`evaluate.py`): `keras-focal evaluate`'s report of a
  model on its test fold.

Examples:
    >>> from keras_focal.inference import Predictor  # doctest: +SKIP
    >>> predictor = Predictor.from_comparison("results", loss="adfl", tta="flip")  # doctest: +SKIP
    >>> predictor.predict_files("new_patients/", "labels/", postprocess="largest-component")  # doctest: +SKIP
"""

from __future__ import annotations

from keras_focal.inference.cases import InputCase, check_input_case, find_input_cases, read_input_volume
from keras_focal.inference.evaluate import evaluate_trained
from keras_focal.inference.files import (
    OUTPUT_FORMATS,
    PredictionPlan,
    PredictionRequest,
    plan_prediction,
    predict_files,
)
from keras_focal.inference.predictor import (
    POSTPROCESS_MODES,
    TTA_MODES,
    Predictor,
    keep_largest_components,
    network_input,
    restore_volume,
)
from keras_focal.inference.prepared_cases import (
    CaseVolumes,
    decide_postprocessing,
    original_case_truth,
    prepared_case_truth,
    prepared_case_volumes,
    run_volume_metrics,
    score_prepared_cases,
)
from keras_focal.inference.trained import (
    PredictionSettings,
    TrainedModel,
    check_ensemble,
    check_model_settings,
    comparison_model_paths,
    load_trained_model,
    model_paths,
)

__all__ = [
    "CaseVolumes", "InputCase", "OUTPUT_FORMATS", "POSTPROCESS_MODES", "PredictionPlan", "PredictionRequest",
    "PredictionSettings", "Predictor", "TTA_MODES", "TrainedModel", "check_ensemble", "check_input_case",
    "check_model_settings", "comparison_model_paths", "decide_postprocessing", "evaluate_trained", "find_input_cases",
    "keep_largest_components", "load_trained_model", "model_paths", "network_input", "original_case_truth",
    "plan_prediction", "predict_files", "prepared_case_truth", "prepared_case_volumes", "read_input_volume",
    "restore_volume", "run_volume_metrics", "score_prepared_cases",
]
