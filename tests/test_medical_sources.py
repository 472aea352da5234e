"""Issue 27: NIfTI, the Decathlon and nnU-Net layouts, multi-channel volumes, named label values, DICOM SEG and RTSTRUCT."""

import json
import os
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from keras_focal.cli import main
from keras_focal.data_prep.dataset import PrepOptions, SourceInfo, prepare_dataset
from keras_focal.data_prep.decathlon import find_msd_cases, find_nnunet_cases, find_volume_pairs
from keras_focal.data_prep.dicom import read_dicom_volume
from keras_focal.data_prep.dicom_labels import label_object_mask
from keras_focal.data_prep.labels import LabelTable
from keras_focal.data_prep.prepared import PreparedDataset
from keras_focal.data_prep.sources import find_dicom_cases
from keras_focal.data_prep.synthetic import ZONE_CLASSES, make_decathlon_like
from keras_focal.data_prep.volume import CaseError, Volume
from tests.prep_fixtures import png

FILES = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files")
ZONES = {"slices_range": (5, 7), "sizes": (96,), "progress": False}


@pytest.fixture(scope="module")
def zones(tmp_path_factory):
    """Four two-zone cases as a Decathlon task and as an nnU-Net data set, each prepared at their native 96²."""
    root = tmp_path_factory.mktemp("zones")
    make_decathlon_like(str(root / "zones"), cases=4, seed=2, **ZONES)
    msd, nnunet = root / "zones" / "msd" / "Task05_Prostate", root / "zones" / "nnunet" / "Dataset005_Prostate"
    for name, finder, folder in (("msd", find_msd_cases, msd), ("nnunet", find_nnunet_cases, nnunet)):
        cases, unlabelled, problems, channels, labels = finder(str(folder))
        assert not problems and not unlabelled and channels == ("T2", "ADC")
        report = prepare_dataset(cases, str(root / name), labels, PrepOptions(size=96), source=SourceInfo(name, channels), folds=2,
                                 progress=False)
        assert report.exit_status == 0
    return {"root": root, "msd": msd, "nnunet": nnunet}


# --- Label tables ------------------------------------------------------------------

def test_label_tables_from_each_source():
    nnunet = LabelTable.from_nnunet({"background": 0, "edema": 2, "tumour": 4, "ignore": 9}, "d.json")
    assert nnunet.names == ("background", "edema", "tumour") and nnunet.values == (0, 2, 4) and nnunet.ignore_values == (9,)
    msd = LabelTable.from_msd({"0": "background", "1": "PZ", "2": "TZ"}, "d.json")
    assert msd.names == ("background", "PZ", "TZ") and msd.is_identity
    assert LabelTable.parse("background=0,edema=2").values == (0, 2)
    assert LabelTable.parse("background,prostate") == LabelTable(("background", "prostate"), (0, 1), (255,))
    labels = nnunet.to_indices(np.array([[0, 2], [4, 9]], np.int16), "m")
    np.testing.assert_array_equal(labels, [[0, 1], [2, 255]])
    np.testing.assert_array_equal(nnunet.to_values(np.array([0, 1, 2])), [0, 2, 4])


@pytest.mark.parametrize("labels, message", [
    ({"background": 0, "whole tumour": [1, 2, 3]}, r"\['whole tumour'\] are region-based"),
    ({"edema": 1, "tumour": 2}, r"must give the background the value 0"),
    ({"background": 0, "a": 1, "b": 1}, r"the label value\(s\) \[1\] mark several classes"),
    ({"background": 0, "a": "one"}, r"label value 'one' is not an integer"),
])
def test_bad_nnunet_label_tables_are_named(labels, message):
    with pytest.raises(ValueError, match=r"^d\.json: .*" + message):
        LabelTable.from_nnunet(labels, "d.json")


def test_a_label_value_outside_the_table_names_the_value_and_the_table():
    table = LabelTable.from_msd({"0": "background", "1": "PZ", "2": "TZ"}, "d")
    with pytest.raises(CaseError, match=r"^mask 'x\.nii\.gz' holds the label value\(s\) 3, 7, which the label table does not "
                                        r"name \(background = 0, PZ = 1, TZ = 2\)\.$"):
        table.to_indices(np.array([0, 1, 3, 7]), "mask 'x.nii.gz'")


# --- The Decathlon and nnU-Net layouts give the same data set ------------------------

