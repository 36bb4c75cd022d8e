"""Geometry files: drct's JSON format, and ASTRA-style plain vector files.

The JSON format (``format`` = ``"drct-geometry"``, ``version`` = 1) stores a projection geometry in vector form
and, optionally, the volume grid it is reconstructed on::

    {
      "format": "drct-geometry",
      "version": 1,
      "projection": {
        "beam": "cone",            # "parallel" (src rows are ray directions) or "cone" (fan beam in 2D)
        "det_shape": [rows, cols], # [cols] in 2D
        "curved": false,           # cylindrical (3D) / equiangular (2D) detector centred on the source
        "src":   [[x, y, z], ...], # one row per view, millimetres; (x, y) rows in 2D
        "det":   [[x, y, z], ...],
        "det_u": [[x, y, z], ...],
        "det_v": [[x, y, z], ...]  # 3D only; null in 2D
      },
      "volume": {                  # optional (null when absent)
        "shape": [nz, ny, nx],     # array order, as drct.VolumeGeometry
        "voxel_size": [hz, hy, hx],
        "center": [x, y, z]        # point order
      }
    }

The meaning of every vector is that of :class:`drct.ProjectionGeometry` (ASTRA's ``*_vec`` rule). Numbers are
written with full float64 precision (``repr``), so a save/load round trip is exact.

Plain vector files (``.txt``/``.csv``/``.npy``) hold ASTRA's ``*_vec`` rows: ``(views, 6)`` in 2D, ``(views, 12)``
in 3D; as they carry neither the beam type nor the detector shape, pass both to :func:`load_geometry`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..io import read_npy, refuse_overwrite, regular_file, write_atomically
from .factories import from_vectors
from .projection import ProjectionGeometry, host_rows
from .volume import VolumeGeometry

FORMAT = "drct-geometry"
VERSION = 1
_VECTOR_SUFFIXES = (".txt", ".csv", ".npy", ".vec")
MAX_JSON_BYTES = 1 << 30  # 1 GiB of JSON holds some ten million views: larger files are refused before reading


def _rows(value: Any) -> list[list[float]]:
    return np.asarray(host_rows(value), dtype=np.float64).tolist()


def geometry_to_dict(pg: ProjectionGeometry, vg: VolumeGeometry | None = None) -> dict[str, Any]:
    """The JSON-ready dictionary of :func:`save_geometry` (Dr.Jit vectors are stored by value, detached).

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.geometry.files import geometry_to_dict
        >>> data = geometry_to_dict(ct.parallel(np.linspace(0, np.pi, 4), 8), ct.VolumeGeometry((8, 8)))
        >>> data["format"], data["version"]
        ('drct-geometry', 1)
    """
    if not isinstance(pg, ProjectionGeometry):
        raise TypeError(f"pg must be a drct.ProjectionGeometry (ct.parallel, ct.cone, ...), got {type(pg).__name__}")
    if vg is not None and not isinstance(vg, VolumeGeometry):
        raise TypeError(f"vg must be a drct.VolumeGeometry or None, got {type(vg).__name__}")
    if vg is not None and vg.ndim != pg.ndim:
        raise ValueError(f"the volume is {vg.ndim}D (shape {vg.shape}) but the geometry is {pg.ndim}D ({pg!r})")
    projection = {
        "beam": pg.beam,
        "det_shape": list(pg.det_shape),
        "curved": pg.curved,
        "src": _rows(pg.src),
        "det": _rows(pg.det),
        "det_u": _rows(pg.det_u),
        "det_v": None if pg.det_v is None else _rows(pg.det_v),
    }
    volume = None
    if vg is not None:
        volume = {"shape": list(vg.shape), "voxel_size": list(vg.voxel_size), "center": list(vg.center)}
    return {"format": FORMAT, "version": VERSION, "projection": projection, "volume": volume}


def _field(table: dict[str, Any], key: str, where: str, source: str) -> Any:
    if not isinstance(table, dict):
        raise ValueError(f"{source}: {where} must be a JSON object, got {type(table).__name__}")
    if key not in table:
        raise ValueError(f"{source}: missing field {where}.{key}")
    return table[key]


def geometry_from_dict(data: Any, source: str = "geometry") -> tuple[ProjectionGeometry, VolumeGeometry | None]:
    """Inverse of :func:`geometry_to_dict`; errors name ``source`` and the offending field.

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.geometry.files import geometry_from_dict, geometry_to_dict
        >>> pg = ct.parallel(np.linspace(0, np.pi, 4), 8)
        >>> pg2, vg = geometry_from_dict(geometry_to_dict(pg))
        >>> bool(np.allclose(pg2.to_vectors(), pg.to_vectors())), vg
        (True, None)
    """
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
    fmt = data.get("format")
    if fmt != FORMAT:
        raise ValueError(f"{source}: field 'format' must be {FORMAT!r}, got {fmt!r}")
    version = data.get("version")
    if not isinstance(version, int) or version < 1 or version > VERSION:
        raise ValueError(f"{source}: field 'version' must be an integer 1..{VERSION}, got {version!r}")
    proj = _field(data, "projection", "", source)
    fields = {key: _field(proj, key, "projection", source) for key in ("beam", "det_shape", "src", "det", "det_u")}
    det_v = proj.get("det_v")
    curved = proj.get("curved", False)
    if not isinstance(curved, bool):
        raise ValueError(f"{source}: field projection.curved must be true or false, got {curved!r}")
    shape = fields["det_shape"]
    if not isinstance(shape, list) or not all(isinstance(n, int) for n in shape):
        raise ValueError(f"{source}: field projection.det_shape must be [cols] or [rows, cols] integers, got {shape!r}")
    try:
        arrays = {}
        for key in ("src", "det", "det_u"):
            arrays[key] = np.asarray(fields[key], dtype=np.float64)
        arrays["det_v"] = None if det_v is None else np.asarray(det_v, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: projection vectors must be lists of number rows ({err})") from None
    try:
        pg = ProjectionGeometry(
            fields["beam"], arrays["src"], arrays["det"], arrays["det_u"], arrays["det_v"], tuple(shape), curved
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: invalid field in 'projection': {err}") from None
    vol = data.get("volume")
    if vol is None:
        return pg, None
    try:
        vg = VolumeGeometry(
            _field(vol, "shape", "volume", source),
            voxel_size=vol.get("voxel_size", 1.0),
            center=vol.get("center"),
        )
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: invalid field in 'volume': {err}") from None
    if vg.ndim != pg.ndim:
        raise ValueError(f"{source}: volume.shape is {vg.ndim}D but the projection geometry is {pg.ndim}D")
    return pg, vg


def save_geometry(
    path: str | os.PathLike[str],
    pg: ProjectionGeometry,
    vg: VolumeGeometry | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``pg`` (and optionally ``vg``) as a drct geometry JSON file, atomically.

    A path ending in ``.txt``/``.csv``/``.npy`` writes ASTRA-style vector rows instead (``pg.to_vectors()``;
    beam type, detector shape and ``vg`` are then not stored, so ``vg`` must be None).

    Args:
        path: output file (``.json`` recommended).
        pg: the projection geometry.
        vg: the volume grid to store with it, or None.
        overwrite: replace an existing file (otherwise FileExistsError).

    Returns:
        The path written.

    Example:
        >>> import numpy as np, tempfile, os, drct as ct
        >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 8, endpoint=False), (4, 6), 1.0, 100.0, 150.0)
        >>> path = os.path.join(tempfile.mkdtemp(), "scan.json")
        >>> _ = ct.save_geometry(path, pg, ct.VolumeGeometry((4, 4, 4)))
        >>> pg2, vg2 = ct.load_geometry(path)
        >>> bool(np.array_equal(pg2.to_vectors(), pg.to_vectors())), vg2.shape
        (True, (4, 4, 4))
    """
    target = Path(path)
    refuse_overwrite([target], overwrite)
    if target.suffix.lower() in _VECTOR_SUFFIXES:
        if not isinstance(pg, ProjectionGeometry):
            raise TypeError(f"pg must be a drct.ProjectionGeometry, got {type(pg).__name__}")
        if vg is not None:
            raise ValueError(f"{target}: a plain vector file cannot store the volume geometry; use a .json path")
        rows = pg.to_vectors()
        if target.suffix.lower() == ".npy":
            return write_atomically(target, lambda tmp: np.save(tmp, rows))  # tmp ends in .npy
        return write_atomically(target, lambda tmp: np.savetxt(tmp, rows, fmt="%.17g"))
    text = json.dumps(geometry_to_dict(pg, vg), indent=1)

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text + "\n")

    return write_atomically(target, write)


