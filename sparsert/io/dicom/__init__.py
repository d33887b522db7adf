"""DICOM and DICOM RT without Slicer: CT series, RT Structure Sets and RT Dose, in and out.

- ``files``: recognising, reading and writing single DICOM files (pydicom 2.4 and 3.x);
- ``series``: an image series folder read and validated into a :class:`~sparsert.io.volume.Volume`;
- ``contours``: planar contours <-> masks on one slice (even-odd filling, contour extraction);
- ``rtstruct``: RT Structure Set <-> :class:`~sparsert.io.segmentation.Segmentation` on the CT grid;
- ``rtdose``: RT Dose <-> dose :class:`~sparsert.io.volume.Volume` in Gy.

Callers normally go through the format dispatch in :mod:`sparsert.io.segmentation_io`
(``read_structures``/``write_structures``) and :mod:`sparsert.io.dose_io` (``read_dose``/``write_dose``).
"""
