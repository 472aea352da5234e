"""`Predictor`: the one place that turns trained 2-D networks into class probabilities and label maps.

The path of a volume through prediction, each step the one `prep` took or its inverse:

1. read it with prep's readers (`read_volume`, `read_dicom_volume`);
2. normalise its intensities on its own percentiles and resize (or pad and
   resize) each slice to the network's size: `volume_images` and
   `PrepOptions.network_image`, the functions `prep` wrote the training
   slices with, with the options read back from the training data set's
   `prep.json` (`PredictionSettings`);
3. predict the slices in batches: class probabilities, averaged over the
   models of an ensemble and, with test-time augmentation, over the
   left-right flip the trainer's `--augment` uses
   (`Predictor.slice_probabilities`);
4. map the probabilities back to the original in-plane grid (linear
   interpolation, padding removed: `restore_probabilities`), and take the
   arg-max there;
5. optionally keep only the largest 3-D connected component of each
   foreground class (`keep_largest_components`);
6. write the label volume with the input's size, spacing, origin and
   direction (`Geometry.image`; `keras_focal.inference.files`).

The trainer's test scores, `evaluate`, `compare`'s per-patient table and the
notebooks predict through the same object (`Predictor.labelled_pairs`,
`Predictor.predict_slices`, `keras_focal.inference.prepared_cases`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_focal.data_prep.examples import evaluation_dataset, normalize, read_mask_png
from keras_focal.data_prep.slicing import labels_of, restore_probabilities
from keras_focal.data_prep.sources import volume_images
from keras_focal.inference.trained import check_ensemble, load_trained_model, model_paths
from keras_focal.types import Array, ArrayLike, PathLike

if TYPE_CHECKING:
    from keras_focal.data_prep.prepared import PreparedDataset

if TYPE_CHECKING:
    import keras

    from keras_focal.data_prep.examples import Examples
    from keras_focal.data_prep.volume import Volume
    from keras_focal.inference.trained import PredictionSettings, TrainedModel

# Post-processing modes of `keras-focal predict --postprocess`.
POSTPROCESS_MODES = ("none", "largest-component", "auto")
TTA_MODES = ("none", "flip")


def network_input(images: ArrayLike) -> Array:
    """uint8 slices `(n, S, S)` or `(n, S, S, C)` -> the float32 network input, as the trainer's pipeline makes it."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    return np.asarray(normalize(images), dtype=np.float32)


def _is_probability_output(model):
    return model.layers[-1].name == "probabilities"


def _as_probabilities(model, outputs):
    """A network's outputs as class probabilities (a logits model, `activation=None`, gets the softmax)."""
    import keras

    outputs = np.asarray(outputs, dtype=np.float32)
    if _is_probability_output(model):
        return outputs
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.softmax(outputs, axis=-1)), np.float32)


