"""2-D image sets (CamVid and its kin): images paired with label images, in the layouts users download.

Three layouts are read as they are, without re-arranging files:

- **SegNet's copy** (the SegNet tutorial's `CamVid/`, the copy most people
  use): `train/`, `val/`, `test/` with the label images of the same names in
  `trainannot/`, `valannot/`, `testannot/`; `train.txt`, `val.txt` and
  `test.txt` list the official split.
- **CamVid's original release**: `<stem>.png` with `<stem>_L.png` colour labels.
- **Any image folder with a label folder**: a label image has the image's
  stem and lies in a folder whose name ends in `annot`, contains `label`, or is
  named `mask(s)`, `gt` or `annotations` (also as a word: `train_gt`) (`images/` + `labels/`, `train/` + `train_labels/`).

Files in a label folder, and files named `*_L.*`, are never taken for images.

Label images come in two forms, decided from the files (PIL's mode of every
label image, read from its header) and said in the summary:

- **index**: single-band images (8- or 16-bit grey, or palette PNGs read as
  their indices) holding class indices. SegNet's copy: the 11 classes below
  in SegNet's order, 11 = void. Another index set takes `--class-names`
  (and `--void`); a value outside the table fails the case, naming it.
- **colour**: RGB images whose colours name the classes (CamVid's `_L.png`
  with MATLAB's 32 colours in 11 classes, or a `--palette` CSV); colours not
  in the palette are ignored (void).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from keras_focal.data_prep.dataset import Case, CaseData, PrepOptions, safe_case_name
from keras_focal.data_prep.file_checks import decoded, read_image_file
from keras_focal.data_prep.labels import LabelTable
from keras_focal.data_prep.prepared import IGNORE_LABEL
from keras_focal.data_prep.volume import CaseError
from keras_focal.types import Array, ArrayLike, PathLike

# MATLAB's CamVid example (camvidPixelLabelIDs): the 32 CamVid colours grouped
# into 11 classes; Void (0, 0, 0) and any colour not listed become 255 (ignore).
CAMVID_11 = {
    "Sky": [(128, 128, 128)],
    "Building": [(0, 128, 64), (128, 0, 0), (64, 192, 0), (64, 0, 64), (192, 0, 128)],
    "Pole": [(192, 192, 128), (0, 0, 64)],
    "Road": [(128, 64, 128), (128, 0, 192), (192, 0, 64)],
    "Pavement": [(0, 0, 192), (64, 192, 128), (128, 128, 192)],
    "Tree": [(128, 128, 0), (192, 192, 0)],
    "SignSymbol": [(192, 128, 128), (128, 128, 64), (0, 64, 64)],
    "Fence": [(64, 64, 128)],
    "Car": [(64, 0, 128), (64, 128, 192), (192, 128, 192), (192, 64, 128), (128, 64, 64)],
    "Pedestrian": [(64, 64, 0), (192, 128, 64), (64, 0, 192), (64, 128, 64)],
    "Bicyclist": [(0, 128, 192), (192, 0, 192)],
}
# SegNet's index masks (`*annot/*.png`): these classes as 0..10, in this order (the same as MATLAB's), and 11 = void.
SEGNET_CLASSES = tuple(CAMVID_11)
SEGNET_VOID = 11
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
LABEL_FORMS = ("auto", "index", "colour")
# PIL modes of single-band label images (class indices) and of colour label images.
INDEX_MODES = ("L", "P", "I;16", "I")
COLOUR_MODES = ("RGB", "RGBA")
# The official split's lists in SegNet's copy, and the subset each names.
SEGNET_LISTS = {"train.txt": "train", "val.txt": "validation", "test.txt": "test"}
# How many label images the pre-flight reads (evenly spaced over the set) to check that the class table matches them.
SAMPLED_LABELS = 12


def read_palette_csv(path: PathLike) -> dict[str, list[tuple[int, int, int]]]:
    """A palette from a CSV with columns `name,r,g,b` (several rows may share a name).

    Classes are numbered in order of first appearance; colours not listed
    map to 255 (ignore).
    """
    palette = {}
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        missing = {"name", "r", "g", "b"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"palette '{path}' needs the columns name,r,g,b; missing {sorted(missing)}.")
        for line, row in enumerate(reader, start=2):
            try:
                colour = tuple(int(row[c]) for c in "rgb")
            except ValueError:
                raise ValueError(f"palette '{path}' line {line}: r, g, b must be integers.") from None
            if not all(0 <= v <= 255 for v in colour):
                raise ValueError(f"palette '{path}' line {line}: colour {colour} is outside 0..255.")
            palette.setdefault(row["name"].strip(), []).append(colour)
    if not palette:
        raise ValueError(f"palette '{path}' lists no colour.")
    return palette


def rgb_to_labels(
    label_image: ArrayLike, palette: dict[str, list[tuple[int, int, int]]], ignore_label: int = IGNORE_LABEL,
) -> Array:
    """Maps an `(H, W, 3)` colour label image to class indices by exact colour.

    Args:
        label_image: uint8 RGB array.
        palette: `{class name: [(r, g, b), ...]}`; class `i` is the i-th name.
        ignore_label: label for colours not in the palette.

    Returns:
        uint8 `(H, W)` class indices.
    """
    label_image = np.asarray(label_image)
    if label_image.ndim != 3 or label_image.shape[-1] < 3:
        raise ValueError(f"a colour label image must be (H, W, 3); got shape {label_image.shape}.")
    if len(palette) >= ignore_label:
        raise ValueError(f"the palette has {len(palette)} classes; at most {ignore_label} fit below the ignore label.")
    codes = label_image[..., :3].astype(np.int32) @ np.array([65536, 256, 1], np.int32)
    lookup_codes: Any = []
    lookup_labels: Any = []
    for index, colours in enumerate(palette.values()):
        for r, g, b in colours:
            lookup_codes.append(r * 65536 + g * 256 + b)
            lookup_labels.append(index)
    lookup_codes = np.asarray(lookup_codes)
    order = np.argsort(lookup_codes)
    lookup_codes, lookup_labels = lookup_codes[order], np.asarray(lookup_labels, np.uint8)[order]
    position = np.clip(np.searchsorted(lookup_codes, codes), 0, len(lookup_codes) - 1)
    found = lookup_codes[position] == codes
    return np.where(found, lookup_labels[position], ignore_label).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class LabelEncoding:
    """How a label image marks its classes: by index (a `LabelTable`) or by colour (a palette).

    Attributes:
        form: "index" or "colour".
        names: the class names, index = class index.
        table: for "index", the `LabelTable` (values, and void values read as ignore).
        palette: for "colour", `{class name: [(r, g, b), ...]}`.
    """

    form: str
    names: tuple
    table: LabelTable = None
    palette: dict | None = None

    @classmethod
    def index(cls, class_names: str | None = None, void: int | None = None) -> LabelEncoding:
        """Index masks: SegNet's 11 classes with void 11 by default; else `--class-names` (and `void`)."""
        if class_names is None:
            table = LabelTable(SEGNET_CLASSES, tuple(range(len(SEGNET_CLASSES))),
                               (SEGNET_VOID if void is None else void, IGNORE_LABEL))
        else:
            table = LabelTable.parse(class_names)
            if void is not None:
                ignore = tuple(dict.fromkeys((int(void), *table.ignore_values)))
                table = LabelTable(table.names, table.values, ignore)
        return cls("index", table.names, table=table)

    @classmethod
    def colour(cls, palette: dict[str, list[tuple[int, int, int]]] | None = None) -> LabelEncoding:
        palette = CAMVID_11 if palette is None else palette
        return cls("colour", tuple(palette), palette=palette)

    def describe(self) -> str:
        if self.form == "index":
            void = [v for v in self.table.ignore_values if v != IGNORE_LABEL] or list(self.table.ignore_values)
            return (f"index masks: {len(self.names)} classes as values {_value_range(self.table.values)}"
                    + (f", void {', '.join(map(str, void))} -> ignored" if void else ""))
        colours = sum(len(c) for c in (self.palette or {}).values())
        return f"colour masks: {colours} colours in {len(self.names)} classes, other colours ignored"

    def to_indices(self, label_image: ArrayLike, path: PathLike) -> Array:
        """The class indices (uint8) of one label image array; raises `CaseError` naming `path` for a value not in the table."""
        if self.form == "colour":
            return rgb_to_labels(label_image, self.palette or CAMVID_11, IGNORE_LABEL)
        return self.table.to_indices(label_image, f"label image '{path}'")


