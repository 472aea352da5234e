"""`keras-focal predict`, `evaluate --volumes`: whole volumes back in their original geometry."""

import json
import os
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from keras_focal.cli import main
from keras_focal.data_prep.dataset import PrepOptions, prepare_dataset
from keras_focal.data_prep.dicom import read_dicom_volume
from keras_focal.data_prep.prepared import PreparedDataset
from keras_focal.data_prep.sources import PROSTATE_CLASSES, find_dicom_cases, find_promise12_cases, load_dicom_case
from keras_focal.data_prep.volume import read_volume
from keras_focal.inference import prepared_case_truth
from tests.prep_fixtures import SMALL

TINY_UNET = {"base_filters": 4, "depth": 2}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Three tilted DICOM ultrasound cases and three MRI cases, small."""
    from keras_focal.data_prep.synthetic import make_promise12_like, make_ultrasound_like

    root = tmp_path_factory.mktemp("predict")
    return {
        "trus": make_ultrasound_like(str(root / "trus"), cases=3, seed=7, **SMALL),
        "mri": make_promise12_like(str(root / "mri"), cases=3, seed=7, **SMALL),
        "root": root,
    }


def _prepare(sources, kind, out, **options):
    if kind == "trus":
        cases, _ = find_dicom_cases(f"{sources['trus']}/dicom", f"{sources['trus']}/masks")
    else:
        cases, _, _ = find_promise12_cases(sources["mri"])
    prepare_dataset(cases, str(out), PROSTATE_CLASSES, PrepOptions(**options), folds=3, progress=False)
    return PreparedDataset(str(out)), cases


def _source_mask(case):
    """The source mask `Volume` of a prep `Case` (DICOM: the NRRD; PROMISE12: the segmentation)."""
    return read_volume(case.inputs[1])


def _source_image(case):
    return read_dicom_volume(case.inputs[0]) if case.loader is load_dicom_case else read_volume(case.inputs[0])


def _dice(a, b):
    a, b = a > 0, b > 0
    return 2 * np.count_nonzero(a & b) / (a.sum() + b.sum())


@pytest.mark.parametrize("kind", ["trus", "mri"])
def test_prepared_masks_map_back_onto_the_source_grid(sources, tmp_path, kind):
    dataset, cases = _prepare(sources, kind, tmp_path / "224", size=224)
    for case in cases:
        truth, geometry = prepared_case_truth(dataset, case.name)
        source = _source_image(case)
        mask = _source_mask(case)
        assert geometry.shape == truth.shape == source.array.shape
        np.testing.assert_allclose(geometry.spacing, source.spacing, atol=1e-6)
        np.testing.assert_allclose(geometry.origin, source.origin, atol=1e-6)
        np.testing.assert_allclose(geometry.direction, source.direction, atol=1e-6)
        assert _dice(truth, mask.array) >= 0.95, case.name


def test_a_case_prepared_at_its_native_size_comes_back_exactly(sources, tmp_path):
    cases, _ = find_dicom_cases(f"{sources['trus']}/dicom", f"{sources['trus']}/masks")
    native = {case.name: _source_mask(case).array.shape[1] for case in cases}
    size = max(native.values())
    chosen = [c for c in cases if native[c.name] == size]
    prepare_dataset(cases, str(tmp_path / "native"), PROSTATE_CLASSES, PrepOptions(size=size), folds=2, progress=False)
    prepare_dataset(cases, str(tmp_path / "fg"), PROSTATE_CLASSES, PrepOptions(size=size, slices="foreground"),
                    folds=2, progress=False)
    for folder in ("native", "fg"):
        dataset = PreparedDataset(str(tmp_path / folder))
        for case in chosen:
            truth, _ = prepared_case_truth(dataset, case.name)
            np.testing.assert_array_equal(truth, _source_mask(case).array)
    dataset = PreparedDataset(str(tmp_path / "fg"))
    kept = set(dataset.rows([chosen[0].name]).slice)
    dropped = sorted(set(range(_source_mask(chosen[0]).array.shape[0])) - kept)
    assert dropped, "the case has slices without prostate"
    truth, _ = prepared_case_truth(dataset, chosen[0].name)
    assert not truth[dropped].any()


@pytest.fixture(scope="module")
def prepared32(sources, tmp_path_factory):
    """The ultrasound cases prepared at 32² with 3 folds."""
    dataset, cases = _prepare(sources, "trus", tmp_path_factory.mktemp("prepared32") / "prepared", size=32)
    return {"data": dataset.path, "cases": cases}


@pytest.fixture(scope="module")
def trained(prepared32, tmp_path_factory):
    """A run trained for one epoch on `prepared32`, and its data set."""
    from keras_focal.training import RunConfig, train_run

    run = str(tmp_path_factory.mktemp("trained") / "run")
    train_run(RunConfig(data=prepared32["data"], out=run, fold=0, epochs=1, model_options=TINY_UNET, validation_fraction=0.5))
    return {"run": run, **prepared32}


def _predict(*arguments):
    return main(["predict", *map(str, arguments), "--quiet"])


def test_predict_writes_each_case_on_its_input_grid(trained, sources, tmp_path, capsys):
    out = tmp_path / "out"
    assert _predict(f"{sources['trus']}/dicom", out, "--run", trained["run"], "--probabilities") == 0
    assert "3 case(s): 3 written now, 0 already finished, 0 failed." in capsys.readouterr().out
    for case in trained["cases"]:
        source = read_dicom_volume(case.inputs[0])
        labels = sitk.ReadImage(str(out / f"{case.name}.nii.gz"))
        assert labels.GetPixelID() == sitk.sitkUInt8
        assert labels.GetSize() == source.array.shape[::-1]
        np.testing.assert_allclose(labels.GetSpacing(), source.spacing, atol=1e-6)
        np.testing.assert_allclose(labels.GetOrigin(), source.origin, atol=1e-6)
        np.testing.assert_allclose(labels.GetDirection(), source.direction, atol=1e-6)
        probabilities = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case.name}_probabilities.nii.gz")))
        assert probabilities.shape == source.array.shape + (2,)
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(probabilities.argmax(-1), sitk.GetArrayFromImage(labels))
    # A second run finds every case finished.
    assert _predict(f"{sources['trus']}/dicom", out, "--run", trained["run"], "--probabilities") == 0
    assert "0 written now, 3 already finished" in capsys.readouterr().out


def test_an_interrupted_case_is_redone(trained, sources, tmp_path, capsys):
    out = tmp_path / "out"
    case = f"{sources['trus']}/dicom/TRUS01"
    assert _predict(case, out, "--run", trained["run"]) == 0
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "TRUS01.nii.gz")))
    os.remove(out / "TRUS01.nii.gz")  # killed after its record, before the rename
    capsys.readouterr()
    assert _predict(case, out, "--run", trained["run"]) == 0
    assert "1 written now" in capsys.readouterr().out
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "TRUS01.nii.gz"))), expected)
    assert sorted(n for n in os.listdir(out) if n != ".lock") == ["TRUS01.nii.gz", "cases"]  # no temporary, no .partial


@pytest.mark.parametrize("stop", ["disk full", "ctrl-c"])
def test_a_full_disk_or_ctrl_c_leaves_no_partial_file_and_resumes(trained, sources, tmp_path, capsys, monkeypatch, stop):
    import errno

    from keras_focal.inference import files as prediction_files  # predict writes its volumes through it

    out = tmp_path / "out"
    real_write = prediction_files.write_volume_like
    calls = {"n": 0}

    def stops(volume, array, path, **options):
        calls["n"] += 1
        if calls["n"] == 2:  # the second case: its file begun, then the disk is full or Ctrl-C comes
            open(path, "wb").close()
            raise OSError(errno.ENOSPC, "No space left on device", path) if stop == "disk full" else KeyboardInterrupt
        return real_write(volume, array, path, **options)

    monkeypatch.setattr(prediction_files, "write_volume_like", stops)
    series = f"{sources['trus']}/dicom"
    status = _predict(series, out, "--run", trained["run"])
    err = capsys.readouterr().err
    if stop == "disk full":
        assert status == 1
        assert err == (f"keras-focal predict: stopped: the disk holding '{out}' is full: 1 case(s) written now, 2 not "
                       "written (the case in progress was removed). Free space and run the same command again: "
                       "finished cases are kept.\n")
    else:
        assert status == 130
        assert err == "\nkeras-focal predict: interrupted. Run the same command again to resume: finished work is kept.\n"
    assert sorted(n for n in os.listdir(out) if n != ".lock") == ["TRUS01.nii.gz", "cases"]  # no .partial, no 0-byte file

    monkeypatch.setattr(prediction_files, "write_volume_like", real_write)
    assert _predict(series, out, "--run", trained["run"]) == 0
    assert "3 case(s): 2 written now, 1 already finished, 0 failed." in capsys.readouterr().out


def test_the_predictor_is_what_predict_and_the_trainer_use(trained, sources, tmp_path):
    """The library's Predictor: the CLI's label volume, the trainer's test scores, and its arguments refused by name."""
    from keras_focal.data_prep.prepared import PreparedDataset
    from keras_focal.inference import Predictor
    from keras_focal.training.run import evaluate_model

    predictor = Predictor.from_runs([trained["run"]])
    case = f"{sources['trus']}/dicom/TRUS02"
    labels, probabilities, _ = predictor.predict_volume(read_dicom_volume(case))
    assert _predict(case, tmp_path / "cli", "--run", trained["run"]) == 0
    np.testing.assert_array_equal(labels, sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "cli" / "TRUS02.nii.gz"))))
    np.testing.assert_array_equal(labels, probabilities.argmax(-1))
    assert predictor.predict_files(case, tmp_path / "library", quiet=True) == 0  # = keras-focal predict
    assert (tmp_path / "library" / "TRUS02.nii.gz").read_bytes() == (tmp_path / "cli" / "TRUS02.nii.gz").read_bytes()

    dataset = PreparedDataset(trained["data"])
    test = dataset.split(0, 0.5)[2]
    examples = dataset.examples(test, 1)
    model = predictor.keras_models[0]
    pairs = list(Predictor([model], batch_size=4).labelled_pairs(examples))
    images, masks = dataset.load(test, 1)
    np.testing.assert_array_equal(np.stack([m for m, _ in pairs]), Predictor([model]).predict_slices(images))
    scores = evaluate_model(model, examples, dataset.class_names, 4)
    assert scores.confusion_matrix.sum() == masks.size  # every pixel of the test slices scored once

    with pytest.raises(ValueError, match=r"`tta` must be one of \('none', 'flip'\)\. Received: tta='mirror'"):
        Predictor([model], tta="mirror")
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive integer\. Received: batch_size=0"):
        Predictor([model], batch_size=0)
    with pytest.raises(ValueError, match=r"`models` must hold at least one model"):
        Predictor([])
    with pytest.raises(ValueError, match=r"`predict_volume` prepares volumes as the models' training data"):
        Predictor([model]).predict_volume(read_dicom_volume(case))
    with pytest.raises(ValueError, match=r"is not a comparison folder: it has no results\.csv"):
        Predictor.from_comparison(str(tmp_path))


