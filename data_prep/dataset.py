"""Writes prepared cases as a PNG dataset, safely and resumably.

Layout of an output folder `OUT`:

```
OUT/images/<case>_<slice>.png   uint8 grey or RGB, size x size
OUT/images/<case>_<slice>_0000.png, _0001.png ...
                                a multi-channel volume's slice: one grey PNG per channel
OUT/masks/<case>_<slice>.png    uint8 class indices, 255 = ignore
OUT/original_masks/<case>_<slice>.png
                                photographs only: the class indices at the label image's own
                                size, which the test metrics are computed on
OUT/manifest.csv                one row per slice
OUT/classes.json                names, label values, PixelCount, ImagePixelCount, class weights, per-case counts
OUT/folds.csv                   case -> fold (patient-level), or
OUT/split.csv                   case -> train/validation/test, when the data brought its split
                                (`keras_focal.data_prep.splits`)
OUT/prep.json                   the options the folder was prepared with
OUT/cases/<case>.json           one record per finished case (the commit marker)
OUT/failed.csv                  only when some case failed
```

A case is written under `OUT/.partial/<case>/`, its files are then renamed
into `images/` and `masks/`, and only then is its record renamed into
`cases/`: a case is finished exactly when its record exists, so an
interrupted run never leaves a half-written case that looks finished, and
a re-run skips the finished ones. The manifest, class counts and folds are
rebuilt from the records at the end of every run, each written to a
temporary file and renamed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import json
import multiprocessing
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from keras_focal.class_weights import inverse_frequency_weights, median_frequency_weights
from keras_focal.data_prep.labels import LabelTable
from keras_focal.data_prep.prepared import IGNORE_LABEL, IMAGE_FILE_SEPARATOR, ORIGINAL_MASK_COLUMN, image_files
from keras_focal.data_prep.slicing import (
    DEFAULT_PERCENTILES,
    check_labels,
    foreground_fractions,
    resize_image,
    resize_mask,
    select_slices,
)
from keras_focal.data_prep.splits import SUBSETS, check_fold_numbers
from keras_focal.data_prep.volume import CaseError
from keras_focal.files import (
    FolderBusyError,
    FolderLock,
    check_output_folder,
    remove_temporaries,
    write_json_atomically,
    write_text_atomically,
)
from keras_focal.types import Array, ArrayLike, ClassNames, PathLike

if TYPE_CHECKING:
    from keras_focal.data_prep.splits import DataSplit

if TYPE_CHECKING:
    from keras_focal.data_prep.volume import Geometry

if TYPE_CHECKING:
    pass

MANIFEST_COLUMNS = [
    "case", "slice", "image", "mask", "source_image", "source_mask",
    "spacing_x", "spacing_y", "spacing_z", "original_height", "original_width",
    "original_slices", "foreground_fraction",
]


@dataclasses.dataclass(frozen=True)
class PrepOptions:
    """How slices are made; a folder is only resumed with the same options.

    Attributes:
        size: output height and width in pixels.
        percentiles: per-volume intensity clipping for grey volumes.
        keep_aspect: pad slices to a square before resizing instead of stretching.
        slices: "all", or "foreground" (slices showing a class other than 0).
        min_foreground: with "foreground", minimum foreground fraction.
    """

    size: int = 224
    percentiles: tuple = DEFAULT_PERCENTILES
    keep_aspect: bool = False
    slices: str = "all"
    min_foreground: float = 0.0

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 8:
            raise ValueError(f"`size` must be an integer >= 8. Received: size={self.size!r}")
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise ValueError(f"`percentiles` must satisfy 0 <= low < high <= 100. Received: {self.percentiles!r}")
        if self.slices not in ("all", "foreground"):
            raise ValueError(f"`slices` must be 'all' or 'foreground'. Received: slices={self.slices!r}")
        if not 0 <= self.min_foreground < 1:
            raise ValueError(f"`min_foreground` must be in [0, 1). Received: {self.min_foreground!r}")
        object.__setattr__(self, "percentiles", (float(low), float(high)))

    @classmethod
    def from_description(cls, options: dict) -> PrepOptions:
        """The options as `prep.json` records them (its `options`)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ValueError(f"unknown preparation option(s) {unknown}; known: {sorted(fields)}")
        return cls(**{**options, "percentiles": tuple(options.get("percentiles", DEFAULT_PERCENTILES))})

    def network_image(self, image: ArrayLike) -> Array:
        """One normalised uint8 slice `(H, W)` or `(H, W, C)` as the network sees it: resized (or padded and resized) to `size`.

        `prep` writes its PNG slices with this, and `keras-focal predict`
        prepares a new volume's slices with it: one code path.
        """
        return resize_image(image, (self.size, self.size), self.keep_aspect)


