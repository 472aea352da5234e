"""Prepared cases back on their original grid, predicted and scored in 3-D.

The same inverse transform as prediction rebuilds a prepared case's volume
from its PNG slices: the manifest gives the slice indices and the spacing,
the case's record its grid (`prepared_case_volumes`). This is how
`evaluate --volumes`, `compare`'s per-patient table (`run_volume_metrics`)
and `predict --postprocess auto` (`decide_postprocessing`) score whole
patients.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from keras_focal.data_prep.prepared import PreparedDataset
from keras_focal.data_prep.slicing import labels_of
from keras_focal.data_prep.sources import read_mask_volume
from keras_focal.data_prep.volume import CaseError, Geometry, Volume, check_same_grid
from keras_focal.evaluation import dice_of_masks, foreground_classes, volume_metrics
from keras_focal.files import write_text_atomically
from keras_focal.inference.predictor import Predictor, keep_largest_components, restore_volume
from keras_focal.inference.trained import load_trained_model
from keras_focal.run_folder import read_run_config, run_model_path
from keras_focal.types import Array, ArrayLike, PathLike

if TYPE_CHECKING:
    import pandas as pd

    from keras_focal.data_prep.prepared import PreparedDataset
    from keras_focal.data_prep.volume import Geometry
    from keras_focal.inference.trained import TrainedModel


def one_hot(masks: ArrayLike, num_classes: int) -> Array:
    """uint8 label maps -> float32 one-hot; the ignore label (and any value >= num_classes) -> all zeros."""
    return (np.asarray(masks)[..., None] == np.arange(num_classes)).astype(np.float32)


@dataclasses.dataclass
class CaseVolumes:
    """A prepared case on its original grid: predicted and true labels `(z, y, x)`, the grid, which truth it is."""

    case: str
    prediction: np.ndarray
    truth: np.ndarray
    geometry: Geometry
    truth_source: str = "original"  # or "rebuilt: <why the original label volume was not used>"

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        return self.geometry.spacing_zyx


@dataclasses.dataclass(frozen=True)
class _CaseLayout:
    """Where a prepared case's slices came from: their indices, the original grid, the padding mode."""

    indices: list
    geometry: Geometry
    keep_aspect: bool

    def restore(self, probabilities: ArrayLike):
        slices, height, width = self.geometry.shape
        return restore_volume(probabilities, self.indices, slices, height, width, self.keep_aspect)

    def labels_of_masks(self, masks: ArrayLike, num_classes: int):
        """The prepared masks as a label volume on the original grid (their one-hot restored, then the arg-max)."""
        return labels_of(self.restore(one_hot(masks, num_classes)))


def _case_layout(dataset, case):
    if not dataset.has_volumes():
        raise ValueError(
            f"'{dataset.path}' cannot be rebuilt as volumes: its manifest.csv lacks a voxel spacing or an original "
            f"size ({', '.join(dataset.VOLUME_COLUMNS)}) for some slice (photographs are not volumes)."
        )
    rows = dataset.rows([case])
    if rows.empty:
        raise ValueError(f"case {case!r} has no slice in '{dataset.path}'.")
    first = rows.iloc[0]
    spacing = tuple(float(first[f"spacing_{axis}"]) for axis in "xyz")
    try:
        recorded = dataset.case_record(case).get("geometry")
    except ValueError:  # a folder written by another tool: no record, the manifest's size and spacing only
        recorded = None
    if recorded:
        geometry = Geometry.from_dict(recorded)
    else:  # a folder prepared before the geometry was recorded: size and spacing only
        geometry = Geometry((int(first.original_width), int(first.original_height), int(first.original_slices)), spacing)
    _, options = dataset.preparation()
    return _CaseLayout(rows.slice.astype(int).tolist(), geometry, options.keep_aspect)


