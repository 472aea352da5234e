"""NIfTI files read and written with nibabel: the whole file checked, the grid from the header's own transform.

SimpleITK reads a truncated `.nii.gz` as zeros without an error, takes an
sform-only file's scales for spacing 1/1/1 (with a warning on stderr only),
and writes one transform back for both of the header's. nibabel is the
reference for NIfTI: this module reads the file through it and converts its
affine (RAS+) to SimpleITK's terms (LPS: spacing, origin, direction), and
writes a label or probability volume with the input's own header, qform and
sform with their codes.

Which transform gives the grid is nibabel's (and the NIfTI standard's) rule:
the sform when its code is set, else the qform when its code is set, else the
voxel sizes alone. When both codes are set and the transforms disagree, a
note says by how much and that the sform was used; every command reads
through `read_nifti`, so `prep`, `predict` and the metrics use the same grid.
"""

from __future__ import annotations

import collections
import gzip
import os
import struct
import zlib
from typing import Any

import numpy as np

from keras_focal.data_prep.errors import CaseError
from keras_focal.types import ArrayLike, PathLike

# A point moved by less than this between the qform and the sform is rounding (the qform is stored as float32
# quaternions), not a disagreement worth a note.
TRANSFORM_TOLERANCE_MM = 1e-3
# Largest |cosine| between two voxel axes that still counts as orthogonal; a sheared transform has no spacing and
# direction to express it in.
SHEAR_TOLERANCE = 1e-4

XFORM_CODES = {0: "unknown", 1: "scanner", 2: "aligned", 3: "Talairach", 4: "MNI", 5: "template"}
# Leading bytes of the formats a mis-named file most often holds, for the message that names what it is.
_SIGNATURES = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"NRRD", "an NRRD file"),
               (b"ObjectType", "a MetaImage header"), (b"NDims", "a MetaImage header"), (b"PK\x03\x04", "a ZIP archive"))
_LPS = np.diag([-1.0, -1.0, 1.0])  # NIfTI's RAS+ world to ITK's LPS+ world


def is_nifti_path(path: PathLike) -> bool:
    return str(path).lower().endswith((".nii", ".nii.gz"))


def _what_it_holds(data):
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "a DICOM file"
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    return None


def _header_size(data):
    """The first field of a NIfTI header, read in either byte order: 348 (NIfTI-1), 540 (NIfTI-2), or None."""
    sizes = {struct.unpack("<i", data[:4])[0], struct.unpack(">i", data[:4])[0]} & {348, 540}
    return sizes.pop() if sizes else None


def _check_header_size(path: str, data):
    """Raises `CaseError` naming what `data` holds unless it starts with a NIfTI header size."""
    if _header_size(data) is None:
        held = _what_it_holds(data)
        raise CaseError(f"'{path}' is not a NIfTI file" + (f": it holds {held}" if held else
                        " (its first field is not NIfTI-1's header size 348 or NIfTI-2's 540)") + ".")


def nifti_bytes(path: PathLike, data: bytes | None = None) -> bytes:
    """The decompressed bytes of a NIfTI file, the gzip stream read to its end (CRC and length checked).

    Raises:
        CaseError: not gzip where the name says `.gz`, truncated, corrupt,
            or not a NIfTI-1/-2 single file; the message names the file.
    """
    path = os.fspath(path)
    path = str(path)
    if data is None:
        with open(path, "rb") as handle:
            data = handle.read()
    if path.lower().endswith(".gz"):
        if data[:2] != b"\x1f\x8b":
            held = _what_it_holds(data)
            raise CaseError(f"'{path}' is not gzip-compressed"
                            + (f": it holds {held}" if held else f" (it starts with {data[:4]!r})")
                            + "; a .nii.gz file must be.")
        try:
            data = gzip.decompress(data)  # every member to its end: CRC-32 and length are checked
        except EOFError:
            raise CaseError(f"'{path}' is truncated: its gzip stream ends before the end-of-stream marker "
                            f"({len(data)} bytes on disk).") from None
        except (gzip.BadGzipFile, zlib.error, OSError) as error:
            raise CaseError(f"'{path}' is corrupt: its gzip stream does not decompress ({error}).") from None
    if len(data) < 348:
        raise CaseError(f"'{path}' holds {len(data)} bytes, fewer than a NIfTI header (348).")
    _check_header_size(path, data)
    return data


