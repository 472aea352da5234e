"""The `keras-focal` command line: parsers only; every command calls the library.

One module per command group: `prep` (`prep.py`), `train`, `compare` and
`lr-sweep` (`train.py`), `evaluate`, `predict` and `export`, `stability`;
`demo` is here. `main` is the console script.

Every command module imports the library inside the function that runs
its command, never at the top: `keras-focal --help` (and a mistyped
option) then answers without TensorFlow, Keras or pandas (about 0.2 s).
Only the light modules whose choices the parsers list are imported up
front (`keras_focal.data_prep`, the trainer's tables in
`keras_focal.training.config`); they keep their heavy imports inside
functions likewise.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _demo(args):
    """`keras-focal demo`: bad input is what `demo.check_options` and the comparison's pre-flight refuse."""
    from keras_focal import demo
    from keras_focal.errors import checking

    options = {"epochs": args.epochs, "optimizers": args.optimizers, "folds": args.folds, "lr_sweep": args.lr_sweep}
    with checking():
        demo.check_options(**options)
    return demo.run(out=args.out, seed=args.seed, quiet=args.quiet, **options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-focal",
        description=(
            "Focal, stabilised focal and Dual Focal losses, the Adaptive Class "
            "Weight layer and segmentation tooling for Keras 3."
        ),
    )
    from keras_focal import __version__

    parser.add_argument("--version", action="version", version=f"keras-focal {__version__}")
    parser.add_argument(
        "--verbose", action="store_true",
        help="show TensorFlow's and JAX's own start-up messages (CUDA probing...); may be given anywhere on the line",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run the built-in demonstration on synthetic data (no download)",
        description=(
            "Writes a synthetic DICOM ultrasound data set (no download), prepares it with three "
            "patient-level folds, trains a small U-Net with CE, WCE, FL, Dice+CE and ADFL under ADAM "
            "on every fold from the same initial weights, and writes results.csv, results.md "
            "(mean ± sample std over the folds, ADFL's paired differences) and results.png to OUT. "
            "10 to 18 minutes on 2 CPU cores, depending on the machine."
        ),
    )
    demo.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    demo.add_argument("--epochs", type=int, default=30, help="training epochs per run (default: 30)")
    demo.add_argument("--optimizers", nargs="+", choices=("adam", "sgdm"), default=["adam"],
                      help="optimisers (default: adam; 'adam sgdm' doubles the runs)")
    demo.add_argument("--folds", type=int, default=3, help="patient-level folds, one test run each (default: 3)")
    demo.add_argument("--lr-sweep", metavar="LR1,LR2,...",
                      help="also tune the learning rate per loss on validation cases, e.g. 1e-4,5e-4,2e-3")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(execute=_demo)

    # Each command's parser lives in its own module, imported here: the parsers import nothing heavy (the
    # work's modules are imported when a command runs), so `--help` answers without TensorFlow.
    from keras_focal.cli.evaluate import add_evaluate_parser
    from keras_focal.cli.predict import add_export_parser, add_predict_parser
    from keras_focal.cli.prep import add_prep_parser, run_prep
    from keras_focal.cli.stability import add_stability_parser
    from keras_focal.cli.train import add_training_parsers

    add_training_parsers(commands)
    add_evaluate_parser(commands)
    add_predict_parser(commands)
    add_export_parser(commands)
    add_stability_parser(commands)
    add_prep_parser(commands).set_defaults(execute=run_prep)
    return parser


# Commands that need no TensorFlow, Keras or JAX.
_LIGHT_COMMANDS = (None, "prep")


def _import_backend(quietly) -> None:
    """Imports Keras (its backend) and then TensorFlow (the `tf.data` input of every backend).

    Keras first: with `KERAS_BACKEND=torch`, importing TensorFlow before torch
    crashes the process (a segmentation fault, a native-library clash of the
    two wheels); the other order works. Quietly, stderr is closed meanwhile:
    TensorFlow's C++ start-up messages ("Could not find cuda drivers",
    "failed call to cuInit", oneDNN notes) are written before its log level
    applies, so no environment variable hides them; a Python exception is
    still raised, and shown once stderr is back.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not quietly:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import keras  # noqa: F401
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # probes CUDA now, quietly
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command not in _LIGHT_COMMANDS and "tensorflow" not in sys.modules:
        _import_backend(quietly=not verbose)
    if getattr(args, "execute", None) is None:
        parser.print_help()
        return 0
    from keras_focal.errors import run_command

    name = " ".join(part for part in (args.command, getattr(args, "source", None)) if part)
    return run_command(name, args.execute, args)


if __name__ == "__main__":
    sys.exit(main())
