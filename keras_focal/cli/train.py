"""`keras-focal train` and `keras-focal compare`."""

from __future__ import annotations

import argparse
import json
import sys

from keras_focal.errors import BadInput, checking
from keras_focal.training.config import INPUTS, LOSSES, MODELS, OPTIMIZERS, STRATEGIES, RunConfig


def _add_run_options(parser) -> None:
    parser.add_argument("--epochs", type=int, help="epochs (default: 30)")
    parser.add_argument("--batch-size", type=int, help="mini-batch size (default: 4, as MATLAB)")
    parser.add_argument("--learning-rate", type=float, help="initial learning rate (default: 5e-4)")
    parser.add_argument("--momentum", type=float, help="SGDM momentum (default: 0.9)")
    parser.add_argument("--drop-factor", type=float, help="learning-rate drop factor (default: 0.95)")
    parser.add_argument("--drop-period", type=int, help="epochs between drops (default: 5)")
    parser.add_argument("--weight-decay", type=float, help="decoupled weight decay (default: 0)")
    parser.add_argument("--validation-fraction", type=float, help="training cases held out for validation (default: 0.1)")
    parser.add_argument("--gamma", type=float, help="focal-loss gamma for `fl` (default: 2)")
    parser.add_argument("--model-options", type=json.loads, help='builder options as JSON, e.g. \'{"base_filters": 16}\'')
    parser.add_argument("--augment", action="store_true", default=None, help="random flips of image and mask")
    parser.add_argument("--evaluate", choices=("last", "best"), help="test the last model (default) or the best on validation loss")
    parser.add_argument("--deterministic", action="store_true", default=None, help="TensorFlow deterministic ops")
    parser.add_argument("--mixed-precision", action="store_true", default=None, help="mixed_float16 (GPU)")
    parser.add_argument(
        "--jit-compile", nargs="?", const="on", choices=("auto", "on", "off"),
        help="compile the train step: auto (default, Keras's choice: always on JAX, XLA on TensorFlow "
        "with an accelerator, eager on torch), on (XLA) or off (op by op)",
    )
    parser.add_argument(
        "--input", choices=INPUTS,
        help="memory: decode the PNGs once; stream: decode every epoch (memory does not grow "
        "with the data set); auto (default): stream above 2 GiB of decoded slices",
    )
    parser.add_argument(
        "--cache", metavar="DIR",
        help="keep the decoded slices of streamed input in DIR (each process writes what it reads; "
        "implies stream under auto)",
    )
    parser.add_argument(
        "--strategy", choices=STRATEGIES,
        help="several devices of this host: mirrored (TensorFlow backend) or data-parallel "
        "(JAX backend, Keras's DataParallel); default: one device",
    )


RUN_OPTION_NAMES = (
    "epochs", "batch_size", "learning_rate", "momentum", "drop_factor", "drop_period", "weight_decay",
    "validation_fraction", "gamma", "model_options", "augment", "evaluate", "deterministic", "mixed_precision",
    "jit_compile", "strategy", "input", "cache",
)


_JIT_COMPILE_FLAGS = {"auto": "auto", "on": True, "off": False}


def _run_options(args):
    options = {name: getattr(args, name) for name in RUN_OPTION_NAMES if getattr(args, name, None) is not None}
    if options.get("jit_compile") in _JIT_COMPILE_FLAGS:
        options["jit_compile"] = _JIT_COMPILE_FLAGS[options["jit_compile"]]
    return options


