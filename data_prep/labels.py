"""Class names and the label values that mark each class in a source's label volumes.

A prepared data set's masks hold contiguous class indices 0..K-1 (and the
ignore label): what the losses and metrics take. The values a source writes
need not be contiguous (a Decathlon task's 0/1/2, an nnU-Net set's
`{"background": 0, "edema": 2, "tumour": 4}`), so each source gives a
`LabelTable`: class index -> (name, value). Masks are mapped to indices
when a case is prepared (a value not in the table fails the case, naming
the value and the file), the table is recorded in `classes.json`
(`label_values`), and `keras-focal predict` writes its label volumes with
the source's values again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_focal.data_prep.prepared import IGNORE_LABEL, check_class_names
from keras_focal.data_prep.volume import CaseError
from keras_focal.types import Array, ArrayLike

# The largest label value a source may use (masks are read as integers; uint16 covers every tool's label maps).
MAX_LABEL_VALUE = 65535


@dataclasses.dataclass(frozen=True)
class LabelTable:
    """Class `i` is called `names[i]` and is marked by `values[i]` in the source's label volumes.

    Attributes:
        names: the class names, index = class index (index 0 is the background).
        values: the label value of each class in the source's masks.
        ignore_values: source values read as the ignore label (unlabelled
            pixels no loss or metric counts; nnU-Net's `"ignore"` label).
    """

    names: tuple
    values: tuple
    ignore_values: tuple = ()

    def __post_init__(self):
        names = tuple(check_class_names(self.names))
        values = tuple(self.values)
        if len(values) != len(names):
            raise ValueError(f"{len(names)} class names {list(names)} but {len(values)} label values {list(values)}.")
        for value in values + tuple(self.ignore_values):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= MAX_LABEL_VALUE:
                raise ValueError(f"label values must be integers in 0..{MAX_LABEL_VALUE}. Received: {value!r}")
        every = values + tuple(self.ignore_values)
        repeated = sorted({v for v in every if every.count(v) > 1})
        if repeated:
            raise ValueError(f"the label value(s) {repeated} mark several classes: each value marks one class. "
                             f"Received: {dict(zip(names, values))}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "values", tuple(int(v) for v in values))
        object.__setattr__(self, "ignore_values", tuple(int(v) for v in self.ignore_values))

    @classmethod
    def from_names(cls, names: Sequence[str], what: str = "class names") -> LabelTable:
        """Classes marked by their index (0..K-1), with 255 read as the ignore label (what prep always accepted)."""
        names = check_class_names(names, what=what)
        return cls(tuple(names), tuple(range(len(names))), (IGNORE_LABEL,))

    @classmethod
    def parse(cls, text: str, what: str = "--class-names") -> LabelTable:
        """`"background,prostate"` (values 0, 1...) or `"background=0,edema=2,tumour=4"` (values given)."""
        items = [item.strip() for item in str(text).split(",") if item.strip()]
        if not any("=" in item for item in items):
            return cls.from_names(items, what=what)
        names, values = [], []
        for item in items:
            name, _, value = item.rpartition("=")
            if not name.strip() or not value.strip().isdigit():
                raise ValueError(f"{what}: {item!r} is not NAME=VALUE (give every class a value, e.g. "
                                 f"background=0,edema=2). Received: {text!r}")
            names.append(name.strip())
            values.append(int(value))
        check_class_names(names, what=what)
        try:
            return cls(tuple(names), tuple(values))
        except ValueError as error:
            raise ValueError(f"{what}: {error}") from None

    @classmethod
    def from_nnunet(cls, labels: Mapping[str, Any], where: str) -> LabelTable:
        """nnU-Net v2's `labels`: `{name: value}`, `"background": 0` required, `"ignore"` the ignore label.

        Region-based labels (a list of values per name, nnU-Net's BraTS
        regions) overlap, which a softmax over classes cannot represent; they
        are refused by name.
        """
        if not isinstance(labels, dict) or not labels:
            raise ValueError(f"{where}: `labels` must map each class name to its label value. Received: {labels!r}")
        regions = [name for name, value in labels.items() if isinstance(value, (list, tuple))]
        if regions:
            raise ValueError(f"{where}: `labels` {regions} are region-based (lists of values): overlapping regions are "
                             "not classes of one softmax; give each label one value.")
        ignore = [labels[name] for name in labels if name == "ignore"]
        named = sorted(((value, name) for name, value in labels.items() if name != "ignore"), key=lambda item: _as_value(item[0], where))
        if not named or _as_value(named[0][0], where) != 0:
            raise ValueError(f"{where}: `labels` must give the background the value 0 (nnU-Net's rule). Received: {labels!r}")
        try:
            return cls(tuple(n for _, n in named), tuple(_as_value(v, where) for v, _ in named),
                       tuple(_as_value(v, where) for v in ignore))
        except ValueError as error:
            raise ValueError(f"{where}: `labels`: {error}") from None

    @classmethod
    def from_msd(cls, labels: Mapping[str, Any], where: str) -> LabelTable:
        """The Decathlon's `labels`: `{"0": "background", "1": "PZ", ...}` (value -> name)."""
        if not isinstance(labels, dict) or not labels:
            raise ValueError(f"{where}: `labels` must map each label value to its class name. Received: {labels!r}")
        keys_are_values = all(not isinstance(k, bool) and str(k).strip().lstrip("-").isdigit() for k in labels)
        if not keys_are_values:
            names_first = all(isinstance(v, (int, list)) and not isinstance(v, bool) for v in labels.values())
            raise ValueError(
                f"{where}: the Decathlon's `labels` maps each label value to a class name (\"0\": \"background\", "
                f"\"1\": ...); this one has the key(s) {[k for k in labels][:4]}"
                + (" and maps names to values, as nnU-Net v2's dataset.json does (\"background\": 0): prepare it "
                   "with `keras-focal prep nnunet`, which reads that form" + (" (region labels, lists of values, "
                   "are not supported: give each class one value)" if any(isinstance(v, list) for v in labels.values()) else "")
                   if names_first else "") + f". Received: {labels!r}")
        pairs = sorted((_as_value(value, where), name) for value, name in labels.items())
        if pairs[0][0] != 0:
            raise ValueError(f"{where}: `labels` has no value 0 (the background). Received: {labels!r}")
        try:
            return cls(tuple(str(name) for _, name in pairs), tuple(value for value, _ in pairs))
        except ValueError as error:
            raise ValueError(f"{where}: `labels`: {error}") from None

    @property
    def is_identity(self) -> bool:
        """True when the source's values are the class indices themselves."""
        return self.values == tuple(range(len(self.names)))

    def describe(self) -> str:
        """`{name: value}`, for messages."""
        return ", ".join(f"{name} = {value}" for name, value in zip(self.names, self.values))

    def to_indices(self, array: ArrayLike, what: str) -> Array:
        """A source label volume as uint8 class indices (ignore values -> the ignore label).

        Raises:
            CaseError: `array` holds a value that is not in the table (the
                message names them, `what` and the table), or non-integers.
        """
        array = np.asarray(array)
        if not np.issubdtype(array.dtype, np.integer):
            if not np.all(np.mod(array, 1) == 0):
                raise CaseError(f"{what} holds non-integer values; a mask must hold label values.")
        small = (np.issubdtype(array.dtype, np.integer) and array.size
                 and 0 <= array.min() and array.max() <= MAX_LABEL_VALUE)
        if small:  # a look-up table: no sort, no int64 inverse the size of a CT volume
            present = np.flatnonzero(np.bincount(array.ravel()))
        else:
            present, inverse = np.unique(array, return_inverse=True)
        table = {value: index for index, value in enumerate(self.values)} | {v: IGNORE_LABEL for v in self.ignore_values}
        unknown = [v for v in present.tolist() if v not in table]
        if unknown:
            shown = ", ".join(f"{v:g}" for v in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise CaseError(f"{what} holds the label value(s) {shown}, which the label table does not name "
                            f"({self.describe()}).")
        if small:
            lookup = np.zeros(int(present[-1]) + 1, np.uint8)
            lookup[present] = [table[v] for v in present.tolist()]
            return lookup[array]
        mapped = np.array([table[v] for v in present.tolist()], np.uint8)
        return mapped[inverse.reshape(array.shape)]

    def to_values(self, indices: ArrayLike) -> Array:
        """Class indices -> the source's label values (uint8, or uint16 when a value exceeds 255)."""
        dtype = np.uint8 if max(self.values) <= 255 else np.uint16
        if self.is_identity:
            return np.asarray(indices).astype(dtype)
        return np.asarray(self.values, dtype)[np.asarray(indices)]


def _as_value(value, where):
    if isinstance(value, bool):
        raise ValueError(f"{where}: label value {value!r} is not an integer.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: label value {value!r} is not an integer.") from None
    if number != int(number):
        raise ValueError(f"{where}: label value {value!r} is not an integer.")
    return int(number)
