"""The stability study: gradient sweep, Table 1, and a tiny grid showing the NaN pattern."""

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest

from keras_focal.cli import main
from keras_focal.experiments.stability import (
    StudySettings,
    class_counts,
    gradient_sweep,
    load_digits_images,
    run_study,
)


def test_gradient_sweep_nan_pattern():
    logits = np.array([-88.0, -30.0, -17.5, -5.0, 0.0, 5.0, 17.0, 30.0], np.float32)
    sweep = gradient_sweep(gammas=(0.5, 2.0), logits=logits)
    at = sweep[sweep.gamma == 0.5].set_index(["implementation", "y", "logit"]).gradient
    for name in ("naive", "keras"):
        assert np.isnan(at[name, 1, 17.0]) and np.isnan(at[name, 1, 30.0])
        assert np.isnan(at[name, 0, -30.0]) and np.isnan(at[name, 0, -88.0])
        assert np.isfinite(at[name, 1, 5.0]) and np.isfinite(at[name, 0, -5.0])
    for name in ("stabilised", "exact"):
        assert np.isfinite(sweep[sweep.implementation == name].gradient).all()
    assert np.isfinite(sweep[sweep.gamma == 2.0].gradient).all()
    # Where the naive formula is finite, keras-focal's exact loss is the same loss.
    naive = sweep[(sweep.implementation == "naive") & (sweep.logit.abs() <= 5)].loss.to_numpy()
    exact = sweep[(sweep.implementation == "exact") & (sweep.logit.abs() <= 5)].loss.to_numpy()
    np.testing.assert_allclose(exact, naive, rtol=1e-5)
    # ... and so is its gradient, at logit 0 too (torchvision's BCE backward is sigmoid(x) - y;
    # a max/abs form differentiated by autodiff gives a spike there). At x = 0, p = 1/2:
    # d/dx [0.5 * ce * (1 - p_t)^gamma] = -+0.5 * (1/2 * 2^-0.5 + log 2 * 0.5 * 2^0.5 / 4) for y = 1 / 0.
    gradient = sweep[(sweep.gamma == 0.5) & (sweep.logit.abs() <= 5)].pivot_table(
        index=["y", "logit"], columns="implementation", values="gradient")
    np.testing.assert_allclose(gradient.naive, gradient.exact, rtol=1e-5, atol=1e-7)
    for label, sign in ((1, -1), (0, 1)):
        expected = sign * 0.5 * (0.5 * 2 ** -0.5 + np.log(2) * 0.5 * 2 ** 0.5 * 0.25)
        assert at["naive", label, 0.0] == pytest.approx(expected, rel=1e-5)


def test_table_1_counts_and_data_source():
    images, labels, description = load_digits_images("digits")
    assert images.shape == (1797, 28, 28, 1) and images.min() >= 0 and images.max() <= 1
    assert "not MNIST" in description
    table = class_counts(labels)
    per_digit = np.bincount(labels, minlength=10)
    assert list(table.class_A) == [int(per_digit[: t + 1].sum()) for t in range(9)]
    assert list(table.class_A + table.class_B) == [1797] * 9


def test_tiny_grid_shows_the_pattern_and_resumes(tmp_path):
    settings = StudySettings(gammas=(0.1, 0.0, 2.0), thresholds=(0,), noise=(0.0,), segmentation_noise=(0.0,), epochs=6,
                             segmentation_epochs=2, subset=0, segmentation_subset=32, data="digits")
    summary = run_study(str(tmp_path), settings, progress=False, log=lambda line: None)
    grid = pd.read_csv(tmp_path / "classification.csv").set_index(["loss", "gamma"])
    assert not np.isnan(grid.loc[("naive", 0.1), "nan_epoch"])  # imbalanced, small gamma: NaN
    assert grid.loc[("naive", 0.1), "epochs_completed"] < 6
    assert np.isnan(grid.loc[("naive", 2.0), "nan_epoch"]) and np.isnan(grid.loc[("naive", 0.0), "nan_epoch"])
    for loss in ("stabilised", "exact"):
        assert grid.loc[loss].nan_epoch.isna().all() and (grid.loc[loss].epochs_completed == 6).all()
    assert summary["stabilised_nan_cells"] == summary["exact_nan_cells"] == summary["naive_nan_cells_stable_gamma"] == 0
    assert summary["naive_nan_cells_unstable_gamma"] == 1
    for name in ("gradient_sweep.csv", "gradient_sweep.png", "table1.csv", "classification.png", "segmentation.csv", "segmentation.png", "summary.json"):
        assert os.path.exists(tmp_path / name), name
    segmentation = pd.read_csv(tmp_path / "segmentation.csv")
    assert len(segmentation) == 3 * 2  # three losses x two epochs
    assert json.load(open(tmp_path / "summary.json"))["data"].startswith("scikit-learn digits")

    before = (tmp_path / "classification.csv").read_text()
    run_study(str(tmp_path), settings, parts=("classification",), progress=False, log=lambda line: None)
    assert (tmp_path / "classification.csv").read_text() == before  # finished cells are skipped
    with pytest.raises(ValueError, match=r"holds a study with other settings \(epochs\)"):
        run_study(str(tmp_path), dataclasses.replace(settings, epochs=7), parts=("table",), progress=False, log=lambda line: None)


def test_cli_bad_input(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.keras/datasets/mnist.npz
    monkeypatch.setattr("keras_focal.experiments.stability._local_mnist", lambda: None)
    assert main(["stability", "--out", str(tmp_path / "s"), "--data", "mnist", "--parts", "table"]) == 2
    assert "MNIST is not on this machine" in capsys.readouterr().err
    assert main(["stability", "--out", str(tmp_path / "t"), "--data", "digits", "--parts", "table", "--quiet"]) == 0
    assert os.path.exists(tmp_path / "t" / "table1.csv")
