"""Model files made from other model files: weight averages and a dose network given another's refiner.

A model file is the dict that training writes (``model``: the state dict, ``config``: the network's
config, ``metadata``). Both operations are how shipped models were assembled (see their cards):
averaging the weights of runs fine-tuned from one starting point (a "model soup") and putting a
trained full-resolution refiner on a dose network trained without one.
"""

from __future__ import annotations

from collections.abc import Sequence

from sparsert.errors import InputError

REFINER_PREFIX = "refiner."


def average_weights(states: Sequence[dict], sources: Sequence[str]) -> dict:
    """The uniform average of the weights of model files of one network (same config, same tensors).

    Integer tensors (counters) are taken from the first file, as are the config and metadata; the
    metadata records ``sources``, the files averaged."""
    if len(states) < 2:
        raise InputError("averaging needs at least two model files")
    first = states[0]
    for index, state in enumerate(states[1:], start=1):
        if state["config"] != first["config"]:
            raise InputError(f"model file {index + 1} has another network config than the first; "
                             "only weights of one network can be averaged")
        if state["model"].keys() != first["model"].keys():
            raise InputError(f"model file {index + 1} holds other tensors than the first")
    averaged = {}
    for name, value in first["model"].items():
        if value.is_floating_point():
            total = sum(state["model"][name].double() for state in states)
            averaged[name] = (total / len(states)).to(value.dtype)
        else:
            averaged[name] = value
    metadata = dict(first.get("metadata", {}), averaged_from=list(sources))
    for own in ("val", "step"):  # the first file's validation scores and step are not the average's
        metadata.pop(own, None)
    return {"model": averaged, "config": dict(first["config"]), "metadata": metadata}


def with_refiner(base: dict, refined: dict, source: str = "") -> dict:
    """``base``'s dose network with the full-resolution refiner of ``refined`` (another dose model file)."""
    width = refined["config"].get("refiner_width", 0)
    if not width:
        raise InputError(f"{source or 'the second model file'} has no refiner")
    if base["config"].get("refiner_width", 0):
        raise InputError("the base model file already has a refiner")
    if _network_config(refined["config"]) != _network_config(base["config"]):
        raise InputError("the two dose networks have different configs; a refiner fits only its own network's inputs")
    model = dict(base["model"])
    model.update({name: value for name, value in refined["model"].items() if name.startswith(REFINER_PREFIX)})
    metadata = dict(base.get("metadata", {}))
    metadata["refiner"] = {**refined.get("metadata", {}).get("refiner", {}), "taken_from": source}
    return {"model": model, "config": {**base["config"], "refiner_width": width}, "metadata": metadata}


def _network_config(config: dict) -> dict:
    """A dose network's config without its refiner."""
    return {key: value for key, value in config.items() if key != "refiner_width"}
