"""Callbacks of a run: per-epoch history, resumable state, NaN recording, best checkpoint."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import time
from typing import Any

import keras

from keras_focal.errors import Stopped
from keras_focal.files import replacing, save_model_atomically, write_text_atomically
from keras_focal.layers import AdaptiveClassWeight
from keras_focal.types import ClassNames, PathLike


class NaNRecorder(keras.callbacks.Callback):
    """Stops training at the first non-finite batch loss and remembers where (1-based epoch)."""

    def __init__(self) -> None:
        super().__init__()
        self.nan_epoch: int | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)) and self.nan_epoch is None:
            self.nan_epoch = self._epoch + 1
            self.model.stop_training = True


class HistoryWriter(keras.callbacks.Callback):
    """Rewrites `history.csv` atomically after every epoch (one row per epoch).

    Rows of epochs at or after the current one are replaced, so an epoch
    redone after a resume appears once.
    """

    def __init__(self, path: PathLike, learning_rate: Any) -> None:
        super().__init__()
        self.path = path
        self.learning_rate = learning_rate
        self._start = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import pandas as pd

        rate = self.learning_rate
        if callable(rate):
            rate = rate(int(self.model.optimizer.iterations.numpy()) - 1)
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}}
        row["learning_rate"] = float(rate)
        row["seconds"] = round(time.perf_counter() - self._start, 3)
        table = pd.read_csv(self.path) if os.path.exists(self.path) else pd.DataFrame()
        if not table.empty:
            table = table[table.epoch < epoch + 1]
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
        write_text_atomically(self.path, table.to_csv(index=False))


class RunState(keras.callbacks.Callback):
    """Saves weights + optimiser state after every epoch so that a killed run resumes.

    The weights go to a new file named after the epoch; then `state.json`
    is replaced atomically to point at it; then the previous file is
    deleted. A kill at any moment leaves `state.json` naming a complete
    file, so at most the epoch in progress is lost. When `best` (a
    `BestCheckpoint` placed before this callback) says the epoch improved,
    the new file is also kept as the best epoch's state, by a hard link:
    no second serialisation.
    """

    def __init__(self, folder: PathLike, recorder: NaNRecorder) -> None:
        super().__init__()
        self.folder = folder
        self.recorder = recorder
        self.best = None  # set by the trainer once it knows the monitored value
        self.path = os.path.join(folder, "state.json")

    def load(self) -> tuple[int, str | None]:
        """`(completed epochs, weights file)` or `(0, None)`.

        Raises:
            RunStateError: `state.json` is damaged, or the weights file it
                names is missing or not a complete HDF5 file.
        """
        return read_state(self.folder)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # This process wrote that file itself: no need to open it again every epoch.
        previous = read_state(self.folder, check_weights=False)[1]
        name = f"state-epoch{epoch + 1:04d}.weights.h5"
        try:
            # Through a temporary name: a full disk leaves no half-written state file.
            with replacing(os.path.join(self.folder, name)) as temporary:
                self.model.save_weights(temporary)
            if self.best is not None and self.best.improved_at == epoch:
                self.best.keep(os.path.join(self.folder, name))
            write_text_atomically(self.path, json.dumps({"epoch": epoch + 1, "weights": name, "nan_epoch": self.recorder.nan_epoch}))
        except OSError as error:
            with contextlib.suppress(OSError):
                if read_state(self.folder, check_weights=False)[1] != os.path.join(self.folder, name):
                    os.remove(os.path.join(self.folder, name))
            full = " (the disk is full)" if error.errno == errno.ENOSPC else ""
            raise RunInterrupted(
                f"the state of epoch {epoch + 1} could not be saved in '{self.folder}'{full}: {error}. What was "
                f"partly written was removed; {epoch} epoch(s) are saved. Free space and run the same command with "
                "--resume: training continues from the last saved epoch, with the same history."
            ) from None
        if previous and os.path.basename(previous) != name and os.path.exists(previous):
            os.remove(previous)


class RunInterrupted(Stopped):
    """Training stopped because the run's state could not be saved (exit status 1); resumable."""


class RunStateError(ValueError):
    """A run folder's state files are damaged or missing (exit status 2)."""


