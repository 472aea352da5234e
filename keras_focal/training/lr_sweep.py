"""Learning rates tuned per loss on validation cases: the loss-scale confound taken out of a comparison.

Under SGD with momentum, a loss whose gradients are larger trains as if with
a larger learning rate, so one fixed rate favours some losses over others
for reasons that have nothing to do with class imbalance. `compare
--lr-sweep` trains every run of the grid at each rate of the sweep and, for
each model, loss, optimiser and test fold, keeps the rate whose runs score
the best foreground Dice on their *validation* cases. Validation cases are
drawn from the training folds of that test fold (`PreparedDataset.split`),
so the test fold never takes part in the choice; the choice is made per
test fold, because another fold's validation cases may be this fold's test
cases. The test scores of the chosen runs form the tuned table, reported
beside the paper's fixed-rate one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from keras_focal import run_folder
from keras_focal.types import PathLike

if TYPE_CHECKING:
    import pandas as pd

VALIDATION_COLUMN = "val_foreground_dice"


def parse_rates(text: str | Sequence[float]) -> list[float]:
    """`"1e-4,5e-4,2e-3"` (or a list) -> sorted distinct rates; raises ValueError naming `--lr-sweep`."""
    items = text.split(",") if isinstance(text, str) else list(text)
    rates = []
    for item in items:
        try:
            rate = float(item)
        except (TypeError, ValueError):
            raise ValueError(f"--lr-sweep takes learning rates separated by commas, e.g. 1e-4,5e-4,2e-3. Received: {text!r}") from None
        if isinstance(item, bool) or not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"--lr-sweep: every learning rate must be a finite number > 0. Received: {item!r}")
        rates.append(rate)
    rates = sorted(set(rates))
    if len(rates) < 2:
        raise ValueError(f"--lr-sweep needs at least two different learning rates to choose from. Received: {text!r}")
    return rates


def validation_score(run_dir: PathLike, evaluated: str, epochs_run: int | None) -> float:
    """Foreground Dice on the validation cases of the model that was tested, from the run's `history.csv`.

    The model tested is the last one (`evaluated == "last"`) or the one with
    the lowest validation loss (`"best"`); a run with no tested model, no
    validation cases or no history has no score (NaN).
    """
    import pandas as pd

    path = run_folder.path_of(run_dir, run_folder.HISTORY)
    if evaluated not in ("last", "best") or not os.path.exists(path):
        return float("nan")
    history = pd.read_csv(path)
    if VALIDATION_COLUMN not in history or history.empty:
        return float("nan")
    if epochs_run:
        history = history[history.epoch <= epochs_run]
    if evaluated == "best" and "val_loss" in history and history.val_loss.notna().any():
        row = history.loc[history.val_loss.idxmin()]
    else:
        row = history.iloc[-1]
    value = float(row[VALIDATION_COLUMN])
    return value if math.isfinite(value) else float("nan")


def choose_learning_rates(
    table: pd.DataFrame, keys: Sequence[str] = ("dataset", "model", "loss", "optimizer", "fold"),
) -> pd.DataFrame:
    """The rate kept for each model, loss, optimiser and test fold, by validation Dice alone.

    Args:
        table: one row per run with `learning_rate`, `validation_dice` and `keys`
            (several seeds of a fold are averaged). Test scores are not read.

    Returns:
        A DataFrame with `keys`, `learning_rate` (the choice), `validation_dice`
        (its mean over seeds) and `candidates` (`"rate: dice"` of every rate).
        Runs without a validation score (NaN) count as the worst; when no rate
        has one, the smallest rate is kept and `validation_dice` is NaN. Ties
        go to the smaller rate.
    """
    import pandas as pd

    keys = [k for k in keys if k in table]
    choices = []
    for key, group in table.groupby(keys, sort=False):
        per_rate = group.groupby("learning_rate").validation_dice.mean().sort_index()
        ranked = per_rate.fillna(-np.inf)
        rate = float(ranked.idxmax())  # first maximum: the smallest rate among ties
        candidates = ", ".join(f"{r:g}: " + ("n/a" if not np.isfinite(v) else f"{100 * v:.2f}") for r, v in per_rate.items())
        choices.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))), "learning_rate": rate,
                        "validation_dice": float(per_rate[rate]), "candidates": candidates})
    return pd.DataFrame(choices)


def tuned_runs(
    table: pd.DataFrame, choices: pd.DataFrame,
    keys: Sequence[str] = ("dataset", "model", "loss", "optimizer", "fold"),
) -> pd.DataFrame:
    """The rows of `table` trained at the chosen rate of their model, loss, optimiser and fold."""
    keys = [k for k in keys if k in table]
    chosen = table.merge(choices[keys + ["learning_rate"]], on=keys + ["learning_rate"], how="inner")
    return chosen.reset_index(drop=True)


def markdown(choices: pd.DataFrame, labels: Mapping[str, str] | None = None) -> str:
    """The table of chosen rates: one row per model, loss and optimiser, one column per test fold."""
    labels = labels or {}
    folds = sorted(choices.fold.unique())
    lines = [
        "## Learning rates chosen on the validation cases",
        "",
        "For each test fold, the rate whose runs scored the best foreground Dice on that fold's validation",
        "cases (drawn from its training folds; the test fold takes no part). In brackets: that validation Dice (%).",
        "",
        "| Loss + model | Optimiser | " + " | ".join(f"Test run #{f + 1}" for f in folds) + " |",
        "|---|---|" + "---:|" * len(folds),
    ]
    for (model, loss, optimizer), group in choices.groupby(["model", "loss", "optimizer"], sort=False):
        by_fold = group.set_index("fold")
        cells = []
        for fold in folds:
            if fold not in by_fold.index:
                cells.append("–")
                continue
            row = by_fold.loc[fold]
            score = "no validation score" if not np.isfinite(row.validation_dice) else f"{100 * row.validation_dice:.2f}"
            cells.append(f"{row.learning_rate:g} ({score})")
        lines.append(f"| {labels.get(loss, loss)}+{labels.get(model, model)} | {labels.get(optimizer, optimizer)} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)
