"""An image series (CT, MR...) from a DICOM folder, validated before it becomes a regular grid.

The headers are checked with pydicom (one series, one frame of reference, one orientation, slices
stacked along the slice normal at even spacing); the pixels are decoded by SimpleITK's GDCM
reader, which applies RescaleSlope/Intercept and handles compressed transfer syntaxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset

from sparsert.errors import InputError
from sparsert.io.dicom.files import is_dicom_file, read_dataset
from sparsert.io.volume import Geometry, Volume, read_image

# RT objects carry image-plane attributes too (RTDOSE) but are not slices of an image series.
_NOT_IMAGE_MODALITIES = {"RTDOSE", "RTSTRUCT", "RTPLAN", "RTRECORD", "REG", "SEG", "SR", "PR", "KO"}
# Largest deviation of a slice from the evenly spaced stack, as a fraction of the slice spacing.
_SLICE_POSITION_TOLERANCE = 0.05
_ORIENTATION_ATOL = 1e-4


@dataclass(frozen=True)
class DicomSeries:
    """An image series read from a folder, with the identifiers DICOM RT objects refer to."""

    folder: Path
    volume: Volume
    files: tuple[Path, ...]  # one per slice, in k order
    sop_instance_uids: tuple[str, ...]  # one per slice, in k order
    header: Dataset  # first slice without pixel data: patient, study and series attributes

    @property
    def geometry(self) -> Geometry:
        return self.volume.geometry

    @property
    def study_uid(self) -> str:
        return str(self.header.StudyInstanceUID)

    @property
    def series_uid(self) -> str:
        return str(self.header.SeriesInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str | None:
        uid = self.header.get("FrameOfReferenceUID")
        return str(uid) if uid else None

    @property
    def sop_class_uid(self) -> str:
        return str(self.header.SOPClassUID)

    def require_frame_of_reference(self, output: Path) -> str:
        """The frame of reference UID an RT object written to ``output`` must share with this series."""
        if self.frame_of_reference_uid is None:
            raise InputError(f"{output}: the series in {self.folder} has no FrameOfReferenceUID for it to refer to")
        return self.frame_of_reference_uid


def read_dicom_series(folder: str | Path, series_uid: str | None = None) -> DicomSeries:
    """The image series in ``folder`` (the only one, or the one with ``series_uid``).

    Other DICOM objects in the folder (RTSTRUCT, RTDOSE, RTPLAN...) and non-DICOM files are
    ignored. Raises InputError for several series without a choice, mixed frames of reference or
    orientations, and missing or unevenly spaced slices.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: DICOM folder not found")
    series = _image_series(folder)
    if not series:
        raise InputError(f"{folder}: folder holds no DICOM image series")
    if series_uid is None and len(series) > 1:
        raise InputError(
            f"{folder}: holds {len(series)} image series, choose one by its SeriesInstanceUID: {_listing(series)}"
        )
    if series_uid is not None and series_uid not in series:
        raise InputError(f"{folder}: no image series {series_uid}; the folder holds {_listing(series)}")
    slices = series[series_uid] if series_uid is not None else next(iter(series.values()))
    slices, geometry = _stack(folder, slices)
    files = tuple(path for path, _ in slices)
    try:
        image = sitk.ReadImage([str(p) for p in files])
    except RuntimeError as exc:
        raise InputError(f"{folder}: cannot decode the series pixels ({str(exc).strip().splitlines()[-1]})") from None
    array = sitk.GetArrayFromImage(image)
    if array.shape != geometry.shape:
        raise InputError(f"{folder}: decoded pixels have shape {array.shape}, headers describe {geometry.shape}")
    uids = tuple(str(ds.SOPInstanceUID) for _, ds in slices)
    return DicomSeries(folder, Volume(array, geometry), files, uids, slices[0][1])


def ct_reference(ct: DicomSeries | Geometry | str | Path | None) -> DicomSeries | Geometry | None:
    """``ct`` as RT readers take it: a DICOM folder is read as a series (whose UIDs are then
    checked), an image file (NRRD, NIfTI...) gives only its grid."""
    if ct is None or isinstance(ct, (DicomSeries, Geometry)):
        return ct
    path = Path(ct)
    return read_dicom_series(path) if path.is_dir() else read_image(path).geometry


def ct_series(ct: DicomSeries | str | Path | None, output: Path) -> DicomSeries:
    """The CT series an RT object written to ``output`` refers to (a DICOM folder, or one already read)."""
    if ct is None:
        raise InputError(f"{output}: writing DICOM RT needs the CT series it belongs to (its DICOM folder)")
    return ct if isinstance(ct, DicomSeries) else read_dicom_series(ct)