def load_geometry(
    path: str | os.PathLike[str],
    beam: str | None = None,
    det_shape: int | tuple[int, int] | None = None,
    curved: bool = False,
) -> tuple[ProjectionGeometry, VolumeGeometry | None]:
    """Read a geometry file: drct JSON (see the module docstring) or ASTRA-style vector rows.

    Args:
        path: a ``.json`` file written by :func:`save_geometry`, or a ``.txt``/``.csv``/``.npy`` file of
            ``(views, 6)`` (2D) or ``(views, 12)`` (3D) ASTRA ``*_vec`` rows.
        beam: for vector files only: ``"parallel"`` or ``"cone"`` (fan beam in 2D).
        det_shape: for vector files only: ``cols`` (2D) or ``(rows, cols)`` (3D).
        curved: for vector files only: cylindrical/equiangular detector.

    Returns:
        ``(pg, vg)``; ``vg`` is None when the file stores no volume (always for vector files).

    Raises:
        FileNotFoundError: no such file.
        ValueError: malformed content, naming the file and the field.

    Example:
        >>> import numpy as np, tempfile, os, drct as ct
        >>> pg = ct.fan(np.linspace(0, np.pi, 5), 16, 1.0, 50.0, 100.0)
        >>> path = os.path.join(tempfile.mkdtemp(), "fan.txt")
        >>> _ = ct.save_geometry(path, pg)
        >>> ct.load_geometry(path, beam="cone", det_shape=16)[0].shape
        (5, 16)
    """
    source = regular_file(path, "geometry file")  # a FIFO or a device would block or never end
    suffix = source.suffix.lower()
    if suffix in _VECTOR_SUFFIXES:
        return _load_vectors(source, beam, det_shape, curved), None
    if beam is not None or det_shape is not None or curved:
        raise ValueError(f"{source}: beam/det_shape/curved apply to plain vector files only, not to JSON geometry")
    size = source.stat().st_size
    if size > MAX_JSON_BYTES:
        raise ValueError(f"{source}: {size} bytes is too large for a geometry JSON file (at most {MAX_JSON_BYTES})")
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{source}: not a drct geometry JSON file ({err})") from None
    except RecursionError:
        raise ValueError(f"{source}: not a drct geometry JSON file (nested too deeply)") from None
    return geometry_from_dict(data, str(source))


