"""The comparison grid and its tables and plot."""

import dataclasses
import itertools
import json
import os
import time

import keras
import numpy as np

from keras_focal import run_folder
from keras_focal.errors import checking
from keras_focal.files import (
    FolderBusyError,
    FolderLock,
    check_output_folder,
    remove_temporaries,
    save_figure_atomically,
    write_text_atomically,
)
from keras_focal.loss_names import LOSS_LABELS
from keras_focal.model_names import MODEL_LABELS
from keras_focal.training.config import OPTIMIZER_LABELS, RunConfig
from keras_focal.training.lr_sweep import validation_score
from keras_focal.training.run import (
    InitialWeights,
    RunSetupError,
    check_strategy,
    initial_weights_path,
    prepare_run,
    train_run,
)

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
    lr_sweep: list | None = None

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

    def fixed_learning_rate(self):
        """The rate of the paper's fixed-rate table (`run_options`, else RunConfig's default)."""
        return float(self.run_options.get("learning_rate", RunConfig.__dataclass_fields__["learning_rate"].default))

    def learning_rates(self):
        """Every rate the grid trains at: the fixed one, plus the sweep's (validated)."""
        from keras_focal.training.lr_sweep import parse_rates

        fixed = self.fixed_learning_rate()
        if not self.lr_sweep:
            return [fixed]
        return sorted(set(parse_rates(self.lr_sweep)) | {fixed})

    def reference_loss(self):
        """The loss of the paired comparison (validated against the grid)."""
        if self.reference is None:
            return "adfl" if "adfl" in self.losses else self.losses[0]
        if self.reference not in self.losses:
            raise ValueError(f"--reference {self.reference!r} is not one of the grid's losses ({', '.join(self.losses)}).")
        return self.reference

    @classmethod
    def from_yaml(cls, path):
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
            if RunConfig.__dataclass_fields__[key].type is float and isinstance(value, str):
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

    def runs(self):
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


def compare(config, verbose=0, log=print, progress=False):
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


def prepare_comparison(config):
    """The pre-flight of every run of the grid (`PreparedRun`s, in grid order); writes nothing.

    The data set is read and its slices checked once, the strategy checked
    once, and each run's split, model arguments, loss, optimiser and folder
    are checked before the first run trains, so a bad setting of any run
    stops the comparison at once (`RunSetupError`).
    """
    from keras_focal.data_prep.prepared import PreparedDataset

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
    from keras_focal.training.callbacks import RunState

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
        def on_epoch_end(self, epoch, logs=None):
            loss = (logs or {}).get("loss")
            bar.set_postfix_str(f"{label} epoch {epoch + 1}" + (f", loss {loss:.4f}" if loss is not None else ""))
            bar.update(1)

    return EpochProgress()


def _compare_locked(config, prepared, verbose, log, progress=False):
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
    rows = [None] * len(prepared)
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
    from keras_focal.prediction import run_volume_metrics

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


def _percent(value):
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.2f}%"


def run_summary(metrics):
    """One line of a run's test scores, the pooled figures first: `pooled mIoU 36.80%, global accuracy ..., never predicted: Pole`."""
    never = metrics.get("never_predicted") or []
    return (f"{HEADLINE_NAME} {_percent(metrics.get(HEADLINE))}, global accuracy {_percent(metrics.get('global_accuracy'))}, "
            f"per-image mDSC {_percent(metrics.get('mdsc'))}"
            + (f"; never predicted: {', '.join(never)}" if never else ""))


def _row(metrics, run, out):
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


def read_results(folder):
    """`results.csv` of a comparison folder, with `run_dir` resolved to a usable path.

    Run folders are stored relative to the results folder; tables written
    before that stored them relative to where `compare` ran, and are read
    from the current directory as a fallback.
    """
    import pandas as pd

    table = pd.read_csv(os.path.join(folder, "results.csv"))

    def resolve(run_dir):
        beside = os.path.join(folder, run_dir)
        return beside if os.path.isabs(run_dir) or os.path.isdir(beside) or not os.path.isdir(run_dir) else run_dir

    table["run_dir"] = [resolve(d) for d in table.run_dir]
    return table


