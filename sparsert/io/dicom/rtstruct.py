"""RT Structure Sets: ROI contours rasterised onto a CT grid, and segments written as contours.

Reading: each ROI with closed planar contours becomes a segment named by ROIName with its
ROIDisplayColor; contours on one slice are filled by the even-odd rule (holes, islands, several
pieces). POINT and OPEN_PLANAR contours (isocentres, markers, lines) enclose no volume and are
skipped; an ROI with no contour at all is kept as an empty segment. Writing: one CLOSED_PLANAR
contour per boundary (holes as separate contours) on every CT slice, referencing the CT images.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import RTStructureSetStorage

from sparsert.errors import InputError
from sparsert.io.dicom.contours import fill_even_odd, mask_contours
from sparsert.io.dicom.files import (
    RESEARCH_USE,
    decimal_values,
    new_derived_dataset,
    output_path,
    read_dataset,
    save_dataset,
)
from sparsert.io.dicom.series import DicomSeries
from sparsert.io.segmentation import Segment, Segmentation, default_color
from sparsert.io.volume import Geometry

# A contour's plane may sit this far (fraction of the slice spacing) from a CT slice centre.
_PLANE_TOLERANCE = 0.25
# Retired "Detached Study Management" class: what RT Referenced Study items conventionally name.
_STUDY_REFERENCE_CLASS = "1.2.840.10008.3.1.2.3.1"
_MAX_LO = 64


def read_rtstruct(path: str | Path, reference: DicomSeries | Geometry) -> Segmentation:
    """The ROIs of an RTSTRUCT file as segments on ``reference``'s grid.

    With a :class:`DicomSeries`, the RTSTRUCT must have been drawn on that series (same frame of
    reference and, where it lists them, the same series UID). With a bare :class:`Geometry` (a CT
    read from NRRD, say) the identifiers cannot be checked and only the geometry is. Contours must
    lie on the grid's slices; parts outside the slice in-plane are cut off.
    """
    path = Path(path)
    ds = read_dataset(path, "RTSTRUCT")
    geometry = reference.geometry if isinstance(reference, DicomSeries) else reference
    if isinstance(reference, DicomSeries):
        _check_references(ds, path, reference)
    rois = {int(roi.ROINumber): roi for roi in ds.get("StructureSetROISequence", [])}
    contours = {int(item.ReferencedROINumber): item for item in ds.get("ROIContourSequence", [])}
    lps_to_ijk = np.linalg.inv(geometry.ijk_to_lps())
    segments: list[Segment] = []
    used: set[str] = set()
    for index, (number, roi) in enumerate(rois.items()):
        item = contours.get(number)
        planes = list(item.get("ContourSequence", [])) if item is not None else []
        closed = [c for c in planes if c.get("ContourGeometricType") == "CLOSED_PLANAR"]
        if planes and not closed:
            continue  # a point or line ROI, not a volume
        name = _unique_name(str(roi.get("ROIName", "")).strip() or f"ROI_{number}", number, used)
        color = _color(item, index)
        mask = _rasterise(closed, geometry, lps_to_ijk, path, name)
        segments.append(Segment(name, mask, color))
    return Segmentation(geometry, segments)


def write_rtstruct(seg: Segmentation, path: str | Path, series: DicomSeries, overwrite: bool = False) -> Path:
    """Write ``seg`` as an RTSTRUCT drawn on ``series`` (segments are put on its grid first).

    Contours must lie on the CT's slices, so a segmentation on another grid is resampled onto it
    (nearest neighbour; exact when the voxel centres coincide, e.g. a flipped or cropped copy).
    """
    path = output_path(path, overwrite)
    long_names = [s.name for s in seg.segments if len(s.name) > _MAX_LO]
    if long_names:
        raise InputError(f"{path}: ROI names are limited to {_MAX_LO} characters: {', '.join(long_names)}")
    frame = series.require_frame_of_reference(path)
    if not seg.geometry.matches(series.geometry):
        seg = seg.resampled(series.geometry)
    ds = new_derived_dataset(series.header, RTStructureSetStorage, "RTSTRUCT")
    now = datetime.now()
    ds.StructureSetLabel = "SparseRT"
    ds.StructureSetName = "SparseRT structures"
    ds.StructureSetDescription = RESEARCH_USE
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ReferencedFrameOfReferenceSequence = Sequence([_frame_reference(series, frame)])
    ds.StructureSetROISequence = Sequence()
    ds.ROIContourSequence = Sequence()
    ds.RTROIObservationsSequence = Sequence()
    ijk_to_lps = series.geometry.ijk_to_lps()
    for number, segment in enumerate(seg.segments, 1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = frame
        roi.ROIName = segment.name
        roi.ROIGenerationAlgorithm = ""  # Type 2: how the mask was made is not known here
        ds.StructureSetROISequence.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ROIDisplayColor = [int(round(255 * min(max(c, 0.0), 1.0))) for c in segment.color]
        item.ContourSequence = Sequence(_slice_contours(segment.mask, ijk_to_lps, series))
        ds.ROIContourSequence.append(item)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = ""  # Type 2: the role (PTV, ORGAN...) is not known here
        observation.ROIInterpreter = ""
        ds.RTROIObservationsSequence.append(observation)
    return save_dataset(ds, path)


def _check_references(ds: Dataset, path: Path, series: DicomSeries) -> None:
    frame = series.frame_of_reference_uid
    # Each ROI names its frame of reference; older files only list them at the top.
    frames = {str(r.ReferencedFrameOfReferenceUID) for r in ds.get("StructureSetROISequence", [])
              if r.get("ReferencedFrameOfReferenceUID")}
    frames = frames or {str(f.FrameOfReferenceUID) for f in ds.get("ReferencedFrameOfReferenceSequence", [])}
    if frame is not None and frames - {frame}:
        raise InputError(
            f"{path}: contours are in frame of reference {', '.join(sorted(frames))}, the CT series in "
            f"{series.folder} is in {frame}: the structure set belongs to another scan"
        )
    referenced_series = {
        str(s.SeriesInstanceUID)
        for f in ds.get("ReferencedFrameOfReferenceSequence", [])
        for study in f.get("RTReferencedStudySequence", [])
        for s in study.get("RTReferencedSeriesSequence", [])
    }
    if referenced_series and series.series_uid not in referenced_series:
        raise InputError(
            f"{path}: drawn on series {', '.join(sorted(referenced_series))}, not on the series read from "
            f"{series.folder} ({series.series_uid}); its contours lie on that series' slices"
        )


def _rasterise(contours: list[Dataset], geometry: Geometry, lps_to_ijk: np.ndarray, path: Path, name: str) -> np.ndarray:
    by_slice: dict[int, list[np.ndarray]] = {}
    for contour in contours:
        points = np.asarray(contour.get("ContourData") or [], dtype=float).reshape(-1, 3)
        if len(points) < 3:
            continue  # fewer than three points enclose no area
        ijk = (lps_to_ijk @ np.column_stack([points, np.ones(len(points))]).T).T[:, :3]
        k = float(ijk[:, 2].mean())
        where = f"{path}: ROI '{name}' has a contour at ({', '.join(f'{v:.1f}' for v in points[0])}) mm"
        if np.ptp(ijk[:, 2]) > 2 * _PLANE_TOLERANCE:
            raise InputError(f"{where} that does not lie in a slice plane of the CT grid (other orientation?)")
        if abs(k - round(k)) > _PLANE_TOLERANCE:
            raise InputError(f"{where} between two CT slices: it was drawn on another grid")
        if not 0 <= round(k) < geometry.shape[0]:
            raise InputError(f"{where} outside the CT's {geometry.shape[0]} slices ({geometry.describe()})")
        by_slice.setdefault(int(round(k)), []).append(ijk[:, :2])
    mask = np.zeros(geometry.shape, dtype=bool)
    for k, polygons in by_slice.items():
        mask[k] = fill_even_odd(polygons, geometry.shape[1:])
    return mask


def _unique_name(name: str, number: int, used: set[str]) -> str:
    if name.lower() in used:
        name = f"{name} (ROI {number})"
    used.add(name.lower())
    return name


def _color(item: Dataset | None, index: int) -> tuple[float, float, float]:
    rgb = item.get("ROIDisplayColor") if item is not None else None
    if rgb is None or len(rgb) != 3:
        return default_color(index)
    return tuple(min(max(float(c) / 255.0, 0.0), 1.0) for c in rgb)


def _frame_reference(series: DicomSeries, frame_uid: str) -> Dataset:
    """The referenced frame -> study -> series -> images chain an RTSTRUCT hangs its contours on."""
    images = Sequence()
    for uid in series.sop_instance_uids:
        image = Dataset()
        image.ReferencedSOPClassUID = series.sop_class_uid
        image.ReferencedSOPInstanceUID = uid
        images.append(image)
    referenced_series = Dataset()
    referenced_series.SeriesInstanceUID = series.series_uid
    referenced_series.ContourImageSequence = images
    study = Dataset()
    study.ReferencedSOPClassUID = _STUDY_REFERENCE_CLASS
    study.ReferencedSOPInstanceUID = series.study_uid
    study.RTReferencedSeriesSequence = Sequence([referenced_series])
    frame = Dataset()
    frame.FrameOfReferenceUID = frame_uid
    frame.RTReferencedStudySequence = Sequence([study])
    return frame


def _slice_contours(mask: np.ndarray, ijk_to_lps: np.ndarray, series: DicomSeries) -> list[Dataset]:
    items = []
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        for ij in mask_contours(mask[k]):
            ijk1 = np.column_stack([ij, np.full(len(ij), float(k)), np.ones(len(ij))])
            lps = (ijk_to_lps @ ijk1.T).T[:, :3]
            image = Dataset()
            image.ReferencedSOPClassUID = series.sop_class_uid
            image.ReferencedSOPInstanceUID = series.sop_instance_uids[k]
            contour = Dataset()
            contour.ContourImageSequence = Sequence([image])
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = len(lps)
            contour.ContourData = decimal_values(lps, 3)
            items.append(contour)
    return items