def _value_range(values):
    values = sorted(values)
    if values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(map(str, values))


def read_label_image(path: PathLike, form: str) -> Array:
    """A label image as an array: single-band as stored (`index`), else converted to RGB (`colour`)."""
    with read_image_file(path) as image:
        if form == "colour":
            return decoded(path, lambda: np.asarray(image.convert("RGB")))
        if image.mode not in INDEX_MODES:
            raise CaseError(f"label image '{path}' is {image.mode}, not a single-band index image.")
        return decoded(path, lambda: np.asarray(image))


def _read_rgb(path: str):
    with read_image_file(path) as image:
        return decoded(path, lambda: np.asarray(image.convert("RGB")))


# --- finding the pairs ---------------------------------------------------------

LABEL_FOLDER_WORDS = {"mask", "masks", "gt", "annotation", "annotations", "annot", "annots"}


def is_label_folder(name: str) -> bool:
    """A folder whose images are label images: SegNet's `trainannot`, `labels`, `train_labels`, `masks`, `gt`..."""
    name = name.lower()
    words = set(re.split(r"[^a-z]+", name))
    return name.endswith("annot") or "label" in name or bool(words & LABEL_FOLDER_WORDS)


@dataclasses.dataclass
class ImagePairs:
    """The image/label pairs found under a folder.

    Attributes:
        pairs: `{stem: (image path, label path)}`, sorted by stem.
        problems: `{stem: message}` for images without a label (and names found twice).
        layout: a sentence naming the layout found, for the summary.
        orphan_labels: label images without an image.
    """

    pairs: dict
    problems: dict
    layout: str
    orphan_labels: list


