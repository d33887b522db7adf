#!/usr/bin/env python3
"""Training throughput of one process against two DDP (Gloo) processes on the same cores.

Runs ``sparsert train dose`` twice with the same global batch and seed: one process with
``--threads`` threads and batch 2B, then ``torchrun`` with two processes of ``--threads/2`` threads
and batch B each. Throughput is cases per second between the first and the last logged step (start-up,
caching and the first steps excluded); the loss curves are compared log window by log window, against
the noise between two single-process runs that differ only in their seed. Run it on an idle machine:
the figures are wall-clock.

    python benchmarks/ddp_throughput.py --data cases:../shared/data/openkbp-nifti/train \\
        --steps 40 --out benchmarks/results/ddp_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from sparsert.benchmarks.machine import machine_info


def train(run: Path, data: str, steps: int, batch: int, threads: int, processes: int, seed: int = 0) -> list[dict]:
    settings = ["--set", f"batch={batch}", "--set", f"threads={threads}", "--set", "val_every=1000000",
                "--set", "checkpoint_every=1000000", "--set", "log_every=5"]
    command = ["train", "dose", "--data", data, "--max-cases", "8", "--steps", str(steps), "--seed", str(seed),
               "--out", str(run), *settings]
    if processes == 1:
        launcher = [sys.executable, "-m", "sparsert"]
    else:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                    "-m", "sparsert"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(launcher + command, check=True, env=env, stdout=subprocess.DEVNULL)
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"total"' in line]


def throughput(records: list[dict], cases_per_step: int) -> float:
    first, last = records[1], records[-1]  # from the second log on: the first steps include warm-up
    return (last["step"] - first["step"]) * cases_per_step / (last["time_s"] - first["time_s"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=2, help="cases per step and DDP process (B)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the single process (split between DDP processes)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    machine = machine_info(torch.device("cpu"), args.threads)  # the load average before the runs
    with tempfile.TemporaryDirectory() as scratch:
        single = train(Path(scratch) / "single", args.data, args.steps, 2 * args.batch, args.threads, 1)
        ddp = train(Path(scratch) / "ddp", args.data, args.steps, args.batch, max(1, args.threads // 2), 2)
        other_seed = train(Path(scratch) / "seed1", args.data, args.steps, 2 * args.batch, args.threads, 1, seed=1)
    pairs = [(a["total"], b["total"], c["total"]) for a, b, c in zip(single, ddp, other_seed) if a["step"] == b["step"] == c["step"]]
    result = {
        "command": " ".join(sys.argv),
        "machine": machine,
        "global_batch": 2 * args.batch,
        "single_cases_per_s": round(throughput(single, 2 * args.batch), 4),
        "ddp_cases_per_s": round(throughput(ddp, 2 * args.batch), 4),
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
    result["ddp_over_single"] = round(result["ddp_cases_per_s"] / result["single_cases_per_s"], 3)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not k.startswith(("loss_", "machine"))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
