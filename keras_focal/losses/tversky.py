"""Tversky loss (Salehi et al., 2017), the Dice loss with weighted false positives and negatives."""

from __future__ import annotations

import keras

from keras_focal.losses import _base, _overlap
from keras_focal.types import TensorLike


@keras.saving.register_keras_serializable(package="keras_focal")
class TverskyLoss(_overlap.OverlapLoss):
    """Soft Tversky loss over softmax outputs, per image and class.

    With soft counts over the pixels of image `b` for class `c`,
    `TP = sum p g`, `FP = sum p (1 - g)`, `FN = sum (1 - p) g`:

    ```
    loss_bc = 1 - (TP + smooth) / (TP + alpha FP + beta FN + smooth)
    ```

    averaged over classes and images. `alpha` weighs false positives and
    `beta` false negatives, as in MONAI's `TverskyLoss`; `beta > alpha`
    favours recall of small structures. `alpha = beta = 0.5` is the Dice
    loss (up to how `smooth` enters). Options as `DiceLoss`.

    Args:
        alpha: weight of the false positives, >= 0.
        beta: weight of the false negatives, >= 0.
        from_logits: whether `y_pred` holds logits (a softmax is applied).
        axis: the class axis of `y_pred`.
        include_background: keep class 0 in the mean over classes.
        batch: pool the batch before the ratio; default per image.
        smooth: added to numerator and denominator, >= 0.
        ignore_class: integer label whose pixels count for nothing.
        reduction: Keras reduction, default `"sum_over_batch_size"`.
        name: loss name.
        dtype: computation dtype; float32 by default whatever the policy.

    Examples:
        >>> loss = TverskyLoss(alpha=0.3, beta=0.7, include_background=False, smooth=0.0)
        >>> round(float(loss([[1, 1]], [[[0.5, 0.5], [0.5, 0.5]]])), 5)  # 1 - TP / (TP + 0.7 FN), TP = FN = 1
        0.41176
    """

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 0.5,
        from_logits: bool = False,
        axis: int = -1,
        include_background: bool = True,
        batch: bool = False,
        smooth: float = 1e-5,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        name: str = "tversky_loss",
        dtype: str | None = None,
    ) -> None:
        super().__init__(
            from_logits=from_logits, axis=axis, include_background=include_background, batch=batch,
            smooth=smooth, ignore_class=ignore_class, reduction=reduction, name=name, dtype=dtype,
        )
        _base._check_non_negative("alpha", alpha)
        _base._check_non_negative("beta", beta)
        self.alpha, self.beta = float(alpha), float(beta)

    def class_losses(self, tp: TensorLike, predicted: TensorLike, labelled: TensorLike) -> TensorLike:
        false_positives = predicted - tp
        false_negatives = labelled - tp
        denominator = tp + self.alpha * false_positives + self.beta * false_negatives + self.smooth
        return 1.0 - (tp + self.smooth) / denominator

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"alpha": self.alpha, "beta": self.beta})
        return config


def tversky_loss(y_true: TensorLike, y_pred: TensorLike, alpha: float = 0.5, beta: float = 0.5, from_logits: bool = False, axis: int = -1, include_background: bool = True, batch: bool = False,
                 smooth: float = 1e-5, ignore_class: int | None = None) -> TensorLike:
    """Soft Tversky loss per image: Keras's functional form (`model.compile(loss=tversky_loss)`).

    Formula (Salehi et al.; MONAI's `TverskyLoss`), per image and class with
    `TP = sum p g`, `FP = sum p (1 - g)`, `FN = sum (1 - p) g`, averaged over
    the classes: `1 - (TP + smooth) / (TP + alpha FP + beta FN + smooth)`.

    Takes the options of `TverskyLoss` and returns one value per image.

    Examples:
        >>> import numpy as np
        >>> values = tversky_loss(np.array([[1, 1]]), np.array([[[0.5, 0.5], [0.5, 0.5]]]), 0.3, 0.7,
        ...                       include_background=False, smooth=0.0)
        >>> round(float(values[0]), 5)
        0.41176
    """
    loss = TverskyLoss(alpha=alpha, beta=beta, from_logits=from_logits, axis=axis, include_background=include_background,
                       batch=batch, smooth=smooth, ignore_class=ignore_class, reduction=None)
    return loss.call(y_true, y_pred)