def test_msd_and_nnunet_copies_prepare_identically(zones):
    msd, nnunet = PreparedDataset(zones["root"] / "msd"), PreparedDataset(zones["root"] / "nnunet")
    assert msd.class_names == nnunet.class_names == list(ZONE_CLASSES)
    assert msd.channel_names() == nnunet.channel_names() == ("T2", "ADC")
    assert msd.image_shape() == nnunet.image_shape() == (96, 96, 2)
    assert msd.folds.equals(nnunet.folds)
    assert list(msd.manifest.image) == list(nnunet.manifest.image)
    for column in ("image", "mask"):
        for entry in msd.manifest[column]:
            for name in entry.split(";"):
                np.testing.assert_array_equal(png(zones["root"] / "msd" / name), png(zones["root"] / "nnunet" / name))
    # Native size: the prepared masks' class counts are the label volumes' voxel counts.
    for case in msd.folds.case:
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(zones["msd"] / "labelsTr" / f"{case}.nii.gz")))
        assert msd.classes["per_case"][case]["pixel_count"] == np.bincount(labels.ravel(), minlength=3).tolist()


def test_each_channel_is_its_own_grey_png_with_its_own_contrast(zones):
    dataset = PreparedDataset(zones["root"] / "msd")
    row = dataset.manifest.loc[dataset.manifest.foreground_fraction.idxmax()]
    t2_name, adc_name = row.image.split(";")
    assert t2_name.endswith("_0000.png") and adc_name.endswith("_0001.png")
    t2, adc, mask = (png(zones["root"] / "msd" / n) for n in (t2_name, adc_name, row["mask"]))
    assert t2.ndim == adc.ndim == 2 and t2.dtype == np.uint8
    peripheral, transition = mask == 1, mask == 2
    # T2: the peripheral zone brightest; ADC: the transition zone brightest (the synthetic contrasts).
    assert t2[peripheral].mean() > t2[transition].mean() + 40
    assert adc[transition].mean() > adc[peripheral].mean() + 40
    images, masks = dataset.load([row.case], 2)
    index = int(np.flatnonzero(dataset.rows([row.case]).slice.to_numpy() == row.slice)[0])
    np.testing.assert_array_equal(images[index], np.stack([t2, adc], -1))
    np.testing.assert_array_equal(masks[index], mask)


def test_streamed_and_cached_two_channel_slices_equal_the_pngs(zones, tmp_path):
    dataset = PreparedDataset(zones["root"] / "nnunet")
    cases = list(dataset.folds.case[:2])
    memory, _ = dataset.load(cases, 2)
    for cache in (None, str(tmp_path / "cache"), str(tmp_path / "cache")):  # written, then read back
        streamed = dataset.examples(cases, 2, stream=True, cache=cache)
        decoded = np.stack([image.numpy() for image, _ in streamed.source().map(streamed.decode)])
        np.testing.assert_array_equal(decoded, memory)
        assert decoded.dtype == np.uint8 and decoded.shape[-1] == 2


def test_dataset_check_refuses_a_channel_file_of_another_mode(zones, tmp_path):
    from PIL import Image

    copy = tmp_path / "copy"
    shutil.copytree(zones["root"] / "msd", copy)
    entry = PreparedDataset(copy).manifest.image.iloc[0]
    adc = copy / entry.split(";")[1]
    Image.fromarray(np.stack([png(adc)] * 3, -1)).save(adc)
    with pytest.raises(ValueError, match=r"_0001\.png': a RGB PNG; each channel of a multi-channel slice is an 8-bit grey PNG"):
        PreparedDataset(copy).check()


# --- Bad input: named, per case or before work, nothing half-written ---------------

def _copy(zones, tmp_path, which):
    target = tmp_path / which
    shutil.copytree(zones[which], target)
    return target


def _edit_json(folder, change):
    path = folder / "dataset.json"
    description = json.loads(path.read_text())
    change(description)
    path.write_text(json.dumps(description))


@pytest.mark.parametrize("which, key", [("msd", "labels"), ("msd", "training"), ("nnunet", "channel_names"),
                                        ("nnunet", "file_ending")])
def test_dataset_json_without_a_key_exits_2_before_work(zones, tmp_path, capsys, which, key):
    folder = _copy(zones, tmp_path, which)
    _edit_json(folder, lambda d: d.pop(key))
    out = tmp_path / "out"
    assert main(["prep", which, str(folder), str(out), "--quiet"]) == 2
    assert f"'{folder / 'dataset.json'}' has no `{key}`" in capsys.readouterr().err
    assert not out.exists()