def find_image_pairs(src: PathLike) -> ImagePairs:
    """Pairs every image under `src` with its label image (see the module docstring for the layouts).

    Raises:
        ValueError: `src` is not a folder, or holds no image.
    """
    src = os.fspath(src)
    if not os.path.isdir(src):
        raise ValueError(f"image folder '{src}' does not exist.")
    images, labels, problems = {}, {}, {}
    annotation_folders, colour_suffix = set(), 0
    for root, folders, names in os.walk(src):
        folders.sort()
        in_label_folder = root != src and is_label_folder(os.path.basename(root))
        for name in sorted(names):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in IMAGE_SUFFIXES:
                continue
            path = os.path.join(root, name)
            if stem.endswith("_L"):
                table, stem = labels, stem[:-2]
                colour_suffix += 1
            elif in_label_folder:
                table = labels
                annotation_folders.add(os.path.relpath(root, src))
            else:
                table = images
            if stem in table:
                problems[stem] = f"found twice: '{table[stem]}' and '{path}'"
            table[stem] = path
    if not images:
        raise ValueError(f"no image under '{src}' (looked for {', '.join(IMAGE_SUFFIXES)} outside label folders).")
    pairs = {}
    for stem in sorted(images):
        if stem in problems:
            continue
        if stem not in labels:
            problems[stem] = (f"no label image for '{images[stem]}' (looked for {stem}_L.png anywhere, and {stem}.png in a "
                              "label folder: *annot, *label*, masks, gt)")
            continue
        pairs[stem] = (images[stem], labels[stem])
    orphans = sorted(labels[s] for s in labels if s not in images)
    parts = []
    if annotation_folders:
        parts.append("label folders " + ", ".join(sorted(annotation_folders)))
    if colour_suffix:
        parts.append(f"{colour_suffix} *_L label images")
    return ImagePairs(pairs, problems, "; ".join(parts) or "no label folder", orphans)


