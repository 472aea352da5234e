"""The run folder's format: which file holds what, read and written here only.

A run folder (`keras-focal train --out RUN`, each run of `compare`) holds:

- `config.json` (`CONFIG`): the settings, the split, the class weights and
  what Keras resolved; written before the first epoch.
- `history.csv` (`HISTORY`): one row per epoch.
- `state.json` and `state-epochNNNN.weights.h5`: the state a resume starts
  from (`keras_focal.training.callbacks.RunState`).
- `last.keras` and `best.keras` (`model_path(run, "last"|"best")`).
- `metrics.json` (`METRICS`): the test scores, written last: its presence
  marks the run finished (`is_finished`).

The trainer writes these (`write_config`, `write_metrics`); prediction,
evaluation and the comparison read them (`read_run_config`,
`run_model_path`).

A comparison folder (`keras-focal compare`) holds `results.csv` (`RESULTS`):
one row per run, its `run_dir` relative to the folder
(`read_comparison_results`). Nothing here imports TensorFlow, Keras or JAX.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from keras_focal.files import write_text_atomically
from keras_focal.types import PathLike

if TYPE_CHECKING:
    import pandas as pd

CONFIG = "config.json"
HISTORY = "history.csv"
METRICS = "metrics.json"
RESULTS = "results.csv"  # a comparison folder's table of runs
CHECKPOINTS = ("last", "best")


def path_of(run_dir: PathLike, name: str) -> str:
    """The path of the run folder's file `name` (`CONFIG`, `HISTORY`, `METRICS`)."""
    return os.path.join(run_dir, name)


def model_path(run_dir: PathLike, checkpoint: str) -> str:
    """`RUN/last.keras` or `RUN/best.keras`."""
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"`checkpoint` must be one of {list(CHECKPOINTS)}. Received: checkpoint={checkpoint!r}")
    return os.path.join(run_dir, f"{checkpoint}.keras")


def is_finished(run_dir: PathLike) -> bool:
    """Whether the run in `run_dir` finished (its `metrics.json` exists)."""
    return os.path.exists(path_of(run_dir, METRICS))


def write_config(run_dir: PathLike, record: dict) -> None:
    """Writes `config.json` atomically."""
    write_text_atomically(path_of(run_dir, CONFIG), json.dumps(record, indent=2) + "\n")


def write_metrics(run_dir: PathLike, metrics: dict) -> None:
    """Writes `metrics.json` atomically: the last file of a run, which marks it finished."""
    write_text_atomically(path_of(run_dir, METRICS), json.dumps(metrics, indent=2) + "\n")


def read_metrics(run_dir: PathLike) -> dict | None:
    """A finished run's `metrics.json`, or None when the run is not finished."""
    try:
        with open(path_of(run_dir, METRICS)) as stream:
            return json.load(stream)
    except FileNotFoundError:
        return None


def read_run_config(run_dir: PathLike) -> dict:
    """A run folder's `config.json`; raises ValueError naming the file when it is missing or not a run's."""
    path = path_of(run_dir, CONFIG)
    try:
        with open(path) as stream:
            config = json.load(stream)
    except FileNotFoundError:
        raise ValueError(f"'{run_dir}' is not a run folder: it has no config.json.") from None
    except ValueError as error:
        raise ValueError(f"'{path}' is damaged ({error}).") from None
    missing = [key for key in ("data", "test_cases") if key not in config]
    if missing:
        raise ValueError(f"'{path}' lacks {missing}: it was not written by `keras-focal train`.")
    return config


def run_model_path(run_dir: PathLike, checkpoint: str | None = None) -> str:
    """The model file of a run: `checkpoint` ("best"/"last"), or by default the one its test scores are of.

    Raises ValueError when the run is unfinished or kept no model (a NaN run without a checkpoint).
    """
    metrics_path = path_of(run_dir, METRICS)
    if checkpoint is None:
        try:
            metrics = read_metrics(run_dir)
        except ValueError as error:
            raise ValueError(f"'{metrics_path}' is damaged ({error}).") from None
        if metrics is None:
            raise ValueError(f"'{run_dir}' holds no finished run (no metrics.json); finish it or give --model.")
        evaluated = metrics.get("evaluated", "last")
        if evaluated == "none":
            raise ValueError(f"the run in '{run_dir}' ended with a NaN loss and kept no model to predict with.")
        checkpoint = evaluated
    path = model_path(run_dir, checkpoint)
    if not os.path.isfile(path):
        raise ValueError(f"no model at '{path}'.")
    return path


def read_comparison_results(folder: PathLike) -> pd.DataFrame:
    """`results.csv` of a comparison folder (a DataFrame), with `run_dir` resolved to a usable path.

    Run folders are stored relative to the results folder; tables written
    before that stored them relative to where `compare` ran, and are read
    from the current directory as a fallback.

    Raises:
        ValueError: `folder` has no results.csv.
    """
    import pandas as pd

    path = os.path.join(folder, RESULTS)
    if not os.path.isfile(path):
        raise ValueError(f"'{folder}' is not a comparison folder: it has no {RESULTS} (run `keras-focal compare`).")
    table = pd.read_csv(path)

    def resolve(run_dir: PathLike):
        beside = os.path.join(folder, run_dir)
        return beside if os.path.isabs(run_dir) or os.path.isdir(beside) or not os.path.isdir(run_dir) else run_dir

    table["run_dir"] = [resolve(d) for d in table.run_dir]
    return table
