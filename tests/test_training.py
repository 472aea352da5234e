"""Training runs and the comparison grid, end to end on tiny data."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest

from keras_focal.class_weights import inverse_frequency_weights
from keras_focal.cli import main
from keras_focal.run_folder import read_comparison_results as read_results
from keras_focal.training import RunConfig, RunSetupError, train_run
from keras_focal.training import callbacks as callbacks_module
from keras_focal.training.comparison import CompareConfig, compare

# The trainer runs on TensorFlow and on JAX: CI runs this file on both backends.
pytestmark = pytest.mark.backend_agnostic

TINY = {"epochs": 2, "model_options": {"base_filters": 4, "depth": 2}}


def _tensorboard_scalars(folder):
    """`{tag: {step: value}}` of the TensorBoard event files in `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return {tag: {e.step: float(make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)}
            for tag in events.Tags()["tensors"]}


def _config(data, out, **kwargs):
    return RunConfig(data=data, out=str(out), **(TINY | kwargs))


@pytest.fixture(scope="module")
def tiny_comparison(prepared_trus, tmp_path_factory):
    """A 4-run grid (CE and ADFL on both folds), run once for the tests below, counting what it builds and reads.

    The grid order interleaves the two starting-weight sets (fold 0, fold 1,
    fold 0, fold 1), so building each set once needs the runs of a set to
    run one after another.
    """
    from keras_focal.data_prep.prepared import PreparedDataset
    from keras_focal.model_names import ModelName

    out = tmp_path_factory.mktemp("tiny") / "cmp"
    config = CompareConfig(
        data=prepared_trus, out=str(out), models=["unet"], losses=["ce", "adfl"], optimizers=["adam"],
        folds=[0, 1], seeds=[0], run_options=dict(TINY),
    )
    counts = {"parsed": 0, "built": 0, "checked": 0}
    parse, build, check = PreparedDataset.__init__, ModelName.build, PreparedDataset._slice_problem

    def counted(key, function):
        def wrapper(*args, **kwargs):
            counts[key] += 1
            return function(*args, **kwargs)
        return wrapper

    lines = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PreparedDataset, "__init__", counted("parsed", parse))
        patch.setattr(ModelName, "build", counted("built", build))
        patch.setattr(PreparedDataset, "_slice_problem", counted("checked", check))
        record = os.path.join(prepared_trus, ".checked.json")
        if os.path.exists(record):
            os.remove(record)  # so that every slice is checked, and counted, in this grid
        table = compare(config, verbose=0, log=lines.append)
    return config, table, lines, counts


def test_a_grid_builds_one_network_per_run_plus_one_per_weights_set_and_reads_its_data_once(tiny_comparison, prepared_trus):
    _, table, lines, counts = tiny_comparison
    assert len(table) == 4
    assert counts["built"] == 4 + 2  # 4 runs, 2 starting-weight sets (folds 0 and 1)
    assert counts["parsed"] == 1  # manifest.csv, folds.csv and classes.json read once for the grid
    slices = len(pd.read_csv(os.path.join(prepared_trus, "manifest.csv")))
    assert counts["checked"] == slices  # every slice checked once, not once per run
    # The runs of a weights set run one after another; the tables keep the grid's order.
    assert [line.split(":")[0] for line in lines] == [
        "[1/4] unet ce adam fold 0 seed 0", "[2/4] unet adfl adam fold 0 seed 0",
        "[3/4] unet ce adam fold 1 seed 0", "[4/4] unet adfl adam fold 1 seed 0"]


def test_a_grid_writes_its_table_in_grid_order(tiny_comparison):
    config, _, _, _ = tiny_comparison
    results = pd.read_csv(os.path.join(config.out, "results.csv"))
    assert list(results[["loss", "fold"]].itertuples(index=False, name=None)) == [("ce", 0), ("ce", 1), ("adfl", 0), ("adfl", 1)]
    assert results.epochs_run.eq(2).all()
    assert results.nan_epoch.isna().all()
    assert {"iou_background", "iou_prostate", "dice_prostate", "train_images_per_second"} <= set(results)
    assert "pipeline_images_per_second" not in results  # the throughput epoch left the run (bench/train.py)
    assert results.mdsc.between(0, 1).all()
    assert results.run_dir[0] == os.path.join("runs", "unet", "ce-adam", "fold0-seed0")  # relative to the results


def test_a_grid_writes_markdown_and_plot(tiny_comparison):
    config, _, _, _ = tiny_comparison
    markdown = open(os.path.join(config.out, "results.md")).read()
    assert "## prepared, ADAM" in markdown
    assert "| ADFL+U-net |" in markdown
    assert "Test run #2 mDSC" in markdown
    assert os.path.getsize(os.path.join(config.out, "results.png")) > 1000


def test_a_grid_scores_every_test_patient_in_3d(tiny_comparison, prepared_trus):
    config, table, _, _ = tiny_comparison
    volumes = pd.read_csv(os.path.join(config.out, "volume_results.csv"), dtype={"case": str})
    folds = pd.read_csv(os.path.join(prepared_trus, "folds.csv"), dtype={"case": str})
    # Every patient once per loss (in its test fold's run), one row per foreground class.
    for loss in ("ce", "adfl"):
        rows = volumes[volumes.loss == loss]
        assert sorted(rows.case) == sorted(folds.case) and set(rows["class"]) == {"prostate"}
        for row in rows.itertuples():
            assert row.fold == int(folds.fold[folds.case == row.case].iloc[0])
    assert volumes.dice.between(0, 1).all()
    markdown = open(os.path.join(config.out, "results.md")).read()
    assert "# Per-patient 3-D metrics" in markdown and "## prepared, ADAM (3-D)" in markdown
    assert set(volumes.truth) == {"original"}  # each case's own label volume, as the manifest records it
    assert f"Truth: the original label volumes ({len(folds)} case(s))." in markdown
    assert "## Paired differences against ADFL: foreground 3-D Dice of each patient" in markdown
    # Each run's own table, and the summary's numbers are its rows'.
    adfl = volumes[volumes.loss == "adfl"].dice.to_numpy()
    assert f"{100 * adfl.mean():.2f} ± {100 * adfl.std(ddof=1):.2f} (n = {adfl.size})" in markdown
    for run_dir in read_results(config.out).run_dir:
        assert os.path.exists(os.path.join(run_dir, "volume_metrics.csv"))


def test_predict_takes_every_fold_model_of_one_loss_from_a_comparison(tiny_comparison, prepared_trus, tmp_path, capsys):
    import SimpleITK as sitk

    config, _, _, _ = tiny_comparison
    case = os.path.join(os.path.dirname(prepared_trus), "trus", "dicom", "TRUS01")
    assert main(["predict", case, str(tmp_path / "refused"), "--compare", config.out, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "compares several losses (adfl, ce): choose one with --loss" in err
    assert not (tmp_path / "refused").exists()
    assert main(["predict", case, str(tmp_path / "out"), "--compare", config.out, "--loss", "adfl", "--quiet"]) == 0
    record = json.load(open(tmp_path / "out" / "cases" / "TRUS01.json"))
    runs = read_results(config.out)
    expected = [os.path.abspath(os.path.join(d, "last.keras")) for d in runs[runs.loss == "adfl"].run_dir]
    assert record["settings"]["models"] == expected  # both folds' models, averaged
    assert list(sitk.ReadImage(str(tmp_path / "out" / "TRUS01.nii.gz")).GetSize()) == record["geometry"]["size"]


@pytest.mark.parametrize("name", ["history.csv", "config.json", "metrics.json", "last.keras", "best.keras", "state.json"])
def test_every_run_folder_holds_its_files(tiny_comparison, name):
    config, _, _, _ = tiny_comparison
    for run_dir in read_results(config.out).run_dir:
        assert os.path.exists(os.path.join(run_dir, name)), run_dir


def test_every_run_logs_its_history_and_tensorboard_scalars(tiny_comparison):
    config, _, _, _ = tiny_comparison
    for run_dir in read_results(config.out).run_dir:
        saved = json.load(open(os.path.join(run_dir, "config.json")))
        history = pd.read_csv(os.path.join(run_dir, "history.csv"))
        assert list(history.epoch) == [1, 2]
        assert {"loss", "val_loss", "learning_rate", "foreground_dice", "val_foreground_dice", "foreground_iou",
                "val_foreground_iou"} <= set(history)
        assert history.val_foreground_dice.between(0, 1).all()
        # IoU = Dice / (2 - Dice) for the one foreground class, pooled over the epoch.
        np.testing.assert_allclose(history.val_foreground_iou, history.val_foreground_dice / (2 - history.val_foreground_dice), rtol=1e-5)
        scalars = _tensorboard_scalars(os.path.join(run_dir, "logs", "train"))
        assert list(scalars["epoch_loss"]) == [0, 1]
        np.testing.assert_allclose(list(scalars["epoch_loss"].values()), history.loss, rtol=1e-5)
        validation = _tensorboard_scalars(os.path.join(run_dir, "logs", "validation"))
        np.testing.assert_allclose(list(validation["epoch_foreground_dice"].values()), history.val_foreground_dice, rtol=1e-5)
        if saved["loss"] == "adfl":  # the ACW weights per class, per epoch; they move from their start
            assert list(scalars["acw_weight/background"]) == [0, 1]
            assert list(scalars["acw_weight/prostate"]) == [0, 1]
            assert scalars["acw_weight/prostate"][1] != pytest.approx(saved["class_weights"][1], rel=1e-6)
        else:
            assert not [tag for tag in scalars if tag.startswith("acw")]


def test_every_loss_of_a_fold_starts_from_the_same_weights_and_split(tiny_comparison, prepared_trus):
    config, _, _, _ = tiny_comparison
    classes = json.load(open(os.path.join(prepared_trus, "classes.json")))
    by_fold = {}
    for run_dir in read_results(config.out).run_dir:
        saved = json.load(open(os.path.join(run_dir, "config.json")))
        by_fold.setdefault(saved["fold"], []).append(saved)
    assert sorted(by_fold) == [0, 1]
    digests = {fold: {saved["initial_weights_sha256"] for saved in runs} for fold, runs in by_fold.items()}
    assert [len(d) for d in digests.values()] == [1, 1]  # CE and ADFL share a fold's starting weights
    # Each fold has its own set (file), built from the seed: one seed, the same weights on every fold.
    assert len(os.listdir(os.path.join(config.out, "initial_weights"))) == 2
    assert digests[0] == digests[1]
    for runs in by_fold.values():
        saved = runs[0]
        train_cases = saved["train_cases"]
        expected = inverse_frequency_weights(np.sum([classes["per_case"][c]["pixel_count"] for c in train_cases], axis=0))
        np.testing.assert_allclose(saved["class_weights"], expected)
        assert not set(train_cases) & set(saved["test_cases"])
        assert not set(saved["validation_cases"]) & set(saved["test_cases"])
        assert {r["train_cases"] == train_cases for r in runs} == {True}


def test_a_second_compare_reads_the_finished_runs_and_writes_the_same_table(tiny_comparison):
    config, _, _, _ = tiny_comparison
    before = open(os.path.join(config.out, "results.csv")).read()
    again = []
    compare(config, verbose=0, log=again.append)
    assert len(again) == 4
    assert all(line.endswith("(finished earlier)") for line in again)
    assert open(os.path.join(config.out, "results.csv")).read() == before


def test_resume_after_a_kill_matches_an_uninterrupted_run(prepared_trus, tmp_path, monkeypatch):
    reference = train_run(_config(prepared_trus, tmp_path / "a", epochs=3, deterministic=True), verbose=0)
    original = callbacks_module.RunState.on_epoch_end

    def killed_after_epoch_two(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(callbacks_module.RunState, "on_epoch_end", killed_after_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_run(_config(prepared_trus, tmp_path / "b", epochs=3, deterministic=True), verbose=0)
    monkeypatch.setattr(callbacks_module.RunState, "on_epoch_end", original)
    assert json.load(open(tmp_path / "b" / "state.json"))["epoch"] == 2
    with pytest.raises(RunSetupError, match=r"holds an unfinished run \(2 epochs\): pass --resume"):
        train_run(_config(prepared_trus, tmp_path / "b", epochs=3, deterministic=True), verbose=0)
    # What a kill -9 during a save leaves: removed by the next run.
    for stale in ("best.tmp-4242.keras", ".tmp-k2j4h5", "last.tmp-4242.keras"):
        (tmp_path / "b" / stale).write_text("half written")
    resumed = train_run(_config(prepared_trus, tmp_path / "b", epochs=3, deterministic=True), resume=True, verbose=0)
    assert resumed["epochs_run"] == reference["epochs_run"] == 3
    first, second = (pd.read_csv(tmp_path / d / "history.csv") for d in ("a", "b"))
    assert list(second.epoch) == [1, 2, 3]
    np.testing.assert_allclose(second[["loss", "val_loss", "learning_rate"]], first[["loss", "val_loss", "learning_rate"]], rtol=1e-5)
    assert resumed["mdsc"] == pytest.approx(reference["mdsc"], rel=1e-5)
    assert [n for n in os.listdir(tmp_path / "b") if n.startswith("state-epoch")] == ["state-epoch0003.weights.h5"]
    assert not [n for n in os.listdir(tmp_path / "b") if "tmp-" in n]


def _train_argv(data, out, *extra):
    return ["train", "--data", str(data), "--out", str(out), "--model", "unet", "--loss", "ce", "--optimizer", "adam",
            "--fold", "0", "--epochs", "1", "--model-options", '{"base_filters": 4, "depth": 2}', *extra]


def test_train_refuses_a_finished_run_with_other_settings(prepared_trus, tmp_path, capsys):
    assert main(_train_argv(prepared_trus, tmp_path / "run")) == 0
    finished = capsys.readouterr().out.splitlines()[-1]
    assert main(_train_argv(prepared_trus, tmp_path / "run")) == 0  # the same settings: its result, at once
    assert capsys.readouterr().out.splitlines() == [finished]
    other = _train_argv(prepared_trus, tmp_path / "run")
    other[other.index("ce")] = "wce"
    assert main(other) == 2
    assert f"'{tmp_path / 'run'}' holds a finished run with other settings (loss); use another --out." in capsys.readouterr().err


HOLD_LOCK = """
import sys, time
from keras_focal.files import FolderLock
with FolderLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("command", ["train", "compare"])
def test_a_folder_in_use_is_refused_naming_the_holder(prepared_trus, tmp_path, capsys, command):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        if command == "train":
            argv = _train_argv(prepared_trus, tmp_path / "out")
        else:
            argv = ["compare", "--data", prepared_trus, "--out", str(tmp_path / "out"), "--models", "unet",
                    "--losses", "ce", "--folds", "0", "--epochs", "1", "--model-options", '{"base_filters": 4, "depth": 2}']
        assert main(argv) == 2
        assert f"'{tmp_path / 'out'}' is in use by process {holder.pid} on " in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert sorted(os.listdir(tmp_path / "out")) == [".lock", ".lock-owner.json"]  # nothing of a run


def test_bad_slices_stop_training_before_it_starts(prepared_trus, tmp_path, capsys):
    import shutil

    from PIL import Image

    shutil.copytree(prepared_trus, tmp_path / "data", ignore=shutil.ignore_patterns(".checked.json"))
    mask = pd.read_csv(tmp_path / "data" / "manifest.csv")["mask"].iloc[0]
    pixels = np.asarray(Image.open(tmp_path / "data" / mask)).copy()
    pixels[0, 0] = 7
    Image.fromarray(pixels).save(tmp_path / "data" / mask)
    assert main(_train_argv(tmp_path / "data", tmp_path / "run")) == 2
    error = capsys.readouterr().err
    assert f"'{tmp_path / 'data' / mask}': label(s) [7] out of range for 2 classes" in error
    assert not os.path.exists(tmp_path / "run")


def test_a_nan_loss_is_recorded_not_raised(prepared_trus, tmp_path):
    metrics = train_run(_config(prepared_trus, tmp_path / "nan", epochs=4, learning_rate=1e30, optimizer="sgdm"), verbose=0)
    assert metrics["nan_epoch"] is not None and metrics["epochs_run"] == metrics["nan_epoch"] < 4
    history = pd.read_csv(tmp_path / "nan" / "history.csv")
    assert len(history) == metrics["nan_epoch"] and not np.isfinite(history.loss.iloc[-1])
    assert json.load(open(tmp_path / "nan" / "metrics.json"))["nan_epoch"] == metrics["nan_epoch"]


def test_piecewise_learning_rate_schedule(prepared_trus, tmp_path):
    train_run(_config(prepared_trus, tmp_path / "lr", epochs=3, drop_factor=0.5, drop_period=1, validation_fraction=0.0), verbose=0)
    history = pd.read_csv(tmp_path / "lr" / "history.csv")
    np.testing.assert_allclose(history.learning_rate, [5e-4, 2.5e-4, 1.25e-4], rtol=1e-6)
    assert "val_loss" not in history


MIRRORED = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_focal.training import RunConfig, train_run
metrics = train_run(RunConfig(data=sys.argv[1], out=sys.argv[2], epochs=1, strategy="mirrored",
                              model_options={"base_filters": 4, "depth": 2}), verbose=0)
assert metrics["epochs_run"] == 1, metrics
print("replicas", tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")]).num_replicas_in_sync)
"""


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute needs TensorFlow")
def test_mirrored_strategy_on_two_logical_cpus(prepared_trus, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED, prepared_trus, str(tmp_path / "mirrored")],
        capture_output=True, text=True, timeout=300, env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replicas 2" in result.stdout
    assert json.load(open(tmp_path / "mirrored" / "metrics.json"))["epochs_run"] == 1


DATA_PARALLEL = """
import json, os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=" + sys.argv[3]
os.environ["KERAS_BACKEND"] = "jax"
import keras
from keras_focal.training import RunConfig, train_run
metrics = train_run(RunConfig(data=sys.argv[1], out=sys.argv[2], epochs=2, strategy="data-parallel",
                              model_options={"base_filters": 4, "depth": 2}), verbose=0)
print("devices", len(keras.distribution.list_devices()), json.dumps(metrics["mdsc"]))
"""


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="starts its own JAX processes: once per CI run")
def test_data_parallel_on_two_cpu_devices_equals_one_device(prepared_trus, tmp_path):
    """JAX's DataParallel over two (forced) CPU devices: each batch is split in two,
    and the per-epoch losses equal a one-device run's to float rounding."""
    histories = []
    for devices in ("1", "2"):
        out = tmp_path / f"dp{devices}"
        result = subprocess.run(
            [sys.executable, "-c", DATA_PARALLEL, prepared_trus, str(out), devices],
            capture_output=True, text=True, timeout=300, env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"devices {devices} " in result.stdout
        assert json.load(open(out / "config.json"))["backend"] == "jax"
        histories.append(pd.read_csv(out / "history.csv"))
    for column in ("loss", "val_loss"):
        np.testing.assert_allclose(histories[1][column], histories[0][column], rtol=1e-3)


def _strategy_refusals():
    backend = keras.backend.backend()
    cases = [("multiworker", r"--strategy multiworker cannot run: Keras 3's model.fit does not support "
                             r"tf.distribute.MultiWorkerMirroredStrategy. Use --strategy data-parallel")]
    if backend == "tensorflow":
        cases.append(("data-parallel", r"--strategy data-parallel needs KERAS_BACKEND=jax; this process runs "
                                       r"KERAS_BACKEND=tensorflow. On tensorflow use --strategy mirrored."))
    else:
        cases.append(("mirrored", rf"--strategy mirrored needs KERAS_BACKEND=tensorflow; this process runs "
                                  rf"KERAS_BACKEND={backend}."))
    return cases


@pytest.mark.parametrize("strategy, message", _strategy_refusals())
def test_strategy_the_backend_cannot_run_exits_2_before_training(prepared_trus, tmp_path, capsys, strategy, message):
    argv = ["train", "--data", prepared_trus, "--out", str(tmp_path / "run"), "--model", "unet", "--loss", "ce",
            "--optimizer", "adam", "--fold", "0", "--epochs", "1", "--strategy", strategy]
    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not os.path.exists(tmp_path / "run")
    config = tmp_path / "compare.yaml"
    config.write_text(f"data: {prepared_trus}\nout: {tmp_path / 'cmp'}\nlosses: [ce]\nepochs: 1\nstrategy: {strategy}\n")
    assert main(["compare", "--config", str(config)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not os.path.exists(tmp_path / "cmp")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--model", "resnet"], r"unknown model 'resnet'; allowed: deeplabv3_plus, vgg19_fcn, unet"),
        (["--loss", "hinge"], r"unknown loss 'hinge'; allowed: ce, wce, fl, dfl, acw_ce, adfl, dice, tversky, dice_ce, dice_fl\."),
        (["--optimizer", "rmsprop"], r"unknown optimizer 'rmsprop'; allowed: adam, sgdm"),
        (["--fold", "5"], r"fold 5 is out of range: .* has folds 0\.\.1"),
        (["--model-options", '{"depth": 6}'], r"too small: height and width must be at least 64"),
        (["--data", "MISSING"], r"is not a prepared data set: manifest\.csv, classes\.json, folds\.csv missing"),
        (["--input", "memory", "--cache", "cache"], r"`cache` keeps decoded slices for streamed input: it cannot be used with input='memory'"),
    ],
)
def test_bad_input_exits_2_before_training(prepared_trus, tmp_path, capsys, arguments, message):
    base = {"--data": prepared_trus, "--model": "unet", "--loss": "ce", "--optimizer": "adam", "--fold": "0", "--out": str(tmp_path / "run")}
    for flag, value in zip(arguments[::2], arguments[1::2]):
        base[flag] = str(tmp_path / value) if value == "MISSING" else value
    argv = ["train", "--epochs", "1"] + [item for pair in base.items() for item in pair]
    assert main(argv) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not os.path.exists(tmp_path / "run" / "state.json")


def test_compare_cli_with_a_yaml_config(prepared_trus, tmp_path, capsys):
    config = tmp_path / "compare.yaml"
    config.write_text(
        f"data: {prepared_trus}\nout: {tmp_path / 'cmp'}\nmodels: [unet]\nlosses: [wce]\noptimizers: [adam]\n"
        "folds: [1]\nseeds: [0]\nepochs: 1\nmodel_options: {base_filters: 4, depth: 2}\n"
    )
    assert main(["compare", "--config", str(config)]) == 0
    assert "| WCE+U-net |" in capsys.readouterr().out
    config.write_text(f"data: {prepared_trus}\nout: {tmp_path / 'x'}\nlosses: [wce]\nfolds: [7]\nepochs: 1\n")
    assert main(["compare", "--config", str(config)]) == 2
    assert "fold 7 is out of range" in capsys.readouterr().err
    config.write_text("data: x\nout: y\nlearning_rat: 1\n")
    assert main(["compare", "--config", str(config)]) == 2
    assert "unknown setting(s)" in capsys.readouterr().err


def test_streaming_input_gives_the_same_run_as_in_memory(prepared_trus, tmp_path):
    """--input stream decodes the PNGs every epoch instead of holding them: the same
    batches (same shuffle, same flips), so the same per-epoch losses and scores."""
    metrics = {}
    for mode in ("memory", "stream"):
        metrics[mode] = train_run(_config(prepared_trus, tmp_path / mode, input=mode, augment=True), verbose=0)
        assert json.load(open(tmp_path / mode / "config.json"))["input_mode"] == mode
    memory, stream = (pd.read_csv(tmp_path / mode / "history.csv") for mode in ("memory", "stream"))
    for column in ("loss", "val_loss"):
        np.testing.assert_allclose(stream[column], memory[column], rtol=1e-6)
    assert metrics["stream"]["mdsc"] == pytest.approx(metrics["memory"]["mdsc"], rel=1e-6)
    assert metrics["stream"]["confusion_matrix"] == metrics["memory"]["confusion_matrix"]


def _free_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


CLI = "import sys; from keras_focal.cli import main; sys.exit(main(sys.argv[1:]))"


def _data_parallel_reference_run(data, out):
    """Runs the one-process data-parallel reference into `out`; returns `(argv, env)` for more runs."""
    argv = ["train", "--data", data, "--model", "unet", "--loss", "adfl", "--optimizer", "adam",
            "--fold", "0", "--epochs", "2", "--strategy", "data-parallel",
            "--model-options", '{"base_filters": 4, "depth": 2}']
    env = os.environ | {"KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_FOCAL_COORDINATOR_TIMEOUT": "60"}
    single = subprocess.run([sys.executable, "-c", CLI, *argv, "--out", str(out)],
                            capture_output=True, text=True, timeout=300, env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    return argv, env


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="starts its own JAX processes: once per CI run")
def test_two_process_data_parallel_equals_one_process(prepared_trus, tmp_path):
    """Two processes on 127.0.0.1 (gloo collectives) share every global batch: the
    per-epoch losses equal a one-process run's (held in memory) when each process
    streams and caches only its share, and process 0 alone writes --out."""
    argv, env = _data_parallel_reference_run(prepared_trus, tmp_path / "one")
    port = _free_port()
    group = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}
    workers = [
        subprocess.Popen([sys.executable, "-c", CLI, *argv, "--out", str(tmp_path / "two"), "--cache", str(tmp_path / "cache")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env | group | {"KERAS_DISTRIBUTION_PROCESS_ID": str(index)})
        for index in (0, 1)
    ]
    try:
        outputs = [worker.communicate(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    assert "mDSC" in outputs[0][0] and "mDSC" not in outputs[1][0]  # process 1 reports nothing
    one, two = (pd.read_csv(tmp_path / name / "history.csv") for name in ("one", "two"))
    for column in ("loss", "val_loss"):
        np.testing.assert_allclose(two[column], one[column], rtol=1e-3)
    assert sorted(os.listdir(tmp_path)) == ["cache", "one", "two"]
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))
    assert json.load(open(tmp_path / "two" / "config.json"))["input_mode"] == "stream"
    assert os.listdir(tmp_path / "cache")


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}, r"needs KERAS_DISTRIBUTION_JOB_ADDRESSES and KERAS_DISTRIBUTION_PROCESS_ID too"),
        ({"KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "2",
          "KERAS_DISTRIBUTION_JOB_ADDRESSES": "127.0.0.1:1"}, r"PROCESS_ID=2 is out of range for KERAS_DISTRIBUTION_NUM_PROCESSES=2"),
        ({"KERAS_DISTRIBUTION_NUM_PROCESSES": "3", "KERAS_DISTRIBUTION_PROCESS_ID": "0",
          "KERAS_DISTRIBUTION_JOB_ADDRESSES": "127.0.0.1:1,127.0.0.1:2"}, r"lists 2 addresses but KERAS_DISTRIBUTION_NUM_PROCESSES=3"),
        ({"KERAS_DISTRIBUTION_NUM_PROCESSES": "two"}, r"KERAS_DISTRIBUTION_NUM_PROCESSES must be an integer"),
    ],
)
def test_inconsistent_process_variables_exit_2(prepared_trus, tmp_path, capsys, monkeypatch, variables, message):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    argv = ["train", "--data", prepared_trus, "--out", str(tmp_path / "run"), "--model", "unet", "--loss", "ce",
            "--optimizer", "adam", "--fold", "0", "--epochs", "1", "--strategy", "data-parallel"]
    assert main(argv) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="starts its own JAX process")
def test_absent_coordinator_is_a_bounded_wait_and_exit_2(prepared_trus, tmp_path):
    env = os.environ | {"KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_FOCAL_COORDINATOR_TIMEOUT": "5",
                        "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "1",
                        "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{_free_port()}"}
    argv = ["train", "--data", prepared_trus, "--out", str(tmp_path / "run"), "--model", "unet", "--loss", "ce",
            "--optimizer", "adam", "--fold", "0", "--epochs", "1", "--strategy", "data-parallel"]
    result = subprocess.run([sys.executable, "-c", CLI, *argv], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "could not join the group at 127.0.0.1:" in result.stderr and "within 5 s" in result.stderr
    assert not os.path.exists(tmp_path / "run")


KILLED_AFTER_EPOCH_ONE = """
import os, sys
from keras_focal.training import callbacks
saved = callbacks.RunState.on_epoch_end
def save_then_die(self, epoch, logs=None):
    saved(self, epoch, logs)  # every process takes part in the (collective) save
    os._exit(9)
callbacks.RunState.on_epoch_end = save_then_die
from keras_focal.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="starts its own JAX processes: once per CI run")
def test_killed_distributed_run_resumes_to_the_uninterrupted_result(prepared_trus, tmp_path):
    argv, env = _data_parallel_reference_run(prepared_trus, tmp_path / "one")

    def two_processes(script, extra):
        group = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{_free_port()}", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}
        workers = [
            subprocess.Popen([sys.executable, "-c", script, *argv, "--out", str(tmp_path / "two"), *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env | group | {"KERAS_DISTRIBUTION_PROCESS_ID": str(index)})
            for index in (0, 1)
        ]
        try:
            return [(worker.communicate(timeout=300), worker.returncode) for worker in workers]
        finally:
            for worker in workers:
                worker.kill()

    killed = two_processes(KILLED_AFTER_EPOCH_ONE, [])
    assert [code for _, code in killed] == [9, 9], killed[0][0][1][-2000:]
    assert json.load(open(tmp_path / "two" / "state.json"))["epoch"] == 1
    resumed = two_processes(CLI, ["--resume"])
    assert [code for _, code in resumed] == [0, 0], resumed[0][0][1][-3000:]
    one, two = (pd.read_csv(tmp_path / name / "history.csv") for name in ("one", "two"))
    assert list(two.epoch) == [1, 2]
    for column in ("loss", "val_loss"):
        np.testing.assert_allclose(two[column], one[column], rtol=1e-3)


def _hand_made_table(mdsc_by_loss, optimizer="adam"):
    return pd.DataFrame([
        {"model": "unet", "dataset": "hand", "loss": loss, "optimizer": optimizer, "fold": fold, "seed": 0,
         "epochs": 5, "mdsc": value, "miou": value / (2 - value), "nan_epoch": np.nan}
        for loss, values in mdsc_by_loss.items() for fold, value in enumerate(values)
    ])


def test_results_tables_report_the_sample_std_and_n():
    from keras_focal.reporting.tables import markdown_tables

    # 80, 84, 88 %: mean 84, sample std 4 (the population std would be 3.27).
    table = _hand_made_table({"ce": [0.80, 0.84, 0.88], "adfl": [0.90, np.nan, 0.92]})
    table.loc[4, "nan_epoch"] = 3
    markdown = markdown_tables(table)
    assert "| CE+U-net | 80.00 | 66.67 | 84.00 | 72.41 | 88.00 | 78.57 | 84.00 ± 4.00 (n = 3) |" in markdown
    assert "| ADFL+U-net | 90.00 | 81.82 | n/a | n/a | 92.00 | 85.19 | 91.00 ± 1.41 (n = 2) |" in markdown
    assert "| ADFL+U-net | n/a | n/a | none | 1 |" in markdown  # ADFL's NaN run; no pooled columns in this table
    assert "Mean ± *sample* std (ddof = 1) over the n runs" in markdown
    single = markdown_tables(_hand_made_table({"ce": [0.8]}))
    assert "80.00 (n = 1, no spread)" in single and "±" not in single.split("|---")[1]


@pytest.mark.parametrize("loss", ["dice_ce", "tversky"])
def test_region_losses_train_end_to_end(prepared_trus, tmp_path, loss):
    metrics = train_run(_config(prepared_trus, tmp_path / loss, loss=loss), verbose=0)
    history = pd.read_csv(tmp_path / loss / "history.csv")
    assert metrics["epochs_run"] == 2 and metrics["nan_epoch"] is None
    assert np.isfinite(history.loss).all() and (history.loss > 0).all()
    assert json.load(open(tmp_path / loss / "config.json"))["loss"] == loss


def test_compare_refuses_a_reference_outside_the_grid(prepared_trus, tmp_path, capsys):
    code = main(["compare", "--data", prepared_trus, "--out", str(tmp_path / "c"), "--models", "unet",
                 "--losses", "ce", "wce", "--folds", "0", "--reference", "adfl"])
    assert code == 2
    assert "--reference 'adfl' is not one of the grid's losses (ce, wce)" in capsys.readouterr().err
    assert not (tmp_path / "c" / "runs").exists()


def test_best_keras_is_the_lowest_validation_loss_and_last_keras_the_last_epoch(prepared_trus, tmp_path):
    """best.keras comes from the best epoch's kept state after training; the last model is put back before testing."""
    from keras_focal.data_prep.examples import evaluation_dataset
    from keras_focal.data_prep.prepared import PreparedDataset

    config = _config(prepared_trus, tmp_path / "run", epochs=4, optimizer="sgdm", learning_rate=2.0)  # diverges after epoch 1
    train_run(config, verbose=0)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history.val_loss.idxmin() != len(history) - 1, "the test needs a best epoch other than the last"
    dataset = PreparedDataset(prepared_trus)
    saved = json.load(open(tmp_path / "run" / "config.json"))
    validation = dataset.examples(saved["validation_cases"], 1)

    def validation_loss(name):
        model = keras.models.load_model(tmp_path / "run" / name)
        return model.evaluate(evaluation_dataset(validation, config.batch_size), verbose=0, return_dict=True)["loss"]

    assert validation_loss("best.keras") == pytest.approx(history.val_loss.min(), rel=1e-4)
    assert validation_loss("last.keras") == pytest.approx(history.val_loss.iloc[-1], rel=1e-4)
    assert (tmp_path / "run" / "best-state.weights.h5").exists()
    # The metrics of an evaluate="last" run are those of the last model (not the best one loaded for best.keras).
    last = keras.models.load_model(tmp_path / "run" / "last.keras")
    from keras_focal.training.run import evaluate_model

    test = dataset.examples(saved["test_cases"], 1)
    expected = evaluate_model(last, test, dataset.class_names, config.batch_size).foreground_metrics["mDSC"]
    assert json.load(open(tmp_path / "run" / "metrics.json"))["mdsc"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="each backend runs once, in a subprocess")
@pytest.mark.parametrize("backend,compiled", [("tensorflow", False), ("jax", True), ("torch", False)])
def test_cli_trains_adfl_on_every_backend_with_keras_compile_defaults(prepared_trus, tmp_path, backend, compiled):
    """`keras-focal train` as a user runs it: KERAS_BACKEND=torch crashed at start-up (TensorFlow imported
    before torch), and JAX trained op by op (jit_compile=False). Keras's "auto" compiles on JAX, not on a CPU's
    TensorFlow, and never on torch."""
    argv = ["train", "--data", prepared_trus, "--out", str(tmp_path / "run"), "--model", "unet", "--loss", "adfl",
            "--epochs", "2", "--model-options", '{"base_filters": 4, "depth": 2}']
    env = os.environ | {"KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", CLI, *argv], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.load(open(tmp_path / "run" / "config.json"))
    assert (record["backend"], record["jit_compile"], record["jit_compile_used"]) == (backend, "auto", compiled)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert len(history) == 2 and np.all(np.isfinite(history.loss))
    assert json.load(open(tmp_path / "run" / "metrics.json"))["epochs_run"] == 2


def test_jit_compile_option_takes_keras_modes_only(prepared_trus, tmp_path):
    assert RunConfig(data=prepared_trus, out=str(tmp_path)).jit_compile == "auto"
    for mode in ("auto", True, False):
        assert RunConfig(data=prepared_trus, out=str(tmp_path), jit_compile=mode).jit_compile == mode
    with pytest.raises(ValueError, match=r"unknown jit_compile 'yes'; allowed: 'auto', true, false\."):
        RunConfig(data=prepared_trus, out=str(tmp_path), jit_compile="yes")
    with pytest.raises(ValueError, match="unknown jit_compile 1"):
        RunConfig(data=prepared_trus, out=str(tmp_path), jit_compile=1)
