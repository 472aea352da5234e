"""MATLAB-style segmentation metrics against scikit-learn and hand-worked cases."""

import json
import math

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, jaccard_score, recall_score

from keras_focal.evaluation import bf_score, evaluate_semantic_segmentation


def _random_maps(seed, count=5, shape=(17, 23), classes=4, ignore=True):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, size=(count, *shape))
    predicted = np.where(rng.random((count, *shape)) < 0.6, truth, rng.integers(0, classes, size=(count, *shape)))
    if ignore:
        truth = np.where(rng.random((count, *shape)) < 0.05, 255, truth)
    return predicted, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dataset_and_class_metrics_match_scikit_learn(seed):
    predicted, truth = _random_maps(seed)
    result = evaluate_semantic_segmentation(predicted, truth, ["background", "a", "b", "c"])
    keep = truth != 255
    y_true, y_pred = truth[keep], predicted[keep]
    labels = [0, 1, 2, 3]
    np.testing.assert_array_equal(result.confusion_matrix, confusion_matrix(y_true, y_pred, labels=labels))
    np.testing.assert_allclose(result.class_metrics["IoU"], jaccard_score(y_true, y_pred, labels=labels, average=None))
    np.testing.assert_allclose(result.class_metrics["Dice"], f1_score(y_true, y_pred, labels=labels, average=None))
    np.testing.assert_allclose(result.class_metrics["Accuracy"], recall_score(y_true, y_pred, labels=labels, average=None))
    assert result.dataset_metrics["GlobalAccuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert result.dataset_metrics["MeanIoU"] == pytest.approx(jaccard_score(y_true, y_pred, labels=labels, average="macro"))
    assert result.dataset_metrics["WeightedIoU"] == pytest.approx(jaccard_score(y_true, y_pred, labels=labels, average="weighted"))
    assert result.dataset_metrics["MeanAccuracy"] == pytest.approx(recall_score(y_true, y_pred, labels=labels, average="macro"))
    rows = result.normalized_confusion_matrix
    np.testing.assert_allclose(rows.sum(axis=1), 1.0)
    # Image metrics: the same definitions on each image.
    for index, image in enumerate(result.image_metrics):
        k = truth[index] != 255
        assert image["MeanIoU"] == pytest.approx(jaccard_score(truth[index][k], predicted[index][k], labels=labels, average="macro"))
    # The paper's foreground figures (classes 1..3: every class not named background).
    image_dice = [f1_score(t[t != 255], p[t != 255], labels=[1, 2, 3], average="macro") for p, t in zip(predicted, truth)]
    assert result.foreground_metrics["mDSC"] == pytest.approx(np.mean(image_dice))
    assert result.foreground_metrics["dataset_DSC"] == pytest.approx(f1_score(y_true, y_pred, labels=[1, 2, 3], average="macro"))


def test_streaming_equals_arrays():
    predicted, truth = _random_maps(3)
    streamed = evaluate_semantic_segmentation(iter(list(predicted)), (t for t in truth), num_classes=4)
    whole = evaluate_semantic_segmentation(predicted, truth, num_classes=4)
    np.testing.assert_array_equal(streamed.confusion_matrix, whole.confusion_matrix)
    assert streamed.dataset_metrics == whole.dataset_metrics


def test_absent_class_is_nan_and_left_out_of_the_means():
    truth = np.array([[0, 0], [1, 1]])
    predicted = np.array([[0, 1], [1, 1]])
    result = evaluate_semantic_segmentation(predicted, truth, ["background", "prostate", "other"])
    assert math.isnan(result.class_metrics["IoU"][2]) and math.isnan(result.class_metrics["MeanBFScore"][2])
    assert result.dataset_metrics["MeanIoU"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert result.foreground_metrics["dataset_IOU"] == pytest.approx(2 / 3)
    payload = json.loads(result.to_json())
    assert payload["class_metrics"]["IoU"][2] is None and payload["foreground_classes"] == ["prostate", "other"]
    assert "| prostate | 1.0000 | 0.6667 | 0.8000 |" in result.to_markdown()
    assert list(result.to_frame("class").index) == ["background", "prostate", "other"]
    assert len(result.to_frame("image")) == 1


def test_bf_score_hand_worked():
    """A 4x4 square against itself shifted right by 2 pixels, on a 40x40 image.

    The tolerance is 0.75% of the diagonal: 0.42 px, so only boundary pixels that coincide count. Each
    boundary has 12 pixels (rows 10 and 13, plus the left and right columns of rows 11-12). Shared: the
    top and bottom rows at columns 12-13, i.e. 4 pixels. The truth's right edge (column 13, rows 11-12) lies
    inside the prediction, and the prediction's left edge (column 12) inside the truth. So P = R = 4/12 and
    BF = 1/3.
    """
    truth = np.zeros((40, 40), bool)
    truth[10:14, 10:14] = True
    predicted = np.zeros((40, 40), bool)
    predicted[10:14, 12:16] = True
    tolerance = 0.0075 * math.hypot(40, 40)
    assert bf_score(predicted, truth, tolerance) == pytest.approx(1 / 3)
    assert bf_score(truth, truth, tolerance) == 1.0
    # A 2-pixel tolerance accepts every boundary pixel of the shifted square.
    assert bf_score(predicted, truth, 2.01) == 1.0
    assert bf_score(predicted, np.zeros_like(truth), tolerance) == 0.0
    assert math.isnan(bf_score(np.zeros_like(truth), np.zeros_like(truth), tolerance))


@pytest.mark.parametrize(
    "predictions, truth, message",
    [
        (np.zeros((2, 3)), np.zeros((3, 3)), r"image 0: prediction shape \(2, 3\) differs from ground truth shape \(3, 3\)"),
        (np.zeros((2, 2)), np.full((2, 2), 5), r"image 0: ground truth holds labels \[5\] outside 0\.\.1 \(and not the ignore label 255\)"),
        (np.full((2, 2), 3), np.zeros((2, 2)), r"image 0: prediction holds labels \[3\] outside 0\.\.1\."),
        (np.zeros((0, 2, 2)), np.zeros((0, 2, 2)), r"no label maps to evaluate"),
        (np.zeros((2, 2, 2)), np.zeros((1, 2, 2)), r"`predictions` has more label maps than `ground_truth`"),
    ],
)
def test_bad_inputs(predictions, truth, message):
    with pytest.raises(ValueError, match=message):
        evaluate_semantic_segmentation(predictions, truth, num_classes=2)
