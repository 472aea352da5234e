"""DICOM series and multi-frame files to `Volume`s (pydicom, GDCM through SimpleITK as fallback)."""

from __future__ import annotations

import collections
import os
from typing import TYPE_CHECKING

import numpy as np

from keras_focal.data_prep.volume import CaseError, Volume
from keras_focal.types import PathLike

if TYPE_CHECKING:
    import pydicom

# A slice step further than this from the median step is reported as a gap.
GAP_TOLERANCE = 0.1


# Values larger than this (the pixel data) are read from the file only when used.
_DEFER_ABOVE = "64 KB"


def read_dicom_header(path: PathLike) -> pydicom.Dataset | None:
    """The file's dataset with its pixel data deferred (read once, by `_pixels`), or None if it is not DICOM.

    Raises:
        CaseError: the file has DICOM's "DICM" marker but pydicom cannot
            parse it (truncated or corrupt): never skipped as "not DICOM".
    """
    path = os.fspath(path)
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, defer_size=_DEFER_ABOVE)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as error:
        try:
            with open(path, "rb") as handle:
                marked = handle.read(132)[128:132] == b"DICM"
        except OSError:
            marked = False
        if marked:
            raise CaseError(f"'{path}' is a DICOM file that cannot be read (truncated or corrupt?): {error}") from None
        return None


def _pixels(path: str, dataset):
    """Modality-rescaled pixels of one file (`dataset`: its `read_dicom_header`), `(frames, rows, columns)` float32."""
    from pydicom.pixels import apply_modality_lut

    try:
        array = dataset.pixel_array
    except Exception as error:  # pydicom names the missing decoder; GDCM often has one
        try:
            import SimpleITK as sitk

            array = sitk.GetArrayFromImage(sitk.ReadImage(path))
            return array.astype(np.float32).reshape((-1,) + array.shape[-2:])
        except RuntimeError:
            raise CaseError(f"cannot decode the pixel data of '{path}': {error}") from None
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if samples == 3:
        if str(dataset.get("PhotometricInterpretation", "")).startswith("YBR"):
            from pydicom.pixels import convert_color_space

            array = convert_color_space(array, dataset.PhotometricInterpretation, "RGB")
        # ITU-R BT.601 luma: ultrasound is often stored as RGB.
        array = array[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    else:
        array = apply_modality_lut(array, dataset)
    array = np.asarray(array, dtype=np.float32)
    return array.reshape((frames,) + array.shape[-2:])


def _orientation(header):
    orientation = header.get("ImageOrientationPatient")
    if orientation is None:
        shared = header.get("SharedFunctionalGroupsSequence")
        try:
            orientation = shared[0].PlaneOrientationSequence[0].ImageOrientationPatient
        except (AttributeError, IndexError, TypeError):
            return None
    row, column = np.array(orientation[:3], float), np.array(orientation[3:6], float)
    return row, column, np.cross(row, column)


def _pixel_spacing(header):
    spacing = header.get("PixelSpacing") or header.get("ImagerPixelSpacing")
    if spacing is None:
        shared = header.get("SharedFunctionalGroupsSequence")
        try:
            spacing = shared[0].PixelMeasuresSequence[0].PixelSpacing
        except (AttributeError, IndexError, TypeError):
            spacing = None
    if spacing is None:
        return (1.0, 1.0), ["no PixelSpacing: assumed 1 mm"]
    return (float(spacing[1]), float(spacing[0])), []  # (x = column step, y = row step)


def _frame_positions(header, frames):
    """Per-frame ImagePositionPatient of a multi-frame file, or None."""
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) == frames:
        try:
            return [np.array(item.PlanePositionSequence[0].ImagePositionPatient, float) for item in per_frame]
        except (AttributeError, IndexError):
            pass
    offsets = header.get("GridFrameOffsetVector")
    position = header.get("ImagePositionPatient")
    orientation = _orientation(header)
    if offsets is not None and position is not None and orientation is not None and len(offsets) == frames:
        return [np.array(position, float) + float(o) * orientation[2] for o in offsets]
    return None


def _slice_step(positions, normal, notes):
    """Sorted order and median step of slices along `normal`; notes gaps."""
    distances = np.array([float(np.dot(p, normal)) for p in positions])
    order = np.argsort(distances, kind="stable")
    distances = distances[order]
    if len(distances) < 2:
        return order, None
    steps = np.diff(distances)
    if np.any(steps < 1e-4):
        duplicate = float(distances[1:][steps < 1e-4][0])
        raise CaseError(f"two slices lie at the same position ({duplicate:.3f} mm along the slice normal).")
    step = float(np.median(steps))
    gaps = np.nonzero(np.abs(steps - step) > GAP_TOLERANCE * step)[0]
    if gaps.size:
        described = ", ".join(f"{distances[i]:.2f}->{distances[i + 1]:.2f} mm" for i in gaps[:5])
        notes.append(f"uneven slice positions (median step {step:.3f} mm): {described}")
    return order, step


