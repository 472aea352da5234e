"""The parser of `keras-focal evaluate`: a trained model's metrics, confusion matrix and overlays on its test fold.

The work is `keras_focal.inference.evaluate_trained`'s.
"""

from __future__ import annotations

import argparse
import os

from keras_focal.errors import BadInput


def add_evaluate_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = commands.add_parser("evaluate", help="metrics, confusion matrix and overlays of a trained model on its test fold")
    parser.add_argument("--run", help="a run folder written by `keras-focal train` / `compare`")
    parser.add_argument("--checkpoint", choices=("last", "best"), default="last", help="with --run (default: last)")
    parser.add_argument("--model", help="a saved .keras model (with --data and --fold)")
    parser.add_argument("--data", help="a prepared data set")
    parser.add_argument("--fold", type=int, help="the test fold of --data")
    parser.add_argument("--out", help="output folder (default: RUN/evaluation or ./evaluation)")
    parser.add_argument("--volumes", action="store_true",
                        help="also put each test case's prediction back on its original grid and score it in 3-D, in mm, "
                             "against the original label volume the manifest names (the prepared masks rebuilt on that "
                             "grid only where it is gone, said so in the output): volume_metrics.csv, volume_summary.md")
    parser.set_defaults(execute=_evaluate)
    return parser


def _evaluate(args) -> int:
    from keras_focal.data_prep.prepared import PreparedDataset
    from keras_focal.inference import evaluate_trained

    try:
        if args.run:
            from keras_focal.run_folder import read_run_config

            config = read_run_config(args.run)
            model_path = os.path.join(args.run, f"{args.checkpoint}.keras")
            data, cases = PreparedDataset(config["data"]), config["test_cases"]
            out = args.out or os.path.join(args.run, "evaluation")
        elif args.model and args.data and args.fold is not None:
            model_path, data = args.model, PreparedDataset(args.data)
            cases = data.split(args.fold, 0.0)[2]
            out = args.out or "evaluation"
        else:
            raise ValueError("give --run RUN_DIR, or --model FILE --data PREP_DIR --fold K.")
        if not os.path.exists(model_path):
            raise ValueError(f"no model at '{model_path}'.")
        result = evaluate_trained(model_path, data, cases, out, volumes=args.volumes)
    except (ValueError, FileNotFoundError, KeyError) as error:
        # evaluate_trained checks its inputs and output first, and publishes its folder whole.
        raise BadInput(str(error)) from None
    summary = None
    if args.volumes:
        result, summary = result
    print(result.to_markdown())
    if summary:
        print(summary)
    print(f"wrote {out}/evaluation.json, class_metrics.csv, image_metrics.csv, confusion_matrix.png, overlay_*.png"
          + (", volume_metrics.csv, volume_summary.md" if args.volumes else ""))
    return 0
