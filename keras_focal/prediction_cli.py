"""`keras-focal predict` (label volumes of new patients) and `keras-focal export` (SavedModel / ONNX).

`predict`'s pre-flight loads every model, reads every input's header, and
checks the outputs before anything is written (exit status 2 otherwise).
Then, under a lock on OUT, each case is read, predicted and written: its
label (and probability) volumes go into `OUT/.partial/`, its record into
`OUT/cases/<case>.json`, and the volumes are then renamed into OUT. A case
is finished when its record and its label volume both exist; a re-run skips
finished cases and redoes interrupted ones.
"""

import dataclasses
import errno
import json
import os
import shutil

from keras_focal.data_prep.errors import CaseError
from keras_focal.errors import BadInput, Stopped, checking
from keras_focal.prediction import POSTPROCESS_MODES, TTA_MODES

OUTPUT_FORMATS = ("nii.gz", "mha", "nrrd", "nii")


def add_predict_parser(commands):
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
    parser.add_argument("input", metavar="INPUT")
    parser.add_argument("out", metavar="OUT")
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
                        help="also write <case>_probabilities.<format>: one float32 component per class")
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS, default="nii.gz", help="label volume format (default: nii.gz)")
    parser.add_argument("--truth", metavar="MASKS",
                        help="a folder of true label volumes (<case>.nii.gz/.mha/.mhd/.nrrd or <case>/ DICOM): "
                             "score the predictions (volume_metrics.csv, volume_summary.md)")
    parser.add_argument("--batch-size", type=int, default=8, help="slices per network call (default: 8)")
    parser.add_argument("--force", action="store_true", help="predict finished cases again and replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(execute=_predict)
    return parser


def add_export_parser(commands):
    from keras_focal.export import EXPORT_FORMATS

    parser = commands.add_parser(
        "export", help="export a trained .keras model as a TensorFlow SavedModel or an ONNX file",
        description="Keras 3's model.export of the whole network (ACW layer and softmax head included), in float32.",
    )
    parser.add_argument("model", metavar="M.keras")
    parser.add_argument("out", metavar="OUT", help="the SavedModel folder, or the .onnx file")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="saved_model", help="(default: saved_model)")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT")
    parser.set_defaults(execute=_export)
    return parser


def _export(args):
    from keras_focal.export import check_export, export_model

    with checking():
        check_export(args.model, args.out, args.format, args.force)
    cast = export_model(args.model, args.out, args.format)
    if cast:
        print("the model computes in mixed precision: exported a float32 copy (same weights)")
    print(f"exported {args.model} to {args.out} ({args.format})")
    return 0


# --- predict ------------------------------------------------------------------------

@dataclasses.dataclass
class PredictionPlan:
    """What the pre-flight of `predict` found: models, cases, outputs; nothing written yet."""

    models: list
    cases: list
    pending: list
    finished: list
    out: str
    settings: dict  # what a case's record must match to count as finished
    truths: dict
    args: object
    notes: list


def _model_paths(args):
    """The model files the options name, in order."""
    from keras_focal.run_folder import run_model_path

    paths = list(args.model)
    paths += [run_model_path(run, args.checkpoint) for run in args.runs]
    if args.compare:
        paths += _compare_model_paths(args)
    elif args.loss or args.optimizer or args.network:
        raise ValueError("--loss, --optimizer and --network choose models of a comparison: give --compare RESULTS_DIR.")
    if not paths:
        raise ValueError("give the models: --model M.keras (repeatable), --run RUN_DIR or --compare RESULTS_DIR --loss LOSS.")
    return paths  # a model named twice weighs twice in the average, as asked


