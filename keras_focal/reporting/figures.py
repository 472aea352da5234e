"""Charts: the confusion matrix of an evaluation and the bar chart of a comparison.

Every axis of a value starts at zero, so that a bar's length is its value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from keras_focal.files import save_figure_atomically
from keras_focal.loss_names import LOSS_LABELS
from keras_focal.model_names import MODEL_LABELS
from keras_focal.optimizer_names import OPTIMIZER_LABELS
from keras_focal.reporting.tables import HEADLINE, HEADLINE_NAME
from keras_focal.types import ArrayLike, ClassNames, PathLike

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.image import AxesImage

    from keras_focal.evaluation import SegmentationMetrics


def draw_confusion_matrix(
    axis: Axes, matrix: ArrayLike, class_names: ClassNames, title: str = "Confusion matrix (rows sum to 1)",
) -> AxesImage:
    """Draws a row-normalised confusion matrix on `axis`: cells with their values, axis names, title.

    Returns the image, for a colour bar (`figure.colorbar(image, ...)`).
    """
    matrix = np.asarray(matrix, dtype=float)
    image = axis.imshow(np.nan_to_num(matrix), vmin=0, vmax=1, cmap="Blues")
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    fontsize = 8 if len(class_names) > 6 else 10
    for (row, column), value in np.ndenumerate(matrix):
        text = f"{value:.2f}" if np.isfinite(value) else "–"  # a class absent from the truth has no row
        axis.text(column, row, text, ha="center", va="center", fontsize=fontsize,
                  color="white" if np.isfinite(value) and value > 0.5 else "black")
    axis.set_title(title, fontsize="medium")
    return image


def confusion_matrix_figure(result: SegmentationMetrics, path: PathLike) -> None:
    """Row-normalised confusion matrix as a PNG (rows: true class), with values, axis names and colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(3.8, 0.6 * len(result.class_names) + 2.4)
    figure, axis = plt.subplots(figsize=(size + 0.8, size))
    image = draw_confusion_matrix(axis, result.normalized_confusion_matrix, result.class_names)
    figure.colorbar(image, ax=axis, fraction=0.046, label="fraction of the true class's pixels")
    figure.tight_layout()
    save_figure_atomically(figure, path)


def bar_plot(table: pd.DataFrame, path: PathLike, note: str | None = None) -> None:
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
    figure.legend([legend[loss] for loss in all_losses], [LOSS_LABELS.get(loss, loss) for loss in all_losses],  # type: ignore[call-overload]
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
