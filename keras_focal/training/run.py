"""One training run: a pre-flight that checks everything and writes nothing, then named phases.

`prepare_run` is the pre-flight: it reads the data set (or takes one already
read), checks the split, the model's arguments (without building it), the
loss and the optimiser (built), the output folders and any run the folder
holds, and returns a `PreparedRun`. `train_run` then works in the run folder
in phases: `_inputs`, `_model`, `_record`, `_fit`, `_finish`, `_test`,
`_metrics`. A comparison prepares all its runs first and passes each
`PreparedRun` (and one `InitialWeights`) to `train_run`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from keras_focal import loss_names, losses, run_folder
from keras_focal.data_prep.examples import Examples, evaluation_dataset
from keras_focal.data_prep.prepared import IGNORE_LABEL, PreparedDataset
from keras_focal.errors import BadInput, checking
from keras_focal.evaluation import evaluate_semantic_segmentation, foreground_classes
from keras_focal.files import (
    LOCK_NAME,
    OWNER_NAME,
    FolderBusyError,
    FolderLock,
    check_output_folder,
    remove_temporaries,
    replacing,
    save_model_atomically,
    write_text_atomically,
)
from keras_focal.inference import Predictor
from keras_focal.metrics import DiceScore, IoUScore
from keras_focal.model_names import MODEL_NAMES
from keras_focal.training import processes
from keras_focal.training.callbacks import (
    BestCheckpoint,
    HistoryWriter,
    NaNRecorder,
    RunState,
    RunStateError,
    read_state,
    tensorboard_callbacks,
)
from keras_focal.training.config import RunConfig
from keras_focal.training.data import STREAM_ABOVE_BYTES, training_dataset
from keras_focal.types import ArrayLike, ClassNames

if TYPE_CHECKING:
    from keras_focal.evaluation import SegmentationMetrics
    from keras_focal.training.processes import ProcessGroup


class RunSetupError(BadInput):
    """Bad input found by a run's pre-flight, before anything is written (exit status 2; `keras_focal.errors`)."""


def build_model(
    config: RunConfig, input_shape: tuple[int | None, ...], num_classes: int, acw_weights: ArrayLike | None = None,
) -> keras.Model:
    """The network of `config.model` (`keras_focal.model_names`) with its `model_options`."""
    return MODEL_NAMES[config.model].build(input_shape, num_classes, acw_weights=acw_weights, **config.model_options)


def build_loss(
    config: RunConfig, class_weights: Sequence[float] | None, class_names: ClassNames,
    ignore_label: int = IGNORE_LABEL,
) -> keras.losses.Loss:
    """The loss of `config.loss` (names: `keras_focal.loss_names`; the ACW layer is the model's).

    The region losses leave class 0 out only when it is named "background":
    on a data set without one (CamVid: class 0 is Sky) that would silently
    drop a real class from the loss.
    """
    has_background = 0 not in foreground_classes(class_names)  # the metrics' definition of background

    def part(class_name):
        loss_class = getattr(losses, class_name)
        options = {"ignore_class": ignore_label, **loss_names.TRAINER_OPTIONS.get(class_name, {})}
        if "include_background" in options and not has_background:
            options["include_background"] = True
        if loss_class is losses.WeightedCrossEntropy:
            options["class_weights"] = class_weights
        elif loss_class is losses.CategoricalFocalLoss:
            options["gamma"] = config.gamma
        return loss_class(**options)

    entry = loss_names.LOSS_NAMES[config.loss]
    if entry.parts:
        return losses.CombinedLoss([part(name) for name in entry.parts])
    return part(entry.loss_class)


def foreground_metrics(class_names: ClassNames, ignore_label: int = IGNORE_LABEL) -> list[keras.metrics.Metric]:
    """Dice and IoU of the foreground classes, pooled over an epoch: comparable across losses, unlike the loss."""
    classes, ids = len(class_names), foreground_classes(class_names)
    return [DiceScore(classes, ids, ignore_label, name="foreground_dice"), IoUScore(classes, ids, ignore_label, name="foreground_iou")]