def class_shares(dataset):
    """`{class name: share of the labelled pixels}` of a `PreparedDataset` (or its folder), from its `classes.json`."""
    from keras_focal.data_prep.prepared import PreparedDataset

    if not isinstance(dataset, PreparedDataset):
        dataset = PreparedDataset(dataset)
    counts = np.asarray(dataset.classes["pixel_count"], dtype=float)
    return dict(zip(dataset.class_names, counts / max(counts.sum(), 1.0)))


def write_results(rows, out, reference=None, shares=None, fixed_rate=None, volumes=None):
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

    from keras_focal.training import lr_sweep

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


def _mean_and_spread(values):
    """`"mean ± sample std (n)"` of the finite values in percent; no spread is claimed from one run."""
    values = 100 * np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "n/a"
    if values.size == 1:
        return f"{values[0]:.2f} (n = 1, no spread)"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f} (n = {values.size})"


RARE_SHARE = 0.02  # a class under 2% of the labelled pixels is "rare" in the per-class table
# The headline of every comparison: MATLAB's data-set metrics, pooled over the test pixels.
HEADLINE = "dataset_miou"
HEADLINE_NAME = "pooled mIoU"


def rare_classes(classes, shares):
    """The foreground classes under `RARE_SHARE` of the labelled pixels (`shares` from `class_shares`)."""
    from keras_focal.evaluation import foreground_classes

    foreground = [classes[i] for i in foreground_classes(classes)]
    return [c for c in foreground if c in (shares or {}) and shares[c] < RARE_SHARE] if len(foreground) > 1 else []


def add_rare_miou(table, shares):
    """`table` with `rare_miou`: each run's mean IoU over the rare classes (NaN where none is rare or scored)."""
    classes = [c[len("iou_"):] for c in table.columns if c.startswith("iou_")]
    rare = rare_classes(classes, shares)
    if rare:
        values = table[[f"iou_{c}" for c in rare]].astype(float)
        table = table.assign(rare_miou=values.mean(axis=1, skipna=True))
    return table


def markdown_tables(table, reference=None, shares=None, title="Results", note=None):
    """The comparison's report: the pooled data-set metrics first, then per-class IoU, then per-image means.

    1. The headline, one table per (data set, optimiser): pooled mIoU (the
       class IoUs of the test set's pooled confusion matrix, averaged over
       the foreground classes: MATLAB's `DataSetMetrics`), global accuracy,
       the rare classes' mean IoU (`shares`, `{class: share of the labelled
       pixels}`, see `class_shares`; classes under 2%) and the classes a run
       never predicts. Mean ± sample std (ddof = 1) over the runs (folds x
       seeds) with finite scores, and their number n.
    2. With more than one foreground class, each class's IoU, a class never
       predicted flagged with the number of runs.
    3. The paper's per-image means (mDSC, mIOU) per test run, named as such.
    4. With a `reference` loss, the paired differences of the headline
       metric against it (`keras_focal.training.statistics`).

    `title` heads the text and `note` is a paragraph under it.
    """
    classes = [c[len("iou_"):] for c in table.columns if c.startswith("iou_")]
    rare = rare_classes(classes, shares)
    if rare and "rare_miou" not in table:
        table = add_rare_miou(table, shares)
    sizes = sorted({str(s) for s in table.get("scored_size", []) if isinstance(s, str) and s})
    lines = [f"# {title}", ""] + ([note, ""] if note else []) + [
        f"**{HEADLINE_NAME}** (%), the headline: each class's IoU from the confusion matrix of all the test pixels",
        "together (MATLAB's `DataSetMetrics`), averaged over the foreground classes; *global accuracy*: the share of",
        "labelled test pixels classified right"
        + (f"; *rare mIoU*: the mean IoU of the rare classes (under {RARE_SHARE:.0%} of the labelled pixels: "
           f"{', '.join(rare)})" if rare else "")
        + "; *never predicted*: classes present in the test set that a run never marks (their IoU is 0), with the",
        "number of runs. Mean ± *sample* std (ddof = 1) over the n runs (folds × seeds) with finite scores; a",
        "single run has no spread."
        + (f" Scored at the label images' own size ({', '.join(sizes)}), predictions restored to it." if sizes else ""),
        "",
    ]
    lines.extend(_headline_tables(table, rare))
    lines.extend(_class_iou_tables(table, shares))
    lines.extend(_per_image_tables(table))
    if reference is not None and reference in set(table.loss) and table.loss.nunique() > 1 and HEADLINE in table:
        from keras_focal.training import statistics

        label = LOSS_LABELS.get(reference, reference)
        differences = statistics.paired_differences(table, reference, metric=HEADLINE, label=label)
        lines.append(statistics.markdown(differences, label, labels={**LOSS_LABELS, **MODEL_LABELS, **OPTIMIZER_LABELS},
                                         metric_name=HEADLINE_NAME))
    return "\n".join(lines)


