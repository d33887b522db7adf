"""``sparsert train``: train the models from a data set, in one process or as one of torchrun's processes.

Under ``torchrun --nproc_per_node N -m sparsert train ...`` every process runs the same command: rank 0
preprocesses missing cache entries while the others wait, then all train (DistributedDataParallel, see
:mod:`sparsert.training.distributed`); only rank 0 prints and writes the run folder.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import yaml

from sparsert.cli.common import ProgressCallback, add_device_option, parse_key_values
from sparsert.cli.data_cmd import DATA_HELP
from sparsert.cores import usable_cores
from sparsert.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a model (resumable run folder with config, metrics.jsonl, checkpoints)")
    models = parser.add_subparsers(dest="model", metavar="MODEL", required=True)

    add_cached_training(models, "scm", "the scribble completion module, on simulated scribbles", "cases with dense structures",
                        "--set losses.boundary=0 --set model.use_clustering=false", run_scm)
    add_cached_training(models, "dose", "the dose network (mask-guided, or the scribbles-instead-of-masks baseline)",
                        "cases with structures, dose and possible-dose mask",
                        "--set model.backbone=unet --set model.modulation=false --set prompt=scribble", run_dose)
    add_cached_training(models, "dose-refiner", "a full-resolution refinement head on a trained dose model (its weights "
                        "fixed); the result is a dose model file", "cases with structures, dose and possible-dose mask",
                        "--set base=dose-scribble --set prompt=completed", run_dose_refiner)
    add_cached_training(models, "joint", "the scribble-guided dose model: completion and dose networks trained end to end "
                        "from scribbles (starting from trained weights)", "cases with structures, dose and possible-dose mask",
                        "--set scm_init=RUN/best.pt --set dose_init=dose-mask --set completion_weight=0", run_joint)

    register_icr(models)
    register_crossmodal(models)


def add_cached_training(models: argparse._SubParsersAction, name: str, help: str, data: str, set_example: str, run) -> None:
    """A ``train NAME`` command on cached cases, validated on --val-data or the last 10% of --data."""
    parser = models.add_parser(name, help=help)
    parser.add_argument("--data", required=True, metavar="DIR", help=f"{DATA_HELP} ({data})")
    parser.add_argument("--val-data", metavar="DIR", help="validation data set (default: the last 10%% of --data)")
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder")
    parser.add_argument("--max-cases", type=int, help="use only the first N training cases")
    add_run_options(parser, set_example)
    parser.set_defaults(run=in_process_group(run))


def add_run_options(parser: argparse.ArgumentParser, set_example: str) -> None:
    """The options every training takes: settings, run control, cache and device."""
    parser.add_argument("--config", metavar="YAML", help="settings file (see the run folder's config.yaml for every key)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimiser steps")
    length.add_argument("--epochs", type=float, help="passes over the training cases, by all processes together: "
                        "ceil(EPOCHS x cases / (cases per step x processes)) optimiser steps, where a step takes "
                        "batch cases per process in dose, batch_size in crossmodal, one in scm, initial and refine")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=f"any setting, e.g. {set_example}")
    parser.add_argument("--cache", metavar="DIR", help="preprocessed-data cache folder (default: ~/.cache/sparsert/preprocessed)")
    parser.add_argument("--preprocess-workers", type=int, default=min(4, usable_cores()), metavar="N",
                        help="processes that fill missing cache entries (default: the usable CPU cores, at most 4)")
    parser.add_argument("--resume", action="store_true", help="continue the run from its checkpoint")
    add_device_option(parser)


def in_process_group(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``run`` in torchrun's process group when started by torchrun (a no-op otherwise), left at the end;
    ``args.device`` becomes this process's device. A torchrun worker that finished ends there and then
    (:func:`~sparsert.training.distributed.exit_process`); errors still reach the command's handler, and
    a worker that fails leaves the group at once, so that torchrun stops its peers rather than leaving
    them waiting in a collective the failed rank never reaches."""

    @functools.wraps(run)
    def joined(args: argparse.Namespace) -> int:
        from sparsert.training import distributed

        args.device = distributed.setup(args.device)
        try:
            code = run(args)
        except BaseException:
            distributed.abandon()
            raise
        distributed.cleanup()
        if distributed.world_size() > 1:
            distributed.exit_process(code)
        return code

    return joined


def say(message: str, file: TextIO | None = None) -> None:
    """Print on rank 0 only: under torchrun every process runs the command."""
    from sparsert.training.distributed import is_main

    if is_main():
        print(message, file=file)


