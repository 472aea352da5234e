"""Loss + gradient cost of keras-focal's losses relative to Keras cross-entropy.

Runs on the TensorFlow backend (CPU unless a GPU is visible): for a logits batch
of shape (4, 224, 224, 11), times `loss(labels, logits)` plus its gradient with
respect to the logits inside one `tf.function` (with and without
`jit_compile`), takes the median of repeated runs in this one process, and
prints each loss's time as a ratio to `keras.losses.CategoricalCrossentropy`
(one-hot labels) or `SparseCategoricalCrossentropy` (integer labels) measured
the same way.

    python bench/losses.py [--repeats 30] [--batch 4] [--size 224] [--classes 11]
"""

import argparse
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from _timing import interleaved_medians  # noqa: E402  (bench/ is on sys.path)
from keras_focal import losses  # noqa: E402


def compile_step(loss, labels, logits, jit_compile):
    @tf.function(jit_compile=jit_compile)
    def step(y, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(y, x)
        return value, tape.gradient(value, x)

    for _ in range(3):  # trace, compile, warm up
        value, gradient = step(labels, logits)
    assert np.isfinite(value.numpy()) and np.all(np.isfinite(gradient.numpy()))
    return lambda: step(labels, logits)[1].numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=11)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    shape = (args.batch, args.size, args.size, args.classes)
    logits = tf.constant(rng.normal(scale=4.0, size=shape).astype(np.float32))
    masks = rng.integers(0, args.classes, size=shape[:-1])
    sparse = tf.constant(masks.astype(np.int32))
    one_hot = tf.constant(np.eye(args.classes, dtype=np.float32)[masks])
    weights = list(np.linspace(0.5, 1.5, args.classes) / args.classes)

    candidates = {
        "CrossEntropy": losses.CrossEntropy(from_logits=True),
        "WeightedCrossEntropy": losses.WeightedCrossEntropy(weights, from_logits=True),
        "CategoricalFocalLoss(gamma=2)": losses.CategoricalFocalLoss(gamma=2.0, from_logits=True),
        "CategoricalFocalLoss(gamma=0.5)": losses.CategoricalFocalLoss(gamma=0.5, from_logits=True),
        "CategoricalFocalLoss(gamma=0.5, eps=1e-3)": losses.CategoricalFocalLoss(
            gamma=0.5, epsilon=1e-3, from_logits=True
        ),
        "DualFocalLoss": losses.DualFocalLoss(from_logits=True),
        "DualFocalLoss(gamma=0.5)": losses.DualFocalLoss(gamma=0.5, from_logits=True),
        "keras CategoricalFocalCrossentropy": keras.losses.CategoricalFocalCrossentropy(
            from_logits=True
        ),
    }
    print(f"device: {'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'}, "
          f"logits {shape}, median of {args.repeats}, TensorFlow {tf.__version__}, Keras {keras.__version__}")
    rows = []
    for labels_kind, labels, baseline in (
        ("one-hot", one_hot, keras.losses.CategoricalCrossentropy(from_logits=True)),
        ("integer", sparse, keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
    ):
        for jit in (False, True):
            base_name = f"keras {type(baseline).__name__}"
            steps = {base_name: compile_step(baseline, labels, logits, jit)}
            for name, loss in candidates.items():
                if labels_kind == "integer" and name.startswith("keras "):
                    continue  # Keras's focal loss takes one-hot labels only
                steps[name] = compile_step(loss, labels, logits, jit)
            medians = interleaved_medians(steps, args.repeats)
            for name, seconds in medians.items():
                rows.append((labels_kind, jit, name, seconds * 1e3, seconds / medians[base_name]))
    print()
    print("| labels | jit_compile | loss | ms (loss + gradient) | ratio to Keras CE |")
    print("|---|---|---|---:|---:|")
    for labels_kind, jit, name, ms, ratio in rows:
        print(f"| {labels_kind} | {jit} | {name} | {ms:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
