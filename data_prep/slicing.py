"""Per-volume intensity normalisation and per-slice resizing to the network size."""

from __future__ import annotations

import numpy as np

from keras_focal.types import Array, ArrayLike

DEFAULT_PERCENTILES = (0.5, 99.5)


def normalize_intensity(
    volume: ArrayLike, percentiles: tuple[float, float] = DEFAULT_PERCENTILES, notes: list[str] | None = None,
) -> Array:
    """Clips a volume to its own percentiles and scales it to 0..255 (uint8).

    One pair of percentiles per volume, not per slice, so that slices keep
    their relative brightness (the organ looks the same at both ends of a
    volume). Clipping at 0.5/99.5 % removes the few very bright or dark
    voxels of MRI (vessels, bias hot spots) and of ultrasound speckle that
    would otherwise squeeze the tissue contrast into a few grey levels;
    PNG then stores the result losslessly, as the ADFL paper does.

    Non-finite voxels (NaN, ±inf: a failed reconstruction, a mask applied as
    NaN) take no part in the percentiles, which would otherwise be ±inf or
    NaN and crush the tissue into a few grey levels; they become 0.

    Args:
        volume: array of any shape.
        percentiles: `(low, high)` with `0 <= low < high <= 100`.
        notes: a list to which a sentence is appended when the volume held
            non-finite voxels (how many) or is constant (all black after).

    Returns:
        uint8 array of the same shape; a constant volume becomes all zeros.

    Raises:
        ValueError: bad `percentiles`, or no voxel is finite.
    """
    low, high = percentiles
    if not 0 <= low < high <= 100:
        raise ValueError(f"`percentiles` must satisfy 0 <= low < high <= 100. Received: {percentiles!r}")
    volume = np.asarray(volume, dtype=np.float32)
    finite = np.isfinite(volume)
    if not finite.any():
        raise ValueError(f"every one of the volume's {volume.size} voxels is NaN or infinite: no intensity to scale.")
    bad = volume.size - int(np.count_nonzero(finite))
    if bad and notes is not None:
        notes.append(
            f"{bad} non-finite voxel(s) ({100 * bad / volume.size:.2g}% of the volume: NaN or inf) left out of the "
            "intensity percentiles and set to 0 (black)"
        )
    lo, hi = np.percentile(volume[finite], [low, high])
    if hi <= lo:
        if notes is not None:
            notes.append(f"the image volume is constant ({float(lo):g} between its percentiles): its slices are all black")
        return np.zeros(volume.shape, dtype=np.uint8)
    scaled = (np.clip(np.where(finite, volume, lo), lo, hi) - lo) * (255.0 / (hi - lo))
    return np.rint(scaled).astype(np.uint8)


def _pad_to_square(array: ArrayLike, fill):
    height, width = array.shape[:2]
    size = max(height, width)
    top, left = (size - height) // 2, (size - width) // 2
    padding = [(top, size - height - top), (left, size - width - left)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, padding, constant_values=fill)


