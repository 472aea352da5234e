"""Finding the cases of each data source, and loading one case."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import numpy as np

from keras_focal.data_prep.dataset import Case, CaseData, safe_case_name
from keras_focal.data_prep.dicom import read_dicom_volume
from keras_focal.data_prep.dicom_labels import find_label_object, label_object_mask
from keras_focal.data_prep.labels import LabelTable
from keras_focal.data_prep.slicing import normalize_intensity
from keras_focal.data_prep.volume import CaseError, Volume, check_same_grid, read_volume
from keras_focal.types import Array, ArrayLike, PathLike

if TYPE_CHECKING:
    from keras_focal.data_prep.dataset import Case, CaseData, PrepOptions
    from keras_focal.data_prep.labels import LabelTable

PROSTATE_CLASSES = ("background", "prostate")
MASK_SUFFIXES = (".mhd", ".mha", ".nrrd", ".nii.gz", ".nii", ".dcm")


def check_channels(image: Volume, channels: int) -> None:
    """Raises `CaseError` unless the `Volume` `image` holds `channels` values per voxel."""
    if image.channels != channels:
        raise CaseError(
            f"'{image.source}' holds {image.channels} channel(s) (array shape {image.array.shape}), but "
            f"{channels} {'is' if channels == 1 else 'are'} expected here"
            + (": this source takes grey 3-D volumes (`prep msd`, `prep nnunet` and `prep volumes` keep every channel)."
               if channels == 1 else ".")
        )


def volume_images(image: Volume, options: PrepOptions, notes: list[str], channels: int = 1) -> Array:
    """A `Volume`'s slices normalised to uint8, each channel on its own percentiles (`prep` and `predict` alike).

    Returns `(z, y, x)` for one channel, `(z, y, x, channels)` for several:
    a T2 and an ADC map have unrelated intensity scales, so each is clipped
    and scaled on its own (notes name the channel).

    Raises:
        CaseError: the image holds another number of channels, or a channel has no finite voxel.
    """
    check_channels(image, channels)
    array = image.array if channels > 1 else image.array[..., None]
    planes = []
    for channel in range(channels):
        where, found = (f", channel {channel}" if channels > 1 else ""), []
        try:
            planes.append(normalize_intensity(array[..., channel], options.percentiles, notes=found))
        except ValueError as error:
            raise CaseError(f"image '{image.source}'{where}: {error}") from None
        notes.extend(f"channel {channel}: {note}" if channels > 1 else note for note in found)
    return planes[0] if channels == 1 else np.stack(planes, axis=-1)


def volume_case(
    image: Volume, mask: Volume, options: PrepOptions, labels: LabelTable, channels: int = 1,
    what: str = "image and mask",
) -> CaseData:
    """`CaseData` of an image `Volume` (`channels` per voxel) and its label `Volume` on the same grid.

    The mask's values are mapped to class indices by the `LabelTable`
    `labels` (a value it does not name fails the case).
    """
    notes = image.notes + mask.notes
    images = volume_images(image, options, notes, channels)  # refuses another channel count first
    try:
        check_same_grid(image, mask, what)
    except CaseError as error:
        raise CaseError(f"{error} (image '{image.source}', mask '{mask.source}')") from None
    if mask.array.ndim != 3:
        raise CaseError(f"mask '{mask.source}' must be a scalar label volume; it holds {mask.channels} channels "
                        f"(array shape {mask.array.shape}).")
    masks = labels.to_indices(mask.array, f"mask '{mask.source}'")
    return CaseData(
        images=images,
        masks=masks,
        sources=[(image.source, mask.source)],
        spacing=image.spacing,
        notes=notes,
        geometry=image.geometry(),
        separate_channels=channels > 1,
    )


# --- PROMISE12 and plain image/label pairs ------------------------------------

def load_volume_case(case: Case, options: PrepOptions) -> CaseData:
    """A case of one image file (3-D, or 4-D with channels) and one label file."""
    image_path, mask_path, labels, channels = case.inputs
    return volume_case(read_volume(image_path), read_mask_volume(mask_path), options, labels, channels)


def find_promise12_cases(src: PathLike) -> tuple[list[Case], list[str], dict[str, str]]:
    """PROMISE12 cases under `src`: `CaseNN.mhd` with `CaseNN_segmentation.mhd`.

    Searches every sub-folder (`TrainingData_Part1..3/`, ...).

    Returns:
        `(cases, unlabelled, problems)`: the cases to prepare, the names of
        cases without a segmentation, and `{name: message}` for names found
        twice.
    """
    src = os.fspath(src)
    if not os.path.isdir(src):
        raise ValueError(f"PROMISE12 folder '{src}' does not exist.")
    images, masks, problems = {}, {}, {}
    pattern = re.compile(r"^(case\d+)(_segmentation)?\.mhd$", re.IGNORECASE)
    for root, _, names in os.walk(src):
        for name in sorted(names):
            match = pattern.match(name)
            if not match:
                continue
            case = match.group(1)[0].upper() + match.group(1)[1:]
            table = masks if match.group(2) else images
            if case in table:
                problems[case] = f"found twice: '{table[case]}' and '{os.path.join(root, name)}'"
            table[case] = os.path.join(root, name)
    if not images:
        raise ValueError(f"no CaseNN.mhd file under '{src}' (expected the PROMISE12 layout).")
    labels = LabelTable.from_names(PROSTATE_CLASSES)
    cases = [
        Case(name, load_volume_case, (images[name], masks[name], labels, 1))
        for name in sorted(images)
        if name in masks and name not in problems
    ]
    unlabelled = sorted(name for name in images if name not in masks)
    for name in sorted(set(masks) - set(images)):
        problems[name] = f"segmentation '{masks[name]}' has no image {name}.mhd"
    return cases, unlabelled, problems


# --- DICOM -----------------------------------------------------------------

def read_mask_volume(path: PathLike) -> Volume:
    """A label volume found by `find_mask`: a DICOM folder, or any file SimpleITK reads."""
    return read_dicom_volume(path) if os.path.isdir(path) else read_volume(path)


def load_dicom_case(case: Case, options: PrepOptions) -> CaseData:
    """A DICOM series with its mask: a label volume on its grid, or a DICOM SEG / RTSTRUCT placed onto it."""
    image_path, mask_path, series, labels, roi_map = case.inputs
    image = read_dicom_volume(image_path, series=series)
    label_object = find_label_object(mask_path)
    if label_object is None:
        return volume_case(image, read_mask_volume(mask_path), options, labels)
    masks, notes = label_object_mask(label_object, image, labels, roi_map)
    mask = Volume(masks, image.spacing, image.origin, image.direction, source=label_object, notes=notes)
    return volume_case(image, mask, options, LabelTable(labels.names, tuple(range(len(labels.names)))))


def find_mask(masks: ArrayLike, name: str) -> str | None:
    """The label file (`MASK_SUFFIXES`) or label folder (a DICOM SEG/RTSTRUCT or label series) of case `name` in
    the folder `masks`, or None."""
    for suffix in MASK_SUFFIXES:
        path = os.path.join(masks, name + suffix)
        if os.path.isfile(path):
            return path
    folder = os.path.join(masks, name)
    return folder if os.path.isdir(folder) else None


def find_dicom_cases(
    src: PathLike, masks: PathLike, series: str | None = None, labels: LabelTable | None = None,
    roi_map: dict[str, str] | None = None,
) -> tuple[list[Case], dict[str, str]]:
    """DICOM cases: one folder (or one multi-frame file) per case under `src`.

    Each case's mask is `masks/<case>.mhd|.mha|.nrrd|.nii.gz|.nii` or a
    `masks/<case>/` DICOM folder, on the same grid as the image, or a DICOM
    SEG or RTSTRUCT object (`masks/<case>.dcm`, or the one such file in
    `masks/<case>/`) placed onto the series' grid
    (`keras_focal.data_prep.dicom_labels`).

    Args:
        labels: the `LabelTable` (default: background and prostate, values 0 and 1).
        roi_map: `{segment or ROI name: class name}` for SEG and RTSTRUCT masks.

    Returns:
        `(cases, problems)` with `{name: message}` for cases without a mask.
    """
    src = os.fspath(src)
    for folder, what in ((src, "DICOM folder"), (masks, "mask folder")):
        if not os.path.isdir(folder):
            raise ValueError(f"{what} '{folder}' does not exist.")
    labels = labels or LabelTable.from_names(PROSTATE_CLASSES)
    if roi_map:
        unknown = sorted({c for c in roi_map.values() if c not in labels.names})
        if unknown:
            raise ValueError(f"--roi maps to {unknown}, which are not among the classes {list(labels.names)}.")
    cases, problems = [], {}
    for entry in sorted(os.listdir(src)):
        path = os.path.join(src, entry)
        if entry.startswith(".") or entry.upper() == "DICOMDIR":
            continue
        original = entry[: -len(".dcm")] if entry.lower().endswith(".dcm") else entry
        name = safe_case_name(original)  # for the prepared files; the mask keeps the user's name
        mask = find_mask(masks, original) or find_mask(masks, name)
        if mask is None:
            looked = " or ".join(dict.fromkeys(repr(n) for n in (original, name)))
            problems[name] = f"no mask for case {original!r} in '{masks}' (looked for {looked} + {{{','.join(MASK_SUFFIXES)}}} and a folder)"
            continue
        cases.append(Case(name, load_dicom_case, (path, mask, series, labels, roi_map)))
    if not cases and not problems:
        raise ValueError(f"no case folder or DICOM file under '{src}'.")
    return cases, problems
