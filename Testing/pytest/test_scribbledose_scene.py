"""The ScribbleDose dose scene on the sample case (OpenKBP pt_201), without the Slicer application.

The case's dose is reviewed as the "predicted" dose against a reference of 0.9 times it, which makes
many expected values computable by hand: Dx% scales with the dose, so every difference of a dose
metric is 0.1 times the predicted value. Everything else is recomputed here with numpy from the
files, independently of the MRML code.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import slicer
from scipy import ndimage
from vtk.util import numpy_support

from sparsert.cli.main import main as sparsert_main
from sparsert.errors import InputError
from sparsert.io.segmentation_io import read_segmentation
from sparsert.io.volume import read_image, resample, write_image
from sparsert.mrml import HeadlessSlicer, volume_from_node
from sparsert.mrml.bundle import read_scene_bundle

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT / "Resources" / "SampleData" / "OpenKBP-pt_201"
BATCH_SCRIPT = REPO_ROOT / "ScribbleDose" / "Resources" / "Scripts" / "ScribbleDoseBatch.py"
SCALE = 0.9  # reference = SCALE x the reviewed dose
RX = 70.0  # PTV70 is the highest-prescription target
PERCENTS = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100, 105)


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> SimpleNamespace:
    folder = tmp_path_factory.mktemp("dose_scene")
    dose = read_image(SAMPLE / "dose.nrrd")
    reference = dose.with_array((dose.array * SCALE).astype(np.float32))
    return SimpleNamespace(
        folder=folder,
        dose=dose.array.astype(np.float64),
        reference=reference.array.astype(np.float64),
        reference_path=write_image(reference, folder / "reference.nrrd"),
        structures=read_segmentation(SAMPLE / "structures.seg.nrrd"),
        geometry=dose.geometry,
    )


@pytest.fixture(scope="module")
def logic_class():
    """``ScribbleDoseSceneLogic`` imported as Slicer finds it (module folder on sys.path)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO_ROOT / "ScribbleDose"))
        yield importlib.import_module("ScribbleDoseLib.logic").ScribbleDoseSceneLogic


@pytest.fixture(scope="module")
def scene(case, logic_class) -> SimpleNamespace:
    headless = HeadlessSlicer()
    logic = logic_class(headless.scene, headless.app_logic)
    nodes = logic.loadCase(
        SAMPLE / "ct.nrrd", SAMPLE / "structures.seg.nrrd", SAMPLE / "dose.nrrd", case.reference_path
    )
    built = logic.showDose(nodes["ct"], nodes["structures"], nodes["dose"], nodes["reference"])
    written = logic.saveDoseScene(built, case.folder / "scene.mrb", case.folder / "snapshots")
    return SimpleNamespace(headless=headless, logic=logic, nodes=nodes, built=built, written=written)


def _nodes(scene, cls: str) -> list:
    return [scene.GetNthNodeByClass(i, cls) for i in range(scene.GetNumberOfNodesByClass(cls))]


def _column(table_node, name: str) -> np.ndarray:
    return numpy_support.vtk_to_numpy(table_node.GetTable().GetColumnByName(name)).astype(float)


def _text_column(table_node, name: str) -> list[str]:
    column = table_node.GetTable().GetColumnByName(name)
    return [column.GetValue(i) for i in range(column.GetNumberOfValues())]


def _jet_top(position: float) -> tuple[float, float, float]:
    """The wash colour between its last two stops, red (1, 0, 0) at 0.875 and dark red (0.5, 0, 0) at 1."""
    return (1.0 - 0.5 * (position - 0.875) / 0.125, 0.0, 0.0)


# --- dose volume, colours, views ------------------------------------------------------------------


