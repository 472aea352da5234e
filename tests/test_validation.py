"""Issue 24: every input validated before work, refusals that leave nothing, every damaged file named.

Each test reproduces one fault class that used to finish with exit status 0
and a wrong result, a traceback, or files left behind.
"""

import errno
import json
import math
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from keras_focal.cli import main
from keras_focal.data_prep.prepared import PreparedDataset, check_class_names
from keras_focal.data_prep.slicing import normalize_intensity
from keras_focal.training import RunConfig, RunSetupError, train_run
from keras_focal.training import callbacks as callbacks_module
from keras_focal.training.comparison import CompareConfig, compare

TINY = {"epochs": 2, "model_options": {"base_filters": 4, "depth": 2}, "deterministic": True}


def _config(data, out, **kwargs):
    return RunConfig(data=str(data), out=str(out), **(TINY | kwargs))


@pytest.fixture
def copied(prepared_trus, tmp_path):
    """A private copy of the prepared set, to damage."""
    target = tmp_path / "data"
    shutil.copytree(prepared_trus, target)
    return target


def _train_argv(data, out, *extra):
    return ["train", "--data", str(data), "--out", str(out), "--model", "unet", "--loss", "ce", "--optimizer", "adam",
            "--fold", "0", "--epochs", "1", "--model-options", '{"base_filters": 4, "depth": 2}', *extra]


# --- mask encodings ------------------------------------------------------------

@pytest.mark.parametrize("mode, message", [
    ("I;16", r"a 16-bit grey PNG: the training pipeline decodes PNGs to 8 bits, which turns class indices 0\.\.255 into 0 "
             r"\(PIL mode I;16\)"),
    ("P", r"a palette PNG: the training pipeline would read the brightness of its colours, not the palette indices "
          r"\(PIL mode P\)"),
])
def test_a_mask_in_another_png_mode_is_refused_with_its_file_and_mode(copied, mode, message):
    import tensorflow as tf

    mask_name = pd.read_csv(copied / "manifest.csv")["mask"].iloc[3]
    path = copied / mask_name
    labels = np.asarray(Image.open(path))
    assert labels.max() == 1  # a slice showing the prostate
    if mode == "I;16":
        Image.fromarray(labels.astype(np.uint16)).save(path)
    else:
        picture = Image.fromarray(labels, mode="L").convert("P")
        picture.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
        picture.save(path)
    reread = Image.open(path)
    assert reread.mode == mode and np.array_equal(np.asarray(reread), labels)  # PIL still reads the indices...
    decoded = tf.io.decode_png(tf.io.read_file(str(path)), channels=1)[..., 0].numpy()
    assert not np.array_equal(decoded, labels)  # ...the pipeline does not: the old check let it through
    with pytest.raises(ValueError, match=rf"has 1 bad slice file\(s\):\n  '{path}': {message}\. Masks must be 8-bit"):
        PreparedDataset(copied).check()


def test_the_check_and_the_pipeline_read_an_accepted_mask_alike(prepared_trus):
    dataset = PreparedDataset(prepared_trus)
    dataset.check()
    _, masks = dataset.load(sorted(set(dataset.manifest.case)), 1)
    expected = [np.asarray(Image.open(os.path.join(prepared_trus, p))) for p in dataset.rows(sorted(set(dataset.manifest.case)))["mask"]]
    np.testing.assert_array_equal(masks, np.stack(expected))
    assert dataset.ignore_label == 255


def test_the_ignore_label_is_read_from_classes_json(copied):
    classes = json.loads((copied / "classes.json").read_text())
    classes["ignore_label"] = 200
    (copied / "classes.json").write_text(json.dumps(classes))
    mask_name = pd.read_csv(copied / "manifest.csv")["mask"].iloc[0]
    labels = np.asarray(Image.open(copied / mask_name)).copy()
    labels[0, 0] = 255  # the default ignore label is no longer one
    Image.fromarray(labels).save(copied / mask_name)
    dataset = PreparedDataset(copied)
    assert dataset.ignore_label == 200
    with pytest.raises(ValueError, match=r"label\(s\) \[255\] out of range for 2 classes \(allowed: 0\.\.1, or 200 = ignore\)"):
        dataset.check()


