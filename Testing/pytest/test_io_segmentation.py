"""Structure files: Slicer .seg.nrrd (checked against SimpleITK and Slicer's own MRML reader), labelmaps, mask folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from sparsert.errors import InputError
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.segmentation_io import fit_to_grid, lattice_offset, read_segmentation, write_segmentation
from sparsert.io.volume import Geometry, Volume, read_image, write_image

# A small grid with permuted, flipped axes and a non-zero origin, so that any axis mix-up shows.
# Columns of the direction (not symmetric): i runs along +y, j along -x, k along -z.
GEOMETRY = Geometry(
    shape=(3, 4, 5),  # k, j, i
    spacing=(1.5, 2.0, 3.0),
    origin=(10.0, -20.0, 30.0),
    direction=(0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
)


def _synthetic() -> Segmentation:
    a = np.zeros(GEOMETRY.shape, bool)
    a[2, 1, 3] = True  # k=2, j=1, i=3
    a[0, 0, 0:3] = True
    b = np.zeros(GEOMETRY.shape, bool)
    b[0, 0, 1] = True  # overlaps a
    b[1, 3, 4] = True
    empty = np.zeros(GEOMETRY.shape, bool)
    return Segmentation(GEOMETRY, [Segment("PTV 70", a, (1.0, 0.0, 0.0)), Segment("Mandible", b, (0.0, 0.5, 1.0)),
                                   Segment("Empty", empty, (0.2, 0.2, 0.2))])


def _assert_same(actual: Segmentation, expected: Segmentation) -> None:
    assert actual.names == expected.names
    assert actual.geometry.matches(expected.geometry)
    for got, want in zip(actual.segments, expected.segments):
        assert np.array_equal(got.mask, want.mask), got.name
        assert np.allclose(got.color, want.color, atol=1e-6), got.name


def test_seg_nrrd_round_trip_keeps_overlaps_names_colours(tmp_path):
    seg = _synthetic()
    path = write_segmentation(seg, tmp_path / "s.seg.nrrd")
    back = read_segmentation(path)
    _assert_same(back, seg)
    assert back.empty_segments() == ["Empty"]
    assert back["PTV 70"].mask[0, 0, 1] and back["Mandible"].mask[0, 0, 1]


def test_seg_nrrd_axes_agree_with_simpleitk(tmp_path):
    # One segment -> a 3D labelmap NRRD that SimpleITK reads as a plain image.
    mask = np.zeros(GEOMETRY.shape, bool)
    mask[2, 1, 3] = True
    path = write_segmentation(Segmentation(GEOMETRY, [Segment("A", mask)]), tmp_path / "one.seg.nrrd")
    image = sitk.ReadImage(str(path))
    assert image.GetSize() == (5, 4, 3)
    assert np.allclose(image.GetSpacing(), (1.5, 2.0, 3.0))
    assert np.allclose(image.GetOrigin(), (10.0, -20.0, 30.0))
    assert np.allclose(image.GetDirection(), GEOMETRY.direction)
    assert list(zip(*np.nonzero(sitk.GetArrayFromImage(image)))) == [(2, 1, 3)]
    # Voxel (i=3, j=1, k=2): origin + 3*1.5*(0,1,0) + 1*2.0*(-1,0,0) + 2*3.0*(0,0,-1), by hand.
    assert np.allclose(image.TransformIndexToPhysicalPoint((3, 1, 2)), (8.0, -15.5, 24.0))
    back = read_segmentation(path)
    assert np.allclose(back.geometry.ijk_to_lps() @ [3, 1, 2, 1], [8.0, -15.5, 24.0, 1.0])
    assert list(zip(*np.nonzero(back["A"].mask))) == [(2, 1, 3)]


def test_overlapping_segments_are_stored_as_layers(tmp_path):
    path = write_segmentation(_synthetic(), tmp_path / "s.seg.nrrd")
    image = sitk.ReadImage(str(path))  # 4D NRRD: SimpleITK reads the layers as vector components
    assert image.GetNumberOfComponentsPerPixel() == 2
    assert image.GetSize() == (5, 4, 3)


def test_real_structures_folder_round_trip(tmp_path, openkbp_nifti):
    folder = openkbp_nifti / "validation" / "pt_201" / "structures"
    seg = read_segmentation(folder)
    files = sorted(folder.glob("*.nii.gz"))
    assert seg.names == [f.name[: -len(".nii.gz")] for f in files]
    for f in files:
        expected = sitk.GetArrayFromImage(sitk.ReadImage(str(f))) != 0
        assert np.array_equal(seg[f.name[: -len(".nii.gz")]].mask, expected)
    assert np.sum([s.mask for s in seg.segments], axis=0).max() > 1  # targets overlap organs: layers needed
    back = read_segmentation(write_segmentation(seg, tmp_path / "structures.seg.nrrd"))
    _assert_same(back, seg)


def _mrml_load(path):
    slicer = pytest.importorskip("slicer")
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    return scene, node


def _mrml_mask(segment, geometry: Geometry) -> np.ndarray:
    import vtk
    from vtkmodules.util import numpy_support

    labelmap = segment.GetRepresentation("Binary labelmap")
    i0, i1, j0, j1, k0, k1 = labelmap.GetExtent()
    scalars = numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars())
    values = scalars.reshape(k1 - k0 + 1, j1 - j0 + 1, i1 - i0 + 1)
    mask = np.zeros(geometry.shape, bool)
    mask[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1] = values == segment.GetLabelValue()
    matrix = vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(matrix)
    image_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    assert np.allclose(image_to_ras, geometry.ijk_to_ras(), atol=1e-6)
    return mask


def test_written_file_opens_in_slicer_mrml(tmp_path, openkbp_nifti):
    seg = read_segmentation(openkbp_nifti / "validation" / "pt_202" / "structures")
    seg.add("Empty", np.zeros(seg.geometry.shape, bool))
    path = write_segmentation(seg, tmp_path / "s.seg.nrrd")
    scene, node = _mrml_load(path)
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(seg.segments)
    for n, expected in enumerate(seg.segments):
        segment = segmentation.GetNthSegment(n)
        assert segment.GetName() == expected.name
        assert np.allclose(segment.GetColor(), expected.color, atol=1e-6)
        assert np.array_equal(_mrml_mask(segment, seg.geometry), expected.mask), expected.name
    # Slicer's own writer, read back by ours.
    writer = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    writer.SetFileName(str(tmp_path / "by_slicer.seg.nrrd"))
    assert writer.WriteData(node) == 1
    _assert_same(read_segmentation(tmp_path / "by_slicer.seg.nrrd"), seg)


def test_labelmap_with_json_sidecar_round_trip(tmp_path):
    seg = _synthetic()
    seg.segments.pop(1)  # no overlap left
    path = write_segmentation(seg, tmp_path / "labels.nii.gz")
    assert json.loads((tmp_path / "labels.json").read_text()) == {"1": "PTV 70", "2": "Empty"}
    labels = read_image(path).array
    assert labels[2, 1, 3] == 1 and labels.max() == 1
    back = read_segmentation(path)
    assert back.names == ["PTV 70", "Empty"]
    assert np.array_equal(back["PTV 70"].mask, seg["PTV 70"].mask)
    assert back.empty_segments() == ["Empty"]


def test_labelmap_refuses_overlapping_segments(tmp_path):
    with pytest.raises(InputError, match="PTV 70/Mandible"):
        write_segmentation(_synthetic(), tmp_path / "labels.nrrd")
    assert not (tmp_path / "labels.nrrd").exists()


def test_labelmap_names_from_dict_and_colour_table(tmp_path):
    labels = np.zeros(GEOMETRY.shape, np.uint8)
    labels[0, 0, 0] = 3
    labels[1, 1, 1] = 7
    path = write_image(Volume(labels, GEOMETRY), tmp_path / "lab.nrrd")
    by_dict = read_segmentation(path, names={3: "Cord", "7": "Brainstem"})
    assert by_dict.names == ["Cord", "Brainstem"]
    assert list(zip(*np.nonzero(by_dict["Brainstem"].mask))) == [(1, 1, 1)]
    table = tmp_path / "colors.ctbl"
    table.write_text(
        "# Color table\n0 Background 0 0 0 0\n3 Cord 255 0 0 255\n5 Unused 0 0 255 255\n7 Brainstem 0 255 0 255\n"
    )
    by_table = read_segmentation(path, names=table)
    assert by_table.names == ["Cord", "Brainstem"]  # a colour table's absent labels are no structures
    assert by_table["Cord"].color == (1.0, 0.0, 0.0)
    with pytest.raises(InputError, match="labels without a name: 7"):
        read_segmentation(path, names={3: "Cord"})
    assert read_segmentation(path).names == ["Segment_3", "Segment_7"]


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_segmentation(tmp_path / "nothing.seg.nrrd")
    garbage = tmp_path / "bad.seg.nrrd"
    garbage.write_bytes(b"\x00\x13garbage\xff" * 50)
    with pytest.raises(InputError, match=r"bad\.seg\.nrrd.*not a readable"):
        read_segmentation(garbage)
    garbage_nii = tmp_path / "bad.nii.gz"
    garbage_nii.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match=r"bad\.nii\.gz"):
        read_segmentation(garbage_nii)


def test_no_overwrite(tmp_path):
    path = write_segmentation(_synthetic(), tmp_path / "s.seg.nrrd")
    with pytest.raises(InputError, match="already exists"):
        write_segmentation(_synthetic(), path)
    write_segmentation(_synthetic(), path, overwrite=True)
    (tmp_path / "l.json").write_text("{}")
    with pytest.raises(InputError, match=r"l\.json: already exists"):
        write_segmentation(Segmentation(GEOMETRY), tmp_path / "l.nii.gz")


def test_mask_folder_errors(tmp_path):
    folder = tmp_path / "structures"
    mask = np.zeros(GEOMETRY.shape, np.uint8)
    mask[1, 1, 1] = 1
    write_image(Volume(mask, GEOMETRY), folder / "A.nrrd")
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"notes\.txt: not an image"):
        read_segmentation(folder)
    (folder / "notes.txt").unlink()
    shifted = Geometry(GEOMETRY.shape, GEOMETRY.spacing, (0.0, 0.0, 0.0), GEOMETRY.direction)
    write_image(Volume(mask, shifted), folder / "B.nrrd")
    with pytest.raises(InputError, match=r"B\.nrrd: mask is on a different grid"):
        read_segmentation(folder)
    write_image(Volume(mask * 2, GEOMETRY), folder / "B.nrrd", overwrite=True)
    assert read_segmentation(folder).names == ["A", "B"]  # 0/2 is still a binary mask
    labels = mask.copy()
    labels[0, 0, 0] = 2
    write_image(Volume(labels, GEOMETRY), folder / "B.nrrd", overwrite=True)
    with pytest.raises(InputError, match=r"B\.nrrd: a structure mask must be binary"):
        read_segmentation(folder)


def test_fit_to_grid_pads_a_cropped_segmentation():
    mask = np.zeros(GEOMETRY.shape, bool)
    mask[1, 2, 3] = True
    # The sub-grid starting at voxel (i=2, j=1, k=1): origin moved by 2*1.5 along +y, 1*2.0 along -x, 1*3.0 along -z.
    sub = Geometry((2, 3, 3), GEOMETRY.spacing, (8.0, -17.0, 27.0), GEOMETRY.direction)
    assert lattice_offset(sub, GEOMETRY) == (2, 1, 1)
    cropped = Segmentation(sub, [Segment("A", mask[1:3, 1:4, 2:5])])
    assert np.array_equal(fit_to_grid(cropped, GEOMETRY, "s.seg.nrrd")["A"].mask, mask)
    half_voxel = Geometry(sub.shape, sub.spacing, (8.0, -17.75, 27.0), sub.direction)
    assert lattice_offset(half_voxel, GEOMETRY) is None
    with pytest.raises(InputError, match="s.seg.nrrd: structures are on a different grid"):
        fit_to_grid(Segmentation(half_voxel, []), GEOMETRY, "s.seg.nrrd")
    outside = Geometry(sub.shape, sub.spacing, (8.0, -14.0, 27.0), sub.direction)  # starts at i=4 of 5
    with pytest.raises(InputError, match="'A' extends outside"):
        fit_to_grid(Segmentation(outside, [Segment("A", np.ones(sub.shape, bool))]), GEOMETRY, "s.seg.nrrd")


def test_reads_pre_4_11_slicer_files_with_one_segment_per_layer(tmp_path):
    nrrd = pytest.importorskip("nrrd")
    a = np.zeros(GEOMETRY.shape, bool)
    a[2, 1, 3] = True
    b = np.zeros(GEOMETRY.shape, bool)
    b[0, 0, 0] = b[2, 1, 3] = True
    header = {
        "space": "left-posterior-superior",
        "kinds": ["list", "domain", "domain", "domain"],
        "space directions": np.vstack([[np.nan] * 3, GEOMETRY.ijk_to_lps()[:3, :3].T]),
        "space origin": np.array(GEOMETRY.origin),
        # No Layer / LabelValue fields: segment n is layer n, voxels 1 inside.
        "Segment0_ID": "a", "Segment0_Name": "A", "Segment1_ID": "b", "Segment1_Name": "B",
    }
    voxels = np.stack([a.transpose(2, 1, 0), b.transpose(2, 1, 0)]).astype(np.uint8)
    nrrd.write(str(tmp_path / "old.seg.nrrd"), voxels, header, index_order="F")
    seg = read_segmentation(tmp_path / "old.seg.nrrd")
    assert seg.names == ["A", "B"]
    assert np.array_equal(seg["A"].mask, a) and np.array_equal(seg["B"].mask, b)
    assert seg.geometry.matches(GEOMETRY)