def steps_from_epochs(args: argparse.Namespace, config: Any, cases: int, per_step: int) -> None:
    """With --epochs, set ``config.steps`` for that many passes over ``cases`` training cases by all
    processes together, each taking ``per_step`` cases a step."""
    from sparsert.training.distributed import world_size

    if args.epochs is None:
        return
    if args.epochs <= 0:
        raise InputError(f"--epochs {args.epochs:g}: expected a positive number")
    config.steps = max(1, math.ceil(args.epochs * cases / (per_step * world_size())))


def open_run(path: str | Path, resume: bool):
    """The run folder at ``path``; one holding a checkpoint is only reused with --resume."""
    from sparsert.training.run import RunFolder

    run = RunFolder(path)
    if run.checkpoint_path.exists() and not resume:
        raise InputError(f"{run.path}: holds a checkpoint already; pass --resume to continue it, or choose another --out")
    return run


def preprocessing_progress(total: int) -> Callable[[str], None] | None:
    """An ``on_case`` callback drawing a progress bar over ``total`` cases (None except on rank 0)."""
    from sparsert.training.distributed import is_main

    if not is_main():
        return None
    bar = ProgressCallback("preprocessing")
    done = iter(range(1, total + 1))
    return lambda case_id: bar(next(done), total, case_id)


def parse_settings(items: list[str]) -> dict[str, object]:
    return parse_key_values(items, "--set", yaml.safe_load, "KEY=VALUE, e.g. losses.boundary=0")


def run_scm(args: argparse.Namespace) -> int:
    from sparsert.training.config import load_config
    from sparsert.training.scm import SCMTrainConfig, train_scm

    run = open_run(args.out, args.resume)
    overrides = {"steps": args.steps, "seed": args.seed, **parse_settings(args.set)}
    config = load_config(SCMTrainConfig, args.config, overrides)
    train_paths, val_paths = cached_split(args, config.val_cases)
    steps_from_epochs(args, config, len(train_paths), 1)
    say(f"training scm on {len(train_paths)} case(s), validating on {len(val_paths)}; run folder {run.path}", file=sys.stderr)
    result = train_scm(train_paths, val_paths, run, config, resume=args.resume, device=args.device)
    say(f"finished at step {result['step']}; best validation mean Dice {result['best_mean_dice']:.4f}")
    return 0


