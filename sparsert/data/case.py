"""One patient: images, structures, dose and the mask of where dose may be deposited."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sparsert.errors import InputError
from sparsert.io.segmentation import Segmentation
from sparsert.io.volume import Geometry, Volume, resample

REFERENCE_IMAGE = "ct"


@dataclass
class Case:
    """A loaded case.

    ``images`` maps a modality ("ct", "mr", "pet") to its volume, each on its own grid. The
    reference image is "ct" when present (else the first image); dose, possible-dose mask and
    structures lie on its grid. ``files`` records where each part was read from, for messages.
    """

    case_id: str
    images: dict[str, Volume]
    structures: Segmentation | None = None
    dose: Volume | None = None
    possible_dose_mask: Volume | None = None
    source: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def reference_name(self) -> str:
        if not self.images:
            raise InputError(f"{self._where('case')}: case holds no image")
        return REFERENCE_IMAGE if REFERENCE_IMAGE in self.images else next(iter(self.images))

    @property
    def geometry(self) -> Geometry:
        """Grid of the reference image, shared by dose, possible-dose mask and structures."""
        return self.images[self.reference_name].geometry

    def validate(self) -> "Case":
        """Check values and grids (InputError naming the file); list empty structures in ``warnings``."""
        reference = self.geometry
        for name, volume in [*self.images.items(), ("dose", self.dose)]:
            floating = volume is not None and np.issubdtype(volume.array.dtype, np.floating)
            if floating and not np.isfinite(volume.array).all():
                raise InputError(f"{self._where(name)}: image contains NaN or infinite values")
        on_grid = {"dose": self.dose, "possible_dose_mask": self.possible_dose_mask}
        if self.structures is not None:
            on_grid["structures"] = self.structures
        for name, item in on_grid.items():
            if item is not None and not item.geometry.matches(reference):
                raise InputError(
                    f"{self._where(name)}: {name} is on a different grid ({item.geometry.describe()}) than "
                    f"{self._where(self.reference_name)} ({reference.describe()})"
                )
        if self.structures is not None:
            for name in self.structures.empty_segments():
                message = f"{self._where('structures')}: structure '{name}' is empty"
                if message not in self.warnings:
                    self.warnings.append(message)
        return self

    def on_reference_grid(self) -> "Case":
        """The same case with every image resampled (linearly, in physical space) onto the reference grid."""
        reference = self.geometry
        images = {name: resample(volume, reference) for name, volume in self.images.items()}
        return Case(
            self.case_id, images, self.structures, self.dose, self.possible_dose_mask,
            self.source, dict(self.files), list(self.warnings),
        )

    def _where(self, part: str) -> str:
        return str(self.files.get(part, self.source if self.source is not None else self.case_id))
