"""DICOM label objects (Segmentation Storage "SEG" and RT Structure Sets "RTSTRUCT") as masks on an image series' grid.

What clinical annotation tools export is not a label volume but one of
these objects, which refer to the image series through its frame of
reference:

- a **SEG** holds one frame per segment and slice, each placed by its
  ImagePositionPatient (`PerFrameFunctionalGroupsSequence`); frames are put
  onto the image's voxels by that position (in-plane offsets included),
  after checking that the orientation and pixel spacing are the image's.
  BINARY frames are masks, FRACTIONAL ones are thresholded at half their
  maximum, LABELMAP frames hold segment numbers.
- an **RTSTRUCT** holds closed planar contours in mm; each is mapped to the
  image's voxel indices, must lie on one of its slices, and is filled there
  (scikit-image's polygon rasterisation: a pixel is inside when its centre
  is). Several contours of one ROI on a slice combine by exclusive or, the
  DICOM convention for holes.

Segments and ROIs become classes by their names (`SegmentLabel`,
`ROIName`): a name equal to a class name (case aside), or chosen with
`--roi NAME=CLASS`. Where two classes claim a voxel, the higher class index
wins and a note counts the voxels. A frame of reference other than the
series' fails the case: the contours would be drawn on another patient
position.

pydicom reads both objects; highdicom and rt-utils were considered: the
placement onto the series' grid, with the checks and messages above, is
what this module is, and neither reads the object onto an existing grid
with our `Volume`'s geometry more simply (rt-utils also needs OpenCV and
the series' files on disk).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_focal.data_prep.volume import CaseError
from keras_focal.types import Array, ArrayLike, PathLike

if TYPE_CHECKING:
    import pydicom

    from keras_focal.data_prep.labels import LabelTable
    from keras_focal.data_prep.volume import Volume

LABEL_MODALITIES = ("SEG", "RTSTRUCT")
# How far (in voxels) a frame's or contour's position may lie from a voxel centre, for rounded DS values.
POSITION_TOLERANCE = 0.1


def read_label_object(path: PathLike) -> pydicom.Dataset | None:
    """The pydicom dataset of a SEG or RTSTRUCT file, or None when `path` is not one.

    Read with `force=True`: RT objects are often written without the file
    meta header (pydicom's own `rtstruct.dcm` is).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(path, force=True, stop_before_pixels=False)
    except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError, TypeError):
        return None
    return dataset if str(dataset.get("Modality", "")).upper() in LABEL_MODALITIES else None