def _compare_model_paths(args):
    from keras_focal.run_folder import run_model_path
    from keras_focal.training.comparison import read_results

    if not os.path.isfile(os.path.join(args.compare, "results.csv")):
        raise ValueError(f"'{args.compare}' is not a comparison folder: it has no results.csv (run `keras-focal compare`).")
    table = read_results(args.compare)
    for column, value in (("loss", args.loss), ("optimizer", args.optimizer), ("model", args.network)):
        choices = sorted(set(table[column].astype(str)))
        option = "--network" if column == "model" else f"--{column}"
        plural = {"loss": "losses", "optimizer": "optimisers", "model": "models"}[column]
        if value is None:
            if len(choices) > 1:
                raise ValueError(f"'{args.compare}' compares several {plural} ({', '.join(choices)}): choose one with {option}.")
            continue
        if value not in choices:
            raise ValueError(f"{option} {value!r} is not in '{args.compare}' (it has {', '.join(choices)}).")
        table = table[table[column].astype(str) == value]
    paths = []
    for run_dir in table.run_dir:
        try:
            paths.append(run_model_path(run_dir, args.checkpoint))
        except ValueError as error:
            raise ValueError(f"{error} (a run of '{args.compare}')") from None
    return paths


def _find_truth(folder, case):
    from keras_focal.data_prep.sources import find_mask
    from keras_focal.data_prep.volume import strip_volume_suffix

    return find_mask(folder, case.name) or find_mask(folder, strip_volume_suffix(os.path.basename(case.path)))


def _label_path(out, case, args):
    return os.path.join(out, f"{case.name}.{args.output_format}")


def _probabilities_path(out, case, args):
    return os.path.join(out, f"{case.name}_probabilities.{args.output_format}")


def _record_path(out, case):
    return os.path.join(out, "cases", f"{case.name}.json")


def _read_record(path):
    try:
        with open(path) as stream:
            return json.load(stream)
    except (OSError, ValueError):
        return None


def plan_prediction(args):
    """`predict`'s pre-flight; raises ValueError (bad input) naming the file or option, writes nothing."""
    from keras_focal.files import check_not_inside, check_output_folder
    from keras_focal.prediction import (
        check_auto_postprocessing,
        check_ensemble,
        check_input_case,
        find_input_cases,
        load_trained_model,
    )

    if isinstance(args.batch_size, bool) or args.batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer. Received: {args.batch_size!r}")
    out = os.path.abspath(args.out)
    check_output_folder(out)
    check_not_inside(out, [args.input, args.truth])
    if not os.path.exists(args.input):  # the commonest mistake, before the models load
        raise ValueError(f"the input '{args.input}' does not exist.")
    models = [load_trained_model(path, args.data) for path in _model_paths(args)]
    check_ensemble(models)
    settings = models[0].settings
    if settings.source == "camvid":
        raise ValueError(
            f"'{models[0].path}' was trained on {settings.channels}-channel photographs ('{settings.data}'): predict "
            "segments volumes; evaluate photographs with `keras-focal evaluate`."
        )
    cases = find_input_cases(args.input, settings.channels)
    for case in cases:
        check_input_case(case, args.series, settings.channels)
    notes = []
    if args.tta == "flip" and not all(m.augmented for m in models):
        notes.append("--tta flip: the model(s) were trained without --augment, so they never saw mirrored slices")
    if args.postprocess == "auto":
        check_auto_postprocessing(models)
    truths = {}
    if args.truth:
        if not os.path.isdir(args.truth):
            raise ValueError(f"--truth '{args.truth}' is not a folder.")
        missing = []
        for case in cases:
            truth = _find_truth(args.truth, case)
            if truth is None:
                missing.append(case.name)
            truths[case.name] = truth
        if missing:
            raise ValueError(f"--truth '{args.truth}' has no label volume for case(s) {missing[:5]} "
                             f"(looked for <case>.nii.gz/.nii/.mha/.mhd/.nrrd and a <case>/ folder).")
        _check_truths(cases, truths, models[0].settings.labels, args.series)
    record_settings = {
        "models": [m.path for m in models],
        "model_sha256": [m.digest() for m in models],
        "tta": args.tta,
        "postprocess": args.postprocess,
        "probabilities": bool(args.probabilities),
        "output_format": args.output_format,
        "series": args.series,
    }
    pending, finished = [], []
    for case in cases:
        label = _label_path(out, case, args)
        record = _read_record(_record_path(out, case))
        if args.force or not os.path.exists(label):
            pending.append(case)
            continue
        if record is None or record.get("input") not in (case.path, case.inputs):
            written_for = f"for '{record['input']}'" if record and record.get("input") else "by another program (no record)"
            raise ValueError(
                f"'{label}' exists and was written {written_for}, not as the prediction of '{case.path}': "
                "choose another OUT, remove the file, or give --force to replace it."
            )
        changed = sorted(k for k in record_settings if record.get("settings", {}).get(k) != record_settings[k])
        if changed:
            raise ValueError(
                f"'{label}' was predicted with other settings ({', '.join(changed)}): give --force to predict it "
                "again, or choose another OUT."
            )
        finished.append(case.name)
    return PredictionPlan(models, cases, pending, finished, out, record_settings, truths, args, notes)


