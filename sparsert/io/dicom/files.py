"""Single DICOM files: recognising, reading with clear errors, creating derived RT objects, writing.

Works with pydicom 2.4 and 3.x: the two differ only in how a dataset is written in the standard
file format (see :func:`save_dataset`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from sparsert import __version__
from sparsert.errors import InputError
from sparsert.io.output import writable

# Written into every object SparseRT creates (LO values: at most 64 characters).
RESEARCH_USE = "SparseRT research output - not a clinical plan"
MANUFACTURER = "SparseRT"

# Patient and study attributes a derived object shares with its CT (Type 2: present, maybe empty).
_PATIENT_STUDY_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
)
_PYDICOM_3 = int(pydicom.__version__.split(".")[0]) >= 3


def is_dicom_file(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM file: the ``DICM`` marker after the preamble, or (files written
    without preamble, as some RT exports are) a first element in group 0008, little endian."""
    path = Path(path)
    if not path.is_file():
        return False
    with path.open("rb") as f:
        head = f.read(132)
    return head[128:132] == b"DICM" or head[:2] == b"\x08\x00"


def is_dicom_name_or_file(path: str | Path) -> bool:
    """Whether ``path`` is meant as DICOM: named ``*.dcm`` (read as DICOM, so that a file that is not
    one is reported as such) or holding DICOM content under any name."""
    return Path(path).suffix.lower() == ".dcm" or is_dicom_file(path)


def read_dataset(path: str | Path, modality: str | None = None, stop_before_pixels: bool = False) -> Dataset:
    """A DICOM file as a pydicom dataset; InputError naming the file when it is not one, or not of ``modality``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if not is_dicom_file(path):
        raise InputError(f"{path}: not a DICOM file")
    try:
        ds = pydicom.dcmread(str(path), force=True, stop_before_pixels=stop_before_pixels)
    except Exception as exc:  # noqa: BLE001 - pydicom raises assorted types for truncated or corrupt files
        raise InputError(f"{path}: not a readable DICOM file ({exc})") from None
    if "SOPClassUID" not in ds:
        raise InputError(f"{path}: not a DICOM object (no SOP Class UID)")
    if modality is not None and ds.get("Modality") != modality:
        raise InputError(f"{path}: a DICOM {ds.get('Modality') or 'object'} file, expected an {modality}")
    return ds


def new_derived_dataset(reference: Dataset, sop_class_uid: str, modality: str) -> Dataset:
    """A new instance in a new series of ``reference``'s study (same patient), marked as research output."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class_uid
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: patient names copied from any character set survive
    now = datetime.now()
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    for keyword in _PATIENT_STUDY_KEYWORDS:
        setattr(ds, keyword, reference.get(keyword, ""))
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = ""
    ds.SeriesDescription = RESEARCH_USE
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = f"sparsert {__version__}"
    ds.InstanceNumber = 1
    return ds


def output_path(path: str | Path, overwrite: bool) -> Path:
    """``path`` checked before any work is done: never replaced unless ``overwrite``."""
    path = Path(path)
    path = writable(path, overwrite)
    return path


def save_dataset(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` as a standard DICOM file (preamble, meta header, explicit VR little endian)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if _PYDICOM_3:
            ds.save_as(str(path), enforce_file_format=True)
        else:
            ds.is_little_endian, ds.is_implicit_VR = True, False
            ds.save_as(str(path), write_like_original=False)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc})") from None
    return path


def decimal_values(values, decimals: int) -> list[float]:
    """Values rounded to ``decimals`` places for a DS (decimal string) element.

    A DS holds at most 16 characters; the shortest representation of a rounded float (what
    pydicom writes) has at most ``decimals`` places, where an unrounded float could need 17 digits.
    """
    return np.round(np.asarray(values, dtype=float).ravel(), decimals).tolist()
