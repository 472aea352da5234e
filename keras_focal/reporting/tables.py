"""Tables of results in Markdown: a comparison's report, per-patient 3-D summaries, one run's line.

A report must not hide a failure: the pooled data-set metrics (MATLAB's
`DataSetMetrics`) come first, then the per-class IoU with the classes a run
never predicts, then the per-image means; every cell is mean ± sample std
(n) over the runs, and paired differences against a reference loss say
whether a difference is more than the spread
(`keras_focal.reporting.statistics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from keras_focal.evaluation import VOLUME_METRICS, foreground_classes
from keras_focal.loss_names import LOSS_LABELS
from keras_focal.model_names import MODEL_LABELS
from keras_focal.optimizer_names import OPTIMIZER_LABELS
from keras_focal.reporting import statistics

if TYPE_CHECKING:
    import pandas as pd


def _percent(value):
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.2f}%"


def run_summary(metrics: Mapping) -> str:
    """One line of a run's test scores, the pooled figures first: `pooled mIoU 36.80%, global accuracy ..., never predicted: Pole`."""
    never = metrics.get("never_predicted") or []
    return (f"{HEADLINE_NAME} {_percent(metrics.get(HEADLINE))}, global accuracy {_percent(metrics.get('global_accuracy'))}, "
            f"per-image mDSC {_percent(metrics.get('mdsc'))}"
            + (f"; never predicted: {', '.join(never)}" if never else ""))


def _mean_and_spread(values) -> str:
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


def rare_classes(classes: Sequence[str], shares: Mapping[str, float] | None) -> list[str]:
    """The foreground classes under `RARE_SHARE` of the labelled pixels (`shares` from `class_shares`)."""
    foreground = [classes[i] for i in foreground_classes(classes)]
    shares = shares or {}
    return [c for c in foreground if c in shares and shares[c] < RARE_SHARE] if len(foreground) > 1 else []


def add_rare_miou(table: pd.DataFrame, shares: Mapping[str, float] | None) -> pd.DataFrame:
    """`table` with `rare_miou`: each run's mean IoU over the rare classes (NaN where none is rare or scored)."""
    classes = [c[len("iou_"):] for c in table.columns if c.startswith("iou_")]
    rare = rare_classes(classes, shares)
    if rare:
        values = table[[f"iou_{c}" for c in rare]].astype(float)
        table = table.assign(rare_miou=values.mean(axis=1, skipna=True))
    return table


def markdown_tables(
    table: pd.DataFrame, reference: str | None = None, shares: Mapping[str, float] | None = None,
    title: str = "Results", note: str | None = None,
) -> str:
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
       metric against it (`keras_focal.reporting.statistics`).

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


def volume_tables(volumes: pd.DataFrame, reference: str | None = None) -> str:
    """The per-patient 3-D table of a comparison: mean ± sample std over patients per loss and class, and paired Dice differences.

    `volumes`: `volume_results.csv` rows (one per run, case and foreground
    class). Each patient is in one test fold, so a loss's n is the number
    of patients times seeds. With a `reference` loss, the paired differences
    of each patient's Dice (mean over the foreground classes) against it
    follow, pairs being the same patient and seed.
    """
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


def truth_sources(table: pd.DataFrame) -> str:
    """One line saying which truth scored the cases of a `volume_metrics` table (its `truth` column)."""
    if "truth" not in table:
        return "Truth: the prepared masks rebuilt on the original grid."
    per_case = table.drop_duplicates("case").set_index("case").truth
    original = [case for case, source in per_case.items() if source == "original"]
    rebuilt = {case: source.split(": ", 1)[-1] for case, source in per_case.items() if source != "original"}
    parts = []
    if original:
        parts.append(f"the original label volumes ({len(original)} case(s))")
    if rebuilt:
        reasons = "; ".join(f"{case}: {why}" for case, why in list(rebuilt.items())[:3]) + ("; ..." if len(rebuilt) > 3 else "")
        parts.append(f"the prepared masks rebuilt on the original grid ({len(rebuilt)} case(s), not the original truth — "
                     f"{reasons})")
    return "Truth: " + " and ".join(parts) + "."


def volume_summary_markdown(summary: pd.DataFrame) -> str:
    """`summarise_volume_metrics` as a Markdown table: mean ± sample std (n) per class and metric."""
    labels = {"dice": "Dice (%)", "iou": "IoU (%)", "hd95_mm": "HD95 (mm)", "hd_mm": "HD (mm)", "assd_mm": "ASSD (mm)",
              "rvd_percent": "RVD (%)"}
    lines = ["| class | cases | " + " | ".join(labels[m] for m in VOLUME_METRICS) + " |",
             "|---|---:|" + "---:|" * len(VOLUME_METRICS)]
    for row in summary.to_dict("records"):
        cells = [str(row["class"]), str(row["cases"])]
        for metric in VOLUME_METRICS:
            scale = 100.0 if metric in ("dice", "iou") else 1.0
            cells.append(mean_std_cell(row[f"{metric}_mean"], row[f"{metric}_std"], row[f"{metric}_n"],
                                       row[f"{metric}_undefined"], scale))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def mean_std_cell(mean: float, std: float, n: int, undefined: int = 0, scale: float = 1.0) -> str:
    """`"mean ± std (n)"`, with `, k undefined` when some cases had no value."""
    if not n:
        text = "n/a"
    elif n == 1:
        text = f"{scale * mean:.2f} (n = 1)"
    else:
        text = f"{scale * mean:.2f} ± {scale * std:.2f} (n = {n})"
    return text + (f"; {undefined} undefined" if undefined else "")
