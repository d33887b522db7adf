"""The measured workloads, each timed per case as the application runs it.

A workload loads its models once (timed apart, as "model load"), prepares each case's inputs
untimed (reading files, simulating scribbles) and times the steps a user waits for. The first case
includes one-time costs (lazy imports, allocator warm-up), which shows in the maximum, not the median.
Completion and dose use the sparse evaluation scribbles (:data:`~sparsert.scribbles.simulate.EVAL_SCRIBBLES`,
seeded by case), as ``sparsert evaluate completion`` and ``sparsert dose --prompt scribble`` do.
"""

from __future__ import annotations

import gc
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from sparsert.allocator import keep_freed_memory
from sparsert.benchmarks.measure import Stopwatch, current_rss_mb, peak_rss_mb, reset_peak_rss, serve
from sparsert.completion import completer
from sparsert.completion.evaluate import DEFAULT_OPTIONS
from sparsert.completion.scm import DEFAULT_MODEL as SCM_MODEL
from sparsert.completion.scm import load_scm_checkpoint
from sparsert.crossmodal.inference import DEFAULT_MODEL as CROSSMODAL_MODEL
from sparsert.crossmodal.inference import CrossModalModel, segment_tumour
from sparsert.crossmodal.inference import load_checkpoint as load_crossmodal_checkpoint
from sparsert.data.case import Case
from sparsert.data.datasets import open_dataset
from sparsert.device import resolve_device
from sparsert.dose.predict import MASK_MODEL, SCRIBBLE_MODEL
from sparsert.dose.predict import DoseModel, load_dose_checkpoint, predict_dose
from sparsert.errors import InputError
from sparsert.evaluation.refine import session_trajectory
from sparsert.interactive import DEFAULT_MODEL as ICR_MODEL
from sparsert.interactive.session import RefinementSession
from sparsert.io.segmentation import Segmentation
from sparsert.io.volume import Volume, resample
from sparsert.models.icr import ClickModel, load_click_model
from sparsert.preprocessing.ct import ct_to_hu
from sparsert.scribbles.simulate import EVAL_SCRIBBLES, simulate_scribbles


# ``complete(image, scribbles)`` of a completion method.
Complete = Callable[[Volume, Segmentation], Segmentation]


@dataclass(frozen=True)
class ModelKind:
    task: str  # the registry's task of the model
    default: str  # the registry name used unless overridden


# Model kinds a workload may need (``--model KIND=PATH`` overrides the default name).
MODEL_KINDS = {
    "scm": ModelKind("completion", SCM_MODEL),
    "dose": ModelKind("dose", MASK_MODEL),
    "dose-scribble": ModelKind("dose", SCRIBBLE_MODEL),
    "icr": ModelKind("refinement", ICR_MODEL),
    "crossmodal": ModelKind("crossmodal", CROSSMODAL_MODEL),
}


@dataclass(frozen=True)
class Job:
    """One workload on some cases of a data set, as handed to its measuring process."""

    workload: str
    data: str
    case_ids: tuple[str, ...]
    weights: dict[str, str] = field(default_factory=dict)  # model kind -> weight file
    device: str = "cpu"
    threads: int = 1
    seed: int = 0
    clicks: int = 5
    precision: str = "auto"  # of the completion, dose and cross-modal networks


class Workload(ABC):
    """What is measured: ``load`` once, then per case ``prepare`` (untimed) and ``run`` (timed steps)."""

    name: str
    family: str  # which data set it runs on (the ``--<family>-data`` option)
    description: str
    models: tuple[str, ...] = ()  # keys of MODEL_KINDS

    @abstractmethod
    def load(self, job: Job, device: torch.device) -> Any:
        """The loaded models (``job.weights``)."""

    @abstractmethod
    def prepare(self, loaded: Any, case: Case, job: Job, index: int) -> Any:
        """The inputs of one case."""

    @abstractmethod
    def run(self, loaded: Any, inputs: Any, watch: Stopwatch, job: Job) -> None:
        """The timed work on one case."""