def detect_label_form(label_paths: Sequence[str], form: str = "auto") -> str:
    """`"index"` or `"colour"`: the form of the label images, from their PIL modes (headers only).

    With `form` "index" or "colour" the user's choice is kept (a colour
    image forced to index is refused when read). Mixed modes are refused.
    """
    from PIL import Image

    if form not in LABEL_FORMS:
        raise ValueError(f"`label_form` must be one of {', '.join(LABEL_FORMS)}. Received: {form!r}")
    if form != "auto":
        return form
    modes = {}
    for path in label_paths:
        try:
            with Image.open(path) as image:
                modes.setdefault(image.mode, path)
        except (OSError, SyntaxError, ValueError) as error:
            raise ValueError(f"label image '{path}' cannot be read ({error}).") from None
    unknown = {m: p for m, p in modes.items() if m not in INDEX_MODES + COLOUR_MODES}
    if unknown:
        mode, path = next(iter(unknown.items()))
        raise ValueError(f"label image '{path}' is of PIL mode {mode}: label images must be single-band class indices "
                         f"({', '.join(INDEX_MODES)}) or colour ({', '.join(COLOUR_MODES)}).")
    forms = {("index" if m in INDEX_MODES else "colour"): p for m, p in modes.items()}
    if len(forms) > 1:
        raise ValueError(f"the label images mix index masks ('{forms['index']}') and colour masks ('{forms['colour']}'): "
                         "give --label-form to read them all one way, or prepare them separately.")
    return next(iter(forms)) if forms else "colour"


def check_labels_match(label_paths: Sequence[str], encoding: LabelEncoding) -> None:
    """The pre-flight of a class table: raises ValueError when the sampled label images hold nothing it names.

    `SAMPLED_LABELS` label images, evenly spaced over the set, are read. The
    class table matches nothing when no pixel of them is a class (colours:
    none in the palette; indices: only void), and is wrong when an index
    mask holds a value it does not name. The message says what the masks
    hold, so that the user can tell an index set from a colour one.
    """
    paths = list(label_paths)
    sample = [paths[i] for i in sorted({int(i) for i in np.linspace(0, len(paths) - 1, min(SAMPLED_LABELS, len(paths)))})]
    arrays, matched = [], False
    for path in sample:  # every sampled image: an index value outside the table is refused wherever it is
        array = _read_rgb(path) if encoding.form == "colour" else read_label_image(path, "index")
        try:
            matched |= bool((encoding.to_indices(array, path) != IGNORE_LABEL).any())
        except CaseError as error:
            raise ValueError(f"{error} Give the set's classes with --class-names (and its void value with --void), "
                             "or --label-form colour if the images are colour-coded.") from None
        arrays.append(array)
    if matched:
        return
    # Nothing matched: say what the masks hold, so that the user can tell an index set from a colour one.
    where = f"the {len(sample)} label images sampled (of {len(paths)}, e.g. '{sample[0]}')"
    if encoding.form == "index":
        values = np.unique(np.concatenate([a.ravel() for a in arrays])).tolist()
        raise ValueError(f"every pixel of {where} is void ({encoding.describe()}; the masks hold {_value_range(values)}): "
                         "give the set's void value with --void, or its classes with --class-names.")
    pixels = np.concatenate([a.reshape(-1, 3) for a in arrays])
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    if (colours[:, 0] == colours[:, 1]).all() and (colours[:, 1] == colours[:, 2]).all():
        held = f"grey values {_value_range(colours[:, 0].tolist())}"
        hint = "index masks? Use --label-form index (SegNet's 11 classes and void 11 by default) or give --class-names."
    else:
        held = "mostly the colours " + ", ".join(str(tuple(c)) for c in colours[np.argsort(-counts)[:5]].tolist())
        hint = "give the set's colours with --palette CSV (name,r,g,b)."
    raise ValueError(f"no pixel of {where} matched the palette ({encoding.describe()}); the masks hold {held} — {hint}")


