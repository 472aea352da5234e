"""The comparison grid: models x losses x optimisers x folds x seeds, run and written as one results folder.

Its tables and chart are `keras_focal.reporting`'s; its per-patient 3-D
scores are `keras_focal.inference.run_volume_metrics`'.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import keras
import numpy as np

from keras_focal import run_folder
from keras_focal.data_prep.prepared import PreparedDataset
from keras_focal.errors import checking
from keras_focal.files import (
    FolderBusyError,
    FolderLock,
    check_output_folder,
    remove_temporaries,
    write_text_atomically,
)
from keras_focal.inference import run_volume_metrics
from keras_focal.loss_names import LOSS_LABELS
from keras_focal.model_names import MODEL_LABELS
from keras_focal.optimizer_names import OPTIMIZER_LABELS
from keras_focal.reporting.figures import bar_plot
from keras_focal.reporting.tables import add_rare_miou, markdown_tables, run_summary, volume_tables
from keras_focal.training import lr_sweep
from keras_focal.training.callbacks import RunState
from keras_focal.training.config import RunConfig
from keras_focal.training.lr_sweep import parse_rates, validation_score
from keras_focal.training.run import (
    InitialWeights,
    RunSetupError,
    check_strategy,
    initial_weights_path,
    prepare_run,
    train_run,
)
from keras_focal.types import PathLike

if TYPE_CHECKING:
    import pandas as pd

    from keras_focal.data_prep.prepared import PreparedDataset

GRID_AXES = ("models", "losses", "optimizers", "folds", "seeds")
GRID_EXAMPLES = {"models": "[unet]", "losses": "[ce, adfl]", "optimizers": "[adam]", "folds": "[0, 1, 2]", "seeds": "[0]"}


@dataclasses.dataclass
class CompareConfig:
    """A grid of runs: every model x loss x optimiser x fold x seed on one data set.

    `run_options` are the `RunConfig` settings shared by all runs (epochs,
    batch_size, learning_rate, model_options, ...). `reference` is the loss
    every other is compared with in `results.md`, paired by fold and seed
    (None: `adfl` when the grid has it, else the first loss). `lr_sweep`
    (learning rates) trains every run at each rate too and reports a second
    table with the rate chosen per loss on validation cases
    (`keras_focal.training.lr_sweep`); the fixed rate is one of the
    candidates.
    """

    data: str
    out: str
    models: list = dataclasses.field(default_factory=lambda: ["deeplabv3_plus"])
    losses: list = dataclasses.field(default_factory=lambda: ["ce", "wce", "fl", "adfl"])
    optimizers: list = dataclasses.field(default_factory=lambda: ["adam"])
    folds: list = dataclasses.field(default_factory=lambda: [0, 1, 2])
    seeds: list = dataclasses.field(default_factory=lambda: [0])
    run_options: dict = dataclasses.field(default_factory=dict)
    reference: str | None = None
    lr_sweep: str | list | None = None

    def __post_init__(self):
        """Refuses axes that are not lists, are empty, or repeat an entry (a run counted twice in n)."""
        for name in ("data", "out"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"`{name}` must be a folder path. Received: {name}={getattr(self, name)!r}")
        for axis in GRID_AXES:
            values = getattr(self, axis)
            kind = "integers >= 0" if axis in ("folds", "seeds") else "names"
            if values is None or (isinstance(values, (list, tuple)) and not values):
                raise ValueError(f"`{axis}` is empty: give a list of {kind}, e.g. {axis}: {GRID_EXAMPLES[axis]}.")
            if not isinstance(values, (list, tuple)):
                raise ValueError(f"`{axis}` must be a list of {kind}, e.g. {axis}: {GRID_EXAMPLES[axis]}. Received: {values!r}")
            if axis in ("folds", "seeds"):
                wrong = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 0]
            else:
                wrong = [v for v in values if not isinstance(v, str)]
            if wrong:
                raise ValueError(f"`{axis}` must be a list of {kind}. Received: {list(values)!r} ({wrong[0]!r} is not).")
            repeated = sorted({v for v in values if list(values).count(v) > 1}, key=str)
            if repeated:
                raise ValueError(
                    f"`{axis}` lists {repeated} more than once ({list(values)!r}): each run of the grid would be trained "
                    "once and counted several times in n and the spread. List each entry once."
                )
            setattr(self, axis, list(values))
        if not isinstance(self.run_options, dict):
            raise ValueError(f"`run_options` must be a mapping of run settings. Received: {self.run_options!r}")
        if self.reference is not None and not isinstance(self.reference, str):
            raise ValueError(f"`reference` must be a loss name. Received: {self.reference!r}")

    def fixed_learning_rate(self) -> float:
        """The rate of the paper's fixed-rate table (`run_options`, else RunConfig's default)."""
        return float(self.run_options.get("learning_rate", RunConfig.__dataclass_fields__["learning_rate"].default))

    def learning_rates(self) -> list[float]:
        """Every rate the grid trains at: the fixed one, plus the sweep's (validated)."""
        fixed = self.fixed_learning_rate()
        if not self.lr_sweep:
            return [fixed]
        return sorted(set(parse_rates(self.lr_sweep)) | {fixed})

    def reference_loss(self) -> str:
        """The loss of the paired comparison (validated against the grid)."""
        if self.reference is None:
            return "adfl" if "adfl" in self.losses else self.losses[0]
        if self.reference not in self.losses:
            raise ValueError(f"--reference {self.reference!r} is not one of the grid's losses ({', '.join(self.losses)}).")
        return self.reference

    @classmethod
    def from_yaml(cls, path: PathLike) -> CompareConfig:
        import yaml

        with open(path) as stream:
            data = yaml.safe_load(stream) or {}
        if not isinstance(data, dict):
            raise ValueError(f"'{path}' must hold a mapping of settings.")
        fields = {f.name for f in dataclasses.fields(cls)}
        known_run = {f.name for f in dataclasses.fields(RunConfig)} - {"data", "out", "model", "loss", "optimizer", "fold", "seed"}
        unknown = set(data) - fields - known_run
        if unknown:
            raise ValueError(f"unknown setting(s) in '{path}': {sorted(unknown)}")
        run_options = data.pop("run_options", {}) or {}
        if not isinstance(run_options, dict):
            raise ValueError(f"'{path}': `run_options` must be a mapping of run settings. Received: {run_options!r}")
        run_options = dict(run_options)
        run_options.update({k: data.pop(k) for k in list(data) if k in known_run})
        for key, value in run_options.items():
            # YAML 1.1 reads 5e-4 (no dot) as a string: take it as the number it spells.
            # (The field's annotation is the string "float": annotations are postponed in keras_focal.training.config.)
            if RunConfig.__dataclass_fields__[key].type in (float, "float") and isinstance(value, str):
                try:
                    run_options[key] = float(value)
                except ValueError:
                    raise ValueError(f"'{path}': `{key}` must be a number. Received: {value!r}") from None
        if "data" not in data or "out" not in data:
            raise ValueError(f"'{path}' must give `data` (a prepared folder) and `out`.")
        try:
            return cls(run_options=run_options, **data)
        except ValueError as error:
            raise ValueError(f"'{path}': {error}") from None

    def runs(self) -> Iterator[RunConfig]:
        """The runs at the fixed rate (in grid order), then those of the other rates of the sweep."""
        fixed = self.fixed_learning_rate()
        rates = [fixed] + [rate for rate in self.learning_rates() if rate != fixed]
        for rate in rates:
            for model, loss, optimizer, fold, seed in itertools.product(self.models, self.losses, self.optimizers, self.folds, self.seeds):
                condition = f"{loss}-{optimizer}" if rate == fixed else f"{loss}-{optimizer}-lr{rate:g}"
                out = os.path.join(self.out, "runs", model, condition, f"fold{fold}-seed{seed}")
                yield RunConfig(
                    data=self.data, out=out, model=model, loss=loss, optimizer=optimizer, fold=fold, seed=seed,
                    init_dir=os.path.join(self.out, "initial_weights"), **{**self.run_options, "learning_rate": rate},
                )