def learning_rate_schedule(config: RunConfig, steps_per_epoch: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """MATLAB's piecewise schedule: times `drop_factor` every `drop_period` epochs."""
    return keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate,
        decay_steps=config.drop_period * steps_per_epoch,
        decay_rate=config.drop_factor,
        staircase=True,
    )


def build_optimizer(config: RunConfig, schedule: Any) -> keras.optimizers.Optimizer:
    decay = config.weight_decay or None
    if config.optimizer == "adam":
        # MATLAB's ADAM: beta1 0.9, beta2 0.999, epsilon 1e-8.
        return keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=decay)
    return keras.optimizers.SGD(schedule, momentum=config.momentum, weight_decay=decay)


STRATEGY_BACKENDS = {"mirrored": "tensorflow", "data-parallel": "jax"}


def check_strategy(strategy: str) -> ProcessGroup | None:
    """The process group, after checking that `strategy` can run on it and on this backend.

    Raises:
        RunSetupError: it cannot (or the `KERAS_DISTRIBUTION_*` variables
            are inconsistent).
    """
    try:
        group = processes.from_environment()
    except ValueError as error:
        raise RunSetupError(str(error)) from None
    if group.num_processes > 1 and strategy != "data-parallel":
        raise RunSetupError(
            f"{processes.NUM_PROCESSES}={group.num_processes} asks for several processes: "
            "that needs --strategy data-parallel (KERAS_BACKEND=jax)."
        )
    backend = keras.backend.backend()
    if strategy == "multiworker":
        raise RunSetupError(
            "--strategy multiworker cannot run: Keras 3's model.fit does not support "
            "tf.distribute.MultiWorkerMirroredStrategy. Use --strategy data-parallel "
            "(Keras's distribution API, KERAS_BACKEND=jax) instead."
        )
    needed = STRATEGY_BACKENDS.get(strategy)
    if needed and backend != needed:
        alternative = {"tensorflow": "mirrored", "jax": "data-parallel"}.get(backend)
        hint = f" On {backend} use --strategy {alternative}." if alternative else ""
        raise RunSetupError(
            f"--strategy {strategy} needs KERAS_BACKEND={needed}; this process runs "
            f"KERAS_BACKEND={backend}.{hint}"
        )
    return group


def distribution_scope(strategy: str) -> Any:
    """A context in which the model is built, trained and evaluated.

    Under data-parallel every process feeds its own share of each global
    batch (`training_dataset(shard=...)`), so Keras does not shard again.
    """
    if strategy == "mirrored":
        import tensorflow as tf

        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy().scope()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus).scope()
    if strategy == "data-parallel":
        # Replicates the weights on every local device and splits each batch among them.
        return keras.distribution.DataParallel(devices=keras.distribution.list_devices(), auto_shard_dataset=False).scope()
    return contextlib.nullcontext()


def weights_digest(model: keras.Model) -> str:
    digest = hashlib.sha256()
    for variable in model.weights:
        digest.update(variable.path.encode())
        digest.update(np.ascontiguousarray(np.asarray(variable)).tobytes())
    return digest.hexdigest()


def initial_weights_path(config: RunConfig, input_shape: tuple[int | None, ...], num_classes: int) -> str:
    """The file of the shared starting weights of `(model, options, input shape, classes, fold, seed)`."""
    options = hashlib.sha256(json.dumps(config.model_options, sort_keys=True).encode()).hexdigest()[:8]
    name = f"{config.model}-{'x'.join(map(str, input_shape))}-c{num_classes}-{options}-fold{config.fold}-seed{config.seed}.weights.h5"
    return os.path.join(config.init_dir or config.out, name)


