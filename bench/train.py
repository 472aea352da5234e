"""Training-epoch throughput of each network through the real trainer, beside the input pipeline's.

Prepares a small synthetic ultrasound set at 224x224 (4 cases, 2 folds),
then for each backend (TensorFlow and JAX, each in a process of its own) and
each model trains 3 epochs with `keras_focal.training.train_run` (ADFL, ADAM,
batch 4) and reports the images/s of the epochs after the first (which
includes tracing) and the images/s of the tf.data pipeline alone. Beside each
it times the baseline a user would write: the same network and loss
(`keras_focal.models` builder, ACW + DualFocalLoss) compiled with Keras's
defaults and trained by a plain `model.fit` on the same slices held as NumPy
arrays, in the same process; `trainer/fit` is the ratio of seconds per epoch.
`--jit auto|on|off` is the trainer's `--jit-compile` (default auto, Keras's
own choice; the baseline always uses Keras's default). On a GPU add
`--mixed-precision`.

`--processes 1 2` also measures JAX `--strategy data-parallel` with one
process and with two on 127.0.0.1 (gloo collectives on CPU), the same global
batch of 4 shared between them; the two-process figure is the group's
images/s, the pipeline figure one process's share.

    python bench/train.py [--models deeplabv3_plus vgg19_fcn unet] [--backends tensorflow,jax,torch]
                          [--processes 1 2] [--mixed-precision] [--jit auto|on|off]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pandas as pd  # noqa: E402

from keras_focal.data_prep.dataset import PrepOptions, prepare_dataset  # noqa: E402
from keras_focal.data_prep.sources import PROSTATE_CLASSES, find_dicom_cases  # noqa: E402
from keras_focal.data_prep.synthetic import make_ultrasound_like  # noqa: E402
from keras_focal.training import RunConfig, train_run  # noqa: E402

JIT_MODES = {"auto": "auto", "on": True, "off": False}


def plain_fit_seconds(data, out, epochs):
    """Seconds per epoch (median after the first) of a plain `model.fit` with Keras's defaults.

    The network, loss, optimiser and initial weights of the trainer's run in
    `out`, its training slices as NumPy arrays.
    """
    import time

    import keras
    import numpy as np
    from PIL import Image

    from keras_focal.training import run as trainer

    with open(os.path.join(out, "config.json")) as stream:
        record = json.load(stream)
    config = RunConfig(data=data, out=out, model=record["model"], loss=record["loss"], model_options=record["model_options"])
    manifest = pd.read_csv(os.path.join(data, "manifest.csv"))
    rows = manifest[manifest.case.isin(record["train_cases"])]
    images = np.stack([np.asarray(Image.open(os.path.join(data, path))) for path in rows.image])[..., None] / 127.5 - 1.0
    masks = np.stack([np.asarray(Image.open(os.path.join(data, path))) for path in rows["mask"]]).astype("int32")
    model = trainer.build_model(config, record["input_shape"], len(record["class_names"]), record["class_weights"])
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=trainer.build_loss(config, record["class_weights"], record["class_names"]),
    )

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    seconds = []
    model.fit(images.astype("float32"), masks, batch_size=config.batch_size, epochs=epochs, verbose=0, callbacks=[Timer()])
    return float(np.median(seconds[1:]))


def pipeline_images_per_second(data, out, shard):
    """Images per second this process's tf.data input pipeline alone delivers (one epoch, no model).

    The run's training slices, batches and augmentation as `train_run` feeds
    them (the trainer itself no longer spends an epoch measuring this).
    """
    import time

    from keras_focal.data_prep.prepared import PreparedDataset
    from keras_focal.training.data import training_dataset

    with open(os.path.join(out, "config.json")) as stream:
        record = json.load(stream)
    dataset = PreparedDataset(data)
    train = dataset.examples(record["train_cases"], record["input_shape"][-1], record["input_mode"] == "stream")
    start = time.perf_counter()
    count = 0
    for images, _ in training_dataset(train, record["batch_size"], 0, 1, record["seed"], record["augment"], shard=shard):
        count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def measure(data, models, epochs, mixed_precision, jit, root, strategy="default"):
    """Trains each model in this process (and its group, if any); returns table rows."""
    from keras_focal.training import processes

    group = processes.from_environment()
    processes.start(group)
    rows = []
    for model in models:
        out = os.path.join(root, model)
        train_run(
            RunConfig(data=data, out=out, model=model, loss="adfl", epochs=epochs, validation_fraction=0.0,
                      mixed_precision=mixed_precision, jit_compile=JIT_MODES[jit], strategy=strategy),
            verbose=0,
        )
        history = pd.read_csv(os.path.join(out, "history.csv"))
        images = len(pd.read_csv(os.path.join(data, "manifest.csv")).pipe(lambda m: m[m.case.isin(metrics_cases(out))]))
        if strategy == "data-parallel":
            images -= images % 4  # whole global batches only
        seconds = float(history.seconds.iloc[1:].median())
        with open(os.path.join(out, "config.json")) as stream:
            compiled = json.load(stream)["jit_compile_used"]
        baseline = plain_fit_seconds(data, out, epochs) if strategy == "default" and not mixed_precision else float("nan")
        pipeline = pipeline_images_per_second(data, out, (group.process_id, group.num_processes))
        rows.append((model, images, seconds, images / seconds, pipeline, compiled, seconds / baseline))
        print(f"  {model}: done", file=sys.stderr, flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["deeplabv3_plus", "vgg19_fcn", "unet"])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--jit", choices=sorted(JIT_MODES), default="auto", help="the trainer's --jit-compile (default: auto)")
    parser.add_argument("--processes", nargs="+", type=int, default=[], help="also JAX data-parallel on this many processes")
    parser.add_argument("--worker", nargs=3, metavar=("BACKEND", "DATA", "STRATEGY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first one includes tracing)")

    root = tempfile.mkdtemp(prefix="keras-focal-bench-train-")
    try:
        if args.worker:
            rows = measure(args.worker[1], args.models, args.epochs, args.mixed_precision, args.jit, root, args.worker[2])
            print("BENCH-JSON " + json.dumps(rows), flush=True)
            return 0
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        unknown = sorted(set(backends) - {"tensorflow", "jax", "torch"})
        if unknown:
            parser.error(f"--backends: unknown {unknown}; allowed: tensorflow, jax, torch")
        source = make_ultrasound_like(os.path.join(root, "trus"), cases=4, seed=0, slices_range=(16, 16), sizes=(256,), progress=False)
        cases, _ = find_dicom_cases(os.path.join(source, "dicom"), os.path.join(source, "masks"))
        data = os.path.join(root, "prepared")
        prepare_dataset(cases, data, PROSTATE_CLASSES, PrepOptions(size=224), folds=2, progress=False)
        if any(count < 1 for count in args.processes):
            parser.error("--processes: counts must be positive")
        setups = [(backend, "default", 1) for backend in backends] + [("jax", "data-parallel", n) for n in args.processes]
        table = []
        for backend, strategy, count in setups:
            label = backend if strategy == "default" else f"jax data-parallel, {count} process{'es' if count > 1 else ''}"
            print(f"measuring {label} ...", file=sys.stderr, flush=True)
            command = [sys.executable, os.path.abspath(__file__), "--worker", backend, data, strategy, "--epochs", str(args.epochs),
                       "--models", *args.models] + (["--mixed-precision"] if args.mixed_precision else []) + ["--jit", args.jit]
            rows = _run_group(command, dict(os.environ, KERAS_BACKEND=backend), count)
            if rows is None:
                print(f"error: the {label} measurement failed", file=sys.stderr)
                return 1
            table += [(label, *row) for row in rows]
        print()
        print(f"--jit {args.jit}; trainer/fit: seconds per epoch against a plain model.fit with Keras's defaults")
        print("| backend | network | compiled | images/epoch | s/epoch | train img/s | trainer/fit | pipeline img/s |")
        print("|---|---|---|---:|---:|---:|---:|---:|")
        for label, model, images, seconds, rate, pipeline, compiled, ratio in table:
            print(f"| {label} | {model} | {'yes' if compiled else 'no'} | {images} | {seconds:.1f} | {rate:.2f} | {ratio:.2f} | {pipeline:.0f} |")
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_group(command, env, count):
    """Runs `command` as a group of `count` processes on 127.0.0.1; process 0's rows, or None."""
    import socket

    if count > 1:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = env | {"KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}", "KERAS_DISTRIBUTION_NUM_PROCESSES": str(count)}
    workers = [
        subprocess.Popen(command, env=env | ({"KERAS_DISTRIBUTION_PROCESS_ID": str(i)} if count > 1 else {}),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(count)
    ]
    try:
        outputs = [worker.communicate() for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    lines = [line for line in outputs[0][0].splitlines() if line.startswith("BENCH-JSON ")]
    if any(worker.returncode for worker in workers) or not lines:
        sys.stderr.write("".join(stderr[-3000:] for _, stderr in outputs))
        return None
    return json.loads(lines[-1][len("BENCH-JSON "):])


def metrics_cases(out):
    import json

    with open(os.path.join(out, "config.json")) as stream:
        return json.load(stream)["train_cases"]


if __name__ == "__main__":
    sys.exit(main())
