"""Integrity checks of volume and image files, made before a voxel is used.

ITK reads a MetaImage whose data are short or corrupt without raising an
error it can name: a short file is "No such file or directory", a corrupt
zlib stream prints "Uncompress failed" to stdout and returns the volume
anyway, and a longer data file is read from its start. These checks read the
header, then the data it names, and raise a `CaseError` naming the file, the
sizes and the cause. NRRD's reader (teem) already refuses a short or corrupt
stream; its detached data file is checked to exist first, so the message
names it. NIfTI is checked by `keras_focal.data_prep.nifti` (the gzip
stream to its end, the header's data size), DICOM by pydicom
(`dicom.read_dicom_header`, `dicom._pixels`), and 2-D images by Pillow
through `read_image_file` and `decoded`, which name the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from keras_focal.data_prep.errors import CaseError
from keras_focal.types import PathLike

# Bytes per element of the MetaImage element types whose size is fixed.
MET_SIZES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}
_FIELD = re.compile(rb"^[ \t]*(\w+)[ \t]*=[ \t]*(.*?)[ \t]*\r?$", flags=re.MULTILINE)


def _metaimage_header(path: str):
    """`(fields, data_offset)`: a MetaImage header's fields and where a LOCAL file's data start.

    The header ends with its `ElementDataFile` line (MetaImage's rule); the
    data of a `.mha` start on the next byte.
    """
    with open(path, "rb") as handle:
        head = handle.read(65536)
    fields, offset = {}, None
    for match in _FIELD.finditer(head):
        key = match.group(1).decode("latin-1")
        fields[key] = match.group(2).decode("latin-1")
        if key == "ElementDataFile":
            end = head.find(b"\n", match.end())
            offset = len(head) if end < 0 else end + 1
            break
    if offset is None:
        raise CaseError(f"'{path}' is not a MetaImage header: it has no ElementDataFile line.")
    return fields, offset


def _expected_bytes(fields):
    """`(bytes, description)` of the voxel data a MetaImage header describes, or None when it cannot be told."""
    element_type = fields.get("ElementType", "")
    try:
        dimensions = [int(v) for v in fields.get("DimSize", "").split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
    except ValueError:
        return None  # ITK reports malformed fields itself
    if element_type not in MET_SIZES or not dimensions:
        return None
    expected = int(np.prod(dimensions)) * channels * MET_SIZES[element_type]
    return expected, (f"DimSize {' x '.join(map(str, dimensions))}"
                      + (f" x {channels} channels" if channels != 1 else "")
                      + f" of {element_type} ({MET_SIZES[element_type]} byte(s) each) = {expected} bytes")


def _check_zlib_stream(data_path, start, compressed_size, expected, header_path):
    """Decompresses a MetaImage's zlib stream to its end (Adler-32 checked) and compares its length with the header's."""
    decompressor = zlib.decompressobj()
    produced = 0
    with open(data_path, "rb") as handle:
        handle.seek(start)
        remaining = compressed_size
        try:
            while not decompressor.eof:
                chunk = handle.read(1 << 20 if remaining is None else min(1 << 20, remaining))
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                produced += len(decompressor.decompress(chunk))
            produced += len(decompressor.flush())
        except zlib.error as error:
            raise CaseError(f"'{data_path}' is corrupt: its compressed voxel data do not decompress ({error}).") from None
    if not decompressor.eof:
        raise CaseError(f"'{data_path}' is truncated: its compressed voxel data end before the end of the zlib stream "
                        f"({produced} of the {expected} bytes its header '{header_path}' describes).")
    if expected is not None and produced != expected[0]:
        raise CaseError(f"'{data_path}' decompresses to {produced} bytes, but its header '{header_path}' gives {expected[1]}.")


def check_metaimage(path: PathLike) -> None:
    """Checks a `.mha` or `.mhd` file: its data (in the file or the data file it names) hold what the header says.

    Raw data must have exactly the header's size (plus `HeaderSize`);
    compressed data must decompress to its end and to that size.

    Raises:
        CaseError: no header, a missing data file, truncated, longer than
            described, or a corrupt compressed stream.
    """
    path = os.fspath(path)
    fields, offset = _metaimage_header(path)
    data_file = fields.get("ElementDataFile", "")
    if data_file.upper() == "LOCAL":
        data_path, start = path, offset
    elif data_file.upper() == "LIST" or "%" in data_file:
        return  # one file per slice: ITK names a missing one itself
    else:
        data_path, start = os.path.join(os.path.dirname(path), data_file), 0
        if not os.path.isfile(data_path):
            raise CaseError(f"'{path}' names the data file '{data_file}', which is missing.")
    actual = os.path.getsize(data_path) - start
    expected = _expected_bytes(fields)
    if fields.get("CompressedData", "False").lower() == "true":
        declared = fields.get("CompressedDataSize", "")
        if declared.isdigit() and int(declared) > actual:
            raise CaseError(f"'{data_path}' is truncated: {actual} bytes of compressed voxel data, but its header "
                            f"'{path}' gives CompressedDataSize = {declared}.")
        if declared.isdigit() and data_file.upper() != "LOCAL" and int(declared) != actual:
            raise CaseError(f"'{data_path}' holds {actual} bytes, but its header '{path}' gives CompressedDataSize = {declared}.")
        _check_zlib_stream(data_path, start, int(declared) if declared.isdigit() else None, expected, path)
        return
    if expected is None:
        return
    needed, described = expected
    try:
        header_size = int(fields.get("HeaderSize", "0"))
    except ValueError:
        header_size = 0
    if header_size == -1:  # the data are the file's last bytes
        if actual < needed:
            raise CaseError(f"'{data_path}' holds {actual} bytes, fewer than its header '{path}' needs: {described}.")
        return
    needed += max(header_size, 0)
    if actual != needed:
        what = "is truncated" if actual < needed else "holds more bytes than its header describes"
        raise CaseError(
            f"'{data_path}' {what}: {actual} bytes"
            + (" of voxel data after the header" if data_file.upper() == "LOCAL" else "")
            + f", but its header '{path}' gives {described}"
            + (f" plus a {header_size}-byte header" if header_size > 0 else "")
            + "."
        )


def check_nrrd(path: PathLike) -> None:
    """Checks that a detached NRRD header's data file exists (teem checks the data's size and stream itself)."""
    with open(path, "rb") as handle:
        head = handle.read(65536)
    if not head.startswith(b"NRRD"):
        raise CaseError(f"'{path}' is not an NRRD file (it does not start with 'NRRD').")
    match = re.search(rb"^data ?file:[ \t]*(.+?)[ \t]*\r?$", head, flags=re.MULTILINE)
    if match is None:
        return
    data_file = match.group(1).decode("latin-1")
    if data_file.upper().startswith("LIST") or "%" in data_file:
        return
    if not os.path.isfile(os.path.join(os.path.dirname(path), data_file)):
        raise CaseError(f"'{path}' names the data file '{data_file}', which is missing.")


@contextlib.contextmanager
def read_image_file(path: PathLike) -> Iterator[Any]:
    """A PIL image of a 2-D image file (PNG, JPEG, TIFF...), opened with its failures named.

    Pillow refuses a truncated file and a PNG chunk whose CRC fails once the
    pixels are decoded (`decoded`); its `LOAD_TRUNCATED_IMAGES` stays off.

    Raises:
        CaseError: the file is missing or not an image Pillow reads.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
    except FileNotFoundError:
        raise CaseError(f"'{path}' does not exist.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise CaseError(f"'{path}' is not an image file that can be read ({error}).") from None
    with image:
        yield image


def decoded(path: PathLike, decode: Callable[[], Any]) -> Any:
    """`decode()` (which reads a `read_image_file` image's pixels), a truncated or corrupt file named as such."""
    try:
        return decode()
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise CaseError(f"'{path}' is truncated or corrupt: its pixels cannot be decoded ({error}).") from None


def check_volume_file(path: PathLike) -> None:
    """The integrity checks of `path`'s format that SimpleITK does not make (see the module's docstring)."""
    lower = str(path).lower()
    if lower.endswith((".mha", ".mhd")):
        check_metaimage(path)
    elif lower.endswith((".nrrd", ".nhdr")):
        check_nrrd(path)