@dataclasses.dataclass
class CaseData:
    """What a source loader returns for one case, at the original resolution.

    Attributes:
        images: uint8 slices `(n, H, W)`, `(n, H, W, 3)` (RGB) or `(n, H, W,
            C)` (channels of a volume), or a list of slices (already normalised).
        masks: uint8 label slices `(n, H, W)`, or a list of label maps.
        sources: `(image source, mask source)` per slice, or one pair for all.
        spacing: `(x, y, z)` mm, or None for photographs.
        notes: warnings to keep in the record.
        geometry: the source volume's grid (`keras_focal.data_prep.volume.Geometry`),
            or None for photographs; recorded so that slices can be put back
            into the patient's space (`keras-focal predict`, `evaluate --volumes`).
        separate_channels: the last axis of `images` holds a volume's
            channels (T2, ADC...), each written as its own grey PNG
            (`_0000.png`, `_0001.png`...), rather than an RGB photograph's colours.
        keep_original_masks: also write each mask at its own size
            (`original_masks/`), so that test metrics are computed at the
            size the labels have (photographs: CamVid's 360 x 480), as
            benchmarks and MATLAB's `evaluateSemanticSegmentation` do.
    """

    images: np.ndarray
    masks: np.ndarray
    sources: list
    spacing: tuple | None = None
    notes: list = dataclasses.field(default_factory=list)
    geometry: Geometry | None = None
    separate_channels: bool = False
    keep_original_masks: bool = False


@dataclasses.dataclass(frozen=True)
class Case:
    """One patient (or video sequence): a name and what the loader needs."""

    name: str
    loader: Callable[[Case, PrepOptions], CaseData]  # picklable (a module-level function)
    inputs: tuple = ()


def safe_case_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "case"


def _write_png(path: str, array: ArrayLike) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, format="PNG")


def prepare_case(
    case: Case, out: PathLike, options: PrepOptions, num_classes: int, channels: Sequence[str] | None = None,
) -> dict:
    """Loads, slices, resizes and writes one case; returns its record.

    `channels`: the data set's channel names, when its images are volumes
    of several channels (each case must have that many).
    """
    out = os.fspath(out)
    data = case.loader(case, options)
    images, masks = list(data.images), list(data.masks)
    if len(images) != len(masks):
        raise CaseError(f"{len(images)} image slices but {len(masks)} mask slices.")
    found = images[0].shape[2] if data.separate_channels and images else 1
    if channels is not None and len(channels) > 1 and found != len(channels):
        raise CaseError(f"its images hold {found} channel(s); the data set's are {len(channels)} ({', '.join(channels)}).")
    for index, (image, mask) in enumerate(zip(images, masks)):
        if image.shape[:2] != mask.shape:
            raise CaseError(f"slice {index}: image {image.shape[:2]} and mask {mask.shape} differ in size.")
        try:
            check_labels(mask, num_classes, IGNORE_LABEL, what=f"slice {index} of the mask")
        except ValueError as error:
            raise CaseError(str(error)) from None
    keep = select_slices(masks, options.slices, options.min_foreground, IGNORE_LABEL)

    partial = os.path.join(out, ".partial", case.name)
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    try:
        return _write_case(case, out, options, num_classes, data, images, masks, keep, partial)
    finally:
        # On success the files were renamed away; on failure (a full disk...)
        # what the case wrote must not stay behind using the space.
        shutil.rmtree(partial, ignore_errors=True)


