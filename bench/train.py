"""Training-epoch throughput of each network through the real trainer, beside the input pipeline's.

Prepares a small synthetic ultrasound set at 224x224 (4 cases, 2 folds),
then for each model trains 3 epochs with `keras_focal.training.train_run`
(ADFL, ADAM, batch 4) and reports the images/s of the epochs after the
first (which includes tracing) and the images/s of the tf.data pipeline
alone, in one process. On a GPU add `--mixed-precision` / `--jit`.

    python bench/train.py [--models deeplabv3_plus vgg19_fcn unet] [--mixed-precision] [--jit]
"""

import argparse
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pandas as pd  # noqa: E402

from keras_focal.data_prep.dataset import PrepOptions, prepare_dataset  # noqa: E402
from keras_focal.data_prep.sources import PROSTATE_CLASSES, find_dicom_cases  # noqa: E402
from keras_focal.data_prep.synthetic import make_ultrasound_like  # noqa: E402
from keras_focal.training import RunConfig, train_run  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["deeplabv3_plus", "vgg19_fcn", "unet"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--jit", action="store_true")
    args = parser.parse_args(argv)

    root = tempfile.mkdtemp(prefix="keras-focal-bench-train-")
    try:
        source = make_ultrasound_like(os.path.join(root, "trus"), cases=4, seed=0, slices_range=(16, 16), sizes=(256,), progress=False)
        cases, _ = find_dicom_cases(os.path.join(source, "dicom"), os.path.join(source, "masks"))
        data = os.path.join(root, "prepared")
        prepare_dataset(cases, data, PROSTATE_CLASSES, PrepOptions(size=224), folds=2, progress=False)
        rows = []
        for model in args.models:
            out = os.path.join(root, model)
            metrics = train_run(
                RunConfig(data=data, out=out, model=model, loss="adfl", epochs=args.epochs, validation_fraction=0.0,
                          mixed_precision=args.mixed_precision, jit_compile=args.jit),
                verbose=0,
            )
            history = pd.read_csv(os.path.join(out, "history.csv"))
            images = len(pd.read_csv(os.path.join(data, "manifest.csv")).pipe(lambda m: m[m.case.isin(metrics_cases(out))]))
            seconds = history.seconds.iloc[1:].median()
            rows.append((model, images, seconds, images / seconds, metrics["pipeline_images_per_second"]))
            print(f"  {model}: done", flush=True)
        print()
        print("| network | images/epoch | s/epoch | train img/s | pipeline img/s |")
        print("|---|---:|---:|---:|---:|")
        for model, images, seconds, rate, pipeline in rows:
            print(f"| {model} | {images} | {seconds:.1f} | {rate:.2f} | {pipeline:.0f} |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def metrics_cases(out):
    import json

    with open(os.path.join(out, "config.json")) as stream:
        return json.load(stream)["train_cases"]


if __name__ == "__main__":
    main()