class InitialWeights:
    """The shared starting weights of the runs of one process: each set built once, saved once, reused.

    Every loss of a comparison starts from the same weights for a given
    `(model, options, fold, seed)`: the first run of a set builds the network
    without the ACW layer (after seeding) and saves it, or loads the saved
    file. The weights and the random state right after that build are kept
    for the next runs of the same set, which build only their own network,
    from the same random state as if they had built the shared one first (so
    layers that draw seeds when built, such as dropout, are seeded alike
    whichever run built the set). One set is held at a time: a comparison
    runs the runs of a set one after another.
    """

    def __init__(self) -> None:
        self._path: str | None = None
        self._held: tuple | None = None
        self.builds = 0  # networks built for starting weights (one per set and process)

    def model(
        self, config: RunConfig, input_shape: tuple[int | None, ...], num_classes: int,
        acw_weights: ArrayLike | None = None,
    ) -> tuple[keras.Model, str]:
        """`(model, digest)`: the run's network, holding the set's starting weights (its ACW layer keeps its own)."""
        path = initial_weights_path(config, input_shape, num_classes)
        keras.utils.set_random_seed(config.seed)
        if path != self._path:
            self._path, self._held = None, None
            base = build_model(config, input_shape, num_classes)
            self.builds += 1
            if os.path.exists(path):
                base.load_weights(path)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with replacing(path) as temporary:
                    base.save_weights(temporary)
            weights = {layer.name: layer.get_weights() for layer in base.layers if layer.weights}
            self._held = (weights, weights_digest(base), random.getstate(), np.random.get_state())
            self._path = path
            del base
        else:
            assert self._held is not None  # set with self._path
            random.setstate(self._held[2])
            np.random.set_state(self._held[3])
        weights, digest = self._held[:2]
        model = build_model(config, input_shape, num_classes, acw_weights)
        for layer in model.layers:
            if layer.name in weights:
                layer.set_weights(weights[layer.name])
        return model, digest


def evaluate_model(
    model: keras.Model, examples: Examples, class_names: ClassNames, batch_size: int,
    ignore_label: int = IGNORE_LABEL, label_masks: Sequence[str] | None = None, keep_aspect: bool = False,
) -> SegmentationMetrics:
    """`evaluate_semantic_segmentation` of a Keras model's predictions on `Examples`.

    Predictions and masks are paired lazily (`Predictor.labelled_pairs`), so
    a streamed test set is never held in memory. With `label_masks` the
    scores are computed at the label images' own size.
    """
    import itertools

    pairs = Predictor([model], batch_size=batch_size).labelled_pairs(examples, label_masks, keep_aspect)
    first, second = itertools.tee(pairs)
    return evaluate_semantic_segmentation(
        (label_map for label_map, _ in first), (mask for _, mask in second),
        class_names, ignore_label=ignore_label,
    )


def _scores(result):
    return {
        "global_accuracy": result.dataset_metrics["GlobalAccuracy"],
        "never_predicted": result.never_predicted(),
        "scored_size": "x".join(map(str, result.image_size)) if result.image_size else None,
        "mdsc": result.foreground_metrics["mDSC"],
        "miou": result.foreground_metrics["mIOU"],
        "dataset_mdsc": result.foreground_metrics["dataset_DSC"],
        "dataset_miou": result.foreground_metrics["dataset_IOU"],
        "iou": dict(zip(result.class_names, result.class_metrics["IoU"])),
        "dice": dict(zip(result.class_names, result.class_metrics["Dice"])),
        "mean_bf_score": result.dataset_metrics["MeanBFScore"],
        "confusion_matrix": result.confusion_matrix.tolist(),
    }


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


@dataclasses.dataclass
class PreparedRun:
    """One run after its pre-flight: everything its phases need that could be known before training.

    Built by `prepare_run`, which writes nothing. `loss` is the loss the run
    compiles; the optimiser was built once to check its settings, and is
    built again inside the distribution scope, where its variables must be
    created.
    """

    config: RunConfig
    dataset: PreparedDataset
    group: object  # the process group (`keras_focal.training.processes`)
    train_cases: list
    validation_cases: list
    test_cases: list
    class_weights: list
    input_shape: tuple
    train_slices: int
    steps_per_epoch: int
    whole_batches: bool
    stream: bool
    loss: object
    warnings: list
    resume: bool = True
    force: bool = False