def _never_predicted(runs):
    """`{class: number of runs that never predict it}` over `runs` (results rows)."""
    counts = {}
    for entry in runs.get("never_predicted", []):
        for name in str(entry).split(";") if isinstance(entry, str) and entry else ():
            counts[name] = counts.get(name, 0) + 1
    return counts


def _headline_tables(table, rare):
    lines = []
    for (dataset, optimizer), group in table.groupby(["dataset", "optimizer"], sort=False):
        lines += [f"## {dataset}, {OPTIMIZER_LABELS.get(optimizer, optimizer)}", ""]
        header = ["Loss + model", f"{HEADLINE_NAME} (n)", "global accuracy"] + (["rare mIoU"] if rare else [])
        header += ["never predicted (runs)", "NaN runs"]
        aligns = ["---"] + ["---:"] * (len(header) - 3) + ["---", "---:"]  # names left, numbers right
        lines += ["| " + " | ".join(header) + " |", "|" + "|".join(aligns) + "|"]
        for (model, loss), runs in group.groupby(["model", "loss"], sort=False):
            # results.csv files of older versions lack the pooled columns: n/a, not a crash.
            cells = [f"{LOSS_LABELS.get(loss, loss)}+{MODEL_LABELS.get(model, model)}"]
            cells += [_mean_and_spread(runs[c]) if c in runs else "n/a" for c in (HEADLINE, "global_accuracy")]
            if rare:
                cells.append(_mean_and_spread(runs["rare_miou"]))
            never = _never_predicted(runs)
            cells.append(", ".join(f"**{name}** ({count}/{len(runs)})" for name, count in never.items()) or "none")
            cells.append(str(int(runs.nan_epoch.notna().sum())))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _per_image_tables(table):
    """The paper's per-image means (mDSC, mIOU) per test run: second to the pooled figures."""
    lines = [
        "## Per-image means (the papers' mDSC and mIOU)",
        "",
        "The foreground classes' Dice and IoU of each test image, averaged over the images (an image without",
        "foreground in either mask is left out). They weigh every image alike and a class absent from an image not",
        "at all, so they can rank a loss that misses the rare classes first: read them after the pooled figures.",
        "",
    ]
    for (dataset, optimizer), group in table.groupby(["dataset", "optimizer"], sort=False):
        folds = sorted(group.fold.unique())
        lines.append(f"### {dataset}, {OPTIMIZER_LABELS.get(optimizer, optimizer)}")
        lines.append("")
        header = ["Loss + model"] + [f"Test run #{f + 1} {m}" for f in folds for m in ("mDSC", "mIOU")] + ["mDSC mean ± std (n)", "mIOU mean ± std (n)"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" + "---:|" * (len(header) - 1))
        for (model, loss), runs in group.groupby(["model", "loss"], sort=False):
            cells = [f"{LOSS_LABELS.get(loss, loss)}+{MODEL_LABELS.get(model, model)}"]
            per_fold = runs.groupby("fold")[["mdsc", "miou"]].mean()
            for fold in folds:
                for metric in ("mdsc", "miou"):
                    value = per_fold[metric].get(fold, np.nan)
                    cells.append("n/a" if not np.isfinite(value) else f"{100 * value:.2f}")
            for metric in ("mdsc", "miou"):
                cells.append(_mean_and_spread(runs[metric]))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


VOLUME_COLUMNS = (("dice", "Dice (%)", 100.0), ("hd95_mm", "HD95 (mm)", 1.0), ("assd_mm", "ASSD (mm)", 1.0),
                  ("rvd_percent", "RVD (%)", 1.0))


def volume_tables(volumes, reference=None):
    """The per-patient 3-D table of a comparison: mean ± sample std over patients per loss and class, and paired Dice differences.

    `volumes`: `volume_results.csv` rows (one per run, case and foreground
    class). Each patient is in one test fold, so a loss's n is the number
    of patients times seeds. With a `reference` loss, the paired differences
    of each patient's Dice (mean over the foreground classes) against it
    follow, pairs being the same patient and seed.
    """
    from keras_focal.evaluation import mean_std_cell, truth_sources
    from keras_focal.training import statistics

    lines = [
        "# Per-patient 3-D metrics",
        "",
        "Each test case's prediction restored to its original grid (spacing in mm) and scored as a whole volume",
        "(`keras_focal.evaluation.volume_metrics`: Dice, MONAI's HD95 and symmetric ASSD, signed RVD). Mean ± *sample*",
        "std over the patients (n; each patient is in one test fold); *undefined*: patients with an empty prediction",
        "or truth, where a distance has no value. Per run and case: `volume_results.csv`.",
        "",
        truth_sources(volumes),
        "",
    ]
    for (dataset, optimizer), group in volumes.groupby(["dataset", "optimizer"], sort=False):
        lines += [f"## {dataset}, {OPTIMIZER_LABELS.get(optimizer, optimizer)} (3-D)", ""]
        header = ["Loss + model", "class"] + [label for _, label, _ in VOLUME_COLUMNS]
        lines += ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * len(VOLUME_COLUMNS)]
        for (model, loss, name), rows in group.groupby(["model", "loss", "class"], sort=False):
            cells = [f"{LOSS_LABELS.get(loss, loss)}+{MODEL_LABELS.get(model, model)}", str(name)]
            for column, _, scale in VOLUME_COLUMNS:
                values = rows[column].to_numpy(dtype=float)
                finite = values[np.isfinite(values)]
                cells.append(mean_std_cell(finite.mean() if finite.size else np.nan,
                                           finite.std(ddof=1) if finite.size > 1 else np.nan,
                                           finite.size, values.size - finite.size, scale))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if reference is not None and reference in set(volumes.loss) and volumes.loss.nunique() > 1:
        per_patient = (volumes.groupby(["dataset", "model", "optimizer", "loss", "case", "seed"], sort=False)
                       .dice.mean().reset_index())
        label = LOSS_LABELS.get(reference, reference)
        differences = statistics.paired_differences(per_patient, reference, metric="dice", label=label,
                                                    pair_keys=("case", "seed"))
        lines.append(statistics.markdown(differences, label, labels={**LOSS_LABELS, **MODEL_LABELS, **OPTIMIZER_LABELS},
                                         metric_name="foreground 3-D Dice of each patient",
                                         pairs="the same patient and seed (the runs of its test fold)"))
    return "\n".join(lines)


