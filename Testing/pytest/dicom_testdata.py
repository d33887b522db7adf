"""Small DICOM test data built with pydicom alone (not with the code under test).

A CT series is written from a crop of a real OpenKBP case (pt_201, NIfTI copy): the NIfTI grid
runs head to feet (k along -z), so the series read back is the crop with its slices reversed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.volume import Geometry, Volume, read_image

CROP = (slice(40, 80), slice(24, 104), slice(24, 104))  # 40 slices of 80 x 80 voxels
STRUCTURES = ("Brainstem", "Larynx", "LeftParotid", "Mandible", "PTV56", "PTV63", "PTV70", "RightParotid", "SpinalCord")
HU_OFFSET = 1024  # OpenKBP CT values are HU + 1024: stored as such with RescaleIntercept -1024
PATIENT_ID = "SPARSERT-PT201"


@dataclass
class CropCase:
    """pt_201 cropped, on the NIfTI grid (k along -z)."""

    ct: Volume
    dose: Volume
    structures: Segmentation


def crop_case(case_dir: Path) -> CropCase:
    ct = read_image(case_dir / "ct.nii.gz")
    geometry = _cropped_geometry(ct.geometry)
    dose = read_image(case_dir / "dose.nii.gz")
    segments = [
        Segment(name, read_image(case_dir / "structures" / f"{name}.nii.gz").array[CROP] != 0, _color(n))
        for n, name in enumerate(STRUCTURES)
    ]
    return CropCase(Volume(ct.array[CROP], geometry), Volume(dose.array[CROP], geometry), Segmentation(geometry, segments))


def write_ct_series(
    ct: Volume,
    folder: Path,
    *,
    study_uid: str | None = None,
    frame_uid: str | None = None,
    series_uid: str | None = None,
    skip: tuple[int, ...] = (),
    other_frame_at: int | None = None,
    prefix: str = "CT",
) -> dict[str, str]:
    """Write ``ct`` (HU + 1024) as one CT image file per slice, ``<prefix>.<k>.dcm``; returns the UIDs used.

    ``skip`` leaves slices out; ``other_frame_at`` gives that slice another frame of reference.
    """
    folder.mkdir(parents=True, exist_ok=True)
    uids = {
        "study": study_uid or generate_uid(),
        "frame": frame_uid or generate_uid(),
        "series": series_uid or generate_uid(),
    }
    g = ct.geometry
    direction = np.asarray(g.direction).reshape(3, 3)
    for k in range(g.shape[0]):
        if k in skip:
            continue
        position = np.asarray(g.origin) + k * g.spacing[2] * direction[:, 2]
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.PatientName = "Test^Crop"
        ds.PatientID = PATIENT_ID
        ds.PatientBirthDate = ""
        ds.PatientSex = "O"
        ds.StudyInstanceUID = uids["study"]
        ds.StudyDate, ds.StudyTime, ds.StudyID = "20240101", "120000", "1"
        ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
        ds.SeriesInstanceUID = uids["series"]
        ds.SeriesNumber = 1
        ds.SeriesDescription = "pt_201 crop"
        ds.Modality = "CT"
        ds.FrameOfReferenceUID = generate_uid() if k == other_frame_at else uids["frame"]
        ds.PositionReferenceIndicator = ""
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in np.concatenate([direction[:, 0], direction[:, 1]])]
        ds.PixelSpacing = [f"{g.spacing[1]:.6f}", f"{g.spacing[0]:.6f}"]
        ds.SliceThickness = f"{g.spacing[2]:.6f}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = g.shape[1], g.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -HU_OFFSET, 1, "HU"
        ds.PixelData = np.ascontiguousarray(ct.array[k], dtype="<u2").tobytes()
        save(ds, folder / f"{prefix}.{k:03d}.dcm")
    return uids


def save(ds: Dataset, path: Path) -> None:
    """Write ``ds`` in the standard file format, explicit VR little endian, under pydicom 2.4 or 3.x."""
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path.parent.mkdir(parents=True, exist_ok=True)
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)


def _cropped_geometry(full: Geometry) -> Geometry:
    start_ijk = np.array([CROP[2].start, CROP[1].start, CROP[0].start, 1.0])
    origin = (full.ijk_to_lps() @ start_ijk)[:3]
    shape = tuple(s.stop - s.start for s in CROP)
    return Geometry(shape, full.spacing, tuple(float(v) for v in origin), full.direction)


def _color(n: int) -> tuple[float, float, float]:
    # Distinct colours that are exact multiples of 1/255, so they survive 8-bit ROIDisplayColor.
    return ((40 + 20 * n) / 255.0, (200 - 15 * n) / 255.0, (10 * n) / 255.0)
