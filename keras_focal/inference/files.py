"""`keras-focal predict` as a library call: the cases of an input path predicted into label-volume files.

Each case is written as a volume on its input's grid (NIfTI, MetaImage,
NRRD), or, for a DICOM series, as a DICOM SEG or RTSTRUCT of that series
(`keras_focal.inference.dicom_objects`).

The pre-flight (`plan_prediction`) reads every input's header and checks
the outputs before anything is written. Then, under a lock on OUT, each case
is read, predicted and written: its label (and probability) volumes go into
`OUT/.partial/`, its record into `OUT/cases/<case>.json`, and the volumes
are then renamed into OUT. A case is finished when its record and its label
volume both exist; a re-run skips finished cases and redoes interrupted
ones (`run_prediction`).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
from typing import TYPE_CHECKING

import numpy as np

from keras_focal import __version__
from keras_focal.data_prep.dicom import read_dicom_header
from keras_focal.data_prep.errors import CaseError
from keras_focal.data_prep.sources import find_mask, read_mask_volume
from keras_focal.data_prep.volume import check_same_grid, strip_volume_suffix, write_volume_like
from keras_focal.errors import BadInput, Stopped, checking
from keras_focal.evaluation import foreground_classes, summarise_volume_metrics, volume_metrics
from keras_focal.files import (
    FolderBusyError,
    FolderLock,
    check_not_inside,
    check_output_folder,
    remove_temporaries,
    write_text_atomically,
)
from keras_focal.inference.cases import check_input_case, find_input_cases, read_input_volume
from keras_focal.inference.dicom_objects import (
    DICOM_OUTPUT_FORMATS,
    DICOM_SUFFIXES,
    AlgorithmInfo,
    check_dicom_source,
    source_datasets,
    write_segmentation,
    write_structure_set,
)
from keras_focal.inference.predictor import POSTPROCESS_MODES, TTA_MODES
from keras_focal.inference.prepared_cases import check_auto_postprocessing, decide_postprocessing
from keras_focal.reporting.tables import volume_summary_markdown

if TYPE_CHECKING:
    from keras_focal.inference.cases import InputCase
    from keras_focal.inference.predictor import Predictor

# Volume files (written on the input's grid), then DICOM objects of the input series (`dicom_objects`).
OUTPUT_FORMATS = ("nii.gz", "mha", "nrrd", "nii", *DICOM_OUTPUT_FORMATS)


@dataclasses.dataclass(frozen=True)
class PredictionRequest:
    """What to predict and how to write it (the options of `keras-focal predict`).

    Attributes:
        input: a volume file, a DICOM series folder, or a folder of those.
        out: the output folder.
        series: SeriesInstanceUID or SeriesNumber when a DICOM folder holds several series.
        tta: `TTA_MODES`; the predictor's.
        postprocess: `POSTPROCESS_MODES`.
        probabilities: also write `<case>_probabilities.<format>` (with `dicom-seg`: a FRACTIONAL SEG).
        output_format: `OUTPUT_FORMATS`: a volume file, or `dicom-seg` / `rtstruct` (`<case>.seg.dcm`,
            `<case>.rtstruct.dcm`) for a DICOM series.
        truth: a folder of true label volumes to score the predictions against.
        batch_size: slices per network call; the predictor's.
        force: predict finished cases again and replace existing outputs.
        quiet: no progress bar.
    """

    input: str
    out: str
    series: str | None = None
    tta: str = "none"
    postprocess: str = "none"
    probabilities: bool = False
    output_format: str = "nii.gz"
    truth: str | None = None
    batch_size: int = 8
    force: bool = False
    quiet: bool = False

    def check(self) -> None:
        """Raises ValueError naming the option unless the request can be planned (before any model loads)."""
        for name, value, allowed in (("tta", self.tta, TTA_MODES), ("postprocess", self.postprocess, POSTPROCESS_MODES),
                                     ("output_format", self.output_format, OUTPUT_FORMATS)):
            if value not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}. Received: {name}={value!r}")
        if self.output_format == "rtstruct" and self.probabilities:
            raise ValueError("--probabilities cannot be written as an RTSTRUCT (contours, not values): use "
                             "--output-format dicom-seg (FRACTIONAL segments) or a volume format.")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"--batch-size must be a positive integer. Received: {self.batch_size!r}")
        out = os.path.abspath(self.out)
        check_output_folder(out)
        check_not_inside(out, [self.input, self.truth])
        if not os.path.exists(self.input):  # the commonest mistake, before the models load
            raise ValueError(f"the input '{self.input}' does not exist.")

    @property
    def suffix(self) -> str:
        """The output files' suffix: the volume format, or `seg.dcm` / `rtstruct.dcm`."""
        return DICOM_SUFFIXES.get(self.output_format, self.output_format)

    def label_path(self, case: InputCase) -> str:
        return os.path.join(os.path.abspath(self.out), f"{case.name}.{self.suffix}")

    def probabilities_path(self, case: InputCase) -> str:
        return os.path.join(os.path.abspath(self.out), f"{case.name}_probabilities.{self.suffix}")

    def record_path(self, case: InputCase) -> str:
        return os.path.join(os.path.abspath(self.out), "cases", f"{case.name}.json")