def check_nifti_start(path: PathLike) -> None:
    """The cheap part of `nifti_bytes`, for a header-only pre-flight: gzip where named so, a NIfTI header size first."""
    path = os.fspath(path)
    path = str(path)
    with open(path, "rb") as handle:
        start = handle.read(512)
    if path.lower().endswith(".gz"):
        if start[:2] != b"\x1f\x8b":
            nifti_bytes(path, start)  # raises, naming what the file holds
        try:
            with gzip.open(path, "rb") as handle:
                start = handle.read(512)
        except (EOFError, OSError, zlib.error) as error:
            raise CaseError(f"'{path}' is corrupt: its gzip stream does not decompress ({error}).") from None
    if len(start) >= 4:
        _check_header_size(path, start)


def _image_of(path: str, data):
    import nibabel as nib

    kind = nib.Nifti1Image if _header_size(data) == 348 else nib.Nifti2Image
    try:
        image = kind.from_bytes(data)
    except Exception as error:  # nibabel raises several types for a header it cannot use
        raise CaseError(f"'{path}' has a NIfTI header nibabel cannot read: {error}") from None
    header = image.header
    if header["magic"].item() not in (b"n+1", b"n+2"):
        raise CaseError(f"'{path}' is the header of a NIfTI pair (.hdr/.img, magic {header['magic'].item()!r}); "
                        "give a single-file .nii or .nii.gz.")
    itemsize = header.get_data_dtype().itemsize
    # vox_offset of a single file (nibabel's get_data_offset is 0 for an image made from bytes); 0 means right after
    # the header and its 4 extension bytes
    offset = int(header["vox_offset"]) or (352 if kind is nib.Nifti1Image else 544)
    needed = offset + int(np.prod(image.shape, dtype=np.int64)) * itemsize
    if len(data) < needed:
        raise CaseError(f"'{path}' is truncated: its header promises {needed} bytes ({' x '.join(map(str, image.shape))} "
                        f"voxels of {header.get_data_dtype()} from byte {offset}), "
                        f"the {'decompressed ' if path.lower().endswith('.gz') else ''}file holds {len(data)}.")
    return image


