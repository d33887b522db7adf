"""Images with their geometry: reading, writing and resampling through physical space.

Arrays are indexed ``[k, j, i]`` (slowest axis first), as SimpleITK returns them; spacing, origin
and direction follow ITK (LPS, ``i`` first). Geometry travels with every array and is never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from sparsert.errors import InputError
from sparsert.io.output import writable

# Tolerance for "same grid" comparisons: NIfTI stores geometry as float32.
GEOMETRY_ATOL = 1e-4


@dataclass(frozen=True)
class Geometry:
    """A regular voxel grid in patient (LPS) space."""

    shape: tuple[int, int, int]  # (k, j, i), numpy order
    spacing: tuple[float, float, float]  # (i, j, k) in mm
    origin: tuple[float, float, float]  # LPS mm of voxel (0, 0, 0)
    direction: tuple[float, ...]  # 3x3 row-major, columns are the i, j, k axis directions

    @property
    def size(self) -> tuple[int, int, int]:
        """Number of voxels along (i, j, k), ITK order."""
        return (self.shape[2], self.shape[1], self.shape[0])

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    @property
    def spacing_kji(self) -> tuple[float, float, float]:
        """Spacing in numpy axis order, for spacing-aware array operations."""
        return (self.spacing[2], self.spacing[1], self.spacing[0])

    def ijk_to_lps(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) voxel indices to LPS millimetres."""
        m = np.eye(4)
        m[:3, :3] = np.asarray(self.direction).reshape(3, 3) * np.asarray(self.spacing)[None, :]
        m[:3, 3] = self.origin
        return m

    def ijk_to_ras(self) -> np.ndarray:
        """4x4 matrix mapping voxel indices to RAS millimetres (Slicer's world frame)."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.ijk_to_lps()

    def ras_to_ijk(self, ras) -> np.ndarray:
        """Continuous (i, j, k) index of a RAS point."""
        p = np.append(np.asarray(ras, dtype=float), 1.0)
        return (np.linalg.inv(self.ijk_to_ras()) @ p)[:3]

    def matches(self, other: "Geometry", atol: float = GEOMETRY_ATOL) -> bool:
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=atol)
            and np.allclose(self.origin, other.origin, atol=atol * max(1.0, max(map(abs, self.origin))))
            and np.allclose(self.direction, other.direction, atol=atol)
        )

    def describe(self) -> str:
        sp = ", ".join(f"{s:.4g}" for s in self.spacing)
        org = ", ".join(f"{o:.4g}" for o in self.origin)
        return f"size {self.size}, spacing ({sp}) mm, origin ({org})"

    def physical_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned LPS bounding box of the voxel centres."""
        corners = np.array(
            [[i, j, k, 1.0] for i in (0, self.size[0] - 1) for j in (0, self.size[1] - 1) for k in (0, self.size[2] - 1)]
        )
        pts = (self.ijk_to_lps() @ corners.T).T[:, :3]
        return pts.min(axis=0), pts.max(axis=0)

    def overlaps(self, other: "Geometry") -> bool:
        lo_a, hi_a = self.physical_bounds()
        lo_b, hi_b = other.physical_bounds()
        return bool(np.all(lo_a <= hi_b) and np.all(lo_b <= hi_a))

    @classmethod
    def of_image(cls, image: sitk.Image) -> "Geometry":
        size = image.GetSize()
        if len(size) != 3:
            raise InputError(f"expected a 3D image, got {len(size)}D of size {size}")
        return cls(
            shape=(size[2], size[1], size[0]),
            spacing=tuple(float(s) for s in image.GetSpacing()),
            origin=tuple(float(o) for o in image.GetOrigin()),
            direction=tuple(float(d) for d in image.GetDirection()),
        )

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def reference_image(self) -> sitk.Image:
        return self.apply_to(sitk.Image(list(self.size), sitk.sitkUInt8))