def _probabilities(out, name):
    return sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{name}_probabilities.nii.gz")))


def test_an_ensemble_of_copies_equals_the_model(trained, sources, tmp_path):
    model = os.path.join(trained["run"], "last.keras")
    case = f"{sources['trus']}/dicom/TRUS02"
    assert _predict(case, tmp_path / "one", "--model", model, "--probabilities") == 0
    assert _predict(case, tmp_path / "three", "--model", model, "--model", model, "--model", model, "--probabilities") == 0
    np.testing.assert_allclose(_probabilities(tmp_path / "three", "TRUS02"), _probabilities(tmp_path / "one", "TRUS02"), atol=1e-6)


def _untrained_model(path, size, num_classes=2, seed=3):
    import keras

    from keras_focal.models import unet

    keras.utils.set_random_seed(seed)
    unet(input_shape=(size, size, 1), num_classes=num_classes, **TINY_UNET).save(path)
    return path


def _write_volume(path, array, spacing=(0.4, 0.4, 1.2)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.backend_agnostic
def test_flip_tta_makes_the_prediction_of_a_mirrored_volume_the_mirror_of_the_prediction(prepared32, tmp_path):
    # An untrained network, asymmetric; a volume at the network's size, so no resize blurs the mirror.
    model = _untrained_model(str(tmp_path / "untrained.keras"), 32)
    volume = np.random.default_rng(0).normal(100, 30, size=(5, 32, 32)).astype(np.float32)
    os.makedirs(tmp_path / "in")
    _write_volume(tmp_path / "in" / "a.nii.gz", volume)
    _write_volume(tmp_path / "in" / "b.nii.gz", volume[:, :, ::-1].copy())
    for tta in ("none", "flip"):
        out = tmp_path / tta
        assert _predict(tmp_path / "in", out, "--model", model, "--data", prepared32["data"], "--tta", tta, "--probabilities") == 0
        mirrored = _probabilities(out, "b")[:, :, ::-1]
        if tta == "flip":
            np.testing.assert_allclose(mirrored, _probabilities(out, "a"), atol=1e-6)
        else:
            assert np.abs(mirrored - _probabilities(out, "a")).max() > 1e-3  # the network alone is not symmetric


@pytest.mark.backend_agnostic
def test_a_volume_larger_than_the_network_is_predicted_at_its_own_size(prepared32, tmp_path):
    model = _untrained_model(str(tmp_path / "untrained.keras"), 32)
    volume = np.random.default_rng(1).normal(100, 30, size=(3, 96, 80)).astype(np.float32)
    _write_volume(tmp_path / "big.nii.gz", volume, spacing=(0.3, 0.5, 3.0))
    assert _predict(tmp_path / "big.nii.gz", tmp_path / "out", "--model", model, "--data", prepared32["data"]) == 0
    labels = sitk.ReadImage(str(tmp_path / "out" / "big.nii.gz"))
    assert labels.GetSize() == (80, 96, 3) and labels.GetSpacing() == pytest.approx((0.3, 0.5, 3.0))


def test_non_finite_voxels_are_noted_in_the_output_and_the_case_record(prepared32, tmp_path, capsys):
    model = _untrained_model(str(tmp_path / "untrained.keras"), 32)
    volume = np.random.default_rng(2).normal(100, 30, size=(3, 32, 32)).astype(np.float32)
    volume[1, :4, :5] = np.nan  # 20 voxels
    volume[2, 0, 0] = np.inf
    _write_volume(tmp_path / "gaps.nii.gz", volume)
    assert _predict(tmp_path / "gaps.nii.gz", tmp_path / "out", "--model", model, "--data", prepared32["data"]) == 0
    note = ("21 non-finite voxel(s) (0.68% of the volume: NaN or inf) left out of the intensity percentiles and "
            "set to 0 (black)")
    assert f"note gaps: {note}" in capsys.readouterr().out
    record = json.loads((tmp_path / "out" / "cases" / "gaps.json").read_text())
    assert any(n.startswith(note) for n in record["notes"])


def test_largest_component_postprocessing_and_the_auto_decision(trained, sources, tmp_path):
    from scipy.ndimage import label

    case = f"{sources['trus']}/dicom/TRUS03"
    assert _predict(case, tmp_path / "largest", "--run", trained["run"], "--postprocess", "largest-component") == 0
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "largest" / "TRUS03.nii.gz")))
    assert label(labels == 1)[1] <= 1
    decision = json.loads((tmp_path / "largest" / "postprocessing.json").read_text())
    assert decision == {"mode": "largest-component", "classes": ["prostate"]}
    assert _predict(case, tmp_path / "auto", "--run", trained["run"], "--postprocess", "auto") == 0
    decision = json.loads((tmp_path / "auto" / "postprocessing.json").read_text())
    prostate = decision["per_class"]["prostate"]
    assert prostate["cases"] == len(json.load(open(os.path.join(trained["run"], "config.json")))["validation_cases"])
    assert prostate["kept"] == (prostate["dice_with"] > prostate["dice_without"])
    assert decision["classes"] == (["prostate"] if prostate["kept"] else [])