@dataclasses.dataclass
class PredictionPlan:
    """What the pre-flight of `predict` found: models, cases, outputs; nothing written yet."""

    predictor: object  # `Predictor`
    request: PredictionRequest
    cases: list
    pending: list
    finished: list
    settings: dict  # what a case's record must match to count as finished
    truths: dict
    notes: list

    @property
    def out(self) -> str:
        return os.path.abspath(self.request.out)


def predict_files(request: PredictionRequest, predictor: Predictor) -> int:
    """Pre-flight, then prediction of every pending case (`plan_prediction`, `run_prediction`); returns 0, or 1 when a case failed.

    Raises:
        BadInput: the pre-flight refused the request (nothing was written).
        Stopped: the disk filled up (finished cases are kept; run again to resume).
    """
    with checking():
        request.check()
        plan = plan_prediction(request, predictor)
    return run_prediction(plan)


def plan_prediction(request: PredictionRequest, predictor: Predictor) -> PredictionPlan:
    """`predict`'s pre-flight; raises ValueError (bad input) naming the file or option, writes nothing."""
    if (request.tta, request.batch_size) != (predictor.tta, predictor.batch_size):
        raise ValueError(f"the request's tta and batch size ({request.tta!r}, {request.batch_size}) differ from the "
                         f"predictor's ({predictor.tta!r}, {predictor.batch_size}).")
    models = predictor.models
    settings = predictor._require_settings("predict_files")
    if settings.source == "camvid":
        raise ValueError(
            f"'{models[0].path}' was trained on {settings.channels}-channel photographs ('{settings.data}'): predict "
            "segments volumes; evaluate photographs with `keras-focal evaluate`."
        )
    cases = find_input_cases(request.input, settings.channels)
    for case in cases:
        check_input_case(case, request.series, settings.channels)
    notes = _check_dicom_outputs(request, cases) if request.output_format in DICOM_OUTPUT_FORMATS else []
    if request.tta == "flip" and not all(m.augmented for m in models):
        notes.append("--tta flip: the model(s) were trained without --augment, so they never saw mirrored slices")
    if request.postprocess == "auto":
        check_auto_postprocessing(models)
    truths = _find_truths(request, cases, settings.labels) if request.truth else {}
    record_settings = {
        "models": [m.path for m in models],
        "model_sha256": [m.digest() for m in models],
        "tta": request.tta,
        "postprocess": request.postprocess,
        "probabilities": bool(request.probabilities),
        "output_format": request.output_format,
        "series": request.series,
    }
    pending, finished = [], []
    for case in cases:
        if request.force or not os.path.exists(request.label_path(case)):
            pending.append(case)
            continue
        _check_finished_case(request, case, _read_record(request.record_path(case)), record_settings)
        finished.append(case.name)
    return PredictionPlan(predictor, request, cases, pending, finished, record_settings, truths, notes)


def _check_dicom_outputs(request, cases):
    """Raises ValueError naming the input unless every case is a DICOM series a SEG or RTSTRUCT can refer to; notes."""
    notes = []
    for case in cases:
        try:
            if case.kind != "dicom" and (case.channel_paths or read_dicom_header(case.path) is None):
                raise ValueError(
                    f"--output-format {request.output_format} writes a DICOM object of the input series, and "
                    f"'{case.path}' is not a DICOM series: give DICOM input, or write volumes (--output-format nii.gz)."
                )
            notes += [f"{case.name}: {note}" for note in check_dicom_source(case.path, request.series)]
        except CaseError as error:
            raise ValueError(str(error)) from None
    return notes


def _check_finished_case(request, case, record, record_settings):
    """Raises ValueError unless the existing label volume of `case` is this input's prediction with these settings."""
    label = request.label_path(case)
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


def _find_truths(request, cases, table):
    """`{case: truth path}`: every case's truth found, read whole, on its grid and holding only the models' label values."""
    if not os.path.isdir(request.truth):
        raise ValueError(f"--truth '{request.truth}' is not a folder.")
    truths, missing = {}, []
    for case in cases:
        truth = find_mask(request.truth, case.name) or find_mask(request.truth, strip_volume_suffix(os.path.basename(case.path)))
        if truth is None:
            missing.append(case.name)
        truths[case.name] = truth
    if missing:
        raise ValueError(f"--truth '{request.truth}' has no label volume for case(s) {missing[:5]} "
                         f"(looked for <case>.nii.gz/.nii/.mha/.mhd/.nrrd and a <case>/ folder).")
    for case in cases:
        try:
            truth = read_mask_volume(truths[case.name])
            volume = read_input_volume(case, request.series)  # read again for the prediction: inputs are not kept in memory
            check_same_grid(volume, truth, f"--truth '{truths[case.name]}' and the input '{case.path}'")
            table.to_indices(truth.array, f"the truth '{truths[case.name]}'")
        except CaseError as error:
            raise ValueError(str(error)) from None
    return truths


def _read_record(path: str):
    try:
        with open(path) as stream:
            return json.load(stream)
    except (OSError, ValueError):
        return None


