#!/usr/bin/env python3
"""Training throughput of every model at one process and at two DDP (Gloo) processes on the same cores.

For each model (``dose``, ``scm``, ``initial``, ``refine``, ``crossmodal``) ``sparsert train`` runs
twice for a few steps: one process with ``--threads`` threads, then ``torchrun`` with two processes of
``--threads/2`` threads each. Throughput is training samples (crops, one forward and backward each)
per second between the first and the last logged step, start-up, caching and the first steps
excluded. The models whose step takes a batch (dose, crossmodal) keep the global batch: the single
process takes twice the per-process batch. SCM and click-refinement steps take one sample per
process, so two processes take two samples a step.

For the dose model the loss curves are also compared, log window by log window, with the same global
batch and seed, against the noise between two single-process runs that differ only in their seed.
Run it on an idle machine: the figures are wall-clock.

    python benchmarks/training_throughput.py --out benchmarks/results/training_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from sparsert.benchmarks.machine import machine_info
from sparsert.resources import shared_data_dir

QUIET = ["--set", "checkpoint_every=1000000", "--set", "log_every=5"]


@dataclass(frozen=True)
class Model:
    command: list[str]  # after ``sparsert train``
    steps: int
    batch_key: str | None  # the per-process batch setting; None: one sample per step and process
    batch: int = 1


def models(shared: Path) -> dict[str, Model]:
    openkbp = ["--data", f"cases:{shared / 'openkbp-nifti' / 'train'}", "--max-cases", "8"]
    sts = ["--data", f"sts:{shared / 'sts'}", "--fold", "0"]
    # The shipped click-refinement models' network (Resources/Models/icr-sts-petct.md).
    icr = ["--set", "network.channels=[8,16,32,64,128]", "--set", "network.strides=[2,2,2,2]",
           "--set", "network.num_res_units=1", "--set", "network.norm=batch", "--set", "val_every=1000000"]
    return {
        "dose": Model(["dose", *openkbp, "--set", "val_every=1000000"], 40, "batch", 2),
        "scm": Model(["scm", *openkbp, "--set", "val_every=1000000"], 40, None),
        "initial": Model(["initial", *sts, *icr], 60, None),
        "refine": Model(["refine", *sts, *icr], 60, None),
        "crossmodal": Model(["crossmodal", *sts, "--set", "val_every=1000000"], 30, "batch_size", 2),
    }


def train(run: Path, model: Model, batch: int, threads: int, processes: int, seed: int = 0,
          extra: list[str] = ()) -> list[dict]:
    """Train ``model`` into ``run``; its per-step log records (validation records left out)."""
    settings = ["--set", f"threads={threads}", *QUIET, *extra]
    if model.batch_key:
        settings += ["--set", f"{model.batch_key}={batch}"]
    command = ["train", *model.command, "--steps", str(model.steps), "--seed", str(seed), "--out", str(run), *settings]
    if processes == 1:
        launcher = [sys.executable, "-m", "sparsert"]
    else:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                    "-m", "sparsert"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(launcher + command, check=True, env=env, stdout=subprocess.DEVNULL)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if not any(key.startswith("val_") for key in r)]


def samples_per_s(records: list[dict], samples_per_step: int) -> float:
    first, last = records[1], records[-1]  # from the second log on: the first steps include warm-up
    return (last["step"] - first["step"]) * samples_per_step / (last["time_s"] - first["time_s"])


def loss_key(records: list[dict]) -> str:
    return "total" if "total" in records[0] else "loss"


def loss_comparison(single: list[dict], ddp: list[dict], other_seed: list[dict]) -> dict:
    key = loss_key(single)
    pairs = [(a[key], b[key], c[key]) for a, b, c in zip(single, ddp, other_seed) if a["step"] == b["step"] == c["step"]]
    return {
        "log_every_steps": single[1]["step"] - single[0]["step"],
        "loss_single": [round(a, 4) for a, _, _ in pairs],
        "loss_ddp": [round(b, 4) for _, b, _ in pairs],
        "loss_single_seed1": [round(c, 4) for _, _, c in pairs],
        # Same seed, one process against two: the difference to judge.
        "mean_abs_loss_difference_ddp": round(sum(abs(a - b) for a, b, _ in pairs) / len(pairs), 4),
        "max_abs_loss_difference_ddp": round(max(abs(a - b) for a, b, _ in pairs), 4),
        # One process, seed 0 against seed 1: what noise alone gives.
        "mean_abs_loss_difference_seed": round(sum(abs(a - c) for a, _, c in pairs) / len(pairs), 4),
        "max_abs_loss_difference_seed": round(max(abs(a - c) for a, _, c in pairs), 4),
    }


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Training throughput, one process against two DDP (Gloo) processes",
        "",
        f"Run {m['date_utc']} (commit {m['commit']}) on {m['cpu']}, {m['usable_cores']} cores, torch {m['torch']}; "
        f"load average at the start {', '.join(map(str, m['load_average']))}. Samples: crops, one forward and "
        "backward each; between the first and the last logged step.",
        "",
        "| model | samples per step (1 process / 2 processes) | 1 process, "
        f"{result['threads']} threads: samples/s | 2 processes, {max(1, result['threads'] // 2)} thread each: "
        "samples/s | ratio |",
        "|---|---|---|---|---|",
    ]
    for name, r in result["models"].items():
        lines.append(f"| {name} | {r['samples_per_step_single']} / {r['samples_per_step_ddp']} | "
                     f"{r['single_samples_per_s']:.3f} | {r['ddp_samples_per_s']:.3f} | {r['ddp_over_single']:.2f}x |")
    loss = result.get("dose_loss")
    if loss:
        lines += ["", f"Dose loss every {loss['log_every_steps']} steps at the same global batch and seed: one process "
                  f"against two differ by {loss['mean_abs_loss_difference_ddp']} on average (at most "
                  f"{loss['max_abs_loss_difference_ddp']}); two one-process runs with seeds 0 and 1 differ by "
                  f"{loss['mean_abs_loss_difference_seed']} (at most {loss['max_abs_loss_difference_seed']})."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=["dose", "scm", "initial", "refine", "crossmodal"],
                        default=["dose", "scm", "initial", "refine", "crossmodal"])
    parser.add_argument("--threads", type=int, default=2, help="threads of the single process (split between DDP processes)")
    parser.add_argument("--shared", type=Path, default=None, help="shared data folder (default: ../shared/data)")
    parser.add_argument("--out", type=Path, required=True, help="JSON file; the Markdown table goes next to it (.md)")
    args = parser.parse_args()
    shared = args.shared or shared_data_dir()
    known = models(shared)
    result: dict = {"command": " ".join(sys.argv), "machine": machine_info(torch.device("cpu"), args.threads),
                    "threads": args.threads, "models": {}}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        stage1: list[str] = []
        if "refine" in args.models:  # the refinement stage trains on a stage-1 model's output
            train(scratch / "stage1", known["initial"], 1, args.threads, 1)
            stage1 = ["--initial", str(scratch / "stage1" / "best.pt")]
        for name in args.models:
            model = known[name]
            if name == "refine":
                model = Model(model.command + stage1, model.steps, model.batch_key, model.batch)
            single = train(scratch / f"{name}-1", model, 2 * model.batch, args.threads, 1)
            ddp = train(scratch / f"{name}-2", model, model.batch, max(1, args.threads // 2), 2)
            per_single = 2 * model.batch if model.batch_key else 1
            per_ddp = 2 * model.batch if model.batch_key else 2
            entry = {
                "samples_per_step_single": per_single,
                "samples_per_step_ddp": per_ddp,
                "single_samples_per_s": round(samples_per_s(single, per_single), 4),
                "ddp_samples_per_s": round(samples_per_s(ddp, per_ddp), 4),
            }
            entry["ddp_over_single"] = round(entry["ddp_samples_per_s"] / entry["single_samples_per_s"], 3)
            result["models"][name] = entry
            print(json.dumps({name: entry}), flush=True)
            if name == "dose":
                other_seed = train(scratch / "dose-seed1", model, 2 * model.batch, args.threads, 1, seed=1)
                result["dose_loss"] = loss_comparison(single, ddp, other_seed)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
