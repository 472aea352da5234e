"""New cases to predict: what an input path holds, checked before work, and read.

An input is a volume file SimpleITK reads (4-D for a multi-channel model), a
DICOM series folder or file, or a folder of those, one case each; files named
`CASE_0000`, `CASE_0001`... are one case's channels (nnU-Net's `imagesTs/`).
`find_input_cases` lists them, `check_input_case` reads each header (no
pixel data) before any work, `read_input_volume` reads a case with prep's
readers.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import TYPE_CHECKING

from keras_focal.data_prep.dataset import safe_case_name
from keras_focal.data_prep.dicom import read_dicom_header, read_dicom_volume, series_files
from keras_focal.data_prep.volume import (
    VOLUME_SUFFIXES,
    CaseError,
    header_channels,
    read_header,
    read_volume,
    stack_channels,
    strip_volume_suffix,
)
from keras_focal.types import PathLike

if TYPE_CHECKING:
    from keras_focal.data_prep.volume import Volume

# Files that accompany volumes in a folder and are not cases themselves.
_COMPANION_SUFFIXES = (".raw", ".zraw", ".json", ".txt", ".csv", ".md")


@dataclasses.dataclass(frozen=True)
class InputCase:
    """One volume to predict: a file SimpleITK reads, a DICOM series folder, or one file per channel.

    `channel_paths`: an nnU-Net-named case's files (`X_0000.nii.gz`,
    `X_0001.nii.gz`...), in channel order; `path` is then the first.
    """

    name: str
    path: str
    kind: str  # "volume" or "dicom"
    channel_paths: tuple = ()

    @property
    def inputs(self) -> list[str]:
        """Every file the case is read from."""
        return list(self.channel_paths) or [self.path]


# nnU-Net's channel files: CASE_0000.nii.gz, CASE_0001.nii.gz...
_CHANNEL_FILE = re.compile(r"^(.+)_(\d{4})$")


def _holds_dicom(folder: str) -> bool:
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path) or name.startswith("."):
            continue
        try:
            if read_dicom_header(path) is not None:
                return True
        except CaseError:  # a broken DICOM file: the folder is a series, and reading it names the file
            return True
    return False


def _group_channel_files(files):
    """`[(case, [channel numbers], [paths])]` when every file is named `CASE_dddd` (nnU-Net's imagesTs/), else None."""
    groups = {}
    for path in files:
        match = _CHANNEL_FILE.match(strip_volume_suffix(os.path.basename(path)))
        if not match:
            return None
        groups.setdefault(match.group(1), {})[int(match.group(2))] = path
    return [(name, sorted(channels), [channels[c] for c in sorted(channels)]) for name, channels in groups.items()]


def find_input_cases(path: PathLike, channels: int = 1) -> list[InputCase]:
    """The cases under `path`: a volume file, a DICOM series folder, or a folder of those (one case each).

    A folder whose volume files are all named `CASE_0000`, `CASE_0001`...
    (nnU-Net's `imagesTs/`) gives one case per CASE, its files the channels
    in order; `channels` (the models' input channels) must then be their number.

    Raises:
        ValueError: `path` does not exist, holds no case, two of its cases
            share a name, or a case lacks one of its channel files.
    """
    path = os.fspath(path)

    if os.path.isfile(path):
        return [InputCase(safe_case_name(strip_volume_suffix(os.path.basename(path))), os.path.abspath(path), "volume")]
    if not os.path.isdir(path):
        raise ValueError(f"the input '{path}' does not exist.")
    if _holds_dicom(path):
        return [InputCase(safe_case_name(os.path.basename(os.path.normpath(path))), os.path.abspath(path), "dicom")]
    cases, volumes = [], []
    for entry in sorted(os.listdir(path)):
        full = os.path.join(path, entry)
        if entry.startswith(".") or entry.lower().endswith(_COMPANION_SUFFIXES):
            continue
        if os.path.isdir(full):
            cases.append(InputCase(safe_case_name(entry), os.path.abspath(full), "dicom"))
        elif entry.lower().endswith(VOLUME_SUFFIXES):
            volumes.append(os.path.abspath(full))
        elif entry.lower().endswith(".dcm"):
            cases.append(InputCase(safe_case_name(strip_volume_suffix(entry)), os.path.abspath(full), "dicom"))
    grouped = _group_channel_files(volumes) if volumes else None
    # One channel: only files that are all CASE_0000 are nnU-Net's (Case_0001, Case_0002 may be numbered cases).
    if grouped is not None and (channels > 1 or all(numbers == [0] for _, numbers, _ in grouped)):
        for name, numbers, files in grouped:
            if numbers != list(range(channels)):
                raise ValueError(f"case {name!r} in '{path}' has the channel file(s) "
                                 f"{', '.join(map(os.path.basename, files))}; the models take {channels} channel(s), "
                                 f"files numbered {', '.join(f'{c:04d}' for c in range(channels))}.")
            cases.append(InputCase(safe_case_name(name), files[0], "volume", tuple(files)))
    else:
        cases += [InputCase(safe_case_name(strip_volume_suffix(os.path.basename(v))), v, "volume") for v in volumes]
    if not cases:
        raise ValueError(f"'{path}' holds no volume file ({', '.join(VOLUME_SUFFIXES)}) and no DICOM series.")
    names = [case.name for case in cases]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        clashing = [case.path for case in cases if case.name in repeated]
        raise ValueError(f"several inputs give the case name(s) {repeated}: {clashing}; predict them into separate folders.")
    return cases


def check_input_case(case: InputCase, series: str | None = None, channels: int = 1) -> None:
    """Reads the header of `case` (no pixel data) and raises ValueError naming the file unless it is one 3-D volume of `channels` channels.

    A 2-D image is not a volume; a DICOM folder must hold one series, or
    `series` must pick one; a multi-channel case is a 4-D (or vector) file,
    or one scalar file per channel.
    """
    if case.kind == "dicom":
        if channels != 1:
            raise ValueError(f"'{case.path}' is a DICOM series, one channel; the models take {channels} channels: give a "
                             "4-D volume file, or one file per channel named CASE_0000, CASE_0001...")
        try:
            if os.path.isdir(case.path):
                series_files(case.path, series)
            elif read_dicom_header(case.path) is None:
                raise CaseError(f"'{case.path}' is not a DICOM file.")
        except CaseError as error:
            raise ValueError(str(error)) from None
        return

    found = 0
    for path in case.inputs:
        try:
            reader = read_header(path)
        except CaseError as error:
            raise ValueError(str(error)) from None
        dimension = reader.GetDimension()
        if dimension == 2:
            raise ValueError(f"'{path}' is a 2-D image {reader.GetSize()}, not a volume.")
        if dimension > 4:
            raise ValueError(f"'{path}' is {dimension}-D; expected a 3-D volume.")
        here = header_channels(reader)
        if case.channel_paths and here != 1:
            raise ValueError(f"'{path}' holds {here} channels; each channel file of case {case.name!r} must be one scalar volume.")
        found += here
    if found != channels:
        raise ValueError(f"'{case.path}' holds {found} channel(s) per voxel; the models take {channels} "
                         f"({'grey volumes' if channels == 1 else 'one per channel of their training data'}).")


def read_input_volume(case: InputCase, series: str | None = None) -> Volume:
    """The `Volume` of an input case, read by prep's readers (channel files stacked on their shared grid)."""
    if case.channel_paths:
        names = [os.path.basename(path) for path in case.channel_paths]
        return stack_channels([read_volume(path) for path in case.channel_paths], names, f"case {case.name!r}")
    return read_dicom_volume(case.path, series=series) if case.kind == "dicom" else read_volume(case.path)
