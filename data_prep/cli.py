"""`keras-focal prep ...`: the data-preparation subcommands."""

import os

from keras_focal.data_prep.dataset import PrepOptions, prepare_dataset
from keras_focal.data_prep.slicing import DEFAULT_PERCENTILES



def _add_common(parser):
    parser.add_argument("--size", type=int, default=224, help="output height and width (default: 224)")
    parser.add_argument(
        "--percentiles", type=float, nargs=2, default=DEFAULT_PERCENTILES, metavar=("LOW", "HIGH"),
        help="per-volume intensity clipping percentiles before scaling to 0..255 (default: 0.5 99.5)",
    )
    parser.add_argument("--keep-aspect", action="store_true", help="pad to a square before resizing (default: stretch)")
    parser.add_argument("--slices", choices=("all", "foreground"), default="all", help="which slices to keep (default: all)")
    parser.add_argument("--min-foreground", type=float, default=0.0, help="with --slices foreground: minimum foreground fraction")
    parser.add_argument("--folds", type=int, default=3, help="patient-level folds (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default: 0)")
    parser.add_argument("--workers", type=int, default=1, help="processes (default: 1)")
    parser.add_argument("--force", action="store_true", help="rebuild finished cases")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_prep_parser(commands):
    prep = commands.add_parser(
        "prep",
        help="slice volumes / label images into a 224x224 PNG dataset with folds",
        description="Prepare a PNG image/mask dataset with manifest.csv, classes.json and patient-level folds.csv.",
    )
    sources = prep.add_subparsers(dest="source", metavar="SOURCE", required=True)

    synth = sources.add_parser("synth", help="write the built-in synthetic data (no download)")
    synth.add_argument("out", metavar="OUT")
    synth.add_argument("--cases", type=int, default=12, help="PROMISE12-style MRI cases, 0 for none (default: 12)")
    synth.add_argument("--us-cases", type=int, default=5,
                       help="DICOM ultrasound cases, 0 for none (default: 5, as the paper's TRUS set)")
    synth.add_argument("--scenes", type=int, default=0,
                       help="CamVid-style street scenes with 11 classes, several rare, in OUT/camvid (default: 0, none)")
    synth.add_argument("--prepare", action="store_true",
                       help="also prepare what was written: OUT/prepared/promise12, OUT/prepared/trus, OUT/prepared/camvid")
    _add_common(synth)
    synth.set_defaults(prepare_source=_synth)

    promise12 = sources.add_parser("promise12", help="PROMISE12 CaseNN.mhd + CaseNN_segmentation.mhd")
    promise12.add_argument("src", metavar="SRC")
    promise12.add_argument("out", metavar="OUT")
    _add_common(promise12)
    promise12.set_defaults(prepare_source=_promise12)

    dicom = sources.add_parser("dicom", help="one DICOM series folder (or multi-frame file) per case")
    dicom.add_argument("src", metavar="SRC")
    dicom.add_argument("out", metavar="OUT")
    dicom.add_argument("--masks", required=True, help="folder with <case>.mhd/.nrrd/.nii.gz or <case>/ DICOM masks")
    dicom.add_argument("--series", help="SeriesInstanceUID or SeriesNumber when a folder holds several series")
    dicom.add_argument("--class-names", default="background,prostate", help="comma-separated (default: background,prostate)")
    _add_common(dicom)
    dicom.set_defaults(prepare_source=_dicom)

    camvid = sources.add_parser("camvid", help="RGB images + colour-coded label images (CamVid)")
    camvid.add_argument("src", metavar="SRC")
    camvid.add_argument("out", metavar="OUT")
    camvid.add_argument("--palette", help="CSV name,r,g,b (default: CamVid's 32 colours in MATLAB's 11 classes)")
    camvid.add_argument("--group-by", choices=("sequence", "image"), default="sequence",
                        help="a case is a video sequence (default) or one image")
    _add_common(camvid)
    camvid.set_defaults(prepare_source=_camvid)
    return prep