def _class_pixel_counts(masks: ArrayLike, num_classes: int):
    """`(pixels of each class, pixels of the images holding each class)`, as MATLAB's `countEachLabel` counts them."""
    pixel_count = np.zeros(num_classes, np.int64)
    image_pixel_count = np.zeros(num_classes, np.int64)
    for mask in masks:
        counts = np.bincount(mask[mask != IGNORE_LABEL].ravel(), minlength=num_classes)[:num_classes]
        pixel_count += counts
        image_pixel_count[counts > 0] += mask.size
    return pixel_count, image_pixel_count


def _move_slice_files(rows, partial, out: str) -> None:
    """Renames the slices' PNGs from `partial` to their places in `out` (the case's record comes after them)."""
    for row in rows:
        for image in image_files(row["image"]):
            os.replace(os.path.join(partial, f"image_{os.path.basename(image)}"), os.path.join(out, image))
        os.replace(os.path.join(partial, f"mask_{os.path.basename(row['mask'])}"), os.path.join(out, row["mask"]))
        if ORIGINAL_MASK_COLUMN in row:
            os.makedirs(os.path.join(out, "original_masks"), exist_ok=True)
            os.replace(os.path.join(partial, f"original_{os.path.basename(row['mask'])}"),
                       os.path.join(out, row[ORIGINAL_MASK_COLUMN]))


def _write_case(
    case, out: str, options, num_classes: int, data, images: ArrayLike, masks: ArrayLike, keep, partial,
):
    size = (options.size, options.size)
    fractions = foreground_fractions(masks, IGNORE_LABEL)
    rows, resized_masks = [], []
    for index in keep:
        stem = f"{case.name}_{index:03d}"
        image = options.network_image(images[index])
        mask = resize_mask(masks[index], size, options.keep_aspect, IGNORE_LABEL)
        if data.separate_channels:
            image_names = [f"{stem}_{channel:04d}.png" for channel in range(image.shape[-1])]
            for channel, name in enumerate(image_names):
                _write_png(os.path.join(partial, f"image_{name}"), image[..., channel])
        else:
            image_names = [f"{stem}.png"]
            _write_png(os.path.join(partial, f"image_{stem}.png"), image)
        _write_png(os.path.join(partial, f"mask_{stem}.png"), mask)
        if data.keep_original_masks:
            _write_png(os.path.join(partial, f"original_{stem}.png"), np.asarray(masks[index], np.uint8))
        resized_masks.append(mask)
        source_image, source_mask = data.sources[index] if len(data.sources) == len(images) else data.sources[0]
        spacing = data.spacing or (None, None, None)
        rows.append(
            {
                "case": case.name,
                "slice": index,
                "image": IMAGE_FILE_SEPARATOR.join(f"images/{name}" for name in image_names),
                "mask": f"masks/{stem}.png",
                "source_image": source_image,
                "source_mask": source_mask,
                "spacing_x": spacing[0],
                "spacing_y": spacing[1],
                "spacing_z": spacing[2],
                "original_height": int(images[index].shape[0]),
                "original_width": int(images[index].shape[1]),
                "original_slices": len(images),
                "foreground_fraction": round(float(fractions[index]), 6),
            }
            | ({ORIGINAL_MASK_COLUMN: f"original_masks/{stem}.png"} if data.keep_original_masks else {})
        )
    pixel_count, image_pixel_count = _class_pixel_counts(resized_masks, num_classes)
    record = {
        "case": case.name,
        "rows": rows,
        "notes": list(data.notes),
        "pixel_count": pixel_count.tolist(),
        "image_pixel_count": image_pixel_count.tolist(),
        "geometry": None if data.geometry is None else data.geometry.to_dict(),
    }
    _move_slice_files(rows, partial, out)
    record_path = os.path.join(partial, "record.json")
    write_json_atomically(record_path, record)
    os.replace(record_path, os.path.join(out, "cases", f"{case.name}.json"))
    return record


# What `_prepare_safely` reports for a case stopped by a full disk.
DISK_FULL = "no space left on device"


