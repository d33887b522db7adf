"""``sparsert evaluate``: score predictions against references."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from sparsert.cli import complete_cmd, refine_cmd
from sparsert.cli.common import (
    add_device_option, add_overwrite_option, add_precision_option, parse_prescriptions, progress,
)
from sparsert.cli.data_cmd import DATA_HELP
from sparsert.io.json_io import write_csv, write_json
from sparsert.errors import InputError
from sparsert.io.output import writable


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("evaluate", help="score predictions against references")
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    complete_cmd.register_evaluation(kinds)

    dose = kinds.add_parser(
        "dose",
        help="OpenKBP dose and DVH scores, HI, Paddick CI and D95 errors",
        description="Score predicted doses. REF is a data set (OpenKBP CSV patients folder, case folders; "
        "forced as openkbp:DIR or cases:DIR) and PRED a folder of predictions (pt_N.csv challenge submissions, "
        "<case>.nrrd/.nii.gz or <case>/dose.<ext>); or REF and PRED are two dose files and --structures is given.",
    )
    dose.add_argument("--reference", required=True, metavar="REF")
    dose.add_argument("--predicted", required=True, metavar="PRED")
    dose.add_argument("--structures", metavar="S.seg.nrrd", help="reference structures, when REF is a dose file")
    dose.add_argument("--possible-dose-mask", metavar="MASK", help="when REF is a dose file (default: where either dose > 0)")
    dose.add_argument("--mask-prediction", action="store_true", help="zero predictions outside the possible-dose mask first")
    dose.add_argument("--prescription", action="append", default=[], metavar="NAME=GY", help="target prescription override")
    dose.add_argument("--out", metavar="metrics.json", help="write all scores and per-case detail as JSON")
    dose.add_argument("--csv", metavar="cases.csv", help="write one row per case (dose error, DVH error) as CSV")
    add_overwrite_option(dose)
    dose.set_defaults(run=run_dose)

    register_refine(kinds)
    register_crossmodal(kinds)


def run_dose(args: argparse.Namespace) -> int:
    from sparsert.data.datasets import open_dataset
    from sparsert.evaluation.dose import dataset_dose_cases, evaluate_dose, file_dose_case

    prescriptions = parse_prescriptions(args.prescription) or None
    reference, predicted = Path(args.reference), Path(args.predicted)
    if reference.is_file():
        if args.structures is None:
            raise InputError("--structures is required when --reference is a dose file (the DVH needs them)")
        mask = Path(args.possible_dose_mask) if args.possible_dose_mask else None
        cases = iter([file_dose_case(reference, predicted, Path(args.structures), mask)])
    else:
        if args.structures or args.possible_dose_mask:
            raise InputError("--structures and --possible-dose-mask apply only when --reference is a dose file")
        if not predicted.is_dir():
            raise InputError(f"{predicted}: expected a folder of predictions (the reference is a data set)")
        dataset = open_dataset(args.reference)
        cases = progress(dataset_dose_cases(dataset, predicted), "scoring", total=len(dataset))
    result = evaluate_dose(cases, mask_prediction=args.mask_prediction, prescriptions=prescriptions)
    if args.out:
        write_json(result, args.out, overwrite=args.overwrite)
    if args.csv:
        write_csv([{k: c[k] for k in ("case_id", "dose_error", "dvh_error")} for c in result["cases"]], args.csv, overwrite=args.overwrite)
    dvh = "n/a" if result["dvh_score"] is None else f"{result['dvh_score']:.4f}"
    print(f"dose score {result['dose_score']:.4f} Gy, DVH score {dvh} Gy over {result['n_cases']} case(s)")
    return 0


def register_refine(kinds: argparse._SubParsersAction) -> None:
    """``evaluate refine``: click-refinement models on cases with a reference tumour."""
    refine = kinds.add_parser(
        "refine",
        help="click refinement: Dice/HD95 per click, clicks to reach Dice 0.75/0.85 and HD95 5/2.5 mm",
        description="Simulate clicks on each case (deterministic most-interior-error protocol by default) and score "
        "the refined masks on the preprocessed crop (the models' working grid). Several --model files form an "
        "ensemble averaged in probability; with --cross-validation the k-th --model is fold k's model, scored on the "
        "patients fold k held out (several files joined by commas: fold k's ensemble).",
    )
    refine.add_argument("--data", required=True, metavar="DIR", help=DATA_HELP)
    refine.add_argument("--model", action="append", required=True, metavar="NAME_OR_PATH",
                        help="model file or registered name; repeat for an ensemble")
    refine.add_argument("--fold", type=int, help="evaluate only this cross-validation fold's held-out cases")
    refine.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    refine.add_argument("--cross-validation", action="store_true",
                        help="one --model per fold, in fold order: each scores the patients its fold held out, "
                        "summarised over all patients and per fold")
    refine.add_argument("--max-clicks", type=int, default=20)
    refine.add_argument("--protocol", choices=("interior", "sampled"), default="interior")
    refine.add_argument("--mode", choices=("whole", "region"), default="whole", help="refinement passes (default: whole volume)")
    refine.add_argument("--seed", type=int, default=0, help="seed of the sampled protocol")
    refine.add_argument("--flips", action="store_true", help=refine_cmd.FLIPS_HELP)
    refine.add_argument("--no-honour-clicks", dest="honour_clicks", action="store_false",
                        help="score the networks' own masks: clicks are neither one-sided nor their balls kept at their "
                             "label (ablation)")
    refine.add_argument("--all-parts", dest="keep_largest", action="store_false",
                        help="keep every connected part of the automatic result, not only the largest (ablation)")
    refine.add_argument("--no-new-parts", dest="new_parts", action="store_false",
                        help="refine a positive click outside the mask from the current probability only, without the "
                             "pass from no memory whose part around the click is added (ablation)")
    refine.add_argument("--crop", type=int, nargs=3, metavar=("K", "J", "I"),
                        help="crop size in voxels (default: the training default)")
    refine.add_argument("--cache", metavar="DIR", help="preprocessed-data cache folder")
    refine.add_argument("--out", required=True, metavar="result.json")
    refine.add_argument("--plot", metavar="dice.png", help="Dice-vs-clicks plot")
    refine.add_argument("--label", help="name of this model in the plot (default: the model file name)")
    add_device_option(refine)
    add_overwrite_option(refine)
    refine.set_defaults(run=run_refine)


def run_refine(args: argparse.Namespace) -> int:
    from sparsert.data.datasets import open_dataset
    from sparsert.device import resolve_device
    from sparsert.evaluation.refine import evaluate_cross_validation, evaluate_refinement, plot_dice_curves
    from sparsert.models.icr import load_click_model

    for path in filter(None, (args.out, args.plot)):
        writable(path, args.overwrite)
    if args.cross_validation and (args.fold is not None or len(args.model) != args.folds):
        raise InputError(f"--cross-validation takes one --model per fold ({args.folds}, in fold order) and no --fold; "
                         f"got {len(args.model)} model(s)" + (f" and --fold {args.fold}" if args.fold is not None else ""))
    members = model_groups(args.model, args.cross_validation)
    paths = [path for group in members for path in group]
    device = resolve_device(args.device)
    dataset = open_dataset(args.data)

    options = dict(max_clicks=args.max_clicks, protocol=args.protocol, mode=args.mode, seed=args.seed,
                   honour_clicks=args.honour_clicks, keep_largest=args.keep_largest, new_parts=args.new_parts)
    if args.cross_validation:
        models = [load_click_model(group, device, flips=args.flips) for group in members]
        folds = ((model, _held_out_cases(args, dataset, model, k)) for k, model in enumerate(models))
        result = evaluate_cross_validation(folds, **options)
    else:
        model = load_click_model(paths, device, flips=args.flips)
        result = evaluate_refinement(model, _held_out_cases(args, dataset, model, args.fold), **options)
    ids = [case["case_id"] for case in result["cases"]]
    result.update(models=[",".join(str(p) for p in group) for group in members], case_ids=ids, fold=args.fold,
                  flips=args.flips)
    write_json(result, args.out, overwrite=args.overwrite)
    if args.plot:
        label = args.label or (
            f"{len(members)}-fold cross-validation" if args.cross_validation
            else Path(paths[0]).parent.name if len(paths) == 1 else f"ensemble of {len(paths)}")
        plot_dice_curves({label: result}, args.plot, overwrite=args.overwrite)
    at = result["dice_at"]
    curve = ", ".join(f"{n} clicks {at[n]['mean']:.3f}" for n in at)
    print(f"mean Dice: {curve} over {result['n_cases']} case(s)")
    return 0


def model_groups(names: list[str], cross_validation: bool) -> list[list[Path]]:
    """The weight files of each ``--model``: one each, or with cross-validation one or several (comma-joined)
    forming that fold's ensemble."""
    from sparsert.models.registry import resolve_weights

    return [[resolve_weights(name, task="refinement")[0] for name in (group.split(",") if cross_validation else [group])]
            for group in names]


