"""The layouts medical segmentation sets come in: the Medical Segmentation Decathlon, nnU-Net v2's raw data, plain pairs.

- **Decathlon** task folders (`Task05_Prostate/`): `dataset.json` with
  `modality` (`{"0": "T2", "1": "ADC"}`), `labels` (`{"0": "background",
  ...}`, value -> name) and `training` (`[{"image": "./imagesTr/x.nii.gz",
  "label": "./labelsTr/x.nii.gz"}]`); a multi-modal image is one 4-D NIfTI
  whose fourth axis holds the channels.
- **nnU-Net v2** raw data sets (`Dataset005_Prostate/`): `dataset.json`
  with `channel_names` (`{"0": "T2", "1": "ADC"}`), `labels` (`{"background":
  0, ...}`, name -> value) and `file_ending`; channel c of case X is
  `imagesTr/X_{c:04d}<file_ending>`, its labels `labelsTr/X<file_ending>`.
- **plain pairs** (`prep volumes IMAGES MASKS`): an image and a label
  volume of the same name, in any format SimpleITK reads.

Every finder checks what it can before any case is read and returns
`(cases, unlabelled, problems, channel_names, labels)`: a malformed
`dataset.json` (or a missing key) raises ValueError naming the file and the
key; a case whose files are missing, or whose channel count differs from
the data set's, is a problem (the case fails, named, and the others go on).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from keras_focal.data_prep.dataset import Case, safe_case_name
from keras_focal.data_prep.labels import LabelTable
from keras_focal.data_prep.sources import find_mask, load_volume_case, volume_case
from keras_focal.data_prep.volume import (
    VOLUME_SUFFIXES,
    CaseError,
    read_volume,
    stack_channels,
    strip_volume_suffix,
    volume_channels,
)
from keras_focal.types import PathLike

if TYPE_CHECKING:
    from keras_focal.data_prep.dataset import Case, CaseData, PrepOptions

DATASET_JSON = "dataset.json"


def read_dataset_json(folder: PathLike, keys: Sequence[str]) -> tuple[str, dict]:
    """`folder/dataset.json` with `keys` checked present; raises ValueError naming the file and the key."""
    if not os.path.isdir(folder):
        raise ValueError(f"data set folder '{folder}' does not exist.")
    path = os.path.join(folder, DATASET_JSON)
    try:
        with open(path) as stream:
            description = json.load(stream)
    except FileNotFoundError:
        raise ValueError(f"'{folder}' has no {DATASET_JSON}: it is not a Decathlon task or nnU-Net data set folder.") from None
    except ValueError as error:
        raise ValueError(f"'{path}' is not valid JSON ({error}).") from None
    if not isinstance(description, dict):
        raise ValueError(f"'{path}' must hold a JSON object.")
    missing = [key for key in keys if key not in description]
    if missing:
        raise ValueError(f"'{path}' has no {', '.join(f'`{k}`' for k in missing)} (needed: {', '.join(keys)}).")
    return path, description


def channel_names_of(mapping: Mapping[str, Any], where: str, key: str) -> tuple[str, ...]:
    """`{"0": "T2", "1": "ADC"}` -> `("T2", "ADC")`; the keys must be 0..C-1."""
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f"{where}: `{key}` must map channel numbers to names. Received: {mapping!r}")
    try:
        numbered = {int(number): str(name) for number, name in mapping.items()}
    except (TypeError, ValueError):
        raise ValueError(f"{where}: the keys of `{key}` must be channel numbers 0, 1, ... Received: {list(mapping)}") from None
    if sorted(numbered) != list(range(len(numbered))):
        raise ValueError(f"{where}: `{key}` must number the channels 0..{len(numbered) - 1}. Received: {list(mapping)}")
    return tuple(numbered[i] for i in range(len(numbered)))


def _channel_problem(path: str, channels, channel_names, where):
    """A message when the volume at `path` does not hold `channels` channels, else None."""
    try:
        found = volume_channels(path)
    except CaseError as error:
        return str(error)
    if found != channels:
        return (f"'{path}' holds {found} channel(s); {where} names {channels} ({', '.join(channel_names)}). "
                "Every case must have the data set's channels.")
    return None


def _one_channel_problem(path: str, name: str):
    """A message when the nnU-Net channel file at `path` is not one scalar volume, else None."""
    try:
        found = volume_channels(path)
    except CaseError as error:
        return str(error)
    return None if found == 1 else (f"'{path}' holds {found} channels; in the nnU-Net layout each file is one channel "
                                    f"(this one {name!r}).")


# --- The Medical Segmentation Decathlon -------------------------------------------

def find_msd_cases(folder: PathLike) -> tuple[list[Case], list[str], dict[str, str], tuple[str, ...], LabelTable]:
    """The training cases of a Decathlon task folder (see the module docstring)."""
    path, description = read_dataset_json(folder, ("modality", "labels", "training"))
    channel_names = channel_names_of(description["modality"], f"'{path}'", "modality")
    labels = LabelTable.from_msd(description["labels"], f"'{path}'")
    training = description["training"]
    if not isinstance(training, list):
        raise ValueError(f"'{path}': `training` must be a list of {{\"image\": ..., \"label\": ...}} entries.")
    cases, problems, seen = [], {}, {}
    for index, entry in enumerate(training):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("image", "label")):
            raise ValueError(f"'{path}': `training[{index}]` must have the file names `image` and `label`. Received: {entry!r}")
        image, label = (os.path.normpath(os.path.join(folder, entry[k])) for k in ("image", "label"))
        name = safe_case_name(strip_volume_suffix(os.path.basename(entry["image"])))
        if name in seen:
            problems[name] = f"`training[{index}]` and `training[{seen[name]}]` of '{path}' are both case {name!r}"
            continue
        seen[name] = index
        lacking = [f"`training[{index}].{k}` names '{entry[k]}', which does not exist"
                   for k, file in (("image", image), ("label", label)) if not os.path.isfile(file)]
        if lacking:
            problems[name] = f"'{path}': " + "; ".join(lacking)
            continue
        problem = _channel_problem(image, len(channel_names), channel_names, f"`modality` of '{path}'")
        if problem:
            problems[name] = problem
            continue
        cases.append(Case(name, load_volume_case, (image, label, labels, len(channel_names))))
    cases = [case for case in cases if case.name not in problems]
    unlabelled = sorted(safe_case_name(strip_volume_suffix(os.path.basename(str(entry)))) for entry in description.get("test") or [])
    if not cases and not problems:
        raise ValueError(f"'{path}': `training` lists no case.")
    return cases, unlabelled, problems, channel_names, labels


# --- nnU-Net v2 raw data ----------------------------------------------------------

def load_channel_files_case(case: Case, options: PrepOptions) -> CaseData:
    """An nnU-Net case: one scalar volume per channel (`X_0000`, `X_0001`...) on one grid, and its label volume."""
    paths, channel_names, mask_path, labels = case.inputs
    image = stack_channels([read_volume(p) for p in paths], channel_names, f"case {case.name!r}")
    return volume_case(image, read_volume(mask_path), options, labels, len(paths))


def find_nnunet_cases(folder: PathLike) -> tuple[list[Case], list[str], dict[str, str], tuple[str, ...], LabelTable]:
    """The training cases of an nnU-Net v2 raw data set (see the module docstring)."""
    path, description = read_dataset_json(folder, ("channel_names", "labels", "file_ending"))
    channel_names = channel_names_of(description["channel_names"], f"'{path}'", "channel_names")
    labels = LabelTable.from_nnunet(description["labels"], f"'{path}'")
    ending = description["file_ending"]
    if not isinstance(ending, str) or not ending.startswith("."):
        raise ValueError(f"'{path}': `file_ending` must be a file ending such as \".nii.gz\". Received: {ending!r}")
    images_dir, labels_dir = os.path.join(folder, "imagesTr"), os.path.join(folder, "labelsTr")
    for sub in (images_dir, labels_dir):
        if not os.path.isdir(sub):
            raise ValueError(f"'{folder}' has no {os.path.basename(sub)}/ folder (the nnU-Net raw layout).")
    pattern = re.compile(r"^(.+)_(\d{4})" + re.escape(ending) + "$")
    channels, stray = {}, []
    for name in sorted(os.listdir(images_dir)):
        if name.startswith("."):
            continue  # ._ files of macOS archives
        match = pattern.match(name)
        if match:
            channels.setdefault(match.group(1), {})[int(match.group(2))] = os.path.join(images_dir, name)
        elif name.endswith(ending):
            stray.append(name)
    label_files = {name[: -len(ending)]: os.path.join(labels_dir, name) for name in sorted(os.listdir(labels_dir))
                   if name.endswith(ending) and not name.startswith(".")}
    if not channels:
        raise ValueError(f"'{images_dir}' holds no CASE_0000{ending} file"
                         + (f" (found {stray[:3]}: channel files end in _0000, _0001...)" if stray else "") + ".")
    cases, problems, unlabelled = [], {}, []
    expected = set(range(len(channel_names)))
    for case_id, files in channels.items():
        name = safe_case_name(case_id)
        if case_id not in label_files:
            unlabelled.append(name)
            continue
        if set(files) != expected:
            missing = [f"{case_id}_{c:04d}{ending} ({channel_names[c]})" for c in sorted(expected - set(files))]
            extra = [f"{case_id}_{c:04d}{ending}" for c in sorted(set(files) - expected)]
            problems[name] = (f"'{images_dir}': " + (f"missing {', '.join(missing)}" if missing else "")
                              + ("; " if missing and extra else "")
                              + (f"{', '.join(extra)} beyond the {len(channel_names)} channel(s) of `channel_names` in '{path}'"
                                 if extra else ""))
            continue
        paths = tuple(files[c] for c in range(len(channel_names)))
        problem = next(filter(None, (_one_channel_problem(path, channel_names[c]) for c, path in enumerate(paths))), None)
        if problem:
            problems[name] = problem
            continue
        cases.append(Case(name, load_channel_files_case, (paths, channel_names, label_files[case_id], labels)))
    for case_id in sorted(set(label_files) - set(channels)):
        problems[safe_case_name(case_id)] = f"labels '{label_files[case_id]}' have no image {case_id}_0000{ending} in '{images_dir}'"
    return cases, sorted(unlabelled), problems, None if channel_names is None else tuple(channel_names), labels


# --- Plain image/label pairs -----------------------------------------------------------

def find_volume_pairs(
    images: PathLike, masks: PathLike, labels: LabelTable, channel_names: Sequence[str] | None = None,
) -> tuple[list[Case], list[str], dict[str, str], tuple[str, ...] | None, LabelTable]:
    """Cases of image volumes in `images` with label volumes of the same name in `masks`, any SimpleITK format.

    The channel count is read from every image's header first: all must
    agree (a 4-D image gives its channels), otherwise ValueError lists them.
    `channel_names`: names for a multi-channel set (default "channel 0", ...).
    """
    for folder, what in ((images, "image folder"), (masks, "mask folder")):
        if not os.path.isdir(folder):
            raise ValueError(f"{what} '{folder}' does not exist.")
    found, problems, unlabelled = {}, {}, []
    for entry in sorted(os.listdir(images)):
        path = os.path.join(images, entry)
        if entry.startswith(".") or not os.path.isfile(path) or not entry.lower().endswith(VOLUME_SUFFIXES):
            continue
        stem = strip_volume_suffix(entry)
        name = safe_case_name(stem)
        if name in found:
            problems[name] = f"'{found[name][0]}' and '{path}' are both case {name!r}"
            continue
        mask = find_mask(masks, stem)
        if mask is None:
            unlabelled.append(name)
            continue
        found[name] = (path, mask)
    if not found and not problems:
        raise ValueError(f"no image volume ({', '.join(VOLUME_SUFFIXES)}) with a mask of the same name in '{images}' / '{masks}'.")
    counts = {}
    for name, (path, _) in found.items():
        try:
            counts[name] = volume_channels(path)
        except CaseError as error:
            problems[name] = str(error)
    distinct = sorted(set(counts.values()))
    if len(distinct) > 1:
        listed = "; ".join(f"{count} in {[n for n in counts if counts[n] == count][:3]}" for count in distinct)
        raise ValueError(f"the images of '{images}' hold different numbers of channels ({listed}): a data set's cases "
                         "must share their channels.")
    channels = distinct[0] if distinct else 1
    if channel_names is None:
        channel_names = tuple(f"channel {i}" for i in range(channels)) if channels > 1 else None
    elif len(channel_names) != channels:
        raise ValueError(f"--channel-names gives {len(channel_names)} name(s) {list(channel_names)}; the images hold {channels} channel(s).")
    cases = [Case(name, load_volume_case, (path, mask, labels, channels)) for name, (path, mask) in found.items()
             if name not in problems]
    return cases, sorted(unlabelled), problems, None if channel_names is None else tuple(channel_names), labels