def run_prediction(plan: PredictionPlan) -> int:
    """Predicts the plan's pending cases under a lock on OUT; prints a summary and returns 0, or 1 when a case failed."""
    try:
        with FolderLock(plan.out):
            return _predict_locked(plan)
    except FolderBusyError as error:
        raise BadInput(str(error)) from None


def _postprocess_labels(plan):
    """The labels to post-process, and the decision written to OUT/postprocessing.json."""
    request = plan.request
    mode = request.postprocess
    names = list(plan.predictor.settings.class_names)
    if mode == "none":
        return []
    if mode == "largest-component":
        labels = foreground_classes(names)
        decision = {"mode": mode, "classes": [names[i] for i in labels]}
    else:
        path = os.path.join(plan.out, "postprocessing.json")
        previous = _read_record(path)
        if previous and previous.get("model_sha256") == plan.settings["model_sha256"] and previous.get("tta") == request.tta:
            return [names.index(name) for name in previous["classes"]]
        decided = decide_postprocessing(plan.predictor)
        labels = decided["classes"]
        decision = {"mode": mode, "classes": [names[i] for i in labels], "per_class": decided["per_class"],
                    "model_sha256": plan.settings["model_sha256"], "tta": request.tta,
                    "rule": "a class keeps only its largest 3-D component when that raises the mean Dice of the "
                            "validation cases of the models' runs"}
    write_text_atomically(os.path.join(plan.out, "postprocessing.json"), json.dumps(decision, indent=2) + "\n")
    return labels


def _predict_locked(plan):
    from tqdm.auto import tqdm

    out = plan.out
    os.makedirs(os.path.join(out, "cases"), exist_ok=True)
    partial = os.path.join(out, ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # what a killed run left (under the lock nothing else writes here)
    remove_temporaries(out)
    for note in plan.notes:
        print(f"note: {note}")
    postprocess = _postprocess_labels(plan)
    failed, written, case_notes = {}, [], {}
    bar = tqdm(plan.pending, desc="cases", unit="case", disable=True if plan.request.quiet or not plan.pending else None)
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
    request = plan.request
    volume = read_input_volume(case, request.series)
    labels, probabilities, notes = plan.predictor.predict_volume(volume, postprocess)
    os.makedirs(partial, exist_ok=True)
    # A DICOM object's source images: the series' headers, read once for the case's one or two objects.
    sources = source_datasets(case.path, request.series) if request.output_format in DICOM_OUTPUT_FORMATS else None
    staged = []
    if request.probabilities:
        path = request.probabilities_path(case)
        staged.append((os.path.join(partial, os.path.basename(path)), path))
        _write_output(plan, staged[-1][0], volume, labels, sources, probabilities)
    label_path = request.label_path(case)
    staged.append((os.path.join(partial, os.path.basename(label_path)), label_path))  # last: it marks the case done
    _write_output(plan, staged[-1][0], volume, labels, sources)
    metrics = _case_metrics(plan, case, volume, labels) if case.name in plan.truths else None
    record = {"case": case.name, "input": case.path if not case.channel_paths else case.inputs,
              "settings": plan.settings, "geometry": volume.geometry().to_dict(),
              "notes": notes, "metrics": metrics}
    write_text_atomically(request.record_path(case), json.dumps(record, indent=2, default=_plain) + "\n")
    for source, target in staged:
        os.replace(source, target)
    return notes


def _write_output(plan, path, volume, labels, sources, probabilities=None):
    """One output file of a case: its label volume (or probabilities) on the input's grid, or a DICOM object on `sources`."""
    request, settings = plan.request, plan.predictor.settings
    if sources is None:
        if probabilities is not None:
            write_volume_like(volume, probabilities, path, is_vector=True)
        else:
            write_volume_like(volume, settings.labels.to_values(labels), path)  # the training masks' label values
        return
    algorithm = AlgorithmInfo(__version__, tuple(plan.settings["models"]), tuple(plan.settings["model_sha256"]))
    if request.output_format == "rtstruct":
        write_structure_set(path, labels, settings.class_names, sources, algorithm)
    else:
        write_segmentation(path, labels, settings.class_names, sources, algorithm, probabilities)


def _case_metrics(plan, case, volume, labels):
    """`volume_metrics` rows of one case's prediction against its --truth."""
    table = plan.predictor.settings.labels
    truth_path = plan.truths[case.name]
    truth = read_mask_volume(truth_path)
    check_same_grid(volume, truth, f"the prediction of '{case.path}' and its truth '{truth_path}'")
    truth_classes = table.to_indices(truth.array, f"the truth '{truth_path}'")
    return [{"case": case.name, **row} for row in
            volume_metrics(labels, truth_classes, spacing_zyx=volume.spacing_zyx, classes=list(table.names))]


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _write_scores(plan):
    """`volume_metrics.csv` and `volume_summary.md` from the records of every case scored against --truth."""
    import pandas as pd

    if not plan.truths:
        return None
    rows = []
    for case in plan.cases:
        record = _read_record(plan.request.record_path(case))
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