def _options(args):
    return PrepOptions(
        size=args.size,
        percentiles=tuple(args.percentiles),
        keep_aspect=args.keep_aspect,
        slices=args.slices,
        min_foreground=args.min_foreground,
    )


def _run(args, cases, out, class_names, source, unlabelled=(), failures=None):
    report = prepare_dataset(
        cases, out, class_names, _options(args), source=source, folds=args.folds, seed=args.seed,
        workers=args.workers, force=args.force, unlabelled=unlabelled, failures=failures, progress=not args.quiet,
    )
    print(report.summary())
    print(f"dataset: {os.path.abspath(out)}")
    return report.exit_status


def _promise12(args):
    from keras_focal.data_prep.sources import PROSTATE_CLASSES, find_promise12_cases

    cases, unlabelled, problems = find_promise12_cases(args.src)
    return _run(args, cases, args.out, PROSTATE_CLASSES, "promise12", unlabelled, problems)


def _dicom(args):
    from keras_focal.data_prep.sources import find_dicom_cases

    from keras_focal.data_prep.prepared import check_class_names

    names = check_class_names([n.strip() for n in args.class_names.split(",") if n.strip()], what="--class-names")
    cases, problems = find_dicom_cases(args.src, args.masks, series=args.series)
    return _run(args, cases, args.out, names, "dicom", failures=problems)


def _camvid(args):
    from keras_focal.data_prep.camvid import CAMVID_11, read_palette_csv
    from keras_focal.data_prep.sources import find_rgb_label_cases

    palette = read_palette_csv(args.palette) if args.palette else CAMVID_11
    cases, problems = find_rgb_label_cases(args.src, palette, group_by=args.group_by)
    return _run(args, cases, args.out, list(palette), "camvid", failures=problems)


def _synth(args):
    from keras_focal.data_prep.camvid import CAMVID_11
    from keras_focal.data_prep.scenes import make_camvid_like
    from keras_focal.data_prep.sources import PROSTATE_CLASSES, find_dicom_cases, find_promise12_cases, find_rgb_label_cases
    from keras_focal.data_prep.synthetic import make_promise12_like, make_ultrasound_like

    counts = {"--cases": args.cases, "--us-cases": args.us_cases, "--scenes": args.scenes}
    for flag, count in counts.items():
        if count < 0:
            raise ValueError(f"{flag} must be >= 0 (0 writes none). Received: {count}")
    if not any(counts.values()):
        raise ValueError("--cases, --us-cases and --scenes are all 0: nothing to write.")
    mri, trus, scenes = (os.path.join(args.out, name) for name in ("promise12", "trus", "camvid"))
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
    print("wrote " + "; ".join(written))
    if not args.prepare:
        first = ("promise12", mri) if args.cases else ("dicom", f"{trus}/dicom --masks {trus}/masks") if args.us_cases else ("camvid", scenes)
        print(f"next: keras-focal prep {first[0]} {first[1]} PREPARED_DIR")
        return 0
    prepared = os.path.join(args.out, "prepared")
    if args.cases:
        cases, unlabelled, problems = find_promise12_cases(mri)
        status = max(status, _run(args, cases, os.path.join(prepared, "promise12"), PROSTATE_CLASSES, "promise12", unlabelled, problems))
    if args.us_cases:
        cases, problems = find_dicom_cases(os.path.join(trus, "dicom"), os.path.join(trus, "masks"))
        status = max(status, _run(args, cases, os.path.join(prepared, "trus"), PROSTATE_CLASSES, "dicom", failures=problems))
    if args.scenes:
        cases, problems = find_rgb_label_cases(scenes, CAMVID_11)
        status = max(status, _run(args, cases, os.path.join(prepared, "camvid"), list(CAMVID_11), "camvid", failures=problems))
    return status


def run_prep(args):
    """Runs a parsed `prep` command; bad input (`keras_focal.errors`) is what the checks of its folders refuse."""
    from keras_focal.errors import checking
    from keras_focal.files import check_not_inside, check_output_folder

    with checking():
        check_output_folder(args.out)
        check_not_inside(args.out, [getattr(args, "src", None), getattr(args, "masks", None)])
        return args.prepare_source(args)
