"""A data set's own split: the official train/validation/test lists, or given cross-validation folds.

Where no split is given, `prep` draws patient-level folds (`folds.csv`;
`keras_focal.data_prep.dataset.assign_folds`). A data set may bring its split:

- **a fixed split** (SegNet's `train.txt`/`val.txt`/`test.txt`; a CSV with
  `case,subset`): recorded as `split.csv` (`case,subset,group,slices`) instead
  of `folds.csv`. The data set then has one test set, fold 0: its training
  runs use the train list, pick the best epoch (and, with `--lr-sweep`, the
  learning rate) on the validation list, and are scored on the test list.
- **given folds** (nnU-Net v2's `splits_final.json`: a list of `{"train":
  [...], "val": [...]}`, one per fold, whose `val` lists partition the cases;
  a CSV with `case,fold`): recorded as `folds.csv`, as drawn folds are.

`group` is what a case belongs to (a patient, a video sequence): validation
cases drawn from the training cases (when a split names no validation cases,
and in every fold of a cross-validation) are drawn as whole groups, so that
validation never shares a patient or sequence with training.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from keras_focal.types import PathLike

SUBSETS = ("train", "validation", "test")
# Other names of the subsets in split files.
SUBSET_ALIASES = {"val": "validation", "valid": "validation", "training": "train", "testing": "test"}


@dataclasses.dataclass(frozen=True)
class DataSplit:
    """A split given with the data (see the module docstring).

    Attributes:
        source: where it came from, for the summary and `prep.json`.
        subsets: `{case: "train" | "validation" | "test"}` for a fixed split.
        folds: `{case: fold}` for given cross-validation folds.
        groups: `{case: group}` (default: each case is its own group).
    """

    source: str
    subsets: dict | None = None
    folds: dict | None = None
    groups: dict | None = None

    def __post_init__(self):
        if (self.subsets is None) == (self.folds is None):
            raise ValueError("a DataSplit holds either `subsets` or `folds`.")

    @property
    def cases(self) -> set[str]:
        return set(self.subsets or self.folds or {})

    def check_cases(self, case_names: Iterable[str]) -> None:
        """Raises ValueError unless the split lists exactly the cases found (names shown, at most five)."""
        found, listed = set(case_names), self.cases
        unknown, unlisted = sorted(listed - found), sorted(found - listed)
        if unknown:
            raise ValueError(f"the split ({self.source}) lists {len(unknown)} case(s) that are not in the data: "
                             f"{_some(unknown)}.")
        if unlisted:
            raise ValueError(f"the split ({self.source}) does not list {len(unlisted)} case(s) of the data: {_some(unlisted)}; "
                             "every case must be in it (or give --split folds to draw folds instead).")

    def describe(self, slices: Mapping[str, int] | None = None) -> str:
        """One line for the summary: the subsets' sizes (in cases, and slices when `slices` `{case: n}` is given)."""
        if self.subsets is not None:
            parts = []
            for subset in SUBSETS:
                cases = [c for c, s in self.subsets.items() if s == subset]
                count = f"{len(cases)} case(s)" + (f", {sum(slices.get(c, 0) for c in cases)} slices" if slices else "")
                parts.append(f"{subset} {count}")
            return f"split from {self.source}: " + "; ".join(parts)
        return f"{max((self.folds or {0: 0}).values()) + 1} folds from {self.source}"

    def description(self) -> dict:
        """What `prep.json` records (a folder is resumed only with the same split)."""
        return {"source": self.source, "subsets" if self.subsets is not None else "folds": self.subsets or self.folds}


def _some(names):
    return ", ".join(map(repr, names[:5])) + (" ..." if len(names) > 5 else "")


def subset_name(value: Any, where: str) -> str:
    name = str(value).strip().lower()
    name = SUBSET_ALIASES.get(name, name)
    if name not in SUBSETS:
        raise ValueError(f"{where}: subset {value!r} is not one of {', '.join(SUBSETS)} (or val).")
    return name