def find_label_object(path: PathLike) -> str | None:
    """`path` if it is a SEG/RTSTRUCT file, the one such file in folder `path`, else None.

    Raises:
        CaseError: the folder holds several label objects (which one is meant is unknown).
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        return path if read_label_object(path) is not None else None
    if not os.path.isdir(path):
        return None
    found = [os.path.join(path, name) for name in sorted(os.listdir(path))
             if not name.startswith(".") and os.path.isfile(os.path.join(path, name))
             and read_label_object(os.path.join(path, name)) is not None]
    if len(found) > 1:
        raise CaseError(f"'{path}' holds {len(found)} DICOM SEG/RTSTRUCT objects ({', '.join(map(os.path.basename, found))}): "
                        "keep one per case.")
    return found[0] if found else None


def label_object_mask(
    path: PathLike, image: Volume, labels: LabelTable, roi_map: dict[str, str] | None = None,
) -> Array:
    """The SEG or RTSTRUCT at `path` as uint8 class indices on the grid of `image` (a `Volume`).

    Args:
        path: the label object.
        image: the image series' `Volume` (its geometry and frame of reference).
        labels: the data set's `LabelTable` (class names).
        roi_map: `{segment or ROI name: class name}` (`--roi`); None matches
            names to class names.

    Returns:
        `(mask (z, y, x) uint8, notes)`.

    Raises:
        CaseError: another frame of reference, no segment or ROI for any
            class, a frame or contour off the image's grid.
    """
    path = os.fspath(path)
    dataset = read_label_object(path)
    if dataset is None:
        raise CaseError(f"'{path}' is not a DICOM SEG or RTSTRUCT object.")
    if str(dataset.Modality).upper() == "SEG":
        return _segmentation_mask(path, dataset, image, labels, roi_map)
    return _structure_set_mask(path, dataset, image, labels, roi_map)


def _check_frame_of_reference(path: str, uid, image: ArrayLike):
    if uid and image.frame_of_reference and str(uid) != str(image.frame_of_reference):
        raise CaseError(f"'{path}' refers to the frame of reference {uid}, but the image series '{image.source}' is in "
                        f"{image.frame_of_reference}: its labels would be placed in another patient position.")


def _classes_of(path: str, names_by_number, labels, roi_map, kind):
    """`{segment/ROI number: class index}` and notes about the ones left out."""
    lowered = {name.lower(): index for index, name in enumerate(labels.names)}
    chosen, skipped = {}, []
    if roi_map:
        missing = sorted(set(roi_map) - set(names_by_number.values()))
        if missing:
            raise CaseError(f"--roi names {kind}(s) {missing} that '{path}' does not hold (it has "
                            f"{sorted(set(names_by_number.values()))}).")
    for number, name in names_by_number.items():
        target = roi_map.get(name) if roi_map else name
        index = lowered.get(str(target).lower()) if target is not None else None
        if index is None:
            skipped.append(name)
        elif index:  # a segment named as the background class (a LABELMAP's segment 0) is what is left: no note
            chosen[number] = index
    if not chosen:
        raise CaseError(f"no {kind} of '{path}' is a class: it holds {sorted(set(names_by_number.values()))}, the classes "
                        f"are {list(labels.names)}; name the classes after them (--class-names) or map them with --roi NAME=CLASS.")
    notes = [f"{kind}(s) {sorted(set(skipped))} of '{os.path.basename(path)}' are no class and were left out"] if skipped else []
    return chosen, notes


def _to_index(image: ArrayLike, points):
    """Continuous voxel indices `(x, y, z)` of physical points `(n, 3)` on `image`'s grid."""
    direction = np.asarray(image.direction, float).reshape(3, 3)
    matrix = direction * np.asarray(image.spacing, float)[None, :]
    return np.linalg.solve(matrix, (np.asarray(points, float) - np.asarray(image.origin, float)).T).T


def _shared_item(dataset, frame, sequence):
    """The first item of functional group `sequence` for `frame`, per-frame first, then shared."""
    for groups, index in ((dataset.get("PerFrameFunctionalGroupsSequence"), frame),
                          (dataset.get("SharedFunctionalGroupsSequence"), 0)):
        if groups is not None and len(groups) > index and sequence in groups[index]:
            return groups[index][sequence][0]
    return None


