"""2-D image sets as users download them: SegNet's CamVid copy (index masks, *annot folders, train/val/test.txt),
CamVid's colour labels, a data set's own split, and the refusals of a preparation that would hold nothing."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from keras_focal.cli import main
from keras_focal.data_prep.camvid import SEGNET_CLASSES, detect_label_form, find_image_pairs, is_label_folder
from keras_focal.data_prep.prepared import PreparedDataset
from keras_focal.data_prep.splits import read_split_file
from tests.prep_fixtures import png

# A SegNet-layout copy: (subset folder, stem) per frame; sequences as in CamVid (0001TP is cut between train and test).
FRAMES = {
    "train": ["0001TP_006690", "0001TP_006720", "0006R0_f00930", "0006R0_f00960", "0016E5_00390", "0016E5_00420"],
    "val": ["0016E5_07959", "0016E5_07961"],
    "test": ["0001TP_008550", "0001TP_008580", "Seq05VD_f00000", "Seq05VD_f00030"],
}
HEIGHT, WIDTH = 30, 40  # CamVid's 360 x 480 at a twelfth: the same 3:4 aspect


def _index_mask(rng):
    """A 30 x 40 SegNet annotation: blocks of class indices 0..10 and the void value 11."""
    blocks = rng.integers(0, 12, (3, 4))
    blocks[0, 0], blocks[2, 3] = 9, 10  # Pedestrian and Bicyclist in every frame
    return np.repeat(np.repeat(blocks, 10, axis=0), 10, axis=1).astype(np.uint8)


@pytest.fixture
def segnet(tmp_path):
    """SegNet's CamVid layout, with the txt lists holding SegNet's absolute `/SegNet/CamVid/...` paths."""
    src = tmp_path / "CamVid"
    rng = np.random.default_rng(7)
    masks = {}
    for subset, stems in FRAMES.items():
        (src / subset).mkdir(parents=True)
        (src / f"{subset}annot").mkdir()
        lines = []
        for stem in stems:
            Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(src / subset / f"{stem}.png")
            masks[stem] = _index_mask(rng)
            Image.fromarray(masks[stem], mode="L").save(src / f"{subset}annot" / f"{stem}.png")
            lines.append(f"/SegNet/CamVid/{subset}/{stem}.png /SegNet/CamVid/{subset}annot/{stem}.png")
        (src / f"{subset}.txt").write_text("\n".join(lines) + "\n")
    return src, masks


def _prep(*args):
    return main(["prep", "camvid", *map(str, args), "--quiet"])


def test_segnet_copy_prepares_as_downloaded(segnet, tmp_path, capsys):
    src, masks = segnet
    out = tmp_path / "out"
    assert _prep(src, out, "--size", 16) == 0
    printed = capsys.readouterr().out
    assert ("found 12 image/label pairs (label folders testannot, trainannot, valannot); index masks: 11 classes as "
            "values 0..10, void 11 -> ignored (decided from the label files)") in printed
    assert ("split from SegNet's lists train.txt, val.txt, test.txt: train 6 case(s), 6 slices; validation 2 case(s), "
            "2 slices; test 4 case(s), 4 slices") in printed
    assert ("images of 30x40 (height x width) resized to 16x16 (stretched: the aspect ratio changes; --keep-aspect "
            "pads instead)") in printed
    assert f"dataset: {out}" in printed
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 12  # the annotations were not taken for images
    assert not manifest.source_image.str.contains("annot").any()
    classes = json.loads((out / "classes.json").read_text())
    assert classes["names"] == list(SEGNET_CLASSES)
    for _, row in manifest.iterrows():
        stem = os.path.splitext(os.path.basename(row.source_mask))[0]
        # void 11 -> ignore 255, at the label image's own size
        np.testing.assert_array_equal(png(out / row.original_mask), np.where(masks[stem] == 11, 255, masks[stem]))
        assert png(out / row["mask"]).shape == (16, 16)
    assert classes["pixel_count"] == _resized_counts(out, manifest).tolist()
    split = pd.read_csv(out / "split.csv")
    assert dict(zip(split.case, split.subset)) == {s: {"val": "validation"}.get(k, k) for k, v in FRAMES.items() for s in v}
    assert dict(zip(split.case, split.group))["0001TP_008550"] == "0001TP"
    assert not (out / "folds.csv").exists()
    dataset = PreparedDataset(out)
    train, validation, test = dataset.split(0)
    assert train == sorted(FRAMES["train"]) and validation == sorted(FRAMES["val"]) and test == sorted(FRAMES["test"])
    assert dataset.num_folds == 1
    with pytest.raises(ValueError, match=r"has a fixed split \(split.csv\), whose one test set is fold 0"):
        dataset.split(1)


def _resized_counts(out, manifest):
    counts = np.zeros(11, np.int64)
    for name in manifest["mask"]:
        mask = png(out / name)
        counts += np.bincount(mask[mask != 255], minlength=11)[:11]
    return counts


def test_label_folders_and_annotations_are_never_images(segnet):
    src, _ = segnet
    found = find_image_pairs(str(src))
    assert sorted(found.pairs) == sorted(s for stems in FRAMES.values() for s in stems)
    relative = [(os.path.relpath(image, src), os.path.relpath(label, src)) for image, label in found.pairs.values()]
    assert all(label.split(os.sep)[0].endswith("annot") and "annot" not in image for image, label in relative)
    assert [is_label_folder(n) for n in ("trainannot", "labels", "train_labels", "LabeledApproved_full", "masks", "gt",
                                         "train_gt", "length", "images", "test")] == [True] * 7 + [False] * 3


def test_label_form_comes_from_the_files(segnet, tmp_path):
    src, _ = segnet
    labels = sorted(str(p) for p in src.glob("*annot/*.png"))
    assert detect_label_form(labels) == "index"
    colour = tmp_path / "colour.png"
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(colour)
    assert detect_label_form([str(colour)]) == "colour"
    assert detect_label_form(labels, "colour") == "colour"  # the user may force it
    with pytest.raises(ValueError, match=r"the label images mix index masks \('.*'\) and colour masks \('.*colour.png'\)"):
        detect_label_form(labels + [str(colour)])


def test_colour_forced_on_index_masks_is_refused_before_anything_is_written(segnet, tmp_path, capsys):
    src, _ = segnet
    out = tmp_path / "out"
    assert _prep(src, out, "--label-form", "colour") == 2
    captured = capsys.readouterr()
    assert ("matched the palette (colour masks: 31 colours in 11 classes, other colours ignored); the masks hold grey "
            "values 0..11 — index masks? Use --label-form index") in captured.err
    assert "dataset:" not in captured.out and not out.exists()


def test_a_class_table_that_does_not_fit_the_masks_is_refused(segnet, tmp_path, capsys):
    src, _ = segnet
    assert _prep(src, tmp_path / "out", "--class-names", "road,car") == 2
    err = capsys.readouterr().err
    assert "holds the label value(s)" in err and "which the label table does not name (road = 0, car = 1)" in err
    assert "Give the set's classes with --class-names (and its void value with --void)" in err
    assert not (tmp_path / "out").exists()
    assert _prep(src, tmp_path / "out", "--palette", tmp_path / "p.csv") == 2
    assert "--palette is for colour masks, but the label images are index masks" in capsys.readouterr().err


def test_other_index_sets_take_class_names_and_void(tmp_path, capsys):
    src = tmp_path / "set"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    for index in range(4):
        Image.fromarray(np.full((8, 8, 3), index * 40, np.uint8)).save(src / "images" / f"seq{index % 2}_{index}.png")
        mask = np.array([[0, 1, 7, 7]] * 4, np.uint8).repeat(2, 0).repeat(2, 1)[:8]
        Image.fromarray(mask, mode="L").save(src / "labels" / f"seq{index % 2}_{index}.png")
    assert _prep(src, tmp_path / "out", "--class-names", "ground,object", "--void", 7, "--split", "folds",
                 "--folds", 2) == 0
    printed = capsys.readouterr().out
    assert "index masks: 2 classes as values 0..1, void 7 -> ignored" in printed
    folds = pd.read_csv(tmp_path / "out" / "folds.csv")
    assert sorted(folds.case) == ["seq0", "seq1"]  # cases are sequences when folds are drawn
    assert np.unique(png(tmp_path / "out" / "masks" / "seq0_000.png")).tolist() == [0, 1, 255]


def test_a_class_absent_from_every_mask_is_a_warning(segnet, tmp_path, capsys):
    src, _ = segnet
    for path in src.glob("*annot/*.png"):
        mask = png(path).copy()
        mask[mask == 6] = 11  # no SignSymbol anywhere
        Image.fromarray(mask, mode="L").save(path)
    assert _prep(src, tmp_path / "out", "--size", 16) == 0
    assert ("warning: class(es) SignSymbol have no labelled pixel in any mask: no network can learn or be scored on "
            "them") in capsys.readouterr().out


def test_masks_that_are_all_void_are_refused_and_nothing_is_left(segnet, tmp_path, capsys):
    src, _ = segnet
    for path in src.glob("*annot/*.png"):
        Image.fromarray(np.full((HEIGHT, WIDTH), 11, np.uint8), mode="L").save(path)
    out = tmp_path / "out"
    assert _prep(src, out) == 2
    captured = capsys.readouterr()
    assert "every pixel of the 12 label images sampled (of 12" in captured.err
    assert "give the set's void value with --void, or its classes with --class-names" in captured.err
    assert "dataset:" not in captured.out and not out.exists()


def test_nothing_to_prepare_is_exit_2_and_writes_nothing(tmp_path, capsys):
    src = tmp_path / "only_images"
    src.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(src / "0001TP_000001.png")
    out = tmp_path / "out"
    assert _prep(src, out) == 2
    captured = capsys.readouterr()
    assert "error: no case to prepare: 1 could not be paired" in captured.err
    assert "0001TP_000001: no label image for" in captured.err
    assert "dataset:" not in captured.out and not out.exists()


def test_every_case_failing_removes_the_output(segnet, tmp_path, capsys):
    src, _ = segnet
    for path in src.glob("train/*.png"):
        Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(path)  # image and label sizes disagree
    for path in list(src.glob("val/*.png")) + list(src.glob("test/*.png")):
        Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(path)
    out = tmp_path / "out"
    assert _prep(src, out) == 2
    captured = capsys.readouterr()
    assert "FAILED 0001TP_006690:" in captured.out and "are (30, 40)" in captured.out
    assert f"no case could be prepared (see FAILED above); '{out}' was removed" in captured.err
    assert not out.exists()


def test_colour_labels_keep_working(tmp_path, capsys):
    from keras_focal.data_prep.camvid import CAMVID_11

    src = tmp_path / "701_StillsRaw_full"
    src.mkdir()
    colours = np.array([CAMVID_11["Sky"][0], CAMVID_11["Road"][0], (0, 0, 0)], np.uint8)
    for stem in ("0001TP_006690", "0016E5_00390", "Seq05VD_f00000"):
        Image.fromarray(np.full((6, 8, 3), 90, np.uint8)).save(src / f"{stem}.png")
        Image.fromarray(colours[np.array([[0, 1, 2, 1]] * 6).repeat(2, 1)]).save(src / f"{stem}_L.png")
    assert _prep(src, tmp_path / "out", "--folds", 3) == 0
    printed = capsys.readouterr().out
    assert "3 *_L label images); colour masks: 31 colours in 11 classes, other colours ignored" in printed
    assert "warning: class(es) Building, Pole, Pavement, Tree, SignSymbol, Fence, Car, Pedestrian, Bicyclist" in printed
    np.testing.assert_array_equal(png(tmp_path / "out" / "original_masks" / "0001TP_000.png")[0],
                                  [0, 0, 3, 3, 255, 255, 3, 3])


def test_a_user_split_without_validation_draws_validation_by_sequence(segnet, tmp_path):
    src, _ = segnet
    split = tmp_path / "split.csv"
    rows = [f"{s},{'test' if k == 'test' else 'train'}" for k, v in FRAMES.items() for s in v]
    split.write_text("case,subset\n" + "\n".join(rows) + "\n")
    assert _prep(src, tmp_path / "out", "--size", 16, "--split", split) == 0
    dataset = PreparedDataset(tmp_path / "out")
    train, validation, test = dataset.split(0, validation_fraction=0.1, seed=0)
    sequences = {s.split("_")[0] for s in validation}
    assert len(sequences) == 1 and not sequences & {s.split("_")[0] for s in train}  # one whole sequence
    assert test == sorted(FRAMES["test"])


def test_split_files_name_their_faults(segnet, tmp_path, capsys):
    src, _ = segnet
    split = tmp_path / "split.csv"
    split.write_text("case,subset\n0001TP_006690,train\n0001TP_006690,test\n")
    with pytest.raises(ValueError, match=r"line 3: case '0001TP_006690' is listed twice \(first on line 2\)"):
        read_split_file(str(split))
    split.write_text("case,subset\n0001TP_006690,holdout\n")
    with pytest.raises(ValueError, match=r"line 2: subset 'holdout' is not one of train, validation, test"):
        read_split_file(str(split))
    split.write_text("case,subset\n0001TP_006690,train\n")
    assert _prep(src, tmp_path / "out", "--split", split) == 2
    assert "does not list 11 case(s) of the data: '0001TP_006720'" in capsys.readouterr().err
    (src / "val.txt").write_text("/SegNet/CamVid/train/0001TP_006690.png x\n")
    assert _prep(src, tmp_path / "out") == 2
    assert "'0001TP_006690' is also listed for train; an image belongs to one subset" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_nnunet_splits_final_become_the_folds(tmp_path):
    path = tmp_path / "splits_final.json"
    path.write_text(json.dumps([{"train": ["b", "c"], "val": ["a"]}, {"train": ["a", "c"], "val": ["b"]},
                                {"train": ["a", "b"], "val": ["c"]}]))
    split = read_split_file(str(path))
    assert split.folds == {"a": 0, "b": 1, "c": 2} and split.subsets is None
    path.write_text(json.dumps([{"train": ["b", "c"], "val": ["a"]}, {"train": ["a"], "val": ["b"]}]))
    with pytest.raises(ValueError, match=r"1 case\(s\) are in no fold's `val` list \('c'\): its folds do not partition"):
        read_split_file(str(path))


def test_given_folds_are_written_as_folds_csv(segnet, tmp_path):
    src, _ = segnet
    stems = sorted(s for v in FRAMES.values() for s in v)
    split = tmp_path / "folds.csv"
    split.write_text("case,fold\n" + "\n".join(f"{s},{i % 2}" for i, s in enumerate(stems)) + "\n")
    assert _prep(src, tmp_path / "out", "--size", 16, "--split", split) == 0
    folds = pd.read_csv(tmp_path / "out" / "folds.csv")
    assert dict(zip(folds.case, folds.fold)) == {s: i % 2 for i, s in enumerate(stems)}
    assert not (tmp_path / "out" / "split.csv").exists() and PreparedDataset(tmp_path / "out").num_folds == 2


def test_fold_of_a_split_is_checked_by_the_reader(segnet, tmp_path):
    src, _ = segnet
    out = tmp_path / "out"
    assert _prep(src, out, "--size", 16) == 0
    table = pd.read_csv(out / "split.csv")
    table.loc[table.subset == "test", "subset"] = "train"
    table.to_csv(out / "split.csv", index=False)
    with pytest.raises(ValueError, match=r"split.csv' has no test case: a run needs both"):
        PreparedDataset(out)


# --- scores at the labels' size, the honest headline, and logs ---------------------------------------------------

class _ColumnModel:
    """A stand-in network: at every pixel of its 4 x 4 output, class 1 left of the middle and class 2 right of it."""

    def predict_on_batch(self, images):
        probabilities = np.zeros((len(images), 4, 4, 3), np.float32)
        probabilities[:, :, :2, 1] = probabilities[:, :, 2:, 2] = 0.9
        probabilities[..., 0] = 0.1
        return probabilities


def test_test_scores_are_computed_at_the_label_images_size(tmp_path):
    from keras_focal.data_prep.examples import Examples
    from keras_focal.training.run import evaluate_model

    truth = np.zeros((6, 8), np.uint8)
    truth[:, 4:] = 2  # right half class 2, left half class 0 (never predicted)
    truth[0, 0] = 255
    Image.fromarray(truth, mode="L").save(tmp_path / "original.png")
    examples = Examples(np.zeros((1, 4, 4, 3), np.uint8), np.zeros((1, 4, 4), np.uint8), channels=3)
    result = evaluate_model(_ColumnModel(), examples, ["sky", "road", "car"], batch_size=1,
                            label_masks=[str(tmp_path / "original.png")])
    assert result.image_size == (6, 8)
    # Restored to 6 x 8, the columns 0..3 are class 1 and 4..7 class 2: class 2 exact, class 0 never predicted.
    np.testing.assert_array_equal(result.confusion_matrix, [[0, 23, 0], [0, 0, 0], [0, 0, 24]])
    assert result.class_metrics["IoU"][2] == 1.0 and result.never_predicted() == ["sky"]
    at_network_size = evaluate_model(_ColumnModel(), examples, ["sky", "road", "car"], batch_size=1)
    assert at_network_size.confusion_matrix.sum() == 16 and at_network_size.image_size == (4, 4)


def _runs(pooled_by_loss, per_image_by_loss, never_by_loss):
    rows = []
    for loss, values in pooled_by_loss.items():
        for seed, value in enumerate(values):
            rows.append({"dataset": "camvid", "model": "unet", "optimizer": "adam", "loss": loss, "fold": 0,
                         "seed": seed, "epochs": 8, "dataset_miou": value, "global_accuracy": 0.8,
                         "mdsc": per_image_by_loss[loss], "miou": per_image_by_loss[loss], "nan_epoch": np.nan,
                         "iou_Sky": 0.9, "iou_Road": 0.8, "iou_Pole": 0.0 if "Pole" in never_by_loss[loss] else 0.1,
                         "iou_Car": 0.4, "never_predicted": ";".join(never_by_loss[loss])})
    return pd.DataFrame(rows)


def test_the_report_leads_with_the_pooled_metrics_and_shows_a_class_never_predicted():
    from keras_focal.reporting.tables import add_rare_miou, markdown_tables

    # The case: ADFL first on the per-image mean, while it never predicts the rare class.
    table = _runs({"ce": [0.50, 0.52, 0.54], "adfl": [0.45, 0.47, 0.49]}, {"ce": 0.34, "adfl": 0.40},
                  {"ce": [], "adfl": ["Pole"]})
    shares = {"Sky": 0.3, "Road": 0.5, "Pole": 0.01, "Car": 0.19}
    markdown = markdown_tables(add_rare_miou(table, shares), reference="adfl", shares=shares)
    headline = markdown.index("| Loss + model | pooled mIoU (n) | global accuracy | rare mIoU | never predicted (runs) |")
    assert headline < markdown.index("## IoU of each class") < markdown.index("## Per-image means")
    assert "| CE+U-net | 52.00 ± 2.00 (n = 3) | 80.00 ± 0.00 (n = 3) | 10.00 ± 0.00 (n = 3) | none | 0 |" in markdown
    assert "| ADFL+U-net | 47.00 ± 2.00 (n = 3) | 80.00 ± 0.00 (n = 3) | 0.00 ± 0.00 (n = 3) | **Pole** (3/3) | 0 |" in markdown
    assert "**0.0 ✗3/3**" in markdown  # the per-class table flags it too
    assert "## Paired differences against ADFL: pooled mIoU" in markdown
    assert "| CE | 3 | -5.00 |" in markdown  # the statistics run on the headline, not on the per-image mean


def test_the_chart_starts_at_zero(monkeypatch, tmp_path):
    from keras_focal.reporting import figures as charts
    from keras_focal.reporting.tables import add_rare_miou

    figures = []
    monkeypatch.setattr(charts, "save_figure_atomically", lambda figure, path, **options: figures.append(figure))
    table = add_rare_miou(_runs({"ce": [0.90, 0.91, 0.92], "adfl": [0.93, 0.94, 0.95]},
                                        {"ce": 0.9, "adfl": 0.9}, {"ce": [], "adfl": []}),
                                  {"Sky": 0.3, "Road": 0.5, "Pole": 0.01, "Car": 0.19})
    charts.bar_plot(table, str(tmp_path / "results.png"))
    axes = figures[0].axes
    assert [axis.get_ylabel() for axis in axes] == ["pooled mIoU (%)", "rare-class mIoU (%)"]
    assert all(axis.get_ylim()[0] == 0 for axis in axes)
    heights = sorted(round(bar.get_height(), 6) for bar in axes[0].patches)
    assert heights == [91.0, 94.0]


def test_logs_hold_no_progress_bar_redraws_when_not_on_a_terminal(segnet, tmp_path, capsys):
    src, _ = segnet
    assert main(["prep", "camvid", str(src), str(tmp_path / "out"), "--size", "16"]) == 0  # no --quiet
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "\x1b[" not in captured.err and "cases:" not in captured.err


def test_a_run_summary_prints_percentages():
    from keras_focal.reporting.tables import run_summary

    line = run_summary({"dataset_miou": 0.1075220299145696, "global_accuracy": 0.5, "mdsc": 0.25,
                        "never_predicted": ["Pole", "Fence"]})
    assert line == "pooled mIoU 10.75%, global accuracy 50.00%, per-image mDSC 25.00%; never predicted: Pole, Fence"


def test_overlays_without_a_background_class_show_label_maps_with_a_key():
    from keras_focal.data_prep.camvid import CAMVID_11
    from keras_focal.reporting.overlays import class_colours, label_panels, with_class_key

    names = ["Sky", "Road", "unknown"]
    assert class_colours(names)[:2] == [CAMVID_11["Sky"][0], CAMVID_11["Road"][0]]
    image = np.full((2, 3, 3), 50, np.uint8)
    truth = np.array([[0, 1, 255], [2, 2, 2]], np.uint8)
    predicted = np.array([[1, 1, 0], [2, 2, 2]], np.uint8)
    panels = label_panels(image, truth, predicted, names)
    assert panels.shape == (2, 3 + 4 + 3 + 4 + 3, 3)
    assert tuple(panels[0, 7]) == CAMVID_11["Sky"][0] and tuple(panels[0, 9]) == (0, 0, 0)  # void is black
    assert tuple(panels[0, 14]) == CAMVID_11["Road"][0]
    keyed = with_class_key(panels, names, "caption")
    assert keyed.shape[0] > panels.shape[0] and keyed.shape[1] >= panels.shape[1]


def test_image_level_folds_draw_validation_by_sequence(segnet, tmp_path):
    src, _ = segnet
    out = tmp_path / "out"
    assert _prep(src, out, "--size", 16, "--split", "folds", "--group-by", "image", "--folds", 2) == 0
    folds = pd.read_csv(out / "folds.csv")
    assert len(folds) == 12 and dict(zip(folds.case, folds.group))["Seq05VD_f00030"] == "Seq05VD"
    dataset = PreparedDataset(out)
    for fold in (0, 1):
        train, validation, _ = dataset.split(fold, validation_fraction=0.3, seed=1)
        assert validation and not {s.split("_")[0] for s in validation} & {s.split("_")[0] for s in train}