def compare(
    config: CompareConfig, verbose: int = 0, log: Callable[[str], object] = print, progress: bool = False,
) -> pd.DataFrame:
    """Runs the grid (skipping finished runs, resuming unfinished ones) and writes the tables.

    Every configuration is checked before the first run trains, so a bad
    setting stops the comparison at once (`RunSetupError`). The comparison
    folder is locked while it works: a second `compare` on it is refused.

    Args:
        verbose: Keras's `fit` verbosity for each run.
        log: called with one line per finished run.
        progress: show one progress bar over every epoch left in the grid:
            the run in progress, its epoch, and the time left (estimated
            from the epochs trained so far).

    Returns:
        The results as a pandas DataFrame (one row per run).
    """
    prepared = prepare_comparison(config)
    try:
        with FolderLock(config.out):
            for folder in (config.out, os.path.join(config.out, "initial_weights")):
                remove_temporaries(folder)
            return _compare_locked(config, prepared, verbose, log, progress)
    except FolderBusyError as error:
        raise RunSetupError(str(error)) from None


def prepare_comparison(config: CompareConfig) -> list:
    """The pre-flight of every run of the grid (`PreparedRun`s, in grid order); writes nothing.

    The data set is read and its slices checked once, the strategy checked
    once, and each run's split, model arguments, loss, optimiser and folder
    are checked before the first run trains, so a bad setting of any run
    stops the comparison at once (`RunSetupError`).
    """
    with checking(RunSetupError):
        runs = list(config.runs())  # every run's settings (RunConfig validates each)
        if not runs:
            raise ValueError("the grid is empty: give at least one model, loss, optimiser, fold and seed.")
        config.reference_loss()  # a bad --reference stops the comparison before any training
        check_output_folder(config.out, "the comparison folder")
        dataset = PreparedDataset(config.data)
    group = check_strategy(runs[0].strategy)  # run_options are shared: one strategy for the grid
    prepared = []
    for run in runs:
        one = prepare_run(run, resume=True, dataset=dataset, group=group)
        if config.lr_sweep and not one.validation_cases:
            raise RunSetupError(
                f"--lr-sweep chooses the rate on validation cases, but fold {run.fold} has none "
                f"(validation_fraction={run.validation_fraction}, {len(one.train_cases)} training case(s)): "
                "give validation_fraction > 0 and at least two training cases."
            )
        prepared.append(one)
    return prepared