def prepared_case_truth(dataset: PreparedDataset, case: str) -> tuple[Array, Geometry]:
    """A prepared case's masks put back on its original grid: `(labels (z, y, x) uint8, Geometry)`.

    The inverse of prep's slicing: each mask's one-hot is resized linearly
    to the original size (padding removed) and arg-maxed; slices prep
    dropped (`--slices foreground`) are background; ignored pixels count as
    background. A case prepared at its native size comes back exactly.
    """
    layout = _case_layout(dataset, case)
    _, masks = dataset.load([case], int(dataset.image_shape()[2]))
    return layout.labels_of_masks(masks, dataset.num_classes), layout.geometry


TRUTH_ORIGINAL = "original"
TRUTH_REBUILT = "rebuilt"


def original_case_truth(dataset: PreparedDataset, case: str, geometry: Geometry) -> tuple[Array | None, str | None]:
    """`(labels, why_not)`: a prepared case's original label volume as class indices on `geometry`, or why there is none.

    The manifest's `source_mask` names it: a volume file or a DICOM folder,
    read by prep's readers and mapped through the data set's label table
    (`classes.json` `label_values`). `labels` is None, and `why_not` says
    why, when the file is gone, is a DICOM SEG or RTSTRUCT (placed on its
    series' grid only during prep), or does not fit the recorded grid.
    """
    sources = dataset.rows([case]).source_mask.dropna().unique() if "source_mask" in dataset.rows([case]) else []
    if len(sources) != 1 or not isinstance(sources[0], str) or not sources[0]:
        return None, "the manifest names no single label volume for it"
    path = sources[0]
    if not os.path.exists(path):
        return None, f"its label volume '{path}' is not on disk"
    if os.path.isfile(path) and path.lower().endswith(".dcm"):
        return None, f"its labels '{path}' are a DICOM object, placed on the series' grid during prep only"
    try:
        truth = read_mask_volume(path)
        on_grid = Volume(np.zeros(geometry.shape, np.uint8), geometry.spacing, geometry.origin, geometry.direction)
        check_same_grid(on_grid, truth, f"the recorded grid of case {case!r} and its label volume '{path}'")
        return dataset.labels.to_indices(truth.array, f"the label volume '{path}'"), None
    except CaseError as error:
        return None, str(error)


def prepared_case_volumes(predictor: Predictor, dataset: PreparedDataset, case: str) -> CaseVolumes:
    """Predicts the PNG slices of a prepared `case` with a `Predictor` and puts its prediction and its truth on the original grid.

    The manifest gives the slice indices and the spacing, the case's record
    its grid. The truth is the original label volume where it is on disk
    (`original_case_truth`), else the prepared masks rebuilt through the same
    inverse transform as the probabilities (`prepared_case_truth`);
    `CaseVolumes.truth_source` says which.

    Raises:
        ValueError: the case has no spacing (photographs) or no slice.
    """
    layout = _case_layout(dataset, case)
    images, masks = dataset.load([case], int(dataset.image_shape()[2]))
    predicted = layout.restore(predictor.slice_probabilities(images))
    truth, why_not = original_case_truth(dataset, case, layout.geometry)
    if truth is None:
        truth, source = layout.labels_of_masks(masks, dataset.num_classes), f"{TRUTH_REBUILT}: {why_not}"
    else:
        source = TRUTH_ORIGINAL
    return CaseVolumes(case, labels_of(predicted), truth, layout.geometry, source)


def score_prepared_cases(
    predictor: Predictor, dataset: PreparedDataset, cases: Sequence[str], postprocess: Sequence[int] = (),
) -> list[dict]:
    """`volume_metrics` rows (with `case` and `truth`, which truth scored it) of each prepared case on its original grid.

    `postprocess`: labels whose largest component is kept before scoring.
    """
    rows = []
    for case in cases:
        volumes = prepared_case_volumes(predictor, dataset, case)
        prediction = keep_largest_components(volumes.prediction, postprocess) if postprocess else volumes.prediction
        rows += [{"case": case, **row, "truth": volumes.truth_source}
                 for row in volume_metrics(prediction, volumes.truth, spacing_zyx=volumes.spacing_zyx, classes=dataset.class_names)]
    return rows


