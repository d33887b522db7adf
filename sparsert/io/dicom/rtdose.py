"""RT Dose: a dose grid in Gy from and to an RTDOSE file.

Stored values are integers times DoseGridScaling. Frame positions come from ImagePositionPatient
and GridFrameOffsetVector, which DICOM allows in two forms: relative (first offset 0, distances
along the slice normal) and absolute (first offset equal to the first frame's z; axial grids only).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import RTDoseStorage

from sparsert.errors import InputError
from sparsert.io.dicom.files import (
    RESEARCH_USE,
    decimal_values,
    new_derived_dataset,
    output_path,
    read_dataset,
    save_dataset,
)
from sparsert.io.dicom.series import DicomSeries
from sparsert.io.volume import Geometry, Volume, resample

_AXIAL = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
# Largest deviation of a frame from even spacing, as a fraction of the spacing.
_FRAME_TOLERANCE = 0.05


def read_rtdose(path: str | Path, reference: DicomSeries | Geometry | None = None) -> Volume:
    """The dose of an RTDOSE file in Gy (float64), on its own grid or resampled (linearly) onto ``reference``.

    With a :class:`DicomSeries` the frames of reference must agree. Doses in RELATIVE units have
    no absolute scale and are refused; so are dose grids not overlapping ``reference``.
    """
    path = Path(path)
    ds = read_dataset(path, "RTDOSE")
    units = str(ds.get("DoseUnits", "")).upper()
    if units != "GY":
        raise InputError(f"{path}: DoseUnits is {units or 'missing'}, expected GY (a RELATIVE dose has no absolute scale)")
    if isinstance(reference, DicomSeries):
        frame, ct_frame = ds.get("FrameOfReferenceUID"), reference.frame_of_reference_uid
        if frame and ct_frame and str(frame) != ct_frame:
            raise InputError(
                f"{path}: dose is in frame of reference {frame}, the series in {reference.folder} is in {ct_frame}"
            )
        reference = reference.geometry
    dose = _dose_grid(ds, path)
    if reference is None:
        return dose
    if not dose.geometry.overlaps(reference):
        raise InputError(
            f"{path}: dose grid ({dose.geometry.describe()}) does not overlap the CT grid ({reference.describe()})"
        )
    return resample(dose, reference)


def write_rtdose(
    dose: Volume,
    path: str | Path,
    series: DicomSeries,
    plan: str | Path | None = None,
    bits: int = 32,
    overwrite: bool = False,
) -> Path:
    """Write ``dose`` (Gy, on its own grid) as an RTDOSE of ``series``' study and frame of reference.

    DoseUnits GY, DoseType PHYSICAL, DoseSummationType PLAN; unsigned ``bits``-bit (16 or 32) pixels
    with DoseGridScaling chosen so that the maximum dose uses the full range: every value is kept
    within DoseGridScaling / 2. Negative values (numerical noise of a prediction) are stored as 0.
    ``plan`` (an RTPLAN file of the same patient) is referenced when given; DICOM expects that
    reference for PLAN doses, so without it some planning systems import the dose without a plan.
    """
    path = output_path(path, overwrite)
    if bits not in (16, 32):
        raise InputError(f"{path}: RTDOSE pixels are 16 or 32 bits, not {bits}")
    frame = series.require_frame_of_reference(path)
    values = np.asarray(dose.array, dtype=np.float64)
    if not np.isfinite(values).all():
        raise InputError(f"{path}: dose contains NaN or infinite values")
    if not dose.geometry.overlaps(series.geometry):
        raise InputError(
            f"{path}: dose grid ({dose.geometry.describe()}) does not overlap the CT in {series.folder} "
            f"({series.geometry.describe()})"
        )
    values, origin, row, col, normal = _stacked_along_normal(values, dose.geometry, path)
    spacing_i, spacing_j, spacing_k = dose.geometry.spacing
    ds = new_derived_dataset(series.header, RTDoseStorage, "RTDOSE")
    ds.FrameOfReferenceUID = frame
    ds.PositionReferenceIndicator = series.header.get("PositionReferenceIndicator", "")
    now = datetime.now()
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ImagePositionPatient = decimal_values(origin, 4)
    ds.ImageOrientationPatient = decimal_values(np.concatenate([row, col]), 6)
    ds.PixelSpacing = decimal_values([spacing_j, spacing_i], 6)  # between rows, then between columns
    ds.SliceThickness = decimal_values([spacing_k], 6)[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames, ds.Rows, ds.Columns = values.shape
    ds.FrameIncrementPointer = Tag("GridFrameOffsetVector")
    ds.GridFrameOffsetVector = decimal_values(np.arange(values.shape[0]) * spacing_k, 4)
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.DoseUnits, ds.DoseType, ds.DoseSummationType = "GY", "PHYSICAL", "PLAN"
    ds.DoseComment = RESEARCH_USE
    largest = 2**bits - 1
    top = float(values.max()) if values.max() > 0 else 1.0
    # Rounded up, so that the maximum dose never exceeds the largest pixel value.
    scaling_text = f"{top * (1 + 1e-9) / largest:.9e}"
    ds.DoseGridScaling = scaling_text
    pixels = np.clip(np.rint(np.clip(values, 0.0, None) / float(scaling_text)), 0, largest)
    ds.PixelData = pixels.astype("<u4" if bits == 32 else "<u2").tobytes()
    if plan is not None:
        ds.ReferencedRTPlanSequence = Sequence([_plan_reference(Path(plan), series, frame)])
    return save_dataset(ds, path)


def _dose_grid(ds: Dataset, path: Path) -> Volume:
    for keyword in (
        "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "GridFrameOffsetVector", "DoseGridScaling"
    ):
        if keyword not in ds:
            raise InputError(f"{path}: RTDOSE without {keyword}")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom's decoders raise assorted types
        raise InputError(f"{path}: cannot decode the dose pixels ({exc})") from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    offsets = np.asarray(ds.GridFrameOffsetVector, dtype=float)
    if frames < 2 or pixels.ndim != 3:
        raise InputError(f"{path}: a single dose plane ({frames} frame), not a 3D dose grid")
    if offsets.size != frames:
        raise InputError(f"{path}: GridFrameOffsetVector has {offsets.size} values for {frames} frames")
    orientation = np.asarray(ds.ImageOrientationPatient, dtype=float)
    position = np.asarray(ds.ImagePositionPatient, dtype=float)
    row, col = orientation[:3], orientation[3:]
    normal = np.cross(row, col)
    if offsets[0] == 0.0:
        along = offsets
    elif np.allclose(orientation, _AXIAL, atol=1e-4) and abs(offsets[0] - position[2]) < 1e-3:
        along = offsets - position[2]
    else:
        raise InputError(
            f"{path}: GridFrameOffsetVector starts at {offsets[0]:g}, neither 0 (relative offsets) nor the first "
            f"frame's z {position[2]:g} on an axial grid (absolute positions)"
        )
    order = np.argsort(along, kind="stable")
    along = along[order]
    spacing = (along[-1] - along[0]) / (frames - 1)
    if spacing <= 0 or np.abs(along - along[0] - spacing * np.arange(frames)).max() > _FRAME_TOLERANCE * spacing:
        raise InputError(f"{path}: dose frames are not evenly spaced ({np.round(np.diff(along), 3).tolist()} mm)")
    pixel = np.asarray(ds.PixelSpacing, dtype=float)
    geometry = Geometry(
        shape=(frames, int(ds.Rows), int(ds.Columns)),
        spacing=(float(pixel[1]), float(pixel[0]), float(spacing)),
        origin=tuple(float(v) for v in position + along[0] * normal),
        direction=tuple(float(v) for v in np.column_stack([row, col, normal]).ravel()),
    )
    dose = pixels[order].astype(np.float64) * float(ds.DoseGridScaling)
    return Volume(dose, geometry)


def _stacked_along_normal(values: np.ndarray, geometry: Geometry, path: Path):
    """Frames ordered along row x column (as DICOM requires), with the first frame's position."""
    direction = np.asarray(geometry.direction).reshape(3, 3)
    row, col, slices = direction[:, 0], direction[:, 1], direction[:, 2]
    normal = np.cross(row, col)
    cosine = float(slices @ normal)
    if abs(abs(cosine) - 1.0) > 1e-4:
        raise InputError(f"{path}: dose grid slices are not perpendicular to its rows and columns")
    origin = np.asarray(geometry.origin, dtype=float)
    if cosine < 0:  # e.g. NIfTI grids stored head to feet
        origin = origin + (geometry.shape[0] - 1) * geometry.spacing[2] * slices
        values = values[::-1]
    return values, origin, row, col, normal


def _plan_reference(plan: Path, series: DicomSeries, frame: str) -> Dataset:
    ds = read_dataset(plan, "RTPLAN", stop_before_pixels=True)
    patient, ct_patient = str(ds.get("PatientID", "")), str(series.header.get("PatientID", ""))
    if patient != ct_patient:
        raise InputError(f"{plan}: plan of patient '{patient}', the CT in {series.folder} is of patient '{ct_patient}'")
    plan_frame = ds.get("FrameOfReferenceUID")
    if plan_frame and str(plan_frame) != frame:
        raise InputError(f"{plan}: plan in frame of reference {plan_frame}, the CT in {series.folder} in {frame}")
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    return item
