"""`keras-focal evaluate`: metrics files, a confusion-matrix plot and contour overlays for a trained model."""

import json
import os

import numpy as np

from keras_focal.errors import BadInput
from keras_focal.files import save_figure_atomically, save_png_atomically, write_text_atomically


def draw_confusion_matrix(axis, matrix, class_names, title="Confusion matrix (rows sum to 1)"):
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


def confusion_matrix_figure(result, path):
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


def overlay(image, truth, predicted, foreground, scale=None):
    """RGB uint8: the image with true (green) and predicted (red) foreground contours; yellow where they meet."""
    from skimage.segmentation import find_boundaries

    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    # A photograph in colour; a volume's slice by its first channel (T2 of T2 + ADC) in grey.
    rgb = image[..., :3].copy() if image.shape[-1] in (3, 4) else np.repeat(image[..., :1], 3, axis=-1)
    rgb = rgb.astype(np.uint8)
    scale = scale or max(1, 448 // max(image.shape[:2]))  # 224 -> 448: contours a reader can see
    if scale > 1:
        rgb = np.kron(rgb, np.ones((scale, scale, 1), np.uint8))
        truth = np.kron(truth, np.ones((scale, scale), truth.dtype))
        predicted = np.kron(predicted, np.ones((scale, scale), predicted.dtype))
    true_edge = find_boundaries(np.isin(truth, foreground), mode="inner")
    predicted_edge = find_boundaries(np.isin(predicted, foreground), mode="inner")
    rgb[true_edge] = (0, 220, 0)
    rgb[predicted_edge] = (230, 30, 30)
    rgb[true_edge & predicted_edge] = (255, 220, 0)
    return rgb


OVERLAY_KEY = (((0, 220, 0), "truth"), ((230, 30, 30), "prediction"), ((255, 220, 0), "both"))
IGNORED_COLOUR = (0, 0, 0)  # pixels of the ignore label (void) in a label map


def class_colours(class_names):
    """One RGB colour per class: CamVid's own colour where the name is one of its 11 classes, else matplotlib's tab20."""
    import matplotlib

    from keras_focal.data_prep.camvid import CAMVID_11

    table = matplotlib.colormaps["tab20"].colors
    return [CAMVID_11[name][0] if name in CAMVID_11 else tuple(int(255 * c) for c in table[index % len(table)])
            for index, name in enumerate(class_names)]


def label_panels(image, truth, predicted, class_names, ignore_label=255):
    """RGB uint8: image | true label map | predicted label map side by side, in the colours of `class_colours`.

    For data sets without a background class (every class is foreground), where
    contours of "the foreground" would outline every pixel.
    """
    colours = np.asarray(class_colours(class_names) + [IGNORED_COLOUR] * (256 - len(class_names)), np.uint8)
    colours[ignore_label] = IGNORED_COLOUR
    image = np.asarray(image)
    rgb = image[..., :3] if image.ndim == 3 and image.shape[-1] >= 3 else np.repeat(image.reshape(image.shape[:2] + (1,))[..., :1], 3, axis=-1)
    gap = np.full((rgb.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([rgb.astype(np.uint8), gap, colours[truth], gap, colours[predicted]], axis=1)


def _draw_key(picture, entries, caption):
    """`picture` above a white strip: `entries` ((colour, name), ...) as swatches, wrapped, then `caption`."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = picture.shape[:2]
    line = 17
    font = ImageFont.load_default(size=13)  # Pillow's bundled font: no font files needed
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [24 + int(measure.textlength(name, font=font)) for _, name in entries]
    canvas_width = max(width, int(8 + measure.textlength(caption, font=font)), 8 + min(sum(widths), 640))
    rows, x = 1, 4
    for entry_width in widths:  # how many lines the swatches take at this width
        if x + entry_width > canvas_width and x > 4:
            rows, x = rows + 1, 4
        x += entry_width
    canvas = Image.new("RGB", (canvas_width, height + (rows + 1) * line + 4), (255, 255, 255))
    canvas.paste(Image.fromarray(picture), (0, 0))
    draw = ImageDraw.Draw(canvas)
    x, y = 4, height + 3
    for (colour, name), entry_width in zip(entries, widths):
        if x + entry_width > canvas_width and x > 4:
            x, y = 4, y + line
        draw.rectangle([x, y + 2, x + 10, y + 12], fill=tuple(int(c) for c in colour), outline=(0, 0, 0))
        draw.text((x + 14, y), name, fill=(0, 0, 0), font=font)
        x += entry_width
    draw.text((4, y + line), caption, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def with_key(picture, caption):
    """`picture` (RGB uint8) above a white strip: the overlay's colour key, then `caption` (e.g. the Dice)."""
    return _draw_key(picture, OVERLAY_KEY, caption)


def with_class_key(picture, class_names, caption):
    """`label_panels`' picture above its key: each class's colour, void, then `caption`."""
    entries = list(zip(class_colours(class_names), class_names)) + [(IGNORED_COLOUR, "void (not scored)")]
    return _draw_key(picture, entries, caption)


def write_evaluation(result, rows, images, masks, predictions, out):
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


def check_model_fits(model, dataset, name="the model"):
    """Raises ValueError unless `model` maps the data set's images to scores of its classes."""
    height, width, channels = dataset.image_shape()
    expected_input = (height, width, channels)
    model_input, model_output = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    problems = []
    if len(model_input) != 3 or model_input[2] != channels or any(
        size is not None and size != wanted for size, wanted in zip(model_input[:2], expected_input[:2])
    ):
        problems.append(f"it takes inputs of shape {model_input}, the data set's images are {expected_input}")
    if not model_output or model_output[-1] != dataset.num_classes:
        problems.append(
            f"it scores {model_output[-1] if model_output else 0} classes, the data set has {dataset.num_classes} "
            f"({', '.join(dataset.class_names)})"
        )
    if problems:
        raise ValueError(f"'{name}' does not fit the data set '{dataset.path}': " + "; ".join(problems) + ".")


def write_volume_metrics(rows, out, title):
    """`volume_metrics.csv` (one row per case and class) and `volume_summary.md` (mean ± sample std per class) in `out`."""
    import pandas as pd

    from keras_focal.evaluation import summarise_volume_metrics, truth_sources, volume_summary_markdown

    table = pd.DataFrame(rows)
    write_text_atomically(os.path.join(out, "volume_metrics.csv"), table.to_csv(index=False))
    markdown = f"{title}\n\n{truth_sources(table)}\n\n" + volume_summary_markdown(summarise_volume_metrics(table))
    write_text_atomically(os.path.join(out, "volume_summary.md"), markdown)
    return markdown


def evaluate_trained(model_path, data, cases, out, batch_size=4, volumes=False):
    """Evaluates a saved model on `cases` of a prepared data set and writes the report files.

    Everything is checked before predicting (the model file, the data set,
    that `out` can be written). The files are written into a temporary
    folder beside `out` that then replaces `out` whole, under a lock beside
    it: a second evaluation into the same `out` is refused, and a killed
    one leaves the previous outputs untouched, never a mix of two models'.

    `volumes`: also put each case's prediction back on its original grid
    and write its per-patient 3-D metrics against the original label volume
    (`score_prepared_cases`, `write_volume_metrics`); returns `(result,
    volume summary)` then.
    """
    import keras_focal
    from keras_focal.data_prep.prepared import PreparedDataset
    from keras_focal.evaluation import evaluate_semantic_segmentation
    from keras_focal.files import FolderBusyError, FolderLock, check_output_folder, publishing_folder
    from keras_focal.training.run import predict_label_maps

    out = os.path.abspath(out)
    check_output_folder(out, "the evaluation folder")
    dataset = data if isinstance(data, PreparedDataset) else PreparedDataset(data)
    model = keras_focal.load_model(model_path)
    check_model_fits(model, dataset, model_path)
    dataset.check()
    if volumes and not dataset.has_volumes():
        raise ValueError(f"--volumes: the slices of '{dataset.path}' have no voxel spacing or original size in its "
                         "manifest.csv (photographs are not volumes).")
    channels = int(model.input_shape[-1])
    parent, name = os.path.split(out)
    try:
        with FolderLock(parent, name=f".{name}.lock"):  # creates `parent` if needed
            images, masks = dataset.load(cases, channels)
            if not len(images):
                raise ValueError(f"no test slice for cases {cases}.")
            label_masks = dataset.original_mask_paths(cases)
            if label_masks is None:
                predictions = predict_label_maps(model, images, batch_size)
            else:  # photographs: scored (and shown) at the label images' own size, as `train` scores them
                images, masks, predictions = _at_label_size(model, dataset, cases, images, masks, label_masks, batch_size)
            result = evaluate_semantic_segmentation(predictions, list(masks), dataset.class_names, ignore_label=dataset.ignore_label)
            summary = None
            if volumes:
                from keras_focal.prediction import score_prepared_cases

                rows = score_prepared_cases([model], dataset, cases, batch_size)
            with publishing_folder(out) as temporary:
                write_evaluation(result, dataset.rows(cases), images, masks, predictions, temporary)
                if volumes:
                    summary = write_volume_metrics(rows, temporary, f"Per-patient 3-D metrics of '{model_path}' "
                                                   f"(cases {', '.join(map(str, cases))}; mean ± sample std over cases)")
    except FolderBusyError as error:
        raise ValueError(f"another evaluation is writing '{out}': {error}") from None
    return (result, summary) if volumes else result


def _at_label_size(model, dataset, cases, images, masks, label_masks, batch_size):
    """`(images, masks, predictions)` at the label images' own size: the source photographs (or the slices
    resized back where they are gone), the original masks, and the predictions restored to that size."""
    from keras_focal.data_prep.examples import Examples
    from keras_focal.data_prep.slicing import resize_image
    from keras_focal.training.run import predicted_pairs

    keep_aspect = dataset.preparation()[1].keep_aspect
    examples = Examples(images, masks, channels=images.shape[-1])
    pairs = list(predicted_pairs(model, examples, batch_size, label_masks, keep_aspect))
    shown = []
    for slice_image, source, (_, truth) in zip(images, dataset.rows(cases).source_image, pairs):
        shown.append(_source_photograph(source, truth.shape) if isinstance(source, str) else None)
        if shown[-1] is None:  # the slice back at the labels' size (the padding of --keep-aspect cropped away)
            height, width = truth.shape
            side = max(height, width) if keep_aspect else None
            back = resize_image(slice_image, (side, side) if keep_aspect else (height, width))
            top, left = ((side - height) // 2, (side - width) // 2) if keep_aspect else (0, 0)
            shown[-1] = back[top: top + height, left: left + width]
    return shown, [truth for _, truth in pairs], [prediction for prediction, _ in pairs]


def _source_photograph(path, shape):
    """The photograph a slice was made from, when it is still there at the labels' size; else None."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError):
        return None
    return rgb if rgb.shape[:2] == tuple(shape) else None


def add_evaluate_parser(commands):
    parser = commands.add_parser("evaluate", help="metrics, confusion matrix and overlays of a trained model on its test fold")
    parser.add_argument("--run", help="a run folder written by `keras-focal train` / `compare`")
    parser.add_argument("--checkpoint", choices=("last", "best"), default="last", help="with --run (default: last)")
    parser.add_argument("--model", help="a saved .keras model (with --data and --fold)")
    parser.add_argument("--data", help="a prepared data set")
    parser.add_argument("--fold", type=int, help="the test fold of --data")
    parser.add_argument("--out", help="output folder (default: RUN/evaluation or ./evaluation)")
    parser.add_argument("--volumes", action="store_true",
                        help="also put each test case's prediction back on its original grid and score it in 3-D, in mm, "
                             "against the original label volume the manifest names (the prepared masks rebuilt on that "
                             "grid only where it is gone, said so in the output): volume_metrics.csv, volume_summary.md")
    parser.set_defaults(execute=_evaluate)
    return parser


def _evaluate(args):
    from keras_focal.data_prep.prepared import PreparedDataset

    try:
        if args.run:
            from keras_focal.run_folder import read_run_config

            config = read_run_config(args.run)
            model_path = os.path.join(args.run, f"{args.checkpoint}.keras")
            data, cases = PreparedDataset(config["data"]), config["test_cases"]
            out = args.out or os.path.join(args.run, "evaluation")
        elif args.model and args.data and args.fold is not None:
            model_path, data = args.model, PreparedDataset(args.data)
            cases = data.split(args.fold, 0.0)[2]
            out = args.out or "evaluation"
        else:
            raise ValueError("give --run RUN_DIR, or --model FILE --data PREP_DIR --fold K.")
        if not os.path.exists(model_path):
            raise ValueError(f"no model at '{model_path}'.")
        result = evaluate_trained(model_path, data, cases, out, volumes=args.volumes)
    except (ValueError, FileNotFoundError, KeyError) as error:
        # evaluate_trained checks its inputs and output first, and publishes its folder whole.
        raise BadInput(str(error)) from None
    summary = None
    if args.volumes:
        result, summary = result
    print(result.to_markdown())
    if summary:
        print(summary)
    print(f"wrote {out}/evaluation.json, class_metrics.csv, image_metrics.csv, confusion_matrix.png, overlay_*.png"
          + (", volume_metrics.csv, volume_summary.md" if args.volumes else ""))
    return 0
