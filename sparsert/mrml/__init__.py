"""Bridge between SparseRT's core types and MRML nodes (Slicer's scene graph).

Qt-free: works in the Slicer application and with the ``slicer-core`` wheel alike (see
``Testing/SLICER_CORE_NOTES.md``). Importing it needs ``slicer``; the rest of ``sparsert`` does not.

Our :class:`~sparsert.io.volume.Geometry` is ITK LPS; MRML stores an IJK-to-RAS matrix. Arrays are
``[k, j, i]`` on both sides, so only the matrix changes when crossing the bridge.
"""

from sparsert.mrml.scene import HeadlessSlicer
from sparsert.mrml.segmentation import (
    add_segmentation_node,
    changed_box,
    segmentation_from_node,
    update_segment_region,
    update_segmentation_node,
)
from sparsert.mrml.volume import add_volume_node, update_volume_node, volume_from_node, volume_node_geometry

__all__ = [
    "HeadlessSlicer",
    "add_segmentation_node",
    "add_volume_node",
    "changed_box",
    "segmentation_from_node",
    "update_segment_region",
    "update_segmentation_node",
    "update_volume_node",
    "volume_from_node",
    "volume_node_geometry",
]