def _check_truths(cases, truths, table, series):
    """Every truth read whole, on its case's grid and holding only the models' label values: refused before inference."""
    from keras_focal.data_prep.sources import read_mask_volume
    from keras_focal.data_prep.volume import check_same_grid
    from keras_focal.prediction import read_input_volume

    for case in cases:
        try:
            truth = read_mask_volume(truths[case.name])
            volume = read_input_volume(case, series)  # read again for the prediction: inputs are not kept in memory
            check_same_grid(volume, truth, f"--truth '{truths[case.name]}' and the input '{case.path}'")
            table.to_indices(truth.array, f"the truth '{truths[case.name]}'")
        except CaseError as error:
            raise ValueError(str(error)) from None


def _predict(args):
    from keras_focal.files import FolderBusyError, FolderLock

    with checking():
        plan = plan_prediction(args)
    try:
        with FolderLock(plan.out):
            return _predict_locked(plan)
    except FolderBusyError as error:
        raise BadInput(str(error)) from None


def _postprocess_labels(plan):
    """The labels to post-process, and the decision written to OUT/postprocessing.json."""
    from keras_focal.evaluation import foreground_classes
    from keras_focal.files import write_text_atomically
    from keras_focal.prediction import decide_postprocessing

    mode = plan.args.postprocess
    names = list(plan.models[0].settings.class_names)
    if mode == "none":
        return []
    if mode == "largest-component":
        labels = foreground_classes(names)
        decision = {"mode": mode, "classes": [names[i] for i in labels]}
    else:
        path = os.path.join(plan.out, "postprocessing.json")
        previous = _read_record(path)
        if previous and previous.get("model_sha256") == plan.settings["model_sha256"] and previous.get("tta") == plan.args.tta:
            return [names.index(name) for name in previous["classes"]]
        decided = decide_postprocessing(plan.models, plan.args.batch_size, plan.args.tta)
        labels = decided["classes"]
        decision = {"mode": mode, "classes": [names[i] for i in labels], "per_class": decided["per_class"],
                    "model_sha256": plan.settings["model_sha256"], "tta": plan.args.tta,
                    "rule": "a class keeps only its largest 3-D component when that raises the mean Dice of the "
                            "validation cases of the models' runs"}
    write_text_atomically(os.path.join(plan.out, "postprocessing.json"), json.dumps(decision, indent=2) + "\n")
    return labels