def test_doses_are_slicerrt_dose_volumes_in_one_study(scene, case):
    mrml = scene.headless.scene
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml)
    study_level = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy()
    study = sh.GetItemAncestorAtLevel(sh.GetItemByDataNode(scene.nodes["ct"]), study_level)
    assert study
    assert sh.GetItemAttribute(study, "DicomRtImport.DoseUnitName") == "GY"
    assert sh.GetItemAttribute(study, "DicomRtImport.DoseUnitValue") == "1.0"
    window_max = case.dose.max()  # the reference is lower everywhere
    for node in (scene.nodes["dose"], scene.nodes["reference"]):
        assert node.GetAttribute("DicomRtImport.DoseVolume") == "1"
        assert sh.GetItemAncestorAtLevel(sh.GetItemByDataNode(node), study_level) == study
        display = node.GetDisplayNode()
        assert display.GetColorNode().GetName() == "SparseRT_DoseColorTable"
        assert display.GetWindow() == pytest.approx(window_max, rel=1e-6)
        assert display.GetLevel() == pytest.approx(window_max / 2, rel=1e-6)
        assert display.GetLowerThreshold() == pytest.approx(0.05 * RX)
        assert display.GetApplyThreshold()
    table = scene.nodes["dose"].GetDisplayNode().GetColorNode()
    rgba = [0.0] * 4
    assert table.GetNumberOfColors() == 256
    table.GetColor(0, rgba)
    assert rgba[:3] == pytest.approx([0.0, 0.0, 0.5], abs=1 / 255)  # dark blue at 0 Gy (8-bit table)
    table.GetColor(255, rgba)
    assert rgba[:3] == pytest.approx([0.5, 0.0, 0.0], abs=1 / 255)  # dark red at the maximum
    legends = _nodes(mrml, "vtkMRMLColorLegendDisplayNode")
    assert [legend.GetDisplayableNode() for legend in legends] == [scene.nodes["dose"]]


def test_views_show_the_dose_over_the_ct_next_to_the_dvh(scene):
    mrml = scene.headless.scene
    composites = {c.GetLayoutName(): c for c in _nodes(mrml, "vtkMRMLSliceCompositeNode")}
    assert set(composites) == {"Red", "Yellow", "Green"}
    for composite in composites.values():
        assert composite.GetBackgroundVolumeID() == scene.nodes["ct"].GetID()
        assert composite.GetForegroundVolumeID() == scene.nodes["dose"].GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.5)
    layout = mrml.GetFirstNodeByClass("vtkMRMLLayoutNode")
    assert layout.GetViewArrangement() == slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotView
    assert mrml.GetFirstNodeByClass("vtkMRMLPlotViewNode").GetPlotChartNodeID() == scene.built.chart.GetID()
    # The axial view passes through the centroid of PTV70.
    k, _, _ = np.argwhere(scene.built.structures["PTV70"].mask).mean(axis=0)
    red = next(n for n in _nodes(mrml, "vtkMRMLSliceNode") if n.GetLayoutName() == "Red")
    superior = (scene.built.structures.geometry.ijk_to_ras() @ np.array([0.0, 0.0, k, 1.0]))[2]
    assert red.GetSliceOffset() == pytest.approx(superior, abs=1e-6)


# --- isodoses ---------------------------------------------------------------------------------------


def test_isodose_models_lie_on_their_levels(scene, case):
    reached = [p for p in PERCENTS if RX * p / 100 <= case.dose.max()]
    assert reached == list(PERCENTS[:-1])  # 105 % (73.5 Gy) is above the maximum, 72.3 Gy
    models = scene.built.isodoses.models
    assert [m.GetName() for m in models] == [f"Isodose {p}% ({RX * p / 100:.3g} Gy)" for p in reached]
    table = scene.built.isodoses.color_table
    assert [table.GetColorName(i) for i in range(table.GetNumberOfColors())] == [str(p) for p in PERCENTS]
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene.headless.scene)
    folder = scene.built.isodoses.folder_item
    assert sh.GetItemParent(folder) == sh.GetItemByDataNode(scene.nodes["dose"])
    to_ijk = np.linalg.inv(case.geometry.ijk_to_ras())
    for model, percent in zip(models, reached):
        gy = RX * percent / 100
        assert model.GetAttribute("DicomRtImport.IsodoseModel") == "1"
        assert sh.GetItemParent(sh.GetItemByDataNode(model)) == folder
        assert model.GetDisplayNode().GetVisibility2D()
        if percent == 100:
            assert model.GetDisplayNode().GetColor() == pytest.approx(_jet_top(gy / case.dose.max()))
        # The dose interpolated at the surface's points is the level (smoothing moves points a little).
        points = numpy_support.vtk_to_numpy(model.GetPolyData().GetPoints().GetData()).astype(float)
        ijk = (to_ijk @ np.c_[points, np.ones(len(points))].T)[:3]
        sampled = ndimage.map_coordinates(case.dose, ijk[::-1], order=1)
        assert np.median(sampled) == pytest.approx(gy, abs=0.5), percent


