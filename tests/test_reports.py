"""`keras-focal evaluate`: files, numbers consistent with the library, overlays, bad input."""

import json
import os

import numpy as np
import pandas as pd
import pytest

from keras_focal.cli import main
from keras_focal.reporting.overlays import overlay
from keras_focal.training import RunConfig, train_run


@pytest.fixture(scope="module")
def run_dir(prepared_trus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("evaluate") / "run")
    train_run(RunConfig(data=prepared_trus, out=out, epochs=1, model_options={"base_filters": 4, "depth": 2}), verbose=0)
    return out


def test_evaluate_a_run(run_dir, capsys):
    assert main(["evaluate", "--run", run_dir]) == 0
    folder = os.path.join(run_dir, "evaluation")
    for name in ("evaluation.json", "class_metrics.csv", "image_metrics.csv", "confusion_matrix.png", "overlays.json"):
        assert os.path.exists(os.path.join(folder, name)), name
    evaluation = json.load(open(os.path.join(folder, "evaluation.json")))
    from_training = json.load(open(os.path.join(run_dir, "evaluation.json")))
    assert evaluation["confusion_matrix"] == from_training["confusion_matrix"]  # the trainer uses the same function
    metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
    assert metrics["mdsc"] == pytest.approx(evaluation["foreground_metrics"]["mDSC"], nan_ok=True)
    images = pd.read_csv(os.path.join(folder, "image_metrics.csv"))
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert set(images.case) == set(config["test_cases"]) and {"ForegroundDice", "MeanBFScore"} <= set(images)
    overlays = json.load(open(os.path.join(folder, "overlays.json")))
    for label, entry in overlays.items():
        assert os.path.exists(os.path.join(folder, entry["file"]))
    if overlays:
        assert overlays["worst"]["ForegroundDice"] <= overlays["median"]["ForegroundDice"] <= overlays["best"]["ForegroundDice"]
    assert "| metric | value |" in capsys.readouterr().out


def test_evaluate_a_model_file_on_a_fold(run_dir, prepared_trus, tmp_path):
    out = str(tmp_path / "eval")
    assert main(["evaluate", "--model", os.path.join(run_dir, "last.keras"), "--data", prepared_trus, "--fold", "0", "--out", out]) == 0
    assert os.path.exists(os.path.join(out, "class_metrics.csv"))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ([], r"give --run RUN_DIR, or --model FILE --data PREP_DIR --fold K"),
        (["--run", "/no/such/run"], r"'/no/such/run' is not a run folder: it has no config.json"),
        (["--model", "/no/model.keras", "--data", "DATA", "--fold", "0"], r"no model at '/no/model.keras'"),
        (["--model", "/no/model.keras", "--data", "DATA", "--fold", "9"], r"fold 9 is out of range"),
    ],
)
def test_bad_input(arguments, message, prepared_trus, capsys):
    arguments = [prepared_trus if a == "DATA" else a for a in arguments]
    assert main(["evaluate", *arguments]) == 2
    import re

    assert re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize(
    "shape, classes, message",
    [
        ((32, 32, 1), 3, r"it scores 3 classes, the data set has 2 \(background, prostate\)"),
        ((32, 32, 3), 2, r"it takes inputs of shape \(32, 32, 3\), the data set's images are \(32, 32, 1\)"),
        ((64, 64, 1), 2, r"it takes inputs of shape \(64, 64, 1\), the data set's images are \(32, 32, 1\)"),
    ],
)
def test_a_model_that_does_not_fit_the_data_is_refused(prepared_trus, tmp_path, capsys, shape, classes, message):
    """A 3-class model on a 2-class set used to give a full 2x2 report whenever
    the extra class was never predicted."""
    import keras

    inputs = keras.Input(shape)
    model = keras.Model(inputs, keras.layers.Conv2D(classes, 1, activation="softmax")(inputs))
    path = str(tmp_path / "model.keras")
    model.save(path)
    assert main(["evaluate", "--model", path, "--data", prepared_trus, "--fold", "0", "--out", str(tmp_path / "e")]) == 2
    import re

    error = capsys.readouterr().err
    assert f"'{path}' does not fit the data set '{prepared_trus}': " in error
    assert re.search(message, error), error
    assert not os.path.exists(tmp_path / "e")


def test_overlay_colours():
    image = np.zeros((8, 8), np.uint8)
    truth = np.zeros((8, 8), np.uint8)
    truth[2:6, 2:6] = 1
    picture = overlay(image, truth, truth.copy(), [1], scale=1)
    assert picture.shape == (8, 8, 3)
    assert tuple(picture[2, 2]) == (255, 220, 0) and tuple(picture[0, 0]) == (0, 0, 0)
    shifted = np.roll(truth, 1, axis=1)
    picture = overlay(image, truth, shifted, [1], scale=1)
    assert tuple(picture[3, 2]) == (0, 220, 0) and tuple(picture[3, 6]) == (230, 30, 30)


def test_overlay_key_and_caption_below_the_picture():
    from keras_focal.reporting.overlays import OVERLAY_KEY, with_key

    picture = np.full((64, 448, 3), 40, np.uint8)
    keyed = with_key(picture, "median test image: foreground Dice 0.873")
    assert keyed.shape[1:] == (448, 3) and keyed.shape[0] > 64 + 30  # two text lines below
    np.testing.assert_array_equal(keyed[:64], picture)  # the picture itself is untouched
    narrow = with_key(picture[:, :50], "a long caption that is wider than the picture")
    assert narrow.shape[1] > 250  # widened so that the key and caption fit
    strip = keyed[64:].reshape(-1, 3)
    for colour, _ in OVERLAY_KEY:  # each swatch of the key is drawn
        assert (strip == colour).all(axis=1).sum() >= 50, colour
    assert (strip == 0).all(axis=1).any()  # black text