def _check_not_a_cut_image(path: str, header):
    """Raises `CaseError` when a DICOM file without pixel rows is an image whose data set was cut short.

    Such a file would otherwise be skipped as "not an image", and its series
    read with a slice missing.
    """
    sop_class = header.get("SOPClassUID") or getattr(header, "file_meta", {}).get("MediaStorageSOPClassUID")
    if sop_class is None:
        raise CaseError(f"'{path}' is a DICOM file that cannot be read (truncated or corrupt?): it names no SOP class.")
    name = getattr(sop_class, "name", str(sop_class))
    if "Image Storage" in name:
        raise CaseError(f"'{path}' is a DICOM image ({name}) without its pixel rows and data: truncated or corrupt?")


def find_series(folder: PathLike) -> dict[str, list[tuple[str, pydicom.Dataset]]]:
    """`{SeriesInstanceUID: [(path, header), ...]}` for every DICOM file under `folder`."""
    folder = os.fspath(folder)
    series = collections.defaultdict(list)
    for root, _, names in os.walk(folder):
        for name in sorted(names):
            if name.upper() == "DICOMDIR":
                continue
            path = os.path.join(root, name)
            header = read_dicom_header(path)
            if header is not None and header.get("Rows"):  # an image, not a report or DICOMDIR
                series[str(header.get("SeriesInstanceUID", "unknown"))].append((path, header))
            elif header is not None:
                _check_not_a_cut_image(path, header)
    return dict(series)


def _describe(uid, files) -> str:
    header = files[0][1]
    return (
        f"{uid} (SeriesNumber {header.get('SeriesNumber', '?')}, "
        f"'{header.get('SeriesDescription', '')}', {len(files)} files)"
    )


def series_files(folder: PathLike, series: str | None = None) -> list[tuple[str, pydicom.Dataset]]:
    """`[(path, header), ...]` of the one DICOM series under `folder` (its headers only; pixel data deferred).

    With several series, `series` (a SeriesInstanceUID or a SeriesNumber)
    picks one; otherwise the error lists them.

    Raises:
        CaseError: no DICOM image under `folder`, or the series is ambiguous.
    """
    groups = find_series(folder)
    if not groups:
        raise CaseError(f"no DICOM image under '{folder}'.")
    if len(groups) == 1:
        return next(iter(groups.values()))
    chosen = [
        uid for uid, group in groups.items()
        if series is not None and (uid == str(series) or str(group[0][1].get("SeriesNumber", "")) == str(series))
    ]
    if len(chosen) != 1:
        listing = "; ".join(_describe(uid, group) for uid, group in groups.items())
        reason = "pick one with --series" if series is None else f"--series {series!r} matches {len(chosen)}"
        raise CaseError(f"'{folder}' holds {len(groups)} series ({reason}): {listing}")
    return groups[chosen[0]]


def _series_frames(files, path: str):
    """`(frames (n, rows, columns), positions or None)` of a series of single-frame files, in file order.

    Raises CaseError naming the file whose size or frame count differs from
    the series', or that lacks the ImagePositionPatient the others have.
    """
    slices = [_pixels(p, h) for p, h in files]
    # Name the file at fault: the first whose size differs from the series' most common one.
    sizes = [s.shape[1:] for s in slices]
    common = max(set(sizes), key=sizes.count)
    for (file_path, _), pixels in zip(files, slices):
        if pixels.shape[0] != 1:
            raise CaseError(f"'{file_path}' holds {pixels.shape[0]} frames; the other files of its series in '{path}' one each.")
        if pixels.shape[1:] != common:
            odd = sum(size != common for size in sizes)
            raise CaseError(
                f"'{file_path}' is {pixels.shape[2]}x{pixels.shape[1]} pixels; {sizes.count(common)} other slice(s) of its "
                f"series in '{path}' are {common[1]}x{common[0]}" + (f" ({odd - 1} more file(s) differ)." if odd > 1 else ".")
            )
    positions = [h.get("ImagePositionPatient") for _, h in files]
    lacking = [p for (p, _), position in zip(files, positions) if position is None]
    if lacking and len(lacking) < len(files):
        # Placing it by InstanceNumber among slices placed by position would shift the volume.
        raise CaseError(
            f"'{lacking[0]}' has no ImagePositionPatient (0020,0032), which {len(files) - len(lacking)} other "
            f"slice(s) of its series have: its place in the volume is unknown"
            + (f" ({len(lacking) - 1} more file(s) lack it)." if len(lacking) > 1 else ".")
        )
    return np.concatenate(slices), (None if lacking else [np.array(p, float) for p in positions])