# --- DVH tables and chart ---------------------------------------------------------------------------


def test_dvh_tables_hold_the_cumulative_dvh_of_each_structure(scene, case):
    segmentation = scene.nodes["structures"].GetSegmentation()
    voxel_cc = 5.421999931335449 * 5.421999931335449 * 3.0 / 1000.0
    assert len(scene.built.dvh_tables) == 2 * len(case.structures.segments)
    for label, dose in (("predicted", case.dose), ("reference", case.reference)):
        for segment in case.structures.segments:
            table = scene.built.dvh_tables[(label, segment.name)]
            assert table.GetAttribute("DoseVolumeHistogram.DVH") == "1"
            segment_id = segmentation.GetSegmentIdBySegmentName(segment.name)
            assert table.GetAttribute("DoseVolumeHistogram.SegmentID") == segment_id
            assert float(table.GetAttribute("DoseVolumeHistogram.Volume (cc)")) == pytest.approx(
                segment.mask.sum() * voxel_cc, rel=1e-5
            )
            assert table.GetColumnUnitLabel("Dose") == "Gy" and table.GetColumnUnitLabel("Volume") == "%"
            levels, volume = _column(table, "Dose"), _column(table, "Volume")
            # 0, 0.1, ... up to the first level at or above the common maximum (72.298 Gy): 724 levels.
            assert len(levels) == 724 and levels[0] == 0 and levels[-1] == pytest.approx(72.3)
            assert np.allclose(np.diff(levels), 0.1)
            roi = dose[segment.mask]
            for index in (0, 200, 500, 700):
                assert volume[index] == pytest.approx(100.0 * np.mean(roi >= levels[index])), (segment.name, index)
            assert volume[0] == 100.0 and np.all(np.diff(volume) <= 0)


def test_chart_draws_each_structure_in_its_colour_reference_dashed(scene, case):
    chart = scene.built.chart
    assert chart.GetTitle() == "Dose Volume Histogram"
    assert chart.GetXAxisTitle() == "Dose [Gy]" and chart.GetYAxisTitle() == "Fractional volume [%]"
    lines = [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]
    series = {line.GetName(): line for line in lines}
    assert len(series) == 2 * len(case.structures.segments)
    for segment in case.structures.segments:
        for name, label, style in (
            (segment.name, "predicted", slicer.vtkMRMLPlotSeriesNode.LineStyleSolid),
            (f"{segment.name} (Reference dose)", "reference", slicer.vtkMRMLPlotSeriesNode.LineStyleDash),
        ):
            line = series[name]
            assert line.GetColor() == pytest.approx(segment.color, abs=1e-3)
            assert line.GetLineStyle() == style
            assert line.GetTableNode() is scene.built.dvh_tables[(label, segment.name)]
            assert (line.GetXColumnName(), line.GetYColumnName()) == ("Dose", "Volume")


# --- metrics ------------------------------------------------------------------------------------------