class Predictor:
    """Class probabilities and label maps of 2-D networks: one network, or an ensemble averaged.

    Built from `TrainedModel`s (a model file with its data set's
    preparation settings: `from_files`, `from_runs`, `from_comparison`) or
    from Keras models in memory (the trainer's; `Predictor([model])`), in
    the spirit of nnU-Net's `nnUNetPredictor`.

    Args:
        models: `TrainedModel`s or Keras models (probabilities or logits out).
        batch_size: slices per network call.
        tta: `"none"`, or `"flip"` to average each slice with its left-right mirror.

    Examples:
        >>> predictor = Predictor.from_runs(["results/runs/unet-adfl-adam-fold0"])  # doctest: +SKIP
        >>> labels, probabilities, notes = predictor.predict_volume(volume)  # doctest: +SKIP
    """

    def __init__(self, models: Sequence[TrainedModel | keras.Model], *, batch_size: int = 8, tta: str = "none") -> None:
        models = list(models)
        if not models:
            raise ValueError("`models` must hold at least one model. Received: models=[]")
        if tta not in TTA_MODES:
            raise ValueError(f"`tta` must be one of {TTA_MODES}. Received: tta={tta!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size!r}")
        trained = [m for m in models if hasattr(m, "settings")]
        if len(trained) == len(models) and len(models) > 1:
            check_ensemble(models)
        self.models = models
        self.batch_size = int(batch_size)
        self.tta = tta

    @classmethod
    def from_files(
        cls, paths: Sequence[PathLike], *, data: PathLike | None = None, dataset: PreparedDataset | None = None,
        batch_size: int = 8, tta: str = "none",
    ) -> Predictor:
        """The models in `paths` (`.keras` files), each with its training data's settings (`load_trained_model`)."""
        return cls([load_trained_model(path, data, dataset) for path in paths], batch_size=batch_size, tta=tta)

    @classmethod
    def from_runs(
        cls, run_dirs: Sequence[PathLike], *, checkpoint: str | None = None, data: PathLike | None = None,
        batch_size: int = 8, tta: str = "none",
    ) -> Predictor:
        """The evaluated model of each run folder (`checkpoint` "best"/"last" overrides)."""
        return cls.from_files(model_paths(runs=run_dirs, checkpoint=checkpoint), data=data, batch_size=batch_size, tta=tta)

    @classmethod
    def from_comparison(cls, folder: PathLike, *, loss: str | None = None, optimizer: str | None = None, network: str | None = None, checkpoint: str | None = None, data: PathLike | None = None,
                        batch_size: int = 8, tta: str = "none") -> Predictor:
        """Every fold's (and seed's) model of one loss, optimiser and network of a comparison folder."""
        paths = model_paths(comparison=folder, loss=loss, optimizer=optimizer, network=network, checkpoint=checkpoint)
        return cls.from_files(paths, data=data, batch_size=batch_size, tta=tta)

    @property
    def settings(self) -> PredictionSettings | None:
        """The `PredictionSettings` the models share (None for Keras models given without them)."""
        return getattr(self.models[0], "settings", None)

    @property
    def keras_models(self) -> list[keras.Model]:
        return [getattr(m, "model", m) for m in self.models]

    # --- slices -------------------------------------------------------------------------

    def _model_probabilities(self, model, inputs):
        outputs = []
        for start in range(0, len(inputs), self.batch_size):
            batch = inputs[start: start + self.batch_size]
            count = len(batch)
            if count < self.batch_size:
                # One batch shape for every call: a short batch would retrace the compiled predict step.
                batch = np.concatenate([batch, np.zeros((self.batch_size - count,) + batch.shape[1:], batch.dtype)])
            # predict_on_batch: NumPy out on every backend, no gradient graph (torch).
            outputs.append(np.asarray(model.predict_on_batch(batch), dtype=np.float32)[:count])
        if not outputs:
            return np.zeros((0,) + tuple(model.output_shape[1:]), np.float32)
        return _as_probabilities(model, np.concatenate(outputs))

    def slice_probabilities(self, images: ArrayLike) -> Array:
        """Class probabilities `(n, S, S, classes)` of uint8 network slices, averaged over the models and the TTA flips.

        `tta="flip"` adds the left-right flip (the trainer's `--augment` flip):
        the flipped slices' probabilities are flipped back and averaged with the
        identity's, so the prediction of a mirrored volume is the mirror of the
        prediction. Every model sees the same batches.
        """
        inputs = network_input(images)
        total: Array | None = None
        count = 0
        for model in self.keras_models:
            views = [(inputs, False)] + ([(inputs[:, :, ::-1], True)] if self.tta == "flip" else [])
            for view, flipped in views:
                probabilities = self._model_probabilities(model, np.ascontiguousarray(view))
                if flipped:
                    probabilities = probabilities[:, :, ::-1]
                total = probabilities if total is None else total + probabilities
                count += 1
        assert total is not None  # at least one model, checked when the predictor was built
        return total / count

    def predict_slices(self, images: ArrayLike) -> Array:
        """Arg-max label maps `(n, S, S)` uint8 of uint8 network slices `(n, S, S[, C])`."""
        return labels_of(self.slice_probabilities(images))

    def labelled_pairs(
        self, examples: Examples, label_masks: Sequence[str] | None = None, keep_aspect: bool = False,
    ) -> Iterator[tuple[Array, Array]]:
        """`(label map, mask)` uint8 pairs of `Examples`, batch by batch (nothing held beyond a batch).

        The trainer's test scores and `evaluate` read their slices through
        this: the data set's own tf.data pipeline, one network (the first),
        no TTA. `label_masks`: the paths of the slices' masks at the label
        images' own size (`PreparedDataset.original_mask_paths`), in the
        order of `examples`. Each slice's class probabilities are then
        restored to that size (bilinear, `keep_aspect` padding removed: the
        inverse of prep's resize) before the arg-max, and paired with that
        mask: the scores are those of the labels as distributed, not of
        their resized copies.
        """
        if len(self.models) != 1 or self.tta != "none":
            raise ValueError("`labelled_pairs` scores one network without TTA (the trainer's test scores): "
                             f"this predictor has {len(self.models)} model(s) and tta={self.tta!r}.")
        model = self.keras_models[0]
        originals = iter(label_masks) if label_masks is not None else None
        for batch_images, batch_masks in evaluation_dataset(examples, self.batch_size):
            # predict_on_batch: NumPy out on every backend, no gradient graph (torch). The outputs are taken as
            # they come (the trainer's networks end in their softmax; a logits network has the same arg-max).
            probabilities = np.asarray(model.predict_on_batch(np.asarray(batch_images)))
            if originals is None:
                # np.argmax, as the trainer always scored: a NaN output (a diverged network) is class 0 here too.
                maps = np.argmax(probabilities, axis=-1).astype(np.uint8)
                yield from zip(maps, np.asarray(batch_masks).astype(np.uint8))
                continue
            for probability in probabilities:
                truth = read_mask_png(next(originals))
                restored = restore_probabilities(probability[None], *truth.shape, keep_aspect=keep_aspect)[0]
                yield labels_of(restored), truth

    # --- volumes ------------------------------------------------------------------------

    def predict_volume(
        self, volume: Volume, postprocess: Sequence[int] = (), timings: dict[str, float] | None = None,
    ) -> tuple[Array, Array, list[str]]:
        """Labels `(z, y, x)` uint8, probabilities `(z, y, x, classes)` float32 and notes of a `Volume`, on its own grid.

        Its slices are prepared as `prep` prepared the models' training data
        (`volume_images`, each channel on its own percentiles, and
        `PrepOptions.network_image`), predicted (`slice_probabilities`),
        restored to the original grid and arg-maxed; `postprocess`: labels
        whose largest component is kept. `timings`: a dict that receives the
        seconds of each phase ("prepare", "network", "restore"), for
        `bench/predict.py`.
        """
        settings = self._require_settings("predict_volume")
        clock = {"last": time.perf_counter()}

        def lap(phase) -> None:
            now = time.perf_counter()
            if timings is not None:
                timings[phase] = timings.get(phase, 0.0) + now - clock["last"]
            clock["last"] = now

        options = settings.options
        notes = list(volume.notes)
        grey = volume_images(volume, options, notes, settings.channels)
        images = np.stack([options.network_image(image) for image in grey])
        lap("prepare")
        probabilities = self.slice_probabilities(images)
        lap("network")
        slices, height, width = grey.shape[:3]
        restored = restore_volume(probabilities, range(slices), slices, height, width, options.keep_aspect)
        labels = labels_of(restored)
        if postprocess:
            labels = keep_largest_components(labels, postprocess)
        lap("restore")
        return labels, restored, notes

    def predict_volumes(
        self, volumes: Iterable[Volume], postprocess: Sequence[int] = (),
    ) -> Iterator[tuple[Array, Array, list[str]]]:
        """`predict_volume` of each `Volume`, one at a time (a generator: one volume in memory at once)."""
        for volume in volumes:
            yield self.predict_volume(volume, postprocess)

    def predict_files(self, input_path: PathLike, out: PathLike, **options: Any) -> int:
        """`keras-focal predict` with these models: label volumes of the cases under `input_path` written to `out`.

        `options`: the fields of `keras_focal.inference.files.PredictionRequest`
        (series, postprocess, probabilities, output_format, truth, force,
        quiet). Returns the exit status (0, or 1 when a case failed).
        """
        # Imported here: keras_focal.inference.files builds on this module.
        from keras_focal.inference.files import PredictionRequest, predict_files

        request = PredictionRequest(input=os.fspath(input_path), out=os.fspath(out), tta=self.tta, batch_size=self.batch_size, **options)
        return predict_files(request, self)

    def _require_settings(self, method):
        settings = self.settings
        if settings is None:
            raise ValueError(f"`{method}` prepares volumes as the models' training data was prepared: build the "
                             "Predictor from model files or runs (`Predictor.from_files`), not from bare Keras models.")
        return settings


