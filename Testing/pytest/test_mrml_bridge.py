"""The MRML bridge under the slicer-core wheel: volumes and structures through MRML nodes and back.

Real data: a crop of OpenKBP pt_1 (CT int16 and overlapping structures). The NIfTI copies have
origin 0, spacing (3.906, 3.906, 2.5) mm and LPS direction diag(1, 1, -1) (see the data README),
which fixes by hand where each voxel lies.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk

from sparsert.errors import InputError
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.volume import Geometry, Volume, resample
from sparsert.mrml import (
    HeadlessSlicer,
    add_segmentation_node,
    add_volume_node,
    changed_box,
    segmentation_from_node,
    update_segment_region,
    update_volume_node,
    volume_from_node,
)

CASE = "train/pt_1"
# Crop (numpy order, [k, j, i]) holding parts of PTV70, PTV56, the mandible and both parotids.
K0, J0, I0 = 40, 40, 45
CROP = (slice(K0, 70), slice(J0, 70), slice(I0, 85))
STRUCTURES = ["PTV70", "PTV56", "Mandible", "RightParotid", "LeftParotid"]


def _crop(path) -> Volume:
    """The crop as SimpleITK slices it: same voxels, origin moved to the first kept voxel."""
    k, j, i = CROP
    return Volume.from_sitk(sitk.ReadImage(str(path))[i, j, k])


@pytest.fixture(scope="module")
def headless() -> HeadlessSlicer:
    return HeadlessSlicer()


@pytest.fixture(scope="module")
def ct(openkbp_nifti) -> Volume:
    return _crop(openkbp_nifti / CASE / "ct.nii.gz")


@pytest.fixture(scope="module")
def structures(openkbp_nifti, ct) -> Segmentation:
    colors = [(1.0, 0.0, 0.0), (1.0, 0.6, 0.0), (0.9, 0.9, 0.7), (0.2, 0.6, 1.0), (0.4, 0.8, 0.4)]
    segments = [
        Segment(name, _crop(openkbp_nifti / CASE / "structures" / f"{name}.nii.gz").array > 0, color)
        for name, color in zip(STRUCTURES, colors)
    ]
    return Segmentation(ct.geometry, segments)


def test_crop_matches_the_documented_openkbp_geometry(ct):
    # Preconditions of the hand-computed positions below.
    assert ct.geometry.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    assert np.allclose(ct.geometry.spacing, (3.906, 3.906, 2.5), atol=1e-4)
    assert np.allclose(ct.geometry.origin, (I0 * 3.906, J0 * 3.906, -K0 * 2.5), atol=1e-3)
    assert ct.array.dtype == np.int16


def test_volume_round_trip_keeps_voxels_and_grid(headless, ct):
    node = add_volume_node(headless.scene, ct, "CT")
    back = volume_from_node(node)
    assert back.array.dtype == np.int16
    assert np.array_equal(back.array, ct.array)
    assert back.geometry.shape == ct.geometry.shape
    assert back.geometry.matches(ct.geometry, atol=1e-9)


def test_voxel_lands_at_its_ras_position(headless, ct, openkbp_nifti):
    node = add_volume_node(headless.scene, ct, "CT")
    i, j, k = 3, 5, 7
    # LPS from the documented geometry, then RAS = (-L, -P, S).
    lps = np.array([(I0 + i) * 3.906, (J0 + j) * 3.906, -(K0 + k) * 2.5])
    expected_ras = np.array([-lps[0], -lps[1], lps[2]])
    matrix = slicer.util.arrayFromVTKMatrix(_ijk_to_ras(node))
    assert np.allclose((matrix @ [i, j, k, 1.0])[:3], expected_ras, atol=1e-2)
    # The node's voxel there is the CT's voxel there.
    full = sitk.GetArrayFromImage(sitk.ReadImage(str(openkbp_nifti / CASE / "ct.nii.gz")))
    assert slicer.util.arrayFromVolume(node)[k, j, i] == full[K0 + k, J0 + j, I0 + i]


def test_permuted_flipped_axes_survive(headless):
    # i runs along +P, j along -L, k along -S: any axis or sign mix-up moves the voxel.
    geometry = Geometry(
        shape=(3, 4, 5), spacing=(1.5, 2.0, 3.0), origin=(10.0, -20.0, 30.0),
        direction=(0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
    )
    array = np.arange(60, dtype=np.float32).reshape(geometry.shape)
    node = add_volume_node(headless.scene, Volume(array, geometry), "permuted")
    # Voxel (i, j, k) = (1, 2, 1): LPS = origin + 1*1.5*(0,1,0) + 2*2.0*(-1,0,0) + 1*3.0*(0,0,-1) = (6, -18.5, 27).
    ras = (slicer.util.arrayFromVTKMatrix(_ijk_to_ras(node)) @ [1, 2, 1, 1.0])[:3]
    assert np.allclose(ras, (-6.0, 18.5, 27.0))
    back = volume_from_node(node)
    assert back.geometry.matches(geometry, atol=1e-9)
    assert np.array_equal(back.array, array)


def test_slicer_reader_agrees_in_physical_space(headless, openkbp_nifti):
    # Slicer's own NIfTI reader stores this image with the slice order reversed (k along +S), so
    # arrays differ by index but must agree voxel for voxel once compared in physical space.
    path = openkbp_nifti / CASE / "ct.nii.gz"
    ours = Volume.from_sitk(sitk.ReadImage(str(path)))
    node = headless.volumes_logic.AddArchetypeVolume(str(path), "ct-read-by-slicer")
    theirs = volume_from_node(node)
    assert np.array_equal(theirs.array, ours.array[::-1])
    assert theirs.geometry.direction[8] == pytest.approx(1.0)
    assert np.array_equal(resample(theirs, ours.geometry, label=True).array, ours.array)


def test_parent_transform_moves_the_world_grid(headless, ct):
    node = add_volume_node(headless.scene, ct, "CT moved")
    transform = headless.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    shift = np.eye(4)
    shift[:3, 3] = (10.0, -20.0, 5.0)  # RAS mm
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(shift))
    node.SetAndObserveTransformNodeID(transform.GetID())
    moved = volume_from_node(node)
    # RAS (+10, -20, +5) is LPS (-10, +20, +5).
    assert np.allclose(moved.geometry.origin, np.add(ct.geometry.origin, (-10.0, 20.0, 5.0)))
    # Writing a world-space volume under the transform puts it back where it was.
    update_volume_node(node, ct)
    assert volume_from_node(node).geometry.matches(ct.geometry, atol=1e-9)


def test_segmentation_round_trip_keeps_overlapping_structures(headless, ct, structures):
    ptv, mandible = structures["PTV70"].mask, structures["Mandible"].mask
    overlap = int((ptv & mandible).sum())
    assert overlap > 0 and all(s.mask.any() for s in structures.segments)
    volume_node = add_volume_node(headless.scene, ct, "CT")
    node = add_segmentation_node(headless.scene, structures, "structures", volume_node)
    assert node.GetNodeReference(node.GetReferenceImageGeometryReferenceRole()) is volume_node
    back = segmentation_from_node(node)
    _assert_same(back, structures)
    assert int((back["PTV70"].mask & back["Mandible"].mask).sum()) == overlap


def test_slicer_export_puts_each_segment_on_the_ct_voxels(headless, ct, structures):
    # Slicer's own export (not our reader) must find every mask voxel on the CT grid.
    volume_node = add_volume_node(headless.scene, ct, "CT")
    node = add_segmentation_node(headless.scene, structures, "exported", volume_node)
    for index, segment in enumerate(structures.segments):
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(node.GetSegmentation().GetNthSegmentID(index))
        labelmap = headless.scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(node, ids, labelmap, volume_node)
        assert np.array_equal(slicer.util.arrayFromVolume(labelmap) > 0, segment.mask), segment.name


def test_shared_labelmap_layers_are_read_per_segment(headless, structures):
    node = add_segmentation_node(headless.scene, structures, "collapsed")
    segmentation = node.GetSegmentation()
    layers = segmentation.GetNumberOfLayers()
    segmentation.CollapseBinaryLabelmaps(False)  # as Slicer stores non-overlapping segments
    assert segmentation.GetNumberOfLayers() < layers
    _assert_same(segmentation_from_node(node), structures)


def test_segmentation_sampled_on_another_grid(headless, ct, structures):
    node = add_segmentation_node(headless.scene, structures, "structures")
    # A sub-grid two voxels in along each axis: masks must be the matching sub-arrays.
    inner = slice(2, -2)
    sub = _sub_geometry(ct.geometry, 2, 2, 2, tuple(n - 4 for n in ct.geometry.shape))
    back = segmentation_from_node(node, sub)
    assert back.geometry == sub
    for segment in structures.segments:
        assert np.array_equal(back[segment.name].mask, segment.mask[inner, inner, inner]), segment.name


def test_empty_segment_comes_back_empty(headless, ct):
    empty = Segmentation(ct.geometry, [Segment("Background", np.zeros(ct.geometry.shape, bool))])
    back = segmentation_from_node(add_segmentation_node(headless.scene, empty, "empty"))
    assert back.names == ["Background"] and not back["Background"].mask.any()


def test_bad_nodes_are_named(headless, ct):
    with pytest.raises(InputError, match="no volume selected"):
        volume_from_node(None)
    blank = headless.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "blank")
    with pytest.raises(InputError, match="'blank' has no image data"):
        volume_from_node(blank)
    drawn = headless.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn")
    with pytest.raises(InputError, match="'drawn' has no reference geometry"):
        segmentation_from_node(drawn)
    unit = Geometry(shape=(2, 2, 2), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=tuple(np.eye(3).ravel()))
    other = add_volume_node(headless.scene, Volume(np.zeros(unit.shape, np.int16), unit), "other")
    with pytest.raises(InputError, match="reference volume 'other'"):
        add_segmentation_node(headless.scene, Segmentation(ct.geometry), "mismatch", other)


def test_voxel_types_slicer_cannot_show_are_converted(headless, ct):
    mask = Volume(ct.array > 0, ct.geometry)
    assert volume_from_node(add_volume_node(headless.scene, mask, "mask")).array.dtype == np.uint8
    small = Volume(ct.array.astype(np.int64), ct.geometry)
    assert volume_from_node(add_volume_node(headless.scene, small, "int64")).array.dtype == np.int32
    huge = Volume(np.full(ct.geometry.shape, 2**40, np.int64), ct.geometry)
    with pytest.raises(InputError, match="int32 range"):
        add_volume_node(headless.scene, huge, "huge")


def _assert_same(actual: Segmentation, expected: Segmentation) -> None:
    assert actual.names == expected.names
    assert actual.geometry.matches(expected.geometry, atol=1e-9)
    for got, want in zip(actual.segments, expected.segments):
        assert np.array_equal(got.mask, want.mask), got.name
        assert np.allclose(got.color, want.color), got.name


def _ijk_to_ras(node) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix


def _sub_geometry(geometry: Geometry, i0: int, j0: int, k0: int, shape: tuple[int, int, int]) -> Geometry:
    origin = (geometry.ijk_to_lps() @ [i0, j0, k0, 1.0])[:3]
    return Geometry(shape, geometry.spacing, tuple(float(o) for o in origin), geometry.direction)


def test_a_segment_is_rewritten_inside_the_changed_box_only(headless, ct, structures):
    before = structures["PTV70"].mask
    node = add_segmentation_node(headless.scene, Segmentation(ct.geometry, [structures["PTV70"], structures["Mandible"]]), "edited")
    # Under a parent transform too: the box is in the node's own frame.
    transform = headless.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    shift = np.eye(4)
    shift[:3, 3] = (4.0, 0.0, -2.0)
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(shift))
    node.SetAndObserveTransformNodeID(transform.GetID())
    moved = segmentation_from_node(node).geometry
    # The new mask differs from the old one inside a box and (deliberately) outside it too.
    after = before.copy()
    box = (slice(5, 12), slice(8, 20), slice(10, 30))
    after[box] = ~after[box]
    after[0] = True
    assert changed_box(before, before) is None
    assert changed_box(before, after) == (slice(0, 12), slice(0, after.shape[1]), slice(0, after.shape[2]))
    update_segment_region(node, "PTV70", after, moved, box)
    written = segmentation_from_node(node, moved)
    inside = np.zeros(before.shape, bool)
    inside[box] = True
    np.testing.assert_array_equal(written["PTV70"].mask[inside], after[inside])
    np.testing.assert_array_equal(written["PTV70"].mask[~inside], before[~inside])  # never rewritten
    np.testing.assert_array_equal(written["Mandible"].mask, structures["Mandible"].mask)
    with pytest.raises(InputError, match="has no segment 'GTV'"):
        update_segment_region(node, "GTV", after, moved, box)
