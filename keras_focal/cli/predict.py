"""The parsers of `keras-focal predict` (label volumes of new patients) and `keras-focal export` (SavedModel / ONNX).

The work is the library's: `keras_focal.inference` (`Predictor`,
`predict_files`) and `keras_focal.export`. The choices below are repeated
here rather than imported, so that `--help` never imports the inference
code; `tests/test_architecture.py` holds them equal.
"""

from __future__ import annotations

import argparse

from keras_focal.errors import checking

OUTPUT_FORMATS = ("nii.gz", "mha", "nrrd", "nii", "dicom-seg", "rtstruct")
TTA_MODES = ("none", "flip")
POSTPROCESS_MODES = ("none", "largest-component", "auto")


def add_predict_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "predict",
        help="label volumes of new cases (.mhd/.nii.gz/.nrrd or DICOM series) in their original geometry",
        description=(
            "Segments whole volumes with trained networks: each volume is prepared exactly as its training data "
            "was (the data set's prep.json), its slices predicted in batches, the class probabilities mapped back "
            "to the original grid, and the label volume written with the input's size, spacing, origin and "
            "direction. INPUT is a volume file (4-D for a multi-channel model), a DICOM series folder, or a folder of "
            "those (one case each; files named CASE_0000, CASE_0001... are one case's channels, as nnU-Net's imagesTs)."
        ),
    )
    parser.add_argument("input", metavar="INPUT", help="a volume file, a DICOM series folder, or a folder of cases")
    parser.add_argument("out", metavar="OUT", help="output folder: one label volume per case, with its record in OUT/cases/")
    parser.add_argument("--model", action="append", default=[], metavar="M.keras",
                        help="a trained model; give it several times for an ensemble (probabilities averaged)")
    parser.add_argument("--run", dest="runs", action="append", default=[], metavar="RUN_DIR",
                        help="a run folder: its evaluated model (best.keras or last.keras); may be repeated")
    parser.add_argument("--compare", metavar="RESULTS_DIR",
                        help="a comparison folder: the models of every fold (and seed) of one loss and optimiser")
    parser.add_argument("--loss", help="with --compare: the loss whose models to take")
    parser.add_argument("--optimizer", help="with --compare: the optimiser (when the comparison has several)")
    parser.add_argument("--network", help="with --compare: the model architecture (when the comparison has several)")
    parser.add_argument("--checkpoint", choices=("best", "last"),
                        help="with --run/--compare: which model (default: the one the run's test scores are of)")
    parser.add_argument("--data", metavar="PREP_DIR",
                        help="the prepared data set the models were trained on (needed for a model outside a run folder)")
    parser.add_argument("--series", help="SeriesInstanceUID or SeriesNumber when a DICOM folder holds several series")
    parser.add_argument("--tta", choices=TTA_MODES, default="none",
                        help="flip: average the probabilities of each slice and its left-right mirror (default: none)")
    parser.add_argument("--postprocess", choices=POSTPROCESS_MODES, default="none",
                        help="largest-component: keep each foreground class's largest 3-D component; auto: only for the "
                             "classes where that raises the mean 3-D Dice of the runs' validation cases (default: none)")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write <case>_probabilities.<format>: one float32 component per class (with "
                             "dicom-seg: a FRACTIONAL SEG of the foreground classes)")
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS, default="nii.gz",
                        help="a label volume file (default: nii.gz), or, for a DICOM series, a DICOM object of that "
                             "series: dicom-seg (<case>.seg.dcm, a Segmentation with one segment per foreground "
                             "class) or rtstruct (<case>.rtstruct.dcm, one ROI of contours per class)")
    parser.add_argument("--truth", metavar="MASKS",
                        help="a folder of true label volumes (<case>.nii.gz/.mha/.mhd/.nrrd or <case>/ DICOM): "
                             "score the predictions (volume_metrics.csv, volume_summary.md)")
    parser.add_argument("--batch-size", type=int, default=8, help="slices per network call (default: 8)")
    parser.add_argument("--force", action="store_true", help="predict finished cases again and replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(execute=_predict)
    return parser


def add_export_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from keras_focal.export import EXPORT_FORMATS

    parser = commands.add_parser(
        "export", help="export a trained .keras model as a TensorFlow SavedModel or an ONNX file",
        description="Keras 3's model.export of the whole network (ACW layer and softmax head included), in float32.",
    )
    parser.add_argument("model", metavar="M.keras", help="the .keras model to export")
    parser.add_argument("out", metavar="OUT", help="the SavedModel folder, or the .onnx file")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="saved_model", help="(default: saved_model)")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT")
    parser.set_defaults(execute=_export)
    return parser


def _export(args) -> int:
    from keras_focal.export import check_export, export_model

    with checking():
        check_export(args.model, args.out, args.format, args.force)
    cast = export_model(args.model, args.out, args.format)
    if cast:
        print("the model computes in mixed precision: exported a float32 copy (same weights)")
    print(f"exported {args.model} to {args.out} ({args.format})")
    return 0


def _predict(args):
    from keras_focal.inference import PredictionRequest, Predictor, model_paths, predict_files

    request = PredictionRequest(
        input=args.input, out=args.out, series=args.series, tta=args.tta, postprocess=args.postprocess,
        probabilities=args.probabilities, output_format=args.output_format, truth=args.truth,
        batch_size=args.batch_size, force=args.force, quiet=args.quiet,
    )
    with checking():
        request.check()
        paths = model_paths(args.model, args.runs, args.compare, loss=args.loss, optimizer=args.optimizer,
                            network=args.network, checkpoint=args.checkpoint)
        predictor = Predictor.from_files(paths, data=args.data, batch_size=args.batch_size, tta=args.tta)
    return predict_files(request, predictor)
