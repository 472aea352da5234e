"""Dice and IoU as Keras metrics for segmentation with integer masks."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

from keras_focal.types import TensorLike


class _ConfusionMetric(keras.metrics.Metric):
    """Accumulates a confusion matrix of `argmax(y_pred)` against integer `y_true`."""

    def __init__(self, num_classes: int, class_ids=None, ignore_class=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an integer >= 2. Received: num_classes={num_classes!r}")
        class_ids = list(range(num_classes)) if class_ids is None else [int(c) for c in class_ids]
        if not class_ids or any(not 0 <= c < num_classes for c in class_ids):
            raise ValueError(f"`class_ids` must be a non-empty list of classes in 0..{num_classes - 1}. Received: {class_ids!r}")
        self.num_classes = num_classes
        self.class_ids = class_ids
        self.ignore_class = ignore_class
        self.total_confusion = self.add_variable(
            shape=(num_classes, num_classes), initializer="zeros", dtype="float32", name="total_confusion"
        )

    def update_state(self, y_true: TensorLike, y_pred: TensorLike, sample_weight=None) -> None:
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        predicted = ops.argmax(y_pred, axis=-1) if len(y_pred.shape) == len(y_true.shape) + 1 else y_pred
        weights = ops.ones(ops.shape(y_true), dtype="float32")
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, "float32")
            if len(sample_weight.shape) == len(y_true.shape) + 1 and sample_weight.shape[-1] == 1:
                sample_weight = ops.squeeze(sample_weight, axis=-1)
            while len(sample_weight.shape) < len(y_true.shape):
                sample_weight = ops.expand_dims(sample_weight, -1)
            weights = weights * sample_weight
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        predicted = ops.reshape(ops.cast(predicted, "int32"), (-1,))
        weights = ops.reshape(weights, (-1,))
        if self.ignore_class is not None:
            keep = ops.not_equal(y_true, self.ignore_class)
            weights = ops.where(keep, weights, 0.0)
            y_true = ops.where(keep, y_true, 0)
        # One weighted count per (true, predicted) cell, summed by segment: memory of the order of the pixels,
        # not pixels x classes^2 as a one-hot of the cells would take (388 MB for 16 x 224^2 pixels, 11 classes).
        cells = y_true * self.num_classes + predicted
        counts = ops.segment_sum(weights, cells, num_segments=self.num_classes * self.num_classes)
        self.total_confusion.assign_add(ops.reshape(counts, (self.num_classes, self.num_classes)))

    def _parts(self):
        confusion = ops.convert_to_tensor(self.total_confusion)
        true_positive = ops.diagonal(confusion)
        truth = ops.sum(confusion, axis=1)
        predicted = ops.sum(confusion, axis=0)
        return true_positive, truth, predicted

    def _mean_over_classes(self, values, valid):
        ids = ops.convert_to_tensor(self.class_ids, dtype="int32")
        values, valid = ops.take(values, ids), ops.take(valid, ids)
        valid = ops.cast(valid, "float32")
        return ops.divide_no_nan(ops.sum(ops.where(valid > 0, values, 0.0)), ops.sum(valid))

    def reset_state(self) -> None:
        self.total_confusion.assign(ops.zeros((self.num_classes, self.num_classes), dtype="float32"))

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "class_ids": self.class_ids,
            "ignore_class": self.ignore_class,
            "name": self.name,
            "dtype": self.dtype,
        }


@keras.saving.register_keras_serializable(package="keras_focal")
class DiceScore(_ConfusionMetric):
    """Mean Dice `2TP / (2TP + FP + FN)` over `class_ids`, from a running confusion matrix.

    Takes integer masks `(B, H, W)` or `(B, H, W, 1)` and class scores
    `(B, H, W, C)` (probabilities or logits: the arg-max is scored). Classes
    absent from both truth and prediction so far are left out of the mean
    (MATLAB's rule); `ignore_class` pixels are not counted.

    Args:
        num_classes: number of classes.
        class_ids: the classes to average (default: all); `[1]` gives the
            foreground Dice of a binary task.
        ignore_class: label value left out (e.g. 255).

    Examples:
        >>> metric = DiceScore(num_classes=2, class_ids=[1])
        >>> metric.update_state([[0, 1]], [[[0.9, 0.1], [0.2, 0.8]]])
        >>> float(metric.result())
        1.0
    """

    def __init__(
        self, num_classes: int, class_ids: Sequence[int] | None = None, ignore_class: int | None = None,
        name: str = "dice", dtype: str | None = None,
    ) -> None:
        super().__init__(num_classes, class_ids, ignore_class, name=name, dtype=dtype)

    def result(self) -> TensorLike:
        true_positive, truth, predicted = self._parts()
        denominator = truth + predicted
        return self._mean_over_classes(ops.divide_no_nan(2 * true_positive, denominator), denominator > 0)


@keras.saving.register_keras_serializable(package="keras_focal")
class IoUScore(_ConfusionMetric):
    """Mean IoU `TP / (TP + FP + FN)` over `class_ids`, from a running confusion matrix.

    Same inputs and rules as `DiceScore`.

    Examples:
        >>> metric = IoUScore(num_classes=2)
        >>> metric.update_state([[0, 1]], [[[0.9, 0.1], [0.2, 0.8]]])
        >>> float(metric.result())
        1.0
    """

    def __init__(
        self, num_classes: int, class_ids: Sequence[int] | None = None, ignore_class: int | None = None,
        name: str = "iou", dtype: str | None = None,
    ) -> None:
        super().__init__(num_classes, class_ids, ignore_class, name=name, dtype=dtype)

    def result(self) -> TensorLike:
        true_positive, truth, predicted = self._parts()
        union = truth + predicted - true_positive
        return self._mean_over_classes(ops.divide_no_nan(true_positive, union), union > 0)