class Completion(Workload):
    family = "completion"

    def __init__(self, method: str, description: str, single_pass: bool = False) -> None:
        self.method = method
        self.single_pass = single_pass
        self.name = f"completion-{method}" + ("-single-pass" if single_pass else "")
        self.description = description
        self.models = ("scm",) if method == "scm" else ()

    def load(self, job: Job, device: torch.device) -> Complete:
        options = {**DEFAULT_OPTIONS.get(self.method, {}), "device": device, "flips": not self.single_pass,
                   "precision": job.precision}
        if self.method == "scm":
            options["net"] = load_scm_checkpoint(job.weights["scm"], device)
        return completer(self.method, **options)

    def prepare(self, loaded: Complete, case: Case, job: Job, index: int) -> tuple[Volume, Segmentation]:
        # As the completion evaluation: the CT in HU (the peers' windows are in HU).
        ct = case.images[case.reference_name]
        structures = present_structures(case)
        return ct.with_array(ct_to_hu(ct.array)), evaluation_scribbles(case, structures, job.seed + index)

    def run(self, complete: Complete, inputs: tuple[Volume, Segmentation], watch: Stopwatch, job: Job) -> None:
        with watch.step("completion"):
            complete(*inputs)


class Dose(Workload):
    family = "dose"

    def __init__(self, prompt: str, description: str) -> None:
        self.prompt = prompt
        self.name = f"dose-{prompt}"
        self.description = description
        self.models = ("scm", "dose-scribble") if prompt == "scribble" else ("dose",)

    def load(self, job: Job, device: torch.device) -> tuple[DoseModel, Complete | None]:
        model = load_dose_checkpoint(job.weights[self.models[-1]], device)
        if self.prompt == "mask":
            return model, None
        return model, completer("scm", net=load_scm_checkpoint(job.weights["scm"], device), precision=job.precision)

    def prepare(
        self, loaded: tuple[DoseModel, Complete | None], case: Case, job: Job, index: int
    ) -> tuple[Volume, Segmentation, Volume | None]:
        # As the cohort prediction: the CT as stored, the possible-dose mask as the body.
        structures = present_structures(case)
        if self.prompt == "scribble":
            structures = evaluation_scribbles(case, structures, job.seed + index)
        return case.images[case.reference_name], structures, case.possible_dose_mask

    def run(
        self, loaded: tuple[DoseModel, Complete | None], inputs: tuple[Volume, Segmentation, Volume | None],
        watch: Stopwatch, job: Job,
    ) -> None:
        model, complete = loaded
        ct, structures, body = inputs
        if complete is not None:
            with watch.step("completion"):
                structures = complete(ct, structures)
        with watch.step("dose"):
            predict_dose(model, ct, structures, body, precision=job.precision)


class Interactive(Workload):
    name = "interactive"
    family = "interactive"
    description = "click refinement: images onto the working grid, automatic segmentation, clicks (region mode)"
    models = ("icr",)

    def load(self, job: Job, device: torch.device) -> ClickModel:
        return load_click_model([job.weights["icr"]], device)

    def prepare(self, model: ClickModel, case: Case, job: Job, index: int) -> tuple[list[Volume], Volume]:
        spec = model.spec
        missing = [m for m in spec.modalities if m not in case.images]
        if missing:
            raise InputError(
                f"case {case.case_id}: no {', '.join(missing)} image for the model (it has {', '.join(case.images)})"
            )
        if case.structures is None or spec.structure not in case.structures:
            raise InputError(f"case {case.case_id}: no structure '{spec.structure}' to place clicks from")
        return [case.images[m] for m in spec.modalities], Volume(case.structures[spec.structure].mask, case.geometry)

    def run(self, model: ClickModel, inputs: tuple[list[Volume], Volume], watch: Stopwatch, job: Job) -> None:
        images, truth = inputs
        with watch.step("setup"):
            session = RefinementSession.from_volumes(model, images)
        target = resample(truth, session.geometry, label=True).array.astype(bool)
        # The session's own latencies: the network passes and click maps, not the simulated user.
        trajectory = session_trajectory(session, target, max_clicks=job.clicks)
        watch.add("initial", trajectory.initial_seconds)
        for seconds in trajectory.seconds:
            watch.add("click", seconds)


