"""Soft Dice loss (Milletari et al., 2016; MONAI's and nnU-Net's form)."""

from __future__ import annotations

import keras

from keras_focal.losses import _overlap
from keras_focal.types import TensorLike


@keras.saving.register_keras_serializable(package="keras_focal")
class DiceLoss(_overlap.OverlapLoss):
    """Soft Dice loss over softmax outputs, per image and class.

    With softmax probabilities `p` and labels `g`, for image `b` and class `c`
    (sums over the pixels):

    ```
    loss_bc = 1 - (2 sum p g + smooth) / (sum p + sum g + smooth)
    ```

    averaged over classes and images (MONAI's `DiceLoss` with
    `smooth_nr = smooth_dr = smooth`). `batch=True` pools the pixels of the
    whole batch before the ratio (nnU-Net's "batch Dice"): one value per class
    for the batch, then the mean over classes; the loss is then a scalar for
    the batch.

    A class absent from an image (`sum g = 0`) scores `1 - smooth / (sum p +
    smooth)`: close to 1 unless the class is predicted nowhere. That is the
    standard definition; `batch=True` or `include_background=False` soften it
    for rare classes.

    Unlike Keras's `keras.losses.Dice`, labels may be integer masks
    (`(B, H, W)` or `(B, H, W, 1)` against `(B, H, W, C)`) or one-hot / soft
    labels, `ignore_class` pixels add to no count, and the ratio is per image.

    Args:
        from_logits: whether `y_pred` holds logits (a softmax is applied);
            otherwise probabilities summing to 1 over `axis`.
        axis: the class axis of `y_pred`.
        include_background: keep class 0 in the mean over classes.
        batch: pool the batch before the ratio (nnU-Net); default per image.
        smooth: added to numerator and denominator, >= 0.
        ignore_class: integer label whose pixels count for nothing.
        reduction: Keras reduction, default `"sum_over_batch_size"`.
        name: loss name.
        dtype: computation dtype; float32 by default whatever the policy.

    Examples:
        >>> loss = DiceLoss(from_logits=False, smooth=0.0)
        >>> round(float(loss([[0, 1]], [[[0.5, 0.5], [0.5, 0.5]]])), 5)  # 1 - 2 * 0.5 / (1 + 1)
        0.5
    """

    def __init__(
        self,
        from_logits: bool = False,
        axis: int = -1,
        include_background: bool = True,
        batch: bool = False,
        smooth: float = 1e-5,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "dice_loss",
        dtype: str | None = None,
    ) -> None:
        super().__init__(
            from_logits=from_logits, axis=axis, include_background=include_background, batch=batch,
            smooth=smooth, ignore_class=ignore_class, reduction=reduction, name=name, dtype=dtype,
        )

    def class_losses(self, tp: TensorLike, predicted: TensorLike, labelled: TensorLike) -> TensorLike:
        return 1.0 - (2.0 * tp + self.smooth) / (predicted + labelled + self.smooth)


def dice_loss(y_true: TensorLike, y_pred: TensorLike, from_logits: bool = False, axis: int = -1, include_background: bool = True, batch: bool = False, smooth: float = 1e-5,
              ignore_class: int | None = None) -> TensorLike:
    """Soft Dice loss per image: Keras's functional form (`model.compile(loss=dice_loss)`).

    Formula (Milletari et al.; MONAI's `DiceLoss`), per image `b` and class
    `c`, averaged over the classes:
    `1 - (2 sum p g + smooth) / (sum p + sum g + smooth)`.

    Takes the options of `DiceLoss` and returns one value per image (one for
    the batch with `batch=True`).

    Examples:
        >>> import numpy as np
        >>> round(float(dice_loss(np.array([[0, 1]]), np.array([[[0.5, 0.5], [0.5, 0.5]]]), smooth=0.0)[0]), 5)
        0.5
    """
    loss = DiceLoss(from_logits=from_logits, axis=axis, include_background=include_background, batch=batch,
                    smooth=smooth, ignore_class=ignore_class, reduction=None)
    return loss.call(y_true, y_pred)
