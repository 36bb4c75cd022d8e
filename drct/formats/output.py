"""Reconstructions out as DICOM: what ``drct reconstruct -o out/`` writes.

An output path that ends in a path separator (``out/``) is a DICOM output folder (a path naming an existing
folder without one is not: ``-o r.tif`` stays a file path even where ``r.tif`` is a folder).
:func:`write_reconstruction` writes a CT series there (one file per slice, :func:`write_dicom_series`) or, for
an emission (SPECT) reconstruction, an NM ``RECON TOMO`` image (:func:`write_dicom_nm`), with the preview
picture as ``preview.png`` in the same folder; the folder is built beside its place and renamed into it, so a
reader never sees half of it. A 2D reconstruction becomes one axial slice of thickness 1 mm (a 2D geometry has
none).

Example:
    >>> import numpy as np, os, tempfile, drct as ct
    >>> from drct.formats import is_dicom_folder, read_dicom_series, write_reconstruction
    >>> is_dicom_folder("out/"), is_dicom_folder("out/recon.tif")
    (True, False)
    >>> vg = ct.VolumeGeometry((4, 5), voxel_size=0.5)
    >>> folder = write_reconstruction(os.path.join(tempfile.mkdtemp(), "fbp") + "/", np.ones(vg.shape), vg)
    >>> volume, vg3 = read_dicom_series(folder)
    >>> volume.shape, vg3.voxel_size
    ((1, 4, 5), (1.0, 0.5, 0.5))
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..extras import MissingExtraError
from ..geometry.volume import VolumeGeometry
from ..io import check_output_folder
from .dicom import _earlier_output, _pydicom, write_dicom_series
from .dicom_nm import write_dicom_nm


def is_dicom_folder(path: str | os.PathLike[str]) -> bool:
    """True where ``path`` asks for a DICOM output folder: it ends in a path separator.

    Example:
        >>> from drct.formats import is_dicom_folder
        >>> is_dicom_folder("out/"), is_dicom_folder("out/recon.tif")
        (True, False)
    """
    return os.fspath(path).endswith((os.sep, "/"))


def check_dicom_folder(path: str | os.PathLike[str], force: bool) -> Path:
    """Before a long reconstruction: FileExistsError if ``path`` holds files and not ``force``, or (with it)
    files a drct DICOM writer did not write; ValueError (a user's error, one line for the CLI) naming
    ``drct[formats]`` if pydicom is not installed.

    Example:
        >>> import os, tempfile
        >>> from drct.formats import check_dicom_folder
        >>> folder = os.path.join(tempfile.mkdtemp(), "recon")
        >>> check_dicom_folder(folder, force=False).name
        'recon'
    """
    try:
        _pydicom()
    except MissingExtraError as err:
        raise ValueError(str(err)) from None
    return check_output_folder(path, force, _earlier_output(path))


def _as_3d(vg: VolumeGeometry) -> VolumeGeometry:
    if vg.ndim == 3:
        return vg
    return VolumeGeometry((1, *vg.shape), voxel_size=(1.0, *vg.voxel_size), center=(*vg.center, 0.0))


def write_reconstruction(
    folder: str | os.PathLike[str],
    volume: Any,
    vg: VolumeGeometry,
    emission: bool = False,
    description: str = "drct reconstruction",
    preview: Callable[[str], object] | None = None,
    overwrite: bool = False,
) -> Path:
    """A reconstruction as DICOM in ``folder`` (module docstring): a CT series (values in 1/mm), or with
    ``emission`` an NM image (activity); ``preview`` writes ``preview.png`` beside it.

    Example:
        >>> import numpy as np, os, tempfile, drct as ct
        >>> from drct.formats import read_dicom_series, write_reconstruction
        >>> vg = ct.VolumeGeometry((3, 4, 4), voxel_size=0.5)
        >>> folder = write_reconstruction(os.path.join(tempfile.mkdtemp(), "recon"), np.full(vg.shape, 0.02), vg)
        >>> volume, read_vg = read_dicom_series(folder)
        >>> volume.shape, read_vg.voxel_size, bool(np.allclose(volume, 0.02, atol=1e-6))
        ((3, 4, 4), (0.5, 0.5, 0.5), True)
    """
    values = np.asarray(volume)
    if values.shape != vg.shape:
        raise ValueError(f"volume of shape {values.shape} does not match the geometry {vg.shape}")
    vg3 = _as_3d(vg)
    values = values.reshape(vg3.shape)
    if emission:
        return write_dicom_nm(folder, values, vg3, description, overwrite=overwrite, preview=preview)
    return write_dicom_series(folder, values, vg3, description, overwrite=overwrite, preview=preview)
