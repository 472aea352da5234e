"""The settings of one training run, with MATLAB `trainingOptions` defaults."""

from __future__ import annotations

import dataclasses
import json
import math
import os

from keras_focal.loss_names import LOSS_NAMES, TRAINER_LOSSES
from keras_focal.model_names import MODEL_NAMES, TRAINER_MODELS
from keras_focal.optimizer_names import OPTIMIZER_NAMES, OPTIMIZERS
from keras_focal.types import PathLike

MODELS = TRAINER_MODELS  # one table with the builders and the reports (keras_focal.model_names)
LOSSES = TRAINER_LOSSES  # one table with keras_focal.losses.get (keras_focal.loss_names)
STRATEGIES = ("default", "mirrored", "data-parallel", "multiworker")
EVALUATE = ("last", "best")
INPUTS = ("auto", "memory", "stream")
# Keras's own compile modes: "auto" compiles the train step on JAX always and on
# TensorFlow where Keras turns XLA on (an accelerator); torch runs eagerly.
JIT_COMPILE = ("auto", True, False)
# Settings that only some losses or optimisers read: a run's identity holds them only where they are read.
_READ_BY_SOME = {"gamma", "momentum"}
# Settings that change memory use or where files go, not results.
_NOT_IDENTITY = ("out", "init_dir", "input", "cache")


def _number(config, name: str, allowed, in_range):
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not in_range(value):
        raise ValueError(f"`{name}` must be a finite number {allowed}. Received: {name}={value!r}")


def _choice(value, allowed, name: str):
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(map(str, allowed))}.")