def test_msd_files_named_but_missing_fail_their_case_only(zones, tmp_path, capsys):
    folder = _copy(zones, tmp_path, "msd")
    (folder / "labelsTr" / "prostate_01.nii.gz").unlink()
    out = tmp_path / "out"
    assert main(["prep", "msd", str(folder), str(out), "--quiet", "--folds", "2"]) == 1
    printed = capsys.readouterr().out
    assert ("FAILED prostate_01: '" + str(folder / "dataset.json")
            + "': `training[1].label` names './labelsTr/prostate_01.nii.gz', which does not exist") in printed
    assert sorted(PreparedDataset(out).folds.case) == ["prostate_00", "prostate_02", "prostate_03"]
    assert not any(name.startswith("prostate_01") for name in os.listdir(out / "images"))


def test_a_case_with_another_channel_count_fails_by_name(zones, tmp_path):
    folder = _copy(zones, tmp_path, "msd")
    path = str(folder / "imagesTr" / "prostate_02.nii.gz")
    image = sitk.ReadImage(path)
    size = list(image.GetSize())
    first = sitk.Extract(image, size[:3] + [0], [0, 0, 0, 0])
    sitk.WriteImage(sitk.JoinSeries([first, first, first]), path)
    cases, _, problems, _, _ = find_msd_cases(str(folder))
    assert problems == {"prostate_02": f"'{path}' holds 3 channel(s); `modality` of '{folder / 'dataset.json'}' names 2 "
                                       "(T2, ADC). Every case must have the data set's channels."}
    assert [c.name for c in cases] == ["prostate_00", "prostate_01", "prostate_03"]


def test_plain_volume_pairs_with_different_channel_counts_exit_2(zones, tmp_path, capsys):
    images, masks = tmp_path / "images", tmp_path / "masks"
    shutil.copytree(zones["msd"] / "imagesTr", images)
    shutil.copytree(zones["msd"] / "labelsTr", masks)
    grey = sitk.Extract(sitk.ReadImage(str(images / "prostate_03.nii.gz")), [96, 96, 5, 0], [0, 0, 0, 0])
    sitk.WriteImage(grey, str(images / "prostate_03.nii.gz"))
    out = tmp_path / "out"
    status = main(["prep", "volumes", str(images), str(masks), str(out), "--class-names",
                   "background,peripheral zone,transition zone", "--quiet"])
    assert status == 2
    assert "hold different numbers of channels (1 in ['prostate_03']; 2 in ['prostate_00', 'prostate_01', " in capsys.readouterr().err
    assert not out.exists()


def test_plain_volume_pairs_prepare_as_the_decathlon_does(zones, tmp_path):
    cases, unlabelled, problems, channels, labels = find_volume_pairs(
        str(zones["msd"] / "imagesTr"), str(zones["msd"] / "labelsTr"), LabelTable.parse("bg,pz,tz"), ("T2", "ADC"))
    assert not problems and not unlabelled and channels == ("T2", "ADC") and len(cases) == 4
    prepare_dataset(cases, str(tmp_path / "out"), labels, PrepOptions(size=96), folds=2, progress=False, source=SourceInfo(channels=channels))
    msd = PreparedDataset(zones["root"] / "msd")
    row = msd.manifest.iloc[3]
    for name in row.image.split(";") + [row["mask"]]:
        np.testing.assert_array_equal(png(tmp_path / "out" / name), png(zones["root"] / "msd" / name))


def test_a_label_value_outside_dataset_json_fails_the_case(zones, tmp_path):
    folder = _copy(zones, tmp_path, "nnunet")
    path = folder / "labelsTr" / "prostate_03.nii.gz"
    labels = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(labels)
    array[0, 0, 0] = 5
    changed = sitk.GetImageFromArray(array)
    changed.CopyInformation(labels)
    sitk.WriteImage(changed, str(path))
    cases, *_, channels, table = find_nnunet_cases(str(folder))
    report = prepare_dataset(cases, str(tmp_path / "out"), table, PrepOptions(size=96), folds=2, progress=False,
                             source=SourceInfo(channels=channels))
    assert report.failed == {"prostate_03": f"mask '{path}' holds the label value(s) 5, which the label table does not name "
                                            "(background = 0, peripheral zone = 1, transition zone = 2)."}
    assert not any(n.startswith("prostate_03") for n in os.listdir(tmp_path / "out" / "images"))
    assert not (tmp_path / "out" / ".partial").exists()


