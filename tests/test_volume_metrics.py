"""Per-patient 3-D metrics in mm: known answers, peers (SimpleITK, MONAI, medpy), empty masks, post-processing."""

import numpy as np
import pytest

from keras_focal.evaluation import summarise_volume_metrics, volume_metrics
from keras_focal.inference import keep_largest_components

SPACING = (0.5, 0.5, 1.0)  # (x, y, z) mm
CLASSES = ["background", "ball"]


def _ball(radius_mm, shape=(60, 120, 120), spacing=SPACING, shift_voxels=(0, 0, 0)):
    """A ball of `radius_mm` centred in a `(z, y, x)` grid of `spacing` (x, y, z), shifted by whole voxels."""
    axes = [(np.arange(n) - (n - 1) / 2 - shift) * step
            for n, step, shift in zip(shape, spacing[::-1], shift_voxels)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return (np.sqrt(x**2 + y**2 + z**2) <= radius_mm).astype(np.uint8)


@pytest.fixture(scope="module")
def concentric():
    prediction, truth = _ball(22.0), _ball(20.0)
    return prediction, truth, volume_metrics(prediction, truth, spacing_zyx=SPACING[::-1], classes=CLASSES)[0]


def test_concentric_balls_match_their_continuous_values_within_the_discretisation(concentric):
    _, _, row = concentric
    # Continuous answers: Dice 2·20³/(20³+22³) = 0.8583, RVD (22³−20³)/20³ = +33.1%, every surface distance 2 mm.
    # Voxelised on 0.5 × 0.5 × 1 mm, volumes are within 0.2% of the balls' (Dice and RVD to 1e-3 and 0.3 points),
    # and a surface voxel lies within half a voxel diagonal (0.61 mm) of the sphere: distances within 0.61 mm of 2.
    assert row["dice"] == pytest.approx(2 * 20**3 / (20**3 + 22**3), abs=1e-3)
    assert row["rvd_percent"] == pytest.approx(100 * (22**3 - 20**3) / 20**3, abs=0.3)
    assert row["iou"] == pytest.approx(row["dice"] / (2 - row["dice"]), rel=1e-12)
    for metric in ("hd95_mm", "assd_mm", "hd_mm"):
        assert abs(row[metric] - 2.0) <= 0.61, metric
    assert row["hd_mm"] >= row["hd95_mm"] >= row["assd_mm"]
    # This grid's own values (MONAI gives the same, see below; medpy's pooled hd95 is 2.12 here).
    assert row["hd95_mm"] == pytest.approx(np.sqrt(5.0), abs=1e-9)
    assert row["assd_mm"] == pytest.approx(1.8612, abs=1e-4)
    assert row["truth_voxels"] == 134280 and row["predicted_voxels"] == 178632
    assert row["truth_ml"] == pytest.approx(134280 * 0.25 / 1000)


@pytest.mark.parametrize("axis, expected_mm", [(0, 1.0), (1, 0.5), (2, 0.5)])
def test_a_one_voxel_shift_gives_the_spacing_of_its_axis(axis, expected_mm):
    truth = _ball(20.0)
    shift = [0, 0, 0]
    shift[axis] = 1
    row = volume_metrics(_ball(20.0, shift_voxels=shift), truth, spacing_zyx=SPACING[::-1], classes=CLASSES)[0]
    assert row["hd_mm"] == pytest.approx(expected_mm, abs=1e-12)
    assert row["rvd_percent"] == 0.0


def test_dice_and_hausdorff_agree_with_simpleitk(concentric):
    import SimpleITK as sitk

    prediction, truth, row = concentric
    images = []
    for array in (prediction, truth):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(SPACING)
        images.append(image)
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(images[1], images[0])
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(images[0], images[1])
    assert row["dice"] == pytest.approx(overlap.GetDiceCoefficient(), abs=1e-12)
    assert row["iou"] == pytest.approx(overlap.GetJaccardCoefficient(), abs=1e-12)
    assert row["hd_mm"] == pytest.approx(hausdorff.GetHausdorffDistance(), abs=1e-9)


def test_surface_distances_agree_with_monai_and_medpy(concentric):
    prediction, truth, row = concentric
    medpy = pytest.importorskip("medpy.metric.binary")
    sampling = SPACING[::-1]
    assert row["hd_mm"] == pytest.approx(medpy.hd(prediction, truth, voxelspacing=sampling), abs=1e-9)
    assert row["rvd_percent"] == pytest.approx(100 * medpy.ravd(prediction, truth), abs=1e-9)
    # medpy's assd averages the two directions' means; ours (MONAI's) pools them: within 1% for two balls.
    assert row["assd_mm"] == pytest.approx(medpy.assd(prediction, truth, voxelspacing=sampling), rel=0.01)
    torch = pytest.importorskip("torch")
    monai = pytest.importorskip("monai.metrics")
    p, t = (torch.tensor(a[None, None]) for a in (prediction, truth))
    assert row["hd95_mm"] == pytest.approx(float(monai.compute_hausdorff_distance(p, t, percentile=95, spacing=sampling)), abs=1e-5)
    assert row["assd_mm"] == pytest.approx(
        float(monai.compute_average_surface_distance(p, t, symmetric=True, spacing=sampling)), abs=1e-5)


def test_empty_masks_give_nan_not_zero_or_inf():
    truth = _ball(5.0, shape=(20, 40, 40))
    empty = np.zeros_like(truth)
    missed = volume_metrics(empty, truth, spacing_zyx=SPACING[::-1], classes=CLASSES)[0]
    assert missed["dice"] == 0.0 and missed["iou"] == 0.0 and missed["rvd_percent"] == -100.0
    assert np.isnan([missed["hd95_mm"], missed["hd_mm"], missed["assd_mm"]]).all()
    spurious = volume_metrics(truth, empty, spacing_zyx=SPACING[::-1], classes=CLASSES)[0]
    assert spurious["dice"] == 0.0 and np.isnan(spurious["rvd_percent"]) and np.isnan(spurious["hd95_mm"])
    absent = volume_metrics(empty, empty, spacing_zyx=SPACING[::-1], classes=CLASSES)[0]
    assert all(np.isnan(absent[m]) for m in ("dice", "iou", "hd95_mm", "hd_mm", "assd_mm", "rvd_percent"))


def test_the_summary_counts_undefined_cases_instead_of_averaging_them():
    import pandas as pd

    truth = _ball(5.0, shape=(20, 40, 40))
    rows = [{"case": "a", **volume_metrics(truth, truth, spacing_zyx=SPACING[::-1], classes=CLASSES)[0]},
            {"case": "b", **volume_metrics(np.zeros_like(truth), truth, spacing_zyx=SPACING[::-1], classes=CLASSES)[0]}]
    summary = summarise_volume_metrics(pd.DataFrame(rows)).iloc[0]
    assert summary["dice_mean"] == 0.5 and summary["dice_n"] == 2
    assert summary["hd95_mm_mean"] == 0.0 and summary["hd95_mm_n"] == 1 and summary["hd95_mm_undefined"] == 1


def test_every_class_but_the_background_is_scored_per_label():
    truth = np.zeros((10, 30, 30), np.uint8)
    truth[2:8, 5:15, 5:15] = 1
    truth[2:8, 18:28, 18:28] = 2
    prediction = truth.copy()
    prediction[2:8, 18:28, 18:28] = 0
    rows = volume_metrics(prediction, truth, spacing_zyx=(2.0, 1.0, 1.0), classes=["background", "zone a", "zone b"])
    assert [r["class"] for r in rows] == ["zone a", "zone b"]
    assert rows[0]["dice"] == 1.0 and rows[0]["hd_mm"] == 0.0
    assert rows[1]["dice"] == 0.0 and rows[1]["rvd_percent"] == -100.0


@pytest.mark.parametrize("bad, message", [
    ({"truth": np.zeros((4, 5, 6))}, "one \\(z, y, x\\) shape"),
    ({"spacing_zyx": (1.0, 0.0, 1.0)}, "`spacing_zyx` must be three positive voxel sizes"),
    ({"spacing_zyx": (1.0, 1.0)}, "`spacing_zyx` must be three positive voxel sizes"),
])
def test_bad_arguments_are_named(bad, message):
    arguments = {"prediction": np.zeros((4, 5, 5)), "truth": np.zeros((4, 5, 5)), "spacing_zyx": (1, 1, 1), "classes": CLASSES}
    with pytest.raises(ValueError, match=message):
        volume_metrics(**(arguments | bad))


def test_a_spacing_of_no_stated_order_is_refused(concentric):
    """The spacing used to be SimpleITK's (x, y, z) for (z, y, x) arrays: one in MONAI's order was taken reversed."""
    prediction, truth, row = concentric
    with pytest.raises(TypeError, match=r"takes `spacing_zyx`, the voxel size in the arrays' \(z, y, x\) order; `spacing` "
                                        r"is refused because its order is ambiguous"):
        volume_metrics(prediction, truth, spacing=SPACING[::-1], classes=CLASSES)
    with pytest.raises(TypeError, match="positional"):
        volume_metrics(prediction, truth, SPACING[::-1], CLASSES)
    assert row["hd95_mm"] == pytest.approx(np.sqrt(5.0), abs=1e-9)  # in array order, as MONAI's and medpy's `spacing`
    reversed_row = volume_metrics(prediction, truth, spacing_zyx=SPACING, classes=CLASSES)[0]
    assert reversed_row["hd95_mm"] == pytest.approx(3.0, abs=1e-9)  # what the other order gives: wrong, and silent


def test_boxes_on_an_anisotropic_512_square_by_54_grid():
    # bench/predict.py times this pair (well under a second); here, the known answers.
    truth = np.zeros((54, 512, 512), np.uint8)
    truth[10:40, 150:350, 150:350] = 1
    prediction = np.zeros_like(truth)
    prediction[12:42, 160:360, 140:345] = 1  # shifted 2 slices (6 mm), 10 rows (5 mm), -10/-5 columns
    row = volume_metrics(prediction, truth, spacing_zyx=(3.0, 0.5, 0.5), classes=CLASSES)[0]
    assert row["dice"] == pytest.approx(2 * 28 * 190 * 195 / (30 * 200 * 200 + 30 * 200 * 205), abs=1e-12)
    assert row["rvd_percent"] == pytest.approx(2.5, abs=1e-12)
    # The farthest surface voxels: a corner moved 6 mm in z, 5 mm in y and 5 mm in x.
    assert row["hd_mm"] == pytest.approx(np.sqrt(6.0**2 + 5.0**2 + 5.0**2), abs=1e-9)


def test_largest_component_keeps_the_large_blob_per_class():
    labels = np.zeros((12, 30, 30), np.uint8)
    labels[1:11, 1:11, 1:11] = 1  # 1000 voxels
    labels[2, 20:22, 20:25] = 1  # 10 voxels
    labels[5:7, 20:28, 2:8] = 2  # another class: untouched by class 1's choice
    kept = keep_largest_components(labels, [1, 2])
    assert (kept == 1).sum() == 1000 and (kept[2, 20:22, 20:25] == 0).all()
    assert (kept == 2).sum() == 2 * 8 * 6


def test_blobs_touching_across_adjacent_slices_are_one_component():
    labels = np.zeros((6, 20, 20), np.uint8)
    labels[2, 2:6, 2:6] = 1
    labels[3, 5:9, 5:9] = 1  # overlaps the slice below at (5, 5): face neighbours along z
    labels[3, 15:17, 15:17] = 1  # a separate, smaller blob
    kept = keep_largest_components(labels, [1])
    assert (kept == 1).sum() == 32 and kept[3, 15, 15] == 0
