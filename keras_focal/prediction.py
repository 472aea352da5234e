"""From trained 2-D networks to label volumes in the patient's geometry.

The path of a volume through prediction, each step the one `prep` took or its inverse:

1. read it with prep's readers (`read_volume`, `read_dicom_volume`);
2. normalise its intensities on its own percentiles and resize (or pad and
   resize) each slice to the network's size: `volume_images` and
   `PrepOptions.network_image`, the functions `prep` wrote the training
   slices with, with the options read back from the training data set's
   `prep.json` (`PredictionSettings`);
3. predict the slices in batches: class probabilities, averaged over the
   models of an ensemble and, with test-time augmentation, over the
   left-right flip the trainer's `--augment` uses (`slice_probabilities`);
4. map the probabilities back to the original in-plane grid (linear
   interpolation, padding removed: `restore_probabilities`), and take the
   arg-max there;
5. optionally keep only the largest 3-D connected component of each
   foreground class (`keep_largest_components`);
6. write the label volume with the input's size, spacing, origin and
   direction (`Geometry.image`).

The same functions rebuild a prepared case's volume from its PNG slices
(`prepared_case_volumes`), which is how `evaluate --volumes`, `compare`'s
per-patient table and `--postprocess auto` score whole patients.
"""

import dataclasses
import hashlib
import os
import re

import numpy as np

from keras_focal.data_prep.slicing import labels_of, restore_probabilities
from keras_focal.data_prep.volume import VOLUME_SUFFIXES, CaseError, strip_volume_suffix
from keras_focal.run_folder import CONFIG, path_of, read_run_config, run_model_path

# Post-processing modes of `keras-focal predict --postprocess`.
POSTPROCESS_MODES = ("none", "largest-component", "auto")
TTA_MODES = ("none", "flip")


@dataclasses.dataclass(frozen=True)
class PredictionSettings:
    """How a network's training slices were made, read back from its prepared data set.

    Attributes:
        options: the `PrepOptions` of `prep.json` (size, percentiles, padding).
        source: the prep source (`dicom`, `promise12`, `camvid`...).
        class_names: the classes, index = label value.
        channels: image channels of the slices (1: grey volumes; T2 + ADC: 2).
        data: the prepared data set's folder.
        labels: the `LabelTable` (the value that marks each class in the
            source's label volumes, which predicted volumes are written with).
    """

    options: object
    source: str
    class_names: tuple
    channels: int
    data: str
    labels: object = None

    @classmethod
    def from_dataset(cls, dataset):
        source, options = dataset.preparation()
        return cls(options, source, tuple(dataset.class_names), int(dataset.image_shape()[2]), dataset.path, dataset.labels)

    def same_preparation(self, other):
        """True when slices prepared for one are prepared for the other (the data folder may differ)."""
        return ((self.options, self.class_names, self.channels, self.labels)
                == (other.options, other.class_names, other.channels, other.labels))

    def describe(self):
        o = self.options
        return (f"{o.size}x{o.size} slices{' padded to a square' if o.keep_aspect else ''}, percentiles "
                f"{o.percentiles[0]:g}-{o.percentiles[1]:g}, {self.channels} channel(s), classes {list(self.class_names)}")


