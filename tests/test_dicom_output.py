"""Predictions as DICOM SEG and RTSTRUCT objects of their series: written by `keras_focal.inference.dicom_objects`,
read back onto the same voxels by this package's reader, by highdicom and (to its boundary convention) by rt-utils."""

import os
import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from keras_focal.cli import main
from keras_focal.data_prep.dicom import read_dicom_volume
from keras_focal.data_prep.dicom_labels import label_object_mask
from keras_focal.data_prep.labels import LabelTable
from keras_focal.inference.dicom_objects import (
    AlgorithmInfo,
    check_dicom_source,
    segment_code,
    slice_contours,
    source_datasets,
    write_segmentation,
    write_structure_set,
)

CT5N = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files", "dicomdirtests", "98892001", "CT5N")
ZONES = ["background", "peripheral zone", "transition zone", "urethra"]  # urethra: never predicted below
ALGORITHM = AlgorithmInfo("0.4.0", ("/runs/adfl/best.keras",), ("ab" * 32,))


@pytest.fixture(params=["trus", "ct"])
def series(request, ultrasound_source):
    """The tilted synthetic TRUS series (6-8 slices of 48-64 px) and pydicom's CT5N (5 slices of 16², z descending)."""
    return f"{ultrasound_source}/dicom/TRUS01" if request.param == "trus" else CT5N


def _zones(shape):
    """Label volume with a ring (a hole), a disk in the hole, a shape on the border, a diagonal pair, empty end slices."""
    slices, height, width = shape
    labels = np.zeros(shape, np.uint8)
    rows, columns = np.mgrid[:height, :width]
    radius = np.hypot(rows - height / 2, columns - width / 2)
    for z in range(1, slices - 1):
        labels[z][(radius < 0.35 * min(height, width)) & (radius > 0.18 * min(height, width))] = 1
        labels[z][radius <= 0.09 * min(height, width)] = 2
    labels[1, 0:3, 0:4] = 1
    labels[1, 5, 5] = labels[1, 6, 6] = 2
    return labels


def test_slice_contours_fill_back_exactly_with_the_even_odd_rule():
    from matplotlib.path import Path

    mask = np.zeros((12, 12), bool)
    mask[1:11, 1:11] = True
    mask[3:9, 3:9] = False   # a hole
    mask[5:7, 5:7] = True    # an island in the hole
    mask[0, 11] = True       # a corner pixel on the border
    contours = slice_contours(mask)
    assert len(contours) == 4
    centres = np.stack(np.mgrid[:12, :12], -1).reshape(-1, 2).astype(float)
    inside = np.zeros(len(centres), bool)
    for contour in contours:
        assert not np.any(np.all(np.isin(contour, np.arange(12)), axis=1))  # no vertex on a pixel centre
        inside ^= Path(contour).contains_points(centres)
    np.testing.assert_array_equal(inside.reshape(12, 12), mask)


def test_a_seg_and_an_rtstruct_read_back_onto_the_same_voxels(series, tmp_path):
    volume = read_dicom_volume(series)
    labels = _zones(volume.array.shape)
    sources = source_datasets(series)
    write_segmentation(tmp_path / "case.seg.dcm", labels, ZONES, sources, ALGORITHM)
    write_structure_set(tmp_path / "case.rtstruct.dcm", labels, ZONES, sources, ALGORITHM)
    table = LabelTable.parse(",".join(ZONES))
    for name in ("case.seg.dcm", "case.rtstruct.dcm"):
        back, notes = label_object_mask(tmp_path / name, volume, table)
        np.testing.assert_array_equal(back, labels, err_msg=name)  # this package's reader: voxel for voxel
        assert notes == []

    import highdicom as hd

    seg = hd.seg.segread(str(tmp_path / "case.seg.dcm"))
    uids = [source.SOPInstanceUID for source in sources]
    np.testing.assert_array_equal(  # highdicom: each segment's frames on its source image, slice for slice
        seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True), labels)


def test_rt_utils_reads_the_rtstruct_up_to_its_boundary_convention(ultrasound_source, tmp_path):
    """rt-utils rounds each contour vertex to a pixel centre and fills with OpenCV, the boundary included; our
    contours run half-way between pixel centres. So rt-utils reads every labelled voxel plus some of the voxels just
    outside: measured on the tilted TRUS series, 703 more than the ring's 6,972 (10.1%) and 124 more than the disk's
    608 (20.4%), each one a neighbour of the shape; none fewer."""
    from rt_utils import RTStructBuilder
    from scipy import ndimage

    series = f"{ultrasound_source}/dicom/TRUS01"
    labels = _zones(read_dicom_volume(series).array.shape)
    write_structure_set(tmp_path / "case.rtstruct.dcm", labels, ZONES, source_datasets(series), ALGORITHM)
    read = RTStructBuilder.create_from(dicom_series_path=series, rt_struct_path=str(tmp_path / "case.rtstruct.dcm"))
    assert {roi.ROIName for roi in read.ds.StructureSetROISequence} == {"peripheral zone", "transition zone", "urethra"}
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = True
    for index, name, share in ((1, "peripheral zone", 0.101), (2, "transition zone", 0.204)):
        mask = labels == index
        theirs = np.transpose(read.get_roi_mask_by_name(name), (2, 0, 1))  # rt-utils: (rows, columns, slices)
        assert not np.any(mask & ~theirs), name
        extra = theirs & ~mask
        assert np.all(ndimage.binary_dilation(mask, in_plane)[extra]), name
        assert extra.sum() / mask.sum() == pytest.approx(share, abs=0.005), name