def test_predict_scores_itself_against_truth_and_agrees_with_evaluate_volumes(trained, sources, tmp_path, capsys):
    import pandas as pd

    config = json.load(open(os.path.join(trained["run"], "config.json")))
    test_case = config["test_cases"][0]
    out = tmp_path / "scored"
    assert _predict(f"{sources['trus']}/dicom/{test_case}", out, "--model", os.path.join(trained["run"], "last.keras"),
                    "--truth", f"{sources['trus']}/masks") == 0
    scored = pd.read_csv(out / "volume_metrics.csv")
    assert list(scored["class"]) == ["prostate"] and list(scored.case) == [test_case]
    assert "Per-patient 3-D metrics against --truth" in (out / "volume_summary.md").read_text()
    evaluation = tmp_path / "evaluation"
    assert main(["evaluate", "--run", trained["run"], "--volumes", "--out", str(evaluation)]) == 0
    assert "HD95 (mm)" in capsys.readouterr().out
    table = pd.read_csv(evaluation / "volume_metrics.csv", dtype={"case": str})
    assert sorted(table.case) == sorted(config["test_cases"])
    row = table[table.case == test_case].iloc[0]
    # evaluate rebuilds the volume from the prepared PNG slices, predict prepares the DICOM series again:
    # the same slices reach the network, so the predictions are the same voxels.
    assert row.predicted_voxels == scored.predicted_voxels[0]
    assert abs(row.dice - scored.dice[0]) < 0.05  # the truths differ by the resize of the prepared masks