def keep_largest_components(labels: ArrayLike, classes: Sequence[int]) -> Array:
    """Keeps, for each label in `classes`, only its largest 3-D connected component; the rest becomes 0 (background).

    Connectivity: face neighbours (6 in 3-D, scipy's default, as nnU-Net's
    `remove_all_but_largest_component`), so two blobs touching across
    adjacent slices are one component. Ties keep the first in scan order.
    """
    from scipy.ndimage import label as connected_components

    labels = np.array(labels, copy=True)
    for value in classes:
        components, count = connected_components(labels == value)
        if count > 1:
            sizes = np.bincount(components.ravel())[1:]
            labels[(components > 0) & (components != 1 + int(np.argmax(sizes)))] = 0
    return labels


def restore_volume(
    probabilities: ArrayLike, slice_indices: Sequence[int], slices: int, height: int, width: int, keep_aspect: bool,
) -> Array:
    """Probabilities of the predicted slices -> `(slices, height, width, classes)` on the original grid.

    Slices that were not predicted (dropped by `prep --slices foreground`)
    are background with probability 1.
    """
    restored = restore_probabilities(probabilities, height, width, keep_aspect)
    if list(slice_indices) == list(range(slices)):
        return restored
    classes = probabilities.shape[-1]
    volume = np.zeros((slices, height, width, classes), np.float32)
    volume[..., 0] = 1.0
    if len(slice_indices):
        volume[np.asarray(slice_indices)] = restored
    return volume