def cached_split(args: argparse.Namespace, val_cases: int) -> tuple[list[Path], list[Path]]:
    """Cache entries of the training cases and of up to ``val_cases`` validation cases (--val-data,
    or else the last 10% of --data)."""
    from sparsert.data.datasets import open_dataset
    from sparsert.training.cache import cached_cases
    from sparsert.training.distributed import main_first

    cache = Path(args.cache) if args.cache else None
    data = open_dataset(args.data)
    ids = data.case_ids()[: args.max_cases] if args.max_cases else data.case_ids()
    with main_first():
        if args.val_data:
            val = open_dataset(args.val_data)
            val_paths = cached_cases(val, cache, val.case_ids()[:val_cases], workers=args.preprocess_workers)
            train_ids = ids
        else:
            n_val = max(1, len(ids) // 10) if len(ids) > 1 else 0
            train_ids, val_ids = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
            val_paths = cached_cases(data, cache, val_ids[:val_cases], workers=args.preprocess_workers) if val_ids else []
        train_paths = cached_cases(
            data, cache, train_ids, on_case=preprocessing_progress(len(train_ids)), workers=args.preprocess_workers
        )
    return train_paths, val_paths


def run_dose(args: argparse.Namespace) -> int:
    from sparsert.training.config import load_config
    from sparsert.training.dose import DoseTrainConfig, train_dose

    run = open_run(args.out, args.resume)
    config = load_config(DoseTrainConfig, args.config, {"steps": args.steps, "seed": args.seed, **parse_settings(args.set)})
    train_paths, val_paths = cached_split(args, config.val_cases)
    steps_from_epochs(args, config, len(train_paths), config.batch)
    say(f"training dose ({config.model.backbone}, {config.prompt}) on {len(train_paths)} case(s), validating on "
        f"{len(val_paths)}; run folder {run.path}", file=sys.stderr)
    result = train_dose(train_paths, val_paths, run, config, resume=args.resume, device=args.device)
    say(f"finished at step {result['step']}; best validation dose score {result['best_dose_score']:.3f} Gy; model {run.best_path}")
    return 0


def run_dose_refiner(args: argparse.Namespace) -> int:
    from sparsert.training.config import load_config
    from sparsert.training.dose_refiner import RefinerTrainConfig, check_config, train_dose_refiner

    config = load_config(RefinerTrainConfig, args.config, {"steps": args.steps, "seed": args.seed, **parse_settings(args.set)})
    check_config(config)
    run = open_run(args.out, args.resume)
    train_paths, val_paths = cached_split(args, config.val_cases)
    steps_from_epochs(args, config, len(train_paths), config.batch)
    say(f"training a dose refiner on {config.base} ({config.prompt}) on {len(train_paths)} case(s), validating on "
        f"{len(val_paths)}; run folder {run.path}", file=sys.stderr)
    result = train_dose_refiner(train_paths, val_paths, run, config, resume=args.resume, device=args.device)
    say(f"finished at step {result['step']}; best validation dose score {result['best_dose_score']:.3f} Gy; model {run.best_path}")
    return 0


def run_joint(args: argparse.Namespace) -> int:
    from sparsert.training.config import load_config
    from sparsert.training.joint import DOSE_FILE, SCM_FILE, JointTrainConfig, train_joint

    run = open_run(args.out, args.resume)
    config = load_config(JointTrainConfig, args.config, {"steps": args.steps, "seed": args.seed, **parse_settings(args.set)})
    train_paths, val_paths = cached_split(args, config.val_cases)
    steps_from_epochs(args, config, len(train_paths), 1)
    say(f"training the scribble-guided dose model end to end (from {config.scm_init} and {config.dose_init}) on "
        f"{len(train_paths)} case(s), validating on {len(val_paths)}; run folder {run.path}", file=sys.stderr)
    result = train_joint(train_paths, val_paths, run, config, resume=args.resume, device=args.device)
    say(f"finished at step {result['step']}; best validation dose score from scribbles {result['best_dose_score']:.3f} Gy; "
        f"models {run.path / SCM_FILE} and {run.path / DOSE_FILE}")
    return 0


def register_icr(models: argparse._SubParsersAction) -> None:
    """``train initial`` and ``train refine``: the click-refinement models (2S-ICR and its baselines)."""
    initial = models.add_parser("initial", help="stage 1 of click refinement: automatic tumour segmentation")
    refine = models.add_parser("refine", help="stage 2 of click refinement, or a DeepGrow/DeepEdit-style baseline")
    refine.add_argument("--style", choices=("two_stage", "deepgrow", "deepedit"),
                        help="two_stage (default): refine a stage-1 result (needs --initial); "
                        "deepgrow/deepedit: one network on clicks")
    refine.add_argument("--initial", metavar="MODEL.pt", help="trained stage-1 model (the initial run's best.pt)")
    for parser in (initial, refine):
        parser.add_argument("--data", required=True, metavar="DIR", help=DATA_HELP + " (cases with the tumour structure)")
        parser.add_argument("--out", required=True, metavar="RUN", help="run folder")
        parser.add_argument("--fold", type=int, help="held-out cross-validation fold 0..N-1 (default 0)")
        parser.add_argument("--all-cases", action="store_true", help="train on every case (no held-out fold)")
        add_run_options(parser, "--set network.channels=[8,16,32,64,128] --set data.modalities=[ct]")
        parser.set_defaults(run=in_process_group(run_icr))


def run_icr(args: argparse.Namespace) -> int:
    from sparsert.data.datasets import open_dataset
    from sparsert.training.config import load_config
    from sparsert.training.distributed import main_first
    from sparsert.training.icr import ICRTrainConfig, train_icr
    from sparsert.training.folds import fold_split
    from sparsert.training.icr_data import cached_icr_cases

    run = open_run(args.out, args.resume)
    overrides = {"stage": args.model, "steps": args.steps, "seed": args.seed, "fold": args.fold, **parse_settings(args.set)}
    if args.model == "refine" and args.style:
        overrides["style"] = args.style
    config = load_config(ICRTrainConfig, args.config, overrides)
    if args.all_cases:
        config.fold = None  # not an override: load_config skips None values
    config.check()
    initial = Path(args.initial) if args.model == "refine" and args.initial else None
    data = open_dataset(args.data)
    ids = data.case_ids()
    train_ids, val_ids = (ids, []) if config.fold is None else fold_split(ids, config.fold, config.n_folds)
    if config.selection_cases:
        if config.selection_cases >= len(train_ids):
            raise InputError(f"selection_cases={config.selection_cases} leaves no training case (of {len(train_ids)})")
        train_ids, val_ids = train_ids[: -config.selection_cases], train_ids[-config.selection_cases :]
        config.select_on_val, config.val_cases = True, config.selection_cases
    cache = Path(args.cache) if args.cache else None
    steps_from_epochs(args, config, len(train_ids), 1)
    with main_first():
        paths = cached_icr_cases(
            data, config.data, train_ids + val_ids, cache, on_case=preprocessing_progress(len(ids)), workers=args.preprocess_workers
        )
    train_paths, val_paths = paths[: len(train_ids)], paths[len(train_ids):]
    what = args.model if args.model == "initial" else f"refine ({config.style})"
    use = "selecting the weights on" if config.selection_cases else "validating on"
    say(f"training {what} on {len(train_paths)} case(s), {use} {len(val_paths)}; run folder {run.path}",
        file=sys.stderr)
    result = train_icr(train_paths, val_paths, run, config, initial=initial, resume=args.resume, device=args.device)
    val = ", ".join(f"{k} {v:.4f}" for k, v in result["val"].items()) or "no validation"
    say(f"finished at step {result['step']}; {val}; model {run.best_path}")
    return 0


def register_crossmodal(models: argparse._SubParsersAction) -> None:
    """``train crossmodal``: the CT+MR fusion network from scribbles, its ablations and comparisons."""
    parser = models.add_parser("crossmodal", help="cross-modal CT+MR tumour network (CmFNet) from scribbles, one fold or all")
    parser.add_argument("--data", required=True, metavar="DIR", help=DATA_HELP + " (CT + MR cases with GTV_Mass, e.g. sts:DIR)")
    parser.add_argument("--out", required=True, metavar="RUN", help="run folder (with --fold all: one fold_K folder per fold in it)")
    parser.add_argument("--variant", metavar="NAME", help="experiment preset applied over the defaults and --config: cmfnet "
                        "(the full method), ssl, imr, imc (loss ablations), no-cff, no-cfe, ct-only, stacked-pce, full-supervision")
    parser.add_argument("--fold", metavar="K|all", help="held-out cross-validation fold (default 0), or all folds in turn")
    parser.add_argument("--all-cases", action="store_true", help="train on every case (no held-out fold; not with --fold)")
    parser.add_argument("--scribbles", metavar="DIR", help="read <case>.seg.nrrd scribbles from DIR instead of simulating them")
    add_run_options(parser, "--set losses.lambda_ct=0 --set scribbles.background=automatic")
    parser.set_defaults(run=in_process_group(run_crossmodal))


def run_crossmodal(args: argparse.Namespace) -> int:
    from sparsert.data.datasets import open_dataset
    from sparsert.training.config import load_config
    from sparsert.training.crossmodal import CrossModalTrainConfig, check_config, train_crossmodal, variant_settings
    from sparsert.training.crossmodal_cache import cached_cases
    from sparsert.training.distributed import main_first
    from sparsert.training.folds import fold_split

    settings = parse_settings(args.set)
    if "variant" in settings:
        # The name alone would record a preset whose settings were never applied.
        raise InputError(f"choose an experiment with --variant {settings['variant']}, not --set variant=...")
    overrides = {
        **(variant_settings(args.variant) if args.variant else {}),
        "steps": args.steps, "seed": args.seed, "scribbles.source": args.scribbles, **settings,
    }
    config = load_config(CrossModalTrainConfig, args.config, overrides)
    if args.fold not in (None, "all") and not args.fold.isdigit():
        raise InputError(f"--fold '{args.fold}': expected a fold number or 'all'")
    if args.all_cases and args.fold is not None:
        raise InputError("--all-cases trains on every case, so nothing is held out: leave out --fold")
    if args.all_cases:
        folds = [None]
    else:
        folds = range(config.folds) if args.fold == "all" else [int(args.fold) if args.fold else config.fold]
    data = open_dataset(args.data)
    cache = Path(args.cache) if args.cache else None
    for fold in folds:
        config.fold = fold
        check_config(config)
        run = open_run(Path(args.out) / f"fold_{fold}" if args.fold == "all" else args.out, args.resume)
        train_ids, test_ids = (data.case_ids(), []) if fold is None else fold_split(data.case_ids(), fold, config.folds)
        steps_from_epochs(args, config, len(train_ids), config.batch_size)
        ids = train_ids + test_ids
        with main_first():
            paths = cached_cases(
                data, config.preprocessing, cache, ids, on_case=preprocessing_progress(len(ids)), workers=args.preprocess_workers
            )
        which = "on every case" if fold is None else f"fold {fold}"
        say(f"training crossmodal ({config.variant}) {which}: {len(train_ids)} case(s), held out {len(test_ids)}; "
            f"run folder {run.path}", file=sys.stderr)
        result = train_crossmodal(
            paths[: len(train_ids)], paths[len(train_ids):], run, config,
            split={"train_cases": train_ids, "test_cases": test_ids}, resume=args.resume, device=args.device,
        )
        held_out = f"held-out Dice (working grid) {result['val_mean_dice']}" if test_ids else "no held-out case"
        say(f"{which} finished at step {result['step']}; {held_out}; model {run.best_path}")
    return 0