@dataclasses.dataclass
class RunConfig:
    """One run: a model, a loss and an optimiser on one fold of a prepared data set.

    The defaults are the ADFL paper's MATLAB `trainingOptions`: initial
    learning rate 5e-4, momentum 0.9 (SGDM), mini-batch 4, learning rate
    multiplied by 0.95 every 5 epochs (staircase), shuffled every epoch.

    Attributes:
        data: a folder written by `keras-focal prep`.
        out: the run folder.
        model, loss, optimizer: names from `MODELS`, `LOSSES`, `OPTIMIZERS`.
            `acw_ce` and `adfl` add the ACW layer (initialised with the
            training cases' inverse-frequency weights) to CE / Dual Focal.
        fold: the test fold; the other folds train.
        seed: seeds the initial weights, the validation split and shuffling.
        epochs: epochs to train.
        validation_fraction: share of the training cases held out for
            validation (at least one case when there are two or more).
        gamma: focusing parameter of the focal loss (`fl`).
        model_options: builder arguments (`base_filters`, `depth`,
            `fc_filters`, `output_stride`, ...).
        augment: random flips applied identically to image and mask.
        evaluate: test the "last" model (the paper: fixed epochs) or the
            "best" one on validation loss.
        deterministic: enable TensorFlow's deterministic ops.
        mixed_precision: mixed_float16 (a GPU option).
        jit_compile: Keras's `jit_compile` of `model.compile`: "auto" (the
            default, Keras's own choice: the train step is compiled on JAX,
            and with XLA on TensorFlow where an accelerator is present; torch
            runs eagerly), True or False. `config.json` records the mode
            Keras resolved (`jit_compile_used`).
        strategy: "default" (one device), "mirrored" (`tf.distribute`, several
            devices of one host, TensorFlow backend) or "data-parallel"
            (Keras's `DataParallel` distribution over the devices of this
            host, JAX backend). "multiworker" is refused with an explanation.
        init_dir: folder of the shared initial weights (default: `out`).
        input: "memory" decodes the PNGs once and keeps them in RAM; "stream"
            decodes them every epoch (memory does not grow with the data
            set); "auto" streams when the decoded training and validation
            slices would exceed 2 GiB. Both give the same batches.
        cache: a folder for the decoded slices of a streamed set (implies
            streaming under "auto"): each process writes the slices it reads,
            once, and reads them back in later epochs and runs.
    """

    data: str
    out: str
    model: str = "unet"
    loss: str = "adfl"
    optimizer: str = "adam"
    fold: int = 0
    seed: int = 0
    epochs: int = 30
    batch_size: int = 4
    learning_rate: float = 5e-4
    momentum: float = 0.9
    drop_factor: float = 0.95
    drop_period: int = 5
    weight_decay: float = 0.0
    validation_fraction: float = 0.1
    gamma: float = 2.0
    model_options: dict = dataclasses.field(default_factory=dict)
    augment: bool = False
    evaluate: str = "last"
    deterministic: bool = False
    mixed_precision: bool = False
    jit_compile: object = "auto"
    strategy: str = "default"
    init_dir: str | None = None
    input: str = "auto"
    cache: str | None = None

    def __post_init__(self):
        _choice(self.model, MODELS, "model")
        _choice(self.loss, LOSSES, "loss")
        _choice(self.optimizer, OPTIMIZERS, "optimizer")
        _choice(self.strategy, STRATEGIES, "strategy")
        _choice(self.evaluate, EVALUATE, "evaluate")
        _choice(self.input, INPUTS, "input")
        if not (isinstance(self.jit_compile, bool) or self.jit_compile == "auto"):
            raise ValueError(f"unknown jit_compile {self.jit_compile!r}; allowed: 'auto', true, false.")
        if self.cache and self.input == "memory":
            raise ValueError("`cache` keeps decoded slices for streamed input: it cannot be used with input='memory'.")
        for name in ("fold", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` must be an integer >= 0. Received: {name}={value!r}")
        for name in ("epochs", "batch_size", "drop_period"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
        # Every number finite and in its range: `inf` or `nan` would train to NaN at
        # epoch 1 and be reported as a finished run.
        _number(self, "learning_rate", "> 0", lambda v: v > 0)
        _number(self, "momentum", "in [0, 1)", lambda v: 0 <= v < 1)
        _number(self, "drop_factor", "in (0, 1]", lambda v: 0 < v <= 1)
        _number(self, "weight_decay", ">= 0", lambda v: v >= 0)
        _number(self, "validation_fraction", "in [0, 1)", lambda v: 0 <= v < 1)
        _number(self, "gamma", ">= 0", lambda v: v >= 0)
        for name in ("augment", "deterministic", "mixed_precision"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be true or false. Received: {name}={getattr(self, name)!r}")
        if not isinstance(self.model_options, dict):
            raise ValueError(f"`model_options` must be a mapping of builder options. Received: {self.model_options!r}")
        allowed = MODEL_NAMES[self.model].options
        unknown = set(self.model_options) - set(allowed)
        if unknown:
            raise ValueError(f"unknown model option(s) {sorted(unknown)} for {self.model}; allowed: {', '.join(allowed)}.")

    @property
    def uses_acw(self) -> bool:
        return LOSS_NAMES[self.loss].with_acw_layer

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def comparable(self) -> dict:
        """The run's identity: the settings that must match for a run folder to be resumed or reused.

        Only what the run reads: `gamma` for the losses that take it
        (`LossName.run_options`), `momentum` for SGDM; not the input mode or
        the folders, which change memory use or places, not results.
        """
        read = set(LOSS_NAMES[self.loss].run_options) | set(OPTIMIZER_NAMES[self.optimizer][1])
        settings = {
            k: v for k, v in self.to_dict().items()
            if k not in _NOT_IDENTITY and (k not in _READ_BY_SOME or k in read)
        }
        settings["data"] = os.path.abspath(settings["data"])  # config.json records it absolute
        return settings

    @classmethod
    def from_json(cls, path: PathLike) -> RunConfig:
        with open(path) as stream:
            data = json.load(stream)
        return cls(**{k: v for k, v in data.items() if k in {f.name for f in dataclasses.fields(cls)}})
