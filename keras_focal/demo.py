"""The built-in demonstration: synthetic TRUS data, prepared, compared, evaluated, plotted.

`keras-focal demo` is `compare` with small settings: it writes a synthetic
DICOM ultrasound set like the paper's TRUS data (no download), prepares it
as 64x64 slices with patient-level folds, trains a small U-Net with CE,
WCE, FL and ADFL under ADAM and SGDM from the same initial weights on
fold 0, and writes `results.csv`, `results.md` and `results.png`.
"""

import os

DEMO_CASES = 6
DEMO_IMAGE_SIZE = 64
DEMO_MODEL_OPTIONS = {"base_filters": 8, "depth": 3}


def run(out="demo_output", epochs=40, seed=0, quiet=False):
    from keras_focal.data_prep.dataset import PrepOptions, prepare_dataset
    from keras_focal.data_prep.sources import PROSTATE_CLASSES, find_dicom_cases
    from keras_focal.data_prep.synthetic import make_ultrasound_like
    from keras_focal.training.compare import CompareConfig, compare

    source = os.path.join(out, "data", "trus")
    prepared = os.path.join(out, "data", "synthetic_trus")
    if not os.path.isdir(source):
        make_ultrasound_like(source, cases=DEMO_CASES, seed=seed, progress=not quiet)
    cases, problems = find_dicom_cases(os.path.join(source, "dicom"), os.path.join(source, "masks"))
    report = prepare_dataset(
        cases, prepared, PROSTATE_CLASSES, PrepOptions(size=DEMO_IMAGE_SIZE), source="dicom", seed=seed,
        failures=problems, progress=not quiet,
    )
    print(report.summary())
    if report.exit_status:
        return report.exit_status
    config = CompareConfig(
        data=prepared,
        out=out,
        models=["unet"],
        losses=["ce", "wce", "fl", "adfl"],
        optimizers=["adam", "sgdm"],
        folds=[0],
        seeds=[seed],
        run_options={"epochs": epochs, "model_options": DEMO_MODEL_OPTIONS},
    )
    compare(config, verbose=0, progress=not quiet)
    print()
    with open(os.path.join(out, "results.md")) as stream:
        print(stream.read())
    print(f"Wrote {out}/results.csv, results.md, results.png and one folder per run under {out}/runs/")
    return 0