@dataclass(frozen=True)
class Volume:
    """A 3D scalar array with its geometry."""

    array: np.ndarray
    geometry: Geometry

    def __post_init__(self) -> None:
        if self.array.shape != self.geometry.shape:
            raise InputError(f"array shape {self.array.shape} does not match geometry shape {self.geometry.shape}")

    def with_array(self, array: np.ndarray) -> "Volume":
        """A volume on the same grid holding ``array``."""
        return replace(self, array=array)

    def to_sitk(self) -> sitk.Image:
        array = self.array.astype(np.uint8) if self.array.dtype == bool else self.array
        return self.geometry.apply_to(sitk.GetImageFromArray(np.ascontiguousarray(array)))

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> "Volume":
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"expected a scalar image, got {image.GetNumberOfComponentsPerPixel()} components per voxel")
        return cls(sitk.GetArrayFromImage(image), Geometry.of_image(image))


def read_image(path: str | Path) -> Volume:
    """Read any 3D scalar image SimpleITK can read (NRRD, NIfTI, MHA), or a DICOM series folder.

    A folder must hold one image series with evenly spaced slices (see
    :func:`sparsert.io.dicom.series.read_dicom_series`, which also chooses among several series).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if path.is_dir():
        # Imported here because the DICOM reader builds on this module.
        from sparsert.io.dicom.series import read_dicom_series

        return read_dicom_series(path).volume
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"{path}: not a readable image ({_first_line(exc)})") from None
    try:
        volume = Volume.from_sitk(image)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    if np.issubdtype(volume.array.dtype, np.floating) and not np.isfinite(volume.array).all():
        raise InputError(f"{path}: image contains NaN or infinite values")
    return volume


def write_image(volume: Volume, path: str | Path, overwrite: bool = False) -> Path:
    """Write a volume (format from the extension); never replaces a file unless asked to."""
    path = Path(path)
    path = writable(path, overwrite)
    sitk.WriteImage(volume.to_sitk(), str(path), useCompression=True)
    return path


def resample(
    volume: Volume, target: Geometry, *, label: bool = False, default: float = 0.0, transform: sitk.Transform | None = None
) -> Volume:
    """Resample ``volume`` onto ``target`` through physical coordinates.

    ``label`` selects nearest-neighbour interpolation (masks, labelmaps); otherwise linear.
    ``transform`` maps points of the target's space into the volume's (ITK's resampling convention:
    a registration result with the target as the fixed image); none means both share one space.
    """
    if transform is None and volume.geometry.matches(target):
        return Volume(volume.array, target)
    if not _overlaps_through(volume.geometry, target, transform):
        raise InputError(
            f"image ({volume.geometry.describe()}) does not overlap the target grid ({target.describe()}) in physical space"
            + (" through the given transform" if transform is not None else "")
        )
    src = volume.to_sitk()
    interp = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    mapping = sitk.Transform() if transform is None else transform
    out = sitk.Resample(src, target.reference_image(), mapping, interp, default, src.GetPixelID())
    array = sitk.GetArrayFromImage(out)
    if volume.array.dtype == bool:
        array = array.astype(bool)
    return Volume(array, target)


def _overlaps_through(source: Geometry, target: Geometry, transform: sitk.Transform | None) -> bool:
    """Whether the target's bounding box, mapped into the source's space, meets the source's box."""
    if transform is None:
        return source.overlaps(target)
    lo, hi = target.physical_bounds()
    box = np.array(np.meshgrid(*zip(lo, hi))).reshape(3, -1).T  # the 8 corners
    corners = np.array([transform.TransformPoint(tuple(float(c) for c in p)) for p in box])
    src_lo, src_hi = source.physical_bounds()
    return bool(np.all(corners.min(axis=0) <= src_hi) and np.all(src_lo <= corners.max(axis=0)))


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # ITK messages start with a file/line location; the description is usually the last line.
    return lines[-1] if lines else type(exc).__name__
