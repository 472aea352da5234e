"""Finding the cases of each data source, and loading one case."""

import os
import re

import numpy as np

from keras_focal.data_prep.camvid import rgb_to_labels
from keras_focal.data_prep.dataset import IGNORE_LABEL, Case, CaseData, safe_case_name
from keras_focal.data_prep.dicom import read_dicom_volume
from keras_focal.data_prep.slicing import normalize_intensity
from keras_focal.data_prep.volume import CaseError, check_same_grid, read_volume

PROSTATE_CLASSES = ("background", "prostate")
MASK_SUFFIXES = (".mhd", ".mha", ".nrrd", ".nii.gz", ".nii")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _integer_mask(volume, what):
    array = volume.array
    if array.ndim != 3:
        raise CaseError(f"{what} must be a scalar label volume; got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.mod(array, 1) == 0):
            raise CaseError(f"{what} holds non-integer values; a mask must hold class indices.")
    values = np.unique(array)
    if values.min() < 0 or values.max() > 255:
        raise CaseError(f"{what} holds labels {values[(values < 0) | (values > 255)][:10].tolist()} outside 0..255.")
    return array.astype(np.uint8)


def grey_volume_images(image, options, notes):
    """A grey `Volume`'s slices normalised to uint8 on its own percentiles (`prep` and `predict` alike).

    Raises:
        CaseError: the image is not a scalar volume, or no voxel is finite.
    """
    if image.array.ndim != 3:
        raise CaseError(f"'{image.source}': the image must be a scalar (grey) volume; got shape {image.array.shape}.")
    try:
        return normalize_intensity(image.array, options.percentiles, notes=notes)
    except ValueError as error:
        raise CaseError(f"image '{image.source}': {error}") from None


def _grey_volume_case(image, mask, options, what):
    if image.array.ndim != 3:
        raise CaseError(f"the image must be a scalar (grey) volume; got shape {image.array.shape}.")
    try:
        check_same_grid(image, mask, what)
    except CaseError as error:
        raise CaseError(f"{error} (image '{image.source}', mask '{mask.source}')") from None
    masks = _integer_mask(mask, f"mask '{mask.source}'")
    notes = image.notes + mask.notes
    images = grey_volume_images(image, options, notes)
    return CaseData(
        images=images,
        masks=masks,
        sources=[(image.source, mask.source)],
        spacing=image.spacing,
        notes=notes,
        geometry=image.geometry(),
    )


# --- PROMISE12 -------------------------------------------------------------

def load_volume_case(case, options):
    image_path, mask_path = case.inputs
    return _grey_volume_case(read_volume(image_path), read_volume(mask_path), options, "image and mask")


def find_promise12_cases(src):
    """PROMISE12 cases under `src`: `CaseNN.mhd` with `CaseNN_segmentation.mhd`.

    Searches every sub-folder (`TrainingData_Part1..3/`, ...).

    Returns:
        `(cases, unlabelled, problems)`: the cases to prepare, the names of
        cases without a segmentation, and `{name: message}` for names found
        twice.
    """
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
    cases = [
        Case(name, load_volume_case, (images[name], masks[name]))
        for name in sorted(images)
        if name in masks and name not in problems
    ]
    unlabelled = sorted(name for name in images if name not in masks)
    for name in sorted(set(masks) - set(images)):
        problems[name] = f"segmentation '{masks[name]}' has no image {name}.mhd"
    return cases, unlabelled, problems


# --- DICOM -----------------------------------------------------------------

def read_mask_volume(path):
    """A label volume found by `find_mask`: a DICOM folder, or any file SimpleITK reads."""
    return read_dicom_volume(path) if os.path.isdir(path) else read_volume(path)


def load_dicom_case(case, options):
    image_path, mask_path, series = case.inputs
    image = read_dicom_volume(image_path, series=series)
    mask = read_mask_volume(mask_path)
    return _grey_volume_case(image, mask, options, "image and mask")


def _find_mask(masks, name):
    for suffix in MASK_SUFFIXES:
        path = os.path.join(masks, name + suffix)
        if os.path.isfile(path):
            return path
    folder = os.path.join(masks, name)
    return folder if os.path.isdir(folder) else None


def find_dicom_cases(src, masks, series=None):
    """DICOM cases: one folder (or one multi-frame file) per case under `src`.

    Each case's mask is `masks/<case>.mhd|.mha|.nrrd|.nii.gz|.nii` or a
    `masks/<case>/` DICOM folder, on the same grid as the image.

    Returns:
        `(cases, problems)` with `{name: message}` for cases without a mask.
    """
    for folder, what in ((src, "DICOM folder"), (masks, "mask folder")):
        if not os.path.isdir(folder):
            raise ValueError(f"{what} '{folder}' does not exist.")
    cases, problems = [], {}
    for entry in sorted(os.listdir(src)):
        path = os.path.join(src, entry)
        if entry.startswith(".") or entry.upper() == "DICOMDIR":
            continue
        original = entry[: -len(".dcm")] if entry.lower().endswith(".dcm") else entry
        name = safe_case_name(original)  # for the prepared files; the mask keeps the user's name
        mask = _find_mask(masks, original) or _find_mask(masks, name)
        if mask is None:
            looked = " or ".join(dict.fromkeys(repr(n) for n in (original, name)))
            problems[name] = f"no mask for case {original!r} in '{masks}' (looked for {looked} + {{{','.join(MASK_SUFFIXES)}}} and a folder)"
            continue
        cases.append(Case(name, load_dicom_case, (path, mask, series)))
    if not cases and not problems:
        raise ValueError(f"no case folder or DICOM file under '{src}'.")
    return cases, problems


# --- CamVid-style RGB label sets --------------------------------------------

def _read_rgb(path):
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def load_rgb_case(case, options):
    pairs, palette = case.inputs
    images, masks, notes = [], [], []
    for image_path, label_path in pairs:
        image, labels = _read_rgb(image_path), _read_rgb(label_path)
        if image.shape != labels.shape:
            raise CaseError(f"'{image_path}' is {image.shape[:2]} but its labels '{label_path}' are {labels.shape[:2]}.")
        images.append(image)
        masks.append(rgb_to_labels(labels, palette, IGNORE_LABEL))
    return CaseData(images=images, masks=masks, sources=list(pairs), notes=notes)


def find_rgb_label_cases(src, palette, group_by="sequence"):
    """Pairs RGB images with colour label images under `src` (CamVid layout).

    A label image is `<stem>_L.<ext>` (CamVid) anywhere under `src`, or a
    file with the image's stem inside a folder whose name contains "label".
    With `group_by="sequence"` the frames of one video (the stem's prefix
    before the first "_", e.g. `0001TP`) form one case, so that folds never
    split a sequence; `"image"` makes every image its own case.

    Returns:
        `(cases, problems)` with `{image: message}` for images without labels.
    """
    if group_by not in ("sequence", "image"):
        raise ValueError(f"`group_by` must be 'sequence' or 'image'. Received: {group_by!r}")
    if not os.path.isdir(src):
        raise ValueError(f"image folder '{src}' does not exist.")
    images, labels = {}, {}
    for root, _, names in os.walk(src):
        in_label_folder = "label" in os.path.basename(root).lower()
        for name in sorted(names):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in IMAGE_SUFFIXES:
                continue
            path = os.path.join(root, name)
            if stem.endswith("_L"):
                labels[stem[:-2]] = path
            elif in_label_folder:
                labels[stem] = path
            else:
                images[stem] = path
    if not images:
        raise ValueError(f"no image under '{src}'.")
    groups, problems = {}, {}
    for stem in sorted(images):
        if stem not in labels:
            problems[stem] = f"no label image for '{images[stem]}' ({stem}_L.png or labels/{stem}.png)"
            continue
        key = stem.split("_")[0] if group_by == "sequence" else stem
        groups.setdefault(safe_case_name(key), []).append((images[stem], labels[stem]))
    cases = [Case(name, load_rgb_case, (tuple(pairs), palette)) for name, pairs in groups.items()]
    return cases, problems