def read_state(folder: PathLike, check_weights: bool = True) -> tuple[int, str | None]:
    """`(completed epochs, weights file)` of a run folder's `state.json`, or `(0, None)` without one.

    `check_weights`: also check that the weights file exists and opens as
    HDF5 (what a resume needs; the callback that wrote it need not).

    Raises:
        RunStateError: naming the file, the run and what the user can do.
    """
    path = os.path.join(folder, "state.json")
    if not os.path.exists(path):
        return 0, None
    again = (f"Start the run again with `keras-focal train --force` (or delete '{folder}'; `compare` then "
             "trains it again).")
    try:
        with open(path) as stream:
            state = json.load(stream)
        epoch, weights = state["epoch"], state["weights"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1 or not isinstance(weights, str):
            raise TypeError(f"epoch {epoch!r}, weights {weights!r}")
    except (ValueError, KeyError, TypeError) as error:
        raise RunStateError(f"'{path}', the saved state of the run in '{folder}', is damaged ({type(error).__name__}: {error}). {again}") from None
    weights_path = os.path.join(folder, os.path.basename(weights))
    if not check_weights:
        return epoch, weights_path
    if not os.path.isfile(weights_path):
        raise RunStateError(f"'{weights_path}', the weights of epoch {epoch} that '{path}' names, is missing. {again}")
    import h5py

    try:
        with h5py.File(weights_path, "r"):
            pass
    except OSError as error:
        raise RunStateError(f"'{weights_path}', the weights of epoch {epoch} of the run in '{folder}', is damaged "
                            f"(truncated or not HDF5: {error}). {again}") from None
    return epoch, weights_path


class BestCheckpoint(keras.callbacks.Callback):
    """The model with the lowest monitored value (NaN never improves), as `best.keras`.

    Writing a `.keras` file at every improvement cost ~0.17 s an epoch, a
    quarter of a small run. Instead, `RunState` keeps the improving epoch's
    state file as `best-state.weights.h5` (a hard link, atomically), which
    survives a kill like the run's state does; `write_model` turns it into
    `best.keras` once, after training.
    """

    STATE = "best-state.weights.h5"

    def __init__(self, path: PathLike, monitor: str) -> None:
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.best = math.inf
        self.improved_at: int | None = None
        self.state_path = os.path.join(os.path.dirname(path), self.STATE)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is not None and math.isfinite(float(value)) and float(value) < self.best:
            self.best = float(value)
            self.improved_at = epoch

    def keep(self, state_file: str) -> None:
        """Makes `state_file` (complete, about to be named in `state.json`) the best epoch's state."""
        with replacing(self.state_path) as temporary:
            try:
                os.link(state_file, temporary)
            except OSError:  # a file system without hard links
                shutil.copyfile(state_file, temporary)

    def write_model(self, model: keras.Model, current_state: str | None) -> None:
        """Writes `best.keras` from the best epoch's state, then puts `current_state` back into `model`."""
        if not os.path.exists(self.state_path):
            return
        model.load_weights(self.state_path)
        try:
            save_model_atomically(model, self.path)
        finally:
            model.load_weights(current_state)


def tensorboard_callbacks(log_dir: PathLike, class_names: ClassNames) -> list[keras.callbacks.Callback]:
    """Keras's `TensorBoard` (train and validation scalars per epoch) plus the ACW weights.

    Event files go to `log_dir/train` and `log_dir/validation`, as Keras
    writes them; `tensorboard --logdir runs/` shows every run of a
    comparison side by side.
    """
    return [
        keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False, update_freq="epoch", profile_batch=0),
        ClassWeightLogger(os.path.join(log_dir, "train"), class_names),
    ]


class ClassWeightLogger(keras.callbacks.Callback):
    """Writes the Adaptive Class Weight layer's weights to TensorBoard after every epoch.

    One scalar per class, `acw_weight/<class name>`: how the weights move
    during training is the ADFL paper's point. Models without the layer
    write nothing (no event file is created).
    """

    def __init__(self, log_dir: PathLike, class_names: ClassNames) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.class_names = list(class_names)
        self._writer: Any = None  # a tf.summary writer, made at the first epoch

    def _layers(self):
        # The segmentation builders name the layer "acw" (keras_focal.models); other models have none.
        layer = next((layer for layer in self.model.layers if layer.name == "acw"), None)
        return [layer] if isinstance(layer, AdaptiveClassWeight) else []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        layers = self._layers()
        if not layers:
            return
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for layer in layers:
                prefix = "acw_weight" if len(layers) == 1 else f"acw_weight/{layer.name}"
                weights = keras.ops.convert_to_numpy(layer.class_weights)
                for index, value in enumerate(weights):
                    name = self.class_names[index] if index < len(self.class_names) else str(index)
                    tf.summary.scalar(f"{prefix}/{name}", float(value), step=epoch)
        self._writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
