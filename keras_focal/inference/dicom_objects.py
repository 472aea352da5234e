"""Predictions as DICOM objects of the series they came from: Segmentation (SEG) and RT Structure Set (RTSTRUCT).

A viewer (OHIF, 3D Slicer, a PACS, a treatment-planning system) overlays
such an object on its series without registration, because it shares the
series' Frame of Reference, Study and Patient and names the images it lies
on.

- `write_segmentation`: a DICOM SEG built with highdicom (the reference
  library MONAI Deploy uses too): one segment per foreground class, BINARY
  frames of the label volume, or FRACTIONAL frames of the class
  probabilities; the algorithm identified (AUTOMATIC, keras-focal and its
  version, the models' SHA-256 among its parameters).
- `write_structure_set`: an RTSTRUCT built with pydicom (highdicom writes
  none; rt-utils would need OpenCV): one ROI per foreground class, closed
  planar contours per slice. The contours are marching-squares iso-lines at
  half the mask's height (scikit-image), so they run between pixel centres
  and never through one: filled with the even-odd rule (holes are separate
  contours), they give back exactly the pixels of the label volume.
- `check_dicom_source`: what a series needs before any work (the refusals
  of `predict --output-format dicom-seg|rtstruct`).

The segment and ROI codes come from `SEGMENT_CODES`: the SNOMED CT concepts
of DICOM's prostate anatomy (CID 6300) and a few organs and findings, looked
up by the class name; other classes are coded as "Tissue" with their name as
the label.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import os
import re
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from keras_focal.data_prep.dicom import series_in_slice_order
from keras_focal.data_prep.volume import CaseError
from keras_focal.evaluation import foreground_classes
from keras_focal.reporting.overlays import class_colours
from keras_focal.types import Array, ArrayLike, ClassNames, PathLike

if TYPE_CHECKING:
    import pydicom

DICOM_OUTPUT_FORMATS = ("dicom-seg", "rtstruct")
# The file each DICOM format writes per case: <case>.seg.dcm, <case>.rtstruct.dcm.
DICOM_SUFFIXES = {"dicom-seg": "seg.dcm", "rtstruct": "rtstruct.dcm"}

RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"

# Type 1 attributes (present and not empty) a SEG or RTSTRUCT copies from, or refers to, every source image.
REQUIRED_ATTRIBUTES = (
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "FrameOfReferenceUID",
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns",
)
# Type 2 attributes (present, may be empty) of the Patient and Study modules that the objects copy: a series that
# lacks one gets it empty in the object, as the standard allows, and a note says so.
EMPTY_IF_ABSENT = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber",
)

_ANATOMY = ("91723000", "SCT", "Anatomical Structure")
_ABNORMAL = ("49755003", "SCT", "Morphologically Abnormal Structure")
_TISSUE = ("85756007", "SCT", "Tissue")
# `{normalised class name: (category, property type)}`, SNOMED CT codes (value, scheme, meaning).
SEGMENT_CODES = {
    "prostate": (_ANATOMY, ("41216001", "SCT", "Prostate")),
    "peripheral zone": (_ANATOMY, ("279706003", "SCT", "Peripheral zone of the prostate")),
    "transition zone": (_ANATOMY, ("399384005", "SCT", "Transition zone of the prostate")),
    "anterior fibromuscular stroma": (_ANATOMY, ("717025007", "SCT", "Anterior fibromuscular stroma of prostate")),
    "seminal vesicle": (_ANATOMY, ("64739004", "SCT", "Seminal Vesicle")),
    "bladder": (_ANATOMY, ("89837001", "SCT", "Bladder")),
    "rectum": (_ANATOMY, ("34402009", "SCT", "Rectum")),
    "liver": (_ANATOMY, ("10200004", "SCT", "Liver")),
    "kidney": (_ANATOMY, ("64033007", "SCT", "Kidney")),
    "spleen": (_ANATOMY, ("78961009", "SCT", "Spleen")),
    "pancreas": (_ANATOMY, ("15776009", "SCT", "Pancreas")),
    "heart": (_ANATOMY, ("80891009", "SCT", "Heart")),
    "lung": (_ANATOMY, ("39607008", "SCT", "Lung")),
    "brain": (_ANATOMY, ("12738006", "SCT", "Brain")),
    "lesion": (_ABNORMAL, ("52988006", "SCT", "Lesion")),
    "tumour": (_ABNORMAL, ("108369006", "SCT", "Neoplasm")),
    "neoplasm": (_ABNORMAL, ("108369006", "SCT", "Neoplasm")),
    "edema": (_ABNORMAL, ("79654002", "SCT", "Edema")),
    "necrosis": (_ABNORMAL, ("6574001", "SCT", "Necrosis")),
}
_SYNONYMS = {"prostate gland": "prostate", "gland": "prostate", "pz": "peripheral zone", "tz": "transition zone",
             "peripheral zone of the prostate": "peripheral zone", "transition zone of the prostate": "transition zone",
             "seminal vesicles": "seminal vesicle", "urinary bladder": "bladder", "kidneys": "kidney", "lungs": "lung",
             "tumor": "tumour", "oedema": "edema"}


def segment_code(name: str) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
    """`(category, property type)` of a class: its SNOMED CT concept where `SEGMENT_CODES` knows the name, else Tissue.

    Examples:
        >>> segment_code("Peripheral zone")[1]
        ('279706003', 'SCT', 'Peripheral zone of the prostate')
        >>> segment_code("my structure")[1][2]
        'Tissue'
    """
    key = re.sub(r"[\s_-]+", " ", str(name)).strip().lower()
    key = _SYNONYMS.get(key, key)
    return SEGMENT_CODES.get(key, (_TISSUE, _TISSUE))


@dataclasses.dataclass(frozen=True)
class AlgorithmInfo:
    """Who made the prediction, as the objects record it: keras-focal's version and the models' files and SHA-256."""

    version: str
    models: tuple
    model_sha256: tuple

    def parameters(self) -> dict[str, str]:
        return {"models": ", ".join(os.path.basename(str(m)) for m in self.models),
                "model_sha256": ", ".join(self.model_sha256)}

    def description(self) -> str:
        """A LO (64 characters): what SeriesDescription says."""
        return f"keras-focal {self.version} prediction"[:64]


def check_dicom_source(path: PathLike, series: str | None = None) -> list[str]:
    """Raises CaseError naming the file and attribute unless `path` is a series a SEG or RTSTRUCT can refer to.

    Returns:
        Notes: the Type 2 Patient and Study attributes the series lacks (they are written empty).
    """
    files = series_in_slice_order(path, series)
    for file_path, header in files:
        for name in REQUIRED_ATTRIBUTES:
            if not str(header.get(name, "") or "").strip("[] "):
                raise CaseError(
                    f"'{file_path}' has no {name}, which a DICOM SEG or RTSTRUCT of its series needs: write this "
                    "case as a volume (--output-format nii.gz) instead."
                )
    frames = {str(h.FrameOfReferenceUID) for _, h in files}
    if len(frames) > 1:
        raise CaseError(f"the series in '{path}' spans {len(frames)} frames of reference; a SEG or RTSTRUCT has one.")
    absent = [name for name in EMPTY_IF_ABSENT if name not in files[0][1]]
    return [f"the series has no {', '.join(absent)}: written empty in the DICOM object (Type 2)"] if absent else []


def source_datasets(path: PathLike, series: str | None = None) -> list[pydicom.Dataset]:
    """The series' headers in the label volume's slice order, each with the Type 2 attributes it lacks added empty."""
    datasets = []
    for _, header in series_in_slice_order(path, series):
        header = copy.deepcopy(header)
        for name in EMPTY_IF_ABSENT:
            if name not in header:
                setattr(header, name, "")
        datasets.append(header)
    return datasets


def _code(triple):
    from pydicom.sr.coding import Code

    return Code(*triple)


def _segment_descriptions(class_names, classes, algorithm):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    identification = hd.AlgorithmIdentificationSequence(
        name="keras-focal", family=codes.cid7162.ArtificialIntelligence, version=algorithm.version,
        source="keras-focal", parameters=algorithm.parameters())
    descriptions = []
    for number, index in enumerate(classes, start=1):
        category, kind = segment_code(class_names[index])
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=str(class_names[index])[:64], segmented_property_category=_code(category),
            segmented_property_type=_code(kind), algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=identification))
    return descriptions


def write_segmentation(
    path: PathLike, labels: ArrayLike, class_names: ClassNames, sources: Sequence[pydicom.Dataset],
    algorithm: AlgorithmInfo, probabilities: ArrayLike | None = None,
) -> None:
    """Writes a DICOM SEG of `labels` (or, given, of the class `probabilities`) on the images `sources`.

    Args:
        path: the file to write.
        labels: class indices `(z, y, x)`, slice z on `sources[z]`.
        class_names: the classes; every class but the background becomes a segment, numbered from 1 in class order.
        sources: the series' datasets in slice order (`source_datasets`).
        algorithm: what made the prediction.
        probabilities: `(z, y, x, classes)` in [0, 1]: FRACTIONAL segments of the foreground classes' probabilities
            (quantised to 1/255) instead of BINARY segments of `labels`.
    """
    import highdicom as hd

    labels = np.asarray(labels)
    classes = foreground_classes(list(class_names))
    if probabilities is None:
        pixels = np.stack([labels == index for index in classes], axis=-1).astype(np.uint8)
        kind = hd.seg.SegmentationTypeValues.BINARY
    else:
        pixels = np.clip(np.asarray(probabilities, np.float32)[..., classes], 0.0, 1.0)
        kind = hd.seg.SegmentationTypeValues.FRACTIONAL
    with warnings.catch_warnings():
        # highdicom warns about the source's own PatientName when it has one component ("TRUS01"): not ours to fix
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name", category=UserWarning)
        segmentation = _segmentation(hd, sources, pixels, kind, class_names, classes, algorithm, probabilities is not None)
    segmentation.save_as(os.fspath(path))


def _segmentation(hd, sources, pixels, kind, class_names, classes, algorithm, fractional):
    return hd.seg.Segmentation(
        source_images=list(sources), pixel_array=pixels, segmentation_type=kind,
        segment_descriptions=_segment_descriptions(list(class_names), classes, algorithm),
        series_instance_uid=hd.UID(), series_number=_series_number(sources), sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="keras-focal", manufacturer_model_name="keras-focal", software_versions=algorithm.version,
        device_serial_number="none", series_description=algorithm.description(),
        content_description="probabilities" if fractional else "labels",
        content_label="PREDICTION", omit_empty_frames=True)


def _series_number(sources):
    number = sources[0].get("SeriesNumber")
    return int(number) + 1000 if number not in (None, "") else 1000


def slice_contours(mask: ArrayLike) -> list[Array]:
    """Closed contours `(n, 2)` in (row, column) pixel coordinates whose even-odd fill is exactly `mask`'s pixels.

    Iso-lines at 0.5 of the 0/1 mask (marching squares): every vertex lies
    half-way between two pixel centres, so no pixel centre lies on a contour,
    and a centre is inside an odd number of contours exactly when its pixel
    is in the mask (a hole's contour is a contour of its own). Collinear
    vertices are dropped; the first vertex is not repeated at the end.

    Examples:
        >>> [contour.tolist() for contour in slice_contours([[0, 0, 0], [0, 1, 0], [0, 0, 0]])]
        [[[1.5, 1.0], [1.0, 0.5], [0.5, 1.0], [1.0, 1.5]]]
    """
    from skimage.measure import approximate_polygon, find_contours

    padded = np.pad(np.asarray(mask, dtype=np.float32), 1)  # a shape touching the border still gets a closed contour
    contours = []
    for contour in find_contours(padded, 0.5):
        contour = approximate_polygon(contour - 1.0, tolerance=0)
        if len(contour) > 1 and np.array_equal(contour[0], contour[-1]):
            contour = contour[:-1]
        if len(contour) >= 3:
            contours.append(contour)
    return contours


def _patient_points(contour, source):
    """(row, column) pixel coordinates of `contour` on the image `source` as patient coordinates in mm, (n, 3)."""
    orientation = np.asarray(source.ImageOrientationPatient, float)
    row_spacing, column_spacing = (float(v) for v in source.PixelSpacing)
    position = np.asarray(source.ImagePositionPatient, float)
    # ImageOrientationPatient: the direction of increasing column index, then of increasing row index.
    return (position + contour[:, 1:2] * column_spacing * orientation[:3]
            + contour[:, 0:1] * row_spacing * orientation[3:6])


def _structure_set(sources, algorithm):
    """An RTSTRUCT dataset of the Patient, Study and Frame of Reference of `sources`, its ROIs still to add."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    first = sources[0]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_STRUCTURE_SET_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    structure_set = pydicom.FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    now = datetime.datetime.now()
    for keyword, value in (
        ("SOPClassUID", RT_STRUCTURE_SET_STORAGE), ("SOPInstanceUID", meta.MediaStorageSOPInstanceUID),
        ("Modality", "RTSTRUCT"), ("SeriesInstanceUID", generate_uid()), ("SeriesNumber", _series_number(sources)),
        ("InstanceNumber", 1), ("SeriesDescription", algorithm.description()), ("Manufacturer", "keras-focal"),
        ("ManufacturerModelName", "keras-focal"), ("SoftwareVersions", algorithm.version),
        ("InstanceCreationDate", now.strftime("%Y%m%d")), ("InstanceCreationTime", now.strftime("%H%M%S")),
        ("StructureSetLabel", "keras-focal"), ("StructureSetDate", now.strftime("%Y%m%d")),
        ("StructureSetTime", now.strftime("%H%M%S")),
        ("ApprovalStatus", "UNAPPROVED"),  # an automatic prediction, until someone reviews it
    ):
        setattr(structure_set, keyword, value)
    for keyword in ("StudyInstanceUID", *EMPTY_IF_ABSENT):
        setattr(structure_set, keyword, first.get(keyword, ""))
    images = []
    for source in sources:
        image = Dataset()
        image.ReferencedSOPClassUID = source.SOPClassUID
        image.ReferencedSOPInstanceUID = source.SOPInstanceUID
        images.append(image)
    series = Dataset()
    series.SeriesInstanceUID = first.SeriesInstanceUID
    series.ContourImageSequence = images
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management, as the standard's example
    study.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study.RTReferencedSeriesSequence = [series]
    frame = Dataset()
    frame.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame.RTReferencedStudySequence = [study]
    structure_set.ReferencedFrameOfReferenceSequence = [frame]
    structure_set.StructureSetROISequence = []
    structure_set.ROIContourSequence = []
    structure_set.RTROIObservationsSequence = []
    return structure_set


def _add_roi(structure_set, number, name, colour, contours_by_slice, sources, algorithm):
    from pydicom.dataset import Dataset
    from pydicom.valuerep import DSfloat

    category, _ = segment_code(name)
    roi = Dataset()
    roi.ROINumber = number
    roi.ReferencedFrameOfReferenceUID = sources[0].FrameOfReferenceUID
    roi.ROIName = str(name)[:64]
    roi.ROIGenerationAlgorithm = "AUTOMATIC"
    roi.ROIGenerationDescription = f"keras-focal {algorithm.version}; model SHA-256 {algorithm.parameters()['model_sha256']}"[:64]
    structure_set.StructureSetROISequence.append(roi)
    contours = []
    for z, slice_contours_ in contours_by_slice:
        image = Dataset()
        image.ReferencedSOPClassUID = sources[z].SOPClassUID
        image.ReferencedSOPInstanceUID = sources[z].SOPInstanceUID
        for contour in slice_contours_:
            item = Dataset()
            item.ContourImageSequence = [image]
            item.ContourGeometricType = "CLOSED_PLANAR"
            item.NumberOfContourPoints = len(contour)
            item.ContourData = [DSfloat(v, auto_format=True) for v in _patient_points(contour, sources[z]).ravel()]
            contours.append(item)
    roi_contour = Dataset()
    roi_contour.ROIDisplayColor = list(colour)
    roi_contour.ReferencedROINumber = number
    roi_contour.ContourSequence = contours
    structure_set.ROIContourSequence.append(roi_contour)
    observation = Dataset()
    observation.ObservationNumber = number
    observation.ReferencedROINumber = number
    observation.RTROIInterpretedType = "ORGAN" if category == _ANATOMY else ""
    observation.ROIInterpreter = ""
    structure_set.RTROIObservationsSequence.append(observation)


def write_structure_set(
    path: PathLike, labels: ArrayLike, class_names: ClassNames, sources: Sequence[pydicom.Dataset],
    algorithm: AlgorithmInfo,
) -> None:
    """Writes an RTSTRUCT of `labels` on the images `sources`: one ROI per foreground class, closed planar contours.

    Args:
        path: the file to write.
        labels: class indices `(z, y, x)`, slice z on `sources[z]`.
        class_names: the classes; every class but the background becomes an ROI, numbered from 1 in class order,
            coloured as the reports colour it (`class_colours`).
        sources: the series' datasets in slice order (`source_datasets`).
        algorithm: what made the prediction.
    """
    labels = np.asarray(labels)
    names = list(class_names)
    colours = class_colours(names)
    structure_set = _structure_set(sources, algorithm)
    for number, index in enumerate(foreground_classes(names), start=1):
        by_slice = [(z, slice_contours(labels[z] == index)) for z in range(labels.shape[0])]
        _add_roi(structure_set, number, names[index], colours[index], [(z, c) for z, c in by_slice if c], sources, algorithm)
    structure_set.save_as(os.fspath(path), enforce_file_format=True)