# --- folds.csv -----------------------------------------------------------------

def _rewrite_folds(folder, change):
    folds = pd.read_csv(folder / "folds.csv")
    folds = change(folds)
    folds.to_csv(folder / "folds.csv", index=False)
    return folds


@pytest.mark.parametrize("change, message", [
    (lambda f: pd.concat([f, f.iloc[[0]].assign(fold=1 - f.fold.iloc[0])]),
     r"folds\.csv' lists 1 case\(s\) more than once: \['TRUS\d\d'\]\. A case in two folds would be trained on and tested on"),
    (lambda f: f.iloc[1:], r"folds\.csv' gives no fold to 1 case\(s\) of manifest\.csv: \['TRUS\d\d'\]; they would never be used"),
    (lambda f: f.assign(fold=f.fold * 2), r"folds\.csv': fold\(s\) \[1\] have no case"),
    (lambda f: f.assign(fold=0), r"folds\.csv' has a single fold"),
    (lambda f: f.assign(fold=f.fold.astype(str) + "a"), r"`fold` must hold integers >= 0"),
])
def test_folds_are_validated_against_the_manifest(copied, change, message):
    _rewrite_folds(copied, change)
    with pytest.raises(ValueError, match=message):
        PreparedDataset(copied)


def test_a_case_in_two_folds_refuses_train_with_exit_2_and_no_run_folder(copied, tmp_path, capsys):
    _rewrite_folds(copied, lambda f: pd.concat([f, f.iloc[[0]].assign(fold=1 - f.fold.iloc[0])]))
    assert main(_train_argv(copied, tmp_path / "run")) == 2
    assert "more than once" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# --- classes.json ---------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    (lambda c: c | {"names": ["tissue", "tissue"]}, r"`names` in '.*classes\.json' must be unique .*repeated: \['tissue'\]"),
    (lambda c: c | {"names": c["names"] + ["extra"]},
     r"`pixel_count` has 2 entries for 3 class names \['background', 'prostate', 'extra'\]: the names and the counts disagree"),
    (lambda c: {k: v for k, v in c.items() if k != "names"}, r"classes\.json' has no `names`"),
    (lambda c: {k: v for k, v in c.items() if k != "per_case"}, r"classes\.json' has no `per_case`"),
    (lambda c: c | {"per_case": {k: {"pixel_count": [1]} for k in c["per_case"]}},
     r"`per_case` of case 'TRUS\d\d' has 1 pixel counts for 2 class names"),
    (lambda c: c | {"ignore_label": 1}, r"`ignore_label` must be an integer in 2\.\.255"),
])
def test_classes_json_is_validated(copied, change, message):
    classes = json.loads((copied / "classes.json").read_text())
    (copied / "classes.json").write_text(json.dumps(change(classes)))
    with pytest.raises(ValueError, match=message):
        PreparedDataset(copied)


def test_classes_json_that_is_not_json_is_named(copied, tmp_path, capsys):
    (copied / "classes.json").write_text('{"names": ["a", "b"\x01')
    assert main(_train_argv(copied, tmp_path / "run")) == 2
    assert f"'{copied / 'classes.json'}' is not valid JSON" in capsys.readouterr().err


def test_repeated_class_names_are_refused_by_prep(ultrasound_source, tmp_path, capsys):
    out = tmp_path / "prepared"
    status = main(["prep", "dicom", f"{ultrasound_source}/dicom", str(out), "--masks", f"{ultrasound_source}/masks",
                   "--class-names", "tissue,tissue", "--quiet"])
    assert status == 2
    assert "--class-names must be unique (each names one class index); repeated: ['tissue']" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ValueError, match=r"must be at least two non-empty names"):
        check_class_names(["only"])


# --- the grid -------------------------------------------------------------------

def test_a_grid_with_repeated_entries_is_refused():
    with pytest.raises(ValueError, match=r"`folds` lists \[0\] more than once \(\[0, 0\]\): each run of the grid would be trained once"):
        CompareConfig(data="d", out="o", folds=[0, 0])
    with pytest.raises(ValueError, match=r"`seeds` lists \[0\] more than once"):
        CompareConfig(data="d", out="o", seeds=[0, 0])


