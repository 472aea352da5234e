"""Peak memory of a training run against the data set's size, in memory and streaming input.

Prepares a synthetic ultrasound set at 224x224, then builds two prepared sets
from it by replicating its cases under new names (the PNGs are copied, so
decoding costs the same): one of `--slices` slices and one four times larger.
For each set and `--input memory|stream` it trains one epoch of a tiny U-Net
(ADFL, batch 4) through `keras_focal.training.train_run` in a fresh process
and reports that process's peak resident memory. With streaming input the
peak must not grow with the set; in memory it grows by the decoded slices.

    python bench/memory.py [--slices 1000]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CHILD = """
import json, resource, sys
from keras_focal.training import RunConfig, train_run
train_run(RunConfig(data=sys.argv[1], out=sys.argv[2], epochs=1, input=sys.argv[3], loss="adfl",
                    model_options={"base_filters": 4, "depth": 2}), verbose=0)
print("PEAK-RSS-KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def replicate(source, out, copies):
    """A prepared set holding `copies` renamed copies of every case of `source`."""
    import pandas as pd

    manifest = pd.read_csv(os.path.join(source, "manifest.csv"))
    folds = pd.read_csv(os.path.join(source, "folds.csv"))
    with open(os.path.join(source, "classes.json")) as stream:
        classes = json.load(stream)
    os.makedirs(os.path.join(out, "images"))
    os.makedirs(os.path.join(out, "masks"))
    rows, fold_rows, per_case = [], [], {}
    for copy in range(copies):
        for _, row in manifest.iterrows():
            case = f"{row.case}c{copy}"
            new = row.copy()
            new["case"] = case
            for column in ("image", "mask"):
                name = f"{column}s/{case}_{os.path.basename(row[column]).split('_')[-1]}"
                shutil.copyfile(os.path.join(source, row[column]), os.path.join(out, name))
                new[column] = name
            rows.append(new)
        for _, row in folds.iterrows():
            fold_rows.append({"case": f"{row.case}c{copy}", "fold": row.fold})
            per_case[f"{row.case}c{copy}"] = classes["per_case"][row.case]
    pd.DataFrame(rows).to_csv(os.path.join(out, "manifest.csv"), index=False)
    pd.DataFrame(fold_rows).to_csv(os.path.join(out, "folds.csv"), index=False)
    with open(os.path.join(out, "classes.json"), "w") as stream:
        json.dump(classes | {"per_case": per_case}, stream)
    return len(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=1000, help="slices of the smaller set")
    args = parser.parse_args(argv)
    if args.slices < 10:
        parser.error("--slices must be at least 10")

    from keras_focal.data_prep.dataset import PrepOptions, prepare_dataset
    from keras_focal.data_prep.sources import PROSTATE_CLASSES, find_dicom_cases
    from keras_focal.data_prep.synthetic import make_ultrasound_like

    root = tempfile.mkdtemp(prefix="keras-focal-memory-")
    try:
        source = make_ultrasound_like(os.path.join(root, "trus"), cases=4, seed=0, progress=False)
        cases, _ = find_dicom_cases(f"{source}/dicom", f"{source}/masks")
        base = os.path.join(root, "base")
        prepare_dataset(cases, base, PROSTATE_CLASSES, PrepOptions(size=224), folds=2, progress=False)
        import pandas as pd

        base_slices = len(pd.read_csv(os.path.join(base, "manifest.csv")))
        copies = max(1, round(args.slices / base_slices))
        sets = {}
        for factor in (1, 4):
            path = os.path.join(root, f"x{factor}")
            sets[factor] = (path, replicate(base, path, copies * factor))
        print(f"base set: {base_slices} slices; sets of {sets[1][1]} and {sets[4][1]} slices (224x224)", flush=True)
        print("\n| slices | decoded slices (MB) | input | peak RSS (MB) |\n|---:|---:|---|---:|")
        for factor, (path, slices) in sets.items():
            for mode in ("memory", "stream"):
                done = subprocess.run(
                    [sys.executable, "-c", CHILD, path, os.path.join(root, f"run-{factor}-{mode}"), mode],
                    capture_output=True, text=True,
                )
                peaks = [line for line in done.stdout.splitlines() if line.startswith("PEAK-RSS-KIB ")]
                if done.returncode != 0 or not peaks:
                    sys.stderr.write(done.stderr[-3000:])
                    print(f"error: the {mode} run on {slices} slices failed", file=sys.stderr)
                    return 1
                peak = int(peaks[-1].split()[1]) / 1024
                decoded = slices * 224 * 224 * 2 / 1e6
                print(f"| {slices} | {decoded:.0f} | {mode} | {peak:.0f} |", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
