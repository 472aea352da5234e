"""Soft per-class overlap counts of softmax outputs, shared by the Dice and Tversky losses.

For softmax probabilities `p` and labels `g` (one-hot from integer masks, or
dense as given), per image `b` and class `c` (or per class over the whole
batch with `batch=True`):

    TP = sum p g,   P = sum p,   G = sum g,   FP = P - TP,   FN = G - TP

Pixels whose label is `ignore_class` add nothing to any count. Only these
three sums over the pixels are needed: one softmax and three reductions.
"""

from __future__ import annotations

from keras import ops

from keras_focal.losses import _base, _softmax
from keras_focal.types import TensorLike


class OverlapLoss(_base.CategoricalLoss):
    """Base of the losses computed from soft TP, P and G (per image, or per batch).

    Subclasses implement `class_losses(tp, predicted, labelled)` returning the
    loss of every class from the counts (shape `(B, C)`, or `(C,)` with
    `batch=True`).
    """

    def __init__(
        self,
        from_logits: bool = False,
        axis=-1,
        include_background: bool = True,
        batch: bool = False,
        smooth=1e-5,
        ignore_class=None,
        reduction: str | None = "sum_over_batch_size",
        name=None,
        dtype=None,
    ) -> None:
        super().__init__(
            from_logits=from_logits, axis=axis, ignore_class=ignore_class, reduction=reduction, name=name, dtype=dtype
        )
        _base._check_non_negative("smooth", smooth)
        self.include_background = bool(include_background)
        self.batch = bool(batch)
        self.smooth = float(smooth)

    def class_losses(self, tp: TensorLike, predicted: TensorLike, labelled: TensorLike):
        raise NotImplementedError

    def call(self, y_true: TensorLike, y_pred: TensorLike):
        inputs = self.read_inputs(y_true, y_pred, min_rank=3)  # lists and variables become tensors there
        rank = len((inputs.logits if inputs.logits is not None else inputs.probabilities).shape)
        axis, probabilities, truth, valid = inputs.axis, inputs.probabilities, inputs.dense, inputs.valid
        if axis == 0:
            raise ValueError(f"`axis` must not be the batch axis 0. Received: axis={self.axis}")
        if inputs.logits is not None:
            probabilities = ops.softmax(inputs.logits, axis=axis)
        if inputs.labels is not None:
            truth = _softmax.one_hot(inputs.labels, inputs.num_classes, axis)
        if valid is not None:
            weight = ops.cast(valid, "float32")
            probabilities, truth = probabilities * weight, truth * weight
        # Sum over the pixel axes (and the batch with batch=True); the class axis stays.
        pixel_axes = tuple(i for i in range(rank) if i != axis and (self.batch or i != 0))
        tp = ops.sum(probabilities * truth, axis=pixel_axes)
        predicted = ops.sum(probabilities, axis=pixel_axes)
        labelled = ops.sum(truth, axis=pixel_axes)
        losses = self.class_losses(tp, predicted, labelled)  # (B, C) or (C,)
        if not self.include_background:
            losses = losses[..., 1:]
        # The mean over classes: per image, or one value for the batch.
        return ops.mean(losses, axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"include_background": self.include_background, "batch": self.batch, "smooth": self.smooth}
        )
        return config
