"""The dose scene: a dose over its CT and structures, as a physicist reviews it in Slicer.

:func:`build_dose_scene` turns nodes already in a scene (CT, structures, dose, optional reference
dose) into the full review: the dose as a SlicerRT dose volume washed over the CT, isodose lines,
one DVH table per structure and dose, the DVH chart (dose solid, reference dashed), the metrics
table, and the four-up plot layout. :func:`save_dose_scene` writes the scene bundle (``.mrb``),
slice snapshots and a DVH figure. The ScribbleDose module, its batch script and ``sparsert
scene`` all go through these functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import slicer

from sparsert.errors import InputError
from sparsert.io.segmentation import Segmentation
from sparsert.io.dicom.files import is_dicom_name_or_file
from sparsert.io.dose_io import read_dose
from sparsert.io.segmentation_io import read_structures
from sparsert.io.volume import Volume, read_image, resample
from sparsert.mrml.bundle import write_scene_bundle
from sparsert.mrml.dose import (
    dose_color_table,
    mark_as_dose,
    show_color_legend,
    show_dose_wash,
    study_item,
    subject_hierarchy_item,
)
from sparsert.mrml.dvh import add_dvh_chart, add_dvh_series, add_dvh_table, add_metrics_table
from sparsert.mrml.isodose import Isodoses, add_isodose_models
from sparsert.mrml.segmentation import add_segmentation_node, segmentation_from_node
from sparsert.mrml.snapshots import SliceLayers, render_slice_snapshots
from sparsert.mrml.views import (
    DOSE_OPACITY,
    center_slice_views,
    show_chart,
    show_dose_over_ct,
    use_soft_tissue_window,
)
from sparsert.mrml.volume import add_volume_node, volume_from_node, volume_node_geometry
from sparsert.reports.dose_display import ISODOSE_PERCENTS, DoseNormalisation, dose_normalisation, isodose_levels
from sparsert.reports.dvh import dvh_table, plot_dvh
from sparsert.reports.metrics_table import DIFFERENCE, PREDICTED, REFERENCE, metrics_rows
from sparsert.roles import StructureRole, highest_prescription, structure_roles
from sparsert.io.output import writable

DVH_BIN_GY = 0.1


@dataclass
class DoseScene:
    """The nodes of a dose scene and what they were computed from.

    Doses are keyed by their part in the comparison, ``"predicted"`` (the dose under review) and
    ``"reference"``; ``curves`` are the DVHs (Gy, %) per dose and structure, on the CT grid.
    """

    ct_node: object
    structures_node: object
    dose_node: object
    reference_node: object | None
    structures: Segmentation
    roles: dict[str, StructureRole]
    normalisation: DoseNormalisation
    window_max_gy: float
    focus_ras: np.ndarray
    color_table: object = None
    isodoses: Isodoses | None = None
    chart: object = None
    series: list = field(default_factory=list)
    dvh_tables: dict[tuple[str, str], object] = field(default_factory=dict)
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    metrics_table: object = None


def load_case(scene, ct_path, structures_path, dose_path, reference_path=None) -> dict[str, object]:
    """Read the input files into ``scene``: {"ct", "structures", "dose", "reference"} nodes.

    Any input may be DICOM: a CT series folder, an RTSTRUCT (rasterised on the CT), RTDOSE files.
    Structures are put on the CT grid (nearest neighbour through physical space when they are on
    another one), which is what the Segment Editor paints on; doses keep their own grid.
    """
    ct = read_image(ct_path)
    ct_node = add_volume_node(scene, ct, "CT")
    dicom_ct = ct_path if Path(ct_path).is_dir() else None
    if is_dicom_name_or_file(Path(structures_path)):
        structures = read_structures(structures_path, dicom_ct or ct.geometry)
    else:
        structures = read_structures(structures_path).resampled(ct.geometry)
    nodes = {
        "ct": ct_node,
        "structures": add_segmentation_node(scene, structures, "Structures", ct_node),
        "dose": add_volume_node(scene, read_dose(dose_path), "Dose"),
        "reference": None,
    }
    if reference_path is not None:
        nodes["reference"] = add_volume_node(scene, read_dose(reference_path), "Reference dose")
    return nodes


def build_dose_scene(
    scene,
    ct_node,
    structures_node,
    dose_node,
    reference_node=None,
    roles: Mapping[str, StructureRole] | None = None,
    isodose_percents=ISODOSE_PERCENTS,
) -> DoseScene:
    """Add the dose review of ``dose_node`` (and ``reference_node``) to ``scene`` (see the module notes).

    ``roles`` default to the roles guessed from the segment names; 100 % is the highest target
    prescription, or the dose maximum when no target has one.
    """
    if dose_node is None:
        raise InputError("no dose volume selected")
    if reference_node is not None and reference_node is dose_node:
        raise InputError(f"'{dose_node.GetName()}' is selected as both the dose and the reference dose")
    structures = segmentation_from_node(structures_node, volume_node_geometry(ct_node))
    roles = dict(roles) if roles is not None else structure_roles(structures.names)
    doses = {PREDICTED: dose_node} if reference_node is None else {PREDICTED: dose_node, REFERENCE: reference_node}
    on_grid = {label: _dose_on_grid(node, structures) for label, node in doses.items()}
    built = DoseScene(
        ct_node,
        structures_node,
        dose_node,
        reference_node,
        structures,
        roles,
        dose_normalisation(highest_prescription(roles), float(on_grid[PREDICTED].array.max())),
        window_max_gy=max(float(v.array.max()) for v in on_grid.values()),
        focus_ras=_focus(structures, roles, on_grid[PREDICTED]),
    )

    built.color_table = dose_color_table(scene)
    study = study_item(scene, ct_node)
    for node in doses.values():
        mark_as_dose(node, study, built.normalisation)
        show_dose_wash(node, built.color_table, built.normalisation, built.window_max_gy)
    show_color_legend(dose_node, "Dose (Gy)")
    levels = isodose_levels(built.normalisation, built.window_max_gy, isodose_percents)
    built.isodoses = add_isodose_models(scene, dose_node, levels)
    _add_dvh(scene, built, doses, on_grid)
    _add_metrics(scene, built, doses, on_grid)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    for node in (built.chart, built.metrics_table):
        sh.SetItemParent(subject_hierarchy_item(node), study)

    structures_node.CreateDefaultDisplayNodes()
    # Structures as outlines over the dose wash, as planning systems draw them.
    display = structures_node.GetDisplayNode()
    display.SetVisibility2DFill(False)
    display.SetVisibility2DOutline(True)
    display.SetSliceIntersectionThickness(2)
    use_soft_tissue_window(ct_node)
    show_dose_over_ct(scene, ct_node, dose_node)
    center_slice_views(scene, built.focus_ras)
    show_chart(scene, built.chart)
    return built


def save_dose_scene(
    scene, app_logic, built: DoseScene, out: str | Path, snapshots: str | Path | None = None, overwrite: bool = False
) -> dict[str, Path]:
    """Write the scene bundle and, with ``snapshots``, axial/coronal/sagittal PNGs and ``dvh.png`` there.

    Returns the written files by name ("scene", "axial", "coronal", "sagittal", "dvh").
    """
    written = {}
    if snapshots is not None:
        snapshots = Path(snapshots)
        dvh_path = snapshots / "dvh.png"
        dvh_path = writable(dvh_path, overwrite)
        points, slab = _washed_points(built)
        layers = SliceLayers(built.ct_node.GetID(), built.dose_node.GetID(), DOSE_OPACITY)
        paths = render_slice_snapshots(
            scene, app_logic, layers, snapshots, built.focus_ras, points, slab, overwrite=overwrite
        )
        written.update({orientation.lower(): path for orientation, path in paths.items()})
        written["dvh"] = plot_dvh(
            built.structures,
            built.curves[PREDICTED],
            built.curves.get(REFERENCE),
            dvh_path,
            title=f"Dose-volume histogram: {built.dose_node.GetName()}",
        )
    written["scene"] = write_scene_bundle(scene, out, overwrite=overwrite)
    return written


def _dose_on_grid(node, structures: Segmentation) -> Volume:
    dose = volume_from_node(node)
    if float(dose.array.min()) < 0:
        raise InputError(f"dose '{node.GetName()}' has negative values (min {float(dose.array.min()):g} Gy)")
    return resample(dose, structures.geometry)


def _add_dvh(scene, built: DoseScene, doses: dict, on_grid: dict[str, Volume]) -> None:
    planned = Segmentation(
        built.structures.geometry,
        [s for s in built.structures.segments if not built.roles[s.name].is_background],
    )
    built.chart = add_dvh_chart(scene)
    voxel_cc = built.structures.geometry.voxel_volume_mm3 / 1000.0
    for label, node in doses.items():
        curves = dvh_table(on_grid[label], planned, bin_width_gy=DVH_BIN_GY, max_dose=built.window_max_gy)
        built.curves[label] = curves
        for segment in planned.segments:
            if segment.name not in curves:
                continue
            levels, percent = curves[segment.name]
            volume_cc = np.count_nonzero(segment.mask) * voxel_cc
            table = add_dvh_table(scene, levels, percent, node, built.structures_node, segment.name, volume_cc)
            built.dvh_tables[(label, segment.name)] = table
            series_name = segment.name if label == PREDICTED else f"{segment.name} ({node.GetName()})"
            dashed = label == REFERENCE
            built.series.append(add_dvh_series(scene, built.chart, table, series_name, segment.color, dashed))


def _add_metrics(scene, built: DoseScene, doses: dict, on_grid: dict[str, Volume]) -> None:
    names = {label: node.GetName() for label, node in doses.items()}
    if REFERENCE in names:
        names[DIFFERENCE] = f"{names[PREDICTED]} - {names[REFERENCE]}"
    built.metrics = metrics_rows(built.structures, built.roles, on_grid[PREDICTED], on_grid.get(REFERENCE))
    rows = [{**row, "dose": names[row["dose"]]} for row in built.metrics]
    built.metrics_table = add_metrics_table(scene, rows, f"{built.dose_node.GetName()}_DvhMetrics")


def _focus(structures: Segmentation, roles: Mapping[str, StructureRole], dose: Volume) -> np.ndarray:
    """The point (RAS) views go through: the centroid of the highest-prescription target, else the
    dose maximum."""
    targets = [
        (role.prescription_gy or 0.0, name)
        for name, role in roles.items()
        if role.is_target and name in structures and structures[name].mask.any()
    ]
    if targets:
        k, j, i = np.argwhere(structures[max(targets)[1]].mask).mean(axis=0)
    else:
        k, j, i = np.unravel_index(int(np.argmax(dose.array)), dose.array.shape)
    return (structures.geometry.ijk_to_ras() @ np.array([i, j, k, 1.0]))[:3]


def _washed_points(built: DoseScene) -> tuple[np.ndarray, float]:
    """Centres (RAS) of the voxels the wash colours, and the dose grid's largest spacing (how far
    from a view's plane a voxel still counts)."""
    dose = volume_from_node(built.dose_node)
    washed = np.argwhere(dose.array >= built.normalisation.lower_threshold_gy)[:, ::-1]
    points = (dose.geometry.ijk_to_ras() @ np.c_[washed, np.ones(len(washed))].T).T[:, :3]
    return points, float(max(dose.geometry.spacing))