def _dicom_files(path: str, series: str | None) -> list[tuple[str, pydicom.Dataset]]:
    """`[(path, header)]` of one DICOM file, or of the one series (`series` picks) in a folder."""
    if os.path.isfile(path):
        header = read_dicom_header(path)
        if header is None:
            raise CaseError(f"'{path}' is not a DICOM file.")
        return [(path, header)]
    if os.path.isdir(path):
        return series_files(path, series)
    raise CaseError(f"'{path}' does not exist.")


def read_dicom_volume(path: PathLike, series: str | None = None) -> Volume:
    """Reads a DICOM series folder, or one (multi-frame) DICOM file, as a `Volume`.

    - Files are grouped by SeriesInstanceUID; with several series, `series`
      picks one (a UID or a SeriesNumber), otherwise the error lists them.
    - Slices are sorted along the normal of ImageOrientationPatient (the
      cross product of its row and column directions) by their
      ImagePositionPatient; InstanceNumber is only a fallback, with a note.
      Uneven steps are noted as gaps; two slices at one position fail.
    - Pixel values go through RescaleSlope/RescaleIntercept (the modality
      LUT); colour images become luma. Pixel data that pydicom cannot
      decode is read with GDCM through SimpleITK.

    Raises:
        CaseError: no DICOM image, ambiguous series, unreadable pixels,
            inconsistent slice sizes, duplicate slice positions, or some
            slices (not all) without ImagePositionPatient.
    """
    path = str(path)
    files = _dicom_files(path, series)
    notes = []
    first = files[0][1]
    spacing_xy, spacing_notes = _pixel_spacing(first)
    notes += spacing_notes
    orientation = _orientation(first)
    if len(files) == 1:
        frames = _pixels(files[0][0], first)
        positions = _frame_positions(first, frames.shape[0])
        if positions is None and first.get("ImagePositionPatient") is not None:
            positions = [np.array(first.ImagePositionPatient, float)]
    else:
        frames, positions = _series_frames(files, path)

    if orientation is not None and positions is not None:
        order, step = _slice_step(positions, orientation[2], notes)
        origin = tuple(positions[order[0]])
        direction = tuple(np.stack(orientation, axis=1).ravel())
    else:
        if len(files) > 1:
            notes.append("no ImagePositionPatient/ImageOrientationPatient: slices sorted by InstanceNumber")
            order = np.argsort([int(h.get("InstanceNumber", 0) or 0) for _, h in files], kind="stable")
        else:
            order = np.arange(frames.shape[0])
        step = None
        origin = tuple(float(v) for v in first.get("ImagePositionPatient", (0.0, 0.0, 0.0)))
        direction = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    if step is None:
        step = float(first.get("SpacingBetweenSlices", 0) or first.get("SliceThickness", 0) or 1.0)
    return Volume(
        array=frames[np.asarray(order)],
        spacing=(spacing_xy[0], spacing_xy[1], step),
        origin=tuple(float(v) for v in origin),
        direction=tuple(float(v) for v in direction),
        source=path,
        notes=notes,
        frame_of_reference=str(first.FrameOfReferenceUID) if first.get("FrameOfReferenceUID") else None,
    )


def series_in_slice_order(path: PathLike, series: str | None = None) -> list[tuple[str, pydicom.Dataset]]:
    """`[(path, header), ...]` of the series `read_dicom_volume(path, series)` reads, in its slice order.

    For objects that refer to the series' images one by one (a DICOM SEG or
    RTSTRUCT of a prediction): slice z of the volume is image z here.

    Raises:
        CaseError: no DICOM series, a multi-frame file, or an image without
            ImagePositionPatient or ImageOrientationPatient (its place in the
            volume would be a guess).
    """
    files = _dicom_files(os.fspath(path), series)
    for file_path, header in files:
        if int(header.get("NumberOfFrames", 1) or 1) > 1:
            raise CaseError(f"'{file_path}' is a multi-frame image; DICOM objects of a prediction refer to a series "
                            "of single-frame images.")
        for name in ("ImagePositionPatient", "ImageOrientationPatient"):
            if header.get(name) is None:
                raise CaseError(f"'{file_path}' has no {name}: its place in the series is unknown.")
    orientation = _orientation(files[0][1])
    positions = [np.array(header.ImagePositionPatient, float) for _, header in files]
    order, _ = _slice_step(positions, orientation[2], [])
    return [files[i] for i in order]