def _held_out_cases(args: argparse.Namespace, dataset, model, fold: int | None) -> Iterator:
    """The preprocessed cases of ``fold``'s held-out patients (every case for None) on ``model``'s grid."""
    from sparsert.training.folds import fold_split
    from sparsert.training.icr_data import ICRDataConfig, cached_icr_cases, load_icr_case

    spec = model.spec
    data_config = ICRDataConfig(modalities=spec.modalities, structure=spec.structure)
    if spec.spacing is not None:
        data_config.spacing = spec.spacing
    if args.crop:
        data_config.size_kji = tuple(args.crop)
    ids = dataset.case_ids() if fold is None else fold_split(dataset.case_ids(), fold, args.folds)[1]
    cached = cached_icr_cases(dataset, data_config, ids, Path(args.cache) if args.cache else None)
    return (load_icr_case(p) for p in progress(cached, "evaluating"))


def register_crossmodal(kinds: argparse._SubParsersAction) -> None:
    parser = kinds.add_parser(
        "crossmodal",
        help="cross-validated Dice, ASD and HD95 of cross-modal tumour models",
        description="Scores each trained fold (RUN/best.pt, or RUN/fold_*/best.pt) on the patients it held out: "
        "the raw CT and MR go through the full inference and the tumour is compared with GTV_Mass on the CT grid.",
    )
    parser.add_argument("--data", required=True, metavar="DIR", help=DATA_HELP + " (the data set the runs were trained on)")
    parser.add_argument("--runs", required=True, nargs="+", metavar="RUN", help="run folders (one per fold, or holding fold_*)")
    parser.add_argument("--out", metavar="metrics.json", help="write the summary and per-case scores as JSON")
    parser.add_argument("--csv", metavar="cases.csv", help="write one row per case (Dice, ASD, HD95, seconds) as CSV")
    parser.add_argument("--fine-tune-steps", type=int, default=0, metavar="N",
                        help="fine-tune a copy of the model on each case's simulated user scribbles for N steps "
                        "before segmenting (default 0: no fine-tuning)")
    parser.add_argument("--scribble-fraction", type=float, default=0.3, metavar="F",
                        help="with --fine-tune-steps: share of the tumour's axial slices scribbled (default 0.3)")
    parser.add_argument("--single-context", dest="contexts", action="store_false",
                        help="the whole-volume pass alone instead of the context ensemble (the ablation)")
    parser.add_argument("--training-cases", action="store_true",
                        help="score the patients each model was trained on instead of those it held out: a check of "
                        "a model trained with --all-cases, not a measure of how it generalises")
    add_device_option(parser)
    add_precision_option(parser)
    add_overwrite_option(parser)
    parser.set_defaults(run=run_crossmodal)