def test_a_missing_channel_file_is_named(zones, tmp_path):
    folder = _copy(zones, tmp_path, "nnunet")
    (folder / "imagesTr" / "prostate_00_0001.nii.gz").unlink()
    _, _, problems, _, _ = find_nnunet_cases(str(folder))
    assert problems == {"prostate_00": f"'{folder / 'imagesTr'}': missing prostate_00_0001.nii.gz (ADC)"}


def test_a_four_d_file_in_the_nnunet_layout_fails_its_case(zones, tmp_path):
    folder = _copy(zones, tmp_path, "nnunet")
    path = folder / "imagesTr" / "prostate_01_0000.nii.gz"
    shutil.copy(zones["msd"] / "imagesTr" / "prostate_01.nii.gz", path)  # T2 + ADC where T2 alone belongs
    cases, _, problems, _, _ = find_nnunet_cases(str(folder))
    assert problems == {"prostate_01": f"'{path}' holds 2 channels; in the nnU-Net layout each file is one channel "
                                       "(this one 'T2')."}
    assert [c.name for c in cases] == ["prostate_00", "prostate_02", "prostate_03"]


def test_channels_on_different_grids_fail_naming_the_channel(zones, tmp_path):
    folder = _copy(zones, tmp_path, "nnunet")
    path = str(folder / "imagesTr" / "prostate_01_0001.nii.gz")
    image = sitk.ReadImage(path)
    image.SetSpacing([s * 1.5 for s in image.GetSpacing()])
    sitk.WriteImage(image, path)
    cases, *_, channels, table = find_nnunet_cases(str(folder))
    report = prepare_dataset(cases, str(tmp_path / "out"), table, PrepOptions(size=96), folds=2, progress=False,
                             source=SourceInfo(channels=channels))
    assert report.failed["prostate_01"].startswith("case 'prostate_01': channel 'T2' and channel 'ADC' differ in spacing")


def test_a_four_d_image_given_to_a_grey_source_fails_its_case(zones, tmp_path):
    src = tmp_path / "promise12"
    src.mkdir()
    shutil.copy(zones["msd"] / "imagesTr" / "prostate_00.nii.gz", src / "Case00.nii.gz")
    image = sitk.ReadImage(str(src / "Case00.nii.gz"))
    sitk.WriteImage(image, str(src / "Case00.mhd"))
    shutil.copy(zones["msd"] / "labelsTr" / "prostate_00.nii.gz", src / "labels.nii.gz")
    labels = sitk.ReadImage(str(src / "labels.nii.gz")) > 0
    sitk.WriteImage(sitk.Cast(labels, sitk.sitkUInt8), str(src / "Case00_segmentation.mhd"))
    from keras_focal.data_prep.sources import PROSTATE_CLASSES, find_promise12_cases

    cases, _, _ = find_promise12_cases(str(src))
    report = prepare_dataset(cases, str(tmp_path / "out"), PROSTATE_CLASSES, PrepOptions(size=32), folds=2, progress=False)
    slices = sitk.ReadImage(str(src / "Case00.mhd")).GetSize()[2]
    assert report.failed["Case00"] == (
        f"'{src / 'Case00.mhd'}' holds 2 channel(s) (array shape ({slices}, 96, 96, 2)), but 1 is expected here: this source "
        "takes grey 3-D volumes (`prep msd`, `prep nnunet` and `prep volumes` keep every channel).")


# --- DICOM SEG and RTSTRUCT --------------------------------------------------------

def test_pydicom_liver_seg_is_read_with_its_pixels_and_geometry():
    path = os.path.join(FILES, "liver_1frame.dcm")
    header = pydicom.dcmread(path)
    shared = header.SharedFunctionalGroupsSequence[0]
    position = [float(v) for v in header.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient]
    spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing][::-1] + [1.0]
    # The grid of its CT series, as its header describes it: 512 x 512, three slices with the frame on the middle one.
    image = Volume(np.zeros((3, 512, 512), np.float32), tuple(spacing), (position[0], position[1], position[2] - 1.0),
                   frame_of_reference=header.FrameOfReferenceUID, source="ct")
    mask, notes = label_object_mask(path, image, LabelTable.parse("background,liver"))
    assert mask.shape == (3, 512, 512) and notes == []
    assert np.count_nonzero(mask) == int(header.pixel_array.sum()) == 36233
    np.testing.assert_array_equal(mask[1], header.pixel_array)
    assert not mask[0].any() and not mask[2].any()


