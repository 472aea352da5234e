"""The trainer's input: streamed and cached slices, and each process's share of a global batch."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from keras_focal.data_prep.examples import evaluation_dataset
from keras_focal.data_prep.prepared import PreparedDataset
from keras_focal.training.data import training_dataset

pytestmark = pytest.mark.backend_agnostic


def _arrays(dataset):
    images, masks = zip(*((np.asarray(i), np.asarray(m)) for i, m in dataset))
    return np.concatenate(images), np.concatenate(masks)


@pytest.fixture
def training_cases(prepared_trus):
    dataset = PreparedDataset(prepared_trus)
    return dataset, dataset.split(0)[0]


def test_cache_holds_each_slice_once_and_is_read_back(training_cases, tmp_path):
    dataset, cases = training_cases
    cache = tmp_path / "cache"
    memory = _arrays(evaluation_dataset(dataset.examples(cases, 1), 4))
    cached = dataset.examples(cases, 1, stream=True, cache=str(cache))
    for _ in range(2):  # written by the first pass, read by the second
        images, masks = _arrays(evaluation_dataset(cached, 4))
        np.testing.assert_array_equal(images, memory[0])
        np.testing.assert_array_equal(masks, memory[1])
    files = sorted(os.listdir(cache))
    assert len(files) == len(cached) == len(memory[0])

    # The second pass read the cache: a file replaced by another (complete) slice is what comes back.
    first, second = cached.cache_paths[0], cached.cache_paths[1]
    zeros = tf.io.serialize_tensor(tf.zeros(memory[0].shape[1:3] + (2,), tf.uint8)).numpy()
    open(first, "wb").write(zeros)
    # A file cut short (a killed write) is decoded from the PNGs again and rewritten whole.
    complete = os.path.getsize(second)
    open(second, "r+b").truncate(complete // 2)
    images, masks = _arrays(evaluation_dataset(cached, 4))
    assert (images[0] == -1).all() and not masks[0].any()  # pixel 0, normalised
    np.testing.assert_array_equal(images[1:], memory[0][1:])
    np.testing.assert_array_equal(masks[1:], memory[1][1:])
    assert os.path.getsize(second) == complete


def test_cache_names_change_when_a_png_is_rewritten(prepared_trus, tmp_path):
    shutil.copytree(prepared_trus, tmp_path / "data")
    dataset = PreparedDataset(tmp_path / "data")
    cases = dataset.split(0)[0]
    before = dataset.examples(cases, 1, stream=True, cache=str(tmp_path / "cache")).cache_paths
    os.utime(dataset.examples(cases, 1, stream=True).image_paths[0], ns=(0, 0))
    after = dataset.examples(cases, 1, stream=True, cache=str(tmp_path / "cache")).cache_paths
    assert after[0] != before[0] and after[1:] == before[1:]


@pytest.mark.parametrize("processes", [2, 4])
@pytest.mark.parametrize("stream", [False, True])
def test_process_shares_make_up_the_global_batches(training_cases, processes, stream):
    """Process i feeds the i-th part of every whole global batch, in order, flips included."""
    dataset, cases = training_cases
    examples = dataset.examples(cases, 1, stream=stream)
    batch = 4
    whole = _arrays(training_dataset(examples, batch, 0, 2, seed=3, augment=True, drop_remainder=True))
    shares = [
        _arrays(training_dataset(examples, batch, 0, 2, seed=3, augment=True, drop_remainder=True, shard=(i, processes)))
        for i in range(processes)
    ]
    local = batch // processes
    steps = len(whole[0]) // batch
    assert steps == 2 * (len(examples) // batch)
    for part in (0, 1):  # images, masks
        rebuilt = np.stack([share[part].reshape((steps, local) + share[part].shape[1:]) for share in shares], axis=1)
        np.testing.assert_array_equal(rebuilt.reshape(whole[part].shape), whole[part])
    validation = [_arrays(evaluation_dataset(examples, batch, drop_remainder=True, shard=(i, processes))) for i in range(processes)]
    ordered = _arrays(evaluation_dataset(examples, batch, drop_remainder=True))
    rebuilt = np.stack([v[0].reshape((-1, local) + v[0].shape[1:]) for v in validation], axis=1)
    np.testing.assert_array_equal(rebuilt.reshape(ordered[0].shape), ordered[0])


def _corrupt_truncated(folder, image, mask):
    path = folder / image
    path.write_bytes(path.read_bytes()[:60])
    return image, r"cannot be decoded"


def _corrupt_label(folder, image, mask):
    from PIL import Image

    pixels = np.asarray(Image.open(folder / mask)).copy()
    pixels[0, :3] = 7
    Image.fromarray(pixels).save(folder / mask)
    return mask, r"label\(s\) \[7\] out of range for 2 classes \(allowed: 0\.\.1, or 255 = ignore\)"


def _corrupt_size(folder, image, mask):
    from PIL import Image

    Image.fromarray(np.zeros((16, 32), np.uint8)).save(folder / mask)
    return mask, r"32x16 pixels, its image is 32x32"


def _corrupt_missing(folder, image, mask):
    os.remove(folder / mask)
    return mask, r"missing \(listed in manifest\.csv\)"


def _corrupt_channels(folder, image, mask):
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / image)
    return image, r"3 channel\(s\), the data set's images have 1"


@pytest.fixture
def copied(prepared_trus, tmp_path):
    """A copy of the prepared set, without the record of an earlier check (other tests train on it)."""
    shutil.copytree(prepared_trus, tmp_path / "data", ignore=shutil.ignore_patterns(".checked.json"))
    return tmp_path / "data"


@pytest.mark.parametrize("corrupt", [_corrupt_truncated, _corrupt_label, _corrupt_size, _corrupt_missing, _corrupt_channels])
def test_check_names_the_bad_file_and_what_is_wrong(copied, corrupt):
    import re

    import pandas as pd

    row = pd.read_csv(copied / "manifest.csv").iloc[5]
    name, message = corrupt(copied, row.image, row["mask"])
    with pytest.raises(ValueError) as raised:
        PreparedDataset(copied).check()
    text = str(raised.value)
    assert f"has 1 bad slice file(s):\n  '{copied / name}': " in text
    assert re.search(message, text), text


def test_check_records_sound_slices_and_rechecks_only_changed_ones(copied, monkeypatch):
    dataset = PreparedDataset(copied)
    seen = []
    original = PreparedDataset._slice_problem
    monkeypatch.setattr(PreparedDataset, "_slice_problem", lambda self, image, mask, shape: seen.append(image) or original(self, image, mask, shape))
    dataset.check()
    assert len(seen) == len(dataset.manifest) and (copied / ".checked.json").exists()
    seen.clear()
    PreparedDataset(copied).check()
    assert seen == []
    first = dataset.manifest.iloc[0]
    os.utime(copied / first["mask"], ns=(1, 1))
    PreparedDataset(copied).check()
    assert seen == [first.image]


def test_check_of_a_read_only_data_set_still_runs(copied, monkeypatch):
    from keras_focal.data_prep import prepared

    def refuse(path, data):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(prepared, "write_json_atomically", refuse)
    PreparedDataset(copied).check()  # nothing recorded, nothing raised
    assert not (copied / ".checked.json").exists()
