"""Paired comparison of losses over the same folds and seeds: differences, 95% intervals, paired tests.

Two losses trained on the same fold with the same seed see the same data and
start from the same weights (`compare` makes sure of it), so their scores are
paired: the question "is loss A better than loss B here?" is answered by the
differences A - B over the pairs, not by overlapping error bars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

# Below this many pairs no interval or test is reported: nothing can be concluded.
MIN_PAIRS = 3


def paired_differences(table: pd.DataFrame, reference: str, metric: str = "mdsc", keys: Sequence[str] = ("dataset", "model", "optimizer"), label: str | None = None,
                       pair_keys: Sequence[str] = ("fold", "seed")) -> pd.DataFrame:
    """One row per (data set, model, optimiser, loss other than `reference`): the paired statistics.

    Pairs are the runs of `reference` and of the other loss with the same
    fold and seed; pairs where either score is not finite (a NaN run
    without a checkpoint) are left out and counted.

    Args:
        table: `results.csv` as a DataFrame (columns `loss`, `fold`, `seed`,
            `metric` and `keys`).
        reference: the loss every other is compared with (e.g. "adfl").
        metric: the score column, in [0, 1]; differences are in points (%).
        keys: the columns that define a condition.
        label: how conclusions name the reference (default: its name).
        pair_keys: the columns that pair two scores (a run's fold and seed;
            a patient's case and seed for per-patient scores).

    Returns:
        A DataFrame with columns `keys`, `loss`, `pairs`, `left_out`,
        `mean_difference` (reference minus loss, points), `ci_low`,
        `ci_high` (95% t interval), `t_p` (paired t-test), `wilcoxon_p`
        (Wilcoxon signed-rank, exact for small n), `reference_wins` and
        `conclusion` (plain words).
    """
    import pandas as pd
    from scipy import stats

    keys = [k for k in keys if k in table]
    rows = []
    for condition, group in table.groupby(keys, sort=False):
        condition = condition if isinstance(condition, tuple) else (condition,)
        base = group[group.loss == reference].set_index(list(pair_keys))[metric]
        if base.empty:
            continue
        for loss in dict.fromkeys(group.loss):
            if loss == reference:
                continue
            other = group[group.loss == loss].set_index(list(pair_keys))[metric]
            joined = pd.concat([base.rename("reference"), other.rename("other")], axis=1, join="inner")
            finite = np.isfinite(joined.reference) & np.isfinite(joined.other)
            difference = 100 * (joined.reference[finite] - joined.other[finite]).to_numpy(dtype=float)
            row = dict(zip(keys, condition)) | {
                "loss": loss, "pairs": int(difference.size), "left_out": int((~finite).sum()),
                "mean_difference": float(difference.mean()) if difference.size else np.nan,
                "ci_low": np.nan, "ci_high": np.nan, "t_p": np.nan, "wilcoxon_p": np.nan,
                "reference_wins": int((difference > 0).sum()),
            }
            if difference.size >= MIN_PAIRS:
                spread = difference.std(ddof=1)
                half_width = stats.t.ppf(0.975, difference.size - 1) * spread / np.sqrt(difference.size)
                row["ci_low"], row["ci_high"] = row["mean_difference"] - half_width, row["mean_difference"] + half_width
                # Score differences are rounded: a spread at rounding level is no spread.
                if spread > 1e-9 * max(1.0, abs(row["mean_difference"])):
                    row["t_p"] = float(stats.ttest_rel(joined.reference[finite], joined.other[finite]).pvalue)
                if np.any(difference != 0):
                    row["wilcoxon_p"] = float(stats.wilcoxon(difference).pvalue)
            row["conclusion"] = _conclusion(row, label or reference)
            rows.append(row)
    return pd.DataFrame(rows)


def smallest_wilcoxon_p(pairs: int) -> float:
    """The smallest two-sided p-value the exact signed-rank test can give with `pairs` pairs."""
    return 2.0 / 2**pairs


def _conclusion(row, reference):
    n = row["pairs"]
    if n < MIN_PAIRS:
        return f"{n} pair{'s' if n != 1 else ''}: too few to conclude anything (run more folds or seeds)"
    better = "better" if row["mean_difference"] > 0 else "worse"
    if not np.isfinite(row["t_p"]) and row["mean_difference"] != 0:
        text = f"{reference} {better} by the same amount in every pair (no spread to test)"
    elif np.isfinite(row["t_p"]) and row["t_p"] < 0.05 and (row["ci_low"] > 0 or row["ci_high"] < 0):
        text = f"{reference} {better} (paired t p = {row['t_p']:.3g})"
    else:
        text = "no difference shown at the 5% level"
    if smallest_wilcoxon_p(n) >= 0.05:
        text += f"; with {n} pairs the signed-rank test cannot reach p < 0.05"
    return text


RUN_PAIRS = "the runs of the same fold and seed (same data, same initial weights)"


def markdown(
    differences: pd.DataFrame, reference_label: str, labels: Mapping[str, str] | None = None,
    metric_name: str = "foreground mDSC", pairs: str = RUN_PAIRS, heading: str = "##",
) -> str:
    """The paired-difference tables as Markdown, one per condition; `pairs` says what a pair is."""
    labels = labels or {}
    if differences.empty:
        return ""
    keys = [k for k in ("dataset", "model", "optimizer") if k in differences]
    lines = [
        f"{heading} Paired differences against {reference_label}: {metric_name}",
        "",
        f"{reference_label} minus each loss in {metric_name} (points), over {pairs}.",
        "95% CI: t interval of the mean difference; p: paired t-test and",
        "Wilcoxon signed-rank test (exact). Fewer than 3 pairs: no interval or test.",
        "",
    ]
    for condition, group in differences.groupby(keys, sort=False):
        condition = condition if isinstance(condition, tuple) else (condition,)
        lines.append(f"{heading}# " + ", ".join(str(labels.get(value, value)) for value in condition))
        lines.append("")
        lines.append(f"| {reference_label} vs | pairs | mean difference | 95% CI | paired t p | Wilcoxon p | "
                     f"{reference_label} better in | conclusion |")
        lines.append("|---|---:|---:|---|---:|---:|---:|---|")
        for row in group.itertuples():
            interval = "–" if not np.isfinite(row.ci_low) else f"[{row.ci_low:+.2f}, {row.ci_high:+.2f}]"
            left_out = f" ({row.left_out} left out: NaN)" if row.left_out else ""
            lines.append(
                f"| {labels.get(row.loss, row.loss)} | {row.pairs}{left_out} | {_number(row.mean_difference, '+.2f')} | "
                f"{interval} | {_number(row.t_p, '.3g')} | {_number(row.wilcoxon_p, '.3g')} | "
                f"{row.reference_wins} of {row.pairs} | {row.conclusion} |"
            )
        lines.append("")
    return "\n".join(lines)


def _number(value, spec):
    return "–" if value is None or not np.isfinite(value) else format(value, spec)
