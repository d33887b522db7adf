"""Dose volumes in Gy: read from an image file or a DICOM RTDOSE, written to either (by file name)."""

from __future__ import annotations

from pathlib import Path

from sparsert.errors import InputError
from sparsert.io.dicom.files import is_dicom_name_or_file
from sparsert.io.dicom.rtdose import read_rtdose, write_rtdose
from sparsert.io.dicom.series import DicomSeries, ct_reference, ct_series
from sparsert.io.volume import Geometry, Volume, read_image, resample, write_image


def read_dose(path: str | Path, ct: DicomSeries | Geometry | str | Path | None = None) -> Volume:
    """Dose in Gy from an RTDOSE file (scaled by DoseGridScaling) or any image SimpleITK reads.

    ``ct`` (a DICOM series folder or :class:`DicomSeries`, an image file, or a :class:`Geometry`)
    gives the grid the dose is resampled onto, linearly, zero outside the dose grid; a DICOM CT
    must share the RTDOSE's frame of reference. Without it the dose keeps its own grid.
    """
    path = Path(path)
    reference = ct_reference(ct)
    if is_dicom_name_or_file(path):
        return read_rtdose(path, reference)
    dose = read_image(path)
    if reference is None:
        return dose
    try:
        return resample(dose, reference.geometry if isinstance(reference, DicomSeries) else reference)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def write_dose(
    dose: Volume,
    path: str | Path,
    reference_ct_folder: DicomSeries | str | Path | None = None,
    plan: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``dose`` (Gy): ``*.dcm`` as an RTDOSE of the CT series in ``reference_ct_folder``
    (referencing the RTPLAN file ``plan`` when given), anything else as an image."""
    path = Path(path)
    if path.suffix.lower() == ".dcm":
        return write_rtdose(dose, path, ct_series(reference_ct_folder, path), plan=plan, overwrite=overwrite)
    if plan is not None:
        raise InputError(f"{path}: a plan reference only fits an RTDOSE (.dcm) output")
    return write_image(dose, path, overwrite=overwrite)
