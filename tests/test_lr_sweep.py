"""`compare --lr-sweep`: rates chosen per loss, optimiser and fold on validation cases only."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from keras_focal.cli import main
from keras_focal.training.comparison import CompareConfig, compare
from keras_focal.training.lr_sweep import choose_learning_rates, parse_rates, tuned_runs, validation_score

TINY = {"epochs": 2, "model_options": {"base_filters": 4, "depth": 2}}


@pytest.mark.parametrize(
    "text,rates",
    [("1e-4,5e-4,2e-3", [1e-4, 5e-4, 2e-3]), ("2e-3, 1e-4", [1e-4, 2e-3]), ("1e-3,1e-3,0.01", [1e-3, 1e-2]),
     (["1e-4", 0.001], [1e-4, 1e-3])],
)
def test_parse_rates(text, rates):
    assert parse_rates(text) == rates


@pytest.mark.parametrize(
    "text,message",
    [("1e-4;5e-4", r"--lr-sweep takes learning rates separated by commas, e\.g\. 1e-4,5e-4,2e-3\. Received: '1e-4;5e-4'"),
     ("1e-4,-1", r"--lr-sweep: every learning rate must be a finite number > 0\. Received: '-1'"),
     ("1e-4,nan", r"every learning rate must be a finite number > 0\. Received: 'nan'"),
     ("1e-3", r"--lr-sweep needs at least two different learning rates to choose from\. Received: '1e-3'"),
     ("1e-3,0.001", r"needs at least two different learning rates")],
)
def test_parse_rates_refuses(text, message):
    with pytest.raises(ValueError, match=message):
        parse_rates(text)


def _sweep_table(validation, test):
    """Runs of one loss: `validation[fold][rate]` and `test[fold][rate]` scores, one seed."""
    return pd.DataFrame([
        {"dataset": "d", "model": "unet", "loss": "ce", "optimizer": "sgdm", "fold": fold, "seed": 0,
         "learning_rate": rate, "validation_dice": validation[fold][rate], "mdsc": test[fold][rate],
         "run_dir": f"runs/{fold}/{rate:g}"}
        for fold in validation for rate in validation[fold]
    ])


def test_the_choice_follows_validation_never_the_test_scores():
    validation = {0: {1e-4: 0.60, 1e-3: 0.80, 1e-2: 0.70}, 1: {1e-4: 0.90, 1e-3: 0.50, 1e-2: np.nan}}
    # The test scores would pick other rates: 1e-2 for fold 0, 1e-3 for fold 1.
    test = {0: {1e-4: 0.10, 1e-3: 0.20, 1e-2: 0.99}, 1: {1e-4: 0.10, 1e-3: 0.99, 1e-2: 0.98}}
    table = _sweep_table(validation, test)
    choices = choose_learning_rates(table)
    assert choices[["fold", "learning_rate"]].values.tolist() == [[0, 1e-3], [1, 1e-4]]
    assert choices.validation_dice.tolist() == [0.80, 0.90]
    assert choices.candidates[1] == "0.0001: 90.00, 0.001: 50.00, 0.01: n/a"
    tuned = tuned_runs(table, choices)
    assert tuned.mdsc.tolist() == [0.20, 0.10]  # the chosen runs' test scores, whatever they are
    # Changing every test score changes no choice.
    shuffled = table.assign(mdsc=np.random.default_rng(0).random(len(table)))
    pd.testing.assert_frame_equal(choose_learning_rates(shuffled), choices)


def test_seeds_are_averaged_ties_go_to_the_smaller_rate_and_no_score_keeps_the_smallest():
    table = pd.concat([
        _sweep_table({0: {1e-4: 0.70, 1e-3: 0.50}}, {0: {1e-4: 0, 1e-3: 0}}),
        _sweep_table({0: {1e-4: 0.30, 1e-3: 0.60}}, {0: {1e-4: 0, 1e-3: 0}}).assign(seed=1),
    ])
    assert choose_learning_rates(table).learning_rate.tolist() == [1e-3]  # means 0.50 and 0.55
    tie = _sweep_table({0: {1e-3: 0.5, 1e-4: 0.5}}, {0: {1e-3: 0, 1e-4: 0}})
    assert choose_learning_rates(tie).learning_rate.tolist() == [1e-4]
    none = choose_learning_rates(_sweep_table({0: {1e-3: np.nan, 1e-4: np.nan}}, {0: {1e-3: 0, 1e-4: 0}}))
    assert none.learning_rate.tolist() == [1e-4] and np.isnan(none.validation_dice[0])


def test_validation_score_of_the_tested_model(tmp_path):
    pd.DataFrame({"epoch": [1, 2, 3], "val_loss": [0.9, 0.4, 0.6], "val_foreground_dice": [0.2, 0.7, 0.6]}).to_csv(
        tmp_path / "history.csv", index=False)
    assert validation_score(str(tmp_path), "last", 3) == 0.6
    assert validation_score(str(tmp_path), "best", 3) == 0.7  # the lowest validation loss
    assert validation_score(str(tmp_path), "last", 2) == 0.7  # epochs beyond the run's state are not its own
    assert np.isnan(validation_score(str(tmp_path), "none", 3))
    assert np.isnan(validation_score(str(tmp_path / "missing"), "last", 3))


@pytest.mark.backend_agnostic
def test_compare_with_a_sweep_reports_fixed_and_tuned_tables(prepared_trus, tmp_path):
    out = tmp_path / "sweep"
    config = CompareConfig(data=prepared_trus, out=str(out), models=["unet"], losses=["ce", "wce"], optimizers=["sgdm"],
                           folds=[0, 1], seeds=[0], run_options=dict(TINY), lr_sweep="0.05,1e-3")
    lines = []
    table = compare(config, verbose=0, log=lines.append)
    assert len(lines) == 12 and "unet ce sgdm lr 0.0005 fold 0 seed 0" in lines[0]  # the fixed rate first
    # results.csv keeps the paper's fixed-rate table.
    assert table.learning_rate.eq(5e-4).all() and len(pd.read_csv(out / "results.csv")) == 4
    sweep = pd.read_csv(out / "lr_sweep.csv")
    assert len(sweep) == 12 and sorted(sweep.learning_rate.unique()) == [5e-4, 1e-3, 0.05]
    assert sweep.groupby(["loss", "fold"]).chosen.sum().eq(1).all()
    for (loss, fold), runs in sweep.groupby(["loss", "fold"]):
        best = runs.validation_dice.max()
        chosen = runs[runs.chosen].iloc[0]
        assert chosen.validation_dice == best
        assert chosen.learning_rate == runs[runs.validation_dice == best].learning_rate.min()
        # The score is the validation Dice of the tested (last) model, read from the run's own history...
        history = pd.read_csv(out / chosen.run_dir / "history.csv")
        assert chosen.validation_dice == pytest.approx(history.val_foreground_dice.iloc[-1])
        # ...whose validation cases are none of its test cases.
        saved = json.load(open(out / chosen.run_dir / "config.json"))
        assert saved["validation_cases"] and not set(saved["validation_cases"]) & set(saved["test_cases"])
        assert saved["learning_rate"] == chosen.learning_rate
    tuned = pd.read_csv(out / "tuned.csv")
    assert sorted(tuned.run_dir) == sorted(sweep[sweep.chosen].run_dir)
    markdown = (out / "results.md").read_text()
    assert markdown.startswith("# Results at the fixed learning rate 0.0005 (the paper's setting)")
    assert "# Results with the learning rate tuned per loss (sweep: 0.0005, 0.001, 0.05)" in markdown
    assert "## Learning rates chosen on the validation cases" in markdown and "| WCE+U-net | SGDM |" in markdown
    assert (out / "tuned.png").stat().st_size > 1000
    assert os.path.isdir(out / "runs" / "unet" / "ce-sgdm-lr0.05" / "fold1-seed0")


def test_compare_cli_refuses_a_bad_sweep_before_training(prepared_trus, tmp_path, capsys):
    grid = ["compare", "--data", prepared_trus, "--models", "unet", "--losses", "ce", "--folds", "0", "--epochs", "1"]
    assert main([*grid, "--out", str(tmp_path / "a"), "--lr-sweep", "1e-3"]) == 2
    assert "--lr-sweep needs at least two different learning rates" in capsys.readouterr().err
    assert main([*grid, "--out", str(tmp_path / "b"), "--lr-sweep", "1e-3,1e-2", "--validation-fraction", "0"]) == 2
    assert "--lr-sweep chooses the rate on validation cases, but fold 0 has none (validation_fraction=0.0" in capsys.readouterr().err
    assert not (tmp_path / "a" / "runs").exists() and not (tmp_path / "b" / "runs").exists()


SHIPPED_CONFIGS = ["compare-camvid-paper.yaml", "compare-camvid.yaml", "compare-scenes.yaml", "compare-trus.yaml",
                   "compare-zones.yaml"]


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_shipped_configs_are_valid_grids(name):
    """Every YAML in configs/ loads and builds valid runs (a typo in a setting would fail here, not after prep)."""
    from keras_focal.training.config import RunConfig

    root = os.path.join(os.path.dirname(__file__), "..", "configs")
    assert sorted(n for n in os.listdir(root) if n.endswith(".yaml")) == SHIPPED_CONFIGS
    config = CompareConfig.from_yaml(os.path.join(root, name))
    runs = list(config.runs())
    assert runs and all(isinstance(run, RunConfig) for run in runs)
    assert len(runs) == len(config.models) * len(config.losses) * len(config.optimizers) * len(config.folds) * len(config.seeds)
    if name == "compare-scenes.yaml":
        assert config.data == "data/prepared/camvid" and "dice_ce" in config.losses and config.folds == [0, 1, 2]
    if name == "compare-zones.yaml":  # `prep synth data --msd 12 ... --prepare` writes data/prepared/msd
        assert config.data == "data/prepared/msd" and config.folds == [0, 1, 2] and len(runs) == 15
    if name.startswith("compare-camvid"):  # CamVid's official split: split.csv holds one fold, 0
        assert config.folds == [0] and config.seeds == [0, 1, 2] and len(runs) == 15
        assert all(run.evaluate == "best" for run in runs)
        assert config.losses == ["ce", "wce", "fl", "dice_ce", "adfl"]
