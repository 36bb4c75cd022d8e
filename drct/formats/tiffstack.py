"""TIFF stacks: projections as one multi-page TIFF or a folder of single-image TIFFs, with flat and dark fields
beside them.

A TIFF holds pixels only, so the geometry comes from elsewhere (a drct geometry file: ``--geometry``). Layouts
read by :func:`read_tiff_stack`:

- a multi-page ``.tif``/``.tiff`` file: its pages are the projections;
- a folder of ``.tif`` files, sorted by name: one projection each;
- a folder with sub-folders ``projections/`` (or ``proj``, ``tomo``), ``flats/`` (or ``flat``) and ``darks/``
  (or ``dark``): the projections, and flat and dark frames that are averaged.

Every file is read through :func:`drct.io.read_tiff` (regular files only, the header checked against the
memory before the pixels are read).

Example:
    >>> import numpy as np, os, tempfile, tifffile
    >>> from drct.formats import read_tiff_stack
    >>> root = tempfile.mkdtemp()
    >>> for sub, value in (("projections", 300), ("flats", 900), ("darks", 100)):
    ...     os.mkdir(os.path.join(root, sub))
    ...     for i in range(2):
    ...         tifffile.imwrite(os.path.join(root, sub, f"{i:03d}.tif"), np.full((2, 3), value, np.uint16))
    >>> scan = read_tiff_stack(root)
    >>> scan.projections.shape, round(float(scan.line_integrals()[0, 0, 0]), 4)
    ((2, 2, 3), 1.3863)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..geometry.projection import ProjectionGeometry
from ..io import read_tiff, read_tiff_slices
from .scan import Scan

SUBFOLDERS = {
    "projections": ("projections", "projection", "proj", "tomo"),
    "flat": ("flats", "flat", "flatfield", "flat_field"),
    "dark": ("darks", "dark", "darkfield", "dark_field"),
}
SUFFIXES = (".tif", ".tiff")


def read_frames(path: str | os.PathLike[str], what: str) -> np.ndarray:
    """``(frames, rows, cols)`` from a multi-page TIFF or a folder of single-image TIFFs."""
    p = Path(path)
    data = read_tiff_slices(p, what) if p.is_dir() else read_tiff(p, what)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ValueError(f"{p}: {what} must be images (rows, cols) or a stack (frames, rows, cols), got {data.shape}")
    return data


def _subfolder(root: Path, kind: str) -> Path | None:
    for name in SUBFOLDERS[kind]:
        if (root / name).is_dir():
            return root / name
    return None


def _field(source: Any, what: str) -> np.ndarray | float | None:
    """A flat or dark field: None, a number, an array, or a TIFF file/folder whose frames are averaged."""
    if source is None or isinstance(source, (int, float, np.ndarray)):
        return source
    return read_frames(source, what).astype(np.float64).mean(axis=0)


def read_tiff_stack(
    path: str | os.PathLike[str],
    flat: Any = None,
    dark: Any = None,
    geometry: ProjectionGeometry | None = None,
) -> Scan:
    """A scan from TIFF files (see the module docstring for the layouts).

    Args:
        path: a multi-page TIFF, a folder of TIFFs, or a folder with projections/flats/darks sub-folders.
        flat: flat field: a TIFF file or folder (frames averaged), an array or a number; None: the ``flats/``
            sub-folder if there is one.
        dark: dark field, likewise (``darks/``).
        geometry: the scan's geometry, if known (else the scan's is None: the caller must supply one).

    Example:
        >>> import numpy as np, os, tempfile, tifffile, drct as ct
        >>> from drct.formats import read_tiff_stack
        >>> path = os.path.join(tempfile.mkdtemp(), "projections.tif")  # one multi-page TIFF, one page per view
        >>> tifffile.imwrite(path, np.full((4, 2, 3), 500, np.uint16))
        >>> pg = ct.parallel(np.linspace(0, np.pi, 4, endpoint=False), (2, 3))
        >>> scan = read_tiff_stack(path, flat=1000.0, geometry=pg)
        >>> scan.geometry.shape, round(float(scan.line_integrals()[0, 0, 0]), 4)
        ((4, 2, 3), 0.6931)
    """
    p = Path(path)
    projections = p
    if p.is_dir():
        projections = _subfolder(p, "projections") or p
        flat = _subfolder(p, "flat") if flat is None else flat
        dark = _subfolder(p, "dark") if dark is None else dark
    data = read_frames(projections, "projections")
    flat_field, dark_field = _field(flat, "flat field"), _field(dark, "dark field")
    for field, name in ((flat_field, "flat field"), (dark_field, "dark field")):
        if isinstance(field, np.ndarray) and field.ndim and field.shape != data.shape[1:]:
            raise ValueError(f"{name} has shape {field.shape}, the projections' images {data.shape[1:]}")
    if geometry is not None and geometry.shape != data.shape:
        raise ValueError(f"{p}: projections have shape {data.shape}, the geometry expects {geometry.shape}")
    notes = [f"TIFF stack {p.name}: {data.shape[0]} projections of {data.shape[1]}x{data.shape[2]} pixels"]
    return Scan(data, geometry, flat_field, dark_field, notes=notes)
