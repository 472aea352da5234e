"""Trained networks and the settings of the data they were trained on.

A `TrainedModel` is a `.keras` file loaded with its `PredictionSettings`:
the slice size, intensity percentiles, padding, channels and classes of its
prepared data set (`prep.json`, `classes.json`), found through the run
folder it lies in or given as `data`. `model_paths` turns the ways of naming
models (files, run folders, a comparison's runs of one loss) into files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import keras_focal
from keras_focal.data_prep.dataset import PrepOptions
from keras_focal.data_prep.labels import LabelTable
from keras_focal.data_prep.prepared import PreparedDataset
from keras_focal.run_folder import CONFIG, path_of, read_comparison_results, read_run_config, run_model_path
from keras_focal.types import PathLike

if TYPE_CHECKING:
    import keras

    from keras_focal.data_prep.prepared import PreparedDataset


@dataclasses.dataclass(frozen=True)
class PredictionSettings:
    """How a network's training slices were made, read back from its prepared data set.

    Attributes:
        options: the `PrepOptions` of `prep.json` (size, percentiles, padding).
        source: the prep source (`dicom`, `promise12`, `camvid`...).
        class_names: the classes, index = label value.
        channels: image channels of the slices (1: grey volumes; T2 + ADC: 2).
        data: the prepared data set's folder.
        labels: the `LabelTable` (the value that marks each class in the
            source's label volumes, which predicted volumes are written with).
    """

    options: PrepOptions
    source: str
    class_names: tuple
    channels: int
    data: str
    labels: LabelTable | None = None

    @classmethod
    def from_dataset(cls, dataset: PreparedDataset) -> PredictionSettings:
        source, options = dataset.preparation()
        return cls(options, source, tuple(dataset.class_names), int(dataset.image_shape()[2]), dataset.path, dataset.labels)

    def same_preparation(self, other: PredictionSettings) -> bool:
        """True when slices prepared for one are prepared for the other (the data folder may differ)."""
        return ((self.options, self.class_names, self.channels, self.labels)
                == (other.options, other.class_names, other.channels, other.labels))

    def describe(self) -> str:
        o = self.options
        return (f"{o.size}x{o.size} slices{' padded to a square' if o.keep_aspect else ''}, percentiles "
                f"{o.percentiles[0]:g}-{o.percentiles[1]:g}, {self.channels} channel(s), classes {list(self.class_names)}")


@dataclasses.dataclass
class TrainedModel:
    """A loaded network with the settings of the data it was trained on.

    Attributes:
        path: the `.keras` file.
        model: the Keras model (probabilities out).
        settings: `PredictionSettings`.
        run: the run's `config.json` when the file lies in a run folder, else None.
    """

    path: str
    model: keras.Model
    settings: PredictionSettings
    run: dict | None = None

    @property
    def augmented(self) -> bool:
        """Whether the network was trained with the trainer's random left-right flips."""
        return bool(self.run and self.run.get("augment"))

    @property
    def validation_cases(self) -> list[str]:
        return list((self.run or {}).get("validation_cases") or [])

    def digest(self) -> str:
        """SHA-256 of the model file: what a finished prediction was made with."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


def load_trained_model(
    path: PathLike, data: PathLike | None = None, dataset: PreparedDataset | None = None,
) -> TrainedModel:
    """Loads `path` with the preparation settings of its training data.

    A model inside a run folder finds its data set through the run's
    `config.json`; `data` (a prepared data set's folder) overrides it and is
    required for a model file on its own. `dataset`: that data set already
    read (a `PreparedDataset`), so that it is not parsed again.

    Raises:
        ValueError: the file is missing or damaged, the settings cannot be
            found, or the model does not fit them (input size, channels, classes).
    """
    path = os.fspath(path)

    if not os.path.isfile(path):
        raise ValueError(f"no model at '{path}'.")
    run = None
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isfile(path_of(folder, CONFIG)):
        run = read_run_config(folder)
    if dataset is not None:
        data = dataset.path
    if data is None and run is None:
        raise ValueError(
            f"'{path}' is not inside a run folder, so the preparation of its training data is unknown: "
            "give --data PREP_DIR, the data set it was trained on (its prep.json holds the slice size and intensity settings)."
        )
    data = data or (run or {})["data"]
    if not os.path.isdir(data):
        raise ValueError(f"the training data set '{data}' of '{path}' is not there (moved?): give --data PREP_DIR.")
    settings = PredictionSettings.from_dataset(dataset if dataset is not None else PreparedDataset(data))
    model = keras_focal.load_model(path)
    check_model_settings(model, settings, path)
    return TrainedModel(os.path.abspath(path), model, settings, run)


def check_model_settings(model: keras.Model, settings: PredictionSettings, name: str) -> None:
    """Raises ValueError unless `model` takes the settings' slices and scores their classes."""
    size, channels = settings.options.size, settings.channels
    model_input, model_output = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    problems = []
    if len(model_input) != 3 or model_input[2] != channels or any(s is not None and s != size for s in model_input[:2]):
        problems.append(f"it takes inputs of shape {model_input}, its data set's slices are {(size, size, channels)}")
    if not model_output or model_output[-1] != len(settings.class_names):
        problems.append(f"it scores {model_output[-1] if model_output else 0} classes, its data set has "
                        f"{len(settings.class_names)} ({', '.join(settings.class_names)})")
    if problems:
        raise ValueError(f"'{name}' does not fit the data set '{settings.data}': " + "; ".join(problems) + ".")


def check_ensemble(models: Sequence[TrainedModel]) -> None:
    """Raises ValueError naming the first pair of models whose inputs, classes or preparation differ."""
    first = models[0]
    for other in models[1:]:
        shapes = (tuple(first.model.input_shape[1:]), tuple(first.model.output_shape[1:]))
        other_shapes = (tuple(other.model.input_shape[1:]), tuple(other.model.output_shape[1:]))
        if shapes != other_shapes or not first.settings.same_preparation(other.settings):
            raise ValueError(
                f"the models '{first.path}' and '{other.path}' cannot be averaged: the first takes "
                f"{first.settings.describe()} (input {shapes[0]}, output {shapes[1]}), the second "
                f"{other.settings.describe()} (input {other_shapes[0]}, output {other_shapes[1]})."
            )


def model_paths(
    models: Sequence[PathLike] = (), runs: Sequence[PathLike] = (), comparison: PathLike | None = None, *,
    loss: str | None = None, optimizer: str | None = None, network: str | None = None,
    checkpoint: str | None = None,
) -> list[str]:
    """The model files named by `models` (files), `runs` (run folders) and `comparison` (a comparison folder), in order.

    A run gives its evaluated model (`checkpoint` "best"/"last" overrides);
    a comparison gives the runs of one loss, optimiser and network (each
    needed only when the comparison has several). A file named twice weighs
    twice in an ensemble's average, as asked.

    Raises:
        ValueError: no model is named, a choice is missing or not in the
            comparison, or a run kept no model.
    """
    paths = list(models)
    paths += [run_model_path(run, checkpoint) for run in runs]
    if comparison:
        paths += comparison_model_paths(comparison, loss=loss, optimizer=optimizer, network=network, checkpoint=checkpoint)
    elif loss or optimizer or network:
        raise ValueError("--loss, --optimizer and --network choose models of a comparison: give --compare RESULTS_DIR.")
    if not paths:
        raise ValueError("give the models: --model M.keras (repeatable), --run RUN_DIR or --compare RESULTS_DIR --loss LOSS.")
    return [os.fspath(path) for path in paths]


def comparison_model_paths(
    folder: PathLike, *, loss: str | None = None, optimizer: str | None = None, network: str | None = None,
    checkpoint: str | None = None,
) -> list[str]:
    """The model files of a comparison's runs (every fold and seed) of one loss, optimiser and network."""
    table = read_comparison_results(folder)
    for column, value in (("loss", loss), ("optimizer", optimizer), ("model", network)):
        choices = sorted(set(table[column].astype(str)))
        option = "--network" if column == "model" else f"--{column}"
        plural = {"loss": "losses", "optimizer": "optimisers", "model": "models"}[column]
        if value is None:
            if len(choices) > 1:
                raise ValueError(f"'{folder}' compares several {plural} ({', '.join(choices)}): choose one with {option}.")
            continue
        if value not in choices:
            raise ValueError(f"{option} {value!r} is not in '{folder}' (it has {', '.join(choices)}).")
        table = table[table[column].astype(str) == value]
    paths = []
    for run_dir in table.run_dir:
        try:
            paths.append(run_model_path(run_dir, checkpoint))
        except ValueError as error:
            raise ValueError(f"{error} (a run of '{folder}')") from None
    return paths