def _prepare_safely(case, out: str, options, num_classes: int, channels=None):
    try:
        return case.name, prepare_case(case, out, options, num_classes, channels), None
    except CaseError as error:
        return case.name, None, str(error)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            return case.name, None, DISK_FULL
        return case.name, None, f"{type(error).__name__}: {error}"
    except Exception as error:  # one broken input must not stop the other cases
        return case.name, None, f"{type(error).__name__}: {error}"


def _watch_parent(parent) -> None:
    """Ends this worker within a second of its parent's death (kill -9 included).

    A pool worker whose parent is gone would go on writing into OUT, racing
    a re-run, then wait forever for work. Ctrl-C is left to the parent (a
    terminal sends SIGINT to every process of the group): it stops the
    workers itself, so that one message is printed instead of a traceback
    from each worker.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:  # the kernel's parent-death signal: at once
            import ctypes
            import signal

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def assign_folds(slice_counts: dict[str, int], folds: int = 3, seed: int = 0) -> dict[str, int]:
    """Patient-level folds balanced by slice count.

    Cases are shuffled with `seed` (to break ties), sorted by decreasing
    number of slices and each given to the fold with the fewest slices so
    far, so that no case is in two folds and the folds hold about the same
    number of slices.

    Args:
        slice_counts: `{case: number of slices}`.
        folds: number of folds, at most the number of cases.

    Returns:
        `{case: fold}` with folds numbered from 0.
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"`folds` must be an integer >= 2. Received: folds={folds!r}")
    if len(slice_counts) < folds:
        raise ValueError(f"{folds} patient-level folds need at least {folds} cases; there are {len(slice_counts)}.")
    names = sorted(slice_counts)
    order = np.random.default_rng(seed).permutation(len(names))
    shuffled = [names[i] for i in order]
    ranked = sorted(shuffled, key=lambda name: -slice_counts[name])
    totals = [0] * folds
    assignment = {}
    for name in ranked:
        fold = int(np.argmin(totals))
        assignment[name] = fold
        totals[fold] += slice_counts[name]
    return assignment


def class_summary(records: Sequence[dict], class_names: ClassNames, label_values: Sequence[int] | None = None) -> dict:
    """classes.json's content: totals over `records` and the core's class weights.

    `label_values`: the value of each class in the source's label volumes
    (default: the class indices), which `keras-focal predict` writes back.
    """
    pixel_count = np.sum([r["pixel_count"] for r in records], axis=0).astype(np.int64)
    image_pixel_count = np.sum([r["image_pixel_count"] for r in records], axis=0).astype(np.int64)
    present = pixel_count > 0
    inverse = inverse_frequency_weights(pixel_count, absent="zero") if present.any() else None
    median = None
    if present.all():
        median = median_frequency_weights(pixel_count, image_pixel_count).tolist()
    elif present.sum() >= 1:
        # Undefined for absent classes: computed over the present ones, None for the others.
        values = iter(median_frequency_weights(pixel_count[present], image_pixel_count[present]).tolist())
        median = [next(values) if p else None for p in present]
    return {
        "names": list(class_names),
        "label_values": list(label_values) if label_values is not None else list(range(len(class_names))),
        "ignore_label": IGNORE_LABEL,
        "pixel_count": pixel_count.tolist(),
        "image_pixel_count": image_pixel_count.tolist(),
        "inverse_frequency_weights": None if inverse is None else inverse.tolist(),
        "median_frequency_weights": median,
        "per_case": {
            r["case"]: {"pixel_count": r["pixel_count"], "image_pixel_count": r["image_pixel_count"]}
            for r in records
        },
    }


