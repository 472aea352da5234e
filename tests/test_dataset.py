"""End to end: synthetic sources to PNG datasets; failures, resuming, folds and the CLI."""

import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from keras_focal import files as files_module
from keras_focal.class_weights import count_each_label, inverse_frequency_weights, median_frequency_weights
from keras_focal.cli import main
from keras_focal.data_prep import dataset as dataset_module
from keras_focal.data_prep.camvid import CAMVID_11, find_rgb_label_cases
from keras_focal.data_prep.dataset import PrepOptions, SourceInfo, assign_folds, prepare_dataset
from keras_focal.data_prep.sources import PROSTATE_CLASSES, find_dicom_cases, find_promise12_cases
from tests.prep_fixtures import png

OPTIONS = PrepOptions(size=32)


def _prepare(source, out, **kwargs):
    cases, unlabelled, problems = find_promise12_cases(source)
    return prepare_dataset(cases, str(out), PROSTATE_CLASSES, kwargs.pop("options", OPTIONS),
                           source=SourceInfo("promise12", unlabelled=tuple(unlabelled), failures=problems),
                           progress=False, **kwargs)


def test_promise12_end_to_end(promise12_source, tmp_path):
    report = _prepare(promise12_source, tmp_path / "out", workers=2)
    assert report.exit_status == 0 and report.prepared == ["Case00", "Case01", "Case02", "Case03"]
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    slices = {name: sitk.ReadImage(os.path.join(root, name)).GetDepth()
              for root, _, names in os.walk(promise12_source) for name in names
              if name.endswith(".mhd") and "segmentation" not in name}
    assert len(manifest) == sum(slices.values()) == report.total_slices
    assert sorted(os.listdir(tmp_path / "out" / "images")) == sorted(os.path.basename(p) for p in manifest.image)
    masks = [png(tmp_path / "out" / m) for m in manifest["mask"]]
    images = [png(tmp_path / "out" / i) for i in manifest["image"]]
    assert {m.shape for m in masks} == {i.shape for i in images} == {(32, 32)}
    assert set(np.unique(np.stack(masks))) == {0, 1}
    assert manifest.foreground_fraction.iloc[0] == 0.0  # empty slices at the ends
    assert manifest.groupby("case").foreground_fraction.max().gt(0).all()

    classes = json.loads((tmp_path / "out" / "classes.json").read_text())
    counts = count_each_label(masks, num_classes=2)
    assert classes["names"] == ["background", "prostate"]
    assert classes["pixel_count"] == counts.pixel_count.tolist()
    assert classes["image_pixel_count"] == counts.image_pixel_count.tolist()
    assert classes["inverse_frequency_weights"] == inverse_frequency_weights(counts).tolist()
    assert classes["median_frequency_weights"] == median_frequency_weights(counts).tolist()

    folds = pd.read_csv(tmp_path / "out" / "folds.csv")
    assert sorted(folds.case) == report.prepared and folds.case.is_unique
    assert sorted(folds.fold.unique()) == [0, 1, 2]


def test_dicom_end_to_end(ultrasound_source, tmp_path):
    cases, problems = find_dicom_cases(os.path.join(ultrasound_source, "dicom"), os.path.join(ultrasound_source, "masks"))
    report = prepare_dataset(cases, str(tmp_path / "out"), PROSTATE_CLASSES, OPTIONS, progress=False)
    assert problems == {} and report.exit_status == 0 and report.prepared == ["TRUS01", "TRUS02", "TRUS03"]
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert manifest.spacing_z.gt(0).all() and set(manifest.case) == set(report.prepared)


