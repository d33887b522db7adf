"""The soft-tissue sarcoma layout: ``STS_0NN/{CT,MR_T1,PET}_{image,mask}.nii.gz``.

The modalities are registered (one physical space) but sampled on different grids and fields
of view, so they are only ever combined through physical coordinates. Each mask is the tumour
drawn on its own modality's grid; the case's structure ``GTV_Mass`` is the CT one.
"""

from __future__ import annotations

from pathlib import Path

from sparsert.data.case import Case
from sparsert.errors import InputError
from sparsert.io.segmentation import Segment, Segmentation
from sparsert.io.volume import Volume, read_image, resample

# Case image name -> file prefix.
MODALITIES = {"ct": "CT", "mr": "MR_T1", "pet": "PET"}
GTV = "GTV_Mass"
GTV_COLOR = (0.847, 0.396, 0.310)
_SUFFIX = ".nii.gz"


def is_sts_case(folder: Path) -> bool:
    return (folder / f"{MODALITIES['ct']}_image{_SUFFIX}").is_file()


def read_sts_case(folder: str | Path, *, on_ct_grid: bool = False) -> Case:
    """Images on their own grids (``on_ct_grid``: MR and PET resampled onto the CT grid, and their
    tumour masks added as ``GTV_Mass_MR_T1`` / ``GTV_Mass_PET`` structures), ``GTV_Mass`` from the CT mask."""
    folder = Path(folder)
    files = {name: folder / f"{prefix}_image{_SUFFIX}" for name, prefix in MODALITIES.items()}
    if not files["ct"].is_file():
        raise InputError(f"{files['ct']}: file not found (STS cases hold CT_image.nii.gz and CT_mask.nii.gz)")
    files = {name: path for name, path in files.items() if path.is_file()}
    images = {name: read_image(path) for name, path in files.items()}
    masks = read_sts_masks(folder)
    if "ct" not in masks:
        raise InputError(f"{folder / 'CT_mask.nii.gz'}: file not found (the GTV is read from the CT mask)")
    files["structures"] = _mask_path(folder, "ct")
    geometry = images["ct"].geometry
    if not masks["ct"].geometry.matches(geometry):
        raise InputError(
            f"{files['structures']}: mask is on a different grid ({masks['ct'].geometry.describe()}) "
            f"than {files['ct']} ({geometry.describe()})"
        )
    structures = Segmentation(geometry, [Segment(GTV, masks["ct"].array, GTV_COLOR)])
    case = Case(folder.name, images, structures=structures, source=folder, files=files)
    if on_ct_grid:
        case = case.on_reference_grid()
        for name, mask in masks.items():
            if name != "ct":
                structures.add(f"{GTV}_{MODALITIES[name]}", resample(mask, geometry, label=True).array)
    return case.validate()


def read_sts_masks(folder: str | Path) -> dict[str, Volume]:
    """Each modality's tumour mask (bool) on that modality's own grid."""
    folder = Path(folder)
    masks = {}
    for name in MODALITIES:
        path = _mask_path(folder, name)
        if path.is_file():
            volume = read_image(path)
            masks[name] = volume.with_array(volume.array != 0)
    return masks


def _mask_path(folder: Path, name: str) -> Path:
    return folder / f"{MODALITIES[name]}_mask{_SUFFIX}"