@dataclasses.dataclass
class TrainedModel:
    """A loaded network with the settings of the data it was trained on.

    Attributes:
        path: the `.keras` file.
        model: the Keras model (probabilities out).
        settings: `PredictionSettings`.
        run: the run's `config.json` when the file lies in a run folder, else None.
    """

    path: str
    model: object
    settings: PredictionSettings
    run: dict | None = None

    @property
    def augmented(self):
        """Whether the network was trained with the trainer's random left-right flips."""
        return bool(self.run and self.run.get("augment"))

    @property
    def validation_cases(self):
        return list((self.run or {}).get("validation_cases") or [])

    def digest(self):
        """SHA-256 of the model file: what a finished prediction was made with."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


def load_trained_model(path, data=None, dataset=None):
    """Loads `path` with the preparation settings of its training data.

    A model inside a run folder finds its data set through the run's
    `config.json`; `data` (a prepared data set's folder) overrides it and is
    required for a model file on its own. `dataset`: that data set already
    read (a `PreparedDataset`), so that it is not parsed again.

    Raises:
        ValueError: the file is missing or damaged, the settings cannot be
            found, or the model does not fit them (input size, channels, classes).
    """
    import keras_focal
    from keras_focal.data_prep.prepared import PreparedDataset

    if not os.path.isfile(path):
        raise ValueError(f"no model at '{path}'.")
    run = None
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isfile(path_of(folder, CONFIG)):
        run = read_run_config(folder)
    if dataset is not None:
        data = dataset.path
    if data is None and run is None:
        raise ValueError(
            f"'{path}' is not inside a run folder, so the preparation of its training data is unknown: "
            "give --data PREP_DIR, the data set it was trained on (its prep.json holds the slice size and intensity settings)."
        )
    data = data or run["data"]
    if not os.path.isdir(data):
        raise ValueError(f"the training data set '{data}' of '{path}' is not there (moved?): give --data PREP_DIR.")
    settings = PredictionSettings.from_dataset(dataset if dataset is not None else PreparedDataset(data))
    model = keras_focal.load_model(path)
    check_model_settings(model, settings, path)
    return TrainedModel(os.path.abspath(path), model, settings, run)


def check_model_settings(model, settings, name):
    """Raises ValueError unless `model` takes the settings' slices and scores their classes."""
    size, channels = settings.options.size, settings.channels
    model_input, model_output = tuple(model.input_shape[1:]), tuple(model.output_shape[1:])
    problems = []
    if len(model_input) != 3 or model_input[2] != channels or any(s is not None and s != size for s in model_input[:2]):
        problems.append(f"it takes inputs of shape {model_input}, its data set's slices are {(size, size, channels)}")
    if not model_output or model_output[-1] != len(settings.class_names):
        problems.append(f"it scores {model_output[-1] if model_output else 0} classes, its data set has "
                        f"{len(settings.class_names)} ({', '.join(settings.class_names)})")
    if problems:
        raise ValueError(f"'{name}' does not fit the data set '{settings.data}': " + "; ".join(problems) + ".")


def check_ensemble(models):
    """Raises ValueError naming the first pair of models whose inputs, classes or preparation differ."""
    first = models[0]
    for other in models[1:]:
        shapes = (tuple(first.model.input_shape[1:]), tuple(first.model.output_shape[1:]))
        other_shapes = (tuple(other.model.input_shape[1:]), tuple(other.model.output_shape[1:]))
        if shapes != other_shapes or not first.settings.same_preparation(other.settings):
            raise ValueError(
                f"the models '{first.path}' and '{other.path}' cannot be averaged: the first takes "
                f"{first.settings.describe()} (input {shapes[0]}, output {shapes[1]}), the second "
                f"{other.settings.describe()} (input {other_shapes[0]}, output {other_shapes[1]})."
            )


def _is_probability_output(model):
    return model.layers[-1].name == "probabilities"


def network_input(images):
    """uint8 slices `(n, S, S)` or `(n, S, S, C)` -> the float32 network input, as the trainer's pipeline makes it."""
    from keras_focal.data_prep.examples import normalize

    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    return np.asarray(normalize(images), dtype=np.float32)


def _model_probabilities(model, inputs, batch_size):
    import keras

    outputs = []
    for start in range(0, len(inputs), batch_size):
        batch = inputs[start: start + batch_size]
        count = len(batch)
        if count < batch_size:
            # One batch shape for every call: a short batch would retrace the compiled predict step.
            batch = np.concatenate([batch, np.zeros((batch_size - count,) + batch.shape[1:], batch.dtype)])
        # predict_on_batch: NumPy out on every backend, no gradient graph (torch).
        outputs.append(np.asarray(model.predict_on_batch(batch), dtype=np.float32)[:count])
    probabilities = np.concatenate(outputs) if outputs else np.zeros((0,) + tuple(model.output_shape[1:]), np.float32)
    if not _is_probability_output(model):  # a logits model (`activation=None`)
        probabilities = np.asarray(keras.ops.convert_to_numpy(keras.ops.softmax(probabilities, axis=-1)), np.float32)
    return probabilities


def slice_probabilities(models, images, batch_size=8, tta="none"):
    """Class probabilities `(n, S, S, classes)` of uint8 network slices, averaged over `models` and the TTA flips.

    `tta="flip"` adds the left-right flip (the trainer's `--augment` flip):
    the flipped slices' probabilities are flipped back and averaged with the
    identity's, so the prediction of a mirrored volume is the mirror of the
    prediction. Every model sees the same batches.
    """
    if tta not in TTA_MODES:
        raise ValueError(f"`tta` must be one of {TTA_MODES}. Received: tta={tta!r}")
    inputs = network_input(images)
    total = None
    count = 0
    for trained in models:
        model = getattr(trained, "model", trained)
        views = [(inputs, False)] + ([(inputs[:, :, ::-1], True)] if tta == "flip" else [])
        for view, flipped in views:
            probabilities = _model_probabilities(model, np.ascontiguousarray(view), batch_size)
            if flipped:
                probabilities = probabilities[:, :, ::-1]
            total = probabilities if total is None else total + probabilities
            count += 1
    return total / count


def keep_largest_components(labels, classes):
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


# --- Volumes back on their original grid ------------------------------------------

def restore_volume(probabilities, slice_indices, slices, height, width, keep_aspect):
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


def one_hot(masks, num_classes):
    """uint8 label maps -> float32 one-hot; the ignore label (and any value >= num_classes) -> all zeros."""
    return (np.asarray(masks)[..., None] == np.arange(num_classes)).astype(np.float32)


@dataclasses.dataclass
class CaseVolumes:
    """A prepared case on its original grid: predicted and true labels `(z, y, x)`, the grid, which truth it is."""

    case: str
    prediction: np.ndarray
    truth: np.ndarray
    geometry: object  # `keras_focal.data_prep.volume.Geometry`
    truth_source: str = "original"  # or "rebuilt: <why the original label volume was not used>"

    @property
    def spacing_zyx(self):
        return self.geometry.spacing_zyx


@dataclasses.dataclass(frozen=True)
class _CaseLayout:
    """Where a prepared case's slices came from: their indices, the original grid, the padding mode."""

    indices: list
    geometry: object
    keep_aspect: bool

    def restore(self, probabilities):
        slices, height, width = self.geometry.shape
        return restore_volume(probabilities, self.indices, slices, height, width, self.keep_aspect)

    def labels_of_masks(self, masks, num_classes):
        """The prepared masks as a label volume on the original grid (their one-hot restored, then the arg-max)."""
        return labels_of(self.restore(one_hot(masks, num_classes)))


def _case_layout(dataset, case):
    from keras_focal.data_prep.volume import Geometry

    if not dataset.has_volumes():
        raise ValueError(
            f"'{dataset.path}' cannot be rebuilt as volumes: its manifest.csv lacks a voxel spacing or an original "
            f"size ({', '.join(dataset.VOLUME_COLUMNS)}) for some slice (photographs are not volumes)."
        )
    rows = dataset.rows([case])
    if rows.empty:
        raise ValueError(f"case {case!r} has no slice in '{dataset.path}'.")
    first = rows.iloc[0]
    spacing = tuple(float(first[f"spacing_{axis}"]) for axis in "xyz")
    try:
        recorded = dataset.case_record(case).get("geometry")
    except ValueError:  # a folder written by another tool: no record, the manifest's size and spacing only
        recorded = None
    if recorded:
        geometry = Geometry.from_dict(recorded)
    else:  # a folder prepared before the geometry was recorded: size and spacing only
        geometry = Geometry((int(first.original_width), int(first.original_height), int(first.original_slices)), spacing)
    _, options = dataset.preparation()
    return _CaseLayout(rows.slice.astype(int).tolist(), geometry, options.keep_aspect)


def prepared_case_truth(dataset, case):
    """A prepared case's masks put back on its original grid: `(labels (z, y, x) uint8, Geometry)`.

    The inverse of prep's slicing: each mask's one-hot is resized linearly
    to the original size (padding removed) and arg-maxed; slices prep
    dropped (`--slices foreground`) are background; ignored pixels count as
    background. A case prepared at its native size comes back exactly.
    """
    layout = _case_layout(dataset, case)
    _, masks = dataset.load([case], int(dataset.image_shape()[2]))
    return layout.labels_of_masks(masks, dataset.num_classes), layout.geometry


TRUTH_ORIGINAL = "original"
TRUTH_REBUILT = "rebuilt"


def original_case_truth(dataset, case, geometry):
    """`(labels, why_not)`: a prepared case's original label volume as class indices on `geometry`, or why there is none.

    The manifest's `source_mask` names it: a volume file or a DICOM folder,
    read by prep's readers and mapped through the data set's label table
    (`classes.json` `label_values`). `labels` is None, and `why_not` says
    why, when the file is gone, is a DICOM SEG or RTSTRUCT (placed on its
    series' grid only during prep), or does not fit the recorded grid.
    """
    from keras_focal.data_prep.sources import read_mask_volume
    from keras_focal.data_prep.volume import CaseError, Volume, check_same_grid

    sources = dataset.rows([case]).source_mask.dropna().unique() if "source_mask" in dataset.rows([case]) else []
    if len(sources) != 1 or not isinstance(sources[0], str) or not sources[0]:
        return None, "the manifest names no single label volume for it"
    path = sources[0]
    if not os.path.exists(path):
        return None, f"its label volume '{path}' is not on disk"
    if os.path.isfile(path) and path.lower().endswith(".dcm"):
        return None, f"its labels '{path}' are a DICOM object, placed on the series' grid during prep only"
    try:
        truth = read_mask_volume(path)
        on_grid = Volume(np.zeros(geometry.shape, np.uint8), geometry.spacing, geometry.origin, geometry.direction)
        check_same_grid(on_grid, truth, f"the recorded grid of case {case!r} and its label volume '{path}'")
        return dataset.labels.to_indices(truth.array, f"the label volume '{path}'"), None
    except CaseError as error:
        return None, str(error)


def prepared_case_volumes(models, dataset, case, batch_size=8, tta="none"):
    """Predicts the PNG slices of a prepared `case` and puts its prediction and its truth on the original grid.

    The manifest gives the slice indices and the spacing, the case's record
    its grid. The truth is the original label volume where it is on disk
    (`original_case_truth`), else the prepared masks rebuilt through the same
    inverse transform as the probabilities (`prepared_case_truth`);
    `CaseVolumes.truth_source` says which.

    Raises:
        ValueError: the case has no spacing (photographs) or no slice.
    """
    layout = _case_layout(dataset, case)
    images, masks = dataset.load([case], int(dataset.image_shape()[2]))
    predicted = layout.restore(slice_probabilities(models, images, batch_size, tta))
    truth, why_not = original_case_truth(dataset, case, layout.geometry)
    if truth is None:
        truth, source = layout.labels_of_masks(masks, dataset.num_classes), f"{TRUTH_REBUILT}: {why_not}"
    else:
        source = TRUTH_ORIGINAL
    return CaseVolumes(case, labels_of(predicted), truth, layout.geometry, source)


def score_prepared_cases(models, dataset, cases, batch_size=8, tta="none", postprocess=()):
    """`volume_metrics` rows (with `case` and `truth`, which truth scored it) of each prepared case on its original grid.

    `postprocess`: labels whose largest component is kept before scoring.
    """
    from keras_focal.evaluation import volume_metrics

    rows = []
    for case in cases:
        volumes = prepared_case_volumes(models, dataset, case, batch_size, tta)
        prediction = keep_largest_components(volumes.prediction, postprocess) if postprocess else volumes.prediction
        rows += [{"case": case, **row, "truth": volumes.truth_source}
                 for row in volume_metrics(prediction, volumes.truth, spacing_zyx=volumes.spacing_zyx, classes=dataset.class_names)]
    return rows


def run_volume_metrics(run_dir, batch_size=8, dataset=None):
    """Per-patient 3-D metrics of a finished run's test cases, with the model its 2-D scores are of.

    `dataset`: the run's `PreparedDataset` when the caller has read it (a comparison reads it once).

    Writes `RUN/volume_metrics.csv` (one row per case and foreground class)
    atomically and returns it as a DataFrame; a run whose file exists is
    read, not predicted again. None for a run without a model (NaN) or whose
    data set has no voxel spacing (photographs).
    """
    import pandas as pd

    from keras_focal.data_prep.prepared import PreparedDataset
    from keras_focal.files import write_text_atomically

    path = os.path.join(run_dir, "volume_metrics.csv")
    if os.path.exists(path):
        return pd.read_csv(path, dtype={"case": str})
    try:
        model_path = run_model_path(run_dir)
    except ValueError:
        return None  # a NaN run kept no model: it has no scores, as in the 2-D tables
    config = read_run_config(run_dir)
    dataset = dataset if dataset is not None else PreparedDataset(config["data"])
    if not dataset.has_volumes():
        return None
    trained = load_trained_model(model_path, dataset=dataset)
    table = pd.DataFrame(score_prepared_cases([trained], dataset, config["test_cases"], batch_size))
    write_text_atomically(path, table.to_csv(index=False))
    return table


def check_auto_postprocessing(models):
    """Raises ValueError unless some model has validation cases to decide the post-processing on."""
    if not any(m.validation_cases for m in models):
        raise ValueError(
            "--postprocess auto decides on the validation cases of the models' runs, and "
            + ("these runs have none (trained with --validation-fraction 0)" if all(m.run for m in models)
               else f"'{next(m.path for m in models if not m.run)}' is not inside a run folder")
            + "; use --postprocess largest-component or none."
        )


def decide_postprocessing(models, batch_size=8, tta="none"):
    """nnU-Net's choice, per foreground class: keep only its largest component when that raises the validation cases' mean 3-D Dice.

    Each model is scored on its own run's validation cases (an ensemble's
    fold models on theirs), without and with the post-processing; a class
    is post-processed only when its mean Dice over those cases rises.

    Returns:
        `{"classes": [labels kept], "per_class": {name: {"dice_without", "dice_with", "cases", "kept"}}}`.

    Raises:
        ValueError: no model has validation cases (a model outside a run folder, or a run without them).
    """
    import pandas as pd

    from keras_focal.data_prep.prepared import PreparedDataset
    from keras_focal.evaluation import foreground_classes

    check_auto_postprocessing(models)
    class_names = list(models[0].settings.class_names)
    foreground = foreground_classes(class_names)
    without, with_ = [], []
    for trained in models:
        if not trained.validation_cases:
            continue
        dataset = PreparedDataset(trained.settings.data)
        for case in trained.validation_cases:
            volumes = prepared_case_volumes([trained], dataset, case, batch_size, tta)
            kept = keep_largest_components(volumes.prediction, foreground)
            for target, prediction in ((without, volumes.prediction), (with_, kept)):
                target.append({"case": case, **{class_names[label]: _dice(prediction, volumes.truth, label) for label in foreground}})
    without, with_ = pd.DataFrame(without), pd.DataFrame(with_)
    per_class, kept_labels = {}, []
    for label in foreground:
        name = class_names[label]
        before, after = float(without[name].mean()), float(with_[name].mean())  # NaN cases (absent class) skipped
        keep = bool(np.isfinite(before) and np.isfinite(after) and after > before)
        per_class[name] = {"dice_without": before, "dice_with": after, "cases": int(without[name].notna().sum()), "kept": keep}
        if keep:
            kept_labels.append(label)
    return {"classes": kept_labels, "per_class": per_class}


def _dice(prediction, truth, label):
    from keras_focal.evaluation import dice_of_masks

    return dice_of_masks(prediction == label, truth == label)


# --- New volumes ------------------------------------------------------------------

# Files that accompany volumes in a folder and are not cases themselves.
_COMPANION_SUFFIXES = (".raw", ".zraw", ".json", ".txt", ".csv", ".md")


@dataclasses.dataclass(frozen=True)
class InputCase:
    """One volume to predict: a file SimpleITK reads, a DICOM series folder, or one file per channel.

    `channel_paths`: an nnU-Net-named case's files (`X_0000.nii.gz`,
    `X_0001.nii.gz`...), in channel order; `path` is then the first.
    """

    name: str
    path: str
    kind: str  # "volume" or "dicom"
    channel_paths: tuple = ()

    @property
    def inputs(self):
        """Every file the case is read from."""
        return list(self.channel_paths) or [self.path]


# nnU-Net's channel files: CASE_0000.nii.gz, CASE_0001.nii.gz...
_CHANNEL_FILE = re.compile(r"^(.+)_(\d{4})$")


def _holds_dicom(folder):
    from keras_focal.data_prep.dicom import read_dicom_header

    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path) or name.startswith("."):
            continue
        try:
            if read_dicom_header(path) is not None:
                return True
        except CaseError:  # a broken DICOM file: the folder is a series, and reading it names the file
            return True
    return False


