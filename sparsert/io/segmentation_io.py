"""Reading and writing structure sets: Slicer ``.seg.nrrd``, labelmaps with names, folders of masks.

Slicer segmentations go through ``slicerio``, whose voxel arrays are indexed ``[i, j, k]``
(``[layer, i, j, k]`` when segments overlap); our masks are ``[k, j, i]``, hence the transposes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import slicerio

from sparsert.errors import InputError
from sparsert.io.dicom.files import is_dicom_file, is_dicom_name_or_file
from sparsert.io.dicom.rtstruct import read_rtstruct, write_rtstruct
from sparsert.io.dicom.series import DicomSeries, ct_reference, ct_series
from sparsert.io.segmentation import Segment, Segmentation, default_color
from sparsert.io.volume import GEOMETRY_ATOL, Geometry, Volume, read_image, write_image
from sparsert.io.output import writable

SEG_NRRD_SUFFIX = ".seg.nrrd"
# Image file name endings recognised in case and structure folders (all read by SimpleITK).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
# Pixel-data files that travel beside a header (.mhd + .raw); not images on their own.
_DATA_COMPANION_SUFFIXES = (".raw", ".zraw")
NAME_SIDECAR_SUFFIXES = (".json", ".ctbl")


def image_file_stem(path: str | Path) -> str | None:
    """File name without its image suffix (``PTV70.nii.gz`` -> ``PTV70``), or None if not an image name."""
    name = Path(path).name
    for suffix in (SEG_NRRD_SUFFIX,) + IMAGE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def read_structures(
    path: str | Path,
    ct: DicomSeries | Geometry | str | Path | None = None,
    names: Mapping[int | str, str] | str | Path | None = None,
) -> Segmentation:
    """Structures of a CT, from any structure format or a DICOM RTSTRUCT file.

    ``ct`` is the CT they belong to: a DICOM series folder (or :class:`DicomSeries`; an RTSTRUCT
    must then reference that series), an image file, or a :class:`Geometry`. An RTSTRUCT is
    rasterised onto its grid and needs it; other structures (see :func:`read_segmentation`) are
    fitted to it without interpolation (:func:`fit_to_grid`), or keep their own grid without it.
    """
    path = Path(path)
    reference = ct_reference(ct)
    if is_dicom_name_or_file(path):
        if reference is None:
            raise InputError(f"{path}: an RTSTRUCT holds contours, not voxels; give the CT it was drawn on")
        return read_rtstruct(path, reference)
    seg = read_segmentation(path, names)
    if reference is None:
        return seg
    return fit_to_grid(seg, reference.geometry if isinstance(reference, DicomSeries) else reference, path)


def write_structures(
    seg: Segmentation, path: str | Path, reference_ct_folder: DicomSeries | str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``seg``: ``*.dcm`` as an RTSTRUCT on the CT series in ``reference_ct_folder``,
    anything else as :func:`write_segmentation` does."""
    path = Path(path)
    if path.suffix.lower() == ".dcm":
        return write_rtstruct(seg, path, ct_series(reference_ct_folder, path), overwrite)
    return write_segmentation(seg, path, overwrite)


