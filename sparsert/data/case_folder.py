"""The generic case-folder layout (that of the OpenKBP NIfTI copies).

::

    <case>/ct.<ext>                   reference image (other images: mr.<ext>, pet.<ext>, ... any grid)
           dose.<ext>                 optional, Gy, on the reference grid
           possible_dose_mask.<ext>   optional, on the reference grid
           structures/<Name>.<ext>    one binary mask per structure, or instead
           structures.seg.nrrd        a Slicer segmentation (or structures.<ext>, a labelmap with names)

``<ext>`` is any image format SimpleITK reads (.nii.gz, .nrrd, .mha...). Other top-level files
(and ``.seg.nrrd`` files other than ``structures.seg.nrrd``) are ignored; anything in ``structures/``
that is not an image is an error.
"""

from __future__ import annotations

from pathlib import Path

from sparsert.data.case import REFERENCE_IMAGE, Case
from sparsert.errors import InputError
from sparsert.io.segmentation_io import (
    IMAGE_SUFFIXES,
    SEG_NRRD_SUFFIX,
    fit_to_grid,
    image_file_stem,
    read_segmentation,
    write_segmentation,
)
from sparsert.io.volume import Volume, read_image, write_image

DOSE = "dose"
POSSIBLE_DOSE_MASK = "possible_dose_mask"
STRUCTURES = "structures"
WRITE_SUFFIX = ".nrrd"


def is_case_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a reference image ``ct.<ext>``."""
    return any((folder / f"{REFERENCE_IMAGE}{suffix}").is_file() for suffix in IMAGE_SUFFIXES)


def read_case_folder(folder: str | Path) -> Case:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: case folder not found")
    files = _top_level_images(folder)
    images: dict[str, Volume] = {}
    for name in sorted(files, key=lambda n: (n != REFERENCE_IMAGE, n)):
        if name not in (DOSE, POSSIBLE_DOSE_MASK, STRUCTURES):
            images[name] = read_image(files[name])
    if not images:
        raise InputError(f"{folder}: case folder holds no image (expected {REFERENCE_IMAGE}.<ext>, e.g. ct.nii.gz)")
    case = Case(folder.name, images, source=folder, files=dict(files))
    if DOSE in files:
        case.dose = read_image(files[DOSE])
    if POSSIBLE_DOSE_MASK in files:
        mask = read_image(files[POSSIBLE_DOSE_MASK])
        case.possible_dose_mask = mask.with_array(mask.array != 0)
    structures = _structures_source(folder, files)
    if structures is not None:
        case.files[STRUCTURES] = structures
        case.structures = fit_to_grid(read_segmentation(structures), case.geometry, structures)
    return case.validate()


def write_case_folder(case: Case, folder: str | Path, overwrite: bool = False) -> Path:
    """Write ``case`` as NRRD images and a ``structures.seg.nrrd``; refuses to replace files unless asked."""
    folder = Path(folder)
    reserved = {DOSE, POSSIBLE_DOSE_MASK, STRUCTURES} & set(case.images)
    if reserved:
        names = ", ".join(sorted(reserved))
        raise InputError(f"case {case.case_id}: image name(s) {names} are reserved in a case folder")
    volumes = dict(case.images)
    if case.dose is not None:
        volumes[DOSE] = case.dose
    if case.possible_dose_mask is not None:
        volumes[POSSIBLE_DOSE_MASK] = case.possible_dose_mask
    targets = {name: folder / f"{name}{WRITE_SUFFIX}" for name in volumes}
    structures_path = folder / f"{STRUCTURES}{SEG_NRRD_SUFFIX}"
    if (folder / STRUCTURES).is_dir() and case.structures is not None:
        raise InputError(
            f"{folder / STRUCTURES}: already exists; a case folder holds structures/ or {structures_path.name}, not both"
        )
    if not overwrite:
        existing = [p for p in [*targets.values(), structures_path] if p.exists()]
        if existing:
            raise InputError(f"{existing[0]}: already exists (refusing to overwrite)")
    for name, volume in volumes.items():
        write_image(volume, targets[name], overwrite=overwrite)
    if case.structures is not None:
        write_segmentation(case.structures, structures_path, overwrite=overwrite)
    return folder


def _top_level_images(folder: Path) -> dict[str, Path]:
    """Image files at the top of ``folder`` by stem; two files with one stem are ambiguous."""
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        stem = image_file_stem(p)
        if p.name.startswith(".") or not p.is_file() or stem is None:
            continue
        if p.name.lower().endswith(SEG_NRRD_SUFFIX) and stem != STRUCTURES:
            continue  # other segmentations (scribbles, predictions) are not images of the case
        if stem in found:
            raise InputError(f"{folder}: both {found[stem].name} and {p.name} hold '{stem}'; keep one")
        found[stem] = p
    return found


def _structures_source(folder: Path, files: dict[str, Path]) -> Path | None:
    candidates = [p for p in (folder / STRUCTURES, files.get(STRUCTURES)) if p is not None and p.exists()]
    if len(candidates) > 1:
        raise InputError(f"{folder}: holds both {candidates[0].name}/ and {candidates[1].name}; keep one")
    return candidates[0] if candidates else None