def _expected_metrics(dose: np.ndarray, mask: np.ndarray, rx: float | None) -> dict[str, float]:
    roi = dose[mask]
    voxel_mm3 = 5.421999931335449 * 5.421999931335449 * 3.0
    hottest = max(1, round(100.0 / voxel_mm3))  # voxels in 0.1 cc: 1 for 88 mm3 voxels
    expected = {
        "Volume": roi.size * voxel_mm3 / 1000.0,
        "Mean dose": roi.mean(),
        "Min dose": roi.min(),
        "Max dose": roi.max(),
        "D98%": np.percentile(roi, 2),
        "D95%": np.percentile(roi, 5),
        "D2%": np.percentile(roi, 98),
        "D0.1cc": np.percentile(roi, 100 - 100.0 * hottest / roi.size),
    }
    if rx is not None:
        covered = dose >= rx
        expected["V100%Rx"] = 100.0 * np.mean(roi >= rx)
        expected["HI"] = (np.percentile(roi, 98) - np.percentile(roi, 2)) / np.percentile(roi, 50)
        # Paddick: TV_PIV^2 / (TV x PIV), 0 when no voxel reaches the prescription (no PIV).
        piv = covered.sum()
        expected["CI"] = np.count_nonzero(covered & mask) ** 2 / (mask.sum() * piv) if piv else 0.0
    return expected


def test_metrics_table_matches_numpy(scene, case):
    table = scene.built.metrics_table
    structures = _text_column(table, "Structure")
    doses = _text_column(table, "Dose volume")
    names = [s.name for s in case.structures.segments]
    assert structures == [name for name in names for _ in range(3)]
    assert doses == ["Dose", "Reference dose", "Dose - Reference dose"] * len(names)
    assert table.GetColumnUnitLabel("Mean dose") == "Gy" and table.GetColumnUnitLabel("Volume") == "cc"
    assert table.GetColumnUnitLabel("V100%Rx") == "%"
    numeric = ("Prescription", "Volume", "Mean dose", "Min dose", "Max dose", "D98%", "D95%", "D2%", "D0.1cc",
               "V100%Rx", "HI", "CI")
    columns = {name: _column(table, name) for name in numeric}
    rx = {"PTV70": 70.0, "PTV63": 63.0, "PTV56": 56.0}
    for index, name in enumerate(names):
        mask = case.structures[name].mask
        row = 3 * index
        predicted = _expected_metrics(case.dose, mask, rx.get(name))
        reference = _expected_metrics(case.reference, mask, rx.get(name))
        assert _text_column(table, "Role")[row] == ("target" if name in rx else "organ")
        assert columns["Prescription"][row] == pytest.approx(rx.get(name, math.nan), nan_ok=True)
        for metric, value in predicted.items():
            assert columns[metric][row] == pytest.approx(value, rel=1e-4, abs=1e-6), (name, metric)
            assert columns[metric][row + 1] == pytest.approx(reference[metric], rel=1e-4, abs=1e-6), (name, metric)
        for metric in ("Mean dose", "Min dose", "Max dose", "D98%", "D95%", "D2%", "D0.1cc"):
            # Dx% and the mean scale with the dose: the difference is 0.1 x the predicted value.
            assert columns[metric][row + 2] == pytest.approx((1 - SCALE) * predicted[metric], rel=1e-4, abs=1e-5)
        assert math.isnan(columns["Volume"][row + 2])
        if name in rx:
            for metric in ("V100%Rx", "HI", "CI"):
                assert columns[metric][row + 2] == pytest.approx(predicted[metric] - reference[metric], abs=1e-6)
        else:
            assert all(math.isnan(columns[m][row + offset]) for m in ("V100%Rx", "HI", "CI") for offset in range(3))


# --- scene bundle and snapshots -------------------------------------------------------------------


