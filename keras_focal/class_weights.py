"""Class pixel counts and class weights (MATLAB `countEachLabel` and friends)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from keras_focal.types import Array, ArrayLike

if TYPE_CHECKING:
    import pandas as pd


@dataclasses.dataclass(frozen=True)
class LabelCounts:
    """Per-class pixel statistics, as MATLAB's `countEachLabel` table.

    Attributes:
        names: class names.
        pixel_count: number of pixels of each class (`PixelCount`).
        image_pixel_count: total number of pixels of the images in which the
            class occurs (`ImagePixelCount`).
    """

    names: tuple
    pixel_count: np.ndarray
    image_pixel_count: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """A pandas DataFrame with MATLAB's columns Name, PixelCount, ImagePixelCount."""
        import pandas as pd

        return pd.DataFrame(
            {
                "Name": list(self.names),
                "PixelCount": self.pixel_count,
                "ImagePixelCount": self.image_pixel_count,
            }
        )


def _iter_masks(labels):
    if isinstance(labels, np.ndarray):
        if labels.ndim == 2:
            yield labels
            return
        if labels.ndim < 2:
            raise ValueError(
                "`labels` must be a label map (H, W), a stack (N, H, W[, 1]) or an "
                f"iterable of label maps. Received an array of shape {labels.shape}"
            )
        for mask in labels:
            yield mask
        return
    for mask in labels:
        yield np.asarray(mask)


def count_each_label(
    labels: ArrayLike | Iterable[ArrayLike], num_classes: int | None = None,
    class_names: Sequence[str] | None = None, ignore_label: int | None = 255,
) -> LabelCounts:
    """Counts the pixels of each class, like MATLAB's `countEachLabel`.

    Args:
        labels: a label map `(H, W)`, a stack `(N, H, W)` / `(N, H, W, 1)`, or an
            iterable of label maps (streamed: only one is held at a time).
            Values are integer class indices.
        num_classes: number of classes; inferred from `class_names` or from the
            largest label when None.
        class_names: optional names; defaults to `"class_0"`, `"class_1"`, ...
        ignore_label: label value that is not counted (void); None to count
            every value.

    Returns:
        A `LabelCounts`.

    Examples:
        >>> counts = count_each_label(np.array([[[0, 0], [0, 1]], [[0, 0], [0, 0]]]))
        >>> counts.pixel_count.tolist(), counts.image_pixel_count.tolist()
        ([7, 1], [8, 4])
    """
    if class_names is not None:
        class_names = tuple(str(n) for n in class_names)
        if num_classes is not None and num_classes != len(class_names):
            raise ValueError(
                f"`class_names` has {len(class_names)} names but num_classes="
                f"{num_classes}."
            )
        num_classes = len(class_names)
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"`num_classes` must be >= 1. Received: {num_classes}")
    pixel_count = np.zeros(num_classes or 0, dtype=np.int64)
    image_pixel_count = np.zeros(num_classes or 0, dtype=np.int64)
    seen = 0
    for index, mask in enumerate(_iter_masks(labels)):
        mask = np.asarray(mask)
        if mask.ndim == 3 and mask.shape[-1] == 1:
            mask = mask[..., 0]
        if mask.ndim != 2:
            raise ValueError(
                f"Label map {index} must be 2-D (H, W). Received shape {mask.shape}"
            )
        if not (np.issubdtype(mask.dtype, np.integer) or np.all(np.mod(mask, 1) == 0)):
            raise ValueError(f"Label map {index} holds non-integer values.")
        values = mask.astype(np.int64).ravel()
        if ignore_label is not None:
            values = values[values != ignore_label]
        if values.size and values.min() < 0:
            raise ValueError(f"Label map {index} holds negative labels.")
        counts = np.bincount(values)
        if num_classes is not None and counts.size > num_classes:
            bad = np.nonzero(counts[num_classes:])[0] + num_classes
            raise ValueError(
                f"Label map {index} holds labels {bad[:10].tolist()} outside "
                f"[0, {num_classes})"
                + (f" that are not ignore_label={ignore_label}" if ignore_label is not None else "")
                + "."
            )
        if counts.size > pixel_count.size:
            pixel_count = np.pad(pixel_count, (0, counts.size - pixel_count.size))
            image_pixel_count = np.pad(
                image_pixel_count, (0, counts.size - image_pixel_count.size)
            )
        counts = np.pad(counts, (0, pixel_count.size - counts.size))
        pixel_count += counts
        image_pixel_count[counts > 0] += mask.size
        seen += 1
    if seen == 0:
        raise ValueError("`labels` holds no label maps.")
    names = class_names or tuple(f"class_{i}" for i in range(pixel_count.size))
    return LabelCounts(names, pixel_count, image_pixel_count)