def _group_channel_files(files):
    """`[(case, [channel numbers], [paths])]` when every file is named `CASE_dddd` (nnU-Net's imagesTs/), else None."""
    groups = {}
    for path in files:
        match = _CHANNEL_FILE.match(strip_volume_suffix(os.path.basename(path)))
        if not match:
            return None
        groups.setdefault(match.group(1), {})[int(match.group(2))] = path
    return [(name, sorted(channels), [channels[c] for c in sorted(channels)]) for name, channels in groups.items()]


def find_input_cases(path, channels=1):
    """The cases under `path`: a volume file, a DICOM series folder, or a folder of those (one case each).

    A folder whose volume files are all named `CASE_0000`, `CASE_0001`...
    (nnU-Net's `imagesTs/`) gives one case per CASE, its files the channels
    in order; `channels` (the models' input channels) must then be their number.

    Raises:
        ValueError: `path` does not exist, holds no case, two of its cases
            share a name, or a case lacks one of its channel files.
    """
    from keras_focal.data_prep.dataset import safe_case_name

    if os.path.isfile(path):
        return [InputCase(safe_case_name(strip_volume_suffix(os.path.basename(path))), os.path.abspath(path), "volume")]
    if not os.path.isdir(path):
        raise ValueError(f"the input '{path}' does not exist.")
    if _holds_dicom(path):
        return [InputCase(safe_case_name(os.path.basename(os.path.normpath(path))), os.path.abspath(path), "dicom")]
    cases, volumes = [], []
    for entry in sorted(os.listdir(path)):
        full = os.path.join(path, entry)
        if entry.startswith(".") or entry.lower().endswith(_COMPANION_SUFFIXES):
            continue
        if os.path.isdir(full):
            cases.append(InputCase(safe_case_name(entry), os.path.abspath(full), "dicom"))
        elif entry.lower().endswith(VOLUME_SUFFIXES):
            volumes.append(os.path.abspath(full))
        elif entry.lower().endswith(".dcm"):
            cases.append(InputCase(safe_case_name(strip_volume_suffix(entry)), os.path.abspath(full), "dicom"))
    grouped = _group_channel_files(volumes) if volumes else None
    # One channel: only files that are all CASE_0000 are nnU-Net's (Case_0001, Case_0002 may be numbered cases).
    if grouped is not None and (channels > 1 or all(numbers == [0] for _, numbers, _ in grouped)):
        for name, numbers, files in grouped:
            if numbers != list(range(channels)):
                raise ValueError(f"case {name!r} in '{path}' has the channel file(s) "
                                 f"{', '.join(map(os.path.basename, files))}; the models take {channels} channel(s), "
                                 f"files numbered {', '.join(f'{c:04d}' for c in range(channels))}.")
            cases.append(InputCase(safe_case_name(name), files[0], "volume", tuple(files)))
    else:
        cases += [InputCase(safe_case_name(strip_volume_suffix(os.path.basename(v))), v, "volume") for v in volumes]
    if not cases:
        raise ValueError(f"'{path}' holds no volume file ({', '.join(VOLUME_SUFFIXES)}) and no DICOM series.")
    names = [case.name for case in cases]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        clashing = [case.path for case in cases if case.name in repeated]
        raise ValueError(f"several inputs give the case name(s) {repeated}: {clashing}; predict them into separate folders.")
    return cases