def _segmentation_mask(path: str, dataset, image: ArrayLike, labels, roi_map):
    _check_frame_of_reference(path, dataset.get("FrameOfReferenceUID"), image)
    segments = {int(item.SegmentNumber): str(item.get("SegmentLabel", item.SegmentNumber))
                for item in dataset.get("SegmentSequence", [])}
    classes, notes = _classes_of(path, segments, labels, roi_map, "segment")
    kind = str(dataset.get("SegmentationType", "BINARY")).upper()
    pixels = np.asarray(dataset.pixel_array)
    frames = pixels.reshape((-1,) + pixels.shape[-2:])
    slices, height, width = image.array.shape[:3]
    mask = np.zeros((slices, height, width), np.uint8)
    image_row, image_column = np.asarray(image.direction, float).reshape(3, 3).T[:2]
    overlaps = 0
    for frame_index, frame in enumerate(frames):
        position = _shared_item(dataset, frame_index, "PlanePositionSequence")
        if position is None:
            raise CaseError(f"'{path}': frame {frame_index + 1} has no ImagePositionPatient; it cannot be placed on the series.")
        orientation = _shared_item(dataset, frame_index, "PlaneOrientationSequence")
        if orientation is not None:
            cosines = np.asarray(orientation.ImageOrientationPatient, float)
            if not (np.allclose(cosines[:3], image_row, atol=1e-3) and np.allclose(cosines[3:], image_column, atol=1e-3)):
                raise CaseError(f"'{path}': frame {frame_index + 1} is oriented {cosines.round(4).tolist()}, the image series "
                                f"{np.concatenate([image_row, image_column]).round(4).tolist()}; resample it first.")
        measures = _shared_item(dataset, frame_index, "PixelMeasuresSequence")
        if measures is not None and "PixelSpacing" in measures:
            spacing = (float(measures.PixelSpacing[1]), float(measures.PixelSpacing[0]))
            if not np.allclose(spacing, image.spacing[:2], rtol=1e-3):
                raise CaseError(f"'{path}': frame {frame_index + 1} has pixel spacing {spacing} mm, the image series "
                                f"{tuple(image.spacing[:2])} mm; resample it first.")
        column, row, slice_index = _to_index(image, [position.ImagePositionPatient])[0]
        offsets = np.array([column, row, slice_index])
        if np.any(np.abs(offsets - np.rint(offsets)) > POSITION_TOLERANCE):
            raise CaseError(f"'{path}': frame {frame_index + 1} at {list(map(float, position.ImagePositionPatient))} mm "
                            f"lies between the series' voxels (index {offsets.round(3).tolist()}).")
        column, row, slice_index = (int(v) for v in np.rint(offsets))
        if kind == "LABELMAP":
            values: dict[int, Any] = {number: frame == number for number in classes}
        else:
            number = int(_shared_item(dataset, frame_index, "SegmentIdentificationSequence").ReferencedSegmentNumber)
            if number not in classes:
                continue
            maximum = float(dataset.get("MaximumFractionalValue", 255)) if kind == "FRACTIONAL" else 1.0
            values = {number: frame >= (maximum / 2 if kind == "FRACTIONAL" else 1)}
        for number, inside in values.items():
            if not inside.any():
                continue
            rows, columns = np.nonzero(inside)
            rows, columns = rows + row, columns + column
            on_grid = (rows >= 0) & (rows < height) & (columns >= 0) & (columns < width)
            if not 0 <= slice_index < slices or not on_grid.all():
                raise CaseError(f"'{path}': segment {segments.get(number, number)!r} of frame {frame_index + 1} lies outside "
                                f"the image series' grid (slice {slice_index} of 0..{slices - 1}).")
            target = mask[slice_index]
            current = target[rows, columns]
            overlaps += int(np.count_nonzero((current != 0) & (current != classes[number])))
            target[rows, columns] = np.maximum(current, classes[number])
    if overlaps:
        notes.append(f"{overlaps} voxel(s) of '{os.path.basename(path)}' belong to two segments: the higher class index kept")
    return mask, notes


# A pixel centre closer than this (in pixels) to a contour lies on it: contours written through pixel centres carry
# decimal-string rounding of about 1e-5 mm.
ON_CONTOUR_TOLERANCE = 1e-3


