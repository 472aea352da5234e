"""Paired differences of losses over the same folds and seeds, on hand-made tables with known answers."""

import numpy as np
import pandas as pd
import pytest

from keras_focal.reporting import statistics
from keras_focal.reporting.tables import markdown_tables


def _table(scores, optimizer="adam"):
    """`scores`: {loss: [score per fold]} -> a results table (seed 0); the pooled headline and the per-image means alike."""
    return pd.DataFrame([
        {"dataset": "hand", "model": "unet", "optimizer": optimizer, "loss": loss, "fold": fold, "seed": 0,
         "epochs": 5, "dataset_miou": value, "mdsc": value, "miou": value, "nan_epoch": np.nan}
        for loss, values in scores.items() for fold, value in enumerate(values)
    ])


def test_known_answer_for_five_pairs():
    # ADFL - CE = 1, 2, 3, 4, 5 points: mean 3, sample sd 1.581, t(0.975, 4) = 2.776 -> CI 3 +- 1.963;
    # paired t = 4.243 (p = 0.01324); every difference positive -> exact Wilcoxon p = 2 / 2^5 = 0.0625.
    table = _table({"ce": [0.80] * 5, "adfl": [0.81, 0.82, 0.83, 0.84, 0.85]})
    row = statistics.paired_differences(table, "adfl").iloc[0]
    assert (row.loss, row.pairs, row.left_out, row.reference_wins) == ("ce", 5, 0, 5)
    assert row.mean_difference == pytest.approx(3.0)
    assert (row.ci_low, row.ci_high) == (pytest.approx(3 - 1.963243, abs=1e-5), pytest.approx(3 + 1.963243, abs=1e-5))
    assert row.t_p == pytest.approx(0.0132356, rel=1e-4)
    assert row.wilcoxon_p == pytest.approx(0.0625)
    assert row.conclusion == "adfl better (paired t p = 0.0132); with 5 pairs the signed-rank test cannot reach p < 0.05"


def test_pairs_follow_fold_and_seed_not_order_and_nan_runs_are_left_out():
    table = _table({"adfl": [0.9, 0.8, 0.7, 0.6], "ce": [0.85, 0.75, np.nan, 0.5]})
    table = table.sample(frac=1.0, random_state=0)  # rows in any order
    row = statistics.paired_differences(table, "adfl").iloc[0]
    assert (row.pairs, row.left_out) == (3, 1)
    assert row.mean_difference == pytest.approx((5 + 5 + 10) / 3)


@pytest.mark.parametrize("folds", [1, 2])
def test_too_few_pairs_say_so(folds):
    table = _table({"ce": [0.80, 0.70][:folds], "adfl": [0.90, 0.95][:folds]})
    row = statistics.paired_differences(table, "adfl").iloc[0]
    assert np.isnan(row.ci_low) and np.isnan(row.t_p) and np.isnan(row.wilcoxon_p)
    assert row.conclusion.startswith(f"{folds} pair") and "too few to conclude anything" in row.conclusion


def test_no_difference_when_the_interval_covers_zero():
    table = _table({"ce": [0.80, 0.80, 0.80, 0.80], "adfl": [0.82, 0.78, 0.81, 0.79]})
    row = statistics.paired_differences(table, "adfl").iloc[0]
    assert row.ci_low < 0 < row.ci_high
    assert row.conclusion.startswith("no difference shown at the 5% level")


def test_results_md_has_the_paired_section_per_condition():
    table = pd.concat([_table({"ce": [0.8, 0.7, 0.6], "dice_ce": [0.7, 0.7, 0.7], "adfl": [0.9, 0.8, 0.7]}),
                       _table({"ce": [0.5, 0.5, 0.5], "adfl": [0.6, 0.6, 0.6]}, optimizer="sgdm")])
    markdown = markdown_tables(table, reference="adfl")
    assert "## Paired differences against ADFL: pooled mIoU" in markdown
    assert "ADFL minus each loss in pooled mIoU (points)" in markdown
    assert "### hand, U-net, ADAM" in markdown and "### hand, U-net, SGDM" in markdown
    assert "| CE | 3 | +10.00 | [+10.00, +10.00] | – |" in markdown  # constant difference: no spread, no t-test
    assert "ADFL better by the same amount in every pair (no spread to test)" in markdown
    assert "| Dice+CE | 3 | +10.00 |" in markdown
    assert "paired differences" not in markdown_tables(table).lower()  # no reference, no section