def read_segmentation(path: str | Path, names: Mapping[int | str, str] | str | Path | None = None) -> Segmentation:
    """Read named structures from a file or folder.

    - a Slicer segmentation (``.seg.nrrd``, or a ``.nrrd`` with segment fields): names, colours, overlaps;
    - a folder of binary masks, one image per structure, named by the file stem;
    - any other image: an integer labelmap, named by ``names`` (a dict label -> name, or a JSON
      ``{"1": "PTV70"}`` / Slicer colour table ``.ctbl``/``.txt`` file), or by a sidecar
      ``<stem>.json`` / ``<stem>.ctbl`` beside it; unnamed labels become ``Segment_<label>``
      only when no names are given at all.

    Empty segments are kept (see :meth:`Segmentation.empty_segments`); callers report them.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if is_dicom_file(path):
        raise InputError(f"{path}: a DICOM file; an RTSTRUCT is read onto the CT it was drawn on (read_structures)")
    if path.is_dir() or _is_slicer_segmentation(path):
        if names is not None:
            raise InputError(f"{path}: label names only apply to labelmap images (this holds named segments)")
        return _read_mask_folder(path) if path.is_dir() else _read_seg_nrrd(path)
    return _read_labelmap(path, names)


def write_segmentation(seg: Segmentation, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``seg``; the file name chooses the format.

    ``*.seg.nrrd``: a Slicer segmentation (overlapping segments in separate layers, names and
    colours kept). Any other image name (``.nii.gz``, ``.nrrd``...): a labelmap (labels 1..N in
    segment order) with a ``<stem>.json`` sidecar of names, refused when segments overlap.
    """
    path = Path(path)
    stem = image_file_stem(path)
    if stem is None:
        raise InputError(
            f"{path}: unknown segmentation file type (use .seg.nrrd, or an image such as .nii.gz for a labelmap)"
        )
    is_seg_nrrd = path.name.lower().endswith(SEG_NRRD_SUFFIX)
    targets = [path] if is_seg_nrrd else [path, path.with_name(stem + ".json")]
    for target in targets:
        writable(target, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_seg_nrrd:
        _write_seg_nrrd(seg, path)
    else:
        _write_labelmap(seg, path, targets[1])
    return path


def lattice_offset(source: Geometry, target: Geometry) -> tuple[int, int, int] | None:
    """Index (i, j, k) on ``target`` of ``source``'s first voxel when both grids share voxel centres.

    None when spacing or direction differ, or the origins are not a whole number of voxels apart.
    """
    if not (
        np.allclose(source.spacing, target.spacing, atol=GEOMETRY_ATOL)
        and np.allclose(source.direction, target.direction, atol=GEOMETRY_ATOL)
    ):
        return None
    index = (np.linalg.inv(target.ijk_to_lps()) @ np.append(source.origin, 1.0))[:3]
    rounded = np.round(index)
    if not np.allclose(index, rounded, atol=1e-3):
        return None
    return tuple(int(v) for v in rounded)


def fit_to_grid(seg: Segmentation, target: Geometry, source: str | Path) -> Segmentation:
    """``seg`` on ``target`` without interpolation.

    Slicer saves segmentations cropped to their extent; such a segmentation shares the image's
    voxel centres and is padded back exactly. Any other grid mismatch, or a segment reaching
    outside ``target``, is an :class:`InputError` naming ``source``.
    """
    if seg.geometry.matches(target):
        return Segmentation(target, [Segment(s.name, s.mask, s.color) for s in seg.segments])
    offset = lattice_offset(seg.geometry, target)
    if offset is None:
        raise InputError(
            f"{source}: structures are on a different grid ({seg.geometry.describe()}) "
            f"than the image ({target.describe()})"
        )
    # Overlap of the two index ranges, per numpy axis (k, j, i).
    start = np.array(offset[::-1])
    lo = np.maximum(start, 0)
    hi = np.minimum(start + np.array(seg.geometry.shape), np.array(target.shape))
    out = Segmentation(target)
    for s in seg.segments:
        mask = np.zeros(target.shape, dtype=bool)
        if np.all(hi > lo):
            dst = tuple(slice(a, b) for a, b in zip(lo, hi))
            src = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, start))
            mask[dst] = s.mask[src]
        if np.count_nonzero(mask) != np.count_nonzero(s.mask):
            raise InputError(f"{source}: segment '{s.name}' extends outside the image grid ({target.describe()})")
        out.segments.append(Segment(s.name, mask, s.color))
    return out