def _counts(pixel_count):
    if isinstance(pixel_count, LabelCounts):
        pixel_count = pixel_count.pixel_count
    counts = np.asarray(pixel_count, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(
            "`pixel_count` must be a 1-D sequence with one count per class. "
            f"Received shape {counts.shape}"
        )
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(
            f"`pixel_count` entries must be finite and >= 0. Received {counts.tolist()}"
        )
    return counts


def inverse_frequency_weights(pixel_count: ArrayLike, absent: str = "error") -> Array:
    """Inverse pixel-frequency class weights (the ADFL paper's Eq. 5).

    ```
    w_i = (|X| / |X_i|) / sum_j (|X| / |X_j|)
    ```

    where `|X_i|` is the number of pixels of class `i`; the weights sum to 1.

    Args:
        pixel_count: per-class pixel counts, or a `LabelCounts`.
        absent: what to do with classes that have no pixel: `"error"` (raise)
            or `"zero"` (give them weight 0 and normalise over the others).

    Returns:
        float64 array of weights.

    Examples:
        >>> inverse_frequency_weights([300, 100]).tolist()
        [0.25, 0.75]
    """
    if absent not in ("error", "zero"):
        raise ValueError(f"`absent` must be 'error' or 'zero'. Received: {absent!r}")
    counts = _counts(pixel_count)
    missing = counts == 0
    if missing.all():
        raise ValueError("Every class has a pixel count of 0.")
    if missing.any() and absent == "error":
        raise ValueError(
            f"Classes {np.nonzero(missing)[0].tolist()} have no pixels, so their "
            "inverse frequency is infinite. Pass absent='zero' to give them "
            "weight 0."
        )
    inverse = np.where(missing, 0.0, counts.sum() / np.where(missing, 1.0, counts))
    return inverse / inverse.sum()


def median_frequency_weights(pixel_count: ArrayLike, image_pixel_count: ArrayLike = None) -> Array:
    """Median-frequency class weights (Eigen and Fergus; MATLAB's CamVid example).

    ```
    freq_i = PixelCount_i / ImagePixelCount_i
    w_i = median(freq) / freq_i
    ```

    Not normalised, as in MATLAB.

    Args:
        pixel_count: per-class pixel counts, or a `LabelCounts` (then
            `image_pixel_count` may be None).
        image_pixel_count: per-class image pixel counts.

    Examples:
        >>> median_frequency_weights([10, 30], [100, 100]).round(4).tolist()
        [2.0, 0.6667]
    """
    if isinstance(pixel_count, LabelCounts):
        image_pixel_count = pixel_count.image_pixel_count
    elif image_pixel_count is None:
        raise ValueError("`image_pixel_count` is required unless `pixel_count` is a LabelCounts.")
    counts = _counts(pixel_count)
    image_counts = _counts(image_pixel_count)
    if image_counts.shape != counts.shape:
        raise ValueError(
            f"`pixel_count` ({counts.size} classes) and `image_pixel_count` "
            f"({image_counts.size} classes) must have the same length."
        )
    if np.any(counts == 0) or np.any(image_counts == 0):
        raise ValueError(
            f"Classes {np.nonzero((counts == 0) | (image_counts == 0))[0].tolist()} "
            "have no pixels: their frequency is 0 and the median-frequency weight "
            "is undefined."
        )
    frequency = counts / image_counts
    return np.median(frequency) / frequency