def pixels_on_contour(rows: ArrayLike, columns: ArrayLike, shape: tuple[int, int]) -> tuple[Array, Array]:
    """`(rows, columns)` of the pixels whose centres lie on the closed polygon through `(rows, columns)` (to 1e-3 px).

    These pixels are inside the ROI, whatever side of the polygon they fall
    on: a contour traced through the centres of a mask's boundary pixels
    (rt-utils, OpenCV's `findContours`, most planning systems) then gives
    back that mask, as OpenCV's `fillPoly` and rt-utils fill it, where a
    point-in-polygon test alone would drop half of the boundary.
    """
    start = np.stack([rows, columns], axis=1)
    end = np.roll(start, -1, axis=0)
    found = []
    for (r0, c0), (r1, c1) in zip(start, end):
        low_r, high_r = int(np.ceil(min(r0, r1) - ON_CONTOUR_TOLERANCE)), int(np.floor(max(r0, r1) + ON_CONTOUR_TOLERANCE))
        low_c, high_c = int(np.ceil(min(c0, c1) - ON_CONTOUR_TOLERANCE)), int(np.floor(max(c0, c1) + ON_CONTOUR_TOLERANCE))
        if high_r < low_r or high_c < low_c:
            continue
        grid_r, grid_c = np.mgrid[low_r:high_r + 1, low_c:high_c + 1]
        direction = np.array([r1 - r0, c1 - c0])
        length = float(np.hypot(*direction))
        if length < 1e-12:  # a repeated vertex
            distance = np.hypot(grid_r - r0, grid_c - c0)
        else:  # distance of each centre from the segment's line, the centres within the segment's bounding box
            distance = np.abs((grid_r - r0) * direction[1] - (grid_c - c0) * direction[0]) / length
        on = distance <= ON_CONTOUR_TOLERANCE
        found.append(np.stack([grid_r[on], grid_c[on]], axis=1))
    points = np.concatenate(found) if found else np.zeros((0, 2), int)
    keep = (points[:, 0] >= 0) & (points[:, 0] < shape[0]) & (points[:, 1] >= 0) & (points[:, 1] < shape[1])
    return points[keep, 0], points[keep, 1]


def _structure_set_mask(path: str, dataset, image: ArrayLike, labels, roi_map):
    from skimage.draw import polygon

    rois = {}
    for item in dataset.get("StructureSetROISequence", []):
        rois[int(item.ROINumber)] = str(item.get("ROIName", item.ROINumber))
        _check_frame_of_reference(path, item.get("ReferencedFrameOfReferenceUID"), image)
    for item in dataset.get("ReferencedFrameOfReferenceSequence", []):
        _check_frame_of_reference(path, item.get("FrameOfReferenceUID"), image)
    classes, notes = _classes_of(path, rois, labels, roi_map, "ROI")
    slices, height, width = image.array.shape[:3]
    mask = np.zeros((slices, height, width), np.uint8)
    not_areas, overlaps = set(), 0
    for roi in sorted(dataset.get("ROIContourSequence", []), key=lambda item: classes.get(int(item.ReferencedROINumber), 0)):
        number = int(roi.ReferencedROINumber)
        if number not in classes:
            continue
        filled = np.zeros((slices, height, width), bool)
        edges = np.zeros((slices, height, width), bool)
        for contour in roi.get("ContourSequence", []):
            if str(contour.get("ContourGeometricType", "CLOSED_PLANAR")).upper() != "CLOSED_PLANAR":
                not_areas.add(rois[number])
                continue
            points = np.asarray(contour.ContourData, float).reshape(-1, 3)
            columns, rows, depth = _to_index(image, points).T
            slice_index = int(np.rint(depth.mean()))
            if np.any(np.abs(depth - slice_index) > POSITION_TOLERANCE) or not 0 <= slice_index < slices:
                raise CaseError(f"'{path}': a contour of ROI {rois[number]!r} at z = {points[:, 2].mean():.2f} mm lies "
                                f"{'between' if 0 <= slice_index < slices else 'outside'} the image series' slices "
                                f"(slice index {depth.mean():.2f} of 0..{slices - 1}).")
            inside_rows, inside_columns = polygon(rows, columns, shape=(height, width))
            filled[slice_index, inside_rows, inside_columns] ^= True  # even-odd: a contour inside another is a hole
            on_rows, on_columns = pixels_on_contour(rows, columns, (height, width))
            edges[slice_index, on_rows, on_columns] = True
        filled |= edges
        edges[:] = False
        current = mask[filled]
        overlaps += int(np.count_nonzero((current != 0) & (current != classes[number])))
        mask[filled] = classes[number]
    if not_areas:
        notes.append(f"ROI(s) {sorted(not_areas)} of '{os.path.basename(path)}' have POINT or OPEN_PLANAR contours, "
                     "which enclose no area: left out")
    if overlaps:
        notes.append(f"{overlaps} voxel(s) of '{os.path.basename(path)}' belong to two ROIs: the higher class index kept")
    return mask, notes
