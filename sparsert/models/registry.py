"""The versioned model registry (``Resources/Models.json``) and resolution of weight files.

Weights are looked up, in order, in ``$SPARSERT_MODELS_DIR`` (an override for offline sites), the
weights shipped in ``Resources/Models/``, and the user cache folder; a file is only used when its
SHA256 matches the registry. Nothing is ever downloaded at run time.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from sparsert.errors import InputError, MissingComponentError
from sparsert.resources import resources_dir


@dataclass(frozen=True)
class ModelEntry:
    name: str
    version: str
    task: str
    file: str
    sha256: str
    card: str = ""


def registry_path() -> Path:
    return resources_dir() / "Models.json"


def load_registry(path: Path | None = None) -> dict[str, ModelEntry]:
    path = path or registry_path()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingComponentError(f"{path}: model registry not found") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    entries = {}
    for item in data.get("models", []):
        entry = ModelEntry(**item)
        entries[entry.name] = entry
    return entries


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sparsert" / "models"


def search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("SPARSERT_MODELS_DIR"):
        dirs.append(Path(os.environ["SPARSERT_MODELS_DIR"]))
    dirs += [resources_dir() / "Models", user_cache_dir()]
    return dirs


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_weights(name_or_path: str, task: str | None = None) -> tuple[Path, ModelEntry | None]:
    """The weight file for a registered model name, or an explicit path given by the user.

    Raises :class:`MissingComponentError` when no verified file exists, saying where it looked.
    """
    candidate = Path(name_or_path)
    if candidate.suffix in {".pt", ".pth"} or candidate.exists():
        if not candidate.is_file():
            raise InputError(f"{candidate}: model file not found")
        return candidate, None
    registry = load_registry()
    entry = registry.get(name_or_path)
    if entry is None:
        known = ", ".join(sorted(n for n, e in registry.items() if task is None or e.task == task)) or "none yet"
        raise MissingComponentError(
            f"no model named '{name_or_path}'{f' for {task}' if task else ''} in {registry_path()} (registered: {known})"
        )
    if task is not None and entry.task != task:
        raise InputError(f"model '{entry.name}' is a {entry.task} model, not a {task} model")
    looked = []
    for folder in search_dirs():
        path = folder / entry.file
        looked.append(str(path))
        if path.is_file():
            if sha256_of(path) != entry.sha256:
                raise InputError(f"{path}: SHA256 does not match the registry entry for '{entry.name}' (corrupt or other version)")
            return path, entry
    raise MissingComponentError(f"weights of model '{entry.name}' v{entry.version} not found; looked in: {'; '.join(looked)}")