def run_volume_metrics(
    run_dir: PathLike, batch_size: int = 8, dataset: PreparedDataset | None = None,
) -> pd.DataFrame | None:
    """Per-patient 3-D metrics of a finished run's test cases, with the model its 2-D scores are of.

    `dataset`: the run's `PreparedDataset` when the caller has read it (a comparison reads it once).

    Writes `RUN/volume_metrics.csv` (one row per case and foreground class)
    atomically and returns it as a DataFrame; a run whose file exists is
    read, not predicted again. None for a run without a model (NaN) or whose
    data set has no voxel spacing (photographs).
    """
    import pandas as pd

    path = os.path.join(run_dir, "volume_metrics.csv")
    if os.path.exists(path):
        return pd.read_csv(path, dtype={"case": str})
    try:
        model_path = run_model_path(run_dir)
    except ValueError:
        return None  # a NaN run kept no model: it has no scores, as in the 2-D tables
    config = read_run_config(run_dir)
    dataset = dataset if dataset is not None else PreparedDataset(config["data"])
    if not dataset.has_volumes():
        return None
    trained = load_trained_model(model_path, dataset=dataset)
    table = pd.DataFrame(score_prepared_cases(Predictor([trained], batch_size=batch_size), dataset, config["test_cases"]))
    write_text_atomically(path, table.to_csv(index=False))
    return table


def check_auto_postprocessing(models: Sequence[TrainedModel]) -> None:
    """Raises ValueError unless some model has validation cases to decide the post-processing on."""
    if not any(m.validation_cases for m in models):
        raise ValueError(
            "--postprocess auto decides on the validation cases of the models' runs, and "
            + ("these runs have none (trained with --validation-fraction 0)" if all(m.run for m in models)
               else f"'{next(m.path for m in models if not m.run)}' is not inside a run folder")
            + "; use --postprocess largest-component or none."
        )


def decide_postprocessing(predictor: Predictor) -> dict:
    """nnU-Net's choice, per foreground class: keep only its largest component when that raises the validation cases' mean 3-D Dice.

    Each model is scored on its own run's validation cases (an ensemble's
    fold models on theirs), without and with the post-processing; a class
    is post-processed only when its mean Dice over those cases rises.

    Returns:
        `{"classes": [labels kept], "per_class": {name: {"dice_without", "dice_with", "cases", "kept"}}}`.

    Raises:
        ValueError: no model has validation cases (a model outside a run folder, or a run without them).
    """
    import pandas as pd

    models = predictor.models
    check_auto_postprocessing(models)
    class_names = list(models[0].settings.class_names)
    foreground = foreground_classes(class_names)
    without, with_ = [], []
    for trained in models:
        if not trained.validation_cases:
            continue
        dataset = PreparedDataset(trained.settings.data)
        alone = Predictor([trained], batch_size=predictor.batch_size, tta=predictor.tta)
        for case in trained.validation_cases:
            volumes = prepared_case_volumes(alone, dataset, case)
            kept = keep_largest_components(volumes.prediction, foreground)
            for target, prediction in ((without, volumes.prediction), (with_, kept)):
                target.append({"case": case, **{class_names[label]: _dice(prediction, volumes.truth, label) for label in foreground}})
    without, with_ = pd.DataFrame(without), pd.DataFrame(with_)
    per_class, kept_labels = {}, []
    for label in foreground:
        name = class_names[label]
        before, after = float(without[name].mean()), float(with_[name].mean())  # NaN cases (absent class) skipped
        keep = bool(np.isfinite(before) and np.isfinite(after) and after > before)
        per_class[name] = {"dice_without": before, "dice_with": after, "cases": int(without[name].notna().sum()), "kept": keep}
        if keep:
            kept_labels.append(label)
    return {"classes": kept_labels, "per_class": per_class}


def _dice(prediction: ArrayLike, truth: ArrayLike, label):
    return dice_of_masks(prediction == label, truth == label)