def resize_image(image: ArrayLike, size: tuple[int, int], keep_aspect: bool = False) -> Array:
    """Anti-aliased bilinear resize of a uint8 slice `(H, W)` or `(H, W, C)` to `size`.

    With `keep_aspect`, the slice is first zero-padded (centred) to a square.
    """
    from skimage.transform import resize

    if keep_aspect:
        image = _pad_to_square(image, 0)
    if image.shape[:2] == tuple(size):
        return np.asarray(image, dtype=np.uint8)
    shape = tuple(size) + image.shape[2:]
    resized = resize(image.astype(np.float32), shape, order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def linear_interpolation_matrix(old: int, size: int) -> Array:
    """The `(size, old)` matrix of 1-D linear interpolation from `old` to `size` samples (pixel centres aligned, edges clamped).

    Output sample i reads the input at (i + 0.5) * old / new - 0.5, as
    scikit-image's `resize(order=1, mode="edge", anti_aliasing=False)` and
    TensorFlow's half-pixel bilinear resize do. Each row sums to 1, so
    interpolated class probabilities still sum to 1.
    """
    coordinates = np.clip((np.arange(size, dtype=np.float64) + 0.5) * (old / size) - 0.5, 0, old - 1)
    below = np.floor(coordinates).astype(np.intp)
    above = np.minimum(below + 1, old - 1)
    weight = coordinates - below
    matrix = np.zeros((size, old), np.float64)
    np.add.at(matrix, (np.arange(size), below), 1.0 - weight)
    np.add.at(matrix, (np.arange(size), above), weight)
    return matrix.astype(np.float32)


def restore_probabilities(probabilities: ArrayLike, height: int, width: int, keep_aspect: bool = False) -> Array:
    """The inverse of `resize_image` for class probabilities: `(n, S, S, C)` -> `(n, height, width, C)`.

    Bilinear interpolation of the probabilities (never nearest-neighbour
    labels: the arg-max is taken afterwards, on the original grid), as two
    matrix products per slice and class (`linear_interpolation_matrix`),
    then, with `keep_aspect`, the centred crop that removes the square
    padding `resize_image` added. An identity when the slices were not
    resized. The result is a view whose class planes are contiguous
    (`labels_of` reads them one at a time).
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.ndim != 4:
        raise ValueError(f"`probabilities` must be (slices, height, width, classes). Received shape {probabilities.shape}")
    side = max(height, width)
    target = (side, side) if keep_aspect else (height, width)
    if probabilities.shape[1:3] != target:
        planes = np.moveaxis(probabilities, 3, 1)  # (n, C, S, S)
        rows = linear_interpolation_matrix(planes.shape[2], target[0])
        columns = linear_interpolation_matrix(planes.shape[3], target[1])
        probabilities = np.moveaxis(np.matmul(np.matmul(rows, planes), columns.T), 1, 3)
    if keep_aspect:
        top, left = (side - height) // 2, (side - width) // 2  # as `_pad_to_square` placed the slice
        probabilities = probabilities[:, top: top + height, left: left + width]
    return probabilities


def labels_of(probabilities: ArrayLike) -> Array:
    """`argmax(probabilities, axis=-1)` as uint8, one class plane at a time (ties: the lower class, as argmax).

    NumPy's arg-max over a short last axis walks the array with a stride
    per element; comparing whole planes is several times faster on a
    512² x 54 volume.
    """
    best = np.array(probabilities[..., 0], dtype=np.float32)
    labels = np.zeros(best.shape, np.uint8)
    for index in range(1, probabilities.shape[-1]):
        plane = probabilities[..., index]
        higher = plane > best
        labels[higher] = index
        np.maximum(best, plane, out=best)
    return labels


def resize_mask(mask: ArrayLike, size: tuple[int, int], keep_aspect: bool = False, fill: int = 255) -> Array:
    """Nearest-neighbour resize of a label map to `size` (no new label values).

    With `keep_aspect`, the padding gets `fill` (255, ignore, by default:
    those pixels were never imaged).
    """
    from skimage.transform import resize

    if keep_aspect:
        mask = _pad_to_square(mask, fill)
    if mask.shape[:2] == tuple(size):
        return np.asarray(mask, dtype=np.uint8)
    resized = resize(mask, tuple(size), order=0, anti_aliasing=False, preserve_range=True)
    return resized.astype(np.uint8)


def labels_outside(mask: ArrayLike, num_classes: int, ignore_label: int = 255) -> Array:
    """The distinct labels of `mask` outside `[0, num_classes) U {ignore}` (sorted)."""
    values = np.unique(mask)
    return values[(values >= num_classes) & (values != ignore_label) | (values < 0)]


def check_labels(mask: ArrayLike, num_classes: int, ignore_label: int = 255, what: str = "mask") -> None:
    """Raises ValueError naming the labels of `mask` outside `[0, num_classes) U {ignore}`."""
    bad = labels_outside(mask, num_classes, ignore_label)
    if bad.size:
        raise ValueError(
            f"{what} holds labels {bad[:10].tolist()}; allowed are 0..{num_classes - 1} "
            f"and {ignore_label} (ignore)."
        )


def select_slices(
    masks: ArrayLike, mode: str = "all", min_foreground: float = 0.0, ignore_label: int = 255,
) -> list[int]:
    """Indices of the slices to keep, from a `(z, y, x)` label volume or a list of label maps.

    Args:
        masks: label slices.
        mode: "all", or "foreground" (slices with at least one pixel of a
            class other than 0).
        min_foreground: with "foreground", the minimum fraction of
            foreground pixels among the labelled (non-ignore) pixels.
    """
    if mode not in ("all", "foreground"):
        raise ValueError(f"`mode` must be 'all' or 'foreground'. Received: mode={mode!r}")
    if mode == "all":
        return list(range(len(masks)))
    fractions = foreground_fractions(masks, ignore_label)
    return [i for i, f in enumerate(fractions) if f > 0 and f >= min_foreground]


def foreground_fractions(masks: ArrayLike, ignore_label: int = 255) -> Array:
    """Per slice: pixels of classes other than 0 over labelled (non-ignore) pixels."""
    fractions: list[float] = []
    for mask in masks:
        labelled = int(np.count_nonzero(mask != ignore_label))
        foreground = int(np.count_nonzero((mask != 0) & (mask != ignore_label)))
        fractions.append(foreground / max(labelled, 1))
    return np.asarray(fractions)