def check_input_case(case, series=None, channels=1):
    """Reads the header of `case` (no pixel data) and raises ValueError naming the file unless it is one 3-D volume of `channels` channels.

    A 2-D image is not a volume; a DICOM folder must hold one series, or
    `series` must pick one; a multi-channel case is a 4-D (or vector) file,
    or one scalar file per channel.
    """
    if case.kind == "dicom":
        from keras_focal.data_prep.dicom import read_dicom_header, series_files

        if channels != 1:
            raise ValueError(f"'{case.path}' is a DICOM series, one channel; the models take {channels} channels: give a "
                             "4-D volume file, or one file per channel named CASE_0000, CASE_0001...")
        try:
            if os.path.isdir(case.path):
                series_files(case.path, series)
            elif read_dicom_header(case.path) is None:
                raise CaseError(f"'{case.path}' is not a DICOM file.")
        except CaseError as error:
            raise ValueError(str(error)) from None
        return
    from keras_focal.data_prep.volume import header_channels, read_header

    found = 0
    for path in case.inputs:
        try:
            reader = read_header(path)
        except CaseError as error:
            raise ValueError(str(error)) from None
        dimension = reader.GetDimension()
        if dimension == 2:
            raise ValueError(f"'{path}' is a 2-D image {reader.GetSize()}, not a volume.")
        if dimension > 4:
            raise ValueError(f"'{path}' is {dimension}-D; expected a 3-D volume.")
        here = header_channels(reader)
        if case.channel_paths and here != 1:
            raise ValueError(f"'{path}' holds {here} channels; each channel file of case {case.name!r} must be one scalar volume.")
        found += here
    if found != channels:
        raise ValueError(f"'{case.path}' holds {found} channel(s) per voxel; the models take {channels} "
                         f"({'grey volumes' if channels == 1 else 'one per channel of their training data'}).")