def _load_vectors(source: Path, beam: str | None, det_shape: Any, curved: bool) -> ProjectionGeometry:
    if beam is None or det_shape is None:
        raise ValueError(
            f"{source}: a plain vector file stores neither the beam type nor the detector shape; "
            "pass beam='parallel'|'cone' and det_shape=cols|(rows, cols)"
        )
    try:
        if source.suffix.lower() == ".npy":
            rows = read_npy(source, "vector file")
        else:
            rows = np.loadtxt(source, delimiter="," if source.suffix.lower() == ".csv" else None, ndmin=2)
    except (ValueError, OSError) as err:
        raise ValueError(f"{source}: cannot read vector rows ({err})") from None
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] not in (6, 12):
        raise ValueError(
            f"{source}: vector rows must have shape (views, 6) in 2D or (views, 12) in 3D, got {rows.shape}"
        )
    dims = 1 if isinstance(det_shape, int) else len(tuple(det_shape))
    expected = 6 if dims == 1 else 12
    if rows.shape[1] != expected:
        raise ValueError(
            f"{source}: det_shape {det_shape!r} is {dims + 1}D, which needs {expected} columns, "
            f"but the file has {rows.shape[1]}"
        )
    try:
        return from_vectors(rows, det_shape, beam=beam, curved=curved)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: {err}") from None
