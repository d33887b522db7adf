"""A training run folder: resolved config, per-step metrics, resumable checkpoints.

Layout of ``RUN/``: ``config.yaml`` (every hyper-parameter, resolved), ``metrics.jsonl`` (one JSON
object per logged step), ``checkpoint.pt`` (model, optimiser and scheduler state, step, best score,
written atomically) and ``best.pt`` (weights only, with the model config, for shipping).

Under torchrun only rank 0 writes (config, metrics, checkpoints); on the other ranks the writing
methods do nothing, so the trainers call them unconditionally.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from sparsert.io.json_io import json_safe
from sparsert.training import distributed


class RunFolder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        self.writes = distributed.is_main()

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def best_path(self) -> Path:
        return self.path / "best.pt"

    def write_config(self, config: Any) -> None:
        """Every setting, and the number of processes that train (``world_size``, a record rather than a
        setting: :func:`sparsert.training.config.load_config` skips it)."""
        if not self.writes:
            return
        data = {**(asdict(config) if is_dataclass(config) else dict(config)), "world_size": distributed.world_size()}
        (self.path / "config.yaml").write_text(yaml.safe_dump(json_safe(data), sort_keys=False))

    def log(self, step: int, **values: Any) -> None:
        if not self.writes:
            return
        record = {"step": step, "time_s": round(time.time() - self.started, 2), **json_safe(values)}
        with open(self.path / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def save_checkpoint(self, state: dict) -> None:
        if not self.writes:
            return
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_path)

    def load_checkpoint(self) -> dict | None:
        if not self.checkpoint_path.exists():
            return None
        return torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)

    def save_best(self, model_state: dict, model_config: dict, metadata: dict, name: str = "best.pt") -> None:
        """The selected weights as a model file (``name``: a run that trains several networks)."""
        if not self.writes:
            return
        path = self.path / name
        tmp = path.with_suffix(".tmp")
        torch.save({"model": model_state, "config": json_safe(model_config), "metadata": json_safe(metadata)}, tmp)
        tmp.replace(path)
