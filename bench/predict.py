"""Prediction of a whole volume: slices/s, and how much of the time is not the network.

Builds the papers' DeepLabV3+ (ResNet-18, 224x224, random weights: nothing is
downloaded), makes a synthetic 512x512x54 prostate MRI (PROMISE12's largest
in-plane size) and runs `keras_focal.inference.Predictor.predict_volume` on it, the
path `keras-focal predict` takes: the input file read and checked whole
(read: `read_volume`, from an int16 file in `--input-format`), intensity
normalisation and resize to 224² (prepare), the network in batches
(network), the probabilities resized back to 512² and arg-maxed (restore),
then the label volume written in the input's format with its geometry
(write). Prints slices/s and each phase's share; the target is pre- and
post-processing at most 20% of the total. Then times `volume_metrics` on one
512x512x54 pair (target: under a second).

    python bench/predict.py [--slices 54] [--size 512] [--batch 8] [--repeats 3] [--tta] [--input-format nii.gz]
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_focal.data_prep.dataset import PrepOptions  # noqa: E402
from keras_focal.data_prep.synthetic import make_mri_volume  # noqa: E402
from keras_focal.data_prep.volume import Volume, read_volume, write_image_atomically, write_volume_like  # noqa: E402
from keras_focal.evaluation import volume_metrics  # noqa: E402
from keras_focal.inference import PredictionSettings, Predictor, TrainedModel  # noqa: E402
from keras_focal.models import deeplabv3_plus  # noqa: E402

CLASSES = ("background", "prostate")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=54)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tta", action="store_true", help="with the left-right flip (twice the network's work)")
    parser.add_argument("--input-format", default="nii.gz", choices=("nii.gz", "nii", "mha", "nrrd"),
                        help="the file the input volume is read from, and its label volume written to")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    model = deeplabv3_plus((224, 224, 1), len(CLASSES))
    settings = PredictionSettings(PrepOptions(size=224), "promise12", CLASSES, 1, "")
    predictor = Predictor([TrainedModel("", model, settings)], batch_size=args.batch, tta="flip" if args.tta else "none")
    image, mask, spacing = make_mri_volume(np.random.default_rng(0), args.slices, args.size)
    tta = "flip" if args.tta else "none"
    rounds = []
    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, f"input.{args.input_format}")
        write_image_atomically(Volume(image, spacing).geometry().image(image), source)
        predictor.predict_volume(read_volume(source))  # warm-up: traces the predict step
        for _ in range(args.repeats):
            timings = {}
            start = time.perf_counter()
            volume = read_volume(source)
            timings["read"] = time.perf_counter() - start
            labels, _, _ = predictor.predict_volume(volume, timings=timings)
            written = time.perf_counter()
            write_volume_like(volume, labels, os.path.join(folder, f"labels.{args.input_format}"))
            timings["write"] = time.perf_counter() - written
            timings["total"] = time.perf_counter() - start
            rounds.append(timings)
    median = {phase: statistics.median(r[phase] for r in rounds) for phase in rounds[0]}
    total = median["total"]
    print(f"DeepLabV3+ (ResNet-18) 224², {args.slices} slices of {args.size}², batch {args.batch}, tta {tta}, "
          f"backend {keras.backend.backend()}, {os.cpu_count()} CPU(s); median of {args.repeats}")
    print()
    print("| phase | seconds | share |")
    print("|---|---:|---:|")
    for phase in ("read", "prepare", "network", "restore", "write"):
        print(f"| {phase} | {median[phase]:.2f} | {100 * median[phase] / total:.1f}% |")
    print(f"| total | {total:.2f} | {args.slices / total:.2f} slices/s |")
    outside = total - median["network"]
    print(f"\npre- and post-processing: {100 * outside / total:.1f}% of the total (target <= 20%)")

    truth = mask.astype(np.uint8)
    prediction = np.roll(truth, (1, 6, -4), axis=(0, 1, 2))  # a plausible error: shifted 1 slice, 6 and 4 pixels
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        volume_metrics(prediction, truth, spacing_zyx=spacing[::-1], classes=CLASSES)
        times.append(time.perf_counter() - start)
    print(f"volume_metrics of one {args.slices}x{args.size}x{args.size} pair: {statistics.median(times):.3f} s (target < 1 s)")


if __name__ == "__main__":
    main()
