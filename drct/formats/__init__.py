"""Real data in: readers (and writers) for the files CT scanners and users have, each giving projections plus
a drct geometry (:class:`Scan`), and the one normalisation of raw readings (:func:`normalize`).

- ``nxtomo``: NeXus NXtomo HDF5 (``.nx .nxs .h5 .hdf5``): :func:`read_nxtomo`, :func:`write_nxtomo` (h5py);
- ``xtek``: Nikon XTek, ``.xtekct`` + one TIFF per projection: :func:`read_xtek`, :func:`write_xtek`;
- ``tiff``: a multi-page TIFF, a folder of TIFFs, or one with ``projections/ flats/ darks/``:
  :func:`read_tiff_stack` (pixels only: the geometry comes from elsewhere);
- DICOM series (a volume, not projections): :func:`read_dicom_series`, :func:`write_dicom_series` (CT, one
  file per slice), :func:`write_dicom_nm` (NM ``RECON TOMO``, one multi-frame file) (pydicom);
- DICOM NM SPECT acquisitions (projections and a :func:`drct.spect` geometry): :func:`read_dicom_spect`,
  :func:`write_dicom_spect`;
- reconstructions out as DICOM (``drct reconstruct -o out/``): :func:`write_reconstruction`.

h5py and pydicom come with ``pip install "drct[formats]"``. :func:`read` picks the reader by ``format``, else by
the extension, else by the content (HDF5 and TIFF signatures, a folder's files).

Example:
    >>> import numpy as np, os, tempfile, drct as ct
    >>> from drct import formats
    >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 4, endpoint=False), (2, 3), 0.5, 50.0, 100.0)
    >>> path = os.path.join(tempfile.mkdtemp(), "scan.nxs")
    >>> _ = formats.write_nxtomo(path, np.full(pg.shape, 100.0), pg, flat=np.full((2, 3), 200.0))
    >>> scan = formats.read(path)
    >>> bool(np.allclose(scan.geometry.to_vectors(), pg.to_vectors()))
    True
    >>> formats.EXTENSIONS[".xtekct"], sorted(formats.READERS)  # extension -> format -> reader
    ('xtek', ['nxtomo', 'tiff', 'xtek'])
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .dicom import read_dicom_series as read_dicom_series
from .dicom import write_dicom_series as write_dicom_series
from .dicom_nm import SpectScan as SpectScan
from .dicom_nm import read_dicom_spect as read_dicom_spect
from .dicom_nm import write_dicom_nm as write_dicom_nm
from .dicom_nm import write_dicom_spect as write_dicom_spect
from .normalization import normalize as normalize
from .normalization import require_line_integrals as require_line_integrals
from .nxtomo import read_nxtomo as read_nxtomo
from .nxtomo import write_nxtomo as write_nxtomo
from .output import check_dicom_folder as check_dicom_folder
from .output import is_dicom_folder as is_dicom_folder
from .output import write_reconstruction as write_reconstruction
from .scan import Scan as Scan
from .tiffstack import read_tiff_stack as read_tiff_stack
from .xtek import read_xtek as read_xtek
from .xtek import write_xtek as write_xtek

READERS: dict[str, Callable[..., Scan]] = {"nxtomo": read_nxtomo, "xtek": read_xtek, "tiff": read_tiff_stack}
EXTENSIONS = {
    ".nx": "nxtomo",
    ".nxs": "nxtomo",
    ".h5": "nxtomo",
    ".hdf5": "nxtomo",
    ".hdf": "nxtomo",
    ".xtekct": "xtek",
    ".tif": "tiff",
    ".tiff": "tiff",
}
_SIGNATURES = (
    (b"\x89HDF\r\n\x1a\n", "nxtomo"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),
    (b"MM\x00+", "tiff"),
)


def detect(path: str | os.PathLike[str]) -> str:
    """The format of ``path`` (a key of :data:`READERS`): by extension, else by its first bytes, else (a folder)
    by the files in it; ValueError naming the formats if none fits.

    Example:
        >>> from drct import formats
        >>> formats.detect("scan.nxs"), formats.detect("part.xtekct"), formats.detect("projections.tif")
        ('nxtomo', 'xtek', 'tiff')
    """
    p = Path(path)
    if p.suffix.lower() in EXTENSIONS:
        return EXTENSIONS[p.suffix.lower()]
    if p.is_dir():
        suffixes = {q.suffix.lower() for q in p.iterdir()}
        if ".xtekct" in suffixes:
            return "xtek"
        if ".dcm" in suffixes and not suffixes & {".tif", ".tiff"}:
            raise ValueError(
                f"{p} holds a DICOM series: a volume, not projections; read it with ct.formats.read_dicom_series"
            )
        return "tiff"
    if p.is_file():
        with open(p, "rb") as f:
            head = f.read(132)
        for signature, name in _SIGNATURES:
            if head.startswith(signature):
                return name
        if head[128:] == b"DICM":
            raise ValueError(
                f"{p} is a DICOM file: SPECT projections (NM TOMO) are read with ct.formats.read_dicom_spect, "
                "an image series (a folder) with ct.formats.read_dicom_series"
            )
    raise ValueError(
        f"{p}: cannot tell its format from the name or the content: projections must be a .npy file or a .tif/.tiff "
        f"stack (with a geometry file), or a scanner's file in one of the formats {', '.join(READERS)} (--format)"
    )


def read(path: str | os.PathLike[str], format: str | None = None, **options: Any) -> Scan:
    """A :class:`Scan` from ``path`` with the reader of ``format`` (default: :func:`detect`).

    A folder holding one ``.xtekct`` file is read as that Nikon scan. ``options`` go to the reader (e.g.
    ``flat=``, ``dark=``, ``geometry=`` for TIFF stacks, ``angle_sign=`` for NXtomo).

    Example:
        >>> import numpy as np, os, tempfile, tifffile, drct as ct
        >>> path = os.path.join(tempfile.mkdtemp(), "projections.tif")
        >>> tifffile.imwrite(path, np.full((4, 2, 3), 500, np.uint16))
        >>> pg = ct.parallel(np.linspace(0, np.pi, 4, endpoint=False), (2, 3))
        >>> scan = ct.formats.read(path, flat=1000.0, geometry=pg)  # options go to the TIFF reader
        >>> scan.projections.shape, round(float(scan.line_integrals()[0, 0, 0]), 4)
        ((4, 2, 3), 0.6931)
    """
    name = detect(path) if format is None else format
    if name not in READERS:
        raise ValueError(f"unknown format {name!r}; expected one of {', '.join(READERS)}")
    p = Path(path)
    if name == "xtek" and p.is_dir():
        found = sorted(p.glob("*.xtekct"))
        if len(found) != 1:
            raise ValueError(f"{p}: expected one .xtekct file in the folder, found {len(found)}")
        p = found[0]
    return READERS[name](p, **options)


__all__ = [
    "EXTENSIONS",
    "READERS",
    "Scan",
    "SpectScan",
    "check_dicom_folder",
    "detect",
    "is_dicom_folder",
    "normalize",
    "read",
    "read_dicom_series",
    "read_dicom_spect",
    "read_nxtomo",
    "read_tiff_stack",
    "read_xtek",
    "require_line_integrals",
    "write_dicom_nm",
    "write_dicom_series",
    "write_dicom_spect",
    "write_nxtomo",
    "write_reconstruction",
    "write_xtek",
]
