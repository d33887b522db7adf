#!/usr/bin/env python3
"""Ship a trained model: copy a run's best.pt into Resources/Models and register it with its SHA256.

    scripts/publish_model.py RUN/best.pt --name scm --task completion --version 1 --card scm.md

The file is re-saved with only what inference needs (weights, model config, the run's metadata),
then checked to load with ``weights_only=True``. An existing entry of the same name is replaced.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sparsert.models.registry import sha256_of  # noqa: E402

MODELS = ROOT / "Resources" / "Models"
REGISTRY = ROOT / "Resources" / "Models.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--task", required=True, choices=("completion", "dose", "refinement", "crossmodal"))
    parser.add_argument("--version", required=True)
    parser.add_argument("--card", required=True, help="model card file name in Resources/Models (must exist)")
    args = parser.parse_args()

    if not (MODELS / args.card).is_file():
        parser.error(f"model card {MODELS / args.card} not found: write it first")
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    kept = {key: state[key] for key in ("model", "config", "metadata") if key in state}
    target = MODELS / f"{args.name}-v{args.version}.pt"
    torch.save(kept, target)
    torch.load(target, map_location="cpu", weights_only=True)
    registry = json.loads(REGISTRY.read_text())
    entries = [e for e in registry["models"] if e["name"] != args.name]
    entries.append({"name": args.name, "version": args.version, "task": args.task, "file": target.name,
                    "sha256": sha256_of(target), "card": args.card})
    REGISTRY.write_text(json.dumps({"models": sorted(entries, key=lambda e: e["name"])}, indent=2) + "\n")
    print(f"{target} ({target.stat().st_size / 1e6:.1f} MB) registered as '{args.name}' v{args.version}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