def _epochs_done(run):
    """Epochs a run folder already holds (all of them once it is finished)."""
    if run_folder.is_finished(run.out):
        return run.epochs
    try:
        return int(RunState(run.out, recorder=None).load()[0])
    except (OSError, ValueError, KeyError, TypeError):
        return 0  # train_run reports a damaged state file itself


def _progress_bar(runs, enabled):
    from tqdm.auto import tqdm

    left = sum(run.epochs - _epochs_done(run) for run in runs)
    # disable=None: no bar where stderr is not a terminal (a log file gets no ANSI redraws).
    return tqdm(total=left, unit="epoch", desc="compare", disable=None if enabled and left else True, dynamic_ncols=True)


def _epoch_callback(bar, label):
    class EpochProgress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs=None) -> None:
            loss = (logs or {}).get("loss")
            bar.set_postfix_str(f"{label} epoch {epoch + 1}" + (f", loss {loss:.4f}" if loss is not None else ""))
            bar.update(1)

    return EpochProgress()


def _compare_locked(config, prepared, verbose, log, progress: bool = False):
    write_text_atomically(os.path.join(config.out, "compare.json"), json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    runs = [one.config for one in prepared]
    # The runs that share starting weights (model, options, fold, seed) one after another, so
    # that each set is built once and one set is held at a time; the tables keep the grid's order.
    first = {}
    for position, one in enumerate(prepared):
        first.setdefault(_weights_set(one), position)
    order = sorted(range(len(prepared)), key=lambda position: first[_weights_set(prepared[position])])
    import pandas as pd

    weights = InitialWeights()
    rows: list = [None] * len(prepared)
    volumes = [None] * len(prepared)
    bar = _progress_bar(runs, progress)
    if not bar.disable and log is print:
        from tqdm.auto import tqdm

        log = tqdm.write  # lines above the bar, not through it
    sweep = bool(config.lr_sweep)
    try:
        for index, position in enumerate(order, start=1):
            run = runs[position]
            metrics, status = _one_run(prepared[position], index, len(runs), verbose, bar, weights)
            rows[position] = _row(metrics, run, config.out)
            nan = f", NaN at epoch {metrics['nan_epoch']}" if metrics.get("nan_epoch") else ""
            rate = f" lr {run.learning_rate:g}" if sweep else ""
            log(
                f"[{index}/{len(runs)}] {run.model} {run.loss} {run.optimizer}{rate} fold {run.fold} seed {run.seed}: "
                f"{run_summary(metrics)}{nan} ({status})"
            )
            for warning in metrics.get("warnings") or ():
                log(f"    warning: {warning}")
            volumes[position] = _volume_rows(prepared[position], rows[position])
    finally:
        bar.close()
    volume_table = pd.concat([v for v in volumes if v is not None], ignore_index=True) if any(
        v is not None for v in volumes) else None
    return write_results(rows, config.out, config.reference_loss(), class_shares(prepared[0].dataset),
                         fixed_rate=config.fixed_learning_rate() if sweep else None, volumes=volume_table)


def _volume_rows(prepared, row):
    """The run's per-patient 3-D metrics (`run_volume_metrics`) with the run's keys, or None (no model, or photographs)."""
    table = run_volume_metrics(prepared.config.out, prepared.config.batch_size, prepared.dataset)
    if table is None:
        return None
    keys = {k: row[k] for k in ("model", "dataset", "loss", "optimizer", "seed", "fold", "run_dir")}
    return table.assign(**keys)


def _weights_set(prepared):
    """The order key of a run's starting-weights set: its file, which names model, options, fold and seed."""
    return initial_weights_path(prepared.config, prepared.input_shape, prepared.dataset.num_classes)


def _one_run(prepared, index, count, verbose, bar, weights):
    """Trains (or reads) one run of the grid; returns its metrics and a status for the log line."""
    run = prepared.config
    finished = run_folder.is_finished(run.out)
    start = time.perf_counter()
    label = f"run {index}/{count} ({run.model} {run.loss} {run.optimizer} fold {run.fold} seed {run.seed})"
    callbacks = []
    if not bar.disable and not finished:
        bar.set_postfix_str(f"{label} starting")
        callbacks.append(_epoch_callback(bar, label))
    metrics = train_run(prepared, verbose=verbose, callbacks=callbacks, initial_weights=weights)
    if callbacks and (metrics.get("epochs_run") or run.epochs) < run.epochs:
        bar.update(run.epochs - metrics["epochs_run"])  # a NaN loss stopped it early
    status = "finished earlier" if finished else f"{time.perf_counter() - start:.0f} s"
    return metrics, status


def _row(metrics, run, out: str):
    keys = ("model", "dataset", "loss", "optimizer", "fold", "seed", "epochs", "epochs_run", "nan_epoch", "evaluated",
            "dataset_miou", "global_accuracy", "dataset_mdsc", "mdsc", "miou", "mean_bf_score", "scored_size")
    row = {k: metrics.get(k) for k in keys}
    row["never_predicted"] = ";".join(metrics.get("never_predicted") or [])
    for kind in ("iou", "dice"):
        for name, value in (metrics.get(kind) or {}).items():
            row[f"{kind}_{name}"] = value
    row.update({k: metrics.get(k) for k in ("train_seconds", "train_images_per_second")})
    row["learning_rate"] = run.learning_rate
    row["validation_dice"] = validation_score(run.out, metrics.get("evaluated", run.evaluate), metrics.get("epochs_run"))
    # Relative to the results folder: the table stays valid wherever it is read from, or moved to.
    row["run_dir"] = os.path.relpath(run.out, out)
    return row


def class_shares(dataset: PreparedDataset | PathLike) -> dict[str, float]:
    """`{class name: share of the labelled pixels}` of a `PreparedDataset` (or its folder), from its `classes.json`."""
    if not isinstance(dataset, PreparedDataset):
        dataset = PreparedDataset(dataset)
    counts = np.asarray(dataset.classes["pixel_count"], dtype=float)
    return dict(zip(dataset.class_names, counts / max(counts.sum(), 1.0)))


def write_results(
    rows: Sequence[dict], out: PathLike, reference: str | None = None, shares: Mapping[str, float] | None = None,
    fixed_rate: float | None = None, volumes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """`results.csv`, `results.md` (the paper's Tables 2-4 layout, the per-class IoU, the paired differences) and `results.png`.

    `volumes`: the runs' per-patient 3-D metrics (`volume_metrics` rows with
    the run's keys and `run_dir`); written to `volume_results.csv`, and
    `results.md` ends with their table (`volume_tables`) for the runs of
    `results.csv`.

    With `fixed_rate` (a learning-rate sweep): `results.*` hold the runs at
    the fixed rate; `lr_sweep.csv` every run with the rate chosen per
    model, loss, optimiser and fold on validation cases (`chosen`),
    `tuned.csv` and `tuned.png` the chosen runs, and `results.md` adds the
    tuned tables and the chosen rates.
    """
    import pandas as pd

    everything = add_rare_miou(pd.DataFrame(rows), shares)
    if fixed_rate is None:
        table, markdown = everything, markdown_tables(everything, reference, shares)
    else:
        table = everything[np.isclose(everything.learning_rate, fixed_rate)].reset_index(drop=True)
        choices = lr_sweep.choose_learning_rates(everything)
        tuned = lr_sweep.tuned_runs(everything, choices)
        chosen = everything.run_dir.isin(set(tuned.run_dir))
        write_text_atomically(os.path.join(out, "lr_sweep.csv"), everything.assign(chosen=chosen).to_csv(index=False))
        write_text_atomically(os.path.join(out, "tuned.csv"), tuned.to_csv(index=False))
        bar_plot(tuned, os.path.join(out, "tuned.png"), note="learning rate tuned per loss on validation cases")
        rates = ", ".join(f"{r:g}" for r in sorted(everything.learning_rate.unique()))
        markdown = "\n".join([
            markdown_tables(table, reference, shares, title=f"Results at the fixed learning rate {fixed_rate:g} (the paper's setting)"),
            markdown_tables(tuned, reference, shares, title=f"Results with the learning rate tuned per loss (sweep: {rates})",
                            note="Each cell is the run at the rate chosen for its loss, optimiser and test fold on "
                                 "validation cases only (table below); `tuned.csv` lists them."),
            lr_sweep.markdown(choices, {**LOSS_LABELS, **MODEL_LABELS, **OPTIMIZER_LABELS}),
        ])
    if volumes is not None and not volumes.empty:
        volumes = volumes[volumes.run_dir.isin(set(table.run_dir))]
        write_text_atomically(os.path.join(out, "volume_results.csv"), volumes.to_csv(index=False))
        markdown = markdown.rstrip("\n") + "\n\n" + volume_tables(volumes, reference)
    write_text_atomically(os.path.join(out, "results.csv"), table.to_csv(index=False))
    write_text_atomically(os.path.join(out, "results.md"), markdown)
    bar_plot(table, os.path.join(out, "results.png"))
    return table


