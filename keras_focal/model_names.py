"""The trainer's segmentation models: one table read by the command line, `RunConfig`, the builders and the reports.

Adding a model is one entry here (and its builder in `keras_focal.models`).
Like `keras_focal.loss_names`, this module imports nothing heavy: the
command line lists the choices before Keras is imported; the builders are
looked up by name when a model is built or checked.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any


@dataclasses.dataclass(frozen=True)
class ModelName:
    """One model of the trainer.

    Attributes:
        name: the short name (`--model`, `RunConfig.model`, run folders).
        builder: the function of `keras_focal.models` that builds it,
            `builder(input_shape, num_classes, acw_weights=..., **options)`.
        label: how tables and plots name it.
        options: the builder arguments a run may set (`model_options`).
        checker: the function of `keras_focal.models` that validates the
            builder's arguments without building (raises ValueError), so that
            a grid is checked before its first run without a network built
            per run.
    """

    name: str
    builder: str
    label: str
    options: tuple
    checker: str

    def build(
        self, input_shape: tuple[int | None, ...], num_classes: int, acw_weights: Any = None, **options: Any,
    ) -> Any:
        return getattr(importlib.import_module("keras_focal.models"), self.builder)(
            input_shape, num_classes, acw_weights=acw_weights, **options
        )

    def check(
        self, input_shape: tuple[int | None, ...], num_classes: int, acw_weights: Any = None, **options: Any,
    ) -> None:
        """Raises ValueError for arguments `build` would refuse (e.g. a U-Net too deep for the image)."""
        getattr(importlib.import_module("keras_focal.models"), self.checker)(
            input_shape, num_classes, acw_weights=acw_weights, **options
        )


MODEL_NAMES = {
    entry.name: entry
    for entry in (
        ModelName("deeplabv3_plus", "deeplabv3_plus", "DeepLabV3+", ("output_stride", "image_pooling"),
                  "check_deeplabv3_plus_arguments"),
        ModelName("vgg19_fcn", "vgg19_fcn", "VGG19 FCN", ("fc_filters", "dropout"), "check_vgg19_fcn_arguments"),
        ModelName("unet", "unet", "U-net", ("depth", "base_filters", "batch_norm"), "check_unet_arguments"),
    )
}

# What the trainer's --model accepts, in the order tables list them.
TRAINER_MODELS = tuple(MODEL_NAMES)

# Labels of tables and plots, e.g. "unet" -> "U-net".
MODEL_LABELS = {name: entry.label for name, entry in MODEL_NAMES.items()}