def _predict_locked(plan):
    from tqdm.auto import tqdm

    from keras_focal.files import remove_temporaries

    out, args = plan.out, plan.args
    os.makedirs(os.path.join(out, "cases"), exist_ok=True)
    partial = os.path.join(out, ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # what a killed run left (under the lock nothing else writes here)
    remove_temporaries(out)
    for note in plan.notes:
        print(f"note: {note}")
    postprocess = _postprocess_labels(plan)
    failed, written, case_notes = {}, [], {}
    bar = tqdm(plan.pending, desc="cases", unit="case", disable=True if args.quiet or not plan.pending else None)
    try:
        for case in bar:
            try:
                notes = _predict_case(plan, case, postprocess, partial)
            except CaseError as error:
                failed[case.name] = str(error)
            else:
                written.append(case.name)
                if notes:
                    case_notes[case.name] = notes
            bar.set_postfix(failed=len(failed))
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        untried = len(plan.pending) - len(written) - len(failed)
        raise Stopped(
            f"the disk holding '{out}' is full: {len(written)} case(s) written now, {untried} not written (the case in "
            "progress was removed). Free space and run the same command again: finished cases are kept."
        ) from None
    finally:
        bar.close()
        shutil.rmtree(partial, ignore_errors=True)  # a case stopped half-way (full disk, Ctrl-C, crash) leaves nothing
    summary = _write_scores(plan)
    print(f"{len(plan.cases)} case(s): {len(written)} written now, {len(plan.finished)} already finished, {len(failed)} failed.")
    for name, notes in case_notes.items():
        for note in notes:
            print(f"note {name}: {note}")
    for name, message in failed.items():
        print(f"FAILED {name}: {message}")
    if summary:
        print(summary)
    print(f"label volumes: {out}")
    return 1 if failed else 0


def _predict_case(plan, case, postprocess, partial):
    """Predicts one case into `partial`, records it, then renames its volumes into OUT; returns its notes."""
    from keras_focal.data_prep.volume import check_same_grid, write_volume_like
    from keras_focal.files import write_text_atomically
    from keras_focal.prediction import predict_volume, read_input_volume

    args, out = plan.args, plan.out
    volume = read_input_volume(case, args.series)
    labels, probabilities, notes = predict_volume(plan.models, volume, args.batch_size, args.tta, postprocess)
    table = plan.models[0].settings.labels
    geometry = volume.geometry()
    os.makedirs(partial, exist_ok=True)
    staged = []
    if args.probabilities:
        path = _probabilities_path(out, case, args)
        staged.append((os.path.join(partial, os.path.basename(path)), path))
        write_volume_like(volume, probabilities, staged[-1][0], is_vector=True)
    label_path = _label_path(out, case, args)
    staged.append((os.path.join(partial, os.path.basename(label_path)), label_path))  # last: it marks the case done
    write_volume_like(volume, table.to_values(labels), staged[-1][0])  # the training masks' label values
    metrics = None
    if case.name in plan.truths:
        truth_path = plan.truths[case.name]
        from keras_focal.data_prep.sources import read_mask_volume
        from keras_focal.evaluation import volume_metrics

        truth = read_mask_volume(truth_path)
        check_same_grid(volume, truth, f"the prediction of '{case.path}' and its truth '{truth_path}'")
        truth_classes = table.to_indices(truth.array, f"the truth '{truth_path}'")
        metrics = [{"case": case.name, **row} for row in
                   volume_metrics(labels, truth_classes, spacing_zyx=volume.spacing_zyx, classes=list(table.names))]
    record = {"case": case.name, "input": case.path if not case.channel_paths else case.inputs,
              "settings": plan.settings, "geometry": geometry.to_dict(),
              "notes": notes, "metrics": metrics}
    write_text_atomically(_record_path(out, case), json.dumps(record, indent=2, default=_plain) + "\n")
    for source, target in staged:
        os.replace(source, target)
    return notes


def _plain(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _write_scores(plan):
    """`volume_metrics.csv` and `volume_summary.md` from the records of every case scored against --truth."""
    import pandas as pd

    from keras_focal.evaluation import summarise_volume_metrics, volume_summary_markdown
    from keras_focal.files import write_text_atomically

    if not plan.truths:
        return None
    rows = []
    for case in plan.cases:
        record = _read_record(_record_path(plan.out, case))
        if record and record.get("metrics"):
            rows += record["metrics"]
    if not rows:
        return None
    table = pd.DataFrame(rows)
    write_text_atomically(os.path.join(plan.out, "volume_metrics.csv"), table.to_csv(index=False))
    markdown = "Per-patient 3-D metrics against --truth (mean ± sample std over cases)\n\n" + \
        volume_summary_markdown(summarise_volume_metrics(table))
    write_text_atomically(os.path.join(plan.out, "volume_summary.md"), markdown)
    return markdown
