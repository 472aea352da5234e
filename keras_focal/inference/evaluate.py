"""`keras-focal evaluate` as a library call: a trained model's report on cases of its prepared data set.

The slices are predicted as the trainer scores its test set
(`Predictor.labelled_pairs`), so that `evaluate` reproduces `train`'s test
scores; photographs are scored at their labels' own size. With `volumes`
each case is also put back on its original grid and scored in 3-D
(`score_prepared_cases`). The report's files are `keras_focal.reporting`'s.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

import keras_focal
from keras_focal.data_prep.examples import Examples
from keras_focal.data_prep.prepared import PreparedDataset
from keras_focal.data_prep.slicing import resize_image
from keras_focal.evaluation import evaluate_semantic_segmentation
from keras_focal.files import FolderBusyError, FolderLock, check_output_folder, publishing_folder
from keras_focal.inference.predictor import Predictor
from keras_focal.inference.prepared_cases import score_prepared_cases
from keras_focal.reporting.evaluation_files import write_evaluation, write_volume_metrics
from keras_focal.types import ArrayLike, PathLike

if TYPE_CHECKING:
    import keras



def check_model_fits(model: keras.Model, dataset: PreparedDataset, name: str = "the model") -> None:
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


def evaluate_trained(
    model_path: PathLike, data: PathLike | PreparedDataset, cases: Sequence[str], out: PathLike,
    batch_size: int = 4, volumes: bool = False,
) -> Any:
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
    out = os.path.abspath(out)
    check_output_folder(out, "the evaluation folder")
    dataset = data if isinstance(data, PreparedDataset) else PreparedDataset(data)
    model = keras_focal.load_model(model_path)
    check_model_fits(model, dataset, os.fspath(model_path))
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
            predictor = Predictor([model], batch_size=batch_size)
            if label_masks is None:
                examples = Examples(images, np.zeros(images.shape[:3], np.uint8), channels=channels)
                predictions = [label_map for label_map, _ in predictor.labelled_pairs(examples)]
            else:  # photographs: scored (and shown) at the label images' own size, as `train` scores them
                images, masks, predictions = _at_label_size(predictor, dataset, cases, images, masks, label_masks)
            result = evaluate_semantic_segmentation(predictions, list(masks), dataset.class_names, ignore_label=dataset.ignore_label)
            summary = None
            if volumes:
                rows = score_prepared_cases(predictor, dataset, cases)
            with publishing_folder(out) as temporary:
                write_evaluation(result, dataset.rows(cases), images, masks, predictions, temporary)
                if volumes:
                    summary = write_volume_metrics(rows, temporary, f"Per-patient 3-D metrics of '{model_path}' "
                                                   f"(cases {', '.join(map(str, cases))}; mean ± sample std over cases)")
    except FolderBusyError as error:
        raise ValueError(f"another evaluation is writing '{out}': {error}") from None
    return (result, summary) if volumes else result


def _at_label_size(predictor, dataset, cases, images: ArrayLike, masks: ArrayLike, label_masks):
    """`(images, masks, predictions)` at the label images' own size: the source photographs (or the slices
    resized back where they are gone), the original masks, and the predictions restored to that size."""
    keep_aspect = dataset.preparation()[1].keep_aspect
    examples = Examples(images, masks, channels=images.shape[-1])
    pairs = list(predictor.labelled_pairs(examples, label_masks, keep_aspect))
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


def _source_photograph(path: str, shape):
    """The photograph a slice was made from, when it is still there at the labels' size; else None."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError):
        return None
    return rgb if rgb.shape[:2] == tuple(shape) else None