def run_crossmodal(args: argparse.Namespace) -> int:
    from sparsert.data.datasets import open_dataset
    from sparsert.evaluation.crossmodal import METRICS, evaluate_crossmodal, fold_checkpoints

    for path in filter(None, (args.out, args.csv)):
        writable(path, args.overwrite)
    checkpoints = fold_checkpoints([Path(r) for r in args.runs])
    dataset = open_dataset(args.data)
    fine_tuning = None
    if args.fine_tune_steps:
        from sparsert.crossmodal.finetune import FineTuning

        fine_tuning = FineTuning(steps=args.fine_tune_steps)
    result = evaluate_crossmodal(dataset, checkpoints, device=args.device, fine_tuning=fine_tuning,
                                 scribble_fraction=args.scribble_fraction, contexts=args.contexts,
                                 precision=args.precision, training=args.training_cases)
    if args.out:
        write_json(result, args.out, overwrite=args.overwrite)
    if args.csv:
        keys = ("case_id",) + METRICS + ("seconds",)
        write_csv([{k: c[k] for k in keys} for c in result["cases"]], args.csv, overwrite=args.overwrite)
    s = result["summary"]
    print(f"Dice {s['dice']['mean']:.4f} +- {s['dice']['std']:.4f}, ASD {s['asd_mm']['mean']:.2f} mm, "
          f"HD95 {s['hd95_mm']['mean']:.2f} mm over {result['n_cases']} {result['cases_scored']} case(s) from "
          f"{result['n_models']} model(s); "
          f"{s['seconds']['mean']:.2f} s per case")
    return 0