def read_split_file(path: PathLike) -> DataSplit:
    """A `DataSplit` from nnU-Net's `splits_final.json`, or a CSV with `case,subset` or `case,fold` (and optionally `group`)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"split file '{path}' does not exist.")
    if path.lower().endswith(".json"):
        return _read_nnunet_splits(path)
    try:
        with open(path, newline="") as stream:
            rows = list(csv.DictReader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"split file '{path}' cannot be read as CSV ({error}).") from None
    columns = set(rows[0]) if rows else set()
    if "case" not in columns or not ({"subset", "fold"} & columns):
        raise ValueError(f"split file '{path}' needs the columns case and subset (train/validation/test), or case and fold; "
                         f"it has {sorted(columns)}.")
    if not rows:
        raise ValueError(f"split file '{path}' lists no case.")
    groups = {row["case"]: row["group"] for row in rows if row.get("group")} or None
    seen = {}
    for number, row in enumerate(rows, start=2):
        if row["case"] in seen:
            raise ValueError(f"'{path}' line {number}: case {row['case']!r} is listed twice (first on line {seen[row['case']]}).")
        seen[row["case"]] = number
    if "subset" in columns:
        subsets = {row["case"]: subset_name(row["subset"], f"'{path}' line {n}") for n, row in enumerate(rows, start=2)}
        return DataSplit(f"'{path}'", subsets=subsets, groups=groups)
    folds = {}
    for number, row in enumerate(rows, start=2):
        try:
            folds[row["case"]] = int(row["fold"])
        except (TypeError, ValueError):
            raise ValueError(f"'{path}' line {number}: fold {row['fold']!r} is not an integer.") from None
    return DataSplit(f"'{path}'", folds=check_fold_numbers(folds, path), groups=groups)


def check_fold_numbers(folds: dict[str, int], where: str) -> dict[str, int]:
    """`folds` `{case: fold}` if its folds are 0..k-1, k >= 2, none empty; else ValueError naming `where`."""
    numbers = sorted(set(folds.values()))
    if len(numbers) < 2 or numbers != list(range(len(numbers))):
        raise ValueError(f"{where}: folds must be numbered 0..k-1 with k >= 2 and none empty. Received the folds {numbers}.")
    return folds


def _read_nnunet_splits(path: str):
    """nnU-Net v2's `splits_final.json`: fold k's `val` cases are its test cases; the `val` lists must partition the cases."""
    try:
        with open(path) as stream:
            splits = json.load(stream)
    except (OSError, ValueError) as error:
        raise ValueError(f"'{path}' is not valid JSON ({error}).") from None
    if not isinstance(splits, list) or not splits or not all(isinstance(f, dict) and "val" in f and "train" in f for f in splits):
        raise ValueError(f"'{path}' must hold nnU-Net's splits: a list of {{\"train\": [...], \"val\": [...]}}, one per fold.")
    folds, every = {}, set()
    for fold, entry in enumerate(splits):
        every.update(entry["train"])
        every.update(entry["val"])
        for case in entry["val"]:
            if case in folds:
                raise ValueError(f"'{path}': case {case!r} is a validation case of folds {folds[case]} and {fold}; "
                                 "the folds' `val` lists must not overlap.")
            folds[case] = fold
        overlap = sorted(set(entry["train"]) & set(entry["val"]))
        if overlap:
            raise ValueError(f"'{path}': fold {fold} trains on its own validation case(s) {_some(overlap)}.")
    missing = sorted(every - set(folds))
    if missing:
        raise ValueError(f"'{path}': {len(missing)} case(s) are in no fold's `val` list ({_some(missing)}): its folds do not "
                         "partition the cases, so they cannot all be scored once.")
    return DataSplit(f"nnU-Net's '{os.path.basename(path)}'", folds=check_fold_numbers(folds, f"'{path}'"))
