"""CT units and the plausibility check of each image against the modality it is given as, on real images."""

from __future__ import annotations

import numpy as np

from interactive_testdata import sts_ct_pet
from sparsert.io.volume import read_image
from sparsert.preprocessing.ct import OPENKBP_HU_OFFSET, ct_to_hu
from sparsert.preprocessing.modalities import modality_mismatch


def test_hounsfield_units_from_offset_storage_and_from_a_crop_inside_the_body(sts_dir, openkbp_nifti):
    stored = read_image(openkbp_nifti / "validation" / "pt_201" / "ct.nii.gz").array  # HU + 1024, none negative
    assert stored.min() >= 0 and np.allclose(ct_to_hu(stored), stored - OPENKBP_HU_OFFSET)
    crop, _ = sts_ct_pet(sts_dir)  # soft tissue around the tumour, fat below 0 HU and no air
    assert -500 < crop.array.min() < 0 and np.array_equal(ct_to_hu(crop.array), crop.array.astype(np.float32))


def test_swapped_ct_and_pet_are_told_apart(sts_dir):
    ct = read_image(sts_dir / "STS_001" / "CT_image.nii.gz").array
    pet = read_image(sts_dir / "STS_001" / "PET_image.nii.gz").array
    mr = read_image(sts_dir / "STS_001" / "MR_T1_image.nii.gz").array
    assert modality_mismatch(ct, "ct") is None and modality_mismatch(pet, "pet") is None
    assert modality_mismatch(mr, "mr") is None
    assert "does not look like a CT" in modality_mismatch(pet, "ct")
    assert "looks like a CT" in modality_mismatch(ct, "pet") and "looks like a CT" in modality_mismatch(ct, "mr")
    crop, _ = sts_ct_pet(sts_dir)
    assert modality_mismatch(crop.array, "ct") is None  # a crop without air is still a CT