@pytest.mark.parametrize("text, message", [
    ("losses: ce", r"`losses` must be a list of names, e.g. losses: \[ce, adfl\]\. Received: 'ce'"),
    ("folds: 0", r"`folds` must be a list of integers >= 0, e.g. folds: \[0, 1, 2\]\. Received: 0"),
    ("folds:", r"`folds` is empty: give a list of integers >= 0"),
    ("folds: [0, x]", r"`folds` must be a list of integers >= 0\. Received: \[0, 'x'\] \('x' is not\)"),
    ("run_options: 3", r"`run_options` must be a mapping"),
    ("learning_rate: fast", r"`learning_rate` must be a number\. Received: 'fast'"),
])
def test_yaml_options_of_the_wrong_type_name_the_key(tmp_path, text, message):
    path = tmp_path / "grid.yaml"
    path.write_text(f"data: d\nout: o\n{text}\n")
    with pytest.raises(ValueError, match=message):
        CompareConfig.from_yaml(str(path))


def test_yaml_reads_an_exponent_without_a_dot_as_a_number(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("data: d\nout: o\nlearning_rate: 5e-4\n")  # YAML 1.1: the string '5e-4'
    assert CompareConfig.from_yaml(str(path)).fixed_learning_rate() == 5e-4


def test_compare_cli_refuses_repeated_folds_before_work(prepared_trus, tmp_path, capsys):
    out = tmp_path / "cmp"
    status = main(["compare", "--data", prepared_trus, "--out", str(out), "--models", "unet", "--losses", "ce",
                   "--folds", "0", "0", "--epochs", "1"])
    assert status == 2 and "`folds` lists [0] more than once" in capsys.readouterr().err
    assert not out.exists()


# --- numbers ---------------------------------------------------------------------

@pytest.mark.parametrize("name, value, allowed", [
    ("learning_rate", math.inf, "> 0"), ("learning_rate", math.nan, "> 0"), ("momentum", math.nan, "in [0, 1)"),
    ("momentum", 1.0, "in [0, 1)"), ("weight_decay", math.nan, ">= 0"), ("weight_decay", -1e-4, ">= 0"),
    ("gamma", math.inf, ">= 0"), ("gamma", -1.0, ">= 0"), ("drop_factor", math.inf, "in (0, 1]"),
    ("learning_rate", "5e-4", "> 0"),
])
def test_every_numeric_option_is_finite_and_in_range(name, value, allowed):
    with pytest.raises(ValueError, match=rf"`{name}` must be a finite number {re.escape(allowed)}\. Received: {name}="):
        RunConfig(data="d", out="o", **{name: value})


@pytest.mark.parametrize("flag, value", [("--learning-rate", "inf"), ("--momentum", "nan"), ("--weight-decay", "nan"),
                                         ("--gamma", "-1")])
def test_train_refuses_non_finite_options_and_writes_nothing(prepared_trus, tmp_path, capsys, flag, value):
    out = tmp_path / "run"
    assert main(_train_argv(prepared_trus, out, flag, value)) == 2
    assert "must be a finite number" in capsys.readouterr().err
    assert not out.exists()


def test_intensity_scaling_leaves_non_finite_voxels_out_and_says_so():
    volume = np.random.default_rng(0).normal(100.0, 20.0, (4, 32, 32)).astype(np.float32)
    volume.flat[::30] = np.inf  # ~3% of the voxels
    volume.flat[1::97] = np.nan
    notes = []
    scaled = normalize_intensity(volume, notes=notes)
    finite = np.isfinite(volume)
    assert len(np.unique(scaled[finite])) > 200  # the tissue keeps its grey levels (it had 1-3 before)
    assert not scaled[~finite].any()
    bad = int((~finite).sum())
    assert notes == [f"{bad} non-finite voxel(s) ({100 * bad / volume.size:.2g}% of the volume: NaN or inf) left out of "
                     "the intensity percentiles and set to 0 (black)"]
    with pytest.raises(ValueError, match=r"every one of the volume's 8 voxels is NaN or infinite"):
        normalize_intensity(np.full((2, 2, 2), np.nan))
    notes = []
    assert not normalize_intensity(np.zeros((2, 4, 4)), notes=notes).any()
    assert notes == ["the image volume is constant (0 between its percentiles): its slices are all black"]


# --- refusals leave nothing ---------------------------------------------------------

def test_train_with_a_cache_path_that_is_a_file_writes_nothing(prepared_trus, tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.write_text("a file")
    out = tmp_path / "run"
    assert main(_train_argv(prepared_trus, out, "--cache", str(cache), "--input", "stream")) == 2
    assert f"the --cache folder '{cache}' is an existing file, not a folder" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("command", ["train", "compare"])
def test_an_unwritable_output_is_refused_before_work(prepared_trus, tmp_path, capsys, command):
    out = tmp_path / "taken"
    out.write_text("a file")
    argv = _train_argv(prepared_trus, out) if command == "train" else [
        "compare", "--data", prepared_trus, "--out", str(out), "--models", "unet", "--losses", "ce", "--folds", "0", "--epochs", "1"]
    assert main(argv) == 2
    assert f"'{out}' is an existing file, not a folder" in capsys.readouterr().err
    assert out.read_text() == "a file"


def test_prep_refuses_an_output_inside_its_input(promise12_source, tmp_path, capsys):
    source = tmp_path / "src"
    shutil.copytree(promise12_source, source)
    before = sorted(os.listdir(source))
    assert main(["prep", "promise12", str(source), str(source / "prepared"), "--quiet"]) == 2
    assert f"the output '{source / 'prepared'}' lies inside the input '{source}'" in capsys.readouterr().err
    assert sorted(os.listdir(source)) == before


# --- run files: damaged, changed, lost --------------------------------------------------

def _unfinished_run(data, out, monkeypatch, **kwargs):
    """A run killed after its first epoch (its state saved)."""
    original = callbacks_module.RunState.on_epoch_end

    def killed(self, epoch, logs=None):
        original(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(callbacks_module.RunState, "on_epoch_end", killed)
    with pytest.raises(KeyboardInterrupt):
        train_run(_config(data, out, **kwargs), verbose=0)
    monkeypatch.setattr(callbacks_module.RunState, "on_epoch_end", original)
    assert json.loads((out / "state.json").read_text())["epoch"] == 1


def _truncate(path):
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 3])


@pytest.mark.parametrize("damage, message", [
    (lambda run: _truncate(run / "state.json"), r"'{run}/state\.json', the saved state of the run in '{run}', is damaged"),
    (lambda run: _truncate(run / "state-epoch0001.weights.h5"),
     r"'{run}/state-epoch0001\.weights\.h5', the weights of epoch 1 of the run in '{run}', is damaged \(truncated or not HDF5"),
    (lambda run: (run / "state-epoch0001.weights.h5").unlink(),
     r"'{run}/state-epoch0001\.weights\.h5', the weights of epoch 1 that '{run}/state\.json' names, is missing"),
])
def test_damaged_run_state_is_named_in_train_and_compare(prepared_trus, tmp_path, monkeypatch, capsys, damage, message):
    run = tmp_path / "cmp" / "runs" / "unet" / "ce-adam" / "fold0-seed0"
    _unfinished_run(prepared_trus, run, monkeypatch, loss="ce", init_dir=str(tmp_path / "cmp" / "initial_weights"))
    damage(run)
    expected = message.format(run=re.escape(str(run)))
    with pytest.raises(RunSetupError, match=expected + r".*Start the run again with `keras-focal train --force`"):
        train_run(_config(prepared_trus, run, loss="ce", init_dir=str(tmp_path / "cmp" / "initial_weights")), resume=True, verbose=0)
    grid = CompareConfig(data=prepared_trus, out=str(tmp_path / "cmp"), models=["unet"], losses=["ce"], folds=[0],
                         run_options={k: v for k, v in TINY.items()})
    with pytest.raises(RunSetupError, match=expected):
        compare(grid, verbose=0, log=lambda line: None)
    # --force starts again
    restarted = train_run(_config(prepared_trus, run, loss="ce", init_dir=str(tmp_path / "cmp" / "initial_weights")),
                          verbose=0, force=True)
    assert restarted["epochs_run"] == 2


def test_resume_on_re_prepared_data_is_refused(copied, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _unfinished_run(copied, run, monkeypatch)
    assert len(json.loads((run / "config.json").read_text())["data_fingerprint"]) == 64
    _rewrite_folds(copied, lambda f: f.assign(fold=1 - f.fold))  # the folds reassigned
    with pytest.raises(RunSetupError, match=rf"'{re.escape(str(run))}' holds a run started on other data: .* Resuming would mix two splits"):
        train_run(_config(copied, run), resume=True, verbose=0)


def test_a_full_disk_while_saving_state_stops_cleanly_and_resumes(prepared_trus, tmp_path, monkeypatch, capsys):
    import keras

    reference = train_run(_config(prepared_trus, tmp_path / "reference"), verbose=0)
    original = keras.Model.save_weights

    def full_at_epoch_two(self, path, *args, **kwargs):
        if "epoch0002" in str(path):
            with open(path, "wb") as stream:
                stream.write(b"\x89HDF half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", full_at_epoch_two)
    run = tmp_path / "run"
    argv = ["train", "--data", prepared_trus, "--out", str(run), "--model", "unet", "--loss", "adfl", "--epochs", "2",
            "--model-options", '{"base_filters": 4, "depth": 2}', "--deterministic"]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert f"stopped: the state of epoch 2 could not be saved in '{run}' (the disk is full)" in error
    assert "run the same command with --resume" in error
    assert sorted(n for n in os.listdir(run) if n.startswith("state") or "tmp-" in n) == ["state-epoch0001.weights.h5", "state.json"]
    monkeypatch.setattr(keras.Model, "save_weights", original)
    assert main(argv + ["--resume"]) == 0
    resumed = pd.read_csv(run / "history.csv")
    expected = pd.read_csv(tmp_path / "reference" / "history.csv")
    np.testing.assert_allclose(resumed[["loss", "val_loss"]], expected[["loss", "val_loss"]], rtol=1e-5)
    assert json.loads((run / "metrics.json").read_text())["mdsc"] == pytest.approx(reference["mdsc"], rel=1e-5)


# --- what was trained on and evaluated -----------------------------------------------------

def test_a_class_absent_from_the_training_cases_is_warned_and_recorded(copied, tmp_path, capsys):
    classes = json.loads((copied / "classes.json").read_text())
    for counts in classes["per_case"].values():
        counts["pixel_count"][1] = 0
    (copied / "classes.json").write_text(json.dumps(classes))
    assert main(_train_argv(copied, tmp_path / "run")) == 0
    warning = "class(es) ['prostate'] have no labelled pixel in the"
    assert f"keras-focal train: warning: {warning}" in capsys.readouterr().err
    assert warning in json.loads((tmp_path / "run" / "metrics.json").read_text())["warnings"][0]


def test_evaluate_best_without_a_best_state_says_it_scored_the_last_model(prepared_trus, tmp_path, monkeypatch):
    run = tmp_path / "cmp" / "runs" / "unet" / "ce-adam" / "fold0-seed0"
    options = {"loss": "ce", "evaluate": "best", "init_dir": str(tmp_path / "cmp" / "initial_weights")}
    _unfinished_run(prepared_trus, run, monkeypatch, **options)
    (run / "best-state.weights.h5").unlink()  # lost
    grid = CompareConfig(data=prepared_trus, out=str(tmp_path / "cmp"), models=["unet"], losses=["ce"], folds=[0],
                         run_options=TINY | {"evaluate": "best"})
    lines = []
    table = compare(grid, verbose=0, log=lines.append)
    assert table.evaluated.tolist() == ["last"]
    assert pd.read_csv(tmp_path / "cmp" / "results.csv").evaluated.tolist() == ["last"]
    assert any("warning: --evaluate best: no best state was kept" in line for line in lines)


# --- evaluate, load_model -------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(prepared_trus, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluated") / "run"
    train_run(_config(prepared_trus, out, epochs=1, loss="ce"), verbose=0)
    return out


def test_a_truncated_keras_file_is_called_damaged(trained_run, tmp_path, prepared_trus, capsys):
    import keras_focal

    damaged = tmp_path / "model.keras"
    damaged.write_bytes((trained_run / "last.keras").read_bytes()[:5000])
    with pytest.raises(ValueError, match=rf"'{re.escape(str(damaged))}' is damaged \(not a complete \.keras archive"):
        keras_focal.load_model(str(damaged))
    assert main(["evaluate", "--model", str(damaged), "--data", prepared_trus, "--fold", "0", "--out", str(tmp_path / "e")]) == 2
    assert "is damaged" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_evaluate_refuses_an_unwritable_out_before_predicting(trained_run, tmp_path, capsys, monkeypatch):
    from keras_focal.inference import Predictor

    out = tmp_path / "taken"
    out.write_text("a file")
    monkeypatch.setattr(Predictor, "labelled_pairs", lambda *a: pytest.fail("predicted before checking --out"))
    assert main(["evaluate", "--run", str(trained_run), "--out", str(out)]) == 2
    assert f"the evaluation folder '{out}' is an existing file" in capsys.readouterr().err


def test_evaluate_is_locked_and_its_outputs_appear_together(trained_run, tmp_path, capsys, monkeypatch):
    from keras_focal.files import FolderLock
    from keras_focal.inference import evaluate as reports

    out = tmp_path / "evaluation"
    assert main(["evaluate", "--run", str(trained_run), "--out", str(out)]) == 0
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    assert "evaluation.json" in before and "overlay_best.png" in before
    with FolderLock(tmp_path, name=".evaluation.lock"):  # another evaluation at work
        assert main(["evaluate", "--run", str(trained_run), "--out", str(out)]) == 2
    assert f"another evaluation is writing '{out}'" in capsys.readouterr().err

    original = reports.write_evaluation

    def killed_midway(result, rows, images, masks, predictions, folder):
        with open(os.path.join(folder, "evaluation.json"), "w") as stream:
            stream.write("{half")
        raise KeyboardInterrupt

    monkeypatch.setattr(reports, "write_evaluation", killed_midway)
    assert main(["evaluate", "--run", str(trained_run), "--out", str(out)]) == 130  # Ctrl-C: one line, exit 130
    assert capsys.readouterr().err.endswith("keras-focal evaluate: interrupted. Run the same command again to resume: "
                                            "finished work is kept.\n")
    monkeypatch.setattr(reports, "write_evaluation", original)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before  # the previous outputs, whole
    assert [n for n in os.listdir(tmp_path) if "tmp-" in n or "old-" in n] == []  # nothing half-written beside it


# --- DICOM names and sizes ---------------------------------------------------------------

def test_a_dicom_case_with_spaces_in_its_name_finds_its_mask(ultrasound_source, tmp_path):
    from keras_focal.data_prep.sources import find_dicom_cases

    dicom, masks = tmp_path / "dicom", tmp_path / "masks"
    shutil.copytree(f"{ultrasound_source}/dicom", dicom)
    shutil.copytree(f"{ultrasound_source}/masks", masks)
    os.rename(dicom / "TRUS01", dicom / "Patient ö 01")
    os.rename(masks / "TRUS01.nrrd", masks / "Patient ö 01.nrrd")
    cases, problems = find_dicom_cases(str(dicom), str(masks))
    assert problems == {}
    assert "Patient_01" in [case.name for case in cases]  # the sanitised name names the files


def test_a_dicom_slice_of_another_size_is_named(tmp_path):
    import pydicom

    from keras_focal.data_prep.dicom import read_dicom_volume
    from keras_focal.data_prep.volume import CaseError

    folder = tmp_path / "CT5N"
    shutil.copytree(os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files", "dicomdirtests", "98892001", "CT5N"),
                    folder)
    name = sorted(os.listdir(folder))[1]
    header = pydicom.dcmread(folder / name)
    pixels = header.pixel_array[:-4]
    header.PixelData, header.Rows = pixels.tobytes(), pixels.shape[0]
    header.save_as(folder / name)
    columns, rows = header.Columns, header.Rows
    with pytest.raises(CaseError, match=rf"'{re.escape(str(folder / name))}' is {columns}x{rows} pixels; 4 other slice\(s\) "
                                        rf"of its series in '.*CT5N' are {columns}x{rows + 4}\."):
        read_dicom_volume(str(folder))

