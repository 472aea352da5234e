"""The files of an evaluation report: metrics tables, the confusion matrix and the best, median and worst overlays."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from keras_focal.evaluation import summarise_volume_metrics
from keras_focal.files import save_png_atomically, write_text_atomically
from keras_focal.reporting.figures import confusion_matrix_figure
from keras_focal.reporting.overlays import label_panels, overlay, with_class_key, with_key
from keras_focal.reporting.tables import truth_sources, volume_summary_markdown
from keras_focal.types import ArrayLike, PathLike

if TYPE_CHECKING:
    import pandas as pd

    from keras_focal.evaluation import SegmentationMetrics


def write_evaluation(
    result: SegmentationMetrics, rows: pd.DataFrame | None, images: ArrayLike, masks: ArrayLike,
    predictions: Sequence[ArrayLike], out: PathLike,
) -> dict:
    """evaluation.json, class_metrics.csv, image_metrics.csv, confusion_matrix.png and best/median/worst overlays."""

    os.makedirs(out, exist_ok=True)
    write_text_atomically(os.path.join(out, "evaluation.json"), result.to_json() + "\n")
    write_text_atomically(os.path.join(out, "class_metrics.csv"), result.to_frame("class").to_csv())
    frame = result.to_frame("image")
    if rows is not None:
        frame.insert(0, "case", list(rows.case))
        frame.insert(1, "slice", list(rows["slice"]))
        frame.insert(2, "image", list(rows.image))
    write_text_atomically(os.path.join(out, "image_metrics.csv"), frame.to_csv())
    confusion_matrix_figure(result, os.path.join(out, "confusion_matrix.png"))
    ranked = frame.ForegroundDice.dropna().sort_values()
    written = {}
    # Without a background class every class is foreground: contours would outline every pixel, so the label maps are shown.
    every_class = len(result.foreground) == len(result.class_names)
    if len(ranked):
        picks = {"worst": ranked.index[0], "median": ranked.index[len(ranked) // 2], "best": ranked.index[-1]}
        for label, index in picks.items():
            dice = float(frame.ForegroundDice[index])
            if every_class:
                picture = with_class_key(label_panels(images[index], masks[index], predictions[index], result.class_names),
                                         result.class_names,
                                         f"{label} test image: image | truth | prediction; mean Dice over its classes {dice:.3f}")
            else:
                picture = with_key(overlay(images[index], masks[index], predictions[index], result.foreground),
                                   f"{label} test image: foreground Dice {dice:.3f}")
            path = os.path.join(out, f"overlay_{label}.png")
            save_png_atomically(picture, path)
            written[label] = {"image": int(index), "ForegroundDice": float(frame.ForegroundDice[index]), "file": os.path.basename(path)}
    write_text_atomically(os.path.join(out, "overlays.json"), json.dumps(written, indent=2) + "\n")
    return written


def write_volume_metrics(rows: Sequence[dict], out: PathLike, title: str) -> str:
    """`volume_metrics.csv` (one row per case and class) and `volume_summary.md` (mean ± sample std per class) in `out`."""
    import pandas as pd

    table = pd.DataFrame(rows)
    write_text_atomically(os.path.join(out, "volume_metrics.csv"), table.to_csv(index=False))
    markdown = f"{title}\n\n{truth_sources(table)}\n\n" + volume_summary_markdown(summarise_volume_metrics(table))
    write_text_atomically(os.path.join(out, "volume_summary.md"), markdown)
    return markdown