def _several_series(sources, folder):
    os.makedirs(folder)
    for case in ("TRUS01", "TRUS02"):
        for name in os.listdir(f"{sources['trus']}/dicom/{case}"):
            shutil.copy(f"{sources['trus']}/dicom/{case}/{name}", os.path.join(folder, f"{case}_{name}"))
    return folder


def _copy_into_fake_run(model, data, folder):
    os.makedirs(folder)
    shutil.copy(model, os.path.join(folder, "last.keras"))
    with open(os.path.join(folder, "config.json"), "w") as stream:
        json.dump({"data": str(data), "test_cases": []}, stream)
    return os.path.join(folder, "last.keras")


def test_bad_input_exits_2_naming_the_file_and_writes_nothing(trained, sources, tmp_path, capsys):
    dicom = f"{sources['trus']}/dicom"
    run_model = os.path.join(trained["run"], "last.keras")
    three_classes = _untrained_model(str(tmp_path / "three.keras"), 32, num_classes=3)
    other_size = _untrained_model(str(tmp_path / "size48.keras"), 48)
    other_data, _ = _prepare(sources, "trus", tmp_path / "other-prep", size=32, percentiles=(1.0, 99.0))
    other_run_model = _copy_into_fake_run(run_model, other_data.path, str(tmp_path / "other-run"))
    (tmp_path / "notes.txt").write_text("not an image\n")
    from PIL import Image

    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "flat.png")
    mixed = _several_series(sources, str(tmp_path / "mixed"))
    lone = str(tmp_path / "lone.keras")
    shutil.copy(run_model, lone)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "TRUS01.nii.gz").write_bytes(b"someone else's file")
    cases = [
        ([dicom, "--model", three_classes, "--data", trained["data"]], ["three.keras", "scores 3 classes"]),
        ([dicom, "--model", other_size, "--data", trained["data"]], ["size48.keras", "(48, 48, 1)", "(32, 32, 1)"]),
        ([dicom, "--model", run_model, "--model", other_run_model], ["cannot be averaged", "other-run", "percentiles 1-99"]),
        ([str(tmp_path / "notes.txt"), "--run", trained["run"]], ["notes.txt", "not a volume SimpleITK can read"]),
        ([str(tmp_path / "flat.png"), "--run", trained["run"]], ["flat.png", "2-D image"]),
        ([mixed, "--run", trained["run"]], ["mixed", "holds 2 series", "--series"]),
        ([dicom, "--model", lone], ["lone.keras", "not inside a run folder", "--data"]),
        ([dicom, "--run", trained["run"], "--truth", str(taken)], ["--truth", "no label volume", "TRUS02"]),
    ]
    for arguments, expected in cases:
        out = tmp_path / "refused"
        assert main(["predict", arguments[0], str(out), *arguments[1:], "--quiet"]) == 2, arguments
        message = capsys.readouterr().err
        for text in expected:
            assert text in message, (arguments, message)
        assert not out.exists(), arguments
    assert main(["predict", dicom, str(taken), "--run", trained["run"], "--quiet"]) == 2
    message = capsys.readouterr().err
    assert "TRUS01.nii.gz' exists and was written by another program" in message
    assert sorted(os.listdir(taken)) == ["TRUS01.nii.gz"] and (taken / "TRUS01.nii.gz").read_bytes() == b"someone else's file"


