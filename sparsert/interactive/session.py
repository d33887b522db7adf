"""An interactive refinement session: automatic result, clicks, undo and redo.

The first image defines the grid of the output (the *reference* grid); the networks run on the
*working* grid: the reference's physical box at the model's training spacing (the reference itself
for models trained on native grids). Other images are resampled onto the working grid through
physical space and must cover the same region (see :func:`sparsert.interactive.grid.check_coregistered`).

Behaviour at the edges, all without losing state:

- a click outside the image, or before :meth:`RefinementSession.initial`: :class:`InputError`;
- a positive click on a voxel already in the mask (or a negative one on background) is accepted,
  refined and undoable like any other (it still tells the model "this is tumour"), and reported in
  the result's ``warnings``;
- :meth:`~RefinementSession.undo` with no click to undo, :meth:`~RefinementSession.redo` with nothing
  undone: :class:`InputError` naming the situation; a new click clears the redo history;
- :meth:`~RefinementSession.initial` starts over: it clears clicks and history.

The automatic result keeps its largest connected part only (``keep_largest=True``, the default: one
mass, as CrossModalSeg); the other parts get probability 0, so stage 2 starts without them.

Refinement works on a region around each click (``mode="region"``, fast) or on the whole volume
(``mode="whole"``); :meth:`RefinementSession.region_difference` measures the gap between the two
for the last click.

Clicks are honoured (``honour_clicks=True``, the default): a positive click only adds to the
probability and a negative click only takes from it (the network's changes of the other sign are
dropped), and after each refinement the ball of each click (the click map's radius) keeps the
click's label, so a click always changes the mask where it was placed, even where the network would
not follow it.

A positive click outside the mask may mark a part the mask misses (a low-uptake tumour the automatic
result missed whole, or a lobe of one). Given the current probability, stage 2 then adds little more
than a ball around the click. With ``new_parts=True`` (the default) a two-stage model also refines
such a click from no memory (:data:`~sparsert.models.icr.NO_MEMORY`, the input stage 2 learnt from
under mask dropout), and the connected part of that pass holding the click is added (the larger
probability kept).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from sparsert.data.sts import GTV_COLOR
from sparsert.errors import InputError
from sparsert.interactive.clicks import Box, Click, click_maps, follow_click_sign, impose_clicks
from sparsert.interactive.grid import check_coregistered, click_to_working, working_geometry
from sparsert.interactive.inference import (
    THRESHOLD, RegionComparison, RegionSettings, refine_region, refine_whole, region_vs_whole,
)
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.volume import Geometry, Volume, read_image, resample
from sparsert.masks import largest_component
from sparsert.models.icr import NO_MEMORY, ClickModel, Ensemble
from sparsert.preprocessing.modalities import channels_on_grid, check_modalities

MODES = ("region", "whole")


@dataclass
class StepResult:
    """What one action did: voxels whose mask state changed, time taken, and any warnings."""

    changed_voxels: int
    seconds: float
    click: Click | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Step:
    click: Click
    ijk: tuple[float, ...]  # the click as given: voxel (i, j, k) of the reference image
    box: Box
    before: np.ndarray
    after: np.ndarray


def model_device(model: ClickModel) -> torch.device:
    member = model.members[0] if isinstance(model, Ensemble) else model
    return next(member.parameters()).device


class RefinementSession:
    """Click refinement of one tumour on co-registered images (one per modality of ``model``).

    Build it with :meth:`from_volumes`, :meth:`from_arrays` or :meth:`from_files`; the constructor
    takes network channels already on the working grid. Clicks are voxel indices ``(i, j, k)`` of
    the reference (first) image, ITK/Slicer order.
    """

    def __init__(
        self,
        model: ClickModel,
        channels: np.ndarray,
        geometry: Geometry,
        *,
        reference: Geometry | None = None,
        mode: str = "region",
        region: RegionSettings = RegionSettings(),
        honour_clicks: bool = True,
        keep_largest: bool = True,
        new_parts: bool = True,
    ) -> None:
        """``channels`` (C, D, H, W) normalised, on ``geometry`` (the working grid); ``reference``
        is the grid of the output and of click indices (default: ``geometry``)."""
        if mode not in MODES:
            raise InputError(f"unknown refinement mode '{mode}' (known: {', '.join(MODES)})")
        n = len(model.spec.modalities)
        if channels.ndim != 4 or channels.shape[0] != n or channels.shape[1:] != geometry.shape:
            raise InputError(f"channels of shape {channels.shape} do not fit {n} modalities on a {geometry.shape} grid")
        self.model = model
        self.mode = mode
        self.region = region
        self.honour_clicks = honour_clicks
        self.keep_largest = keep_largest
        self.new_parts = new_parts
        self.geometry = geometry
        self.reference = reference if reference is not None else geometry
        self._image = torch.from_numpy(np.ascontiguousarray(channels, dtype=np.float32))[None].to(model_device(model))
        self._probability: np.ndarray | None = None
        self._clicks: list[Click] = []
        self._undo: list[_Step] = []
        self._redo: list[_Step] = []
        self._positive, self._negative = self._maps(self._clicks)

    @classmethod
    def from_volumes(
        cls, model: ClickModel, images: Sequence[Volume], names: Sequence[str] | None = None, **options
    ) -> "RefinementSession":
        """Images in the model's modality order; the first is the reference; ``names`` appear in messages."""
        spec = model.spec
        names = list(names) if names is not None else [f"image {n + 1}" for n in range(len(images))]
        if len(images) != len(spec.modalities):
            raise InputError(
                f"the model needs {len(spec.modalities)} image(s) ({', '.join(spec.modalities)}, in this order), "
                f"got {len(images)}: {', '.join(names) or 'none'}"
            )
        check_modalities(images, spec.modalities, names)
        reference = images[0].geometry
        for volume, name in zip(images[1:], names[1:]):
            check_coregistered(reference, volume.geometry, name, names[0])
        working = working_geometry(reference, spec.spacing)
        channels = channels_on_grid(images, spec.modalities, working)
        return cls(model, channels, working, reference=reference, **options)

    @classmethod
    def from_arrays(
        cls,
        model: ClickModel,
        arrays: Sequence[np.ndarray],
        spacing: tuple[float, float, float],
        origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
        direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        **options,
    ) -> "RefinementSession":
        """Arrays ``[k, j, i]`` on one grid; ``spacing`` (i, j, k) mm, origin and direction as in ITK."""
        arrays = [np.asarray(a) for a in arrays]
        shapes = sorted({a.shape for a in arrays})
        if len(shapes) != 1 or len(shapes[0]) != 3:
            raise InputError(f"co-registered arrays must be 3D and share one shape, got shapes {shapes}")
        geometry = Geometry(shapes[0], tuple(map(float, spacing)), tuple(map(float, origin)), tuple(map(float, direction)))
        return cls.from_volumes(model, [Volume(a, geometry) for a in arrays], **options)

    @classmethod
    def from_files(cls, model: ClickModel, paths: Sequence[str | Path], **options) -> "RefinementSession":
        return cls.from_volumes(model, [read_image(p) for p in paths], names=[str(p) for p in paths], **options)

    # State -----------------------------------------------------------------------------------

    @property
    def probability(self) -> np.ndarray:
        """Tumour probability on the working grid (``geometry``), float32, read-only."""
        view = self._require_probability().view()
        view.setflags(write=False)
        return view

    @property
    def mask(self) -> np.ndarray:
        return self._require_probability() > THRESHOLD

    @property
    def clicks(self) -> tuple[Click, ...]:
        return tuple(self._clicks)

    @property
    def applied_clicks(self) -> tuple[tuple[tuple[float, ...], bool], ...]:
        """The applied clicks as given, ``((i, j, k) of the first image, positive)``, oldest first:
        replaying them with :meth:`add_click` after :meth:`initial` rebuilds the session's result."""
        return tuple((step.ijk, step.click.positive) for step in self._undo)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def probability_on_reference(self) -> Volume:
        """The probability resampled (linearly) onto the first image's grid."""
        return resample(Volume(self._require_probability(), self.geometry), self.reference)

    def segmentation(self, name: str = "Tumour") -> Segmentation:
        """The current mask on the first image's grid, as one named segment."""
        mask = self.probability_on_reference().array > THRESHOLD
        return Segmentation(self.reference, [Segment(name, mask, GTV_COLOR)])

    # Actions ---------------------------------------------------------------------------------

    def initial(self) -> StepResult:
        """Run the automatic (stage-1) segmentation; starts the session over."""
        start = time.perf_counter()
        probability = self.model.initial_probability(self._image)[0, 0].cpu().numpy()
        if self.keep_largest:
            mask = probability > THRESHOLD
            probability[mask & ~largest_component(mask)] = 0.0
        seconds = time.perf_counter() - start
        self._probability = probability
        self._clicks, self._undo, self._redo = [], [], []
        self._positive, self._negative = self._maps(self._clicks)
        return StepResult(int(np.count_nonzero(probability > THRESHOLD)), seconds)

    def add_click(self, ijk: Sequence[float], positive: bool) -> StepResult:
        """Refine with a click at voxel ``ijk`` (i, j, k) of the first image."""
        probability = self._require_probability()
        if not self.model.can_refine:
            raise InputError("the model has no refinement network (a stage-1 model only): clicks cannot be used")
        kji = click_to_working(ijk, self.reference, self.geometry)
        click = Click(kji, bool(positive))
        warnings = []
        inside = probability[kji] > THRESHOLD
        if inside == click.positive:
            where = "inside the mask" if inside else "outside the mask"
            warnings.append(
                f"{'positive' if click.positive else 'negative'} click at (i, j, k) = "
                f"({', '.join(f'{float(v):g}' for v in ijk)}) is already {where} "
                f"(probability {probability[kji]:.2f}); applied anyway"
            )
        start = time.perf_counter()
        clicks = self._clicks + [click]
        positive_map, negative_map = self._maps(clicks)
        box, values = self._refine(click, positive_map, negative_map, probability)
        if self.new_parts and self.model.uses_previous and click.positive and not inside:
            _, fresh = self._refine(click, positive_map, negative_map, np.full_like(probability, NO_MEMORY))
            values = np.maximum(values, _part_holding(fresh, tuple(k - b.start for k, b in zip(kji, box))))
        if self.honour_clicks:
            values = follow_click_sign(probability[box], values, click.positive)
            values = impose_clicks(values, box, clicks, self.geometry.spacing_kji, self.model.spec.click_radius_mm)
        seconds = time.perf_counter() - start
        # Committed only once the refinement succeeded, so a failure leaves the session as it was.
        step = _Step(click, tuple(float(v) for v in ijk), box, probability[box].copy(), values)
        probability[box] = values
        self._clicks, self._positive, self._negative = clicks, positive_map, negative_map
        self._undo.append(step)
        self._redo.clear()
        return StepResult(self._changed(step), seconds, click, warnings)

    def add_click_ras(self, ras: Sequence[float], positive: bool) -> StepResult:
        """A click at a point in Slicer RAS millimetres (rounded to the nearest voxel of the first image)."""
        ijk = self.reference.ras_to_ijk(ras)
        if not np.all(np.isfinite(ijk)):
            raise InputError(f"click at RAS {tuple(ras)}: not a valid point")
        return self.add_click(tuple(float(v) for v in np.round(ijk, 6)), positive)

    def undo(self) -> StepResult:
        """Take back the last click."""
        self._require_probability()
        if not self._undo:
            raise InputError("nothing to undo: no click has been applied since the automatic segmentation")
        step = self._undo.pop()
        self._probability[step.box] = step.before
        self._clicks.pop()
        self._positive, self._negative = self._maps(self._clicks)
        self._redo.append(step)
        return StepResult(self._changed(step), 0.0, step.click)

    def redo(self) -> StepResult:
        """Re-apply the last undone click (its stored result; the network is not run again)."""
        self._require_probability()
        if not self._redo:
            raise InputError("nothing to redo: no click has been undone since the last click")
        step = self._redo.pop()
        self._probability[step.box] = step.after
        self._clicks.append(step.click)
        self._positive, self._negative = self._maps(self._clicks)
        self._undo.append(step)
        return StepResult(self._changed(step), 0.0, step.click)

    def region_difference(self) -> RegionComparison:
        """Region pass against a whole-volume pass for the last click, from the same inputs: the
        networks' own passes (the click rules, which would act alike on both, are left out)."""
        if not self._undo:
            raise InputError("no click to compare: the region/whole difference is measured on the last click")
        step = self._undo[-1]
        previous = self._probability.copy()
        previous[step.box] = step.before
        return region_vs_whole(
            self.model, self._image, previous, self._positive, self._negative,
            step.click.kji, self.geometry.spacing_kji, self.region,
        )

    # Internals -------------------------------------------------------------------------------

    def _require_probability(self) -> np.ndarray:
        if self._probability is None:
            raise InputError("no segmentation yet: run initial() before reading results or adding clicks")
        return self._probability

    def _maps(self, clicks: list[Click]) -> tuple[np.ndarray, np.ndarray]:
        spec = self.model.spec
        return click_maps(self.geometry.shape, clicks, self.geometry.spacing_kji, spec.click_radius_mm, spec.click_sigma_mm)

    def _refine(
        self, click: Click, positive: np.ndarray, negative: np.ndarray, memory: np.ndarray
    ) -> tuple[Box, np.ndarray]:
        if self.mode == "whole":
            whole = refine_whole(self.model, self._image, memory, positive, negative)
            return tuple(slice(0, n) for n in whole.shape), whole  # type: ignore[return-value]
        return refine_region(
            self.model, self._image, memory, positive, negative, click.kji, self.geometry.spacing_kji, self.region,
        )

    @staticmethod
    def _changed(step: _Step) -> int:
        return int(np.count_nonzero((step.before > THRESHOLD) != (step.after > THRESHOLD)))


def _part_holding(probability: np.ndarray, kji: tuple[int, ...]) -> np.ndarray:
    """``probability`` on the connected part of its mask that holds voxel ``kji``, 0 elsewhere (all 0
    when that voxel is not in the mask)."""
    labels, _ = ndimage.label(probability > THRESHOLD)
    if not labels[kji]:
        return np.zeros_like(probability)
    return np.where(labels == labels[kji], probability, 0).astype(probability.dtype)
