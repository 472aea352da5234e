"""MATLAB-style semantic-segmentation metrics (`evaluateSemanticSegmentation`), streamed."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from keras_focal.types import Array, ArrayLike, ClassNames

if TYPE_CHECKING:
    import pandas as pd

BF_TOLERANCE = 0.0075  # MATLAB's default: 0.75% of the image diagonal


def _boundary(mask: ArrayLike):
    """Inner boundary (4-neighbourhood) of a boolean mask; outside the image counts as background."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def bf_score(predicted: ArrayLike, truth: ArrayLike, tolerance: float) -> float:
    """Boundary F1 score of two boolean masks (MATLAB's `bfscore`).

    Precision is the share of predicted boundary pixels closer than
    `tolerance` pixels to the true boundary, recall the share of true
    boundary pixels closer than `tolerance` to the predicted one; the score
    is their harmonic mean. NaN when the class is in neither mask, 0 when it
    is in only one.
    """
    from scipy.ndimage import distance_transform_edt

    predicted_boundary, true_boundary = _boundary(predicted), _boundary(truth)
    if not predicted_boundary.any() and not true_boundary.any():
        return float("nan")
    if not predicted_boundary.any() or not true_boundary.any():
        return 0.0
    distance_to_truth = distance_transform_edt(~true_boundary)
    distance_to_prediction = distance_transform_edt(~predicted_boundary)
    precision = np.mean(distance_to_truth[predicted_boundary] < tolerance)
    recall = np.mean(distance_to_prediction[true_boundary] < tolerance)
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def _scores(confusion):
    """Per-class Accuracy (recall), IoU and Dice of a confusion matrix; NaN for absent classes."""
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diag(confusion)
    truth = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = true_positive / truth
        union = truth + predicted - true_positive
        iou = np.where(union > 0, true_positive / union, np.nan)
        dice = np.where(union > 0, 2 * true_positive / (truth + predicted), np.nan)
    return accuracy, iou, dice


def _nanmean(values):
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _summary(confusion):
    accuracy, iou, _ = _scores(confusion)
    truth = confusion.sum(axis=1)
    total = confusion.sum()
    with np.errstate(invalid="ignore"):
        weighted = float(np.nansum(truth / total * iou)) if total else float("nan")
    return {
        "GlobalAccuracy": float(np.trace(confusion) / total) if total else float("nan"),
        "MeanAccuracy": _nanmean(accuracy),
        "MeanIoU": _nanmean(iou),
        "WeightedIoU": weighted,
    }