def test_the_prediction_of_one_input_is_not_taken_for_another(trained, sources, tmp_path, capsys):
    out = tmp_path / "out"
    assert _predict(f"{sources['trus']}/dicom/TRUS01", out, "--run", trained["run"]) == 0
    other = tmp_path / "elsewhere" / "TRUS01"
    shutil.copytree(f"{sources['trus']}/dicom/TRUS02", other)
    capsys.readouterr()
    assert _predict(other, out, "--run", trained["run"]) == 2
    assert f"was written for '{sources['trus']}/dicom/TRUS01'" in capsys.readouterr().err


def test_a_data_set_without_spacing_or_records_is_refused_or_rebuilt_from_its_manifest(prepared32, tmp_path):
    import pandas as pd

    copy = tmp_path / "copy"
    shutil.copytree(prepared32["data"], copy)
    case = prepared32["cases"][0].name
    expected, geometry = prepared_case_truth(PreparedDataset(prepared32["data"]), case)
    shutil.rmtree(copy / "cases")  # a folder another tool wrote: no per-case records, so no origin or direction
    truth, fallback = prepared_case_truth(PreparedDataset(str(copy)), case)
    np.testing.assert_array_equal(truth, expected)
    assert fallback.size == geometry.size and fallback.spacing == pytest.approx(geometry.spacing)
    assert fallback.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    manifest = pd.read_csv(copy / "manifest.csv")
    manifest.loc[0, "spacing_z"] = np.nan
    manifest.to_csv(copy / "manifest.csv", index=False)
    dataset = PreparedDataset(str(copy))
    assert not dataset.has_volumes()
    with pytest.raises(ValueError, match="manifest.csv lacks a voxel spacing or an original size"):
        prepared_case_truth(dataset, case)