def test_scene_bundle_reloads_with_the_same_nodes(scene, case):
    reloaded = read_scene_bundle(scene.written["scene"]).scene
    live = scene.headless.scene
    for cls in (
        "vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode", "vtkMRMLTableNode", "vtkMRMLPlotChartNode",
        "vtkMRMLPlotSeriesNode", "vtkMRMLModelNode", "vtkMRMLColorLegendDisplayNode", "vtkMRMLSliceCompositeNode",
    ):
        assert sorted(n.GetName() for n in _nodes(reloaded, cls)) == sorted(n.GetName() for n in _nodes(live, cls)), cls
    dose = reloaded.GetFirstNodeByName("Dose")
    assert dose.GetAttribute("DicomRtImport.DoseVolume") == "1"
    # Slicer's reader may store the voxels in another index order: compare in physical space.
    live_dose = volume_from_node(scene.nodes["dose"])
    assert np.array_equal(resample(volume_from_node(dose), live_dose.geometry, label=True).array, live_dose.array)
    assert dose.GetDisplayNode().GetColorNode().GetName() == "SparseRT_DoseColorTable"
    assert dose.GetDisplayNode().GetLowerThreshold() == pytest.approx(0.05 * RX)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(reloaded)
    study_level = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy()
    study = sh.GetItemAncestorAtLevel(sh.GetItemByDataNode(dose), study_level)
    assert sh.GetItemAttribute(study, "DicomRtImport.DoseUnitName") == "GY"
    composite = next(c for c in _nodes(reloaded, "vtkMRMLSliceCompositeNode") if c.GetLayoutName() == "Red")
    assert composite.GetForegroundVolumeID() == dose.GetID()
    metrics = reloaded.GetFirstNodeByName("Dose_DvhMetrics")
    for name in ("Mean dose", "D95%", "HI"):
        assert np.allclose(_column(metrics, name), _column(scene.built.metrics_table, name), equal_nan=True)
    series = reloaded.GetFirstNodeByName("PTV70 (Reference dose)")
    assert series.GetLineStyle() == slicer.vtkMRMLPlotSeriesNode.LineStyleDash
    assert series.GetTableNode().GetName() == "PTV70_Reference dose_DvhTable"


def _png(path: Path) -> np.ndarray:
    import matplotlib.image

    return (matplotlib.image.imread(str(path))[..., :3] * 255).astype(int)


def test_snapshots_show_the_dose_wash_outlines_and_legend(scene):
    images = {view: _png(scene.written[view]) for view in ("axial", "coronal", "sagittal")}
    for view, image in images.items():
        assert image.shape == (768, 768, 3), view
        r, g, b = image[..., 0], image[..., 1], image[..., 2]
        coloured = (image.max(axis=2) - image.min(axis=2)) > 80
        grey = (np.abs(r - g) < 8) & (np.abs(g - b) < 8) & (r > 60) & (r < 230)
        assert coloured.mean() > 0.10, view  # the dose wash covers a good part of the view
        assert grey.sum() > 500, view  # CT shows around the wash
        assert ((r > 150) & (g < 90) & (b < 90)).sum() > 1000, view  # high dose (red) inside the targets
        # The legend's colour bar, right of the content: dark blue (0 Gy) up to dark red (the maximum).
        band = image[:, int(0.85 * 768):]
        assert ((band[..., 2] > 100) & (band[..., 0] < 60) & (band[..., 1] < 60)).sum() > 50, view
        assert ((band[..., 0] > 100) & (band[..., 1] < 60) & (band[..., 2] < 60)).sum() > 50, view
    assert not np.array_equal(images["axial"], images["coronal"])
    assert scene.written["dvh"].stat().st_size > 10_000


def test_outputs_are_not_overwritten(scene):
    with pytest.raises(InputError, match="scene.mrb: already exists"):
        scene.logic.saveDoseScene(scene.built, scene.written["scene"])


# --- command line and batch script ----------------------------------------------------------------


