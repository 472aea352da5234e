"""DiceScore and IoUScore Keras metrics."""

import keras
import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score

from keras_focal.losses import CrossEntropy
from keras_focal.metrics import DiceScore, IoUScore
from tests.helpers import to_numpy

pytestmark = pytest.mark.backend_agnostic


def _batch(seed, classes=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=(2, 6, 5))
    labels[0, 0, :] = 255
    scores = rng.random((2, 6, 5, classes)).astype(np.float32)
    return labels, scores


@pytest.mark.parametrize("metric_class, reference", [(DiceScore, f1_score), (IoUScore, jaccard_score)])
@pytest.mark.parametrize("class_ids", [None, [1, 2], [0]])
def test_matches_scikit_learn_over_several_batches(metric_class, reference, class_ids):
    metric = metric_class(num_classes=3, class_ids=class_ids, ignore_class=255)
    all_true, all_pred = [], []
    for seed in range(3):
        labels, scores = _batch(seed)
        metric.update_state(labels[..., None] if seed == 1 else labels, scores)
        keep = labels != 255
        all_true.append(labels[keep])
        all_pred.append(np.argmax(scores, axis=-1)[keep])
    y_true, y_pred = np.concatenate(all_true), np.concatenate(all_pred)
    expected = reference(y_true, y_pred, labels=class_ids or [0, 1, 2], average="macro")
    assert float(to_numpy(metric.result())) == pytest.approx(expected, rel=1e-5)
    metric.reset_state()
    assert float(to_numpy(metric.result())) == 0.0


def test_absent_classes_are_left_out_and_sample_weight_masks():
    metric = DiceScore(num_classes=3)
    labels = np.array([[0, 1]])
    scores = np.array([[[0.9, 0.1, 0.0], [0.1, 0.9, 0.0]]], np.float32)
    metric.update_state(labels, scores)
    assert float(to_numpy(metric.result())) == 1.0  # class 2 absent everywhere: not averaged
    weighted = IoUScore(num_classes=2)
    weighted.update_state(np.array([[0, 1]]), np.array([[[0.9, 0.1], [0.9, 0.1]]], np.float32), sample_weight=np.array([[1.0, 0.0]]))
    assert float(to_numpy(weighted.result())) == 1.0


def test_in_compile_and_serialised(tmp_path):
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 1, activation="softmax")])
    model.compile("adam", CrossEntropy(), metrics=[DiceScore(2, class_ids=[1], name="fg_dice"), IoUScore(2)])
    x = np.random.default_rng(0).random((4, 4, 4, 1)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 2, size=(4, 4, 4))
    model.fit(x, y, epochs=1, verbose=0)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert 0 <= logs["fg_dice"] <= 1 and 0 <= logs["iou"] <= 1
    path = str(tmp_path / "m.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    config = DiceScore.from_config(DiceScore(3, class_ids=[2], ignore_class=255).get_config())
    assert (config.num_classes, config.class_ids, config.ignore_class) == (3, [2], 255)
    assert restored is not None


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"`num_classes` must be an integer >= 2"):
        DiceScore(1)
    with pytest.raises(ValueError, match=r"`class_ids` must be a non-empty list of classes in 0\.\.1"):
        IoUScore(2, class_ids=[2])