def add_training_parsers(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train and evaluate one run on a prepared data set")
    train.add_argument("--data", required=True, help="folder written by `keras-focal prep`")
    train.add_argument("--model", required=True, help=f"one of {', '.join(MODELS)}")
    train.add_argument("--loss", required=True, help=f"one of {', '.join(LOSSES)}")
    train.add_argument("--optimizer", default="adam", help=f"one of {', '.join(OPTIMIZERS)} (default: adam)")
    train.add_argument("--fold", type=int, default=0, help="test fold (default: 0)")
    train.add_argument("--seed", type=int, default=0, help="random seed of the initial weights and the shuffling (default: 0)")
    train.add_argument("--out", required=True, help="run folder")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    train.add_argument("--force", action="store_true",
                       help="discard the run --out holds (finished, unfinished or damaged) and start again")
    _add_run_options(train)
    train.set_defaults(execute=_train)

    compare = commands.add_parser("compare", help="the grid models x losses x optimisers x folds x seeds")
    compare.add_argument("--config", help="YAML file with data, out, models, losses, optimizers, folds, seeds and run options")
    compare.add_argument("--data", help="folder written by `keras-focal prep` (or `data:` in --config)")
    compare.add_argument("--out", help="results folder: results.md, results.csv, results.png and one folder per run")
    compare.add_argument("--models", nargs="+", help="networks: deeplabv3_plus, vgg19_fcn, unet (default: deeplabv3_plus)")
    compare.add_argument("--losses", nargs="+", help="losses, the names of `train --loss` (default: ce wce fl adfl)")
    compare.add_argument("--optimizers", nargs="+", help="optimisers: adam, sgdm (default: adam)")
    compare.add_argument("--folds", nargs="+", type=int, help="test folds, one run each (default: 0 1 2)")
    compare.add_argument("--seeds", nargs="+", type=int, help="seeds, one run each (default: 0)")
    compare.add_argument("--reference", help="the loss every other is compared with, paired by fold and seed, in "
                         "results.md (default: adfl when it is in the grid, else the first loss)")
    compare.add_argument("--lr-sweep", metavar="LR1,LR2,...",
                         help="also train every run at these learning rates, choose one per loss, optimiser and test "
                              "fold on validation cases only, and report the tuned table beside the fixed-rate one")
    _add_run_options(compare)
    compare.set_defaults(execute=_compare)


def _join_group(strategy):
    """The process group (joined when it has several processes); raises RunSetupError."""
    from keras_focal.training import processes
    from keras_focal.training.run import RunSetupError, check_strategy

    group = check_strategy(strategy)
    try:
        processes.start(group)
    except RuntimeError as error:
        raise RunSetupError(str(error)) from None
    return group


def _train(args) -> int:
    """`keras-focal train`: bad input is what `RunConfig` and the run's pre-flight refuse (`keras_focal.errors`)."""
    import dataclasses

    from keras_focal.training import processes
    from keras_focal.training.run import train_run

    if args.resume and args.force:
        raise BadInput("--resume continues the run in --out and --force discards it: give one of them.")
    with checking():
        config = RunConfig(
            data=args.data, out=args.out, model=args.model, loss=args.loss, optimizer=args.optimizer,
            fold=args.fold, seed=args.seed, **_run_options(args),
        )
    group = _join_group(config.strategy)
    with processes.private_folders(group, config.out, config.init_dir) as (out, init_dir):
        metrics = train_run(
            dataclasses.replace(config, out=out or config.out, init_dir=init_dir),
            # Keras's progress bar (1) redraws with ANSI codes: one line per epoch (2) where output is not a terminal.
            resume=args.resume, verbose=(1 if sys.stdout.isatty() else 2) if group.is_chief else 0, force=args.force,
        )
    if not group.is_chief:
        return 0
    for warning in metrics.get("warnings") or ():
        print(f"keras-focal train: warning: {warning}", file=sys.stderr)
    from keras_focal.reporting.tables import run_summary

    nan = f", NaN at epoch {metrics['nan_epoch']}" if metrics.get("nan_epoch") else ""
    print(f"{config.model} {config.loss} {config.optimizer} fold {config.fold}: {run_summary(metrics)}{nan}")
    return 0


def _compare(args) -> int:
    """`keras-focal compare`: bad input is what the grid's settings and every run's pre-flight refuse."""
    import dataclasses

    from keras_focal.training import processes
    from keras_focal.training.comparison import CompareConfig, compare

    with checking():
        if args.config:
            config = CompareConfig.from_yaml(args.config)
        else:
            if not args.data or not args.out:
                raise ValueError("give --config FILE, or --data and --out (plus the grid axes).")
            config = CompareConfig(data=args.data, out=args.out)
        given = {axis: getattr(args, axis) for axis in ("data", "out", "models", "losses", "optimizers", "folds", "seeds",
                                                        "reference", "lr_sweep") if getattr(args, axis, None)}
        # replace() validates the command line's axes as the file's.
        config = dataclasses.replace(config, **given, run_options={**config.run_options, **_run_options(args)})
    group = _join_group(config.run_options.get("strategy", "default"))
    with processes.private_folders(group, config.out) as (out,):
        table = compare(dataclasses.replace(config, out=out or config.out), verbose=0, progress=group.is_chief,
                        log=print if group.is_chief else (lambda line: None))
    if not group.is_chief:
        return 0
    print()
    with open(f"{config.out}/results.md") as stream:
        print(stream.read())
    print(f"{len(table)} runs: {config.out}/results.csv, results.md, results.png")
    return 0
