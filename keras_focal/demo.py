"""The built-in demonstration: synthetic TRUS data, prepared, compared, evaluated, plotted.

`keras-focal demo` is `compare` with small settings: it writes a synthetic
DICOM ultrasound set like the paper's TRUS data (no download), prepares it
as 64x64 slices with three patient-level folds, trains a small U-Net with
CE, WCE, FL, Dice+CE and ADFL under ADAM from the same initial weights on
every fold (15 runs: a mean and a sample std over 3 test folds per loss,
and ADFL's paired differences with each), and writes `results.csv`,
`results.md` and `results.png`. It takes 10 to 18 minutes on 2 CPU cores, depending on the machine.
`optimizers=("adam", "sgdm")` adds the paper's second optimiser, and
`lr_sweep` the learning rates tuned per loss on validation cases.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from keras_focal.data_prep.dataset import FoldSettings, PrepOptions, SourceInfo, prepare_dataset
from keras_focal.data_prep.sources import PROSTATE_CLASSES, find_dicom_cases
from keras_focal.data_prep.synthetic import make_ultrasound_like
from keras_focal.training.comparison import CompareConfig, compare
from keras_focal.training.lr_sweep import parse_rates

DEMO_CASES = 6
DEMO_IMAGE_SIZE = 64
DEMO_FOLDS = 3
DEMO_LOSSES = ("ce", "wce", "fl", "dice_ce", "adfl")
DEMO_MODEL_OPTIONS = {"base_filters": 8, "depth": 3}


def check_options(epochs: int, optimizers: Sequence[str], folds: int, lr_sweep: str | None) -> None:
    """Raises ValueError naming the option before anything is written."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"--epochs must be a positive integer. Received: {epochs!r}")
    if not optimizers or set(optimizers) - {"adam", "sgdm"}:
        raise ValueError(f"--optimizers takes adam and/or sgdm. Received: {list(optimizers)!r}")
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= DEMO_CASES:
        raise ValueError(f"--folds must be an integer from 2 to {DEMO_CASES} (the demo has {DEMO_CASES} cases). Received: {folds!r}")
    if lr_sweep is not None:
        parse_rates(lr_sweep)


def run(
    out: str = "demo_output", epochs: int = 30, seed: int = 0, quiet: bool = False,
    optimizers: Sequence[str] = ("adam",), folds: int = DEMO_FOLDS, lr_sweep: str | None = None,
) -> int:
    """Runs the demonstration into `out` (resuming what is there); returns the exit status.

    Args:
        epochs: epochs per run.
        seed: seeds the data, the folds and the initial weights.
        optimizers: "adam" and/or "sgdm".
        folds: patient-level folds, each the test fold of one run per loss
            and optimiser (3 or more for a spread).
        lr_sweep: learning rates to tune on validation cases (e.g.
            "1e-4,5e-4,2e-3"), or None for the paper's fixed 5e-4 only.
    """
    check_options(epochs, optimizers, folds, lr_sweep)
    source = os.path.join(out, "data", "trus")
    prepared = os.path.join(out, "data", "synthetic_trus" if folds == DEMO_FOLDS else f"synthetic_trus_{folds}folds")
    if not os.path.isdir(source):
        make_ultrasound_like(source, cases=DEMO_CASES, seed=seed, progress=not quiet)
    cases, problems = find_dicom_cases(os.path.join(source, "dicom"), os.path.join(source, "masks"))
    report = prepare_dataset(
        cases, prepared, PROSTATE_CLASSES, PrepOptions(size=DEMO_IMAGE_SIZE), source=SourceInfo("dicom", failures=problems),
        folds=FoldSettings(folds, seed), progress=not quiet,
    )
    print(report.summary())
    if report.exit_status:
        return report.exit_status
    config = CompareConfig(
        data=prepared,
        out=out,
        models=["unet"],
        losses=list(DEMO_LOSSES),
        optimizers=list(optimizers),
        folds=list(range(folds)),
        seeds=[seed],
        run_options={"epochs": epochs, "model_options": DEMO_MODEL_OPTIONS},
        lr_sweep=lr_sweep,
    )
    table = compare(config, verbose=0, progress=not quiet)
    print()
    with open(os.path.join(out, "results.md")) as stream:
        print(stream.read())
    print(f"Wrote {out}/results.csv, results.md, volume_results.csv, results.png and one folder per run under {out}/runs/")
    print(_predict_hint(out, source, prepared, table))
    return 0


def _predict_hint(out: str, source, prepared, table) -> str:
    """The command that segments one of the demo's DICOM cases with the ADFL model that never saw it."""
    import pandas as pd

    folds = pd.read_csv(os.path.join(prepared, "folds.csv"), dtype={"case": str})
    case, fold = folds.case.iloc[0], int(folds.fold.iloc[0])
    runs = table[(table.loss == "adfl") & (table.fold == fold)]
    run_dir = os.path.join(out, runs.run_dir.iloc[0])
    return (
        f"\nNext, a label volume in the patient's geometry: {case} is a test case of the ADFL run of fold {fold}:\n"
        f"  keras-focal predict {os.path.join(source, 'dicom', case)} {os.path.join(out, 'predictions')} "
        f"--run {run_dir} --truth {os.path.join(source, 'masks')}\n"
        f"(writes {os.path.join(out, 'predictions', case + '.nii.gz')} with the series' spacing, origin and direction)"
    )
