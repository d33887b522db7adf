"""The three Slicer modules, without the Slicer application.

Static checks read the sources (the module files import Qt, which the slicer-core wheel lacks);
the Qt-free scene logics run for real on a headless scene with OpenKBP and STS data.
"""

from __future__ import annotations

import ast
import importlib
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer

from sparsert.errors import Cancelled, InputError, MissingComponentError
from sparsert.io.segmentation import Segmentation
from sparsert.io.segmentation_io import read_segmentation
from sparsert.io.volume import Volume, read_image
from sparsert.roles import StructureRole
from sparsert.mrml import (
    HeadlessSlicer,
    add_segmentation_node,
    add_volume_node,
    segmentation_from_node,
    volume_from_node,
)

from crossmodal_testdata import one_thread, save_tiny_checkpoint  # noqa: F401 (fixture)
from interactive_testdata import save_model, sts_ct_pet, tiny_model

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULES = ["ScribbleDose", "InteractiveRefine", "CrossModalSeg"]
SAMPLE = REPO_ROOT / "Resources" / "SampleData" / "OpenKBP-pt_201"
# Parameters each module's parameter node must hold (the inputs of its main action).
PARAMETERS = {
    "ScribbleDose": {"ctVolume", "scribbles", "structures"},
    "InteractiveRefine": {"ctVolume", "petVolume", "resumeSegmentation"},
    "CrossModalSeg": {"ctVolume", "mrVolume", "scribbles", "fineTuneSteps"},
}
VALUE_PARAMETERS = {"fineTuneSteps"}  # bound to spin boxes; every other parameter is a node selector


def _source(module: str) -> ast.Module:
    return ast.parse((REPO_ROOT / module / f"{module}.py").read_text())


def _classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _ui(module: str) -> ET.Element:
    return ET.parse(REPO_ROOT / module / "Resources" / "UI" / f"{module}.ui").getroot()


def _cmake_list(text: str, variable: str, module: str) -> set[str]:
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.DOTALL)
    assert match, f"{variable} not set"
    return {item.replace("${MODULE_NAME}", module) for item in match.group(1).split()}


# --- static checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_widget_uses_only_widgets_of_its_ui_file(module):
    used = {
        node.attr
        for node in ast.walk(_source(module))
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "ui"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    }
    defined = {widget.get("name") for widget in _ui(module).iter("widget")}
    assert {"applyButton", "statusLabel"} <= used
    assert used <= defined, f"{module}.py uses widgets missing from {module}.ui: {sorted(used - defined)}"


@pytest.mark.parametrize("module", MODULES)
def test_ui_binds_exactly_the_parameter_node_fields(module):
    wrapper = _classes(_source(module))[f"{module}ParameterNode"]
    assert any(isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in wrapper.decorator_list)
    fields = {item.target.id for item in wrapper.body if isinstance(item, ast.AnnAssign)}
    bound = {
        prop.find("string").text
        for prop in _ui(module).iter("property")
        if prop.get("name") == "SlicerParameterName"
    }
    assert fields == bound == PARAMETERS[module]


@pytest.mark.parametrize("module", MODULES)
def test_ui_has_inputs_section_apply_button_and_status(module):
    root = _ui(module)
    widgets = {w.get("name"): w.get("class") for w in root.iter("widget")}
    assert widgets[module] == "qMRMLWidget"
    assert widgets["applyButton"] == "QPushButton" and widgets["statusLabel"] == "QLabel"
    inputs = next(w for w in root.iter("widget") if w.get("name") == "inputsCollapsibleButton")
    assert inputs.get("class") == "ctkCollapsibleButton"
    assert inputs.find("property[@name='text']/string").text == "Inputs"
    selectors = [w.get("name") for w in inputs.iter("widget") if w.get("class") == "qMRMLNodeComboBox"]
    assert len(selectors) == len(PARAMETERS[module] - VALUE_PARAMETERS)
    # Every selector gets the scene from the top-level widget, or it stays empty in Slicer.
    connected = {c.findtext("receiver") for c in root.iter("connection") if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert connected == set(selectors)


@pytest.mark.parametrize("module", MODULES)
def test_module_file_follows_the_scripted_module_template(module):
    tree = _source(module)
    classes = _classes(tree)
    bases = {name: {ast.unparse(b) for b in cls.bases} for name, cls in classes.items()}
    assert bases[module] == {"ScriptedLoadableModule"}
    assert {"ScriptedLoadableModuleWidget", "VTKObservationMixin"} <= bases[f"{module}Widget"]
    assert bases[f"{module}Logic"] == {f"{module}SceneLogic", "ScriptedLoadableModuleLogic"}
    assert bases[f"{module}Test"] == {"ScriptedLoadableModuleTest"}
    assigned = {
        ast.unparse(node.targets[0]): node.value
        for node in ast.walk(classes[module])
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]).startswith("self.parent.")
    }
    assert ast.literal_eval(assigned["self.parent.categories"]) == ["Radiotherapy"]
    assert ast.literal_eval(assigned["self.parent.contributors"]) == ["SparseRT developers"]
    for attribute in ("title", "helpText", "acknowledgementText"):
        assert f"self.parent.{attribute}" in assigned
    loads = [
        node
        for node in ast.walk(classes[f"{module}Widget"])
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "slicer.util.loadUI"
    ]
    assert [ast.unparse(call.args[0]) for call in loads] == [f"self.resourcePath('UI/{module}.ui')"]