def test_the_seg_refers_to_its_series_and_says_what_made_it(ultrasound_source, tmp_path):
    series = f"{ultrasound_source}/dicom/TRUS01"
    sources = source_datasets(series)
    volume = read_dicom_volume(series)
    write_segmentation(tmp_path / "case.seg.dcm", _zones(volume.array.shape), ZONES, sources, ALGORITHM)
    seg = pydicom.dcmread(tmp_path / "case.seg.dcm")
    first = sources[0]
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.SegmentationType == "BINARY"
    for keyword in ("FrameOfReferenceUID", "StudyInstanceUID", "PatientID", "PatientName"):
        assert seg[keyword].value == first[keyword].value, keyword
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == first.SeriesInstanceUID
    assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} == {
        source.SOPInstanceUID for source in sources}
    segments = seg.SegmentSequence
    assert [s.SegmentLabel for s in segments] == ZONES[1:]
    assert [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in segments] == ["279706003", "399384005", "85756007"]
    assert {s.SegmentAlgorithmType for s in segments} == {"AUTOMATIC"}
    algorithm = segments[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("keras-focal", "0.4.0")
    assert "ab" * 32 in algorithm.AlgorithmParameters and "best.keras" in algorithm.AlgorithmParameters
    assert seg.SeriesDescription == "keras-focal 0.4.0 prediction"


def test_a_fractional_seg_holds_the_probabilities_to_a_255th(ultrasound_source, tmp_path):
    import highdicom as hd

    series = f"{ultrasound_source}/dicom/TRUS01"
    sources = source_datasets(series)
    shape = read_dicom_volume(series).array.shape
    probabilities = np.random.default_rng(0).dirichlet(np.ones(4), size=shape).astype(np.float32)
    write_segmentation(tmp_path / "p.seg.dcm", probabilities.argmax(-1), ZONES, sources, ALGORITHM, probabilities)
    seg = hd.seg.segread(str(tmp_path / "p.seg.dcm"))
    assert seg.SegmentationType == "FRACTIONAL"
    back = seg.get_pixels_by_source_instance(source_sop_instance_uids=[s.SOPInstanceUID for s in sources],
                                             rescale_fractional=True)
    np.testing.assert_allclose(back, probabilities[..., 1:], atol=0.5 / 255 + 1e-6)


def test_segment_codes_follow_the_class_names():
    assert segment_code("Prostate")[1] == ("41216001", "SCT", "Prostate")
    assert segment_code("transition_zone")[1] == ("399384005", "SCT", "Transition zone of the prostate")
    assert segment_code("PZ")[1][0] == "279706003"
    assert segment_code("tumor") == segment_code("tumour") and segment_code("tumour")[0][2] == "Morphologically Abnormal Structure"
    assert segment_code("left thing") == (("85756007", "SCT", "Tissue"), ("85756007", "SCT", "Tissue"))


def test_a_series_without_the_attributes_a_seg_needs_is_refused_naming_them(ultrasound_source, tmp_path):
    from keras_focal.data_prep.volume import CaseError

    series = tmp_path / "series"
    shutil.copytree(f"{ultrasound_source}/dicom/TRUS01", series)
    assert check_dicom_source(series) == [
        "the series has no PatientBirthDate, PatientSex, StudyDate, StudyTime, ReferringPhysicianName, StudyID, "
        "AccessionNumber: written empty in the DICOM object (Type 2)"]
    damaged = sorted(series.iterdir())[2]
    dataset = pydicom.dcmread(damaged)
    del dataset.FrameOfReferenceUID
    dataset.save_as(damaged)
    with pytest.raises(CaseError, match=f"'{damaged}' has no FrameOfReferenceUID, which a DICOM SEG or RTSTRUCT"):
        check_dicom_source(series)


# --- keras-focal predict --output-format dicom-seg|rtstruct -------------------------------------------------------

@pytest.fixture(scope="module")
def trained(prepared_trus, tmp_path_factory):
    """A fixed network that marks the brighter pixels (no training: its labels are the same on every machine, with
    shapes, holes and empty slices), for the prepared TRUS set; and the DICOM series of that set's first case."""
    import keras

    inputs = keras.Input((32, 32, 1))
    logits = keras.layers.Conv2D(2, 1, name="logits")(inputs)
    network = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(logits))
    network.get_layer("logits").set_weights([np.array([[[[0.0, 12.0]]]], np.float32), np.array([0.0, -3.0], np.float32)])
    model = str(tmp_path_factory.mktemp("dicom-output") / "brighter.keras")
    network.save(model)
    series = str(pd.read_csv(os.path.join(prepared_trus, "manifest.csv"))["source_image"].iloc[0])
    assert os.path.isdir(series)  # a DICOM case's source is its series folder
    return {"run": ["--model", model, "--data", prepared_trus], "series": series}