def _class_iou_tables(table, shares):
    """Per-class IoU (mean over the runs) per (data set, optimiser), when there are several foreground classes."""
    from keras_focal.evaluation import foreground_classes

    classes = [c[len("iou_"):] for c in table.columns if c.startswith("iou_")]
    foreground = [classes[i] for i in foreground_classes(classes)]
    if len(foreground) < 2:
        return []
    shares = shares or {}
    rare = rare_classes(classes, shares)
    lines = [
        "## IoU of each class (%)",
        "",
        "Mean over the runs (n as above) of each class's IoU on the test images, pooled over the test fold;",
        "in brackets, the share of each class in the labelled pixels of the data set."
        + (f" Rare classes (under {RARE_SHARE:.0%} of the pixels): {', '.join(rare)}; *rare mIoU* is their mean —"
           " the column where losses for class imbalance should differ." if rare else "")
        + " **0.0 ✗k/n**: the class was never predicted in k of the n runs.",
        "",
    ]
    for (dataset, optimizer), group in table.groupby(["dataset", "optimizer"], sort=False):
        lines.append(f"### {dataset}, {OPTIMIZER_LABELS.get(optimizer, optimizer)}")
        lines.append("")
        header = ["Loss + model"] + [f"{c} ({100 * shares[c]:.1f}%)" if c in shares else c for c in foreground]
        header += ["rare mIoU"] if rare else []
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" + "---:|" * (len(header) - 1))
        for (model, loss), runs in group.groupby(["model", "loss"], sort=False):
            means = {c: runs[f"iou_{c}"].mean() for c in foreground}  # NaN runs (no scores) are skipped
            never = _never_predicted(runs)
            cells = [f"{LOSS_LABELS.get(loss, loss)}+{MODEL_LABELS.get(model, model)}"]
            cells += [_percent_cell(means[c]) + (f" ✗{never[c]}/{len(runs)}" if c in never else "") for c in foreground]
            cells = [f"**{cell}**" if "✗" in cell else cell for cell in cells]
            if rare:
                finite = [means[c] for c in rare if np.isfinite(means[c])]  # a class absent from every test fold has no IoU
                cells.append(_percent_cell(np.mean(finite) if finite else np.nan))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _percent_cell(value):
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"