@pytest.mark.parametrize("module", MODULES)
def test_scene_logic_stays_free_of_qt(module):
    tree = ast.parse((REPO_ROOT / module / f"{module}Lib" / "logic.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    forbidden = {"qt", "ctk", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper", "slicer.util"}
    assert not imported & forbidden


@pytest.mark.parametrize("module", MODULES)
def test_cmakelists_lists_every_file_of_the_module(module):
    folder = REPO_ROOT / module
    text = (folder / "CMakeLists.txt").read_text()
    scripts = _cmake_list(text, "MODULE_PYTHON_SCRIPTS", module)
    resources = _cmake_list(text, "MODULE_PYTHON_RESOURCES", module)
    present = {
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.name != "CMakeLists.txt"
    }
    assert scripts == {p for p in present if p.endswith(".py")}
    assert resources == {p for p in present if not p.endswith(".py")}
    assert {f"Resources/UI/{module}.ui", f"Resources/Icons/{module}.png"} <= resources
    assert "slicerMacroBuildScriptedModule(" in text
    assert re.search(r"if\(BUILD_TESTING\).*slicer_add_python_unittest\(SCRIPT \$\{MODULE_NAME\}\.py\)", text, re.DOTALL)


def test_extension_cmakelists_builds_every_module_and_the_core():
    text = (REPO_ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"^project\(SparseRT\)", text, re.MULTILINE)
    assert re.findall(r"^add_subdirectory\((\w+)\)", text, re.MULTILINE) == MODULES
    assert 'set(EXTENSION_CATEGORY "Radiotherapy")' in text
    assert 'set(EXTENSION_DEPENDS "NA")' in text
    for variable in ("HOMEPAGE", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS"):
        assert f"set(EXTENSION_{variable} " in text
    assert "sparsert/*.py" in text and "ctkMacroCompilePythonScript(" in text
    order = [text.index(s) for s in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})",
                                     "add_subdirectory(", "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
                                     "include(${Slicer_EXTENSION_CPACK})")]
    assert order == sorted(order)


def test_sample_data_registration_names_the_shipped_files():
    classes = [node for node in _source("ScribbleDose").body if isinstance(node, ast.Assign)]
    files = next(ast.literal_eval(node.value) for node in classes if ast.unparse(node.targets[0]) == "SAMPLE_FILES")
    for name, kind, _ in files:
        assert (SAMPLE / name).is_file(), name
        assert kind == ("SegmentationFile" if name.endswith(".seg.nrrd") else "VolumeFile")


def test_icons_are_128_pixel_pngs():
    icons = [REPO_ROOT / "Resources" / "Icons" / "SparseRT.png"]
    icons += [REPO_ROOT / m / "Resources" / "Icons" / f"{m}.png" for m in MODULES]
    for icon in icons:
        image = sitk.ReadImage(str(icon))
        assert image.GetSize() == (128, 128), icon.name


# --- the Qt-free logics on a headless scene --------------------------------------------------


@pytest.fixture(scope="module")
def headless() -> HeadlessSlicer:
    return HeadlessSlicer()


@pytest.fixture
def scene_logic(monkeypatch, headless):
    """Instantiates ``<Module>Lib.logic.<Module>SceneLogic`` as Slicer would find it (module folder on sys.path)."""

    def make(module: str):
        monkeypatch.syspath_prepend(str(REPO_ROOT / module))
        logic_module = importlib.import_module(f"{module}Lib.logic")
        logic = getattr(logic_module, f"{module}SceneLogic")(headless.scene)
        assert logic.scene is headless.scene
        return logic

    return make


