"""The prepared data-set format: its files, their schema, and the reader that validates them.

`keras_focal.data_prep.dataset` writes a folder; this module is the one
place that says what such a folder holds and reads it back
(`PreparedDataset`). Everything a run relies on is validated here before
any work starts, and every refusal is a ValueError naming the file:

- `classes.json`: valid JSON with `names` (unique, non-empty strings, at
  least two) and `per_case` (pixel counts of every case, one per class);
  `pixel_count` has one entry per class; `ignore_label` (255 when absent,
  as older folders) is not a class index.
- `folds.csv`: every case of `manifest.csv` exactly once, every fold from
  0 to the last non-empty, nothing else; an optional `group` column names
  what a case belongs to (a frame's video sequence), and validation cases
  are drawn as whole groups. Or, for a data set that brought
  its own fixed split (`keras_focal.data_prep.splits`), `split.csv`: every
  case exactly once with its subset (train, validation, test) and group;
  the data set then has one test set, fold 0.
- `original_masks/` (photographs only; the manifest's `original_mask`):
  each mask at the label image's own size, on which test metrics are computed.
- `label_values` (optional, the class indices when absent): one integer
  per class, the value that marks it in the source's label volumes.
- the slices (`PreparedDataset.check`): every image and mask a PNG that
  decodes completely, of one size; masks 8-bit single-channel (PIL mode
  `L`), the one encoding that PIL and the training pipeline's
  `tf.io.decode_png` read as the same class indices; labels within the
  classes or the ignore label.
- a slice of a multi-channel volume has one 8-bit grey PNG per channel
  (`images/<case>_<slice>_0000.png`, `_0001.png`...: nnU-Net's channel
  suffixes), listed in its manifest row's `image` separated by
  `IMAGE_FILE_SEPARATOR` (`image_files` splits them); every slice has the
  same number. One grey file per channel keeps each one viewable, any
  channel count storable (PNG has no 2- or 5-channel grey mode; grey +
  alpha would show the ADC map as transparency), and lets the pipeline
  decode each with `tf.io.decode_png(channels=1)` and stack them.

Their slices as a tf.data source are `keras_focal.data_prep.examples.Examples`; the trainer batches them
(`keras_focal.training.data`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_focal.class_weights import inverse_frequency_weights
from keras_focal.data_prep.examples import Examples, cache_name
from keras_focal.data_prep.slicing import labels_outside
from keras_focal.data_prep.splits import SUBSETS
from keras_focal.files import write_json_atomically
from keras_focal.types import Array, PathLike

if TYPE_CHECKING:
    import pandas as pd

    from keras_focal.data_prep.dataset import PrepOptions
    from keras_focal.data_prep.examples import Examples
    from keras_focal.data_prep.labels import LabelTable

# The label of pixels no loss or metric counts (padding, unlabelled areas); a
# folder's `classes.json` records the one it was written with.
IGNORE_LABEL = 255
MANIFEST = "manifest.csv"
CLASSES = "classes.json"
FOLDS = "folds.csv"
SPLIT = "split.csv"
# The manifest's column of a slice's mask at its own size: written only for photographs
# (`CaseData.keep_original_masks`); volumes and older folders lack it.
ORIGINAL_MASK_COLUMN = "original_mask"
PREP = "prep.json"
CASES = "cases"
# Between the channel files of one slice in manifest.csv's `image` (a case name never holds it).
IMAGE_FILE_SEPARATOR = ";"
# What `PreparedDataset.check` found sound, by file size and modification time.
CHECKED_NAME = ".checked.json"
# Bumped whenever `check` checks more: slices recorded by an older check are checked again.
CHECK_VERSION = 2
# The only mask encoding that PIL and tf.io.decode_png(channels=1) decode alike.
MASK_MODE = "L"
_MODE_PROBLEMS = {
    "I;16": "a 16-bit grey PNG: the training pipeline decodes PNGs to 8 bits, which turns class indices 0..255 into 0",
    "I": "a 32-bit grey PNG: the training pipeline decodes PNGs to 8 bits, which turns small class indices into 0",
    "P": "a palette PNG: the training pipeline would read the brightness of its colours, not the palette indices",
    "1": "a 1-bit PNG: the training pipeline would read its pixels as 0 and 255, not 0 and 1",
}


def image_files(entry: str) -> list[str]:
    """The image files of one manifest `image` entry: one (grey or RGB), or one per channel."""
    return str(entry).split(IMAGE_FILE_SEPARATOR)


def check_class_names(names: Any, what: str = "class names") -> list[str]:
    """Raises ValueError unless `names` are at least two unique non-empty strings (fewer than the ignore label)."""
    names = list(names)
    if len(names) < 2 or not all(isinstance(n, str) and n.strip() for n in names):
        raise ValueError(f"{what} must be at least two non-empty names. Received: {names!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{what} must be unique (each names one class index); repeated: {repeated}. Received: {names!r}")
    if len(names) > IGNORE_LABEL:
        raise ValueError(f"{what}: {len(names)} classes; masks are 8-bit with {IGNORE_LABEL} = ignore, so at most {IGNORE_LABEL}.")
    return names


def read_classes(path: PathLike) -> dict:
    """`classes.json` validated: raises ValueError naming the file and the key at fault."""
    try:
        with open(path) as stream:
            classes = json.load(stream)
    except ValueError as error:
        raise ValueError(f"'{path}' is not valid JSON ({error}): re-run `keras-focal prep` to rebuild it.") from None
    if not isinstance(classes, dict):
        raise ValueError(f"'{path}' must hold a JSON object with `names` and `per_case`.")
    for key in ("names", "per_case"):
        if key not in classes:
            raise ValueError(f"'{path}' has no `{key}`: it was not written by `keras-focal prep`; re-run prep to rebuild it.")
    if not isinstance(classes["names"], list):
        raise ValueError(f"'{path}': `names` must be a list of class names. Received: {classes['names']!r}")
    names = check_class_names(classes["names"], what=f"`names` in '{path}'")
    count = len(names)
    ignore = classes.get("ignore_label", IGNORE_LABEL)
    if isinstance(ignore, bool) or not isinstance(ignore, int) or not count <= ignore <= 255:
        raise ValueError(f"'{path}': `ignore_label` must be an integer in {count}..255 (not a class index). Received: {ignore!r}")
    if "pixel_count" in classes and _length(classes["pixel_count"]) != count:
        raise ValueError(
            f"'{path}': `pixel_count` has {_length(classes['pixel_count'])} entries for {count} class names {names}: "
            "the names and the counts disagree."
        )
    values = classes.get("label_values", list(range(count)))
    if (not isinstance(values, list) or len(values) != count or len(set(values)) != count
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)):
        raise ValueError(f"'{path}': `label_values` must give one distinct integer >= 0 for each of the {count} classes "
                         f"{names}. Received: {values!r}")
    per_case = classes["per_case"]
    if not isinstance(per_case, dict):
        raise ValueError(f"'{path}': `per_case` must map each case to its pixel counts.")
    for case, record in per_case.items():
        counts = record.get("pixel_count") if isinstance(record, dict) else None
        if _length(counts) != count:
            raise ValueError(
                f"'{path}': `per_case` of case {case!r} has {_length(counts)} pixel counts for {count} class names {names}: "
                "the names and the counts disagree."
            )
    return classes


def _length(value):
    return len(value) if isinstance(value, list) else None


def _read_table(path: str, columns):
    import pandas as pd

    try:
        # Case names as written: "01" must not become the integer 1.
        table = pd.read_csv(path, dtype={"case": str})
    except (ValueError, pd.errors.ParserError) as error:  # EmptyDataError is a ValueError
        raise ValueError(f"'{path}' cannot be read as CSV ({error}).") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"'{path}' lacks the column(s) {missing} (has {list(table.columns)}).")
    return table


def check_folds(folds: pd.DataFrame, manifest_cases: Iterable[str], path: PathLike) -> None:
    """Raises ValueError unless `folds` (case, fold) lists each case of `manifest_cases` exactly once, in folds 0..k-1, none empty."""
    path = os.fspath(path)
    import pandas as pd

    if not pd.api.types.is_integer_dtype(folds.fold) or (folds.fold < 0).any():
        raise ValueError(f"'{path}': `fold` must hold integers >= 0. Received: {sorted(set(folds.fold.astype(str)))[:5]}")
    _check_each_case_once(folds.case, manifest_cases, path, "fold")
    present = set(int(f) for f in folds.fold)
    empty = sorted(set(range(max(present) + 1)) - present)
    if empty:
        raise ValueError(f"'{path}': fold(s) {empty} have no case (folds must be numbered 0..k-1, each non-empty).")
    if len(present) < 2:
        raise ValueError(f"'{path}' has a single fold: a run needs a test fold and at least one training fold.")


def _check_each_case_once(listed, manifest_cases, path: str, role):
    """Raises ValueError unless the cases `listed` (folds.csv's or split.csv's) are those of `manifest_cases`, each once."""
    cases = listed.astype(str)
    repeated = sorted(set(cases[cases.duplicated()]))
    if repeated:
        raise ValueError(
            f"'{path}' lists {len(repeated)} case(s) more than once: {repeated[:5]}. A case in two {role}s would be "
            f"trained on and tested on in one run; give each case one {role}."
        )
    manifest_cases = {str(c) for c in manifest_cases}
    unknown = sorted(set(cases) - manifest_cases)
    if unknown:
        raise ValueError(f"'{path}' names {len(unknown)} case(s) without slices in manifest.csv: {unknown[:5]}")
    unassigned = sorted(manifest_cases - set(cases))
    if unassigned:
        raise ValueError(
            f"'{path}' gives no {role} to {len(unassigned)} case(s) of manifest.csv: {unassigned[:5]}; they would "
            f"never be used. Give each case a {role} (or re-run `keras-focal prep`)."
        )


def check_split(split: pd.DataFrame, manifest_cases: Iterable[str], path: PathLike) -> None:
    """Raises ValueError unless `split` (case, subset, group) lists each case of `manifest_cases` once, with train and test cases."""
    path = os.fspath(path)

    unknown_subsets = sorted(set(split.subset.astype(str)) - set(SUBSETS))
    if unknown_subsets:
        raise ValueError(f"'{path}': `subset` must be one of {', '.join(SUBSETS)}. Received: {unknown_subsets[:5]}")
    _check_each_case_once(split.case, manifest_cases, path, "subset")
    for subset in ("train", "test"):
        if not (split.subset == subset).any():
            raise ValueError(f"'{path}' has no {subset} case: a run needs both.")


class PreparedDataset:
    """The images, masks, classes and folds of a folder written by `keras-focal prep`.

    Raises:
        ValueError: the folder lacks `manifest.csv`, `classes.json` or
            `folds.csv`, or they are malformed or disagree (see the module
            docstring); the message names the file.
    """

    def __init__(self, path: PathLike):
        self.path = str(path)
        self.split_file = SPLIT if os.path.isfile(os.path.join(self.path, SPLIT)) else FOLDS
        missing = [n for n in (MANIFEST, CLASSES, self.split_file) if not os.path.isfile(os.path.join(self.path, n))]
        if missing:
            raise ValueError(
                f"'{self.path}' is not a prepared data set: {', '.join(missing)} missing "
                "(run `keras-focal prep ...` first; folds.csv needs at least as many cases as folds)."
            )
        self.classes = read_classes(os.path.join(self.path, CLASSES))
        self.class_names = list(self.classes["names"])
        manifest_path = os.path.join(self.path, MANIFEST)
        self.manifest = _read_table(manifest_path, ("case", "slice", "image", "mask"))
        if self.manifest.empty:
            raise ValueError(f"'{manifest_path}' lists no slice.")
        split_path = os.path.join(self.path, self.split_file)
        if self.split_file == SPLIT:
            # A fixed split (the data set's own train/validation/test lists): one test set, fold 0.
            self.folds: pd.DataFrame | None = None
            self.subsets = _read_table(split_path, ("case", "subset"))
            check_split(self.subsets, self.manifest.case, split_path)
            self.groups = dict(zip(self.subsets.case.astype(str),
                                   self.subsets.get("group", self.subsets.case).fillna(self.subsets.case).astype(str)))
        else:
            self.subsets = None
            self.folds = _read_table(split_path, ("case", "fold"))
            check_folds(self.folds, self.manifest.case, split_path)
            # A case's group (a frame's sequence) where folds.csv names one: validation is drawn by whole groups.
            named = self.folds.get("group", self.folds.case).fillna(self.folds.case).astype(str)
            self.groups = dict(zip(self.folds.case.astype(str), named))
        without_counts = sorted(set(self.manifest.case) - set(self.classes["per_case"]))
        if without_counts:
            raise ValueError(
                f"'{os.path.join(self.path, CLASSES)}' has no pixel counts (`per_case`) for {len(without_counts)} "
                f"case(s) of manifest.csv: {without_counts[:5]}; re-run `keras-focal prep` to rebuild it."
            )
        self.num_folds = 1 if self.folds is None else int(self.folds.fold.max()) + 1
        self.name = os.path.basename(os.path.normpath(self.path))
        self._fingerprint: str | None = None
        self._image_shape: tuple[int, int, int] | None = None
        self._checked = False

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labels(self) -> LabelTable:
        """The `LabelTable`: each class's name and the value that marks it in the source's label volumes."""
        # Imported here: keras_focal.data_prep.labels reads this module (the ignore label, the class-name checks).
        from keras_focal.data_prep.labels import LabelTable

        return LabelTable(tuple(self.class_names), tuple(self.classes.get("label_values", range(self.num_classes))))

    def channel_names(self) -> tuple[str, ...] | None:
        """The names of the images' channels as prep.json records them (`("T2", "ADC")`), or None."""
        try:
            with open(os.path.join(self.path, PREP)) as stream:
                channels = json.load(stream).get("channels")
        except (OSError, ValueError, AttributeError):
            return None
        return tuple(channels) if isinstance(channels, list) else None

    @property
    def ignore_label(self) -> int:
        """The mask value of unlabelled pixels, as `classes.json` records it."""
        return int(self.classes.get("ignore_label", IGNORE_LABEL))

    def preparation(self) -> tuple[str, PrepOptions]:
        """`prep.json`: how the slices were made (`source`, `options` of `PrepOptions`), validated.

        `keras-focal predict` prepares a new volume with exactly these settings.
        Raises ValueError naming the file when it is missing or malformed.
        """
        # Imported here: keras_focal.data_prep.dataset, the format's writer, imports this module.
        from keras_focal.data_prep.dataset import PrepOptions

        path = os.path.join(self.path, PREP)
        try:
            with open(path) as stream:
                description = json.load(stream)
            options = PrepOptions.from_description(description["options"])
        except FileNotFoundError:
            raise ValueError(f"'{path}' is missing: the data set's preparation settings are unknown (re-run `keras-focal prep`).") from None
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"'{path}' does not hold `keras-focal prep` settings ({type(error).__name__}: {error}).") from None
        return str(description.get("source", "")), options

    # What rebuilding a case's volume needs from the manifest (`keras_focal.inference.prepared_cases`).
    VOLUME_COLUMNS = ("spacing_x", "spacing_y", "spacing_z", "original_height", "original_width", "original_slices")

    def has_volumes(self) -> bool:
        """True when every slice comes from a volume with a known spacing (not photographs), so cases can be rebuilt in 3-D."""
        import pandas as pd

        columns = [c for c in self.VOLUME_COLUMNS if c in self.manifest]
        if len(columns) < len(self.VOLUME_COLUMNS):
            return False
        values = self.manifest[list(self.VOLUME_COLUMNS)].apply(pd.to_numeric, errors="coerce")
        return bool(np.isfinite(values.to_numpy(dtype=float)).all())

    def case_record(self, case: str) -> dict:
        """`cases/<case>.json`, the record `prep` wrote for `case` (its slices, pixel counts and the source volume's geometry; folders prepared before `keras-focal predict` existed have no geometry)."""
        path = os.path.join(self.path, CASES, f"{case}.json")
        try:
            with open(path) as stream:
                return json.load(stream)
        except (OSError, ValueError) as error:
            raise ValueError(f"'{path}': the case's record cannot be read ({error}).") from None

    def fingerprint(self) -> str:
        """SHA-256 of manifest.csv, folds.csv (or split.csv) and classes.json: changes whenever the slices, the split or the classes do.

        Read once per `PreparedDataset`: every run of a comparison records the
        data its pre-flight checked.
        """
        if self._fingerprint is not None:
            return self._fingerprint
        digest = hashlib.sha256()
        for name in (MANIFEST, self.split_file, CLASSES):
            digest.update(name.encode() + b"\0")
            with open(os.path.join(self.path, name), "rb") as stream:
                digest.update(stream.read())
        self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def split(
        self, fold: int, validation_fraction: float = 0.1, seed: int = 0,
    ) -> tuple[list[str], list[str], list[str]]:
        """`(train, validation, test)` case lists for a test fold.

        With folds, validation cases are drawn (with `seed`) from the
        training folds, never from the test fold. With a fixed split
        (`split.csv`), fold 0 is its test set and its lists are used as they
        are; validation cases are drawn from the train list only when it
        names none. Cases are drawn as whole groups (patients, sequences).
        """
        if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < self.num_folds:
            if self.subsets is not None:
                raise ValueError(f"fold {fold!r} is out of range: '{self.path}' has a fixed split (split.csv), "
                                 "whose one test set is fold 0.")
            raise ValueError(f"fold {fold!r} is out of range: '{self.path}' has folds 0..{self.num_folds - 1}.")
        if self.subsets is not None:
            train, validation, test = (sorted(self.subsets.case[self.subsets.subset == s].astype(str))
                                       for s in ("train", "validation", "test"))
            if validation:
                return train, validation, test
        else:
            assert self.folds is not None  # a folder has folds.csv or split.csv
            test = sorted(self.folds.case[self.folds.fold == fold])
            train = sorted(self.folds.case[self.folds.fold != fold])
        validation, train = self._draw_validation(train, validation_fraction, seed)
        return train, validation, test

    def _draw_validation(self, train, fraction, seed: int):
        """`(validation, train)`: whole groups of `train` drawn with `seed` (each case its own group: the draw of older versions)."""
        groups = sorted({self.groups.get(str(c), str(c)) for c in train})
        count = int(round(fraction * len(groups)))
        if fraction > 0 and len(groups) >= 2:
            count = min(max(count, 1), len(groups) - 1)
        else:
            count = 0
        order = np.random.default_rng(seed).permutation(len(groups))
        chosen = {groups[i] for i in order[:count]}
        validation = sorted(c for c in train if self.groups.get(str(c), str(c)) in chosen)
        return validation, sorted(c for c in train if self.groups.get(str(c), str(c)) not in chosen)

    def original_mask_paths(self, cases: Sequence[str]) -> list[str] | None:
        """The masks of `cases` at their own size (photographs), in `rows(cases)` order; None when the folder has none.

        Test metrics are computed on these (as MATLAB's `evaluateSemanticSegmentation`
        and CamVid benchmarks score at the labels' size).
        """
        if ORIGINAL_MASK_COLUMN not in self.manifest:
            return None
        entries = self.rows(cases)[ORIGINAL_MASK_COLUMN]
        if entries.isna().any():
            return None
        return [os.path.join(self.path, p) for p in entries]

    def pixel_counts(self, cases: Sequence[str]) -> Array:
        """Labelled pixels of each class over `cases`."""
        per_case = self.classes["per_case"]
        return np.sum([per_case[c]["pixel_count"] for c in cases], axis=0).astype(np.int64)

    def class_weights(self, cases: Sequence[str]) -> list[float]:
        """Inverse pixel-frequency weights (Eq. 5) over `cases` only; absent classes get 0."""
        return inverse_frequency_weights(self.pixel_counts(cases), absent="zero").tolist()

    def absent_classes(self, cases: Sequence[str]) -> list[str]:
        """Names of the classes with no labelled pixel in `cases`."""
        counts = self.pixel_counts(cases)
        return [name for name, count in zip(self.class_names, counts) if count == 0]

    def rows(self, cases: Sequence[str]) -> pd.DataFrame:
        return self.manifest[self.manifest.case.isin(set(cases))].sort_values(["case", "slice"])

    def image_shape(self) -> tuple[int, int, int]:
        """`(height, width, channels)` of the slices (the first image's; `check` holds every slice to it)."""
        if self._image_shape is None:
            self._image_shape = self._first_image_shape()
        return self._image_shape

    def _first_image_shape(self):
        from PIL import Image

        files = image_files(self.manifest.image.iloc[0])
        path = os.path.join(self.path, files[0])
        try:
            with Image.open(path) as image:
                channels = 3 if image.mode in ("RGB", "RGBA") else 1
                return (image.height, image.width, channels if len(files) == 1 else len(files))
        except (OSError, SyntaxError, ValueError) as error:
            raise ValueError(f"'{path}': cannot be decoded ({error}).") from None

    def examples(
        self, cases: Sequence[str], channels: int, stream: bool = False, cache: PathLike | None = None,
    ) -> Examples:
        """`keras_focal.data_prep.examples.Examples` of `cases`: decoded now (`stream=False`) or streamed from disk.

        `cache`: a folder for the decoded slices of a streamed set (created
        if needed; see `Examples`).
        """
        if not stream:
            images, masks = self.load(cases, channels)
            return Examples(images, masks, channels=channels)
        rows = self.rows(cases)
        image_paths = [[os.path.join(self.path, p) for p in image_files(entry)] for entry in rows.image]
        if all(len(paths) == 1 for paths in image_paths):
            image_paths = [paths[0] for paths in image_paths]  # type: ignore[misc]  # one file per slice
        mask_paths = [os.path.join(self.path, p) for p in rows["mask"]]
        cache_paths = None
        if cache:
            os.makedirs(cache, exist_ok=True)
            cache_paths = [os.path.join(cache, cache_name(image, mask, channels)) for image, mask in zip(image_paths, mask_paths)]
        return Examples(image_paths=image_paths, mask_paths=mask_paths, channels=channels,
                        cache_paths=cache_paths, shape=self.image_shape()[:2])

    def check(self) -> None:
        """Checks every slice of the manifest before any training; raises ValueError naming the file.

        Every image and mask exists and is a PNG that decodes completely, all
        are the size of the first image, images have its channels, masks are
        8-bit single-channel PNGs (mode `L`: other modes are decoded
        differently by the training pipeline and are refused with their
        mode), and every mask label is a class (0..num_classes-1) or the
        ignore label. Slices found sound are recorded (by file size and
        modification time) in `.checked.json` when the folder is writable,
        so a re-run only checks what changed. Once a `PreparedDataset` has
        passed, it is not checked again (a comparison checks its data set
        once for all its runs).
        """
        if self._checked:
            return
        import concurrent.futures


        shape = self.image_shape()
        record_path = os.path.join(self.path, CHECKED_NAME)
        key = {"shape": list(shape), "num_classes": self.num_classes, "ignore_label": self.ignore_label,
               "version": CHECK_VERSION}
        try:
            with open(record_path) as stream:
                record = json.load(stream)
            checked = record["files"] if record.get("key") == key else {}
        except (OSError, ValueError, KeyError, TypeError):
            checked = {}

        def stamp(relative):
            status = os.stat(os.path.join(self.path, relative))
            return [status.st_size, status.st_mtime_ns]

        pending, sound, problems = [], {}, []
        for image, mask in zip(self.manifest.image, self.manifest["mask"]):
            files = image_files(image) + [mask]
            try:
                stamps = {p: stamp(p) for p in files}
            except OSError:
                missing = [p for p in files if not os.path.isfile(os.path.join(self.path, p))]
                problems.append(f"'{os.path.join(self.path, missing[0] if missing else files[0])}': missing (listed in manifest.csv)")
                continue
            if all(checked.get(p) == s for p, s in stamps.items()):
                sound.update(stamps)
            else:
                pending.append((image, mask, stamps))
        with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            for (image, mask, stamps), found in zip(pending, pool.map(lambda item: self._slice_problem(item[0], item[1], shape), pending)):
                if found:
                    problems.append(found)
                else:
                    sound.update(stamps)
        if pending and sound:
            try:
                write_json_atomically(record_path, {"key": key, "files": sound})
            except OSError:
                pass  # a read-only data set is checked on every run
        if problems:
            more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            raise ValueError(
                f"the prepared data set '{self.path}' has {len(problems)} bad slice file(s){more}:\n  "
                + "\n  ".join(problems[:5])
                + "\nre-run `keras-focal prep` into a new folder, or fix or remove these slices."
            )
        self._checked = True

    def _slice_problem(self, image_entry, mask_name, shape):
        """What is wrong with one slice's PNGs (its image files and its mask), or None."""
        from PIL import Image


        height, width, channels = shape
        arrays, modes = {}, {}
        names = image_files(image_entry)
        for name in names + [mask_name]:
            path = os.path.join(self.path, name)
            try:
                with Image.open(path) as picture:
                    if picture.format != "PNG":
                        return f"'{path}': a {picture.format} file; the data set's slices must be PNG files"
                    picture.load()
                    modes[name] = picture.mode
                    arrays[name] = np.asarray(picture)
            except (OSError, SyntaxError, ValueError) as error:
                return f"'{path}': cannot be decoded ({error})"
        mask = arrays[mask_name]
        image_path, mask_path = (os.path.join(self.path, n) for n in (names[0], mask_name))
        if len(names) > 1:
            if len(names) != channels:
                return f"'{image_path}': its slice has {len(names)} channel file(s), the data set's images have {channels}"
            for name in names:
                path = os.path.join(self.path, name)
                if modes[name] != MASK_MODE:
                    return f"'{path}': a {modes[name]} PNG; each channel of a multi-channel slice is an 8-bit grey PNG (mode L)"
                if arrays[name].shape != (height, width):
                    return f"'{path}': {arrays[name].shape[1]}x{arrays[name].shape[0]} pixels, the data set's images are {width}x{height}"
        else:
            image = arrays[names[0]]
            if image.shape[:2] != (height, width):
                return f"'{image_path}': {image.shape[1]}x{image.shape[0]} pixels, the data set's images are {width}x{height}"
            image_channels = 1 if image.ndim == 2 else image.shape[2]
            if image_channels != channels and not (channels == 3 and image_channels == 4):
                return f"'{image_path}': {image_channels} channel(s), the data set's images have {channels}"
        mode = modes[mask_name]
        if mode != MASK_MODE:
            family = "I;16" if mode.startswith("I;16") else mode
            problem = _MODE_PROBLEMS.get(family, f"a {mode} PNG, not a single-channel image of class indices")
            return (f"'{mask_path}': {problem} (PIL mode {mode}). Masks must be 8-bit single-channel PNGs "
                    f"(mode {MASK_MODE}) of class indices: convert it, e.g. with "
                    "Image.fromarray(np.asarray(Image.open(path)).astype(np.uint8)).save(path) once its values are class indices")
        if mask.shape != (height, width):
            return f"'{mask_path}': {mask.shape[1]}x{mask.shape[0]} pixels, its image is {width}x{height}"
        bad = labels_outside(mask, self.num_classes, self.ignore_label)
        if bad.size:
            return (
                f"'{mask_path}': label(s) {bad[:5].tolist()} out of range for {self.num_classes} classes "
                f"(allowed: 0..{self.num_classes - 1}, or {self.ignore_label} = ignore)"
            )
        return None

    def decoded_bytes(self, cases: Sequence[str], channels: int) -> int:
        """Memory the decoded images and masks of `cases` take (uint8)."""
        height, width, _ = self.image_shape()
        return len(self.rows(cases)) * height * width * (channels + 1)

    def load(self, cases: Sequence[str], channels: int) -> tuple[Array, Array]:
        """Decodes the PNGs of `cases` in parallel: `(images uint8 (N,H,W,C), masks uint8 (N,H,W))`."""
        import tensorflow as tf

        streamed = self.examples(cases, channels, stream=True)
        if not len(streamed):
            return np.zeros((0,) + self.image_shape()[:2] + (channels,), np.uint8), np.zeros((0,) + self.image_shape()[:2], np.uint8)
        dataset = streamed.source().map(streamed.decode, num_parallel_calls=tf.data.AUTOTUNE).batch(256)
        images, masks = zip(*((i.numpy(), m.numpy()) for i, m in dataset))
        return np.concatenate(images), np.concatenate(masks)
