"""Losses for class-imbalanced classification and segmentation.

All losses are `keras.losses.Loss` subclasses, Keras-serialisable, computed in
float32 whatever the dtype policy, and written with `keras.ops` only (they run
on the TensorFlow, JAX and PyTorch backends). As in `keras.losses`, each has a
functional form `fn(y_true, y_pred, **options)` that gives the unreduced
values and works as `model.compile(loss=fn)`: `cross_entropy`,
`weighted_cross_entropy`, `binary_focal_loss`, `categorical_focal_loss`,
`dual_focal_loss`, `dice_loss`, `tversky_loss` (its docstring's `Formula:`
is the paper's equation). `get` takes a name, a config or a callable.

Label formats of the softmax losses (`CrossEntropy`, `WeightedCrossEntropy`,
`CategoricalFocalLoss`, `DualFocalLoss`) are detected from the ranks:

- `y_true` of rank `rank(y_pred) - 1`, or of the same rank with a class axis of
  size 1 while `y_pred` has `C > 1` classes: integer class maps (e.g.
  segmentation masks `(B, H, W)` / `(B, H, W, 1)` against `(B, H, W, C)`);
- `y_true` of the shape of `y_pred`: one-hot or soft labels (non-negative; they
  need not sum to 1, as in Keras).

Each loss's terms are a short public function beside its class, in the
paper's notation over exact `log p` and `log(1 - p)`
(`weighted_cross_entropy_terms`, `binary_focal_terms`,
`categorical_focal_terms`, `dual_focal_terms`; the region losses'
`class_losses`): the class calls it for probabilities, and the logits paths
below compute the same values with closed-form gradients.

From logits, all three forms run through one exact cross-entropy graph
(`keras_focal.losses._softmax`) and give the same values and gradients for the
same labels. Dense labels that are one-hot in every pixel are detected at run
time (one fused reduction) and take the per-pixel path of integer masks; soft
labels pay for the per-class focal terms their definition needs.

Integer labels outside `[0, C)` that are not `ignore_class` raise a
`ValueError` when the loss runs eagerly; inside a compiled graph they cannot
be inspected, so validate masks in the input pipeline
(`keras_focal.data_prep` does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keras_focal import loss_names
from keras_focal.losses.combined import CombinedLoss
from keras_focal.losses.cross_entropy import (
    CrossEntropy,
    WeightedCrossEntropy,
    cross_entropy,
    weighted_cross_entropy,
    weighted_cross_entropy_terms,
)
from keras_focal.losses.dice import DiceLoss, dice_loss
from keras_focal.losses.dual_focal import DualFocalLoss, dual_focal_loss, dual_focal_terms
from keras_focal.losses.focal import (
    BinaryFocalLoss,
    CategoricalFocalLoss,
    binary_focal_loss,
    binary_focal_terms,
    categorical_focal_loss,
    categorical_focal_terms,
)
from keras_focal.losses.tversky import TverskyLoss, tversky_loss


def get(identifier: str | dict | Callable, **kwargs: Any) -> Callable:
    """A loss from a name, a serialised config or a loss itself, as `keras.losses.get` takes them.

    - a `keras.losses.Loss` or any other callable is returned as it is;
    - a config dict (`keras.saving.serialize_keras_object(loss)`, or
      `{"class_name": "keras_focal>DualFocalLoss", "config": {...}}`) is
      deserialised;
    - a string is a short or long name, built with `kwargs`.

    The names are those of the trainer's `--loss` (one table,
    `keras_focal.loss_names.LOSS_NAMES`): `"ce"`, `"wce"`, `"fl"`, `"dfl"`,
    `"bfl"`, `"dice"`, `"tversky"`, `"dice_ce"`, `"dice_fl"` and the long
    forms `"cross_entropy"`, `"weighted_cross_entropy"`, `"focal"`,
    `"dual_focal"`, `"binary_focal"`, case-insensitive. `"dice_ce"` and
    `"dice_fl"` are `CombinedLoss`es (weights 1:1) whose parts all get
    `kwargs`. `"acw_ce"` and `"adfl"` name the Adaptive Class Weight layer
    *plus* a loss; a loss alone cannot add the layer, so they raise a
    `ValueError` that says how to build them.

    Args:
        identifier: a short or long loss name, a config dict, or a loss.
        **kwargs: for a name only: passed to the loss's constructor (e.g.
            `class_weights` for `"wce"`, `gamma` for `"fl"`, `from_logits`);
            for the combined names, to every part that takes them.

    Returns:
        A `keras.losses.Loss` instance (or the callable given).

    Raises:
        ValueError: an unknown name, options given with a config or a loss,
            or an identifier of another type.

    Examples:
        >>> get("fl", gamma=0.5, from_logits=True).gamma
        0.5
        >>> import keras
        >>> get(keras.saving.serialize_keras_object(get("dfl", gamma=2.0))).gamma
        2.0
    """
    if not isinstance(identifier, str):
        if kwargs:
            raise ValueError(f"options {sorted(kwargs)} apply to a loss name only; got {type(identifier).__name__} "
                             f"{identifier!r}: set them in the config or on the loss itself.")
        if isinstance(identifier, dict):
            import keras

            return keras.saving.deserialize_keras_object(identifier)
        if callable(identifier):
            return identifier
        raise ValueError(f"a loss is a name, a config dict or a callable; got {type(identifier).__name__} {identifier!r}.")
    name = identifier
    entry = loss_names.lookup(name)
    if entry is None:
        raise ValueError(f"Unknown loss name {name!r}. Allowed: {loss_names.all_names()}")
    if entry.with_acw_layer:
        raise ValueError(
            f"{name!r} is the AdaptiveClassWeight layer plus {entry.loss_class}, not a loss "
            "alone: put keras_focal.layers.AdaptiveClassWeight(weights) after the logits "
            f"and train with keras_focal.losses.get({'dfl' if entry.name == 'adfl' else 'ce'!r}) "
            "(the trainer's --loss " + entry.name + " does both)."
        )
    if entry.parts:
        return _combined(entry, kwargs)
    return globals()[entry.loss_class](**kwargs)


def _combined(entry, kwargs):
    """The `CombinedLoss` of `entry`'s parts, each built with the keyword arguments it takes."""
    import inspect

    classes = [globals()[part] for part in entry.parts]
    accepted = [set(inspect.signature(loss_class.__init__).parameters) for loss_class in classes]
    unknown = sorted(set(kwargs) - set().union(*accepted))
    if unknown:  # a misspelt option must not vanish silently
        raise ValueError(
            f"{entry.name!r} ({' + '.join(entry.parts)}) takes no argument {unknown}: none of its parts accepts it."
        )
    return CombinedLoss([
        loss_class(**{key: value for key, value in kwargs.items() if key in names})
        for loss_class, names in zip(classes, accepted)
    ])


__all__ = [
    "BinaryFocalLoss",
    "CategoricalFocalLoss",
    "CombinedLoss",
    "CrossEntropy",
    "DiceLoss",
    "DualFocalLoss",
    "TverskyLoss",
    "WeightedCrossEntropy",
    "binary_focal_loss",
    "binary_focal_terms",
    "categorical_focal_loss",
    "categorical_focal_terms",
    "cross_entropy",
    "dice_loss",
    "dual_focal_loss",
    "dual_focal_terms",
    "get",
    "tversky_loss",
    "weighted_cross_entropy",
    "weighted_cross_entropy_terms",
]