@pytest.fixture(scope="module")
def openkbp_ct(openkbp_nifti) -> tuple[Volume, Volume]:
    """A CT crop of OpenKBP pt_1 and the PTV70 mask on it."""
    case = openkbp_nifti / "train" / "pt_1"
    crop = (slice(45, 85), slice(40, 70), slice(40, 70))  # i, j, k
    ct = Volume.from_sitk(sitk.ReadImage(str(case / "ct.nii.gz"))[crop])
    ptv = Volume.from_sitk(sitk.ReadImage(str(case / "structures" / "PTV70.nii.gz"))[crop])
    return ct, ptv


@pytest.fixture(scope="module")
def sts_pair(sts_dir) -> tuple[Volume, Volume]:
    case = sts_dir / "STS_001"
    return tuple(Volume.from_sitk(sitk.ReadImage(str(case / f"{m}_image.nii.gz"))) for m in ("CT", "MR_T1"))


def test_scribble_dose_checks_the_inputs_then_names_the_missing_model(scene_logic, headless, openkbp_ct):
    logic = scene_logic("ScribbleDose")
    ct, ptv = openkbp_ct
    ct_node = add_volume_node(headless.scene, ct, "CT")
    # One stroke: the PTV70 voxels of one row of one slice.
    k, j = np.argwhere(ptv.array.any(axis=2))[0]
    stroke = np.zeros(ct.geometry.shape, bool)
    stroke[k, j] = ptv.array[k, j] > 0
    scribbles = Segmentation(ct.geometry)
    scribbles.add("PTV70", stroke)
    scribbles.add("Background", np.zeros(ct.geometry.shape, bool))
    node = add_segmentation_node(headless.scene, scribbles, "Scribbles", ct_node)
    before = headless.scene.GetNumberOfNodes()
    with pytest.raises(MissingComponentError, match=r"^no model named 'no-such-model'"):
        logic.predictDose(ct_node, node, doseModel="no-such-model")
    assert headless.scene.GetNumberOfNodes() == before

    empty = add_segmentation_node(headless.scene, Segmentation(ct.geometry), "No strokes", ct_node)
    with pytest.raises(InputError, match="'No strokes' has no scribble on CT 'CT'"):
        logic.predictDose(ct_node, empty)
    with pytest.raises(InputError, match="no CT volume selected"):
        logic.predictDose(None, node)
    with pytest.raises(InputError, match="no scribble segmentation selected"):
        logic.predictDose(ct_node, None)
    with pytest.raises(InputError, match="unknown completion method 'magic'"):
        logic.predictDose(ct_node, node, completionMethod="magic")


def test_scribble_dose_predicts_and_shows_the_dose_of_the_sample_scribbles(scene_logic, headless, tiny_dose_run):
    run, _ = tiny_dose_run
    logic = scene_logic("ScribbleDose")
    ct = read_image(SAMPLE / "ct.nrrd")
    scribbles = read_segmentation(SAMPLE / "scribbles.seg.nrrd")
    ct_node = add_volume_node(headless.scene, ct, "pt_201 CT")
    scribbles_node = add_segmentation_node(headless.scene, scribbles, "pt_201 scribbles", ct_node)
    drawn = [s.name for s in scribbles.segments if s.name != "Background"]
    assert "PTV70" in drawn and len(drawn) > 1

    prediction = logic.predictDose(
        ct_node, scribbles_node, completionMethod="growcut", doseModel=str(run / "best.pt"), device="cpu"
    )

    assert prediction.structuresNode.GetName() == "pt_201 scribbles_structures"
    assert prediction.structuresNode.GetAttribute("SparseRT.CompletedFrom") == "pt_201 scribbles"
    assert prediction.doseNode.GetName() == "pt_201 CT_PredictedDose"
    structures = segmentation_from_node(prediction.structuresNode, ct.geometry)
    assert structures.names == drawn
    assert all(s.mask.any() for s in structures.segments)
    dose = volume_from_node(prediction.doseNode)
    assert dose.geometry.matches(ct.geometry) and dose.array.dtype == np.float32
    assert float(dose.array.max()) > 0
    # The user's scribbles are left as drawn.
    after = segmentation_from_node(scribbles_node, ct.geometry)
    assert after.names == scribbles.names
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(after.segments, scribbles.segments))

    # Roles guessed from the names, then edited (as in the module's roles table) for another prediction.
    roles = logic.structureRoles(prediction.structuresNode)
    assert roles["PTV70"] == StructureRole("target", 70.0)
    with pytest.raises(InputError, match="no target among the structures"):
        no_targets = {name: StructureRole("background") for name, role in roles.items() if role.is_target}
        logic.doseTask(ct_node, prediction.structuresNode, no_targets)
    lower = logic.doseTask(
        ct_node, prediction.structuresNode, {"PTV70": StructureRole("target", 35.0)}, doseModel=str(run / "best.pt")
    ).run()
    assert lower.GetName() == "pt_201 CT_PredictedDose_1"
    assert not np.array_equal(volume_from_node(lower).array, dose.array)

    shown = logic.showDose(ct_node, prediction.structuresNode, prediction.doseNode)
    assert prediction.doseNode.GetAttribute("DicomRtImport.DoseVolume") == "1"
    assert {name for _, name in shown.dvh_tables} == set(drawn)
    metrics = headless.scene.GetFirstNodeByName("pt_201 CT_PredictedDose_DvhMetrics")
    assert metrics is shown.metrics_table and metrics.GetNumberOfRows() == len(shown.metrics) > 0