@dataclasses.dataclass
class PrepReport:
    """What a run did; `exit_status` is 0 when no case failed."""

    prepared: list
    skipped: list
    failed: dict
    unlabelled: list
    total_cases: int
    total_slices: int
    folds_error: str | None = None
    notes: dict = dataclasses.field(default_factory=dict)
    stopped: str | None = None  # why the run stopped before every case was tried
    split: str | None = None  # the data set's own split, as the summary names it
    pixel_count: dict | None = None  # labelled pixels of each class, over the whole data set
    image_sizes: list | None = None  # the distinct (height, width) of the original images
    options: PrepOptions | None = None

    @property
    def exit_status(self) -> int:
        return 1 if self.failed or self.folds_error or self.stopped else 0

    @property
    def absent_classes(self) -> list[str]:
        """Classes with no labelled pixel in any mask of the data set."""
        return [name for name, count in (self.pixel_count or {}).items() if count == 0]

    @property
    def labelled_pixels(self) -> int:
        return sum((self.pixel_count or {}).values())

    def summary(self) -> str:
        lines = [
            f"{self.total_cases} cases ({self.total_slices} slices) in the dataset: "
            f"{len(self.prepared)} prepared now, {len(self.skipped)} already finished, "
            f"{len(self.failed)} failed, {len(self.unlabelled)} unlabelled (skipped)."
        ]
        if self.split:
            lines.append(self.split)
        if self.image_sizes and self.options is not None:
            lines.append(self._resize_line())
        if self.unlabelled:
            lines.append("unlabelled (no segmentation found): " + ", ".join(self.unlabelled))
        if self.pixel_count and self.absent_classes:
            lines.append(f"warning: class(es) {', '.join(self.absent_classes)} have no labelled pixel in any mask: "
                         "no network can learn or be scored on them (is the class table the data set's?)")
        for name, case_notes in self.notes.items():
            lines.extend(f"note {name}: {note}" for note in case_notes)
        for name, message in self.failed.items():
            lines.append(f"FAILED {name}: {message}")
        if self.folds_error:
            lines.append(f"no folds.csv: {self.folds_error}")
        if self.stopped:
            lines.append(f"STOPPED: {self.stopped}")
        return "\n".join(lines)

    def _resize_line(self) -> str:
        assert self.options is not None and self.image_sizes is not None  # set for a photograph set
        sizes = ", ".join(f"{h}x{w}" for h, w in self.image_sizes)
        size = self.options.size
        how = "padded to a square, then resized" if self.options.keep_aspect else "resized"
        stretched = [f"{h}x{w}" for h, w in self.image_sizes if h != w]
        aspect = ""
        if stretched and not self.options.keep_aspect:
            aspect = " (stretched: the aspect ratio changes; --keep-aspect pads instead)"
        return (f"images of {sizes} (height x width) {how} to {size}x{size}{aspect}; the masks are also kept at "
                "their own size, on which the test metrics are computed")


def _check_options(out: str, description, force):
    path = os.path.join(out, "prep.json")
    if os.path.exists(path) and not force:
        with open(path) as stream:
            previous = json.load(stream)
        if previous != description:
            changed = sorted(k for k in set(previous) | set(description) if previous.get(k) != description.get(k))
            raise ValueError(
                f"'{out}' was prepared with different settings ({', '.join(changed)}): "
                "re-run with --force to rebuild it, or choose another output folder."
            )


def _stop_workers(pool) -> None:
    """Terminates a pool's worker processes now (Ctrl-C: a case in progress is not waited for).

    A terminated worker leaves only its case's `.partial` files, which the
    caller removes; `ProcessPoolExecutor` has no public way to do this.
    """
    for process in list((pool._processes or {}).values()):
        process.terminate()


def _mp_context():
    # fork: workers start at once, without re-importing TensorFlow; they only run NumPy/ITK/PIL.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


@dataclasses.dataclass(frozen=True)
class FoldSettings:
    """How the cases are split: patient-level folds drawn at random, or the data set's own split.

    Attributes:
        count: the number of folds drawn (`prep --folds`).
        seed: the seed of the draw (`prep --seed`).
        split: the data set's own `keras_focal.data_prep.splits.DataSplit`
            (written as `split.csv`, or as `folds.csv` for given folds),
            used instead of drawing; it must list exactly the cases given.
        groups: `{case: group}` (a frame's video sequence) when cases are
            finer than what they belong to; written to `folds.csv` so that
            validation cases are drawn as whole groups.
    """

    count: int = 3
    seed: int = 0
    split: DataSplit | None = None
    groups: dict | None = None


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """What a source told about its cases besides the cases: its name, channels, and the cases it could not use.

    Attributes:
        name: a label for the data source, kept in prep.json.
        channels: the names of the images' channels (`("T2", "ADC")`),
            recorded in prep.json; a case with another channel count fails.
        unlabelled: names of cases skipped for lack of a segmentation.
        failures: `{case: message}` for cases the source could not pair
            (reported with the others, exit status 1).
    """

    name: str = ""
    channels: tuple | None = None
    unlabelled: tuple = ()
    failures: dict | None = None


