"""A run's lifecycle: the pre-flight that refuses bad input before anything is written, the
run's identity, the one rule of bad input and crashes, and the tables of models and losses."""

import json
import os

import pytest

from keras_focal import errors
from keras_focal.cli import main
from keras_focal.losses import CrossEntropy, DiceLoss
from keras_focal.model_names import MODEL_LABELS, MODEL_NAMES, ModelName
from keras_focal.optimizer_names import OPTIMIZER_LABELS
from keras_focal.training import RunConfig, RunSetupError
from keras_focal.training import run as run_module
from keras_focal.training.config import MODELS
from keras_focal.training.run import build_loss, prepare_run

TINY_OPTIONS = '{"base_filters": 4, "depth": 2}'


def _compare(data, out, *extra):
    return main(["compare", "--data", data, "--out", str(out), "--models", "unet", "--epochs", "1",
                 "--model-options", TINY_OPTIONS, *extra])


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if any network is built or trained."""
    def refuse(*args, **kwargs):
        raise AssertionError("a network was built: the pre-flight should have refused first")

    monkeypatch.setattr(ModelName, "build", refuse)


@pytest.mark.parametrize("extra, message", [
    # The second run of the grid (CE on fold 5) is the bad one: the first must not train.
    (["--losses", "ce", "--folds", "0", "5"], r"fold 5 is out of range"),
    (["--losses", "ce", "wce", "fl", "--folds", "0", "--gamma", "-1"], r"`gamma` must be a finite number >= 0"),
    (["--losses", "ce", "--folds", "0", "--momentum", "1.5", "--optimizers", "adam", "sgdm"], r"`momentum` must be"),
])
def test_compare_with_a_bad_option_for_a_later_run_exits_2_before_any_training(
        prepared_trus, tmp_path, capsys, no_training, extra, message):
    out = tmp_path / "cmp"
    assert _compare(prepared_trus, out, *extra) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()  # nothing written


def test_a_model_too_deep_for_the_images_is_refused_without_building_it(prepared_trus, tmp_path, capsys, no_training):
    out = tmp_path / "cmp"
    assert main(["compare", "--data", prepared_trus, "--out", str(out), "--models", "unet", "--losses", "ce",
                 "--folds", "0", "--epochs", "1", "--model-options", '{"depth": 6}']) == 2
    assert "too small: height and width must be at least 64" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("flag, value", [("--momentum", "1.5"), ("--gamma", "-1"), ("--drop-factor", "0")])
def test_a_refused_train_leaves_no_run_folder(prepared_trus, tmp_path, capsys, no_training, flag, value):
    out = tmp_path / "run"
    assert main(["train", "--data", prepared_trus, "--model", "unet", "--loss", "fl", "--optimizer", "sgdm",
                 "--out", str(out), "--epochs", "1", flag, value]) == 2
    assert f"`{flag[2:].replace('-', '_')}` must be" in capsys.readouterr().err
    assert not out.exists()


def test_a_failure_after_the_pre_flight_is_a_crash_not_bad_input(prepared_trus, tmp_path, monkeypatch):
    """The one rule (keras_focal.errors): a ValueError once training has begun is a traceback, not exit 2."""
    def broken_fit(*args, **kwargs):
        raise ValueError("a bug inside training")

    monkeypatch.setattr(run_module, "_fit", broken_fit)
    with pytest.raises(ValueError, match="a bug inside training"):
        main(["train", "--data", prepared_trus, "--model", "unet", "--loss", "ce", "--out", str(tmp_path / "run"),
              "--epochs", "1", "--model-options", TINY_OPTIONS])


def test_run_command_applies_one_rule_for_every_command(capsys):
    def bad(args):
        raise errors.BadInput("no such folder")

    def stopped(args):
        raise errors.Stopped("the disk is full")

    def crash(args):
        raise KeyError("bug")

    assert errors.run_command("train", bad, None) == 2
    assert capsys.readouterr().err == "keras-focal train: error: no such folder\n"
    assert errors.run_command("compare", stopped, None) == 1
    assert capsys.readouterr().err == "keras-focal compare: stopped: the disk is full\n"
    with pytest.raises(KeyError):
        errors.run_command("demo", crash, None)
    assert issubclass(RunSetupError, errors.BadInput)


def test_every_command_dispatches_through_one_attribute():
    from keras_focal.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, subparser in commands.items():
        assert callable(subparser.get_default("execute")), name
        assert subparser.get_default("run") is None and subparser.get_default("handler") is None, name


# -- a run's identity: the settings its loss, model and optimiser read ---------------------

def test_gamma_is_part_of_a_run_only_for_the_losses_that_read_it():
    def identity(**settings):
        return RunConfig(data="d", out="o", **settings).comparable()

    assert identity(loss="ce", gamma=2.0) == identity(loss="ce", gamma=0.5)
    assert identity(loss="adfl", gamma=2.0) == identity(loss="adfl", gamma=0.5)
    assert identity(loss="fl", gamma=2.0) != identity(loss="fl", gamma=0.5)
    assert identity(loss="dice_fl", gamma=2.0) != identity(loss="dice_fl", gamma=0.5)
    assert identity(optimizer="adam", momentum=0.9) == identity(optimizer="adam", momentum=0.5)
    assert identity(optimizer="sgdm", momentum=0.9) != identity(optimizer="sgdm", momentum=0.5)
    assert "gamma" not in identity(loss="ce") and "momentum" not in identity(optimizer="adam")


@pytest.mark.parametrize("loss, reused", [("ce", True), ("fl", False)])
def test_changing_gamma_keeps_a_finished_ce_run_and_refuses_an_fl_one(prepared_trus, tmp_path, loss, reused):
    out = tmp_path / "run"
    out.mkdir()
    finished = RunConfig(data=prepared_trus, out=str(out), loss=loss, gamma=2.0)
    (out / "config.json").write_text(json.dumps(finished.to_dict() | {"data": os.path.abspath(prepared_trus)}))
    (out / "metrics.json").write_text("{}")
    again = RunConfig(data=prepared_trus, out=str(out), loss=loss, gamma=0.5)
    if reused:
        assert prepare_run(again).config is again
    else:
        with pytest.raises(RunSetupError, match=r"holds a finished run with other settings \(gamma\)"):
            prepare_run(again)


# -- the tables ------------------------------------------------------------------------------

def test_the_model_table_drives_the_choices_the_labels_and_the_option_checks():
    assert MODELS == tuple(MODEL_NAMES) == ("deeplabv3_plus", "vgg19_fcn", "unet")
    assert MODEL_LABELS == {"deeplabv3_plus": "DeepLabV3+", "vgg19_fcn": "VGG19 FCN", "unet": "U-net"}
    assert OPTIMIZER_LABELS == {"adam": "ADAM", "sgdm": "SGDM"}
    with pytest.raises(ValueError, match=r"unknown model option\(s\) \['depth'\] for vgg19_fcn; allowed: fc_filters, dropout"):
        RunConfig(data="d", out="o", model="vgg19_fcn", model_options={"depth": 2})
    for entry in MODEL_NAMES.values():
        entry.check((64, 64, 1), 2)  # what each builder accepts, checked without building
    with pytest.raises(ValueError, match=r"`output_stride` must be one of \(16, 8\)"):
        MODEL_NAMES["deeplabv3_plus"].check((64, 64, 1), 2, output_stride=4)
    with pytest.raises(ValueError, match=r"`fc_filters` must be a positive integer"):
        MODEL_NAMES["vgg19_fcn"].check((64, 64, 1), 2, fc_filters=0)
    with pytest.raises(ValueError, match=r"at least 64 \(2\*\*depth for depth=6"):
        MODEL_NAMES["unet"].check((32, 32, 1), 2, depth=6)
    model = MODEL_NAMES["unet"].build((16, 16, 1), 3, acw_weights="ones", depth=2, base_filters=2)
    assert model.get_layer("acw") is not None and model.output.shape == (None, 16, 16, 3)


def test_trainer_builds_nnunet_style_region_losses():
    def built(name, class_names=("background", "prostate")):
        return build_loss(RunConfig(data="d", out="o", loss=name), [0.5, 0.5], list(class_names))

    dice = built("dice")
    assert (dice.include_background, dice.batch, dice.ignore_class) == (False, True, 255)
    tversky = built("tversky")
    assert (tversky.alpha, tversky.beta, tversky.include_background) == (0.3, 0.7, False)
    dice_ce = built("dice_ce")
    assert [type(p) for p in dice_ce.losses] == [DiceLoss, CrossEntropy]
    assert dice_ce.losses[0].batch
    # Class 0 of CamVid is Sky, a real class: it stays in the loss.
    street = ("Sky", "Building", "Pole")
    assert built("dice", street).include_background
    assert built("tversky", street).include_background
    assert built("dice_ce", street).losses[0].include_background




def test_the_run_folder_format_is_read_and_written_in_one_module(tmp_path):
    """`training.run_folder` is the one home of the run folder's files (the trainer wrote them, prediction read them)."""
    from keras_focal import run_folder

    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ValueError, match=rf"'{run}' is not a run folder: it has no config\.json\."):
        run_folder.read_run_config(str(run))
    run_folder.write_config(str(run), {"data": "d", "test_cases": ["a"]})
    assert run_folder.read_run_config(str(run)) == {"data": "d", "test_cases": ["a"]}
    assert not run_folder.is_finished(str(run)) and run_folder.read_metrics(str(run)) is None
    with pytest.raises(ValueError, match=r"holds no finished run \(no metrics\.json\); finish it or give --model\."):
        run_folder.run_model_path(str(run))
    run_folder.write_metrics(str(run), {"evaluated": "best"})
    assert run_folder.is_finished(str(run))
    with pytest.raises(ValueError, match=rf"no model at '{run / 'best.keras'}'\."):
        run_folder.run_model_path(str(run))
    (run / "best.keras").write_bytes(b"")
    assert run_folder.run_model_path(str(run)) == str(run / "best.keras")
    with pytest.raises(ValueError, match=r"no model at '.*last\.keras'\."):  # the checkpoint asked for, not the scored one
        run_folder.run_model_path(str(run), "last")
    with pytest.raises(ValueError, match=r"`checkpoint` must be one of \['last', 'best'\]\. Received: checkpoint='final'"):
        run_folder.model_path(str(run), "final")
    run_folder.write_metrics(str(run), {"evaluated": "none"})
    with pytest.raises(ValueError, match="ended with a NaN loss and kept no model to predict with"):
        run_folder.run_model_path(str(run))
