"""The scribble-completion contract shared by every method.

``complete(image, scribbles, **options) -> CompletedSegmentation``: ``image`` is the CT
:class:`Volume`; ``scribbles`` a :class:`Segmentation` on the same grid with one segment per
structure plus a "Background" segment; the result holds one dense segment per scribbled structure
(same names and colours, overlap allowed) on the image grid, and the warnings of the run.

Binary methods complete each structure against "the rest": the background strokes plus the
scribbles of every structure that cannot overlap it. By default targets (PTV, CTV, GTV, ITV) may
overlap organs, while organs exclude organs and targets exclude targets, as in head-and-neck
planning where targets include parts of the parotids and mandible; structures whose scribbles
share a voxel always overlap. ``may_overlap`` replaces the default rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sparsert.errors import InputError
from sparsert.io.segmentation import BACKGROUND, Segmentation
from sparsert.io.volume import Geometry, Volume
from sparsert.masks import bounding_box
from sparsert.roles import is_target
from sparsert.scribbles.background import automatic_background


@dataclass
class CompletedSegmentation(Segmentation):
    """A completion result: the dense segments and what the method had to say about its input."""

    warnings: list[str] = field(default_factory=list)


def targets_overlap_organs(a: str, b: str) -> bool:
    """Default overlap rule: a target and an organ may overlap; two organs or two targets may not."""
    return is_target(a) != is_target(b)


@dataclass
class Seeds:
    """Validated scribbles: the structures' seeds, the background seeds, and who competes with whom.

    ``competitors[n]`` holds the indices of the structures that cannot overlap structure ``n``;
    their scribbles join the background as seeds of the rest of ``n``.
    """

    names: list[str]
    colors: list[tuple[float, float, float]]
    foreground: list[np.ndarray]
    background: np.ndarray
    competitors: list[frozenset[int]]
    warnings: list[str]

    def rest(self, index: int, leave_out: frozenset[int] = frozenset()) -> np.ndarray:
        """Seeds of everything that is not structure ``index`` (skipping the structures ``leave_out``)."""
        return rest_seeds(index, self.foreground, self.background, self.competitors, leave_out)

    def exclusive_groups(self) -> list[list[int]]:
        """Structures that one multi-label run completes exactly as their binary runs.

        Structures with the same competitors-plus-self set compete with each other and with the
        same others, so in a run with one label each (plus one for the rest) every structure wins
        the voxels its binary structure-vs-rest run gives it.
        """
        groups: dict[frozenset[int], list[int]] = {}
        for index, competitors in enumerate(self.competitors):
            groups.setdefault(competitors | {index}, []).append(index)
        return list(groups.values())


def competing_structures(
    names: Sequence[str],
    scribbles: Sequence[np.ndarray],
    may_overlap: Callable[[str, str], bool] = targets_overlap_organs,
) -> list[frozenset[int]]:
    """For every structure, the indices of those that cannot overlap it (scribbles sharing a voxel may)."""
    return [
        frozenset(
            m for m, other in enumerate(names)
            if m != n and not may_overlap(name, other) and not (scribbles[m] & scribbles[n]).any()
        )
        for n, name in enumerate(names)
    ]


def rest_seeds(
    index: int,
    foreground: Sequence[np.ndarray],
    background: np.ndarray,
    competitors: Sequence[frozenset[int]],
    leave_out: frozenset[int] = frozenset(),
) -> np.ndarray:
    """Background strokes plus the scribbles of ``index``'s competitors (but ``leave_out``), less its own."""
    mask = background.copy()
    for other in competitors[index] - leave_out:
        mask |= foreground[other]
    return mask & ~foreground[index]


def prepare_seeds(
    image: Volume,
    scribbles: Segmentation,
    *,
    may_overlap: Callable[[str, str], bool] = targets_overlap_organs,
    auto_background: bool = False,
    background_margin_mm: float = 20.0,
) -> Seeds:
    """Check scribbles against the contract and find, for every structure, its competitors.

    Empty structure scribbles are skipped with a warning. A missing or empty background is an
    error unless ``auto_background`` is set: then the background is every voxel farther than
    ``background_margin_mm`` from all structure scribbles (see
    :func:`sparsert.scribbles.automatic_background`).
    """
    scribbles.require_grid(image.geometry, "scribbles")
    background = scribbles.find(BACKGROUND)
    structures = [s for s in scribbles.segments if s is not background]
    warnings = [f"scribble segment '{s.name}' is empty; it was skipped" for s in structures if not s.mask.any()]
    structures = [s for s in structures if s.mask.any()]
    if not structures:
        segments = ", ".join(scribbles.names) or "none"
        raise InputError(f"scribbles have no scribbled structure besides the background (segments: {segments})")
    if background is not None and background.mask.any():
        background_mask = background.mask
    elif auto_background:
        union = np.logical_or.reduce([s.mask for s in structures])
        background_mask = automatic_background(union, image.geometry, margin_mm=background_margin_mm)
        what = "missing" if background is None else "empty"
        warnings.append(
            f"'Background' scribble {what}: used every voxel farther than {background_margin_mm:g} mm from the scribbles"
        )
    else:
        state = "no 'Background' segment" if background is None else "an empty 'Background' segment"
        raise InputError(
            f"scribbles have {state} (segments: {', '.join(scribbles.names)}); completion needs background strokes "
            "as a second label: paint some, or ask for an automatic background"
        )
    competitors = competing_structures([s.name for s in structures], [s.mask for s in structures], may_overlap)
    return Seeds(
        names=[s.name for s in structures],
        colors=[s.color for s in structures],
        foreground=[s.mask for s in structures],
        background=background_mask,
        competitors=competitors,
        warnings=warnings,
    )


def windowed(image: Volume, window: tuple[float, float] | None) -> np.ndarray:
    """The image intensities, clipped to ``window`` (in the image's units) when one is given."""
    if window is None:
        return image.array
    low, high = window
    if not low < high:
        raise InputError(f"intensity window must have low < high, got {window}")
    return np.clip(image.array, low, high)


def check_region(region: np.ndarray | None, geometry: Geometry) -> None:
    if region is not None and region.shape != geometry.shape:
        raise InputError(f"region mask has shape {region.shape}, expected the image shape {geometry.shape}")


def expanded_box(
    mask: np.ndarray, *, growth_ratio: float = 0.0, minimum_vox=0
) -> tuple[slice, ...]:
    """Bounding box of ``mask`` grown per axis by ``growth_ratio`` of its extent, at least
    ``minimum_vox`` (a number or one per axis), clipped to the array."""
    tight = bounding_box(mask)
    lo, hi = np.array([s.start for s in tight]), np.array([s.stop - 1 for s in tight])
    margin = np.maximum(np.asarray(minimum_vox), growth_ratio * (hi - lo)).astype(int)
    lo = np.maximum(lo - margin, 0)
    hi = np.minimum(hi + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def assemble(image: Volume, seeds: Seeds, masks: list[np.ndarray]) -> CompletedSegmentation:
    out = CompletedSegmentation(image.geometry, warnings=list(seeds.warnings))
    for name, color, mask in zip(seeds.names, seeds.colors, masks):
        out.add(name, mask, color)
    return out
