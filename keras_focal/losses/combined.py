"""A weighted sum of losses (e.g. nnU-Net's Dice + cross-entropy)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from keras_focal.types import TensorLike


@keras.saving.register_keras_serializable(package="keras_focal")
class CombinedLoss(keras.losses.Loss):
    """The weighted sum of several losses on the same labels and predictions.

    ```
    loss = sum_k weight_k * loss_k(y_true, y_pred)
    ```

    Each part is reduced by its own reduction first (a per-pixel loss by its
    mean over pixels, the Dice loss by its mean over images and classes), so
    the parts keep their usual scales, as in nnU-Net's `DC_and_CE_loss` and
    MONAI's `DiceCELoss`. The parts must agree on `from_logits` (they see the
    same `y_pred`). `part_metrics()` gives one Keras metric per part, to
    follow each in `fit`'s logs.

    Args:
        losses: a list of `keras.losses.Loss` instances (or their serialised
            configs).
        weights: one weight >= 0 per part; None for 1 each.
        reduction: how the summed scalar is reduced (it is already a
            scalar; kept for Keras's API).
        name: loss name.
        dtype: computation dtype; float32 by default.

    Examples:
        >>> from keras_focal.losses import CrossEntropy, DiceLoss
        >>> loss = CombinedLoss([CrossEntropy(from_logits=True), DiceLoss(from_logits=True)])
        >>> [part.name for part in loss.losses]
        ['cross_entropy', 'dice_loss']
    """

    def __init__(
        self, losses: Sequence[keras.losses.Loss], weights: Sequence[float] | None = None,
        reduction: str | None = "sum_over_batch_size", name: str = "combined_loss", dtype: str | None = None,
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")
        if not isinstance(losses, (list, tuple)) or not losses:
            raise ValueError(f"`losses` must be a non-empty list of Keras losses. Received: losses={losses!r}")
        parts = [keras.losses.deserialize(part) if isinstance(part, dict) else part for part in losses]
        for part in parts:
            if not isinstance(part, keras.losses.Loss):
                raise ValueError(f"every entry of `losses` must be a keras.losses.Loss. Received: {part!r}")
        checked = np.asarray([1.0] * len(parts) if weights is None else weights, dtype="float64")
        if checked.shape != (len(parts),) or not np.all(np.isfinite(checked)) or np.any(checked < 0):
            raise ValueError(
                f"`weights` must have one finite weight >= 0 per loss ({len(parts)}). Received: weights={checked.tolist()}"
            )
        logit_flags = {bool(getattr(part, "from_logits", False)) for part in parts if hasattr(part, "from_logits")}
        if len(logit_flags) > 1:
            raise ValueError(
                "the parts of a CombinedLoss see the same predictions, so their `from_logits` must agree. "
                f"Received: {[(part.name, part.from_logits) for part in parts if hasattr(part, 'from_logits')]}"
            )
        self.losses = parts
        self.weights = [float(w) for w in checked]

    def call(self, y_true: TensorLike, y_pred: TensorLike) -> TensorLike:
        total = None
        for weight, part in zip(self.weights, self.losses):
            value = weight * part(y_true, y_pred)
            total = value if total is None else total + value
        return total

    def part_metrics(self) -> list[keras.metrics.Metric]:
        """One `keras.metrics.MeanMetricWrapper` per part, named after it, for `model.compile(metrics=...)`."""
        return [keras.metrics.MeanMetricWrapper(fn=part, name=part.name) for part in self.losses]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"losses": [keras.losses.serialize(part) for part in self.losses], "weights": self.weights,
                       "dtype": self.dtype})
        return config