def read_input_volume(case, series=None):
    """The `Volume` of an input case, read by prep's readers (channel files stacked on their shared grid)."""
    from keras_focal.data_prep.dicom import read_dicom_volume
    from keras_focal.data_prep.volume import read_volume, stack_channels

    if case.channel_paths:
        names = [os.path.basename(path) for path in case.channel_paths]
        return stack_channels([read_volume(path) for path in case.channel_paths], names, f"case {case.name!r}")
    return read_dicom_volume(case.path, series=series) if case.kind == "dicom" else read_volume(case.path)


def predict_volume(models, volume, batch_size=8, tta="none", postprocess=(), timings=None):
    """Labels `(z, y, x)` uint8 and probabilities `(z, y, x, classes)` float32 of a `Volume`, on its own grid.

    Its slices are prepared as `prep` prepared the models' training data
    (`volume_images`, each channel on its own percentiles, and
    `PrepOptions.network_image`), predicted
    (`slice_probabilities`), restored to the original grid and arg-maxed;
    `postprocess`: labels whose largest component is kept. `timings`: a
    dict that receives the seconds of each phase ("prepare", "network",
    "restore"), for `bench/predict.py`.
    """
    import time

    from keras_focal.data_prep.sources import volume_images

    clock = {"last": time.perf_counter()}

    def lap(phase):
        now = time.perf_counter()
        if timings is not None:
            timings[phase] = timings.get(phase, 0.0) + now - clock["last"]
        clock["last"] = now

    options = models[0].settings.options
    notes = list(volume.notes)
    grey = volume_images(volume, options, notes, models[0].settings.channels)
    images = np.stack([options.network_image(image) for image in grey])
    lap("prepare")
    probabilities = slice_probabilities(models, images, batch_size, tta)
    lap("network")
    slices, height, width = grey.shape[:3]
    restored = restore_volume(probabilities, range(slices), slices, height, width, options.keep_aspect)
    labels = labels_of(restored)
    if postprocess:
        labels = keep_largest_components(labels, postprocess)
    lap("restore")
    return labels, restored, notes