def prepare_run(
    config: RunConfig, resume: bool = True, force: bool = False, dataset: PreparedDataset | None = None,
    group: ProcessGroup | None = None,
) -> PreparedRun:
    """The run's pre-flight: checks everything that can be checked before training; writes nothing.

    The strategy, the data set (parsed here unless `dataset`, an already
    read `PreparedDataset`, is given; its slices are checked once per
    `PreparedDataset`), the split, the model's arguments for the image size
    (not built), the loss and the optimiser (built), the batch size, the
    output folders, and an existing run in `config.out` (its settings, the
    data it started on, its state files). `force` (start again) skips the
    checks of the existing run; without `resume` an unfinished run is
    refused.

    Returns:
        A `PreparedRun`.

    Raises:
        RunSetupError: any of these is bad input.
    """
    if group is None:
        group = check_strategy(config.strategy)
    with checking(RunSetupError):
        if dataset is None:
            dataset = PreparedDataset(config.data)
        train, validation, test = dataset.split(config.fold, config.validation_fraction, config.seed)
        if not train:
            raise ValueError(f"fold {config.fold} leaves no training case.")
        input_shape = dataset.image_shape()
        class_weights = dataset.class_weights(train)
        MODEL_NAMES[config.model].check(  # e.g. a U-Net too deep for the image size
            input_shape, dataset.num_classes, acw_weights=class_weights if config.uses_acw else None,
            **config.model_options,
        )
        loss = build_loss(config, class_weights, dataset.class_names, dataset.ignore_label)
        train_slices = len(dataset.rows(train))
        # data-parallel shares every global batch equally among processes and
        # devices: the last, incomplete batch of each epoch is left out (with
        # one process too, so that runs on any number of processes agree).
        whole_batches = config.strategy == "data-parallel"
        processes_count = group.num_processes if group is not None else 1
        if whole_batches and config.batch_size % processes_count:
            raise ValueError(
                f"--batch-size {config.batch_size} cannot be shared by {processes_count} processes: "
                "give a multiple of the number of processes."
            )
        if whole_batches and train_slices < config.batch_size:
            raise ValueError(f"{train_slices} training slices are fewer than one batch of {config.batch_size}.")
        steps = (train_slices // config.batch_size) if whole_batches else math.ceil(train_slices / config.batch_size)
        build_optimizer(config, learning_rate_schedule(config, steps))
        stream = config.input == "stream" or (
            config.input == "auto"
            and bool(config.cache or dataset.decoded_bytes(train + validation, input_shape[-1]) > STREAM_ABOVE_BYTES)
        )
        check_output_folder(config.out, "the run folder")
        if config.init_dir:
            check_output_folder(config.init_dir, "the initial-weights folder")
        if config.cache:
            check_output_folder(config.cache, "the --cache folder")
        if not force:
            _check_existing_run(config, dataset, resume)
        dataset.check()
    warnings = []
    absent = dataset.absent_classes(train)
    if absent:
        warnings.append(
            f"class(es) {absent} have no labelled pixel in the {len(train)} training case(s) of fold "
            f"{config.fold}: their class weight is 0 and the network never sees them (test scores for them are "
            "not a measure of the loss)"
        )
    return PreparedRun(
        config=config, dataset=dataset, group=group, train_cases=train, validation_cases=validation,
        test_cases=test, class_weights=class_weights, input_shape=input_shape, train_slices=train_slices,
        steps_per_epoch=steps, whole_batches=whole_batches, stream=stream, loss=loss, warnings=warnings,
        resume=resume, force=force,
    )


def _check_existing_run(config, dataset, resume):
    """Refuses a run folder whose run has other settings or data, damaged state files, or (unfinished) no `resume`."""
    config_path = run_folder.path_of(config.out, run_folder.CONFIG)
    if not os.path.exists(config_path):
        return
    state = "finished " if run_folder.is_finished(config.out) else ""
    try:
        with open(config_path) as stream:
            saved = json.load(stream)
        previous = RunConfig(**{k: v for k, v in saved.items() if k in RunConfig.__dataclass_fields__})
    except (ValueError, TypeError) as error:
        raise RunSetupError(
            f"'{config_path}' is damaged ({error}): start the run again with `keras-focal train --force`, or use another --out."
        ) from None
    if previous.comparable() != config.comparable():
        before, now = previous.comparable(), config.comparable()
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        raise RunSetupError(f"'{config.out}' holds a {state}run with other settings ({', '.join(changed)}); use another --out.")
    recorded = saved.get("data_fingerprint")
    if recorded is not None and recorded != dataset.fingerprint():
        raise RunSetupError(
            f"'{config.out}' holds a {state}run started on other data: '{config.data}' has changed since (its manifest.csv, "
            "folds.csv or classes.json differ; e.g. it was prepared again). Resuming would mix two splits. Start "
            "again with `keras-focal train --force`, or use another --out."
        )
    if state:
        return
    try:
        done, _ = read_state(config.out)
    except RunStateError as error:
        raise RunSetupError(str(error)) from None
    if done and not resume:
        raise RunSetupError(f"'{config.out}' holds an unfinished run ({done} epochs): pass --resume to continue it.")


def _clear_run_folder(folder: str) -> None:
    """Everything of a run in `folder` but its lock (train --force)."""
    for name in os.listdir(folder):
        if name in (LOCK_NAME, OWNER_NAME):
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def train_run(
    config: RunConfig, resume: bool = False, verbose: int = 1, callbacks: Sequence[keras.callbacks.Callback] = (),
    force: bool = False, initial_weights: InitialWeights | None = None,
) -> dict:
    """Trains and evaluates one run; returns its metrics (see `metrics.json`).

    `config` is a `RunConfig` (its pre-flight, `prepare_run`, runs here with
    `resume` and `force`) or a `PreparedRun` (already checked; `resume` and
    `force` are its own). A finished run with the same settings and data
    (its `metrics.json` exists) is not trained again. An unfinished one
    continues from its last completed epoch when `resume` is true, and is
    refused otherwise. `force` discards whatever run `config.out` holds and
    starts again. `callbacks` are more Keras callbacks for `fit` (a progress
    display). `initial_weights`: the `InitialWeights` shared by the runs of
    a comparison (default: one for this run). The run folder is locked while
    the run works in it; temporary files that a killed run left there are
    removed.

    Raises:
        RunSetupError: bad data folder or data, fold, model for the image
            size, loss or optimiser settings, a folder holding a run with
            other settings or data, or with damaged state files, or a
            folder another process is working in; raised before anything
            is written (a folder this call created is removed again).
        RunInterrupted: the run's state could not be saved (a full disk);
            the run resumes once that is fixed.
    """
    prepared = config if isinstance(config, PreparedRun) else prepare_run(config, resume=resume, force=force)
    config = prepared.config
    created = [folder for folder in (config.out, config.init_dir) if folder and not os.path.exists(folder)]
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(FolderLock(config.out))
        except FolderBusyError as error:
            for folder in created:  # a refusal leaves nothing behind
                shutil.rmtree(folder, ignore_errors=True)
            raise RunSetupError(str(error)) from None
        remove_temporaries(config.out)
        if config.init_dir:
            remove_temporaries(config.init_dir)
        if prepared.force:
            _clear_run_folder(config.out)
        finished = run_folder.read_metrics(config.out)
        if finished is not None:
            return finished
        return _train_locked(prepared, verbose, callbacks, initial_weights or InitialWeights())


@dataclasses.dataclass
class _Inputs:
    train: Examples
    validation: Examples
    shard: tuple


def _train_locked(prepared, verbose, callbacks, initial_weights):
    import tensorflow as tf

    config = prepared.config
    recorder = NaNRecorder()
    state = RunState(config.out, recorder)  # its `best` is set in _fit, with the monitored value
    try:
        done, state_weights = state.load()  # prepare_run refused a run with epochs done unless resumed
    except RunStateError as error:
        raise RunSetupError(str(error)) from None
    policy = keras.config.dtype_policy()
    if config.mixed_precision:
        keras.config.set_dtype_policy("mixed_float16")
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    try:
        inputs = _inputs(prepared)
        with distribution_scope(config.strategy):
            model, schedule, digest = _model(prepared, initial_weights, state_weights)
            _record(prepared, model, digest)
            best, train_seconds = _fit(prepared, model, schedule, inputs, recorder, state, done, verbose, callbacks)
            epochs_run, nan_epoch, evaluated, warnings = _finish(prepared, model, best, recorder, state)
            scores = _test(prepared, model, best, evaluated)
            return _metrics(prepared, epochs_run, done, nan_epoch, evaluated, scores, train_seconds, warnings)
    finally:
        keras.config.set_dtype_policy(policy)


def _inputs(prepared):
    """The training and validation slices, decoded or streamed, and this process's share of each batch."""
    config, dataset, channels = prepared.config, prepared.dataset, prepared.input_shape[-1]
    train = dataset.examples(prepared.train_cases, channels, prepared.stream, config.cache)
    validation = None
    if prepared.validation_cases:
        validation = dataset.examples(prepared.validation_cases, channels, prepared.stream, config.cache)
    return _Inputs(train, validation, (prepared.group.process_id, prepared.group.num_processes))


def _model(prepared, initial_weights, state_weights):
    """The compiled network from the shared starting weights (or the saved state of a resumed run)."""
    config, dataset = prepared.config, prepared.dataset
    model, digest = initial_weights.model(
        config, prepared.input_shape, dataset.num_classes, prepared.class_weights if config.uses_acw else None
    )
    schedule = learning_rate_schedule(config, prepared.steps_per_epoch)
    model.compile(
        optimizer=build_optimizer(config, schedule),
        loss=prepared.loss,
        metrics=foreground_metrics(dataset.class_names, dataset.ignore_label),
        jit_compile=config.jit_compile,
    )
    if state_weights:
        model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(state_weights)
        except (OSError, ValueError, KeyError) as error:
            raise RunSetupError(
                f"'{state_weights}', the saved state of the run in '{config.out}', cannot be loaded ({error}): "
                "start the run again with `keras-focal train --force`."
            ) from None
    return model, schedule, digest


def _record(prepared, model, digest) -> None:
    """`config.json`: the settings, the split, the weights and what Keras resolved."""
    config, dataset = prepared.config, prepared.dataset
    record = config.to_dict() | {
        "data": os.path.abspath(config.data),  # readable from any working directory
        "train_cases": prepared.train_cases,
        "validation_cases": prepared.validation_cases,
        "test_cases": prepared.test_cases,
        "class_weights": prepared.class_weights,
        "initial_weights_sha256": digest,
        "input_shape": list(prepared.input_shape),
        "class_names": dataset.class_names,
        "backend": keras.backend.backend(),
        "jit_compile_used": bool(model.jit_compile),  # what Keras resolved "auto" to
        "input_mode": "stream" if prepared.stream else "memory",
        # What the run started on: resuming on re-prepared data is refused.
        "data_fingerprint": dataset.fingerprint(),
    }
    run_folder.write_config(config.out, record)


def _fit(prepared, model, schedule, inputs, recorder, state, done, verbose, callbacks):
    """`model.fit` from epoch `done` with the run's callbacks; returns the best-checkpoint callback and the seconds."""
    config = prepared.config
    # The same global seed on resume: tf.data's shuffle combines it with the per-epoch seed.
    keras.utils.set_random_seed(config.seed)
    history_path = run_folder.path_of(config.out, run_folder.HISTORY)
    monitor = "val_loss" if inputs.validation else "loss"
    best = BestCheckpoint(run_folder.model_path(config.out, "best"), monitor)
    state.best = best
    if done and os.path.exists(history_path):
        import pandas as pd

        previous = pd.read_csv(history_path)
        previous = previous[previous.epoch <= done]
        if monitor in previous and previous[monitor].notna().any():
            best.best = float(previous[monitor].min())
    whole, shard = prepared.whole_batches, inputs.shard
    validation = inputs.validation
    start = time.perf_counter()
    if done < config.epochs:
        model.fit(
            training_dataset(inputs.train, config.batch_size, done, config.epochs, config.seed, config.augment,
                             drop_remainder=whole, shard=shard),
            epochs=config.epochs,
            initial_epoch=done,
            steps_per_epoch=prepared.steps_per_epoch,
            validation_data=(
                evaluation_dataset(validation, config.batch_size, drop_remainder=whole, shard=shard)
                if validation and not (whole and len(validation) < config.batch_size) else None
            ),
            # TensorBoard after RunState: an epoch is logged once its state is saved, so
            # a resumed run does not log an epoch twice.
            callbacks=[recorder, HistoryWriter(history_path, schedule), best, state,
                       *tensorboard_callbacks(os.path.join(config.out, "logs"), prepared.dataset.class_names),
                       *callbacks],
            shuffle=False,  # the dataset shuffles, per epoch and reproducibly
            verbose=verbose,
        )
    return best, time.perf_counter() - start


def _finish(prepared, model, best, recorder, state):
    """Saves `last.keras` and `best.keras`; decides which model the test fold evaluates."""
    config = prepared.config
    epochs_run = state.load()[0]
    nan_epoch = recorder.nan_epoch
    if nan_epoch is None and os.path.exists(state.path):
        with open(state.path) as stream:
            nan_epoch = json.load(stream).get("nan_epoch")
    save_model_atomically(model, run_folder.model_path(config.out, "last"))
    best.write_model(model, state.load()[1])
    warnings = list(prepared.warnings)
    evaluated = config.evaluate
    if nan_epoch is not None or evaluated == "best":
        evaluated = "best" if os.path.exists(best.path) else ("none" if nan_epoch is not None else "last")
    if config.evaluate == "best" and evaluated == "last":
        warnings.append(
            "--evaluate best: no best state was kept (no epoch improved the monitored loss, or a resumed run "
            "lost it), so the test scores are the last model's"
        )
    return epochs_run, nan_epoch, evaluated, warnings


NO_SCORES = {"global_accuracy": float("nan"), "never_predicted": [], "scored_size": None, "mdsc": float("nan"), "miou": float("nan"), "dataset_mdsc": float("nan"), "dataset_miou": float("nan"),
             "iou": {}, "dice": {}, "mean_bf_score": float("nan"), "confusion_matrix": []}


def _test(prepared, model, best, evaluated):
    """Scores of the evaluated model on the test fold (`evaluation.json`); none when no model is evaluated."""
    if evaluated == "none":
        return dict(NO_SCORES)
    config, dataset = prepared.config, prepared.dataset
    evaluation_model = keras.models.load_model(best.path) if evaluated == "best" else model
    test = dataset.examples(prepared.test_cases, prepared.input_shape[-1], prepared.stream, config.cache)
    label_masks = dataset.original_mask_paths(prepared.test_cases)
    keep_aspect = dataset.preparation()[1].keep_aspect if label_masks is not None else False
    result = evaluate_model(evaluation_model, test, dataset.class_names, config.batch_size, dataset.ignore_label,
                            label_masks, keep_aspect)
    write_text_atomically(os.path.join(config.out, "evaluation.json"), result.to_json() + "\n")
    return _scores(result)


def _metrics(prepared, epochs_run, done, nan_epoch, evaluated, scores, train_seconds, warnings):
    """`metrics.json`, written last: its presence marks the run finished."""
    config = prepared.config
    trained_images = prepared.train_slices * max(epochs_run - done, 0)
    metrics = {
        "model": config.model,
        "dataset": prepared.dataset.name,
        "loss": config.loss,
        "optimizer": config.optimizer,
        "fold": config.fold,
        "seed": config.seed,
        "epochs": config.epochs,
        "epochs_run": epochs_run,
        "nan_epoch": nan_epoch,
        "evaluated": evaluated,
        **scores,
        "train_seconds": round(train_seconds, 3),
        "train_images_per_second": trained_images / train_seconds if trained_images and train_seconds > 0 else None,
        "warnings": warnings,
    }
    run_folder.write_metrics(config.out, _json_safe(metrics))
    return _json_safe(metrics)
