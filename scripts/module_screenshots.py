#!/usr/bin/env python3
"""Axial snapshots of what InteractiveRefine and CrossModalSeg produce, for the README.

Runs each module's Qt-free logic with the shipped models on a soft-tissue-sarcoma patient that both
models held out (STS_015, fold 0) in a headless slicer-core scene, and renders the CT with the
tumour segmentation through Slicer's own slice pipeline (``sparsert.mrml.snapshots``):

    python scripts/module_screenshots.py --sts ../shared/data/sts --out Resources/Screenshots

InteractiveRefine: the automatic result refined by 3 clicks, each placed where the error against the
manual contour is deepest (the evaluation's protocol).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "InteractiveRefine"), str(ROOT / "CrossModalSeg")]

from CrossModalSegLib.logic import CrossModalSegSceneLogic  # noqa: E402
from InteractiveRefineLib.logic import InteractiveRefineSceneLogic  # noqa: E402

from sparsert.io.volume import read_image  # noqa: E402
from sparsert.mrml import HeadlessSlicer, add_volume_node, segmentation_from_node  # noqa: E402
from sparsert.mrml.snapshots import SliceLayers, render_slice_snapshots  # noqa: E402

CASE = "STS_015"
CLICKS = 3


def deepest_error(mask: np.ndarray, truth: np.ndarray) -> tuple[tuple[int, int, int], bool]:
    """The voxel (k, j, i) deepest inside the larger error, and whether it asks for a positive click."""
    missed, extra = truth & ~mask, mask & ~truth
    errors = missed if missed.sum() >= extra.sum() else extra
    depth = ndimage.distance_transform_edt(errors)
    return tuple(int(v) for v in np.unravel_index(np.argmax(depth), depth.shape)), errors is missed


def snapshot(headless, ct_node, segmentation_node, out: Path, name: str) -> Path:
    """The axial snapshot through the segmentation's centre, showing that segmentation only."""
    for node in headless.scene.GetNodesByClass("vtkMRMLSegmentationNode"):
        node.GetDisplayNode().SetVisibility(node is segmentation_node)
    segmentation = segmentation_from_node(segmentation_node)
    kji = np.argwhere(segmentation.segments[0].mask)
    ras = (segmentation.geometry.ijk_to_ras() @ np.c_[kji[:, ::-1], np.ones(len(kji))].T).T[:, :3]
    paths = render_slice_snapshots(headless.scene, headless.app_logic, SliceLayers(ct_node.GetID()), out,
                                   ras.mean(axis=0), ras, slab_mm=5.0, size=512, prefix=f"{name}_", overwrite=True)
    for orientation in ("Coronal", "Sagittal"):
        paths[orientation].unlink()
    return paths["Axial"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sts", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    folder = args.sts / CASE
    headless = HeadlessSlicer()
    ct = add_volume_node(headless.scene, read_image(folder / "CT_image.nii.gz"), f"{CASE} CT")
    pet = add_volume_node(headless.scene, read_image(folder / "PET_image.nii.gz"), f"{CASE} PET")
    mr = add_volume_node(headless.scene, read_image(folder / "MR_T1_image.nii.gz"), f"{CASE} MR")
    truth = read_image(folder / "CT_mask.nii.gz").array > 0

    refine = InteractiveRefineSceneLogic(headless.scene)
    refine.segmentTumour([ct, pet])
    for _ in range(CLICKS):
        segmentation = segmentation_from_node(refine.segmentationNode)
        (k, j, i), positive = deepest_error(segmentation.segments[0].mask, truth)
        refine.addClick((segmentation.geometry.ijk_to_ras() @ np.array([i, j, k, 1.0]))[:3], positive)
    print(snapshot(headless, ct, refine.segmentationNode, args.out, "InteractiveRefine"))

    fused = CrossModalSegSceneLogic(headless.scene).segmentTumour(ct, mr)
    print(snapshot(headless, ct, fused.segmentationNode, args.out, "CrossModalSeg"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
