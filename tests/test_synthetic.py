"""The built-in synthetic data."""

import hashlib
import os

import numpy as np
import SimpleITK as sitk

from keras_focal.data_prep.synthetic import make_mri_volume, make_promise12_like, make_ultrasound_like
from tests.prep_fixtures import SMALL


def _digest(folder):
    digest = hashlib.sha256()
    for root, _, names in sorted(os.walk(folder)):
        for name in sorted(names):
            digest.update(name.encode())
            digest.update(open(os.path.join(root, name), "rb").read())
    return digest.hexdigest()


def test_deterministic_for_a_seed(tmp_path):
    first = make_promise12_like(str(tmp_path / "a"), cases=2, seed=5, **SMALL)
    second = make_promise12_like(str(tmp_path / "b"), cases=2, seed=5, **SMALL)
    other = make_promise12_like(str(tmp_path / "c"), cases=2, seed=6, **SMALL)
    assert _digest(first) == _digest(second) != _digest(other)
    us = [make_ultrasound_like(str(tmp_path / f"u{i}"), cases=1, seed=5, **SMALL) for i in range(2)]
    assert _digest(us[0]) == _digest(us[1])
    assert sorted(os.listdir(first)) == ["TrainingData_Part1", "TrainingData_Part2"]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".synth-")]  # staging removed


def test_promise12_ranges_and_empty_end_slices():
    for seed in range(3):
        rng = np.random.default_rng(seed)
        image, mask, spacing = make_mri_volume(rng, 15, 256)
        assert image.dtype == np.int16 and mask.dtype == np.uint8 and image.shape == mask.shape == (15, 256, 256)
        assert 0.27 <= spacing[0] == spacing[1] <= 0.75 and 2.2 <= spacing[2] <= 4.0
        per_slice = mask.reshape(15, -1).sum(axis=1)
        assert per_slice[0] == 0 and per_slice[-1] == 0 and per_slice.max() > 0
        assert 0.002 < mask.mean() < 0.1  # an imbalanced foreground
        assert image[mask == 1].mean() > image[(mask == 0) & (image > 100)].mean()


def test_written_geometry(tmp_path):
    folder = make_promise12_like(str(tmp_path / "p"), cases=1, seed=0, **SMALL)
    image = sitk.ReadImage(os.path.join(folder, "TrainingData_Part1", "Case00.mhd"))
    mask = sitk.ReadImage(os.path.join(folder, "TrainingData_Part1", "Case00_segmentation.mhd"))
    assert image.GetSpacing() == mask.GetSpacing() and image.GetOrigin() == mask.GetOrigin()
    assert os.path.exists(os.path.join(folder, "TrainingData_Part1", "Case00.raw"))