def _predict(*arguments):
    return main(["predict", *map(str, arguments), "--quiet"])


@pytest.mark.parametrize("options", [[], ["--tta", "flip", "--postprocess", "largest-component"]])
def test_predict_writes_a_seg_and_an_rtstruct_of_the_nifti_labels(trained, tmp_path, capsys, options):
    series = trained["series"]
    run = [*trained["run"], *options]
    assert _predict(series, tmp_path / "nifti", *run) == 0
    assert _predict(series, tmp_path / "seg", *run, "--output-format", "dicom-seg", "--probabilities") == 0
    assert _predict(series, tmp_path / "rt", *run, "--output-format", "rtstruct") == 0
    case = os.path.basename(series)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "nifti" / f"{case}.nii.gz")))
    assert 0 < labels.sum() < labels.size  # the model predicts some prostate: the comparison means something
    volume, table = read_dicom_volume(series), LabelTable.parse("background,prostate")
    for path in (tmp_path / "seg" / f"{case}.seg.dcm", tmp_path / "rt" / f"{case}.rtstruct.dcm"):
        back, _ = label_object_mask(path, volume, table)
        np.testing.assert_array_equal(back, labels, err_msg=str(path))
    assert pydicom.dcmread(tmp_path / "seg" / f"{case}_probabilities.seg.dcm").SegmentationType == "FRACTIONAL"
    assert set(os.listdir(tmp_path / "rt")) - {"postprocessing.json"} == {".lock", f"{case}.rtstruct.dcm", "cases"}
    capsys.readouterr()
    # Resumed: the case is finished; --force predicts it again into the same file name.
    assert _predict(series, tmp_path / "rt", *run, "--output-format", "rtstruct") == 0
    assert "0 written now, 1 already finished" in capsys.readouterr().out
    assert _predict(series, tmp_path / "rt", *run, "--output-format", "rtstruct", "--force") == 0
    assert "1 written now" in capsys.readouterr().out
    back, _ = label_object_mask(tmp_path / "rt" / f"{case}.rtstruct.dcm", volume, table)
    np.testing.assert_array_equal(back, labels)


def test_an_interrupted_dicom_case_is_redone_and_leaves_nothing_half_written(trained, tmp_path, capsys, monkeypatch):
    from keras_focal.inference import files

    series, out = trained["series"], tmp_path / "out"

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "write_segmentation", stop)
    assert _predict(series, out, *trained["run"], "--output-format", "dicom-seg") == 130
    assert sorted(os.listdir(out)) == [".lock", "cases"] and os.listdir(out / "cases") == []
    monkeypatch.undo()
    capsys.readouterr()
    assert _predict(series, out, *trained["run"], "--output-format", "dicom-seg") == 0
    assert "1 written now" in capsys.readouterr().out


def test_dicom_output_that_cannot_be_made_is_refused_before_work(trained, tmp_path, capsys):
    series = trained["series"]
    nifti = tmp_path / "case.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(read_dicom_volume(series).array), str(nifti))
    lacking = tmp_path / "lacking"
    shutil.copytree(series, lacking)
    first = sorted(lacking.iterdir())[0]
    dataset = pydicom.dcmread(first)
    del dataset.StudyInstanceUID
    dataset.save_as(first)
    refused = [
        ([nifti, "--output-format", "dicom-seg"], [f"'{nifti}' is not a DICOM series", "--output-format nii.gz"]),
        ([lacking, "--output-format", "rtstruct"], [f"'{first}' has no StudyInstanceUID"]),
        ([series, "--output-format", "rtstruct", "--probabilities"], ["--probabilities cannot be written as an RTSTRUCT"]),
    ]
    for (source, *options), expected in refused:
        out = tmp_path / "refused"
        assert _predict(source, out, *trained["run"], *options) == 2, options
        message = capsys.readouterr().err
        for text in expected:
            assert text in message, message
        assert not out.exists()


def test_an_empty_prediction_is_written_and_read_back_empty(tmp_path):
    volume = read_dicom_volume(CT5N)
    empty = np.zeros(volume.array.shape, np.uint8)
    write_segmentation(tmp_path / "e.seg.dcm", empty, ZONES, source_datasets(CT5N), ALGORITHM)
    write_structure_set(tmp_path / "e.rtstruct.dcm", empty, ZONES, source_datasets(CT5N), ALGORITHM)
    for name in ("e.seg.dcm", "e.rtstruct.dcm"):
        back, _ = label_object_mask(tmp_path / name, volume, LabelTable.parse(",".join(ZONES)))
        assert not back.any(), name
    assert len(pydicom.dcmread(tmp_path / "e.rtstruct.dcm").StructureSetROISequence) == 3  # every class, no contour
