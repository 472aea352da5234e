"""Slices per second of `prepare_dataset` on synthetic PROMISE12-sized data, 1 vs 2 workers.

Writes `--cases` synthetic PROMISE12-style cases (15-54 slices of 256^2 to
512^2, as the challenge's data) to a temporary folder, then prepares them
into 224x224 PNG pairs with 1 and with 2 worker processes, in this one
process, and prints the times and the speed-up. Target: 50 cases (about
1,400 slices) in under 60 s on 2 cores. `--format nii.gz` converts the
cases to gzipped NIfTI first and prepares them as `prep volumes` does (the
NIfTI reader checks the whole gzip stream).

    python bench/prep.py [--cases 50] [--workers 1 2] [--format mhd|nii.gz]
"""

import argparse
import os
import shutil
import tempfile
import time

from keras_focal.data_prep.dataset import PrepOptions, prepare_dataset
from keras_focal.data_prep.decathlon import find_volume_pairs
from keras_focal.data_prep.labels import LabelTable
from keras_focal.data_prep.sources import PROSTATE_CLASSES, find_promise12_cases
from keras_focal.data_prep.synthetic import make_promise12_like


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", default="mhd", choices=("mhd", "nii.gz"),
                        help="the cases' file format: PROMISE12's MetaImage, or gzipped NIfTI (`prep volumes`)")
    args = parser.parse_args(argv)

    root = tempfile.mkdtemp(prefix="keras-focal-bench-prep-")
    try:
        start = time.perf_counter()
        source = make_promise12_like(os.path.join(root, "promise12"), cases=args.cases, seed=args.seed, progress=False)
        print(f"generated {args.cases} synthetic cases in {time.perf_counter() - start:.1f} s ({os.cpu_count()} cores)")
        if args.format == "mhd":
            cases, _, _ = find_promise12_cases(source)
        else:
            cases = _as_nifti(source, os.path.join(root, "nifti"))
        rows = []
        for workers in args.workers:
            out = os.path.join(root, f"prepared-{workers}")
            start = time.perf_counter()
            report = prepare_dataset(cases, out, PROSTATE_CLASSES, PrepOptions(), workers=workers, progress=False)
            seconds = time.perf_counter() - start
            assert report.exit_status == 0, report.summary()
            rows.append((workers, report.total_slices, seconds))
        print(f"\nformat: {args.format}")
        print("| workers | cases | slices | seconds | slices/s | speed-up |")
        print("|---:|---:|---:|---:|---:|---:|")
        for workers, slices, seconds in rows:
            print(f"| {workers} | {args.cases} | {slices} | {seconds:.1f} | {slices / seconds:.0f} | {rows[0][2] / seconds:.2f}x |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _as_nifti(source, folder):
    """The PROMISE12-style cases of `source` as `images/CaseNN.nii.gz` + `masks/CaseNN.nii.gz`, found as `prep volumes`."""
    import glob

    import SimpleITK as sitk

    for sub in ("images", "masks"):
        os.makedirs(os.path.join(folder, sub))
    for path in glob.glob(os.path.join(source, "*", "Case??.mhd")):
        name = os.path.basename(path)[: -len(".mhd")]
        sitk.WriteImage(sitk.ReadImage(path), os.path.join(folder, "images", f"{name}.nii.gz"))
        sitk.WriteImage(sitk.ReadImage(path[: -len(".mhd")] + "_segmentation.mhd"),
                        os.path.join(folder, "masks", f"{name}.nii.gz"))
    labels = LabelTable.parse(",".join(PROSTATE_CLASSES))
    cases, _, problems, _, _ = find_volume_pairs(os.path.join(folder, "images"), os.path.join(folder, "masks"), labels)
    assert not problems, problems
    return cases


if __name__ == "__main__":
    main()
