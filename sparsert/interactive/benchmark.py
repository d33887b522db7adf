"""Latency of a refinement session on a synthetic volume: first result and time per click.

``python -m sparsert.interactive.benchmark --size 128 --network light --threads 2 [--model best.pt] [--flips]``

Without ``--model`` the networks are randomly initialised (latency does not depend on the weights).
``--flips`` averages each step with the pass on mirrored images (:class:`~sparsert.models.icr.Ensemble`).
Clicks alternate sign at points spread over the volume; each mode's median and maximum are printed
as JSON, with the region/whole-volume difference of the last click. ``*_cpu_s`` is the process CPU
time over all threads: on a shared machine, CPU time / threads is the wall time the step would take
with its cores to itself (when the threads stay busy), a steadier figure than the wall time.
``sparsert bench`` measures the same steps on real sarcoma cases with a trained model; this script
measures them on volumes of any size, with networks of any configuration.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from sparsert.interactive.inference import RegionSettings
from sparsert.interactive.session import RefinementSession
from sparsert.models.icr import LIGHT_NETWORK, ClickModel, Ensemble, ICRModel, ICRNetConfig, ICRSpec, load_icr_model

NETWORKS = {"paper": ICRNetConfig(), "light": LIGHT_NETWORK}


def benchmark(model: ClickModel, size: int, spacing_mm: float, clicks: int, region: RegionSettings, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    shape = (size, size, size)
    # A bright ball in noise, so the images are not constant.
    zz, yy, xx = np.meshgrid(*[np.arange(size) - size / 2] * 3, indexing="ij")
    ball = (zz**2 + yy**2 + xx**2) < (size / 5) ** 2
    arrays = [np.where(ball, 60.0, -50.0) + rng.normal(0, 20, shape)] + [
        np.where(ball, 8.0, 1.0) + rng.random(shape) for _ in model.spec.modalities[1:]
    ]
    result: dict = {"size": size, "spacing_mm": spacing_mm, "threads": torch.get_num_threads(),
                    "network": model.spec.network.__dict__, "region_settings": region.__dict__,
                    "mirrored_pass": isinstance(model, Ensemble) and model.flips}
    points = rng.integers(size // 4, 3 * size // 4, size=(clicks, 3))
    for mode in ("region", "whole"):
        spec = model.spec
        start = time.perf_counter()
        session = RefinementSession.from_arrays(model, [a.astype(np.float32) for a in arrays], (spacing_mm,) * 3,
                                                mode=mode, region=region)
        setup = time.perf_counter() - start
        cpu = time.process_time()
        first = session.initial().seconds
        first_cpu = time.process_time() - cpu
        times, cpu_times = [], []
        for n, p in enumerate(points):
            cpu = time.process_time()
            times.append(session.add_click(tuple(int(v) for v in p), bool(n % 2 == 0)).seconds)
            cpu_times.append(time.process_time() - cpu)
        result[mode] = {
            "setup_s": setup, "first_result_s": first, "first_result_cpu_s": first_cpu,
            "click_median_s": float(np.median(times)), "click_max_s": float(np.max(times)),
            "click_median_cpu_s": float(np.median(cpu_times)),
            "working_shape": list(session.geometry.shape), "modalities": list(spec.modalities),
        }
        if mode == "region":
            result["region_vs_whole_last_click"] = session.region_difference().to_dict()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--spacing", type=float, default=2.0, help="isotropic voxel size in mm (default 2)")
    parser.add_argument("--network", choices=list(NETWORKS), default="light")
    parser.add_argument("--model", help="a trained model file instead of a random network")
    parser.add_argument("--modalities", type=int, default=2, help="image channels of the random network")
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--region-mm", type=float, default=RegionSettings.size_mm)
    parser.add_argument("--flips", action="store_true", help="average each step with the pass on mirrored images")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.model:
        model = load_icr_model(args.model)
    else:
        torch.manual_seed(0)
        modalities = ("ct", "pet", "mr")[: args.modalities]
        model = ICRModel(ICRSpec(modalities=modalities, spacing=None, network=NETWORKS[args.network])).eval()
    region = RegionSettings(size_mm=args.region_mm)
    model = Ensemble([model], flips=True) if args.flips else model
    print(json.dumps(benchmark(model, args.size, args.spacing, args.clicks, region), indent=2))


if __name__ == "__main__":
    main()
