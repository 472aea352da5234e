"""Dice and IoU per class from a confusion matrix accumulated over a test set."""

import numpy as np


def update_confusion(confusion, labels, predictions, ignore_label=255):
    """Adds `(labels, predictions)` to `confusion[true, predicted]`, skipping ignored pixels."""
    labels = np.asarray(labels).ravel().astype(np.int64)
    predictions = np.asarray(predictions).ravel().astype(np.int64)
    keep = labels != ignore_label
    num_classes = confusion.shape[0]
    confusion += np.bincount(
        labels[keep] * num_classes + predictions[keep], minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)
    return confusion


def class_scores(confusion):
    """Per-class IoU `TP / (TP + FP + FN)` and Dice `2TP / (2TP + FP + FN)`.

    NaN for a class absent from both the labels and the predictions
    (MATLAB's `evaluateSemanticSegmentation` does the same).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diag(confusion)
    false_positive = confusion.sum(axis=0) - true_positive
    false_negative = confusion.sum(axis=1) - true_positive
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = true_positive / (true_positive + false_positive + false_negative)
        dice = 2 * true_positive / (2 * true_positive + false_positive + false_negative)
    return iou, dice


def foreground_classes(class_names):
    """Indices scored for mDSC/mIOU: every class not named "background" (the paper scores the prostate only)."""
    indices = [i for i, name in enumerate(class_names) if str(name).lower() != "background"]
    return indices or list(range(len(class_names)))
