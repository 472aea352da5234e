"""Loss + gradient cost of keras-focal's losses relative to Keras cross-entropy.

One command covers every path a user can take: the TensorFlow backend with
`jit_compile` off and on (one process), the JAX backend under `jax.jit` (how
Keras always runs it; a second process that this script starts itself), and
integer, one-hot and soft (label-smoothed) labels. For each path it times
`loss(labels, logits)` plus its gradient with respect to the logits in
interleaved rounds, each round timing Keras's own cross-entropy too, and reports
the median over rounds of the ratio within a round (the machine's drift cancels
within a round, not between medians):

- softmax losses on a `(4, 224, 224, 11)` logits batch (the papers' setting)
  against `SparseCategoricalCrossentropy` (integer labels) or
  `CategoricalCrossentropy` (one-hot and soft labels);
- sigmoid focal losses on a dense-detection batch `(8, 100000, 20)` (anchors x
  classes, 1% positives) against `BinaryCrossentropy`.

    python bench/losses.py [--repeats 20] [--backends tensorflow,jax] [--small]
                           [--losses REGEX] [--labels integer,one-hot,soft,binary]

The last column is the issue's target for that loss (`--small` shrinks the
shapes for a smoke run; its ratios mean little).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# (loss name, target ratio to Keras's cross-entropy on the same path)
TARGETS = {
    "CrossEntropy": 1.05,
    "WeightedCrossEntropy": 1.05,
    "CategoricalFocalLoss(gamma=2)": 1.15,
    "CategoricalFocalLoss(gamma=0.5, epsilon=1e-3)": 1.15,
    "DualFocalLoss()": 1.5,
    "BinaryFocalLoss(gamma=2, alpha=0.25)": 1.2,
    "DiceLoss()": 1.2,  # issue 16
}


def _candidates(keras, losses, num_classes):
    weights = [float(w) for w in (0.5 + np.arange(num_classes) / num_classes) / num_classes]
    softmax = {
        "CrossEntropy": losses.CrossEntropy(from_logits=True),
        "WeightedCrossEntropy": losses.WeightedCrossEntropy(weights, from_logits=True),
        "CategoricalFocalLoss(gamma=2)": losses.CategoricalFocalLoss(gamma=2.0, from_logits=True),
        "CategoricalFocalLoss(gamma=0.5, epsilon=1e-3)": losses.CategoricalFocalLoss(
            gamma=0.5, epsilon=1e-3, from_logits=True
        ),
        "DualFocalLoss()": losses.DualFocalLoss(from_logits=True),
        "DiceLoss()": losses.DiceLoss(from_logits=True),
        "keras CategoricalFocalCrossentropy": keras.losses.CategoricalFocalCrossentropy(
            from_logits=True
        ),
    }
    sigmoid = {
        "BinaryFocalLoss(gamma=2, alpha=0.25)": losses.BinaryFocalLoss(
            gamma=2.0, alpha=0.25, from_logits=True
        ),
        "keras BinaryFocalCrossentropy": keras.losses.BinaryFocalCrossentropy(
            gamma=2.0, alpha=0.25, apply_class_balancing=True, from_logits=True
        ),
    }
    return softmax, sigmoid


def _inputs(small):
    rng = np.random.default_rng(0)
    softmax_shape = (2, 32, 32, 11) if small else (4, 224, 224, 11)
    detection_shape = (2, 1000, 20) if small else (8, 100000, 20)
    logits = rng.normal(scale=4.0, size=softmax_shape).astype(np.float32)
    masks = rng.integers(0, softmax_shape[-1], size=softmax_shape[:-1]).astype(np.int32)
    one_hot = np.eye(softmax_shape[-1], dtype=np.float32)[masks]
    soft = (one_hot * 0.9 + 0.1 / softmax_shape[-1]).astype(np.float32)  # label smoothing 0.1
    anchors = rng.normal(scale=4.0, size=detection_shape).astype(np.float32) - 4.0
    targets = (rng.random(detection_shape) < 0.01).astype(np.float32)
    return {
        "softmax": (logits, {"integer": masks, "one-hot": one_hot, "soft": soft}),
        "sigmoid": (anchors, {"binary": targets}),
    }


def _step_factory(backend, jit):
    """Returns make(loss, labels, logits) -> a callable timing loss + gradient."""
    if backend == "tensorflow":
        import tensorflow as tf

        def make(loss, labels, logits):
            y, x = tf.constant(labels), tf.constant(logits)

            @tf.function(jit_compile=jit, reduce_retracing=True)
            def step(y, x):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    value = loss(y, x)
                return value, tape.gradient(value, x)

            return lambda: step(y, x), lambda out: out[1].numpy()

        return make

    import jax

    def make(loss, labels, logits):
        y, x = jax.numpy.asarray(labels), jax.numpy.asarray(logits)
        step = jax.jit(jax.value_and_grad(lambda x, y: loss(y, x)))
        return lambda: step(x, y), lambda out: np.asarray(out[1])

    return make


def worker(backend, repeats, small, only=None, label_kinds=None):
    """Measures one backend in this process; prints JSON rows."""
    os.environ["KERAS_BACKEND"] = backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    sys.path.insert(0, HERE)
    from _timing import interleaved_times, paired_ratios

    from keras_focal import losses

    inputs = _inputs(small)
    num_classes = inputs["softmax"][0].shape[-1]
    softmax, sigmoid = _candidates(keras, losses, num_classes)
    if only:
        pattern = re.compile(only)
        softmax = {k: v for k, v in softmax.items() if pattern.search(k)}
        sigmoid = {k: v for k, v in sigmoid.items() if pattern.search(k)}
    modes = (False, True) if backend == "tensorflow" else (True,)
    rows = []
    for jit in modes:
        make = _step_factory(backend, jit)
        for family, candidates in (("softmax", softmax), ("sigmoid", sigmoid)):
            logits, label_sets = inputs[family]
            for label_kind, labels in label_sets.items():
                if label_kinds and label_kind not in label_kinds:
                    continue
                if family == "sigmoid":
                    baseline = keras.losses.BinaryCrossentropy(from_logits=True)
                elif label_kind == "integer":
                    baseline = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
                else:
                    baseline = keras.losses.CategoricalCrossentropy(from_logits=True)
                base_name = f"keras {type(baseline).__name__}"
                steps = {}
                for name, loss in [(base_name, baseline), *candidates.items()]:
                    if label_kind == "integer" and name.startswith("keras Categorical"):
                        continue  # Keras's focal loss takes dense labels only
                    run, fetch = make(loss, labels, logits)
                    for _ in range(3):  # trace, compile, warm up
                        out = run()
                    gradient = fetch(out)
                    if not np.all(np.isfinite(gradient)):
                        raise RuntimeError(f"{name}: non-finite gradient ({backend}, jit={jit})")
                    steps[name] = (lambda run=run, fetch=fetch: fetch(run()))
                times = interleaved_times(steps, repeats)
                ratios = paired_ratios(times, base_name)
                for name, values in times.items():
                    seconds = statistics.median(values)
                    rows.append(
                        {
                            "backend": backend,
                            "jit": jit,
                            "labels": label_kind,
                            "loss": name,
                            "ms": seconds * 1e3,
                            "ratio": ratios[name],
                        }
                    )
    versions = {"keras": keras.__version__}
    if backend == "tensorflow":
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
        versions["device"] = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    else:
        import jax

        versions["jax"] = jax.__version__
        versions["device"] = jax.devices()[0].platform.upper()
    print("BENCH-JSON " + json.dumps({"rows": rows, "versions": versions}), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--small", action="store_true", help="tiny shapes (a smoke run)")
    parser.add_argument("--losses", help="only the losses whose name matches this regular expression")
    parser.add_argument("--labels", help="comma-separated subset of integer,one-hot,soft,binary")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    label_kinds = None
    if args.labels:
        label_kinds = [k.strip() for k in args.labels.split(",") if k.strip()]
        bad = sorted(set(label_kinds) - {"integer", "one-hot", "soft", "binary"})
        if bad:
            parser.error(f"--labels: unknown {bad}; allowed: integer, one-hot, soft, binary")
    if args.losses:
        try:
            re.compile(args.losses)
        except re.error as error:
            parser.error(f"--losses: not a regular expression ({error})")
    if args.worker:
        worker(args.worker, args.repeats, args.small, args.losses, label_kinds)
        return 0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - {"tensorflow", "jax"})
    if unknown:
        parser.error(f"--backends: unknown {unknown}; allowed: tensorflow, jax")
    results = []
    for backend in backends:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        command = [sys.executable, os.path.abspath(__file__), "--worker", backend,
                   "--repeats", str(args.repeats)] + (["--small"] if args.small else [])
        command += (["--losses", args.losses] if args.losses else []) + (["--labels", args.labels] if args.labels else [])
        print(f"measuring {backend} ...", file=sys.stderr, flush=True)
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH-JSON ")]
        if done.returncode != 0 or not lines:
            sys.stderr.write(done.stderr[-4000:])
            print(f"error: the {backend} measurement failed (exit {done.returncode})", file=sys.stderr)
            return 1
        results.append(json.loads(lines[-1][len("BENCH-JSON "):]))
    for result in results:
        v = result["versions"]
        print(f"# {v['device']}: " + ", ".join(f"{k} {val}" for k, val in v.items() if k != "device"))
    print(f"# {args.repeats} interleaved rounds: median time, and median over rounds of the time over Keras's "
          "cross-entropy's in the same round (same path)\n")
    print("| backend | labels | loss | ms (loss + gradient) | ratio | target |")
    print("|---|---|---|---:|---:|---:|")
    for result in results:
        for row in result["rows"]:
            mode = {"tensorflow": "TF + XLA" if row["jit"] else "TF", "jax": "JAX (jit)"}[row["backend"]]
            target = TARGETS.get(row["loss"])
            mark = "" if target is None else (f"≤ {target:.2f}× " + ("✓" if row["ratio"] <= target else "✗"))
            print(f"| {mode} | {row['labels']} | {row['loss']} | {row['ms']:.1f} | {row['ratio']:.2f}× | {mark} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