def test_seg_and_rtstruct_of_another_frame_of_reference_are_refused():
    seg, rtstruct = os.path.join(FILES, "liver_1frame.dcm"), os.path.join(FILES, "rtstruct.dcm")
    image = Volume(np.zeros((3, 512, 512)), (0.81, 0.81, 1.0), frame_of_reference="1.2.3.4", source="series")
    for path, labels in ((seg, "background,liver"), (rtstruct, "background,patient")):
        with pytest.raises(CaseError, match=r"refers to the frame of reference 1\.2\.(392|826)[\d.]+, but the image series "
                                            r"'series' is in 1\.2\.3\.4: its labels would be placed in another patient position"):
            label_object_mask(path, image, LabelTable.parse(labels))


def test_pydicom_rtstruct_is_rasterised_on_exactly_its_slices():
    path = os.path.join(FILES, "rtstruct.dcm")
    header = pydicom.dcmread(path, force=True)
    # A grid built for it: 2 mm pixels over x -250..248, y -200..198, slices every 10 mm from z = -220.
    image = Volume(np.zeros((6, 200, 250)), (2.0, 2.0, 10.0), (-250.0, -200.0, -220.0),
                   frame_of_reference=header.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID, source="grid")
    mask, notes = label_object_mask(path, image, LabelTable.parse("background,patient"))
    assert [k for k in range(6) if mask[k].any()] == [2, 3, 4]  # z = -200, -190, -180
    points = np.concatenate([np.asarray(c.ContourData, float).reshape(-1, 3)
                             for c in header.ROIContourSequence[0].ContourSequence])
    rows, columns = np.nonzero(mask.any(axis=0))
    assert -250 + 2 * columns.min() >= points[:, 0].min() and -250 + 2 * columns.max() <= points[:, 0].max()
    assert -200 + 2 * rows.min() >= points[:, 1].min() and -200 + 2 * rows.max() <= points[:, 1].max()
    assert set(np.unique(mask)) == {0, 1}
    assert any("['Isocenter 1', 'Isocenter 2']" in note and "are no class" in note for note in notes)