def prepare_dataset(cases: Sequence[Case], out: PathLike, class_names: ClassNames, options: PrepOptions = PrepOptions(), *, source: str = "", folds: int | FoldSettings = 3, workers: int = 1, force: bool = False,
                    progress: bool = True) -> PrepReport:
    """Prepares `cases` into `out` (see the module docstring for the layout).

    Args:
        cases: `Case` objects with unique names.
        out: output folder (created).
        class_names: names of the classes, index = label value; or the
            source's `LabelTable` (names and the values that mark them),
            whose values `classes.json` records.
        options: `PrepOptions`.
        source: a `SourceInfo`, or its name alone.
        folds: a `FoldSettings`, or the number of folds alone (seed 0).
        workers: processes working on cases at once.
        force: rebuild finished cases (and accept changed options).
        progress: show a progress bar.

    Returns:
        A `PrepReport`.

    A full disk stops the run after the case that met it (its files are
    removed); the report says so (`stopped`, exit status 1), and a re-run
    resumes. The folder is locked while the run works in it.

    Raises:
        ValueError: bad options, duplicate case names, an output that is a
            file or cannot be written, a folder prepared with other settings
            (without `force`), or a folder another process is preparing.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`workers` must be a positive integer. Received: workers={workers!r}")
    source_info = source if isinstance(source, SourceInfo) else SourceInfo(name=source)
    fold_settings = folds if isinstance(folds, FoldSettings) else FoldSettings(count=folds)
    labels = class_names if isinstance(class_names, LabelTable) else LabelTable.from_names(class_names)
    names = [case.name for case in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"several cases share the names {duplicates}; case names must be unique.")
    if fold_settings.split is not None:
        fold_settings.split.check_cases(names)
    check_output_folder(out)
    job = _PrepJob(os.fspath(out), labels, options, source_info, fold_settings, workers, force, progress)
    try:
        with FolderLock(out):
            return _prepare_locked(cases, job)
    except FolderBusyError as error:
        raise ValueError(str(error)) from None


@dataclasses.dataclass(frozen=True)
class _PrepJob:
    """One `prepare_dataset` call's settings, as its steps share them."""

    out: str
    labels: object  # LabelTable
    options: PrepOptions
    source: SourceInfo
    folds: FoldSettings
    workers: int
    force: bool
    progress: bool

    def description(self):
        """prep.json: what makes two preparations the same (a resumed run must match it)."""
        options = self.options
        description = {
            "source": self.source.name,
            "class_names": list(self.labels.names),
            "options": dataclasses.asdict(options) | {"percentiles": list(options.percentiles)},
            "folds": self.folds.count,
            "seed": self.folds.seed,
        }
        # Recorded only where they say something (older folders, without them, resume unchanged).
        if not self.labels.is_identity:
            description["label_values"] = list(self.labels.values)
        if self.source.channels is not None:
            description["channels"] = list(self.source.channels)
        if self.folds.split is not None:
            description["split"] = self.folds.split.description()
        return description


