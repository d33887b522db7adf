"""``sparsert train``: train the models from a data set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from sparsert.cli.common import ProgressCallback, add_device_option, parse_key_values
from sparsert.cli.data_cmd import DATA_HELP
from sparsert.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train a model (resumable run folder with config, metrics.jsonl, checkpoints)")
    models = parser.add_subparsers(dest="model", metavar="MODEL", required=True)

    scm = models.add_parser("scm", help="the scribble completion module, on simulated scribbles")
    scm.add_argument("--data", required=True, metavar="DIR", help=DATA_HELP + " (cases with dense structures)")
    scm.add_argument("--val-data", metavar="DIR", help="validation data set (default: the last 10%% of --data)")
    scm.add_argument("--out", required=True, metavar="RUN", help="run folder")
    scm.add_argument("--config", metavar="YAML", help="settings file (see the run folder's config.yaml for every key)")
    scm.add_argument("--steps", type=int, help="optimiser steps")
    scm.add_argument("--seed", type=int)
    scm.add_argument("--max-cases", type=int, help="use only the first N training cases")
    scm.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="any setting, e.g. --set losses.boundary=0 --set model.use_clustering=false")
    scm.add_argument("--cache", metavar="DIR", help="preprocessed-data cache folder (default: ~/.cache/sparsert/preprocessed)")
    scm.add_argument("--resume", action="store_true", help="continue the run in RUN from its checkpoint")
    add_device_option(scm)
    scm.set_defaults(run=run_scm)


def parse_settings(items: list[str]) -> dict[str, object]:
    return parse_key_values(items, "--set", yaml.safe_load, "KEY=VALUE, e.g. losses.boundary=0")


def run_scm(args: argparse.Namespace) -> int:
    from sparsert.data.datasets import open_dataset
    from sparsert.training.cache import cached_cases
    from sparsert.training.config import load_config
    from sparsert.training.run import RunFolder
    from sparsert.training.scm import SCMTrainConfig, train_scm

    run = RunFolder(args.out)
    if run.checkpoint_path.exists() and not args.resume:
        raise InputError(f"{args.out}: holds a checkpoint already; pass --resume to continue it, or choose another --out")
    overrides = {"steps": args.steps, "seed": args.seed, **parse_settings(args.set)}
    config = load_config(SCMTrainConfig, args.config, overrides)
    cache = Path(args.cache) if args.cache else None
    data = open_dataset(args.data)
    ids = data.case_ids()[: args.max_cases] if args.max_cases else data.case_ids()
    if args.val_data:
        val = open_dataset(args.val_data)
        val_paths = cached_cases(val, cache, val.case_ids()[: config.val_cases], on_case=None)
        train_ids = ids
    else:
        n_val = max(1, len(ids) // 10) if len(ids) > 1 else 0
        train_ids, val_ids = ids[: len(ids) - n_val], ids[len(ids) - n_val :]
        val_paths = cached_cases(data, cache, val_ids) if val_ids else []
    bar = ProgressCallback("preprocessing")
    done = iter(range(1, len(train_ids) + 1))
    train_paths = cached_cases(data, cache, train_ids, on_case=lambda c: bar(next(done), len(train_ids), c))
    print(f"training scm on {len(train_paths)} case(s), validating on {len(val_paths)}; run folder {run.path}", file=sys.stderr)
    result = train_scm(train_paths, val_paths, run, config, resume=args.resume, device=args.device)
    print(f"finished at step {result['step']}; best validation mean Dice {result['best_mean_dice']:.4f}")
    return 0
