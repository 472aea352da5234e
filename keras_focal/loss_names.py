"""The short loss names shared by `keras_focal.losses.get`, the trainer's `--loss` and the reports.

One table, so that a name means the same thing wherever a user types it. It
imports nothing heavy: the command line reads it to list the choices.

Four names are a weighted sum of losses or a preset: `dice_ce` (Dice + CE,
1:1, nnU-Net's default) and `dice_fl` (Dice + focal) are `CombinedLoss`es,
and the trainer's region losses (`dice`, `tversky` and the Dice parts) pool
the batch and leave class 0 out when the data set names it "background"
(nnU-Net's 2-D settings; `TRAINER_OPTIONS`), because most prostate slices
have no foreground and a per-image Dice of an absent class is ~1 whatever
the network does. A data set without a background class (CamVid's 11
classes, where class 0 is Sky) keeps every class. `tversky` trains with
alpha = 0.3, beta = 0.7 (Salehi et al.'s choice, favouring recall).

Two names are a layer plus a loss, not a loss alone: `acw_ce` and `adfl` put
the Adaptive Class Weight layer (`keras_focal.layers.AdaptiveClassWeight`,
initialised with the training set's inverse-frequency weights) before the
softmax and train it with cross-entropy or the Dual Focal Loss. The trainer
builds both parts; `losses.get` refuses these names and says how to build
them, since a loss alone cannot add a layer to a model.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LossName:
    """One short loss name.

    Attributes:
        name: the short name (`--loss`, `losses.get`).
        loss_class: the class in `keras_focal.losses` that computes it.
        label: how tables and plots name it (the ADFL paper's abbreviations).
        with_acw_layer: the name means the ACW layer plus `loss_class`.
        segmentation: the trainer accepts it (softmax losses; the sigmoid
            `bfl` is for one-logit outputs).
        aliases: long forms accepted by `losses.get`.
        parts: for a `CombinedLoss`, the class names of its parts (weights 1).
        run_options: the trainer settings (`RunConfig` fields) the loss reads,
            part of a run's identity only for the losses that read them.
    """

    name: str
    loss_class: str
    label: str
    with_acw_layer: bool = False
    segmentation: bool = True
    aliases: tuple = ()
    parts: tuple = ()
    run_options: tuple = ()


LOSS_NAMES = {
    entry.name: entry
    for entry in (
        LossName("ce", "CrossEntropy", "CE", aliases=("cross_entropy",)),
        LossName("wce", "WeightedCrossEntropy", "WCE", aliases=("weighted_cross_entropy",)),
        LossName("fl", "CategoricalFocalLoss", "FL", aliases=("focal", "categorical_focal"), run_options=("gamma",)),
        LossName("dfl", "DualFocalLoss", "DFL", aliases=("dual_focal",)),
        LossName("acw_ce", "CrossEntropy", "ACW+CE", with_acw_layer=True),
        LossName("adfl", "DualFocalLoss", "ADFL", with_acw_layer=True),
        LossName("dice", "DiceLoss", "Dice"),
        LossName("tversky", "TverskyLoss", "Tversky"),
        LossName("dice_ce", "CombinedLoss", "Dice+CE", parts=("DiceLoss", "CrossEntropy")),
        LossName("dice_fl", "CombinedLoss", "Dice+FL", parts=("DiceLoss", "CategoricalFocalLoss"), run_options=("gamma",)),
        LossName("bfl", "BinaryFocalLoss", "BFL", segmentation=False, aliases=("binary_focal",)),
    )
}

# How the trainer builds the region losses (see the module docstring).
# `include_background=False` is applied only when class 0 is named "background".
TRAINER_OPTIONS = {
    "DiceLoss": {"include_background": False, "batch": True},
    "TverskyLoss": {"include_background": False, "batch": True, "alpha": 0.3, "beta": 0.7},
}

# What the trainer's --loss accepts, in the order tables list them.
TRAINER_LOSSES = tuple(name for name, entry in LOSS_NAMES.items() if entry.segmentation)

# Labels of tables and plots, e.g. "adfl" -> "ADFL".
LOSS_LABELS = {name: entry.label for name, entry in LOSS_NAMES.items()}


def lookup(name: str) -> LossName | None:
    """The `LossName` of a short name or alias (case-insensitive), or None."""
    if not isinstance(name, str):
        return None
    key = name.lower()
    for entry in LOSS_NAMES.values():
        if key == entry.name or key in entry.aliases:
            return entry
    return None


def all_names() -> list[str]:
    """Every accepted spelling, sorted."""
    return sorted({n for entry in LOSS_NAMES.values() for n in (entry.name, *entry.aliases)})