def test_scribble_dose_predicts_completed_structures_with_the_model_trained_on_completions(scene_logic, headless):
    logic = scene_logic("ScribbleDose")
    ct = read_image(SAMPLE / "ct.nrrd")
    structures = read_segmentation(SAMPLE / "structures.seg.nrrd")
    ct_node = add_volume_node(headless.scene, ct, "pt_201 CT")
    drawn = add_segmentation_node(headless.scene, structures, "drawn", ct_node)
    completed = add_segmentation_node(headless.scene, structures, "completed", ct_node)
    completed.SetAttribute("SparseRT.CompletedFrom", "scribbles")  # as completeTask marks its result

    def dose(node, model=None):
        return volume_from_node(logic.doseTask(ct_node, node, doseModel=model).run()).array

    from_drawn, from_completed = dose(drawn), dose(completed)
    assert np.allclose(from_drawn, dose(drawn, "dose-mask"), atol=1e-3)
    assert np.allclose(from_completed, dose(completed, "dose-scribble"), atol=1e-3)
    assert np.abs(from_drawn - from_completed).max() > 1.0  # two models, the same structures


def test_interactive_refine_segments_then_refines_with_undo_and_redo(scene_logic, headless, sts_dir, tmp_path):
    logic = scene_logic("InteractiveRefine")
    ct, pet = sts_ct_pet(sts_dir)
    ctNode, petNode = add_volume_node(headless.scene, ct, "STS_001 CT"), add_volume_node(headless.scene, pet, "STS_001 PET")
    model = str(save_model(tiny_model("two_stage", spacing=None, norm="batch"), tmp_path / "run"))
    with pytest.raises(InputError, match="segment the tumour first"):
        logic.addClick((0.0, 0.0, 0.0), True)
    with pytest.raises(MissingComponentError, match="no model named 'no-such-model'"):
        logic.segmentTumour([ctNode, petNode], model="no-such-model")
    with pytest.raises(InputError, match="needs 2 image"):
        logic.segmentTumour(ctNode, model=model)
    assert logic.session is None and logic.segmentationNode is None

    logic.segmentTumour([ctNode, petNode], model=model)
    node = logic.segmentationNode
    assert node.GetName() == "STS_001 CT_Tumour" and not logic.canUndo
    automatic = segmentation_from_node(node, ct.geometry)["Tumour"].mask
    np.testing.assert_array_equal(automatic, logic.session.segmentation().segments[0].mask)

    centre_ras = ct.geometry.ijk_to_ras() @ np.array([24.0, 24.0, 6.0, 1.0])
    step = logic.addClick(centre_ras[:3], positive=not automatic[6, 24, 24])
    clicked = segmentation_from_node(node, ct.geometry)["Tumour"].mask
    assert logic.canUndo and step.click is not None
    assert int(np.count_nonzero(clicked != automatic)) == step.changed_voxels
    logic.undo()
    np.testing.assert_array_equal(segmentation_from_node(node, ct.geometry)["Tumour"].mask, automatic)
    assert logic.canRedo
    logic.redo()
    np.testing.assert_array_equal(segmentation_from_node(node, ct.geometry)["Tumour"].mask, clicked)
    # A click outside the image changes nothing.
    with pytest.raises(InputError, match="outside"):
        logic.addClick((1e4, 1e4, 1e4), True)
    np.testing.assert_array_equal(segmentation_from_node(node, ct.geometry)["Tumour"].mask, clicked)
    assert len(logic.session.clicks) == 1
    # A new logic (a reloaded scene) resumes from the clicks recorded with the segment.
    resumed = scene_logic("InteractiveRefine")
    assert resumed.resumeSession(node) == 1
    np.testing.assert_array_equal(resumed.session.probability, logic.session.probability)
    assert resumed.canUndo and resumed.accept() is node and resumed.session is None
    with pytest.raises(InputError, match="no recorded refinement"):
        resumed.resumeSession(add_segmentation_node(headless.scene, Segmentation(ct.geometry, []), "drawn by hand"))
    # The user deleted the segmentation: clicks say so instead of failing on a dead node.
    headless.scene.RemoveNode(node)
    with pytest.raises(InputError, match="was removed from the scene"):
        logic.undo()