def _image_series(folder: Path) -> dict[str, list[tuple[Path, Dataset]]]:
    """Image slices in ``folder`` grouped by SeriesInstanceUID (headers only)."""
    series: dict[str, list[tuple[Path, Dataset]]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not is_dicom_file(path):
            continue
        ds = read_dataset(path, stop_before_pixels=True)
        if ds.get("Modality") in _NOT_IMAGE_MODALITIES or "ImagePositionPatient" not in ds:
            continue
        for keyword in ("SeriesInstanceUID", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns"):
            if keyword not in ds:
                raise InputError(f"{path}: image slice without {keyword}")
        series.setdefault(str(ds.SeriesInstanceUID), []).append((path, ds))
    return series


def _listing(series: dict[str, list[tuple[Path, Dataset]]]) -> str:
    parts = []
    for uid, slices in series.items():
        ds = slices[0][1]
        description = f", '{ds.SeriesDescription}'" if ds.get("SeriesDescription") else ""
        parts.append(f"{uid} ({ds.get('Modality', '?')}, {len(slices)} slices{description})")
    return "; ".join(parts)


def _stack(folder: Path, slices: list[tuple[Path, Dataset]]) -> tuple[list[tuple[Path, Dataset]], Geometry]:
    """Slices sorted along the slice normal, and the regular grid they form (checked)."""
    first_path, first = slices[0]
    frames = {str(ds.get("FrameOfReferenceUID", "")) for _, ds in slices}
    if len(frames) > 1:
        raise InputError(f"{folder}: series {first.SeriesInstanceUID} mixes frames of reference {', '.join(sorted(frames))}")
    for path, ds in slices[1:]:
        for keyword in ("ImageOrientationPatient", "PixelSpacing"):
            value, expected = np.asarray(ds.get(keyword), float), np.asarray(first.get(keyword), float)
            if not np.allclose(value, expected, atol=_ORIENTATION_ATOL):
                raise InputError(f"{path}: {keyword} {list(ds.get(keyword))} differs from {first_path.name}")
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise InputError(f"{path}: {ds.Rows}x{ds.Columns} pixels, {first_path.name} has {first.Rows}x{first.Columns}")
    if len(slices) < 2:
        raise InputError(f"{folder}: series {first.SeriesInstanceUID} has a single slice, not a 3D image")
    orientation = np.asarray(first.ImageOrientationPatient, float)
    row, col = orientation[:3], orientation[3:]
    normal = np.cross(row, col)
    positions = np.array([np.asarray(ds.ImagePositionPatient, float) for _, ds in slices])
    order = np.argsort(positions @ normal, kind="stable")
    slices = [slices[n] for n in order]
    positions = positions[order]
    along = positions @ normal
    gaps = np.diff(along)
    names = [p.name for p, _ in slices]
    if np.any(gaps < 1e-3):
        n = int(np.argmin(gaps))
        raise InputError(f"{folder}: {names[n]} and {names[n + 1]} lie at the same slice position ({along[n]:.3f} mm)")
    spacing = (along[-1] - along[0]) / (len(slices) - 1)
    deviation = np.abs(along - (along[0] + spacing * np.arange(len(slices))))
    if deviation.max() > _SLICE_POSITION_TOLERANCE * spacing:
        typical = float(np.median(gaps))
        n = int(np.argmax(np.abs(gaps - typical)))
        raise InputError(
            f"{folder}: slices are not evenly spaced (missing slices?): {gaps[n]:.3f} mm between {names[n]} and "
            f"{names[n + 1]} (positions {along[n]:.2f} and {along[n + 1]:.2f} mm), {typical:.3f} mm elsewhere"
        )
    drift = positions - positions[0] - np.outer(along - along[0], normal)
    if np.abs(drift).max() > _SLICE_POSITION_TOLERANCE * spacing:
        raise InputError(f"{folder}: slices are not stacked along the slice normal (tilted gantry?), not a regular grid")
    pixel = np.asarray(first.PixelSpacing, float)  # (between rows, between columns)
    geometry = Geometry(
        shape=(len(slices), int(first.Rows), int(first.Columns)),
        spacing=(float(pixel[1]), float(pixel[0]), float(spacing)),
        origin=tuple(float(v) for v in positions[0]),
        direction=tuple(float(v) for v in np.column_stack([row, col, normal]).ravel()),
    )
    return slices, geometry
