"""Peak memory of one `DiceScore` update on a large segmentation batch, against Keras's `MeanIoU`.

Each metric is updated once, eagerly, on a batch of `--batch` x `--size`²
pixels with `--classes` classes (random scores and masks), in a fresh
process, and that process's peak resident memory is printed beside the
peak of a process that builds the same batch without updating a metric.
The baseline is Keras's own confusion-matrix metric (`MeanIoU`, a scatter).

    python bench/metrics.py [--batch 16] [--size 224] [--classes 11]
"""

import argparse
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CHILD = """
import resource, sys
import numpy as np
import keras
batch, size, classes, which = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(0)
scores = rng.random((batch, size, size, classes), dtype=np.float32)
masks = rng.integers(0, classes, (batch, size, size)).astype(np.int32)
if which == "keras MeanIoU":
    metric = keras.metrics.MeanIoU(num_classes=classes, sparse_y_pred=False)
    metric.update_state(masks, scores)
elif which == "DiceScore":
    from keras_focal.metrics import DiceScore
    metric = DiceScore(num_classes=classes)
    metric.update_state(masks, scores)
    float(metric.result())
print("PEAK-RSS-KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_mib(arguments):
    done = subprocess.run([sys.executable, "-c", CHILD, *map(str, arguments)], capture_output=True, text=True, check=True)
    line = [line for line in done.stdout.splitlines() if line.startswith("PEAK-RSS-KIB")][-1]
    return int(line.split()[1]) / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=11)
    args = parser.parse_args(argv)
    import keras

    batch = (args.batch, args.size, args.classes)
    rows = [(which, peak_mib((*batch, which))) for which in ("no metric", "keras MeanIoU", "DiceScore")]
    base = rows[0][1]
    print(f"one eager update on {args.batch}x{args.size}x{args.size} pixels, {args.classes} classes, "
          f"backend {keras.backend.backend()}, {os.cpu_count()} CPU(s)\n")
    print("| metric | peak RSS (MiB) | above the batch alone (MiB) |")
    print("|---|---:|---:|")
    for which, peak in rows:
        print(f"| {which} | {peak:.0f} | {peak - base:.0f} |")


if __name__ == "__main__":
    main()