class CrossModal(Workload):
    name = "crossmodal"
    family = "crossmodal"
    description = "CT + MR tumour segmentation (MR resampled onto the CT)"
    models = ("crossmodal",)

    def load(self, job: Job, device: torch.device) -> CrossModalModel:
        return load_crossmodal_checkpoint(job.weights["crossmodal"], device)

    def prepare(self, model: CrossModalModel, case: Case, job: Job, index: int) -> tuple[Volume, Volume | None]:
        return case.images["ct"], case.images.get("mr")

    def run(self, model: CrossModalModel, inputs: tuple[Volume, Volume | None], watch: Stopwatch, job: Job) -> None:
        ct, mr = inputs
        with watch.step("segmentation"):
            segment_tumour(ct, mr, model, precision=job.precision)


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Completion("scm", "scribbles -> structures, SCM network averaged with its mirrored pass (the default)"),
        Completion("scm", "scribbles -> structures, SCM network, one pass (no mirrored pass)", single_pass=True),
        Completion("growcut", "scribbles -> structures, Slicer's Grow from seeds (peer)"),
        Completion("randomwalker", "scribbles -> structures, random walker (peer)"),
        Dose("mask", "dose from the dense structures"),
        Dose("scribble", "dose from scribbles: SCM completion, then dose"),
        Interactive(),
        CrossModal(),
    )
}


def present_structures(case: Case) -> Segmentation:
    """The case's non-empty structures."""
    if case.structures is None:
        raise InputError(f"case {case.case_id}: has no structures")
    return Segmentation(case.geometry, [s for s in case.structures.segments if s.mask.any()])


def evaluation_scribbles(case: Case, structures: Segmentation, seed: int) -> Segmentation:
    """Sparse evaluation scribbles of ``structures``, background mostly inside the possible-dose mask."""
    body = case.possible_dose_mask.array > 0 if case.possible_dose_mask is not None else None
    return simulate_scribbles(structures, body_mask=body, seed=seed, **EVAL_SCRIBBLES)


def measure(job: Job) -> dict:
    """Run ``job`` here (in its own process): model load time, resident memory after it, and per case
    the seconds of each step and the peak resident memory (and GPU memory on a GPU)."""
    torch.set_num_threads(job.threads)
    device = resolve_device(job.device)
    workload = WORKLOADS[job.workload]
    dataset = open_dataset(job.data)
    start = time.perf_counter()
    loaded = workload.load(job, device)
    result = {
        "model_load_s": time.perf_counter() - start, "rss_after_load_mb": current_rss_mb(),
        "peak_rss_per_case": reset_peak_rss(), "cases": [],
    }
    for index, case_id in enumerate(job.case_ids):
        inputs = workload.prepare(loaded, dataset.load(case_id), job, index)
        gc.collect()
        reset_peak_rss()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        watch = Stopwatch()
        workload.run(loaded, inputs, watch, job)
        record = {"case_id": case_id, "seconds": watch.total, "steps": watch.seconds, "peak_rss_mb": peak_rss_mb()}
        if device.type == "cuda":
            record["peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["cases"].append(record)
    return result


if __name__ == "__main__":
    # The measuring process started by sparsert.benchmarks.measure.run_isolated, set up as the command line's.
    keep_freed_memory()
    raise SystemExit(serve(lambda job: measure(Job(**{**job, "case_ids": tuple(job["case_ids"])})), sys.argv[1:]))