def _grid(path: str, image: ArrayLike, notes):
    """SimpleITK's spacing, origin and direction of the transform nibabel uses, with a note where the header is ambiguous."""
    header = image.header
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    affine = image.affine  # sform if its code is set, else qform if set, else pixdim: NIfTI's and nibabel's rule
    shape = tuple(image.shape[:3]) + (1,) * max(0, 3 - len(image.shape))
    if qform is not None and sform is not None:
        corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
        moved = float(np.max(np.linalg.norm((corners @ qform.T - corners @ sform.T)[:, :3], axis=1)))
        if moved > TRANSFORM_TOLERANCE_MM:
            notes.append(f"'{path}': its qform (code {int(qcode)}, {XFORM_CODES.get(int(qcode), '?')}) and sform (code "
                         f"{int(scode)}, {XFORM_CODES.get(int(scode), '?')}) disagree, by up to {moved:.3g} mm at the "
                         "volume's corners; the sform gives the grid (NIfTI's rule, as nibabel reads it), in prep, "
                         "predict and the metrics alike, and both are written back unchanged")
    elif qform is None and sform is None:
        notes.append(f"'{path}': neither qform nor sform is set (codes 0): the grid has the header's voxel sizes and "
                     "no orientation")
    matrix = _LPS @ affine[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    if np.any(spacing <= 0) or not np.all(np.isfinite(affine)):
        raise CaseError(f"'{path}': its {'sform' if sform is not None else 'qform'} gives a voxel size of "
                        f"{', '.join(f'{v:.4g}' for v in spacing)} mm; a volume needs positive, finite voxel sizes.")
    direction = matrix / spacing
    cosines = direction.T @ direction - np.eye(3)
    if np.max(np.abs(cosines)) > SHEAR_TOLERANCE:
        angle = np.degrees(np.arccos(min(1.0, float(np.max(np.abs(cosines))))))
        raise CaseError(f"'{path}': its {'sform' if sform is not None else 'qform'} shears the voxel grid (two axes "
                        f"meet at {angle:.3g}° instead of 90°); a grid of spacing, origin and direction cannot "
                        "hold it. Resample the file onto an orthogonal grid first.")
    origin = _LPS @ affine[:3, 3]
    return (tuple(float(v) for v in spacing), tuple(float(v) for v in origin),
            tuple(float(v) for v in direction.reshape(-1)))


NiftiContents = collections.namedtuple("NiftiContents", "array spacing origin direction notes header")


def read_nifti(path: PathLike) -> NiftiContents:
    """A NIfTI-1/-2 file's `NiftiContents`: every byte checked, voxels scaled by the header, the grid nibabel reads.

    `array` follows `read_volume`: `(z, y, x)` for a 3-D file, `(z, y, x,
    channels)` for a 4-D one (or a 5-D vector image); a 2-D file is one
    slice. `spacing`, `origin`, `direction` are SimpleITK's (LPS); `notes`
    say where the header is ambiguous; `header` is nibabel's, for
    `write_nifti_like`.

    Raises:
        CaseError: the file is missing, truncated, corrupt, not NIfTI, a
            .hdr/.img pair, sheared, or of an unsupported dimension.
    """
    path = os.fspath(path)
    path = str(path)
    if not os.path.isfile(path):
        raise CaseError(f"'{path}' does not exist.")
    data = nifti_bytes(path)
    image = _image_of(path, data)
    notes = []
    spacing, origin, direction = _grid(path, image, notes)
    slope, intercept = image.header.get_slope_inter()
    array = np.asanyarray(image.dataobj)  # scl_slope/scl_inter applied where set (then floating point)
    if slope is not None and array.dtype == np.float64 and image.header.get_data_dtype() != np.float64:
        array = array.astype(np.float32)  # as SimpleITK gives a scaled integer file
    shape = array.shape
    if array.ndim == 5 and shape[3] == 1:  # a vector image (SimpleITK's and ITK-SNAP's layout): x, y, z, 1, components
        array = array[:, :, :, 0, :]
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim == 3:
        array = np.ascontiguousarray(array.transpose(2, 1, 0))
    elif array.ndim == 4:
        array = np.ascontiguousarray(array.transpose(2, 1, 0, 3))
    else:
        raise CaseError(f"'{path}' is {len(shape)}-D {shape}; expected a 3-D volume (or a 4-D one of channels).")
    return NiftiContents(array, spacing, origin, direction, notes, image.header)


def write_nifti_like(array: ArrayLike, header: Any, path: PathLike, is_vector: bool = False) -> None:
    """Writes `array` (`(z, y, x)`, or `(z, y, x, components)` with `is_vector`) to `path` with `header`'s grid.

    The qform and sform and their codes, the units and the voxel sizes are
    the input's; the data type is the array's, unscaled. A vector is stored
    as SimpleITK stores one (x, y, z, 1, components, intent "vector").
    """
    import nibabel as nib

    array = np.asarray(array)
    data = array.transpose(2, 1, 0, 3)[:, :, :, None, :] if is_vector else array.transpose(2, 1, 0)
    kind = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    out = kind(data, None, header=header.copy())
    qform, qcode = header.get_qform(coded=True)
    sform, scode = header.get_sform(coded=True)
    out.set_qform(qform if qform is not None else header.get_qform(), code=int(qcode))
    out.set_sform(sform if sform is not None else header.get_sform(), code=int(scode))
    out.header.set_data_dtype(array.dtype)
    out.header.set_slope_inter(1.0, 0.0)
    out.header.set_intent("vector" if is_vector else "none", (), name="")
    out.header["descrip"] = b"keras-focal"
    out.header["cal_min"] = out.header["cal_max"] = 0
    nib.save(out, str(path))