@dataclasses.dataclass
class SegmentationMetrics:
    """The result of `evaluate_semantic_segmentation` (MATLAB's `semanticSegmentationMetrics`).

    Attributes:
        class_names: the classes.
        confusion_matrix: `[true, predicted]` pixel counts over the data set.
        dataset_metrics: GlobalAccuracy, MeanAccuracy, MeanIoU, WeightedIoU,
            MeanBFScore.
        class_metrics: per class Accuracy, IoU, Dice, MeanBFScore.
        image_metrics: per image GlobalAccuracy, MeanAccuracy, MeanIoU,
            WeightedIoU, MeanBFScore, plus the foreground Dice and IoU.
        foreground: indices of the foreground classes.
        foreground_metrics: the paper's figures. `mDSC`/`mIOU` are means
            over images of the per-image foreground Dice/IoU (images where
            the foreground is in neither mask are left out); `dataset_DSC`/
            `dataset_IOU` pool every pixel first (class metrics averaged
            over the foreground classes).
        image_size: `(height, width)` of the scored label maps when they all
            share one, else None.
    """

    class_names: list
    confusion_matrix: np.ndarray
    dataset_metrics: dict
    class_metrics: dict
    image_metrics: list
    foreground: list
    foreground_metrics: dict
    image_size: tuple | None = None

    def never_predicted(self) -> list[str]:
        """Names of the classes present in the truth that the prediction never marks (IoU 0 by absence, not by error)."""
        truth, predicted = self.confusion_matrix.sum(axis=1), self.confusion_matrix.sum(axis=0)
        return [name for name, t, p in zip(self.class_names, truth, predicted) if t > 0 and p == 0]

    @property
    def normalized_confusion_matrix(self) -> Array:
        """Rows (true classes) divided by their pixel counts; NaN rows for absent classes."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.confusion_matrix / self.confusion_matrix.sum(axis=1, keepdims=True)

    def to_frame(self, which: str = "class") -> pd.DataFrame:
        """pandas DataFrame of the "class", "image" or "dataset" metrics."""
        import pandas as pd

        if which == "class":
            return pd.DataFrame(self.class_metrics, index=self.class_names).rename_axis("class")
        if which == "image":
            return pd.DataFrame(self.image_metrics).rename_axis("image")
        if which == "dataset":
            return pd.DataFrame([self.dataset_metrics | self.foreground_metrics])
        raise ValueError(f"`which` must be 'class', 'image' or 'dataset'. Received: {which!r}")

    def to_markdown(self) -> str:
        def row(values):
            return "| " + " | ".join(values) + " |"

        def number(value):
            return "NaN" if value is None or not math.isfinite(value) else f"{value:.4f}"

        lines = ["| metric | value |", "|---|---:|"]
        lines += [row([k, number(v)]) for k, v in (self.dataset_metrics | self.foreground_metrics).items()]
        lines += ["", "| class | Accuracy | IoU | Dice | MeanBFScore |", "|---|---:|---:|---:|---:|"]
        for index, name in enumerate(self.class_names):
            lines.append(row([name] + [number(self.class_metrics[m][index]) for m in ("Accuracy", "IoU", "Dice", "MeanBFScore")]))
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        def clean(value):
            if isinstance(value, float) and not math.isfinite(value):
                return None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, (list, tuple)):
                return [clean(v) for v in value]
            if isinstance(value, np.generic):
                return clean(value.item())
            return value

        return json.dumps(
            clean(
                {
                    "class_names": list(self.class_names),
                    "confusion_matrix": self.confusion_matrix.tolist(),
                    "dataset_metrics": self.dataset_metrics,
                    "foreground_classes": [self.class_names[i] for i in self.foreground],
                    "foreground_metrics": self.foreground_metrics,
                    "class_metrics": {k: list(v) for k, v in self.class_metrics.items()},
                    "never_predicted": self.never_predicted(),
                    "image_size": list(self.image_size) if self.image_size else None,
                    "image_metrics": self.image_metrics,
                }
            ),
            indent=2,
        )


def _as_maps(labels, what: str):
    if isinstance(labels, np.ndarray):
        if labels.ndim == 2:
            yield labels
            return
        if labels.ndim == 4 and labels.shape[-1] == 1:
            labels = labels[..., 0]
        if labels.ndim != 3:
            raise ValueError(f"`{what}` must be label maps (H, W), (N, H, W) or an iterable of them; got shape {labels.shape}.")
        yield from labels
        return
    for item in labels:
        item = np.asarray(item)
        yield item[..., 0] if item.ndim == 3 and item.shape[-1] == 1 else item


def foreground_classes(class_names: ClassNames) -> list[int]:
    """Indices of the classes not named "background" (all of them when every class is)."""
    return [i for i, n in enumerate(class_names) if str(n).lower() != "background"] or list(range(len(class_names)))


def _checked_classes(
    class_names: ClassNames | None, num_classes: int | None, foreground: Sequence[int] | None,
) -> tuple[list[str], list[int]]:
    """`(class names, foreground indices)`, the defaults filled in; ValueError naming the argument otherwise."""
    if class_names is None:
        if num_classes is None:
            raise ValueError("give `class_names` or `num_classes`.")
        class_names = [f"class_{i}" for i in range(num_classes)]
    class_names = list(class_names)
    count = len(class_names)
    if count < 1:
        raise ValueError("`class_names` is empty.")
    foreground = list(foreground_classes(class_names) if foreground is None else foreground)
    if any(not 0 <= i < count for i in foreground):
        raise ValueError(f"`foreground` holds indices outside 0..{count - 1}: {foreground}")
    return class_names, foreground


def _check_label_map_pair(index, predicted: ArrayLike, truth: ArrayLike, count, ignore_label):
    """Raises ValueError naming image `index` unless both maps have one 2-D shape and labels 0..count-1 (or the ignore label)."""
    if predicted.shape != truth.shape or predicted.ndim != 2:
        raise ValueError(f"image {index}: prediction shape {predicted.shape} differs from ground truth shape {truth.shape}.")
    labelled = truth != ignore_label
    bad_truth = np.unique(truth[labelled & ((truth < 0) | (truth >= count))])
    bad_prediction = np.unique(predicted[(predicted < 0) | (predicted >= count)])
    if bad_truth.size or bad_prediction.size:
        where = "ground truth" if bad_truth.size else "prediction"
        raise ValueError(
            f"image {index}: {where} holds labels {(bad_truth if bad_truth.size else bad_prediction)[:10].tolist()} "
            f"outside 0..{count - 1}" + (f" (and not the ignore label {ignore_label})" if bad_truth.size else "") + "."
        )


def _image_scores(predicted: ArrayLike, truth: ArrayLike, count, ignore_label, foreground, bf_tolerance):
    """One image's `(confusion matrix, BF score per class, row of image metrics)`."""
    labelled = truth != ignore_label
    confusion = np.bincount(
        truth[labelled].astype(np.int64) * count + predicted[labelled].astype(np.int64), minlength=count * count
    ).reshape(count, count)
    tolerance = bf_tolerance * math.hypot(*truth.shape)
    scores = [bf_score((predicted == c) & labelled, (truth == c) & labelled, tolerance) for c in range(count)]
    _, iou, dice = _scores(confusion)
    image = _summary(confusion) | {
        "MeanBFScore": _nanmean(scores),
        "ForegroundDice": _nanmean(dice[foreground]),
        "ForegroundIoU": _nanmean(iou[foreground]),
    }
    return confusion, scores, image


