"""Files from other tools, and broken files: every reader checks the whole file, NIfTI geometry is nibabel's and is
written back, RTSTRUCT contours fill as rt-utils fills them, and every fault is a message naming the file."""

import os
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from keras_focal.cli import main
from keras_focal.data_prep.camvid import read_label_image
from keras_focal.data_prep.dicom import read_dicom_volume
from keras_focal.data_prep.dicom_labels import label_object_mask
from keras_focal.data_prep.labels import LabelTable
from keras_focal.data_prep.volume import CaseError, read_header, read_volume

RNG = np.random.default_rng(0)
ARRAY = RNG.integers(1, 1000, (6, 20, 24)).astype(np.int16)  # (z, y, x), no zero: a zero-filled read shows


def _image(array=ARRAY):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 0.6, 3.0))
    image.SetOrigin((10.0, -20.0, 5.0))
    return image


def _cut(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _flip(path, at=0.6):
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    path.write_bytes(bytes(data))


# --- Every volume format: truncated and corrupt files are refused, never read as zeros ----------------------------

FORMATS = {  # name -> (file to write, compressed, the file that holds the voxel data)
    "nii.gz": ("v.nii.gz", True, "v.nii.gz"),
    "nii": ("v.nii", False, "v.nii"),
    "mha-compressed": ("v.mha", True, "v.mha"),
    "mha-raw": ("v.mha", False, "v.mha"),
    "mhd-zraw": ("v.mhd", True, "v.zraw"),
    "mhd-raw": ("v.mhd", False, "v.raw"),
    "nrrd-gzip": ("v.nrrd", True, "v.nrrd"),
    "nrrd-raw": ("v.nrrd", False, "v.nrrd"),
    "nhdr-raw": ("v.nhdr", False, "v.raw"),
}
FAULTS = {"cut to 50%": lambda p: _cut(p, 0.5), "cut to 99%": lambda p: _cut(p, 0.99),
          "one byte flipped": _flip}


# An uncompressed file has no checksum: a flipped voxel byte is a valid voxel, so only compressed ones are flipped.
@pytest.mark.parametrize("kind, fault", [(kind, fault) for kind in FORMATS for fault in FAULTS
                                         if FORMATS[kind][1] or fault != "one byte flipped"])
def test_a_broken_volume_file_is_refused_naming_it(tmp_path, kind, fault):
    name, compressed, data_name = FORMATS[kind]
    sitk.WriteImage(_image(), str(tmp_path / name), useCompression=compressed)
    np.testing.assert_array_equal(read_volume(tmp_path / name).array, ARRAY)  # the intact file reads exactly
    FAULTS[fault](tmp_path / data_name)
    with pytest.raises(CaseError, match=rf"'[^']*{data_name.replace('.', '[.]')}'.*(truncated|corrupt|decompress)|"
                                        rf"SimpleITK cannot read '[^']*{name.replace('.', '[.]')}'.*(expected|read|gz)"):
        read_volume(tmp_path / name)


def test_a_file_named_nifti_that_is_not_says_what_it_holds(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    os.replace(tmp_path / "x.png", tmp_path / "x.nii.gz")
    for reader in (read_volume, read_header):  # the pre-flight's header read says it as well
        with pytest.raises(CaseError, match=r"x\.nii\.gz' is not gzip-compressed: it holds a PNG image; a \.nii\.gz "
                                            r"file must be\."):
            reader(tmp_path / "x.nii.gz")
    (tmp_path / "y.nii").write_bytes(b"\x00" * 400)
    with pytest.raises(CaseError, match=r"y\.nii' is not a NIfTI file \(its first field is not NIfTI-1's header size 348"):
        read_volume(tmp_path / "y.nii")


def test_a_broken_dicom_file_fails_its_series_naming_it(ultrasound_source, tmp_path):
    for keep, message in ((0.6, r"cannot decode the pixel data of '[^']*{name}'.*less than expected"),
                          (0.05, r"'[^']*{name}' is a DICOM image \(Ultrasound Image Storage\) without its pixel rows and data: "
                                r"truncated or corrupt\?")):
        series = tmp_path / f"series{keep}"
        shutil.copytree(f"{ultrasound_source}/dicom/TRUS01", series)
        victim = sorted(series.iterdir())[2]
        _cut(victim, keep)
        with pytest.raises(CaseError, match=message.format(name=victim.name)):
            read_dicom_volume(series)


@pytest.mark.parametrize("fault", ["cut to 50%", "one byte flipped"])
def test_a_broken_label_image_is_refused_naming_it(tmp_path, fault):
    from PIL import Image

    path = tmp_path / "0001TP_006690.png"
    Image.fromarray(RNG.integers(0, 12, (60, 80)).astype(np.uint8)).save(path)
    FAULTS[fault](path)
    with pytest.raises(CaseError, match=r"0001TP_006690\.png' (is truncated or corrupt|is not an image file)"):
        read_label_image(str(path), "index")


def _volume_set(root, cases=3):
    """`root/images/*.nii.gz` and `root/masks/*.nii.gz`: `cases` small volumes with a box of foreground each."""
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for index in range(cases):
        image = RNG.normal(100, 20, (6, 32, 32)).astype(np.float32)
        mask = np.zeros(image.shape, np.uint8)
        mask[1:5, 8 + index:20, 10:22] = 1
        image[mask > 0] += 60
        for folder, array in (("images", image), ("masks", mask)):
            sitk.WriteImage(_image(array), str(root / folder / f"case{index}.nii.gz"))
    return root


def test_prep_fails_a_truncated_case_and_prepares_the_others(tmp_path, capsys):
    root = _volume_set(tmp_path / "src")
    _cut(root / "images" / "case1.nii.gz", 0.8)
    out = tmp_path / "out"
    assert main(["prep", "volumes", str(root / "images"), str(root / "masks"), str(out), "--size", "32", "--folds", "2",
                 "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert "FAILED case1: '" in printed and "case1.nii.gz' is truncated: its gzip stream ends before the end-of-stream " \
                                            "marker" in printed
    manifest = (out / "manifest.csv").read_text()
    assert "case0" in manifest and "case2" in manifest and "case1" not in manifest


# --- NIfTI geometry: nibabel's reading, written back unchanged -------------------------------------------------------

def _rotation(degrees):
    theta = np.radians(degrees)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]
    return rotation


def _ras_affine(volume):
    """The RAS+ affine of a `Volume`'s (LPS) grid, to compare with nibabel's."""
    lps = np.diag([-1.0, -1.0, 1.0])
    direction = np.asarray(volume.direction).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = lps @ direction @ np.diag(volume.spacing)
    affine[:3, 3] = lps @ np.asarray(volume.origin)
    return affine


def _nifti(path, qform=None, qcode=0, sform=None, scode=0, data=None, slope=None):
    data = ARRAY.T.copy() if data is None else data
    image = nib.Nifti1Image(data, None)
    image.set_qform(qform, code=qcode)
    image.set_sform(sform, code=scode)
    if slope is not None:
        image.header.set_slope_inter(slope, 0.0)
    nib.save(image, str(path))
    return nib.load(str(path))


OBLIQUE = _rotation(20) @ np.diag([0.7, 0.8, 3.0, 1.0]) + np.array([[0, 0, 0, 12.0], [0, 0, 0, -7.0], [0, 0, 0, 30.0],
                                                                    [0, 0, 0, 0]])


def test_qform_and_sform_that_disagree_use_the_sform_and_say_so(tmp_path):
    reference = _nifti(tmp_path / "qs.nii.gz", qform=np.diag([0.7, 0.8, 3.0, 1.0]), qcode=1, sform=OBLIQUE, scode=2)
    volume = read_volume(tmp_path / "qs.nii.gz")
    np.testing.assert_allclose(_ras_affine(volume), reference.affine, atol=1e-6)
    np.testing.assert_allclose(_ras_affine(volume), OBLIQUE, atol=1e-5)  # the sform (stored as float32)
    np.testing.assert_array_equal(volume.array, ARRAY)
    assert len(volume.notes) == 1 and "its qform (code 1, scanner) and sform (code 2, aligned) disagree, by up to " \
                                       in volume.notes[0] and "the sform gives the grid" in volume.notes[0]


def test_an_sform_only_file_keeps_its_voxel_sizes_and_rotation(tmp_path):
    reference = _nifti(tmp_path / "s.nii.gz", sform=OBLIQUE, scode=2)
    volume = read_volume(tmp_path / "s.nii.gz")
    np.testing.assert_allclose(volume.spacing, [0.7, 0.8, 3.0], atol=1e-6)  # SimpleITK: 1, 1, 1 and no rotation
    np.testing.assert_allclose(_ras_affine(volume), reference.affine, atol=1e-6)
    assert volume.notes == []


def test_a_sheared_transform_is_refused_with_the_reason(tmp_path):
    sheared = np.diag([0.7, 0.8, 3.0, 1.0])
    sheared[0, 1] = 0.2
    _nifti(tmp_path / "shear.nii.gz", sform=sheared, scode=2)
    with pytest.raises(CaseError, match=r"shear\.nii\.gz': its sform shears the voxel grid \(two axes meet at 76° "
                                        r"instead of 90°\)"):
        read_volume(tmp_path / "shear.nii.gz")


def test_scaled_integer_labels_and_simpleitk_files_read_as_nibabel_and_simpleitk_read_them(tmp_path):
    labels = (ARRAY.T % 3).astype(np.int16)
    _nifti(tmp_path / "scaled.nii.gz", qform=OBLIQUE, qcode=1, data=labels, slope=2.0)
    np.testing.assert_array_equal(read_volume(tmp_path / "scaled.nii.gz").array, 2.0 * labels.T)
    image = _image()
    image.SetDirection(tuple(np.linalg.qr(RNG.normal(size=(3, 3)))[0].reshape(-1)))
    sitk.WriteImage(image, str(tmp_path / "itk.nii.gz"))
    volume, itk = read_volume(tmp_path / "itk.nii.gz"), sitk.ReadImage(str(tmp_path / "itk.nii.gz"))
    np.testing.assert_allclose(volume.spacing, itk.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(volume.origin, itk.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(volume.direction, itk.GetDirection(), atol=1e-6)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    """A random 1-channel, 2-class U-Net saved as a file, and a data set prepared at 32² to go with it."""
    from keras_focal.models import unet

    root = tmp_path_factory.mktemp("integrity")
    source = _volume_set(root / "src")
    assert main(["prep", "volumes", str(source / "images"), str(source / "masks"), str(root / "data"), "--size", "32",
                 "--folds", "2", "--quiet"]) == 0
    model = unet((32, 32, 1), num_classes=2, depth=2, base_filters=4)
    model.set_weights([RNG.normal(scale=0.3, size=w.shape).astype("float32") for w in model.get_weights()])
    model.save(root / "m.keras")
    return {"model": str(root / "m.keras"), "data": str(root / "data"), "source": source}


def _predict(predictor, source, out, *more):
    return main(["predict", str(source), str(out), "--model", predictor["model"], "--data", predictor["data"], "--quiet",
                 *map(str, more)])


def test_predict_writes_the_inputs_qform_and_sform_back(predictor, tmp_path):
    data = (RNG.normal(100, 20, (24, 20, 6))).astype(np.float32)
    source = _nifti(tmp_path / "in.nii.gz", qform=np.diag([0.7, 0.8, 3.0, 1.0]), qcode=1, sform=OBLIQUE, scode=2, data=data)
    assert _predict(predictor, tmp_path / "in.nii.gz", tmp_path / "out", "--probabilities") == 0
    for name in ("in.nii.gz", "in_probabilities.nii.gz"):
        written = nib.load(str(tmp_path / "out" / name))
        for method in ("get_qform", "get_sform"):
            (theirs, their_code), (ours, our_code) = getattr(source.header, method)(coded=True), \
                getattr(written.header, method)(coded=True)
            assert int(our_code) == int(their_code)
            np.testing.assert_allclose(ours, theirs, atol=1e-6)
        np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
        assert written.shape[:3] == source.shape
    labels = nib.load(str(tmp_path / "out" / "in.nii.gz"))
    assert labels.get_data_dtype() == np.uint8 and labels.header.get_slope_inter() == (None, None) or \
        labels.header.get_slope_inter() == (1.0, 0.0)


def test_predict_writes_nothing_for_a_truncated_input_and_goes_on(predictor, tmp_path, capsys):
    inputs = tmp_path / "in"
    shutil.copytree(predictor["source"] / "images", inputs)
    _cut(inputs / "case1.nii.gz", 0.8)
    assert _predict(predictor, inputs, tmp_path / "out") == 1
    printed = capsys.readouterr().out
    assert "3 case(s): 2 written now, 0 already finished, 1 failed." in printed
    assert "FAILED case1: '" in printed and "case1.nii.gz' is truncated" in printed
    assert sorted(n for n in os.listdir(tmp_path / "out") if not n.startswith(".")) == ["case0.nii.gz", "case2.nii.gz",
                                                                                          "cases"]
    assert not (tmp_path / "out" / ".partial").exists()


def test_predict_checks_the_truth_before_inference(predictor, tmp_path, capsys):
    truth = tmp_path / "truth"
    shutil.copytree(predictor["source"] / "masks", truth)
    moved = sitk.ReadImage(str(truth / "case0.nii.gz"))
    moved.SetOrigin((11.0, -20.0, 5.0))
    sitk.WriteImage(moved, str(truth / "case0.nii.gz"))
    assert _predict(predictor, predictor["source"] / "images", tmp_path / "a", "--truth", truth) == 2
    assert "differ in origin: (10, -20, 5) vs (11, -20, 5) mm" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    shutil.copy(predictor["source"] / "masks" / "case0.nii.gz", truth / "case0.nii.gz")
    odd = sitk.ReadImage(str(truth / "case2.nii.gz"))
    array = sitk.GetArrayFromImage(odd)
    array[0, 0, 0] = 5
    changed = sitk.GetImageFromArray(array)
    changed.CopyInformation(odd)
    sitk.WriteImage(changed, str(truth / "case2.nii.gz"))
    assert _predict(predictor, predictor["source"] / "images", tmp_path / "b", "--truth", truth) == 2
    assert "case2.nii.gz' holds the label value(s) 5, which the label table does not name" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_evaluate_volumes_scores_against_the_original_label_volumes(predictor, tmp_path):
    import keras_focal
    from keras_focal.data_prep.prepared import PreparedDataset
    from keras_focal.evaluation import volume_metrics
    from keras_focal.inference import Predictor, prepared_case_volumes, score_prepared_cases
    from keras_focal.reporting.tables import truth_sources

    copied = tmp_path / "data"
    shutil.copytree(predictor["data"], copied)
    dataset = PreparedDataset(str(copied))
    model = keras_focal.load_model(predictor["model"])
    truth = read_volume(predictor["source"] / "masks" / "case0.nii.gz").array
    volumes = prepared_case_volumes(Predictor([model]), dataset, "case0")
    np.testing.assert_array_equal(volumes.truth, truth)  # the original, not the 32x32 masks rebuilt
    expected = volume_metrics(volumes.prediction, truth, spacing_zyx=volumes.spacing_zyx, classes=dataset.class_names)
    rows = score_prepared_cases(Predictor([model]), dataset, ["case0"])
    assert [row["dice"] for row in rows] == pytest.approx([row["dice"] for row in expected], nan_ok=True)
    assert {row["truth"] for row in rows} == {"original"}
    import pandas as pd

    manifest = pd.read_csv(copied / "manifest.csv")
    manifest["source_mask"] = manifest["source_mask"].str.replace("masks", "gone")
    manifest.to_csv(copied / "manifest.csv", index=False)
    rows = score_prepared_cases(Predictor([model]), PreparedDataset(str(copied)), ["case0"])
    assert truth_sources(pd.DataFrame(rows)).startswith(
        "Truth: the prepared masks rebuilt on the original grid (1 case(s), not the original truth — case0: its label "
        "volume '")


# --- RTSTRUCT written by rt-utils -------------------------------------------------------------------------------------

STUDY = {"StudyDate": "20261205", "StudyTime": "120000", "SeriesDate": "20261205", "SeriesTime": "120000",
         "StudyDescription": "test", "StudyID": "1", "AccessionNumber": "", "ReferringPhysicianName": "",
         "PatientBirthDate": "", "PatientSex": "O", "PatientAge": "060Y", "PatientName": "Test", "PatientID": "T1",
         "SeriesDescription": "test"}


def _series_with_study(ultrasound_source, folder):
    """The tilted synthetic series TRUS01 with the study attributes that rt-utils and highdicom copy into their objects."""
    series = folder / "series"
    shutil.copytree(f"{ultrasound_source}/dicom/TRUS01", series)
    for path in series.iterdir():
        dataset = pydicom.dcmread(path)
        for key, value in STUDY.items():
            if key not in dataset:
                setattr(dataset, key, value)
        dataset.save_as(path)
    return series


def test_rt_utils_contours_fill_back_to_rt_utils_masks(ultrasound_source, tmp_path):
    """A rectangle, a ring and both in one file, on the tilted synthetic series: voxel for voxel what rt-utils reads."""
    from rt_utils import RTStructBuilder

    series = _series_with_study(ultrasound_source, tmp_path)
    volume = read_dicom_volume(series)
    slices, height, width = volume.array.shape
    rectangle = np.zeros((height, width, slices), bool)  # rt-utils' masks are (rows, columns, slices)
    rectangle[2:10, 3:15, 1:4] = True
    rows, columns = np.mgrid[:height, :width]
    radius = np.hypot(rows - (height - 24), columns - (width - 24))
    ring = np.repeat(((radius < 14) & (radius > 6))[:, :, None], slices, axis=2)  # a hole, apart from the rectangle
    ring[:, :, [0, slices - 1]] = False
    builder = RTStructBuilder.create_new(dicom_series_path=str(series))
    builder.add_roi(mask=rectangle, name="rect")
    builder.add_roi(mask=ring, name="ring")
    builder.save(str(tmp_path / "rt.dcm"))
    back = RTStructBuilder.create_from(dicom_series_path=str(series), rt_struct_path=str(tmp_path / "rt.dcm"))
    for name, written in (("rect", rectangle), ("ring", ring)):
        np.testing.assert_array_equal(back.get_roi_mask_by_name(name), written)  # rt-utils' own reading
    both, notes = label_object_mask(str(tmp_path / "rt.dcm"), volume, LabelTable.parse("background,rect,ring"))
    np.testing.assert_array_equal(both, np.transpose(rectangle + 2 * ring, (2, 0, 1)).astype(np.uint8))
    assert notes == [] and int(np.count_nonzero(both == 1)) == 8 * 12 * 3  # the old fill lost a column and a row
    alone, _ = label_object_mask(str(tmp_path / "rt.dcm"), volume, LabelTable.parse("background,ring"))
    np.testing.assert_array_equal(alone, np.transpose(ring, (2, 0, 1)).astype(np.uint8))


# --- DICOM SEG written by highdicom ---------------------------------------------------------------------------------

@pytest.mark.parametrize("segmentation_type, omit_empty_frames", [
    ("BINARY", True), ("BINARY", False), ("FRACTIONAL", True), ("LABELMAP", False)])
def test_highdicom_segs_read_back_voxel_for_voxel(ultrasound_source, tmp_path, segmentation_type, omit_empty_frames):
    """Two segments that overlap (BINARY/FRACTIONAL: the higher class kept, and noted) on the tilted series."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    series = _series_with_study(ultrasound_source, tmp_path)
    volume = read_dicom_volume(series)
    sources = [pydicom.dcmread(path) for path in sorted(series.iterdir())]
    direction = np.asarray(volume.direction).reshape(3, 3)
    # The slice each source image holds, from its position (the files' order is not the series' order).
    slice_of = [int(round(float(np.linalg.solve(direction * np.asarray(volume.spacing),
                                                np.asarray(ds.ImagePositionPatient, float) - volume.origin)[2])))
                for ds in sources]
    slices, height, width = volume.array.shape
    gland = np.zeros((slices, height, width), bool)
    gland[1:4, 5:25, 6:30] = True
    lesion = np.zeros_like(gland)
    lesion[2:4, 15:30, 20:36] = True  # overlaps the gland in 2 x 10 x 10 voxels
    expected = np.maximum(gland * 1, lesion * 2).astype(np.uint8)
    if segmentation_type == "LABELMAP":
        pixels = expected[slice_of]
    elif segmentation_type == "FRACTIONAL":  # probabilities: 0.7 inside, 0.3 in a margin that must stay outside
        margin = np.zeros_like(gland)
        margin[1:4, 3:27, 4:32] = True
        pixels = np.stack([np.where(gland, 0.7, np.where(margin, 0.3, 0.0)), np.where(lesion, 0.9, 0.0)], -1)
        pixels = pixels[slice_of].astype(np.float32)
    else:
        pixels = np.stack([gland, lesion], -1)[slice_of].astype(np.uint8)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number, segment_label=label, segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=code, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for number, label, code in ((1, "gland", codes.SCT.Prostate), (2, "lesion", codes.SCT.Neoplasm))]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels, segmentation_type=segmentation_type,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=100, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="test", manufacturer_model_name="test", software_versions="1",
        device_serial_number="1", omit_empty_frames=omit_empty_frames)
    seg.save_as(str(tmp_path / "seg.dcm"))
    mask, notes = label_object_mask(str(tmp_path / "seg.dcm"), volume, LabelTable.parse("background,gland,lesion"))
    np.testing.assert_array_equal(mask, expected)
    if segmentation_type == "LABELMAP":
        assert notes == []
    else:
        assert notes == ["200 voxel(s) of 'seg.dcm' belong to two segments: the higher class index kept"]
    # One segment mapped to a class, the other left out and named.
    alone, notes = label_object_mask(str(tmp_path / "seg.dcm"), volume, LabelTable.parse("background,gland"))
    # (A label map holds one class per voxel: there the overlap is the lesion's.)
    np.testing.assert_array_equal(alone, (expected == 1) if segmentation_type == "LABELMAP" else gland)
    assert notes == ["segment(s) ['lesion'] of 'seg.dcm' are no class and were left out"]


# --- Weak cases: one-line messages naming the file or argument, before any work -------------------------------------

def test_prep_refuses_fold_counts_it_cannot_make_before_work(tmp_path, capsys):
    root = _volume_set(tmp_path / "src", cases=2)
    arguments = ["prep", "volumes", str(root / "images"), str(root / "masks")]
    with pytest.raises(SystemExit) as stopped:
        main([*arguments, str(tmp_path / "a"), "--folds", "1"])
    assert stopped.value.code == 2
    assert "argument --folds: must be at least 2 (a fold is tested on by a model trained on the others), not 1" in \
        capsys.readouterr().err
    assert main([*arguments, str(tmp_path / "b"), "--quiet"]) == 2
    assert "--folds 3 needs at least 3 cases; there are 2 to prepare (give --folds 2 or fewer, or --split FILE)" in \
        capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_decathlon_labels_map_of_names_to_values_is_explained():
    with pytest.raises(ValueError, match=r"the Decathlon's `labels` maps each label value to a class name .* maps names to "
                                         r"values, as nnU-Net v2's dataset\.json does .*`keras-focal prep nnunet`"):
        LabelTable.from_msd({"background": 0, "prostate": 1}, "'dataset.json'")


def test_export_refuses_a_file_that_is_not_a_model(tmp_path, capsys):
    sitk.WriteImage(_image(), str(tmp_path / "v.nii.gz"))
    assert main(["export", str(tmp_path / "v.nii.gz"), str(tmp_path / "out")]) == 2
    assert "v.nii.gz' is not a saved Keras model (a .keras file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
