"""The `keras-focal` command line."""

import argparse
import os
import sys


def _demo(args):
    from keras_focal import demo

    return demo.run(out=args.out, epochs=args.epochs, seed=args.seed, quiet=args.quiet)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-focal",
        description=(
            "Focal, stabilised focal and Dual Focal losses, the Adaptive Class "
            "Weight layer and segmentation tooling for Keras 3."
        ),
    )
    from keras_focal import __version__

    parser.add_argument("--version", action="version", version=f"keras-focal {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run the built-in demonstration on synthetic data (no download)",
        description=(
            "Writes a synthetic DICOM ultrasound data set (no download), prepares it, "
            "trains a small U-Net with CE, WCE, FL and ADFL under ADAM and SGDM from "
            "the same initial weights, and writes results.csv, results.md and "
            "results.png to OUT."
        ),
    )
    demo.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    demo.add_argument("--epochs", type=int, default=40, help="training epochs per run (default: 40)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(handler=_demo)

    from keras_focal.data_prep.cli import add_prep_parser, run_prep
    from keras_focal.training.cli import add_training_parsers

    add_training_parsers(commands)
    from keras_focal.reports import add_evaluate_parser

    add_evaluate_parser(commands)
    from keras_focal.experiments.cli import add_stability_parser

    add_stability_parser(commands)

    add_prep_parser(commands).set_defaults(run=run_prep)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run_command", None) is not None:
        return args.run_command(args)
    if getattr(args, "run", None) is not None and callable(args.run):
        return args.run(args)
    if getattr(args, "handler", None) is not None:
        return args.handler(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
