"""The built-in CamVid-style street scenes: palette, class shares, determinism, and `prep camvid` on them."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_focal.data_prep.camvid import CAMVID_11, rgb_to_labels
from keras_focal.data_prep.scenes import COLOURS, make_camvid_like, scene_names

CAMVID_COLOURS = {colour for colours in CAMVID_11.values() for colour in colours} | {(0, 0, 0)}
# CamVid's shares in MATLAB's 11-class grouping are about: sky 16%, building 24%, road 29%, pavement 8%,
# tree 11%, car 5%, fence 2%, pole 1%, sign 1%, pedestrian 0.6%, bicyclist 0.5%.
LARGE = ("Sky", "Building", "Road")
RARE = ("Pole", "SignSymbol", "Pedestrian", "Bicyclist")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return make_camvid_like(str(tmp_path_factory.mktemp("scenes") / "camvid"), scenes=24, seed=0, progress=False)


def _labels(folder):
    return [rgb_to_labels(np.asarray(Image.open(os.path.join(folder, n)).convert("RGB")), CAMVID_11)
            for n in sorted(os.listdir(folder)) if n.endswith("_L.png")]


def test_files_are_camvid_frames_with_colour_labels(scenes):
    names = sorted(os.listdir(scenes))
    frames = [n for n in names if not n.endswith("_L.png")]
    assert len(frames) == 24 and len(names) == 48
    assert frames[0] == "Seq01SY_000030.png" and "Seq01SY_000030_L.png" in names
    image = np.asarray(Image.open(os.path.join(scenes, frames[0])))
    labels = np.asarray(Image.open(os.path.join(scenes, "Seq01SY_000030_L.png")))
    assert image.shape == labels.shape == (180, 240, 3) and image.dtype == labels.dtype == np.uint8
    # The label images hold CamVid's colours only (no blending at edges); the image is not its labels.
    for name in names:
        if name.endswith("_L.png"):
            colours = np.unique(np.asarray(Image.open(os.path.join(scenes, name))).reshape(-1, 3), axis=0)
            assert {tuple(int(v) for v in c) for c in colours} <= CAMVID_COLOURS
    assert set(COLOURS.values()) <= CAMVID_COLOURS
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 1000  # texture and noise


def test_every_class_with_camvid_like_shares(scenes):
    counts = np.zeros(256, np.int64)
    for labels in _labels(scenes):
        counts += np.bincount(labels.ravel(), minlength=256)
    labelled = counts[: len(CAMVID_11)].sum()
    shares = dict(zip(CAMVID_11, counts[: len(CAMVID_11)] / labelled))
    assert all(share > 0 for share in shares.values()), shares
    for name in LARGE:
        assert shares[name] > 0.10, (name, shares[name])
    for name in RARE:
        assert 0.0005 < shares[name] < 0.02, (name, shares[name])
    assert 0 < counts[255] / counts.sum() < 0.1  # some void (the camera car's bonnet), as in CamVid
    # Thin objects: a pole is a few pixels wide.
    pole = CAMVID_11_INDEX["Pole"]
    widths = [np.count_nonzero(row) for labels in _labels(scenes) for row in (labels == pole) if row.any()]
    assert np.median(widths) <= 4


CAMVID_11_INDEX = {name: index for index, name in enumerate(CAMVID_11)}


def _digest(folder):
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        digest.update(name.encode() + open(os.path.join(folder, name), "rb").read())
    return digest.hexdigest()


def test_deterministic_per_seed(tmp_path):
    first = make_camvid_like(str(tmp_path / "a"), scenes=3, seed=4, progress=False)
    second = make_camvid_like(str(tmp_path / "b"), scenes=3, seed=4, progress=False)
    other = make_camvid_like(str(tmp_path / "c"), scenes=3, seed=5, progress=False)
    assert _digest(first) == _digest(second) != _digest(other)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".synth-")]  # staging removed


def test_sequences():
    assert [name[1] for name in scene_names(3)] == ["Seq01SY", "Seq02SY", "Seq03SY"]
    names = scene_names(60)
    assert len({name[1] for name in names}) == 6 and len(set(names)) == 60
    assert len({name[1] for name in scene_names(200)}) == 20


@pytest.mark.parametrize("scenes,message", [(0, r"`scenes` must be a positive integer. Received: scenes=0"),
                                            (2.5, r"Received: scenes=2.5")])
def test_bad_count(tmp_path, scenes, message):
    with pytest.raises(ValueError, match=message):
        make_camvid_like(str(tmp_path / "x"), scenes=scenes)
    assert not os.path.exists(tmp_path / "x")


def test_prep_synth_scenes_then_camvid_reads_them_unchanged(tmp_path):
    """`prep synth --scenes` from another working directory with relative paths; `prep camvid` reads the frames."""
    command = [sys.executable, "-m", "keras_focal.cli", "prep", "synth", "data", "--scenes", "12", "--cases", "0",
               "--us-cases", "0", "--prepare", "--size", "48", "--quiet"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "wrote 12 CamVid-style street scenes to data/camvid" in done.stdout
    assert sorted(os.listdir(tmp_path / "data")) == ["camvid", "prepared"]
    prepared = tmp_path / "data" / "prepared" / "camvid"
    classes = json.loads((prepared / "classes.json").read_text())
    assert classes["names"] == list(CAMVID_11)
    assert all(count > 0 for count in classes["pixel_count"])
    folds = (prepared / "folds.csv").read_text().splitlines()[1:]
    assert len(folds) == 6 and all(line.startswith("Seq") for line in folds)  # one case per sequence

    again = subprocess.run([sys.executable, "-m", "keras_focal.cli", "prep", "camvid", "data/camvid", "again", "--size", "48",
                            "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "12 slices" in again.stdout and "0 failed" in again.stdout
    first = np.asarray(Image.open(sorted((prepared / "masks").iterdir())[0]))
    second = np.asarray(Image.open(sorted((tmp_path / "again" / "masks").iterdir())[0]))
    assert np.array_equal(first, second)


def test_prep_synth_refuses_nothing_to_write(tmp_path):
    done = subprocess.run([sys.executable, "-m", "keras_focal.cli", "prep", "synth", "data", "--cases", "0", "--us-cases", "0"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--cases, --us-cases, --scenes and --msd are all 0: nothing to write." in done.stderr
    assert not os.path.exists(tmp_path / "data")
