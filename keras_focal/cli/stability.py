"""`keras-focal stability`."""

from __future__ import annotations

import argparse
import dataclasses
import json

PARTS = ("sweep", "table", "classification", "segmentation")


def add_stability_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("stability", help="reproduce the focal-loss instability study (NaN for 0 < gamma < 1)")
    parser.add_argument("--out", default="stability_output", help="output folder (default: stability_output)")
    parser.add_argument("--preset", choices=("quick", "paper"), default="quick", help="quick: minutes on a CPU; paper: the seed's grid (GPU)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="the parts to run (default: all)")
    parser.add_argument("--gammas", nargs="+", type=float, help="focal gammas (default: the preset's)")
    parser.add_argument("--thresholds", nargs="+", type=int, help="digits <= threshold are class A (default: the preset's)")
    parser.add_argument("--noise", nargs="+", type=float, help="noise amplitudes of the classification grid (default: the preset's)")
    parser.add_argument("--segmentation-noise", nargs="+", type=float, help="noise amplitudes of the segmentation runs (default: the preset's)")
    parser.add_argument("--losses", nargs="+", choices=("naive", "stabilised", "exact"), help="losses (default: all three)")
    parser.add_argument("--epochs", type=int, help="classification epochs (default: the preset's)")
    parser.add_argument("--segmentation-epochs", type=int, help="segmentation epochs (default: the preset's)")
    parser.add_argument("--subset", type=int, help="training images for classification (0: all)")
    parser.add_argument("--segmentation-subset", type=int, help="training images for segmentation (0: all)")
    parser.add_argument("--learning-rate", type=float, help="SGD learning rate (default: the preset's)")
    parser.add_argument("--data", choices=("auto", "mnist", "digits"), help="MNIST if on the machine (auto), or scikit-learn digits")
    parser.add_argument("--seed", type=int, help="random seed (default: the preset's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(execute=_stability)


def _stability(args) -> int:
    """`keras-focal stability`: bad input is what the settings and `check_study` refuse (`keras_focal.errors`)."""
    from keras_focal.errors import checking
    from keras_focal.experiments.stability import StudySettings, check_study, run_study

    with checking():
        settings = StudySettings.preset(args.preset)
        overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(settings) if getattr(args, f.name, None) is not None}
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
        settings = dataclasses.replace(settings, **overrides)
        check_study(args.out, settings, tuple(args.parts))
    summary = run_study(args.out, settings, parts=tuple(args.parts), progress=not args.quiet)
    print(json.dumps(summary, indent=2, default=str))
    print(f"wrote {args.out}/: gradient_sweep.csv/.png, table1.csv, classification.csv/.png, segmentation.csv/.png, summary.json")
    return 0