def test_failures_are_per_case_and_named(promise12_source, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(promise12_source, source)
    part = source / "TrainingData_Part1"
    (part / "Case00.raw").unlink()  # corrupt input
    mask = sitk.ReadImage(str(source / "TrainingData_Part2" / "Case01_segmentation.mhd"))
    mask = sitk.Cast(mask, sitk.sitkUInt8) * 3  # wrong labels
    sitk.WriteImage(mask, str(source / "TrainingData_Part2" / "Case01_segmentation.mhd"))
    spaced = sitk.ReadImage(str(source / "TrainingData_Part3" / "Case02_segmentation.mhd"))
    spaced.SetSpacing([2 * s for s in spaced.GetSpacing()])  # grid mismatch
    sitk.WriteImage(spaced, str(source / "TrainingData_Part3" / "Case02_segmentation.mhd"))
    (part / "Case03_segmentation.mhd").unlink()  # unlabelled (Case03 is in Part1)
    (part / "Case03_segmentation.raw").unlink()

    report = _prepare(source, tmp_path / "out", folds=2)
    assert report.prepared == [] and report.unlabelled == ["Case03"]
    assert "names the data file 'Case00.raw', which is missing" in report.failed["Case00"]
    assert re.fullmatch(r"mask '.*Case01_segmentation\.mhd' holds the label value\(s\) 3, which the label table does not "
                        r"name \(background = 0, prostate = 1\)\.", report.failed["Case01"])
    assert "image and mask differ in spacing" in report.failed["Case02"]
    assert report.exit_status == 1
    failed = pd.read_csv(tmp_path / "out" / "failed.csv")
    assert list(failed.case) == ["Case00", "Case01", "Case02"]
    assert "unlabelled (no segmentation found): Case03" in report.summary()
    assert os.listdir(tmp_path / "out" / "images") == []


def test_interrupted_run_resumes_without_half_cases(promise12_source, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_replace = os.replace
    calls = {"records": 0}

    def crash_on_second_record(source, target):
        if str(target).endswith(".json") and os.sep + "cases" + os.sep in str(target):
            calls["records"] += 1
            if calls["records"] == 2:
                raise KeyboardInterrupt  # the user stops the run mid-case
        return real_replace(source, target)

    monkeypatch.setattr(dataset_module.os, "replace", crash_on_second_record)
    with pytest.raises(KeyboardInterrupt):
        _prepare(promise12_source, out)
    monkeypatch.setattr(dataset_module.os, "replace", real_replace)
    assert sorted(os.listdir(out / "cases")) == ["Case00.json"]  # Case01's PNGs are there, its record is not
    assert any(name.startswith("Case01_") for name in os.listdir(out / "images"))

    report = _prepare(promise12_source, out)
    assert report.skipped == ["Case00"] and report.prepared == ["Case01", "Case02", "Case03"]
    reference = _prepare(promise12_source, tmp_path / "reference")
    assert reference.total_slices == report.total_slices
    assert (out / "manifest.csv").read_text() == (tmp_path / "reference" / "manifest.csv").read_text()
    assert sorted(os.listdir(out / "images")) == sorted(os.listdir(tmp_path / "reference" / "images"))
    assert not (out / ".partial").exists()

    with pytest.raises(ValueError, match=r"was prepared with different settings \(options\): re-run with --force"):
        _prepare(promise12_source, out, options=PrepOptions(size=48))
    report = _prepare(promise12_source, out, options=PrepOptions(size=48), force=True)
    assert len(report.prepared) == 4 and png(out / "images" / "Case00_000.png").shape == (48, 48)


def test_foreground_slices_only(promise12_source, tmp_path):
    report = _prepare(promise12_source, tmp_path / "out", options=PrepOptions(size=32, slices="foreground", min_foreground=0.01))
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert report.total_slices == len(manifest) and manifest.foreground_fraction.ge(0.01).all()


@pytest.mark.parametrize("counts, folds", [({"a": 30, "b": 20, "c": 20, "d": 10, "e": 10, "f": 5}, 3), ({"x": 1, "y": 1}, 2)])
def test_folds_are_patient_level_and_balanced(counts, folds):
    assignment = assign_folds(counts, folds, seed=1)
    assert sorted(assignment) == sorted(counts) and set(assignment.values()) == set(range(folds))
    totals = [sum(counts[c] for c, f in assignment.items() if f == k) for k in range(folds)]
    assert max(totals) - min(totals) <= max(counts.values()) // 2
    with pytest.raises(ValueError, match=r"3 patient-level folds need at least 3 cases; there are 2"):
        assign_folds({"x": 1, "y": 1}, 3)


def test_camvid_layout_end_to_end(tmp_path):
    from PIL import Image

    src = tmp_path / "camvid"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    rng = np.random.default_rng(0)
    colours = np.array([CAMVID_11["Sky"][0], CAMVID_11["Road"][0], CAMVID_11["Car"][1], (0, 0, 0)], np.uint8)
    expected = {}
    for stem in ("0001TP_006690", "0001TP_006720", "Seq05VD_f00000"):
        Image.fromarray(rng.integers(0, 255, (36, 48, 3), dtype=np.uint8)).save(src / "images" / f"{stem}.png")
        index = np.repeat(np.repeat(rng.integers(0, 4, (6, 8)), 6, axis=0), 6, axis=1)
        Image.fromarray(colours[index]).save(src / "labels" / f"{stem}_L.png")
        expected[stem] = np.array([0, 3, 8, 255], np.uint8)[index]
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(src / "images" / "0001TP_000000.png")  # no labels
    cases, problems = find_rgb_label_cases(str(src), CAMVID_11)
    assert [c.name for c in cases] == ["0001TP", "Seq05VD"] and list(problems) == ["0001TP_000000"]
    report = prepare_dataset(cases, str(tmp_path / "out"), list(CAMVID_11), PrepOptions(size=48), folds=2, source=SourceInfo(failures=problems), progress=False)
    assert report.failed == {"0001TP_000000": problems["0001TP_000000"]} and report.exit_status == 1
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    for _, row in manifest.iterrows():
        stem = os.path.splitext(os.path.basename(row.source_image))[0]
        mask = png(tmp_path / "out" / row["mask"])
        assert png(tmp_path / "out" / row.image).shape == (48, 48, 3)
        from skimage.transform import resize

        np.testing.assert_array_equal(mask, resize(expected[stem], (48, 48), order=0, preserve_range=True, anti_aliasing=False).astype(np.uint8))
    classes = json.loads((tmp_path / "out" / "classes.json").read_text())
    assert classes["names"][:3] == ["Sky", "Building", "Pole"] and classes["pixel_count"][1] == 0
    assert classes["inverse_frequency_weights"][1] == 0.0 and classes["median_frequency_weights"][1] is None


def test_cli_exit_statuses(promise12_source, tmp_path, capsys):
    assert main(["prep", "promise12", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "keras-focal prep promise12: error: PROMISE12 folder" in capsys.readouterr().err
    assert main(["prep", "promise12", promise12_source, str(tmp_path / "out"), "--size", "32", "--quiet", "--workers", "2"]) == 0
    assert "4 cases" in capsys.readouterr().out and (tmp_path / "out" / "folds.csv").exists()
    assert main(["prep", "promise12", promise12_source, str(tmp_path / "out"), "--size", "32", "--quiet"]) == 0
    assert "0 prepared now, 4 already finished" in capsys.readouterr().out
    assert main(["prep", "dicom", promise12_source, str(tmp_path / "d"), "--masks", str(tmp_path / "nowhere")]) == 2
    assert "mask folder" in capsys.readouterr().err


def test_a_full_disk_stops_the_run_with_a_summary_and_removes_the_partial_case(promise12_source, tmp_path, monkeypatch):
    import errno

    out = tmp_path / "out"
    real_write = dataset_module._write_png
    calls = {"n": 0}

    def fills_the_disk(path, array):
        calls["n"] += 1
        if calls["n"] > 20:  # Case00 fits, Case01 meets the full disk
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return real_write(path, array)

    monkeypatch.setattr(dataset_module, "_write_png", fills_the_disk)
    report = _prepare(promise12_source, out)
    assert report.exit_status == 1
    assert report.prepared == ["Case00"] and list(report.failed) == ["Case01"]
    summary = report.summary()
    assert f"FAILED Case01: no space left on device in '{out}' (what the case wrote was removed)" in summary
    assert f"STOPPED: the disk holding '{out}' is full; 2 case(s) not tried. Free space and run the same command again" in summary
    assert not (out / ".partial").exists()
    assert not [n for n in os.listdir(out / "images") if n.startswith("Case01")]

    monkeypatch.setattr(dataset_module, "_write_png", real_write)
    report = _prepare(promise12_source, out)
    assert report.exit_status == 0 and report.skipped == ["Case00"] and report.prepared == ["Case01", "Case02", "Case03"]


def test_ctrl_c_prints_one_line_removes_the_case_in_progress_and_resumes(promise12_source, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    real_write = dataset_module._write_png
    calls = {"n": 0}

    def interrupted(path, array):
        calls["n"] += 1
        if calls["n"] > 20:  # Case00 is committed, Ctrl-C comes inside Case01
            raise KeyboardInterrupt
        return real_write(path, array)

    monkeypatch.setattr(dataset_module, "_write_png", interrupted)
    command = ["prep", "promise12", promise12_source, str(out), "--size", "32", "--quiet"]
    assert main(command) == 130
    err = capsys.readouterr().err
    assert err == "\nkeras-focal prep promise12: interrupted. Run the same command again to resume: finished work is kept.\n"
    assert not (out / ".partial").exists()
    assert sorted(os.listdir(out / "cases")) == ["Case00.json"]

    monkeypatch.setattr(dataset_module, "_write_png", real_write)
    assert main(command) == 0
    assert "4 cases (" in capsys.readouterr().out and len(os.listdir(out / "cases")) == 4


def test_a_disk_full_while_writing_the_manifest_is_reported(promise12_source, tmp_path, monkeypatch):
    import errno

    def no_space(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(dataset_module, "write_text_atomically", no_space)
    report = _prepare(promise12_source, tmp_path / "out")
    assert report.exit_status == 1 and len(report.prepared) == 4
    assert "manifest.csv, classes.json and folds.csv could not be written (the next run rebuilds them)" in report.summary()


@pytest.mark.parametrize("problem", ["file", "read-only"])
def test_an_output_that_cannot_be_written_is_refused(promise12_source, tmp_path, capsys, monkeypatch, problem):
    out = tmp_path / "out"
    if problem == "file":
        out.write_text("not a folder")
        message = f"the output folder '{out}' is an existing file, not a folder: choose a folder."
    else:
        # A read-only mount, as os.access reports it (the suite may run as root, for whom chmod does not bind).
        monkeypatch.setattr(os, "access", lambda path, mode: False)
        monkeypatch.setattr(files_module, "_read_only", lambda path: True)
        out = out / "prepared"
        message = f"cannot write into '{tmp_path}' (for the output folder '{out}'): it is on a read-only file system."
    assert main(["prep", "promise12", promise12_source, str(out), "--size", "32", "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_a_folder_being_prepared_is_refused_naming_the_holder(promise12_source, tmp_path, capsys):
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom keras_focal.files import FolderLock\n"
         "with FolderLock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(120)\n", str(tmp_path / "out")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["prep", "promise12", promise12_source, str(tmp_path / "out"), "--size", "32", "--quiet"]) == 2
        assert f"is in use by process {holder.pid} on " in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


SLOW_PREP = """
import sys, time
import numpy as np
from keras_focal.data_prep.dataset import Case, CaseData, PrepOptions, prepare_dataset

def slow(case, options):
    time.sleep(300)
    return CaseData(np.zeros((1, 8, 8), np.uint8), np.zeros((1, 8, 8), np.uint8), [("a", "b")])

cases = [Case(f"c{i}", slow) for i in range(4)]
prepare_dataset(cases, sys.argv[1], ["background", "foreground"], PrepOptions(size=8), workers=2, progress=False)
"""


INTERRUPTED_PREP = """
import os, sys, time
import numpy as np
from keras_focal.data_prep.dataset import Case, CaseData, PrepOptions, prepare_dataset
from keras_focal.errors import run_command

def slow(case, options):
    open(os.path.join(sys.argv[2], str(os.getpid())), "w").close()  # this worker is inside a case
    time.sleep(300)
    return CaseData(np.zeros((1, 8, 8), np.uint8), np.zeros((1, 8, 8), np.uint8), [("a", "b")])

cases = [Case(f"c{i}", slow) for i in range(4)]
sys.exit(run_command("prep test", lambda args: prepare_dataset(
    cases, sys.argv[1], ["background", "foreground"], PrepOptions(size=8), workers=2, progress=False), None))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc")
def test_ctrl_c_stops_the_workers_at_once_with_one_message(tmp_path):
    """Ctrl-C reaches every process of the group: each worker printed its own KeyboardInterrupt traceback."""
    import signal
    import subprocess
    import sys
    import time

    out, started = tmp_path / "out", tmp_path / "started"
    started.mkdir()
    # As from a terminal: SIGINT at its default, whatever this test process inherited (a shell's background job, as
    # CI may run the suite, ignores SIGINT, and a child started from it would never see Ctrl-C).
    parent = subprocess.Popen([sys.executable, "-c", INTERRUPTED_PREP, str(out), str(started)], stderr=subprocess.PIPE,
                              text=True, start_new_session=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(os.listdir(started)) < 2:
            time.sleep(0.2)
        workers = [int(name) for name in os.listdir(started)]
        assert len(workers) == 2, "the pool's workers never reached their cases"  # (each inside a 300 s case)
        os.killpg(parent.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
        _, err = parent.communicate(timeout=60)  # not the 300 s of the cases in progress
        assert parent.returncode == 130
        assert err == "\nkeras-focal prep test: interrupted. Run the same command again to resume: finished work is kept.\n"
        assert not [p for p in workers if _alive(p)], "workers outlived the interrupt"
        assert not (out / ".partial").exists()
    finally:
        parent.kill()
        for pid in _children(parent.pid) if _alive(parent.pid) else []:
            os.kill(pid, signal.SIGKILL)


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as stream:
        return [int(p) for p in stream.read().split()]


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="reads /proc")
def test_workers_stop_when_prep_is_killed(tmp_path):
    """kill -9 of `prep --workers N` used to leave its workers writing into OUT as orphans."""
    import signal
    import subprocess
    import sys
    import time

    parent = subprocess.Popen([sys.executable, "-c", SLOW_PREP, str(tmp_path / "out")])
    try:
        deadline = time.monotonic() + 60
        workers = []
        while time.monotonic() < deadline:
            workers = [p for p in _children(parent.pid) if _alive(p)]
            if len(workers) >= 2:
                break
            time.sleep(0.2)
        assert len(workers) >= 2, "the pool's workers never started"
        time.sleep(1.0)  # the workers are inside a case
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.1)
        assert not [p for p in workers if _alive(p)], "workers outlived their parent"
    finally:
        parent.kill()
        for pid in _children(parent.pid) if _alive(parent.pid) else []:
            os.kill(pid, signal.SIGKILL)