def _write_seg(path, mask, series, segment="Prostate", frame_of_reference=None):
    """A minimal BINARY Segmentation Storage object of `mask` (z, y, x) on the grid of the series `Volume`."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.pixels import pack_bits
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    direction = np.asarray(series.direction).reshape(3, 3)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SegmentationType = "SEG", "BINARY"
    ds.FrameOfReferenceUID = frame_of_reference or series.frame_of_reference
    ds.SegmentSequence = [Dataset()]
    ds.SegmentSequence[0].SegmentNumber, ds.SegmentSequence[0].SegmentLabel = 1, segment
    shared = Dataset()
    shared.PlaneOrientationSequence = [Dataset()]
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1])]
    shared.PixelMeasuresSequence = [Dataset()]
    shared.PixelMeasuresSequence[0].PixelSpacing = [f"{series.spacing[1]:.6f}", f"{series.spacing[0]:.6f}"]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames, groups = [], []
    for k in np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1)):
        group = Dataset()
        group.PlanePositionSequence = [Dataset()]
        position = np.asarray(series.origin) + k * series.spacing[2] * direction[:, 2]
        group.PlanePositionSequence[0].ImagePositionPatient = [f"{v:.6f}" for v in position]
        group.SegmentIdentificationSequence = [Dataset()]
        group.SegmentIdentificationSequence[0].ReferencedSegmentNumber = 1
        groups.append(group)
        frames.append(mask[k] > 0)
    ds.PerFrameFunctionalGroupsSequence = groups
    ds.NumberOfFrames, (ds.Rows, ds.Columns) = len(frames), mask.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    ds.PixelData = pack_bits(np.stack(frames).astype(np.uint8))
    ds.save_as(path, enforce_file_format=True)


def test_dicom_cases_with_seg_masks_prepare_like_their_label_volumes(ultrasound_source, tmp_path, capsys):
    masks = tmp_path / "seg"
    masks.mkdir()
    for case in sorted(os.listdir(f"{ultrasound_source}/dicom")):
        series = read_dicom_volume(f"{ultrasound_source}/dicom/{case}")
        label = sitk.GetArrayFromImage(sitk.ReadImage(f"{ultrasound_source}/masks/{case}.nrrd"))
        uid = "1.2.3.4" if case == "TRUS03" else None
        _write_seg(str(masks / f"{case}.dcm"), label, series, segment="PROSTATE", frame_of_reference=uid)
    out_seg, out_nrrd = tmp_path / "from_seg", tmp_path / "from_nrrd"
    assert main(["prep", "dicom", f"{ultrasound_source}/dicom", str(out_seg), "--masks", str(masks), "--size", "32",
                 "--folds", "2", "--quiet"]) == 1
    assert "FAILED TRUS03: '" in capsys.readouterr().out  # another frame of reference
    cases, _ = find_dicom_cases(f"{ultrasound_source}/dicom", f"{ultrasound_source}/masks")
    prepare_dataset(cases[:2], str(out_nrrd), ("background", "prostate"), PrepOptions(size=32), folds=2, progress=False)
    seg_rows = PreparedDataset(out_seg).manifest
    assert len(seg_rows) == len(PreparedDataset(out_nrrd).manifest) > 0
    for name in seg_rows["mask"]:
        np.testing.assert_array_equal(png(out_seg / name), png(out_nrrd / name))


def test_rtstruct_contours_fill_the_pixels_they_enclose_on_a_tilted_series(ultrasound_source, tmp_path):
    from pydicom.dataset import Dataset

    series = read_dicom_volume(f"{ultrasound_source}/dicom/TRUS01")
    direction = np.asarray(series.direction).reshape(3, 3)
    ds = Dataset()
    ds.Modality = "RTSTRUCT"
    ds.StructureSetROISequence = [Dataset()]
    ds.StructureSetROISequence[0].ROINumber, ds.StructureSetROISequence[0].ROIName = 7, "Prostate"
    ds.StructureSetROISequence[0].ReferencedFrameOfReferenceUID = series.frame_of_reference
    contours = []
    for k in (2, 3):  # a rectangle whose corners lie half a pixel outside rows 10..20, columns 5..30
        corners = [(4.5, 9.5), (30.5, 9.5), (30.5, 20.5), (4.5, 20.5)]
        points = [np.asarray(series.origin) + direction @ (np.array([i, j, k]) * np.asarray(series.spacing)) for i, j in corners]
        contour = Dataset()
        contour.ContourGeometricType, contour.ContourData = "CLOSED_PLANAR", [f"{v:.5f}" for p in points for v in p]
        contours.append(contour)
    ds.ROIContourSequence = [Dataset()]
    ds.ROIContourSequence[0].ReferencedROINumber, ds.ROIContourSequence[0].ContourSequence = 7, contours
    path = str(tmp_path / "TRUS01.dcm")
    pydicom.dcmwrite(path, ds, enforce_file_format=False, implicit_vr=True, little_endian=True)  # no file meta, as pydicom's own
    mask, notes = label_object_mask(path, series, LabelTable.parse("background,gland"), roi_map={"Prostate": "gland"})
    expected = np.zeros(series.array.shape, np.uint8)
    expected[2:4, 10:21, 5:31] = 1
    np.testing.assert_array_equal(mask, expected)
    with pytest.raises(CaseError, match=r"--roi names ROI\(s\) \['Gland'\] that '.*TRUS01\.dcm' does not hold \(it has \['Prostate'\]\)"):
        label_object_mask(path, series, LabelTable.parse("background,gland"), roi_map={"Gland": "gland"})


# --- Prediction on multi-channel volumes -------------------------------------------------

def test_predict_takes_a_four_d_volume_or_nnunet_channel_files_alike(zones, tmp_path, capsys):
    import keras

    from keras_focal.models import unet

    model = unet((96, 96, 2), num_classes=3, depth=2, base_filters=4)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32") for w in model.get_weights()])
    model.save(tmp_path / "zones.keras")
    data = str(zones["root"] / "msd")
    four_d, files = tmp_path / "msd.nii.gz", tmp_path / "imagesTs"
    shutil.copy(zones["msd"] / "imagesTr" / "prostate_01.nii.gz", four_d)
    files.mkdir()
    for channel in (0, 1):
        shutil.copy(zones["nnunet"] / "imagesTr" / f"prostate_01_{channel:04d}.nii.gz", files)
    assert main(["predict", str(four_d), str(tmp_path / "a"), "--model", str(tmp_path / "zones.keras"), "--data", data, "--quiet"]) == 0
    assert main(["predict", str(files), str(tmp_path / "b"), "--model", str(tmp_path / "zones.keras"), "--data", data, "--quiet"]) == 0
    a, b = sitk.ReadImage(str(tmp_path / "a" / "msd.nii.gz")), sitk.ReadImage(str(tmp_path / "b" / "prostate_01.nii.gz"))
    truth = sitk.ReadImage(str(zones["msd"] / "labelsTr" / "prostate_01.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    assert a.GetSize() == truth.GetSize() and a.GetSpacing() == truth.GetSpacing() and a.GetOrigin() == truth.GetOrigin()
    capsys.readouterr()
    grey = str(zones["msd"] / "labelsTr" / "prostate_01.nii.gz")
    assert main(["predict", grey, str(tmp_path / "c"), "--model", str(tmp_path / "zones.keras"), "--data", data, "--quiet"]) == 2
    assert f"'{grey}' holds 1 channel(s) per voxel; the models take 2" in capsys.readouterr().err
    keras.backend.clear_session()


def test_predicted_labels_carry_the_source_label_values(zones, tmp_path):
    from keras_focal.inference import PredictionSettings

    folder = _copy(zones, tmp_path, "nnunet")
    _edit_json(folder, lambda d: d.update(labels={"background": 0, "peripheral zone": 3, "transition zone": 7}))
    for path in (folder / "labelsTr").iterdir():
        image = sitk.ReadImage(str(path))
        array = np.asarray([0, 3, 7], np.uint8)[sitk.GetArrayFromImage(image)]
        changed = sitk.GetImageFromArray(array)
        changed.CopyInformation(image)
        sitk.WriteImage(changed, str(path))
    cases, *_, channels, table = find_nnunet_cases(str(folder))
    prepare_dataset(cases, str(tmp_path / "out"), table, PrepOptions(size=96), folds=2, progress=False, source=SourceInfo(channels=channels))
    dataset = PreparedDataset(tmp_path / "out")
    assert dataset.classes["label_values"] == [0, 3, 7]
    for name in dataset.manifest["mask"]:  # class indices in the slices, as before
        np.testing.assert_array_equal(png(tmp_path / "out" / name), png(zones["root"] / "nnunet" / name))
    settings = PredictionSettings.from_dataset(dataset)
    np.testing.assert_array_equal(settings.labels.to_values(np.array([0, 1, 2])), [0, 3, 7])
    assert json.loads((tmp_path / "out" / "prep.json").read_text())["label_values"] == [0, 3, 7]


def test_nnunet_splits_final_are_the_folds_of_the_prepared_set(zones, tmp_path, capsys):
    from keras_focal.data_prep.prepared import PreparedDataset

    splits = tmp_path / "splits_final.json"
    splits.write_text(json.dumps([{"train": ["prostate_02", "prostate_03"], "val": ["prostate_00", "prostate_01"]},
                                  {"train": ["prostate_00", "prostate_01"], "val": ["prostate_02", "prostate_03"]}]))
    out = tmp_path / "out"
    assert main(["prep", "nnunet", str(zones["nnunet"]), str(out), "--size", "32", "--split", str(splits), "--quiet"]) == 0
    assert "2 folds from nnU-Net's 'splits_final.json'" in capsys.readouterr().out
    dataset = PreparedDataset(out)
    assert dataset.split(0, validation_fraction=0)[2] == ["prostate_00", "prostate_01"]
    assert dataset.split(1, validation_fraction=0)[2] == ["prostate_02", "prostate_03"]
    splits.write_text(json.dumps([{"train": ["prostate_02"], "val": ["prostate_00", "prostate_01"]},
                                  {"train": ["prostate_00"], "val": ["prostate_02"]}]))
    assert main(["prep", "nnunet", str(zones["nnunet"]), str(tmp_path / "other"), "--split", str(splits), "--quiet"]) == 2
    assert "does not list 1 case(s) of the data: 'prostate_03'" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
    assert main(["prep", "synth", str(tmp_path / "synth"), "--split", str(splits)]) == 2
    assert "prep synth writes several data sets, and a split names the cases of one" in capsys.readouterr().err
