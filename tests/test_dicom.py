"""The DICOM reader on the files pydicom ships and on our synthetic series."""

import os

import numpy as np
import pydicom
import pytest

from keras_focal.data_prep.dicom import read_dicom_volume
from keras_focal.data_prep.volume import CaseError, check_same_grid, read_volume

FILES = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files")


def _path(*parts):
    return os.path.join(FILES, *parts)


def test_single_file_applies_rescale_slope_and_intercept():
    volume = read_dicom_volume(_path("CT_small.dcm"))
    raw = pydicom.dcmread(_path("CT_small.dcm")).pixel_array
    assert volume.array.shape == (1, 128, 128)
    np.testing.assert_array_equal(volume.array[0], raw.astype(np.float32) * 1.0 - 1024.0)
    assert volume.spacing[:2] == pytest.approx((0.661468, 0.661468))


def test_series_sorted_along_the_slice_normal():
    """CT5N: InstanceNumber rises while z falls; the volume runs along +normal."""
    folder = _path("dicomdirtests", "98892001", "CT5N")
    volume = read_dicom_volume(folder)
    headers = sorted((pydicom.dcmread(os.path.join(folder, f)) for f in os.listdir(folder)),
                     key=lambda d: float(d.ImagePositionPatient[2]))
    assert volume.array.shape == (5, 16, 16)
    for index, header in enumerate(headers):
        np.testing.assert_array_equal(volume.array[index], header.pixel_array.astype(np.float32) - 1024.0)
    assert volume.spacing[2] == pytest.approx(2.5)
    assert volume.origin[2] == pytest.approx(-1.2375)


def test_gaps_in_slice_positions_are_reported():
    volume = read_dicom_volume(_path("dicomdirtests", "77654033", "CT2"))
    assert volume.array.shape == (4, 16, 16)
    assert volume.spacing[2] == pytest.approx(1.25)
    assert volume.notes == ["uneven slice positions (median step 1.250 mm): -99.48->103.02 mm"]


def test_several_series_need_a_choice():
    folder = _path("dicomdirtests", "98892003", "MR2")
    with pytest.raises(CaseError, match=r"holds 3 series \(pick one with --series\): .*18148\.0\.136 \(SeriesNumber 2, 'T/S/C RF FAST PILOT', 3 files\)"):
        read_dicom_volume(folder)
    volume = read_dicom_volume(folder, series="1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.481")
    assert volume.array.shape == (1, 16, 16)
    with pytest.raises(CaseError, match=r"--series '2' matches 3"):
        read_dicom_volume(folder, series="2")


@pytest.mark.parametrize(
    "name, shape",
    [("rtdose.dcm", (15, 10, 10)), ("SC_rgb_rle_2frame.dcm", (2, 100, 100)), ("MR_small_RLE.dcm", (1, 64, 64))],
)
def test_multi_frame_colour_and_compressed_files(name, shape):
    volume = read_dicom_volume(_path(name))
    assert volume.array.shape == shape and volume.array.dtype == np.float32


def test_multi_frame_positions_from_the_frame_offsets():
    volume = read_dicom_volume(_path("rtdose.dcm"))
    offsets = [float(v) for v in pydicom.dcmread(_path("rtdose.dcm")).GridFrameOffsetVector]
    assert volume.spacing[2] == pytest.approx(np.median(np.diff(offsets)))


def test_colour_frames_become_luma():
    volume = read_dicom_volume(_path("SC_rgb_rle_2frame.dcm"))
    rgb = pydicom.dcmread(_path("SC_rgb_rle_2frame.dcm")).pixel_array.astype(np.float32)
    np.testing.assert_allclose(volume.array, rgb @ np.array([0.299, 0.587, 0.114], np.float32), rtol=1e-6)


@pytest.mark.parametrize(
    "name, message",
    [
        ("no_meta.dcm", r"is not a DICOM file"),
        ("MR_truncated.dcm", r"cannot decode the pixel data of .*MR_truncated\.dcm"),
        ("does_not_exist", r"does not exist"),
    ],
)
def test_bad_files(name, message):
    with pytest.raises(CaseError, match=message):
        read_dicom_volume(_path(name))


def test_synthetic_series_matches_its_mask_grid(ultrasound_source):
    folder = os.path.join(ultrasound_source, "dicom", "TRUS01")
    volume = read_dicom_volume(folder)
    mask = read_volume(os.path.join(ultrasound_source, "masks", "TRUS01.nrrd"))
    check_same_grid(volume, mask)
    assert volume.array.min() >= -10.0 and volume.array.max() <= 255.0  # rescaled to the echo range
    # File names are shuffled; the slices still come out in position order.
    positions = [
        np.dot(np.array(d.ImagePositionPatient, float), np.cross(*np.reshape(np.array(d.ImageOrientationPatient, float), (2, 3))))
        for d in (pydicom.dcmread(os.path.join(folder, f)) for f in sorted(os.listdir(folder)))
    ]
    assert positions != sorted(positions)
    assert volume.notes == []


def test_a_slice_without_image_position_is_named(tmp_path):
    """It used to be placed by InstanceNumber, and the case then failed as an image/mask origin mismatch."""
    import shutil

    folder = tmp_path / "CT5N"
    shutil.copytree(_path("dicomdirtests", "98892001", "CT5N"), folder)
    name = sorted(os.listdir(folder))[2]
    header = pydicom.dcmread(folder / name)
    del header.ImagePositionPatient
    header.save_as(folder / name)
    with pytest.raises(CaseError, match=rf"'{folder / name}' has no ImagePositionPatient \(0020,0032\), which 4 other "
                                        r"slice\(s\) of its series have: its place in the volume is unknown\."):
        read_dicom_volume(str(folder))
