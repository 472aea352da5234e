"""Reading volumes with SimpleITK and checking image/mask grids."""

import re

import numpy as np
import pytest
import SimpleITK as sitk

from keras_focal.data_prep.volume import CaseError, Volume, check_same_grid, read_volume


def _write(path, array, spacing=(0.5, 0.5, 3.0), origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return str(path)


def test_reads_zyx_with_geometry(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    volume = read_volume(_write(tmp_path / "a.mhd", array, origin=(1.0, 2.0, 3.0)))
    np.testing.assert_array_equal(volume.array, array)
    assert volume.spacing == (0.5, 0.5, 3.0) and volume.origin == (1.0, 2.0, 3.0)
    assert (tmp_path / "a.raw").exists() and volume.notes == []


def test_four_d_keeps_every_channel_on_the_first_three_axes(tmp_path):
    # Issue 27: the old reader kept the first component with a note, dropping a Decathlon prostate's ADC.
    frames = [np.full((2, 3, 4), v, np.int16) for v in (7, 9)]
    volumes = [sitk.GetImageFromArray(f) for f in frames]
    for volume in volumes:
        volume.SetSpacing((0.5, 0.6, 3.0))
        volume.SetOrigin((1.0, 2.0, 3.0))
    sitk.WriteImage(sitk.JoinSeries(volumes), str(tmp_path / "Case07.nii.gz"))
    volume = read_volume(tmp_path / "Case07.nii.gz")
    assert volume.array.shape == (2, 3, 4, 2) and volume.channels == 2
    assert np.all(volume.array[..., 0] == 7) and np.all(volume.array[..., 1] == 9)
    np.testing.assert_allclose(volume.spacing, (0.5, 0.6, 3.0))
    np.testing.assert_allclose(volume.origin, (1.0, 2.0, 3.0))
    assert volume.geometry().size == (4, 3, 2)


def test_four_d_of_one_volume_is_three_d(tmp_path):
    sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(np.full((2, 3, 4), 7, np.int16))]), str(tmp_path / "Case07.mhd"))
    volume = read_volume(tmp_path / "Case07.mhd")
    assert volume.array.shape == (2, 3, 4) and volume.channels == 1 and np.all(volume.array == 7)


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing_raw", r"names the data file 'Case01.raw', which is missing"),
        ("missing_file", r"does not exist"),
        ("garbage", r"Case01\.nrrd' is not an NRRD file \(it does not start with 'NRRD'\)"),
        ("bad_nrrd_field", r"SimpleITK cannot read '.*Case01\.nrrd'"),
        ("no_data_line", r"has no ElementDataFile line"),
        # ITK used to read the first 8 bytes silently, and to call a short file "No such file or directory".
        ("longer_raw", r"Case01\.raw' holds more bytes than its header describes: 12 bytes, but its header "
                       r"'.*Case01\.mhd' gives DimSize 2 x 2 x 2 of MET_UCHAR \(1 byte\(s\) each\) = 8 bytes\."),
        ("truncated_raw", r"Case01\.raw' is truncated: 5 bytes, but its header '.*Case01\.mhd' gives DimSize 2 x 2 x 2 "
                          r"of MET_UCHAR \(1 byte\(s\) each\) = 8 bytes\."),
        ("compressed_size", r"Case01\.zraw' holds \d+ bytes, but its header '.*Case01\.mhd' gives CompressedDataSize = 3\."),
    ],
)
def test_unreadable_inputs(tmp_path, setup, message):
    path = tmp_path / "Case01.mhd"
    if setup == "missing_raw":
        _write(path, np.zeros((2, 2, 2), np.uint8))
        (tmp_path / "Case01.raw").unlink()
    elif setup == "garbage":
        path = tmp_path / "Case01.nrrd"
        path.write_bytes(b"\x00\x01 not an image")
    elif setup == "bad_nrrd_field":
        path = tmp_path / "Case01.nrrd"
        path.write_bytes(b"NRRD0004\ntype: nonsense\ndimension: 3\n\n")
    elif setup == "no_data_line":
        path.write_text("ObjectType = Image\nNDims = 3\n")
    elif setup in ("longer_raw", "truncated_raw"):
        _write(path, np.zeros((2, 2, 2), np.uint8))
        raw = tmp_path / "Case01.raw"
        raw.write_bytes(raw.read_bytes() + b"more" if setup == "longer_raw" else raw.read_bytes()[:5])
    elif setup == "compressed_size":
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 2, 2), np.uint8)), str(path), True)
        path.write_text(re.sub(r"CompressedDataSize = \d+", "CompressedDataSize = 3", path.read_text()))
    with pytest.raises(CaseError, match=message):
        read_volume(path)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"array": np.zeros((2, 3, 5))}, r"differ in size: \(z, y, x\) \(2, 3, 4\) vs \(2, 3, 5\)"),
        ({"spacing": (0.5, 0.6, 3.0)}, r"differ in spacing"),
        ({"origin": (0.0, 0.0, 1.0)}, r"differ in origin"),
        ({"direction": (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)}, r"differ in direction"),
    ],
)
def test_grid_mismatch_is_named(change, message):
    image = Volume(np.zeros((2, 3, 4)), spacing=(0.5, 0.5, 3.0))
    fields = {"array": np.zeros((2, 3, 4)), "spacing": (0.5, 0.5, 3.0)} | change
    with pytest.raises(CaseError, match=message):
        check_same_grid(image, Volume(**fields))
    check_same_grid(image, Volume(np.zeros((2, 3, 4)), spacing=(0.5000001, 0.5, 3.0), origin=(0.001, 0, 0)))