def evaluate_semantic_segmentation(
    predictions: ArrayLike | Iterable[ArrayLike], ground_truth: ArrayLike | Iterable[ArrayLike], class_names: ClassNames | None = None, num_classes: int | None = None, ignore_label: int = 255, foreground: Sequence[int] | None = None, bf_tolerance: float = BF_TOLERANCE
) -> SegmentationMetrics:
    """Confusion matrix and MATLAB's data-set, class and image metrics, streamed.

    Pixels labelled `ignore_label` in the ground truth are left out. Per
    class (MATLAB's definitions): Accuracy = TP / (TP + FN), IoU = TP / (TP +
    FP + FN), Dice = 2TP / (2TP + FP + FN), MeanBFScore = mean over images of
    the boundary F1 score (tolerance `bf_tolerance` x image diagonal). Data
    set: GlobalAccuracy = correct / all pixels, MeanAccuracy and MeanIoU =
    means over classes, WeightedIoU = IoU weighted by each class's share of
    pixels, MeanBFScore = mean over images of their mean BF score. A class
    absent from both prediction and truth is NaN and left out of the means,
    as in MATLAB.

    Args:
        predictions: predicted label maps: an array `(H, W)`, `(N, H, W)`,
            or an iterable of `(H, W)` maps (only one pair is held at a time).
        ground_truth: the true label maps, in the same order.
        class_names: names; defaults to "class_0", ...
        num_classes: number of classes when `class_names` is None.
        ignore_label: ground-truth value that is not scored.
        foreground: indices of the classes of the paper's mDSC/mIOU;
            default: every class not named "background".
        bf_tolerance: BF-score distance tolerance as a fraction of the diagonal.

    Returns:
        A `SegmentationMetrics`.

    Examples:
        >>> truth = np.array([[0, 0], [1, 1]])
        >>> result = evaluate_semantic_segmentation(np.array([[0, 1], [1, 1]]), truth, ["bg", "fg"])
        >>> round(result.class_metrics["IoU"][1], 4), round(result.class_metrics["Dice"][1], 4)
        (0.6667, 0.8)
    """
    class_names, foreground = _checked_classes(class_names, num_classes, foreground)
    count = len(class_names)
    confusion = np.zeros((count, count), np.int64)
    bf_per_image, images, shapes = [], [], set()
    truths = _as_maps(ground_truth, "ground_truth")
    for index, predicted in enumerate(_as_maps(predictions, "predictions")):
        truth = next(truths, None)
        if truth is None:
            raise ValueError(f"`predictions` has more label maps than `ground_truth` ({index}).")
        predicted, truth = np.asarray(predicted), np.asarray(truth)
        _check_label_map_pair(index, predicted, truth, count, ignore_label)
        shapes.add(truth.shape)
        image_confusion, scores, image = _image_scores(predicted, truth, count, ignore_label, foreground, bf_tolerance)
        confusion += image_confusion
        bf_per_image.append(scores)
        images.append(image)
    if next(truths, None) is not None:
        raise ValueError("`ground_truth` has more label maps than `predictions`.")
    if not images:
        raise ValueError("no label maps to evaluate: `predictions` and `ground_truth` are empty.")

    accuracy, iou, dice = _scores(confusion)
    bf = np.asarray(bf_per_image, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        class_bf = [_nanmean(bf[:, c]) for c in range(count)]
    dataset = _summary(confusion) | {"MeanBFScore": _nanmean([image["MeanBFScore"] for image in images])}
    foreground_metrics = {
        "mDSC": _nanmean([image["ForegroundDice"] for image in images]),
        "mIOU": _nanmean([image["ForegroundIoU"] for image in images]),
        "dataset_DSC": _nanmean(dice[foreground]),
        "dataset_IOU": _nanmean(iou[foreground]),
    }
    return SegmentationMetrics(
        class_names=class_names,
        confusion_matrix=confusion,
        dataset_metrics=dataset,
        class_metrics={"Accuracy": accuracy.tolist(), "IoU": iou.tolist(), "Dice": dice.tolist(), "MeanBFScore": class_bf},
        image_metrics=images,
        foreground=foreground,
        foreground_metrics=foreground_metrics,
        image_size=tuple(int(n) for n in next(iter(shapes))) if len(shapes) == 1 else None,
    )


# --- Per-patient 3-D metrics in millimetres ---------------------------------

VOLUME_METRICS = ("dice", "iou", "hd95_mm", "hd_mm", "assd_mm", "rvd_percent")


def surface(mask: ArrayLike) -> Array:
    """The surface voxels of a boolean `(z, y, x)` mask: the mask minus its erosion (6-neighbourhood).

    As MONAI's `get_mask_edges` and medpy's `__surface_distances`: a mask
    voxel with a face neighbour outside the mask (or outside the array).
    """
    from scipy.ndimage import binary_erosion

    return mask & ~binary_erosion(mask, border_value=0)


def _directed_surface_distances(from_surface, to_surface, sampling):
    """Distance in mm from each voxel of `from_surface` to the nearest voxel of `to_surface` (a distance transform)."""
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(~to_surface, sampling=sampling)[from_surface]


def _cropped_pair(prediction: ArrayLike, truth: ArrayLike):
    """Both masks cut to their joint bounding box plus one empty voxel each side (distances are unchanged)."""
    joint = prediction | truth
    corners = [np.flatnonzero(joint.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    box = tuple(slice(c[0], c[-1] + 1) for c in corners)
    return (np.pad(prediction[box], 1), np.pad(truth[box], 1))


def dice_of_masks(predicted: ArrayLike, true: ArrayLike) -> float:
    """2|P∩T| / (|P| + |T|) of two boolean masks; NaN when both are empty."""
    total = int(np.count_nonzero(predicted)) + int(np.count_nonzero(true))
    return float("nan") if total == 0 else 2.0 * int(np.count_nonzero(predicted & true)) / total


def volume_metrics(
    prediction: ArrayLike, truth: ArrayLike, *, spacing_zyx: Sequence[float] | None = None, classes: ClassNames,
    **unexpected: object,
) -> list[dict]:
    """Per-class 3-D overlap and surface-distance metrics of one patient, distances in millimetres.

    Args:
        prediction: integer label volume `(z, y, x)` (class index = label value).
        truth: integer label volume of the same shape.
        spacing_zyx: voxel size in mm in the arrays' `(z, y, x)` order (as
            MONAI's and medpy's `spacing`). SimpleITK's `GetSpacing()`,
            `Volume.spacing` and the manifest hold `(x, y, z)`: reverse them
            (`Volume.spacing_zyx`). Keyword-only, and `spacing=` is refused:
            a spacing in the wrong order gives wrong distances silently.
        classes: the class names, index = label value; the metrics are
            computed for every class but the background
            (`foreground_classes`).

    Returns:
        One dict per class: `class`, `label`, `truth_voxels`,
        `predicted_voxels`, `truth_ml`, `predicted_ml`, and the metrics of
        `VOLUME_METRICS`:

        - `dice` = 2|P∩T| / (|P| + |T|), `iou` = |P∩T| / |P∪T|;
        - `hd95_mm`: MONAI's `compute_hausdorff_distance(percentile=95)`:
        the larger of the two directed 95th percentiles of the surface
        distances (prediction → truth and truth → prediction);
        `hd_mm`: the maximum (both agree with medpy's `hd` and
        SimpleITK's `HausdorffDistanceImageFilter`);
        - `assd_mm`: MONAI's `compute_average_surface_distance(symmetric=True)`:
        the mean of both directions' surface distances pooled (medpy's
        `assd` averages the two directions' means instead: equal when the
        surfaces have as many voxels, and within a few percent otherwise);
        - `rvd_percent`: 100 (|P| − |T|) / |T|, signed (medpy's `ravd` × 100):
        positive when the prediction is too large.

        Surfaces are the masks' voxels with a face neighbour outside
        (`surface`); distances come from Euclidean distance transforms
        with the voxel spacing (anisotropic spacing counts), on the
        masks' joint bounding box.

        Empty masks (no silent 0 or inf): a class in neither volume gives
        NaN for every metric (it cannot be scored); a class in only one of
        them gives Dice and IoU 0, NaN surface distances (undefined: no
        surface to measure to), and RVD −100% when the prediction is empty,
        NaN when the truth is. `summarise_volume_metrics` counts the NaNs
        instead of averaging them.

    Raises:
        ValueError: shapes differ, or `spacing_zyx` is not three positive numbers.
        TypeError: `spacing=` (of no stated order) instead of `spacing_zyx=`.
    """
    if unexpected or spacing_zyx is None:
        if "spacing" in unexpected:
            raise TypeError("volume_metrics() takes `spacing_zyx`, the voxel size in the arrays' (z, y, x) order; "
                            "`spacing` is refused because its order is ambiguous (SimpleITK's GetSpacing() is (x, y, z): "
                            "pass spacing_zyx=image.GetSpacing()[::-1]).")
        if unexpected:
            raise TypeError(f"volume_metrics() got unexpected keyword argument(s) {sorted(unexpected)}")
        raise TypeError("volume_metrics() needs `spacing_zyx`, the voxel size in the arrays' (z, y, x) order, in mm.")
    prediction, truth = np.asarray(prediction), np.asarray(truth)
    if prediction.shape != truth.shape or prediction.ndim != 3:
        raise ValueError(f"prediction and truth must be label volumes of one (z, y, x) shape; got {prediction.shape} and {truth.shape}.")
    sampling = tuple(float(s) for s in spacing_zyx)
    if len(sampling) != 3 or not all(np.isfinite(s) and s > 0 for s in sampling):
        raise ValueError(f"`spacing_zyx` must be three positive voxel sizes (z, y, x) in mm. Received: {spacing_zyx!r}")
    voxel_ml = float(np.prod(sampling)) / 1000.0
    rows = []
    for label in foreground_classes(classes):
        predicted, true = prediction == label, truth == label
        predicted_voxels, truth_voxels = int(predicted.sum()), int(true.sum())
        row = {"class": classes[label], "label": label, "truth_voxels": truth_voxels, "predicted_voxels": predicted_voxels,
               "truth_ml": truth_voxels * voxel_ml, "predicted_ml": predicted_voxels * voxel_ml}
        row.update(dict.fromkeys(VOLUME_METRICS, float("nan")))
        if truth_voxels:
            row["rvd_percent"] = 100.0 * (predicted_voxels - truth_voxels) / truth_voxels
        if predicted_voxels or truth_voxels:
            overlap = int(np.count_nonzero(predicted & true))
            row["dice"] = dice_of_masks(predicted, true)
            row["iou"] = overlap / (predicted_voxels + truth_voxels - overlap)
        if predicted_voxels and truth_voxels:
            cropped_prediction, cropped_truth = _cropped_pair(predicted, true)
            prediction_surface, truth_surface = surface(cropped_prediction), surface(cropped_truth)
            forward = _directed_surface_distances(prediction_surface, truth_surface, sampling)
            backward = _directed_surface_distances(truth_surface, prediction_surface, sampling)
            row["hd95_mm"] = float(max(np.percentile(forward, 95), np.percentile(backward, 95)))
            row["hd_mm"] = float(max(forward.max(), backward.max()))
            row["assd_mm"] = float(np.concatenate([forward, backward]).mean())
        rows.append(row)
    return rows


def summarise_volume_metrics(table: pd.DataFrame) -> pd.DataFrame:
    """Per class: mean, sample std (ddof 1) and count of the cases where each metric is defined, and how many are not.

    `table`: a DataFrame of `volume_metrics` rows with a `case` column
    (`volume_metrics.csv`). Returns a DataFrame with one row per class and,
    for each metric, `<metric>_mean`, `<metric>_std`, `<metric>_n` and
    `<metric>_undefined` (NaN cases: an empty mask, see `volume_metrics`).
    """
    import pandas as pd

    rows = []
    for name, group in table.groupby("class", sort=False):
        row = {"class": name, "cases": int(group.case.nunique())}
        for metric in VOLUME_METRICS:
            values = pd.to_numeric(group[metric], errors="coerce").to_numpy(dtype=float)
            finite = values[np.isfinite(values)]
            row[f"{metric}_mean"] = float(finite.mean()) if finite.size else float("nan")
            row[f"{metric}_std"] = float(finite.std(ddof=1)) if finite.size > 1 else float("nan")
            row[f"{metric}_n"] = int(finite.size)
            row[f"{metric}_undefined"] = int(values.size - finite.size)
        rows.append(row)
    return pd.DataFrame(rows)


