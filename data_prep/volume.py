"""3-D volumes with their geometry: NIfTI read with nibabel, the other formats with SimpleITK, every file checked whole."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from keras_focal.data_prep import file_checks, nifti
from keras_focal.data_prep.errors import CaseError
from keras_focal.files import replacing
from keras_focal.types import ArrayLike, PathLike

if TYPE_CHECKING:
    import SimpleITK as sitk


@dataclasses.dataclass
class Volume:
    """A volume as NumPy `(z, y, x)` (or `(z, y, x, channels)`) plus its geometry.

    Attributes:
        array: voxel values, slices along the first axis (the acquisition axis).
        spacing: voxel size `(x, y, z)` in mm (SimpleITK's order).
        origin: position of the first voxel, mm.
        direction: 3x3 direction cosines, row-major (SimpleITK's layout).
        source: the file or folder read.
        notes: warnings met while reading (kept in the manifest).
        frame_of_reference: the DICOM FrameOfReferenceUID of a series (None
            for other formats): a DICOM SEG or RTSTRUCT must share it.
        nifti_header: the nibabel header of a NIfTI file (None for other
            formats): `write_volume_like` writes its qform and sform back.
    """

    array: np.ndarray
    spacing: tuple
    origin: tuple = (0.0, 0.0, 0.0)
    direction: tuple = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    source: str = ""
    notes: list = dataclasses.field(default_factory=list)
    frame_of_reference: str | None = None
    nifti_header: object = dataclasses.field(default=None, repr=False)

    @property
    def channels(self) -> int:
        """Values per voxel: 1 for a `(z, y, x)` array, else the length of its last axis."""
        return 1 if self.array.ndim == 3 else int(self.array.shape[-1])

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """The voxel size in the array's `(z, y, x)` order (what `volume_metrics` takes)."""
        return tuple(self.spacing[::-1])

    def geometry(self) -> Geometry:
        """The volume's grid as a JSON-ready dict (`Geometry.to_dict`)."""
        return Geometry(tuple(int(n) for n in self.array.shape[:3][::-1]), self.spacing, self.origin, self.direction)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """A volume's grid in SimpleITK's terms: where each voxel of a `(z, y, x)` array lies in the patient.

    Attributes:
        size: `(x, y, z)` voxels.
        spacing: `(x, y, z)` mm.
        origin: the first voxel's centre, mm.
        direction: 3x3 direction cosines, row-major.
    """

    size: tuple
    spacing: tuple
    origin: tuple = (0.0, 0.0, 0.0)
    direction: tuple = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def to_dict(self) -> dict:
        return {k: [float(v) for v in getattr(self, k)] if k != "size" else [int(v) for v in self.size]
                for k in ("size", "spacing", "origin", "direction")}

    @classmethod
    def from_dict(cls, record: dict) -> Geometry:
        return cls(tuple(int(v) for v in record["size"]), tuple(float(v) for v in record["spacing"]),
                   tuple(float(v) for v in record["origin"]), tuple(float(v) for v in record["direction"]))

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """The voxel size in a NumPy array's `(z, y, x)` order."""
        return tuple(self.spacing[::-1])

    @property
    def shape(self) -> tuple[int, int, int]:
        """The `(z, y, x)` NumPy shape of a scalar array on this grid."""
        return tuple(self.size[::-1])

    def image(self, array: ArrayLike, is_vector: bool = False) -> sitk.Image:
        """A SimpleITK image of `array` (`(z, y, x)`, or `(z, y, x, components)` with `is_vector`) on this grid."""
        import SimpleITK as sitk

        array = np.asarray(array)
        if array.shape[:3] != self.shape:
            raise ValueError(f"an array of shape {array.shape} does not fit the grid of (z, y, x) size {self.shape}.")
        image = sitk.GetImageFromArray(array, isVector=is_vector)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image


def write_image_atomically(image: ArrayLike, path: PathLike) -> None:
    """Writes a SimpleITK image to `path` (format from its extension) through a temporary file renamed into place.

    One-file formats only (`.nii.gz`, `.nii`, `.mha`, `.nrrd`): a `.mhd`
    header and its data file could not be replaced together.
    """
    import SimpleITK as sitk

    if not str(path).lower().endswith(VOLUME_OUTPUT_FORMATS):
        raise ValueError(f"'{path}': write a volume as one of {', '.join(VOLUME_OUTPUT_FORMATS)} (a single file).")
    with replacing(str(path)) as temporary:  # the temporary name keeps the extension, which sets the format
        sitk.WriteImage(image, temporary, useCompression=True)


def write_volume_like(volume: Volume, array: ArrayLike, path: PathLike, is_vector: bool = False) -> None:
    """Writes `array` on `volume`'s grid to `path` atomically, in the format its extension names.

    A NIfTI output of a NIfTI input carries the input's header: its qform and
    sform with their codes, exactly (`nifti.write_nifti_like`). Other outputs
    carry the grid as spacing, origin and direction (SimpleITK).
    """
    if volume.nifti_header is not None and nifti.is_nifti_path(path):
        with replacing(str(path)) as temporary:
            nifti.write_nifti_like(array, volume.nifti_header, temporary, is_vector)
        return
    write_image_atomically(volume.geometry().image(array, is_vector=is_vector), path)


VOLUME_OUTPUT_FORMATS = (".nii.gz", ".nii", ".mha", ".nrrd")
# The volume files a folder of cases may hold (`prep volumes`, `keras-focal predict`).
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")


def strip_volume_suffix(name: str) -> str:
    """A volume file's name without its (possibly double) extension: `Case01.nii.gz` -> `Case01`."""
    lower = name.lower()
    for suffix in VOLUME_SUFFIXES + (".dcm",):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return os.path.splitext(name)[0]


def read_volume(path: PathLike) -> Volume:
    """Reads any volume SimpleITK reads (MetaImage, NRRD, NIfTI, a DICOM file...).

    A scalar 3-D image gives a `(z, y, x)` array. A 4-D image, one volume
    per index of its fourth axis (the Decathlon's multi-modal NIfTI: T2 and
    ADC), and an image with several components per voxel give `(z, y, x,
    channels)`: every channel is kept, each on the grid of the first three
    axes, and the caller decides whether it takes several (`Volume.channels`).
    A 4-D image of one volume (some PROMISE12 files) is read as 3-D. A 2-D
    image is one slice.

    Every file is checked whole before a voxel is used
    (`keras_focal.data_prep.file_checks`): a truncated or corrupt file is a
    `CaseError`, never zeros. NIfTI is read by nibabel (`nifti.read_nifti`:
    the gzip stream to its end, the header's size, the grid of its sform or
    qform as nibabel reads it; the header is kept in `Volume.nifti_header`).

    Raises:
        CaseError: the file is missing, truncated, corrupt, unreadable, or
            not 2-D to 4-D; the message names the file and the cause.
    """
    import SimpleITK as sitk

    path = str(path)
    if not os.path.isfile(path):
        raise CaseError(f"'{path}' does not exist.")
    if nifti.is_nifti_path(path):
        contents = nifti.read_nifti(path)
        return Volume(array=contents.array, spacing=contents.spacing, origin=contents.origin,
                      direction=contents.direction, source=path, notes=list(contents.notes),
                      nifti_header=contents.header)
    file_checks.check_volume_file(path)
    try:
        image = sitk.ReadImage(path)
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise CaseError(f"SimpleITK cannot read '{path}': {first_line}") from None
    dimension = image.GetDimension()
    if dimension == 4:
        size = list(image.GetSize())
        # Extract keeps the first three axes' spacing, origin and direction for each volume of the fourth.
        volumes = [sitk.Extract(image, size[:3] + [0], [0, 0, 0, index]) for index in range(size[3])]
        image = volumes[0]
        array = sitk.GetArrayFromImage(image)
        if len(volumes) > 1:
            array = np.stack([array] + [sitk.GetArrayFromImage(v) for v in volumes[1:]], axis=-1)
    elif dimension in (2, 3):
        if dimension == 2:
            image = sitk.JoinSeries(image)
        array = sitk.GetArrayFromImage(image)  # (z, y, x), or (z, y, x, components) for a vector image
        if array.ndim == 4 and array.shape[-1] == 1:
            array = array[..., 0]
    else:
        raise CaseError(f"'{path}' is {dimension}-D; expected a 3-D volume (or a 4-D one of channels).")
    return Volume(
        array=array,
        spacing=tuple(float(v) for v in image.GetSpacing()),
        origin=tuple(float(v) for v in image.GetOrigin()),
        direction=tuple(float(v) for v in image.GetDirection()),
        source=path,
    )


def read_header(path: PathLike, what: str = "a volume SimpleITK can read") -> sitk.ImageFileReader:
    """A SimpleITK `ImageFileReader` that has read the header of `path` (no voxels).

    Raises:
        CaseError: the file is missing, or not `what` (its error's last line quoted).
    """
    import SimpleITK as sitk

    path = str(path)
    if not os.path.isfile(path):
        raise CaseError(f"'{path}' does not exist.")
    if nifti.is_nifti_path(path):
        nifti.check_nifti_start(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        last = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise CaseError(f"'{path}' is not {what}: {last}") from None
    return reader


def header_channels(reader: sitk.ImageFileReader) -> int:
    """Values per voxel of a read header: a 4-D image's fourth size times its components."""
    return (reader.GetSize()[3] if reader.GetDimension() == 4 else 1) * reader.GetNumberOfComponents()


def volume_channels(path: PathLike) -> int:
    """Channels of the volume file at `path` from its header alone (`read_header`, `header_channels`)."""
    return header_channels(read_header(path))


def stack_channels(volumes: Sequence[Volume], names: Sequence[str], what: str) -> Volume:
    """One `(z, y, x, channels)` `Volume` of co-registered scalar volumes (an nnU-Net case's `_0000`, `_0001`... files).

    Raises:
        CaseError: a channel is not a scalar 3-D volume, or its grid differs
            from the first channel's (the message names the channel and file).
    """
    first = volumes[0]
    for volume, name in zip(volumes, names):
        if volume.array.ndim != 3:
            raise CaseError(f"{what}: channel {name!r} '{volume.source}' holds {volume.channels} channels; each channel "
                            "file must be one scalar 3-D volume.")
        if volume is not first:
            try:
                check_same_grid(first, volume, f"channel {names[0]!r} and channel {name!r}")
            except CaseError as error:
                raise CaseError(f"{what}: {error} ('{first.source}', '{volume.source}')") from None
    return Volume(
        array=np.stack([v.array for v in volumes], axis=-1),
        spacing=first.spacing,
        origin=first.origin,
        direction=first.direction,
        source=first.source,
        notes=[note for v in volumes for note in v.notes],
        nifti_header=first.nifti_header,
    )


def check_same_grid(image: ArrayLike, mask: ArrayLike, what: str = "image and mask") -> None:
    """Raises `CaseError` unless `image` and `mask` share size, spacing, origin and direction.

    Tolerances: 1e-3 relative on spacing, 1e-2 mm (plus 1e-3 of a voxel
    size) on the origin, 1e-3 on the direction cosines, enough for values
    rounded in headers and DICOM decimal strings.
    """
    image_size, mask_size = image.array.shape[:3], mask.array.shape[:3]
    if image_size != mask_size:
        raise CaseError(f"{what} differ in size: (z, y, x) {image_size} vs {mask_size}.")
    if not np.allclose(image.spacing, mask.spacing, rtol=1e-3, atol=1e-6):
        raise CaseError(f"{what} differ in spacing: {_fmt(image.spacing)} vs {_fmt(mask.spacing)} mm.")
    tolerance = 1e-2 + 1e-3 * max(image.spacing)
    if not np.allclose(image.origin, mask.origin, rtol=0, atol=tolerance):
        raise CaseError(f"{what} differ in origin: {_fmt(image.origin)} vs {_fmt(mask.origin)} mm.")
    if not np.allclose(image.direction, mask.direction, rtol=0, atol=1e-3):
        raise CaseError(f"{what} differ in direction: {_fmt(image.direction)} vs {_fmt(mask.direction)}.")


def _fmt(values):
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
