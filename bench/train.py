"""Training-epoch throughput of each network through the real trainer, beside the input pipeline's.

Prepares a small synthetic ultrasound set at 224x224 (4 cases, 2 folds),
then for each backend (TensorFlow and JAX, each in a process of its own) and
each model trains 3 epochs with `keras_focal.training.train_run` (ADFL, ADAM,
batch 4) and reports the images/s of the epochs after the first (which
includes tracing) and the images/s of the tf.data pipeline alone. On a GPU
add `--mixed-precision` / `--jit`.

`--processes 1 2` also measures JAX `--strategy data-parallel` with one
process and with two on 127.0.0.1 (gloo collectives on CPU), the same global
batch of 4 shared between them; the two-process figure is the group's
images/s, the pipeline figure one process's share.

    python bench/train.py [--models deeplabv3_plus vgg19_fcn unet] [--backends tensorflow,jax]
                          [--processes 1 2] [--mixed-precision] [--jit]
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


def measure(data, models, epochs, mixed_precision, jit, root, strategy="default"):
    """Trains each model in this process (and its group, if any); returns table rows."""
    from keras_focal.training import processes

    group = processes.from_environment()
    processes.start(group)
    rows = []
    for model in models:
        out = os.path.join(root, model)
        metrics = train_run(
            RunConfig(data=data, out=out, model=model, loss="adfl", epochs=epochs, validation_fraction=0.0,
                      mixed_precision=mixed_precision, jit_compile=jit, strategy=strategy),
            verbose=0,
        )
        history = pd.read_csv(os.path.join(out, "history.csv"))
        images = len(pd.read_csv(os.path.join(data, "manifest.csv")).pipe(lambda m: m[m.case.isin(metrics_cases(out))]))
        if strategy == "data-parallel":
            images -= images % 4  # whole global batches only
        seconds = float(history.seconds.iloc[1:].median())
        rows.append((model, images, seconds, images / seconds, metrics["pipeline_images_per_second"]))
        print(f"  {model}: done", file=sys.stderr, flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["deeplabv3_plus", "vgg19_fcn", "unet"])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--jit", action="store_true")
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
        unknown = sorted(set(backends) - {"tensorflow", "jax"})
        if unknown:
            parser.error(f"--backends: unknown {unknown}; allowed: tensorflow, jax")
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
                       "--models", *args.models] + (["--mixed-precision"] if args.mixed_precision else []) + (["--jit"] if args.jit else [])
            rows = _run_group(command, dict(os.environ, KERAS_BACKEND=backend), count)
            if rows is None:
                print(f"error: the {label} measurement failed", file=sys.stderr)
                return 1
            table += [(label, *row) for row in rows]
        print()
        print("| backend | network | images/epoch | s/epoch | train img/s | pipeline img/s |")
        print("|---|---|---:|---:|---:|---:|")
        for label, model, images, seconds, rate, pipeline in table:
            print(f"| {label} | {model} | {images} | {seconds:.1f} | {rate:.2f} | {pipeline:.0f} |")
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
    lines = [l for l in outputs[0][0].splitlines() if l.startswith("BENCH-JSON ")]
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