# --- the official split ------------------------------------------------------

def read_segnet_lists(src: PathLike) -> dict[str, str] | None:
    """`{stem: subset}` from SegNet's `train.txt`/`val.txt`/`test.txt` in `src` (None when there are none).

    Each line holds an image path and a label path, absolute paths of
    SegNet's machine (`/SegNet/CamVid/train/0001TP_006690.png ...`); the
    image's file stem is what is matched.
    """
    found = [name for name in SEGNET_LISTS if os.path.isfile(os.path.join(src, name))]
    if not found:
        return None
    subsets = {}
    for name in found:
        path = os.path.join(src, name)
        with open(path) as stream:
            for number, line in enumerate(stream, start=1):
                fields = line.split()
                if not fields:
                    continue
                stem = os.path.splitext(os.path.basename(fields[0].replace("\\", "/")))[0]
                if stem in subsets and subsets[stem] != SEGNET_LISTS[name]:
                    raise ValueError(f"'{path}' line {number}: {stem!r} is also listed for {subsets[stem]}; "
                                     "an image belongs to one subset.")
                subsets[stem] = SEGNET_LISTS[name]
    return subsets


def sequence_of(stem: str) -> str:
    """CamVid's video sequence of a frame: the stem's prefix before the first "_" (`0001TP_006690` -> `0001TP`)."""
    return stem.split("_")[0]


# --- cases -------------------------------------------------------------------

def load_image_case(case: Case, options: PrepOptions) -> CaseData:
    """`CaseData` of the image/label pairs of one case (a video sequence, or one image)."""
    pairs, encoding = case.inputs
    images, masks = [], []
    for image_path, label_path in pairs:
        image = _read_rgb(image_path)
        labels = encoding.to_indices(read_label_image(label_path, encoding.form), label_path)
        if image.shape[:2] != labels.shape[:2]:
            raise CaseError(f"'{image_path}' is {image.shape[:2]} but its labels '{label_path}' are {labels.shape[:2]}.")
        images.append(image)
        masks.append(labels)
    return CaseData(images=images, masks=masks, sources=list(pairs), keep_original_masks=True)


def image_cases(
    pairs: dict[str, tuple[str, str]], encoding: LabelEncoding, group_by: str = "sequence",
) -> tuple[list[Case], dict[str, str]]:
    """`Case`s of the pairs `{stem: (image, label)}`: one per video sequence, or one per image.

    Returns `(cases, groups)`: `groups` maps each case to its sequence.
    """
    if group_by not in ("sequence", "image"):
        raise ValueError(f"`group_by` must be 'sequence' or 'image'. Received: {group_by!r}")
    grouped, groups = {}, {}
    for stem, pair in pairs.items():
        case = safe_case_name(sequence_of(stem) if group_by == "sequence" else stem)
        grouped.setdefault(case, []).append(pair)
        groups[case] = safe_case_name(sequence_of(stem))
    cases = [Case(name, load_image_case, (tuple(members), encoding)) for name, members in grouped.items()]
    return cases, groups


def find_rgb_label_cases(
    src: PathLike, palette: dict[str, list[tuple[int, int, int]]] | None = None, group_by: str = "sequence",
) -> tuple[list[Case], dict[str, str]]:
    """Colour label images under `src` as cases (the built-in street scenes, CamVid's `_L.png` release).

    Returns `(cases, problems)`; `prep camvid` reads every layout and label form (`keras_focal.cli.prep`).
    """
    found = find_image_pairs(src)
    cases, _ = image_cases(found.pairs, LabelEncoding.colour(palette), group_by)
    return cases, found.problems