def bar_plot(table, path, note=None):
    """The headline per loss (bars, with the value) for each model (groups), one panel per optimiser.

    The top row is the pooled mIoU; where the table has rare classes
    (`rare_miou`), a second row shows their mean IoU. Every axis starts at
    0 (a bar's height is its value: a chart cut at 38% makes a 5-point
    gap look three times larger). `note` is added to the title (e.g. how the
    learning rate was set). Error bars are the sample standard deviation
    (ddof = 1) over the runs (folds x seeds); the title names the data set,
    the epochs and n.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [(HEADLINE, f"{HEADLINE_NAME} (%)")]
    if "rare_miou" in table and table.rare_miou.notna().any():
        metrics.append(("rare_miou", "rare-class mIoU (%)"))
    optimizers = list(dict.fromkeys(table.optimizer))
    all_losses = list(dict.fromkeys(table.loss))  # one colour and legend entry per loss, in every panel
    figure, axes = plt.subplots(len(metrics), len(optimizers), figsize=(5.5 * len(optimizers), 4.2 * len(metrics)),
                                squeeze=False, sharey="row")
    legend = {}
    for row, (metric, label) in enumerate(metrics):
        high = 0.0
        for axis, optimizer in zip(axes[row], optimizers):
            group = table[table.optimizer == optimizer]
            models = list(dict.fromkeys(group.model))
            losses = list(dict.fromkeys(group.loss))
            width = 0.8 / max(len(losses), 1)
            for index, loss in enumerate(losses):
                values = group[group.loss == loss].assign(value=lambda t: 100 * t[metric].astype(float))
                stats = values.groupby("model").value.agg(["mean", "std"]).reindex(models)
                positions = np.arange(len(models)) + (index - (len(losses) - 1) / 2) * width
                spread = stats["std"].fillna(0)  # pandas' std is the sample one; one run has none
                colour = f"C{all_losses.index(loss)}"
                bars = axis.bar(positions, stats["mean"].fillna(0), width, color=colour, capsize=3,
                                yerr=spread if stats["std"].notna().any() else None)
                legend.setdefault(loss, bars)
                # above the bar (a bar of 0 still shows its value), on a patch of its colour
                axis.bar_label(bars, labels=[f"{v:.1f}" if np.isfinite(v) else "n/a" for v in stats["mean"]],
                               padding=3, color="white", fontweight="bold", fontsize="small", zorder=5,
                               bbox={"boxstyle": "round,pad=0.2", "facecolor": colour, "edgecolor": "none"})
                finite = stats["mean"].notna()
                if finite.any():
                    high = max(high, float((stats["mean"] + spread)[finite].max()))
            axis.set_xticks(np.arange(len(models)), [MODEL_LABELS.get(m, m) for m in models])
            if row == 0:
                axis.set_title(OPTIMIZER_LABELS.get(optimizer, optimizer))
        axes[row][0].set_ylabel(label)
        axes[row][0].set_ylim(0.0, min(100.0, max(10.0, high * 1.15 + 3)))
    figure.legend([legend[loss] for loss in all_losses], [LOSS_LABELS.get(loss, loss) for loss in all_losses],
                  loc="center left", bbox_to_anchor=(1.0, 0.5), title="loss")
    runs = table.groupby(["model", "loss", "optimizer"]).size()
    count = f"n = {runs.min()}" if runs.min() == runs.max() else f"n = {runs.min()}–{runs.max()}"
    count += " run per bar" if runs.max() == 1 else " runs per bar"
    error_bars = "error bars: sample std over the runs (folds × seeds)" if runs.max() > 1 else "single runs, no error bars"
    datasets = ", ".join(dict.fromkeys(table.dataset.astype(str)))
    epochs = ", ".join(str(e) for e in dict.fromkeys(table.epochs))
    title = f"{datasets}: {epochs} epochs, {count}; {error_bars}"
    figure.suptitle(f"{title}\n{note}" if note else title, fontsize="medium")
    figure.tight_layout()
    save_figure_atomically(figure, path, bbox_inches="tight")  # keeps the legend beside the panels