def _is_slicer_segmentation(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(SEG_NRRD_SUFFIX):
        return True
    if not name.endswith((".nrrd", ".nhdr")):
        return False
    try:
        header = slicerio.read_segmentation(str(path), skip_voxels=True)
    except Exception:  # noqa: BLE001 - a plain NRRD slicerio rejects is read as a labelmap instead
        return False
    return bool(header.get("segments"))


def _read_seg_nrrd(path: Path) -> Segmentation:
    try:
        data = slicerio.read_segmentation(str(path))
    except Exception as exc:  # noqa: BLE001 - pynrrd and slicerio raise assorted types for broken files
        raise InputError(f"{path}: not a readable Slicer segmentation ({exc})") from None
    voxels = data["voxels"]
    if voxels.ndim not in (3, 4):
        raise InputError(f"{path}: segmentation voxels must be 3D or 4D, got {voxels.ndim}D")
    geometry = _geometry_from_ijk_to_lps(data["ijkToLPS"], voxels.shape[-3:], path)
    metas = data.get("segments", [])
    # Slicer < 4.11 stored one segment per layer without Layer/LabelValue fields.
    legacy = voxels.ndim == 4 and not any("layer" in m for m in metas)
    segments = []
    for index, meta in enumerate(metas):
        layer = index if legacy else meta.get("layer", 0)
        if voxels.ndim == 4 and not 0 <= layer < voxels.shape[0]:
            raise InputError(f"{path}: segment '{meta.get('name')}' refers to layer {layer}, file has {voxels.shape[0]}")
        if legacy:
            mask_ijk = voxels[layer] != 0
        else:
            mask_ijk = slicerio.segment_mask(data, meta)
        color = tuple(float(c) for c in meta.get("color", default_color(index)))
        segments.append(Segment(meta.get("name", meta["id"]), np.ascontiguousarray(mask_ijk.transpose(2, 1, 0)), color))
    return _segmentation(geometry, segments, path)


def _write_seg_nrrd(seg: Segmentation, path: Path) -> None:
    geometry = seg.geometry
    data = slicerio.create_segmentation(geometry.size, geometry.ijk_to_lps())
    for s in seg.segments:
        # Names come from the user's data: mark them as such so Slicer never replaces them.
        meta = {"id": s.name, "name": s.name, "color": [float(c) for c in s.color],
                "nameAutoGenerated": False, "colorAutoGenerated": False}
        # A contiguous [i, j, k] copy halves the time slicerio spends indexing its layers.
        slicerio.add_segment(data, np.ascontiguousarray(s.mask.transpose(2, 1, 0)), meta)
    full_extent = [0, geometry.size[0] - 1, 0, geometry.size[1] - 1, 0, geometry.size[2] - 1]
    for meta in data["segments"]:
        # Slicer versions that crop a shared layer to its first segment's extent lose voxels
        # of the others; the full extent is what slicerio recommends for compatibility.
        meta["extent"] = full_extent
    data["containedRepresentationNames"] = ["Binary labelmap"]
    # Stored as the raw header field: Slicer only parses parameters terminated by "&", which
    # slicerio's own serialisation omits for the last one.
    data["Segmentation_ConversionParameters"] = (
        f"Reference image geometry|{_reference_geometry_string(geometry)}|"
        "Image geometry of the binary labelmap representation.&"
    )
    try:
        slicerio.write_segmentation(str(path), data)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc})") from None


def _reference_geometry_string(geometry: Geometry) -> str:
    """Slicer's geometry string: IJK-to-RAS matrix (row-major) then the extent, ';'-separated."""
    matrix = ";".join(repr(float(v)) for v in geometry.ijk_to_ras().ravel())
    extent = ";".join(str(v) for n in geometry.size for v in (0, n - 1))
    return f"{matrix};{extent};"


def _geometry_from_ijk_to_lps(matrix, size_ijk, path: Path) -> Geometry:
    m = np.asarray(matrix, dtype=float)
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    if np.any(spacing == 0) or not np.all(np.isfinite(m)):
        raise InputError(f"{path}: invalid voxel-to-physical matrix {m[:3].tolist()}")
    direction = m[:3, :3] / spacing[None, :]
    i, j, k = (int(n) for n in size_ijk)
    return Geometry(
        shape=(k, j, i),
        spacing=tuple(float(s) for s in spacing),
        origin=tuple(float(o) for o in m[:3, 3]),
        direction=tuple(float(d) for d in direction.ravel()),
    )


def _read_mask_folder(folder: Path) -> Segmentation:
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    files = [p for p in files if not p.name.lower().endswith(_DATA_COMPANION_SUFFIXES)]
    for p in files:
        if p.is_dir() or image_file_stem(p) is None:
            raise InputError(f"{p}: not an image file (a structures folder holds one mask image per structure)")
    if not files:
        raise InputError(f"{folder}: structures folder holds no mask images")
    geometry = None
    segments = []
    for index, p in enumerate(files):
        volume = read_image(p)
        if geometry is None:
            geometry = volume.geometry
        elif not volume.geometry.matches(geometry):
            raise InputError(
                f"{p}: mask is on a different grid ({volume.geometry.describe()}) "
                f"than {files[0].name} ({geometry.describe()})"
            )
        values = np.unique(volume.array)
        if np.count_nonzero(values) > 1:
            raise InputError(f"{p}: a structure mask must be binary, found {np.count_nonzero(values)} non-zero values")
        segments.append(Segment(image_file_stem(p), volume.array != 0, default_color(index)))
    return _segmentation(geometry, segments, folder)