def test_cross_modal_seg_adds_the_tumour_on_the_ct_grid(scene_logic, headless, sts_pair, tmp_path, one_thread):
    logic = scene_logic("CrossModalSeg")
    ct, mr = (add_volume_node(headless.scene, v, name) for v, name in zip(sts_pair, ("Fusion CT", "Fusion MR")))
    before = headless.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    with pytest.raises(MissingComponentError, match="no model named 'no-such-model'"):
        logic.segmentTumour(ct, mr, model="no-such-model")
    assert headless.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == before
    # A network biased to call everything tumour: the whole overlap of CT body and MR is one mass.
    model = save_tiny_checkpoint(tmp_path / "all", bias=8.0)
    result = logic.segmentTumour(ct, mr, model=str(model))
    assert result.segmentationNode.GetName() == "Fusion CT_Tumour"
    assert result.warnings == []
    tumour = segmentation_from_node(result.segmentationNode, sts_pair[0].geometry)
    assert tumour.names == ["Tumour"] and tumour["Tumour"].mask.any()
    # Without an MR the CT feeds both branches, with a warning; a second result gets its own node.
    # Off the GUI thread: the worker computes, the collector adds the node.
    task = logic.tumourTask(ct, None, model=str(model)).start()
    while not task.done:
        time.sleep(0.05)
    alone = task.result()
    assert alone.segmentationNode is not result.segmentationNode
    assert any("no MR given" in w for w in alone.warnings)
    # A cancelled task adds nothing.
    nodes = headless.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    task = logic.tumourTask(ct, mr, model=str(model))
    task.cancel()
    task.start()
    while not task.done:
        time.sleep(0.05)
    with pytest.raises(Cancelled):
        task.result()
    assert headless.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == nodes


def test_cross_modal_seg_checks_the_inputs(scene_logic, headless, sts_pair):
    logic = scene_logic("CrossModalSeg")
    ct, mr = (add_volume_node(headless.scene, v, name) for v, name in zip(sts_pair, ("STS_001 CT", "STS_001 MR")))
    # The same MR moved one metre up by a parent transform no longer overlaps the CT.
    transform = headless.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "far away")
    shift = np.eye(4)
    shift[2, 3] = 1000.0
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(shift))
    mr.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(InputError, match="do not overlap in physical space"):
        logic.segmentTumour(ct, mr)
    with pytest.raises(InputError, match="no CT volume selected"):
        logic.segmentTumour(None, mr)


def test_cross_modal_seg_fine_tunes_on_scribbles_and_leaves_them_untouched(scene_logic, headless, sts_dir, sts_pair, tmp_path, one_thread):
    from sparsert.data.sts import GTV, read_sts_case
    from sparsert.evaluation.crossmodal import user_scribbles

    logic = scene_logic("CrossModalSeg")
    ct, mr = (add_volume_node(headless.scene, v, name) for v, name in zip(sts_pair, ("CT", "MR")))
    drawn = user_scribbles(read_sts_case(sts_dir / "STS_001"), 0.3, 1, -500.0)
    scribbles = add_segmentation_node(headless.scene, drawn, "my scribbles", ct)
    before = segmentation_from_node(scribbles, sts_pair[0].geometry)
    model = save_tiny_checkpoint(tmp_path / "all", bias=8.0)
    task = logic.tumourTask(ct, mr, model=str(model), scribblesNode=scribbles, fineTuneSteps=2)
    messages = []
    task.progress.report = lambda text, report=task.progress.report: (messages.append(text), report(text))
    result = task.run()
    assert "Fine-tuning on the scribbles: step 1 of 2" in messages and messages[-1] == "Segmenting the tumour"
    assert result.segmentationNode is not scribbles
    after = segmentation_from_node(scribbles, sts_pair[0].geometry)
    assert after.names == before.names == [GTV, "Background"]
    assert all(np.array_equal(after[n].mask, before[n].mask) for n in after.names)
    # Background strokes alone teach nothing about the tumour: refused, nothing added.
    only_background = Segmentation(drawn.geometry, [drawn["Background"]])
    nodes = headless.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    with pytest.raises(InputError, match="scribbles 'strokes': no tumour scribble"):
        logic.segmentTumour(ct, mr, model=str(model),
                            scribblesNode=add_segmentation_node(headless.scene, only_background, "strokes", ct))
    assert headless.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == nodes + 1
