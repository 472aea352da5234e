"""Losses for class-imbalanced classification and segmentation.

All losses are `keras.losses.Loss` subclasses, Keras-serialisable, computed in
float32 whatever the dtype policy, and written with `keras.ops` only (they run
on the TensorFlow, JAX and PyTorch backends).

Label formats of the softmax losses (`CrossEntropy`, `WeightedCrossEntropy`,
`CategoricalFocalLoss`, `DualFocalLoss`) are detected from the ranks:

- `y_true` of rank `rank(y_pred) - 1`, or of the same rank with a class axis of
  size 1 while `y_pred` has `C > 1` classes: integer class maps (e.g.
  segmentation masks `(B, H, W)` / `(B, H, W, 1)` against `(B, H, W, C)`);
- `y_true` of the shape of `y_pred`: one-hot or soft labels (non-negative; they
  need not sum to 1, as in Keras).

All three forms run through one exact cross-entropy graph
(`keras_focal.losses._softmax`) and give the same values and gradients for the
same labels. Dense labels that are one-hot in every pixel are detected at run
time (one fused reduction) and take the per-pixel path of integer masks; soft
labels pay for the per-class focal terms their definition needs.

Integer labels outside `[0, C)` that are not `ignore_class` raise a
`ValueError` when the loss runs eagerly; inside a compiled graph they cannot
be inspected, so validate masks in the input pipeline
(`keras_focal.data_prep` does).
"""

from keras_focal.losses.cross_entropy import CrossEntropy
from keras_focal.losses.cross_entropy import WeightedCrossEntropy
from keras_focal.losses.dual_focal import DualFocalLoss
from keras_focal.losses.focal import BinaryFocalLoss
from keras_focal.losses.focal import CategoricalFocalLoss

_ALIASES = {
    "ce": CrossEntropy,
    "cross_entropy": CrossEntropy,
    "wce": WeightedCrossEntropy,
    "weighted_cross_entropy": WeightedCrossEntropy,
    "fl": CategoricalFocalLoss,
    "focal": CategoricalFocalLoss,
    "categorical_focal": CategoricalFocalLoss,
    "bfl": BinaryFocalLoss,
    "binary_focal": BinaryFocalLoss,
    "dfl": DualFocalLoss,
    "dual_focal": DualFocalLoss,
}


def get(name, **kwargs):
    """Builds a loss from its short name.

    Args:
        name: one of `"ce"`, `"wce"`, `"fl"`, `"dfl"`, `"bfl"` (or the long
            forms `"cross_entropy"`, `"weighted_cross_entropy"`, `"focal"`,
            `"dual_focal"`, `"binary_focal"`), case-insensitive.
        **kwargs: passed to the loss's constructor (e.g. `class_weights` for
            `"wce"`, `gamma` for `"fl"`, `from_logits`).

    Returns:
        A `keras.losses.Loss` instance.

    Example:

    >>> get("fl", gamma=0.5, from_logits=True).gamma
    0.5
    """
    if not isinstance(name, str) or name.lower() not in _ALIASES:
        raise ValueError(
            f"Unknown loss name {name!r}. Allowed: {sorted(_ALIASES)}"
        )
    return _ALIASES[name.lower()](**kwargs)


__all__ = [
    "BinaryFocalLoss",
    "CategoricalFocalLoss",
    "CrossEntropy",
    "DualFocalLoss",
    "WeightedCrossEntropy",
    "get",
]