def _read_labelmap(path: Path, names) -> Segmentation:
    volume = read_image(path)
    array = volume.array
    if not np.issubdtype(array.dtype, np.integer):
        if not np.array_equal(array, np.round(array)):
            raise InputError(f"{path}: a labelmap must hold integer labels, found fractional values")
        array = array.astype(np.int64)
    present = [int(v) for v in np.unique(array) if v != 0]
    table, complete = _label_table(path, names)
    if table is None:
        table = {label: (f"Segment_{label}", None) for label in present}
    unnamed = [label for label in present if label not in table]
    if unnamed:
        raise InputError(f"{path}: labels without a name: {', '.join(map(str, unnamed))}")
    # A names list (JSON/dict) defines the structures, absent ones included (reported as empty);
    # a colour table is a palette, of which only the labels present are structures.
    labels = sorted(table) if complete else present
    segments = []
    for index, label in enumerate(labels):
        name, color = table[label]
        segments.append(Segment(name, array == label, color or default_color(index)))
    return _segmentation(volume.geometry, segments, path)


def _label_table(path: Path, names) -> tuple[dict[int, tuple[str, tuple | None]] | None, bool]:
    """Label -> (name, colour) from ``names`` or a sidecar, and whether it lists every structure."""
    if isinstance(names, Mapping):
        return _names_from_mapping(names, "names"), True
    if names is None:
        stem = image_file_stem(path)
        sidecars = [path.with_name(stem + s) for s in NAME_SIDECAR_SUFFIXES]
        names = next((s for s in sidecars if s.exists()), None)
        if names is None:
            return None, False
    names = Path(names)
    if not names.exists():
        raise InputError(f"{names}: label names file not found")
    if names.suffix.lower() == ".json":
        try:
            mapping = json.loads(names.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{names}: not a readable JSON names file ({exc})") from None
        if not isinstance(mapping, dict):
            raise InputError(f'{names}: expected a JSON object of label -> name, e.g. {{"1": "PTV70"}}')
        return _names_from_mapping(mapping, names), True
    return _read_color_table(names), False


def _names_from_mapping(mapping: Mapping, source) -> dict[int, tuple[str, None]]:
    table = {}
    for key, name in mapping.items():
        try:
            label = int(key)
        except (TypeError, ValueError):
            raise InputError(f"{source}: label '{key}' is not an integer") from None
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{source}: label {label} has no valid name ({name!r})")
        if label == 0:
            raise InputError(f"{source}: label 0 is the background and cannot name a structure")
        table[label] = (name.strip(), None)
    return table


def _read_color_table(path: Path) -> dict[int, tuple[str, tuple | None]]:
    """Slicer colour table text: ``label name R G B A`` per line (0..255), ``#`` comments."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable colour table ({exc})") from None
    table = {}
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            label = int(fields[0])
            rgb = tuple(int(v) / 255.0 for v in fields[2:5]) if len(fields) >= 5 else None
        except ValueError:
            raise InputError(f"{path}, line {number}: expected 'label name R G B A', got '{line.strip()}'") from None
        if len(fields) < 2:
            raise InputError(f"{path}, line {number}: label {label} has no name")
        if label != 0:
            table[label] = (fields[1], rgb)
    return table


def _write_labelmap(seg: Segmentation, path: Path, names_path: Path) -> None:
    if seg.segments:
        counts = np.sum([s.mask for s in seg.segments], axis=0, dtype=np.int32)
        if counts.max() > 1:
            pairs = [
                f"{a.name}/{b.name}"
                for n, a in enumerate(seg.segments)
                for b in seg.segments[n + 1:]
                if np.any(a.mask & b.mask)
            ]
            raise InputError(
                f"{path}: segments overlap ({', '.join(pairs)}); a labelmap holds one label per voxel, "
                f"write a {SEG_NRRD_SUFFIX} file instead"
            )
    dtype = np.uint8 if len(seg.segments) < 256 else np.uint16
    labels = np.zeros(seg.geometry.shape, dtype=dtype)
    for label, s in enumerate(seg.segments, 1):
        labels[s.mask] = label
    write_image(Volume(labels, seg.geometry), path, overwrite=True)
    names = {str(label): s.name for label, s in enumerate(seg.segments, 1)}
    names_path.write_text(json.dumps(names, indent=2) + "\n")


def _segmentation(geometry: Geometry, segments: list[Segment], source: Path) -> Segmentation:
    try:
        return Segmentation(geometry, segments)
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