def _start(job):
    """Checks the folder's settings, clears what a killed run left, writes prep.json; returns the finished case names."""
    out = job.out
    description = job.description()
    _check_options(out, description, job.force)
    for sub in ("images", "masks", "cases"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    # Under the lock nothing else writes here: what a killed run left goes.
    shutil.rmtree(os.path.join(out, ".partial"), ignore_errors=True)
    for folder in (out, os.path.join(out, "cases")):
        remove_temporaries(folder)
    if job.force:
        for name in os.listdir(os.path.join(out, "cases")):
            os.remove(os.path.join(out, "cases", name))
    write_json_atomically(os.path.join(out, "prep.json"), description)
    return {n[: -len(".json")] for n in os.listdir(os.path.join(out, "cases")) if n.endswith(".json")}


def _prepare_locked(cases, job):
    from tqdm.auto import tqdm

    out = job.out
    finished = _start(job)
    pending = [case for case in cases if case.name not in finished]
    skipped = [case.name for case in cases if case.name in finished]
    prepared, failed = [], dict(job.source.failures or {})
    # disable=None: no bar where stderr is not a terminal (a log file gets no ANSI redraws).
    bar = tqdm(total=len(pending), desc="cases", unit="case", disable=None if job.progress and pending else True)
    notes, disk_full = {}, []

    def collect(result) -> None:
        name, record, error = result
        if error is None:
            prepared.append(name)
            if record["notes"]:
                notes[name] = record["notes"]
        elif error == DISK_FULL:
            disk_full.append(name)
            failed[name] = f"{DISK_FULL} in '{out}' (what the case wrote was removed)"
        else:
            failed[name] = error
        bar.update(1)
        bar.set_postfix(failed=len(failed))

    try:
        _run_cases(pending, job, collect, stop=lambda: bool(disk_full))
    except KeyboardInterrupt:
        # Finished cases are committed; the case in progress is only in .partial.
        shutil.rmtree(os.path.join(out, ".partial"), ignore_errors=True)
        raise
    finally:
        bar.close()
    stopped = None
    if disk_full:
        untried = len(pending) - len(prepared) - len(set(failed) & {c.name for c in pending})
        stopped = (
            f"the disk holding '{out}' is full; {untried} case(s) not tried. Free space and run the same "
            "command again: finished cases are kept."
        )
    unlabelled = list(job.source.unlabelled)
    try:
        report = _finalize(out, job.labels, job.folds, prepared, skipped, failed, unlabelled, notes)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        return PrepReport(
            prepared=sorted(prepared), skipped=sorted(skipped), failed=dict(sorted(failed.items())),
            unlabelled=sorted(unlabelled), total_cases=len(prepared) + len(skipped), total_slices=0, notes=notes,
            stopped=(stopped or f"the disk holding '{out}' is full")
            + "; manifest.csv, classes.json and folds.csv could not be written (the next run rebuilds them).",
        )
    report.stopped = stopped
    report.options = job.options
    return report


def _run_cases(pending, job, collect, stop):
    """Prepares the pending cases, in this process or in `job.workers` processes; `collect` gets each result.

    `stop()` true after a result (a full disk): no further case is started,
    since every other case would fail the same way.
    """
    arguments = (job.out, job.options, len(job.labels.names), job.source.channels)
    if job.workers == 1 or len(pending) < 2:
        for case in pending:
            collect(_prepare_safely(case, *arguments))
            if stop():
                break
        return
    pool = concurrent.futures.ProcessPoolExecutor(
        min(job.workers, len(pending)), mp_context=_mp_context(), initializer=_watch_parent, initargs=(os.getpid(),)
    )
    futures, collected = [], set()
    try:  # from the first submit (which starts the workers): Ctrl-C may come at any point
        futures = [pool.submit(_prepare_safely, case, *arguments) for case in pending]
        for future in concurrent.futures.as_completed(futures):
            collected.add(future)
            collect(future.result())
            if stop():
                break
    except BaseException:  # Ctrl-C (or a crash): the cases in progress are not waited for
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    for future in futures:  # cases that finished while the pool stopped
        if future not in collected and future.done() and not future.cancelled():
            collect(future.result())


def _finalize(out: str, labels, folds, prepared, skipped, failed, unlabelled, notes):
    import pandas as pd

    records = []
    for name in sorted(os.listdir(os.path.join(out, "cases"))):
        if name.endswith(".json"):
            with open(os.path.join(out, "cases", name)) as stream:
                records.append(json.load(stream))
    rows = [row for record in records for row in record["rows"]]
    columns = MANIFEST_COLUMNS + ([ORIGINAL_MASK_COLUMN] if any(ORIGINAL_MASK_COLUMN in row for row in rows) else [])
    manifest = pd.DataFrame(rows, columns=columns)
    write_text_atomically(os.path.join(out, "manifest.csv"), manifest.to_csv(index=False))

    referenced = {image for row in rows for image in image_files(row["image"])} | {row["mask"] for row in rows}
    referenced |= {row[ORIGINAL_MASK_COLUMN] for row in rows if ORIGINAL_MASK_COLUMN in row}
    for sub in ("images", "masks", "original_masks"):
        if not os.path.isdir(os.path.join(out, sub)):
            continue
        for name in os.listdir(os.path.join(out, sub)):
            if f"{sub}/{name}" not in referenced:  # left by an interrupted case
                os.remove(os.path.join(out, sub, name))

    folds_error = split_line = None
    summary = None
    if records:
        summary = class_summary(records, labels.names, labels.values)
        write_json_atomically(os.path.join(out, "classes.json"), summary)
        slices = {r["case"]: len(r["rows"]) for r in records}
        try:
            split_line = _write_split(out, slices, folds.count, folds.seed, folds.split, folds.groups)
        except ValueError as error:
            folds_error = str(error)
    with contextlib.suppress(OSError):  # empty once every case is committed or cleaned
        os.rmdir(os.path.join(out, ".partial"))
    failed_path = os.path.join(out, "failed.csv")
    if failed:
        table = pd.DataFrame({"case": list(failed), "error": list(failed.values())})
        write_text_atomically(failed_path, table.to_csv(index=False))
    elif os.path.exists(failed_path):
        os.remove(failed_path)
    return PrepReport(
        prepared=sorted(prepared),
        skipped=sorted(skipped),
        failed=dict(sorted(failed.items())),
        unlabelled=sorted(unlabelled),
        total_cases=len(records),
        total_slices=len(rows),
        folds_error=folds_error,
        notes=notes,
        split=split_line,
        pixel_count=dict(zip(labels.names, summary["pixel_count"])) if summary else None,
        image_sizes=sorted({(int(r["original_height"]), int(r["original_width"])) for r in rows
                            if ORIGINAL_MASK_COLUMN in r}) or None,
    )


def _write_split(out: str, slices, folds, seed: int, split, groups=None):
    """`folds.csv` (drawn, or the split's folds) or `split.csv` (the split's subsets) for the finished cases; returns the summary's line.

    The other file is removed, so that a folder holds one split. Raises
    ValueError when no split can be made of the finished cases.
    """
    import pandas as pd

    if split is not None and split.subsets is not None:
        table = pd.DataFrame({
            "case": list(slices), "subset": [split.subsets[c] for c in slices],
            "group": [(split.groups or {}).get(c, c) for c in slices], "slices": list(slices.values()),
        })
        empty = [s for s in ("train", "test") if not (table.subset == s).any()]
        if empty:
            raise ValueError(f"the split ({split.source}) leaves no finished case in the {' and '.join(empty)} subset(s).")
        table["order"] = table.subset.map(SUBSETS.index)
        write_text_atomically(os.path.join(out, "split.csv"),
                              table.sort_values(["order", "case"]).drop(columns="order").to_csv(index=False))
        _remove(os.path.join(out, "folds.csv"))
        return split.describe(slices)
    if split is not None:
        assignment = check_fold_numbers({c: split.folds[c] for c in slices}, f"the split ({split.source}) of the finished cases")
        line = split.describe()
    else:
        assignment = assign_folds(slices, folds, seed)
        line = None
    table = pd.DataFrame(
        {"case": list(assignment), "fold": list(assignment.values()), "slices": [slices[c] for c in assignment]}
    ).sort_values(["fold", "case"])
    groups = groups or (split.groups if split is not None else None)
    if groups and any(groups.get(c, c) != c for c in assignment):  # a column only where it says something
        table["group"] = [groups.get(c, c) for c in table.case]
    write_text_atomically(os.path.join(out, "folds.csv"), table.to_csv(index=False))
    _remove(os.path.join(out, "split.csv"))
    return line


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
