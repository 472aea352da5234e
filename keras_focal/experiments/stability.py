"""The focal-loss stability study of "A Note on the Stability of the Focal Loss".

Four parts, each writing CSV and PNG files to an output folder:

- `gradient_sweep`: loss and gradient against the logit (the paper's Figure 2);
- `classification_grid`: the paper's CNN on thresholded digits, epochs
  completed before the first NaN for every (loss, gamma, threshold, noise)
  (Figure 4);
- `segmentation_curves`: the paper's U-Net on thresholded digit images,
  per-epoch loss and the NaN epoch (Figure 5);
- `class_counts`: samples per class for each threshold (Table 1).

Three losses are compared: the naive focal loss (torchvision's
`sigmoid_focal_loss`, reimplemented here as the reference of the
instability; not exported as a loss), the stabilised loss (epsilon = 1e-3)
and keras-focal's exact loss (epsilon = 0), plus Keras's own
`BinaryFocalCrossentropy` in the gradient sweep.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_focal.files import check_output_folder, save_figure_atomically, write_json_atomically, write_text_atomically
from keras_focal.losses import BinaryFocalLoss
from keras_focal.models import stability_cnn, stability_unet
from keras_focal.training.callbacks import NaNRecorder
from keras_focal.types import Array, ArrayLike, PathLike, TensorLike

if TYPE_CHECKING:
    import pandas as pd

LOSS_KINDS = ("naive", "stabilised", "exact")
PAPER_GAMMAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
PAPER_THRESHOLDS = tuple(range(9))
PAPER_NOISE = (0.0, 0.5, 0.75)
STABILISING_EPSILON = 1e-3


@dataclasses.dataclass
class StudySettings:
    """The axes and training settings of a study run.

    The "paper" preset is the seed's: SGD lr 1e-3, momentum 0.9, batch 64,
    alpha 0.5, 100 classification epochs, 1000 segmentation epochs, all
    of MNIST. The "quick" preset shrinks the grid (5 gammas, thresholds
    0/4/8, noise 0/0.5), the data (2,048 images) and the epochs (20), and
    raises the learning rate to 5e-2 so that predictions become confident,
    and the instability shows, on a CPU.
    """

    gammas: tuple = (0.1, 0.5, 0.9, 0.0, 2.0)
    thresholds: tuple = (0, 4, 8)
    noise: tuple = (0.0, 0.5)
    segmentation_noise: tuple = (0.0,)
    losses: tuple = LOSS_KINDS
    epochs: int = 20
    segmentation_epochs: int = 30
    subset: int = 2048
    segmentation_subset: int = 256
    learning_rate: float = 5e-2
    momentum: float = 0.9
    batch_size: int = 64
    alpha: float = 0.5
    segmentation_gamma: float = 0.5
    data: str = "auto"
    seed: int = 0

    @classmethod
    def preset(cls, name: str) -> StudySettings:
        if name == "quick":
            return cls()
        if name == "paper":
            return cls(
                gammas=PAPER_GAMMAS, thresholds=PAPER_THRESHOLDS, noise=PAPER_NOISE, segmentation_noise=PAPER_NOISE, epochs=100,
                segmentation_epochs=1000, subset=0, segmentation_subset=0, learning_rate=1e-3,
            )
        raise ValueError(f"unknown preset {name!r}; allowed: quick, paper.")

    def differences_from_paper(self) -> dict:
        paper = StudySettings.preset("paper")
        return {
            f.name: (getattr(self, f.name), getattr(paper, f.name))
            for f in dataclasses.fields(self)
            if f.name not in ("data", "seed") and getattr(self, f.name) != getattr(paper, f.name)
        }


# --- losses ----------------------------------------------------------------

def naive_sigmoid_focal_loss(
    y_true: TensorLike, logits: TensorLike, gamma: float, alpha: float = 0.5, epsilon: float = 0.0,
    reduction: str = "mean",
) -> TensorLike:
    """torchvision's `sigmoid_focal_loss` in Keras ops: the textbook formula that NaNs.

    `ce * (1 - p_t + epsilon)^gamma` with `p_t` from `sigmoid(logits)`: when
    `p_t` rounds to 1 (|logit| >= 17 in float32) and `0 < gamma < 1`, the
    derivative of the power is infinite and the gradient becomes NaN.
    """
    from keras import ops

    y_true = ops.cast(y_true, "float32")
    logits = ops.cast(logits, "float32")
    p = ops.sigmoid(logits)
    ce = ops.maximum(logits, 0.0) - logits * y_true + ops.log1p(ops.exp(-ops.abs(logits)))
    # PyTorch's binary_cross_entropy_with_logits has a hand-written backward, sigmoid(x) - y;
    # autodiff of the max/abs form would give a zero subgradient at logit 0 instead.
    ce = ops.stop_gradient(ce) + ops.stop_gradient(p - y_true) * (logits - ops.stop_gradient(logits))
    p_t = p * y_true + (1 - p) * (1 - y_true)
    # PyTorch's pow backward is 0 for a zero exponent; TensorFlow's is 0 * 0^-1 = NaN at p_t = 1.
    # gamma = 0 is plain cross-entropy in torchvision, so it is here too.
    loss = ce if gamma == 0 else ce * ops.power(1 - p_t + epsilon, gamma)
    if alpha is not None and alpha >= 0:
        loss = (alpha * y_true + (1 - alpha) * (1 - y_true)) * loss
    return ops.mean(loss) if reduction == "mean" else loss


def make_loss(kind: str, gamma: float, alpha: float = 0.5) -> Callable:
    """The training loss of a study cell: "naive", "stabilised" (epsilon 1e-3) or "exact"."""
    if kind == "naive":
        def naive(y_true: TensorLike, y_pred: TensorLike):
            return naive_sigmoid_focal_loss(y_true, y_pred, gamma, alpha)

        return naive
    if kind == "stabilised":
        return BinaryFocalLoss(gamma=gamma, alpha=alpha, epsilon=STABILISING_EPSILON, from_logits=True)
    if kind == "exact":
        return BinaryFocalLoss(gamma=gamma, alpha=alpha, from_logits=True)
    raise ValueError(f"unknown loss {kind!r}; allowed: {', '.join(LOSS_KINDS)}.")


# --- data ------------------------------------------------------------------

MNIST_MISSING = (
    "MNIST is not on this machine (tensorflow-datasets' data dir or ~/.keras/datasets/mnist.npz); "
    "fetch it yourself (e.g. `python -c \"import keras; keras.datasets.mnist.load_data()\"`) or use --data digits."
)


def load_digits_images(source: str = "auto") -> tuple[Array, Array, str]:
    """`(images float32 (N, 28, 28, 1) in [0, 1], labels int, description)`.

    `source`: "mnist" (tensorflow-datasets' prepared copy or `~/.keras/
    datasets/mnist.npz`; never downloads), "digits" (scikit-learn's 1,797
    8x8 digits, upsampled to 28x28 with anti-aliasing), or "auto" (MNIST
    when it is on the machine, else digits).
    """
    if source not in ("auto", "mnist", "digits"):
        raise ValueError(f"unknown data source {source!r}; allowed: auto, mnist, digits.")
    if source in ("auto", "mnist"):
        found = _local_mnist()
        if found is not None:
            return found
        if source == "mnist":
            raise ValueError(MNIST_MISSING)
    from skimage.transform import resize
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = resize(digits.images / 16.0, (len(digits.images), 28, 28), order=1, anti_aliasing=True)
    images = np.clip(images, 0, 1).astype(np.float32)[..., None]
    return images, digits.target.astype(np.int64), "scikit-learn digits (1,797 8x8 images upsampled to 28x28), not MNIST"


def _local_mnist():
    path = os.path.expanduser(os.path.join("~", ".keras", "datasets", "mnist.npz"))
    if os.path.exists(path):
        with np.load(path) as data:
            return (data["x_train"].astype(np.float32) / 255.0)[..., None], data["y_train"].astype(np.int64), f"MNIST training set ({path})"
    try:
        import tensorflow_datasets as tfds

        builder = tfds.builder("mnist")
        if not builder.is_prepared():
            return None
        data = tfds.as_numpy(builder.as_dataset(split="train", batch_size=-1))
        return (data["image"].astype(np.float32) / 255.0), data["label"].astype(np.int64), "MNIST training set (tensorflow-datasets)"
    except Exception:  # no tensorflow-datasets or no prepared copy: fall back
        return None


def class_counts(labels: ArrayLike, thresholds: Sequence[int] = PAPER_THRESHOLDS) -> pd.DataFrame:
    """Table 1: samples of class A (digit <= threshold) and B, and the A/B ratio."""
    import pandas as pd

    rows = []
    for threshold in thresholds:
        a = int(np.sum(labels <= threshold))
        b = int(np.sum(labels > threshold))
        rows.append({"threshold": threshold, "class_A": a, "class_B": b, "A/B": round(a / b, 2) if b else float("inf")})
    return pd.DataFrame(rows)


def _subset(images: ArrayLike, labels, count, seed: int):
    if not count or count >= len(images):
        return images, labels
    order = np.random.default_rng(seed).permutation(len(images))[:count]
    return images[order], labels[order]


def add_noise(images: ArrayLike, amplitude: float, seed: int) -> Array:
    """The paper's noise: uniform [0, 1) times `amplitude`, added to the pixels, clipped to [0, 1]."""
    if amplitude == 0:
        return images
    noise = np.random.default_rng(seed).random(images.shape, dtype=np.float32) * amplitude
    return np.clip(images + noise, 0.0, 1.0)


# --- the three parts -------------------------------------------------------

def gradient_sweep(
    gammas: Sequence[float] = (0.1, 0.5, 0.9, 1.0, 2.0), logits: ArrayLike | None = None, alpha: float = 0.5,
) -> pd.DataFrame:
    """Loss and d(loss)/d(logit) of each implementation for y = 0 and 1 (float32).

    Returns a DataFrame with columns implementation, gamma, y, logit, loss, gradient.
    """
    import keras
    import pandas as pd
    import tensorflow as tf

    logits = np.linspace(-38, 38, 153).astype(np.float32) if logits is None else np.asarray(logits, np.float32)
    rows = []
    for gamma in gammas:
        implementations = {
            "naive": lambda y, x, g=gamma: naive_sigmoid_focal_loss(y, x, g, alpha, reduction="none")[:, 0],
            "keras": keras.losses.BinaryFocalCrossentropy(
                apply_class_balancing=True, alpha=alpha, gamma=gamma, from_logits=True, reduction=None
            ),
            "stabilised": BinaryFocalLoss(gamma=gamma, alpha=alpha, epsilon=STABILISING_EPSILON, from_logits=True, reduction=None),
            "exact": BinaryFocalLoss(gamma=gamma, alpha=alpha, from_logits=True, reduction=None),
        }
        for name, loss in implementations.items():
            for label in (0.0, 1.0):
                x = tf.constant(logits[:, None])
                y = tf.fill(tf.shape(x), label)
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    values = loss(y, x)  # one loss per logit
                    total = tf.reduce_sum(values)
                gradient = tape.gradient(total, x).numpy()[:, 0]
                for logit, loss_value, grad in zip(logits, np.asarray(values).ravel(), gradient):
                    rows.append({"implementation": name, "gamma": gamma, "y": int(label), "logit": float(logit),
                                 "loss": float(loss_value), "gradient": float(grad)})
    return pd.DataFrame(rows)


def train_classifier(
    images: ArrayLike, labels: ArrayLike, loss: Callable, settings: StudySettings, seed: int,
) -> tuple[int, Any]:
    """Trains `stability_cnn` and returns the number of epochs completed before the first NaN."""
    import keras

    keras.utils.set_random_seed(seed)
    model = stability_cnn(images.shape[1:])
    model.compile(optimizer=keras.optimizers.SGD(settings.learning_rate, momentum=settings.momentum), loss=loss)
    recorder = NaNRecorder()
    model.fit(images, labels, batch_size=settings.batch_size, epochs=settings.epochs, shuffle=True,
              callbacks=[recorder], verbose=0)
    return (recorder.nan_epoch - 1) if recorder.nan_epoch else settings.epochs, recorder.nan_epoch


def train_segmenter(images: ArrayLike, masks: ArrayLike, loss: Callable, settings: StudySettings, seed: int) -> Any:
    """Trains `stability_unet`; returns per-epoch losses (NaN from the first NaN on) and the NaN epoch."""
    import keras

    keras.utils.set_random_seed(seed)
    model = stability_unet(images.shape[1:])
    model.compile(optimizer=keras.optimizers.SGD(settings.learning_rate, momentum=settings.momentum), loss=loss)
    recorder = NaNRecorder()
    history = model.fit(images, masks, batch_size=settings.batch_size, epochs=settings.segmentation_epochs,
                        callbacks=[recorder], verbose=0)
    losses = list(history.history["loss"])
    return losses + [float("nan")] * (settings.segmentation_epochs - len(losses)), recorder.nan_epoch


def _write_csv(table, path: str) -> None:
    write_text_atomically(path, table.to_csv(index=False))


def classification_grid(
    out: PathLike, settings: StudySettings, images: ArrayLike, labels: ArrayLike, progress: bool = True,
) -> pd.DataFrame:
    """Every (loss, gamma, threshold, noise) cell; resumable through `classification.csv`."""
    import pandas as pd
    from tqdm.auto import tqdm

    path = os.path.join(out, "classification.csv")
    done = pd.read_csv(path) if os.path.exists(path) else pd.DataFrame(columns=["loss", "gamma", "threshold", "noise"])
    finished = {(r.loss, float(r.gamma), int(r.threshold), float(r.noise)) for r in done.itertuples()}
    images, labels = _subset(images, labels, settings.subset, settings.seed)
    cells = [(k, float(g), int(t), float(n)) for k in settings.losses for g in settings.gammas for t in settings.thresholds for n in settings.noise]
    rows = done.to_dict("records")
    for kind, gamma, threshold, noise in tqdm(cells, desc="classification cells", disable=None if progress else True):
        if (kind, gamma, threshold, noise) in finished:
            continue
        targets = (labels <= threshold).astype(np.float32)[:, None]  # class A = 1
        noisy = add_noise(images, noise, settings.seed + 1)
        completed, nan_epoch = train_classifier(noisy, targets, make_loss(kind, gamma, settings.alpha), settings, settings.seed)
        rows.append({"loss": kind, "gamma": gamma, "threshold": threshold, "noise": noise,
                     "epochs_completed": completed, "nan_epoch": nan_epoch, "epochs": settings.epochs})
        _write_csv(pd.DataFrame(rows), path)
    return pd.DataFrame(rows)


def segmentation_curves(
    out: PathLike, settings: StudySettings, images: ArrayLike, progress: bool = True,
) -> pd.DataFrame:
    """The U-Net runs for each (loss, noise); resumable through `segmentation.csv`."""
    import pandas as pd
    from tqdm.auto import tqdm

    path = os.path.join(out, "segmentation.csv")
    done = pd.read_csv(path) if os.path.exists(path) else pd.DataFrame(columns=["loss", "noise"])
    finished = {(r.loss, float(r.noise)) for r in done.drop_duplicates(["loss", "noise"]).itertuples()}
    images, _ = _subset(images, np.zeros(len(images)), settings.segmentation_subset, settings.seed)
    masks = (images > 0.5).astype(np.float32)  # masks first, noise after (the paper's order)
    rows = done.to_dict("records")
    for kind in tqdm(settings.losses, desc="segmentation runs", disable=None if progress else True):
        for noise in settings.segmentation_noise:
            if (kind, float(noise)) in finished:
                continue
            noisy = add_noise(images, noise, settings.seed + 2)
            losses, nan_epoch = train_segmenter(noisy, masks, make_loss(kind, settings.segmentation_gamma, settings.alpha), settings, settings.seed)
            for epoch, value in enumerate(losses, start=1):
                rows.append({"loss": kind, "noise": float(noise), "epoch": epoch, "focal_loss": value, "nan_epoch": nan_epoch})
            _write_csv(pd.DataFrame(rows), path)
    return pd.DataFrame(rows)


# --- figures and report ----------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str) -> None:
    if figure.get_layout_engine() is None:  # a constrained layout arranges itself
        figure.tight_layout()
    save_figure_atomically(figure, path, dpi=110)


def plot_gradient_sweep(table: pd.DataFrame, path: PathLike, gamma: float = 0.5) -> None:
    """Gradient against logit per implementation; NaN gradients as markers in a band of their own.

    Each implementation that has NaN gradients gets its own row of markers
    below the curves, so that one implementation's markers cannot hide
    another's.
    """
    path = os.fspath(path)
    plt = _plt()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    names = list(dict.fromkeys(table.implementation))
    colours = {name: f"C{index}" for index, name in enumerate(names)}
    for axis, label in zip(axes, (1, 0)):
        part = table[(table.gamma == gamma) & (table.y == label)]
        finite_values = part.gradient[np.isfinite(part.gradient)]
        low, high = float(finite_values.min()), float(finite_values.max())
        step = 0.12 * (high - low)
        row = 0
        for name, group in part.groupby("implementation", sort=False):
            finite = np.isfinite(group.gradient)
            axis.plot(group.logit[finite], group.gradient[finite], label=name, color=colours[name],
                      linewidth=2.5 if name == "naive" else 1.5, linestyle="-" if name in ("naive", "exact") else "--")
            if (~finite).any():
                row += 1
                level = low - row * step
                axis.plot(group.logit[~finite], np.full((~finite).sum(), level), "x", color=colours[name],
                          label=f"{name}: NaN gradient ({int((~finite).sum())} of {len(group)})")
        axis.set_ylim(low - (row + 1) * step, high + step)
        axis.set(title=f"gamma = {gamma}, y = {label}", xlabel="logit", ylabel="d loss / d logit")
        axis.legend(fontsize="small", loc="upper left")  # the curves are flat and low there
    figure.suptitle("Focal loss gradient in float32 (alpha = 0.5); NaN gradients marked below the curves",
                    fontsize="medium")
    _save(figure, path)


def plot_classification(table: pd.DataFrame, path: PathLike) -> None:
    """Heat maps of the epochs completed before the first NaN: rows noise, columns loss."""
    path = os.fspath(path)
    plt = _plt()
    kinds = list(dict.fromkeys(table.loss))
    noises = sorted(table.noise.unique())
    epochs = float(table.epochs.max())
    figure, axes = plt.subplots(len(noises), len(kinds), figsize=(3.4 * len(kinds) + 1.2, 3.1 * len(noises) + 0.8),
                                squeeze=False, sharex=True, sharey=True, layout="constrained")
    colour_map = plt.get_cmap("viridis")
    for row, noise in enumerate(noises):
        for column, kind in enumerate(kinds):
            part = table[(table.loss == kind) & (table.noise == noise)]
            grid = part.pivot_table(index="gamma", columns="threshold", values="epochs_completed")
            axis = axes[row, column]
            image = axis.imshow(grid.to_numpy(), vmin=0, vmax=epochs, cmap=colour_map, aspect="auto")
            axis.set_xticks(range(len(grid.columns)), [f"{t:g}" for t in grid.columns])
            axis.set_yticks(range(len(grid.index)), [f"{g:g}" for g in grid.index])
            for (i, j), value in np.ndenumerate(grid.to_numpy()):
                # dark text on the light (yellow) end of viridis, white on the dark end
                red, green, blue, _ = colour_map(value / epochs if epochs else 0.0)
                light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
                axis.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=9,
                          color="black" if light else "white", fontweight="bold" if value < epochs else "normal")
            axis.set_title(f"{kind}, noise {noise:g}", fontsize="medium")
            if row == len(noises) - 1:
                axis.set_xlabel("threshold (digits <= t are class A)")
            if column == 0:
                axis.set_ylabel("gamma")
    figure.colorbar(image, ax=axes.ravel().tolist(), shrink=0.7, label=f"epochs completed (of {epochs:.0f}) before NaN")
    figure.suptitle("Classification: epochs completed before the first NaN loss (bold: the run reached NaN)")
    _save(figure, path)


def plot_segmentation(table: pd.DataFrame, path: PathLike) -> None:
    path = os.fspath(path)
    import pandas as pd

    plt = _plt()
    kinds = list(dict.fromkeys(table.loss))
    figure, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 3.4), squeeze=False, sharey=True)
    for axis, kind in zip(axes[0], kinds):
        for noise, group in table[table.loss == kind].groupby("noise"):
            line, = axis.plot(group.epoch, group.focal_loss, label=f"noise {noise:g}")
            nan_epoch = pd.to_numeric(group.nan_epoch, errors="coerce").dropna()
            if len(nan_epoch):
                epoch = int(nan_epoch.iloc[0])
                previous = group[group.epoch < epoch].focal_loss.dropna()
                axis.plot([epoch], [previous.iloc[-1] if len(previous) else 0], "x", color=line.get_color(), markersize=10)
        axis.set(title=kind, xlabel="epoch", ylabel="focal loss", yscale="log")
        axis.legend(fontsize="small")
    _save(figure, path)


def summarize(classification: pd.DataFrame, segmentation: pd.DataFrame | None, sweep: pd.DataFrame | None) -> dict:
    """Which cells NaN'd, per loss; the acceptance pattern as counts."""
    import pandas as pd

    if classification is None:
        raise ValueError("`classification` is required: the summary counts its NaN cells.")
    unstable = classification.gamma.between(0, 1, inclusive="neither")
    nan = pd.to_numeric(classification.nan_epoch, errors="coerce").notna()
    summary: dict[str, Any] = {
        "naive_nan_cells_unstable_gamma": int((nan & unstable & (classification.loss == "naive")).sum()),
        "naive_cells_unstable_gamma": int((unstable & (classification.loss == "naive")).sum()),
        "naive_nan_cells_stable_gamma": int((nan & ~unstable & (classification.loss == "naive")).sum()),
        "stabilised_nan_cells": int((nan & (classification.loss == "stabilised")).sum()),
        "exact_nan_cells": int((nan & (classification.loss == "exact")).sum()),
    }
    if segmentation is not None and len(segmentation):
        runs = segmentation.drop_duplicates(["loss", "noise"])
        summary["segmentation_nan_epochs"] = {f"{r.loss} noise {r.noise:g}": (None if pd.isna(r.nan_epoch) else int(r.nan_epoch)) for r in runs.itertuples()}
    if sweep is not None:
        g = sweep[(sweep.gamma == 0.5)]
        summary["sweep_nan_gradients_gamma_0.5"] = {k: int(np.isnan(v.gradient).sum()) for k, v in g.groupby("implementation")}
    return summary


def check_study(
    out: PathLike, settings: StudySettings,
    parts: Sequence[str] = ("sweep", "table", "classification", "segmentation"),
) -> None:
    """The study's pre-flight: raises ValueError when it cannot run into `out` (writes nothing).

    Raises:
        ValueError: `out` is not a writable folder, or holds a study with
            other training settings, or `--data mnist` is asked for and
            MNIST is not on the machine.
    """
    check_output_folder(out, "the study folder")
    if settings.data == "mnist" and set(parts) - {"sweep"} and _local_mnist() is None:
        raise ValueError(MNIST_MISSING)
    settings_path = os.path.join(out, "settings.json")
    if os.path.exists(settings_path):
        description = dataclasses.asdict(settings)
        with open(settings_path) as stream:
            previous = json.load(stream)
        keep = ("epochs", "segmentation_epochs", "subset", "segmentation_subset", "learning_rate", "momentum", "batch_size", "alpha", "segmentation_gamma", "data", "seed")
        changed = [k for k in keep if json.dumps(previous.get(k)) != json.dumps(description.get(k))]
        if changed:
            raise ValueError(f"'{out}' holds a study with other settings ({', '.join(changed)}); use another --out.")


def run_study(
    out: PathLike, settings: StudySettings,
    parts: Sequence[str] = ("sweep", "table", "classification", "segmentation"), progress: bool = True,
    log: Callable[[str], object] = print,
) -> dict:
    """Runs the chosen parts into `out`; finished cells are skipped on a re-run. Returns the summary.

    Raises:
        ValueError: `out` holds a study with other training settings
            (`check_study`, before anything is written).
    """
    import pandas as pd

    check_study(out, settings, parts)
    os.makedirs(out, exist_ok=True)
    write_json_atomically(os.path.join(out, "settings.json"), dataclasses.asdict(settings))

    differences = settings.differences_from_paper()
    if differences:
        log("differs from the paper: " + "; ".join(f"{k}={v[0]} (paper {v[1]})" for k, v in differences.items()))
    sweep = classification = segmentation = None
    data_description = None
    if "sweep" in parts:
        sweep = gradient_sweep()
        _write_csv(sweep, os.path.join(out, "gradient_sweep.csv"))
        plot_gradient_sweep(sweep, os.path.join(out, "gradient_sweep.png"))
    if {"table", "classification", "segmentation"} & set(parts):
        images, labels, data_description = load_digits_images(settings.data)
        log(f"data: {data_description}")
    if "table" in parts:
        _write_csv(class_counts(labels), os.path.join(out, "table1.csv"))
    if "classification" in parts:
        classification = classification_grid(out, settings, images, labels, progress)
        plot_classification(classification, os.path.join(out, "classification.png"))
    if "segmentation" in parts:
        segmentation = segmentation_curves(out, settings, images, progress)
        plot_segmentation(segmentation, os.path.join(out, "segmentation.png"))
    summary = summarize(classification if classification is not None else pd.DataFrame(columns=["gamma", "nan_epoch", "loss"]), segmentation, sweep)
    summary["data"] = data_description
    summary["differences_from_paper"] = {k: list(v) if isinstance(v[0], tuple) else v for k, v in differences.items()}
    write_json_atomically(os.path.join(out, "summary.json"), json.loads(json.dumps(summary, default=str)))
    return summary