def test_cli_builds_the_scene_with_roles_and_prescriptions(case, tmp_path, capsys):
    roles = tmp_path / "roles.json"
    roles.write_text(json.dumps({"Esophagus": {"role": "background"}}))
    out = tmp_path / "review.mrb"
    args = ["scene", "--ct", str(SAMPLE / "ct.nrrd"), "--structures", str(SAMPLE / "structures.seg.nrrd"),
            "--dose", str(SAMPLE / "dose.nrrd"), "--roles", str(roles), "--prescription", "PTV70=66", "--out", str(out)]
    assert sparsert_main(args) == 0
    assert "100 % = 66 Gy (prescription)" in capsys.readouterr().out
    reloaded = read_scene_bundle(out).scene
    metrics = reloaded.GetFirstNodeByName("Dose_DvhMetrics")
    structures = _text_column(metrics, "Structure")
    assert "Esophagus" not in structures and len(structures) == len(case.structures.segments) - 1
    dose = reloaded.GetFirstNodeByName("Dose")
    assert dose.GetDisplayNode().GetLowerThreshold() == pytest.approx(0.05 * 66)
    assert _column(metrics, "Prescription")[structures.index("PTV70")] == 66


def test_cli_predicts_the_dose_it_is_not_given(tiny_dose_run, tmp_path, capsys):
    run, _ = tiny_dose_run
    base = ["scene", "--ct", str(SAMPLE / "ct.nrrd"), "--device", "cpu"]
    out = tmp_path / "s.mrb"
    assert sparsert_main([*base, "--scribbles", str(SAMPLE / "scribbles.seg.nrrd"), "--model", "no-such-model", "--out", str(out)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("sparsert scene: error: no model named 'no-such-model' for dose") and len(error.splitlines()) == 1
    assert not out.exists()
    assert sparsert_main([*base, "--scribbles", str(SAMPLE / "scribbles.seg.nrrd"), "--completion", "growcut",
                          "--model", str(run / "best.pt"), "--out", str(out)]) == 0
    reloaded = read_scene_bundle(out).scene
    assert reloaded.GetFirstNodeByName("Dose_DvhMetrics") is not None and reloaded.GetFirstNodeByName("Dose") is not None


def test_batch_script_runs_under_plain_python(tmp_path):
    run = subprocess.run(
        [sys.executable, str(BATCH_SCRIPT), "--ct", str(SAMPLE / "ct.nrrd"), "--model", "no-such-model",
         "--scribbles", str(SAMPLE / "scribbles.seg.nrrd"), "--out", str(tmp_path / "s.mrb")],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 1
    assert "ScribbleDoseBatch: error: no model named 'no-such-model' for dose" in run.stderr


def test_batch_script_builds_the_scene_without_prescriptions(case, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("ScribbleDoseBatch", BATCH_SCRIPT)
    batch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(batch)
    # No target left: 100 % is the maximum of the reviewed dose, and views go through that voxel.
    roles = tmp_path / "roles.json"
    roles.write_text(json.dumps({name: {"role": "organ"} for name in ("PTV70", "PTV63", "PTV56")}))
    out = tmp_path / "batch.mrb"
    args = ["--ct", str(SAMPLE / "ct.nrrd"), "--structures", str(SAMPLE / "structures.seg.nrrd"),
            "--dose", str(SAMPLE / "dose.nrrd"), "--reference-dose", str(case.reference_path),
            "--roles", str(roles), "--out", str(out)]
    assert batch.main(args) == 0
    output = capsys.readouterr().out
    assert f"scene: {out}" in output and "100 % = 72.298 Gy (maximum dose)" in output
    reloaded = read_scene_bundle(out).scene
    assert len(_nodes(reloaded, "vtkMRMLPlotSeriesNode")) == 2 * len(case.structures.segments)
    dose = reloaded.GetFirstNodeByName("Dose")
    assert dose.GetAttribute("SparseRT.DoseNormalisationSource") == "maximum dose"
    assert dose.GetDisplayNode().GetLowerThreshold() == pytest.approx(0.05 * case.dose.max(), rel=1e-6)
    metrics = reloaded.GetFirstNodeByName("Dose_DvhMetrics")
    assert set(_text_column(metrics, "Role")) == {"organ"} and np.isnan(_column(metrics, "HI")).all()
