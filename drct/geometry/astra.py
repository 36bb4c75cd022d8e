"""Conversion to and from ASTRA Toolbox geometry dicts, without importing ASTRA.

:func:`from_astra` takes the dicts made by ``astra.create_vol_geom`` and ``astra.create_proj_geom`` and
returns ``(vg, pg)`` such that ``ct.Projector(vg, pg)(x)`` is ASTRA's projection of the *same* array ``x``
(the line-integral model aside); :func:`to_astra` is its inverse. Supported projection types: ``parallel``,
``parallel_vec``, ``fanflat``, ``fanflat_vec`` (2D) and ``parallel3d``, ``parallel3d_vec``, ``cone``,
``cone_vec`` (3D).

Axis conventions, and what the conversion does about them:

* ASTRA 2D images are ``(rows, cols) = (y, x)`` as in drct, but ASTRA's row 0 is at the *top*: its pixel
  ``[r, c]`` is centred at ``(WindowMinX + (c + 0.5) px, WindowMaxY - (r + 0.5) py)``, whereas drct's row
  index increases with ``y``. The 2D conversion therefore negates the ``y`` component of every vector
  (source or ray, detector centre, detector step) and of the volume centre, so that the same array ``x``
  projects identically. ASTRA 2D sinograms are ``(views, cols)``, as in drct.
* ASTRA 3D volumes are ``(slices, rows, cols) = (z, y, x)`` with every index increasing with its coordinate,
  as in drct: no flip. ASTRA 3D sinograms are ``(rows, views, cols)``, drct's ``(views, rows, cols)``:
  convert with :func:`sino_from_astra` / :func:`sino_to_astra` (``np.transpose(s, (1, 0, 2))``).
* Vector rows are ASTRA's: pixel ``(row, col)`` is centred at
  ``d + (col - (cols - 1) / 2) u + (row - (rows - 1) / 2) v``.
  The angle types are expanded with the formulas of ``astra.geom_2vec``. :func:`to_astra` always emits the
  ``*_vec`` types.

Curved detectors (ASTRA's flat types cannot hold them) and ray lists (:func:`drct.rays`) have no ASTRA form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import require_finite
from .projection import ProjectionGeometry, RayGeometry
from .volume import VolumeGeometry

TYPES_2D = ("parallel", "parallel_vec", "fanflat", "fanflat_vec")
TYPES_3D = ("parallel3d", "parallel3d_vec", "cone", "cone_vec")
_ANGLES_2D = ("DetectorWidth", "DetectorCount", "ProjectionAngles")
_DETECTOR_3D = ("DetectorSpacingX", "DetectorSpacingY", "DetectorRowCount", "DetectorColCount")
_ANGLES_3D = (*_DETECTOR_3D, "ProjectionAngles")
_DISTANCES = ("DistanceOriginSource", "DistanceOriginDetector")
_NEEDS = {
    "parallel": _ANGLES_2D,
    "fanflat": _ANGLES_2D + _DISTANCES,
    "parallel_vec": ("DetectorCount", "Vectors"),
    "fanflat_vec": ("DetectorCount", "Vectors"),
    "parallel3d": _ANGLES_3D,
    "cone": _ANGLES_3D + _DISTANCES,
    "parallel3d_vec": ("DetectorRowCount", "DetectorColCount", "Vectors"),
    "cone_vec": ("DetectorRowCount", "DetectorColCount", "Vectors"),
}
_FLIP_Y_2D = np.array([1.0, -1.0])
AstraDict = Mapping[str, Any]


# ----------------------------------------------------------------------------------------------- validation
def _get(d: Mapping[str, Any], key: str, where: str, why: str) -> Any:
    if key not in d:
        raise ValueError(f"{where}[{key!r}] is missing: {why}")
    return d[key]


def _number(value: Any, name: str, positive: bool = False) -> float:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if arr.size != 1:
        raise ValueError(f"{name} must be one number, got {arr.size} values")
    out = float(arr.reshape(-1)[0])
    if not np.isfinite(out) or (positive and out <= 0):
        raise ValueError(f"{name} must be {'finite and > 0' if positive else 'finite'}, got {value!r}")
    return out


def _count(value: Any, name: str) -> int:
    number = _number(value, name, positive=True)
    if number != round(number) or isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return round(number)


def _array(value: Any, name: str, cols: int | None = None) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got {type(value).__name__}") from None
    if cols is None:
        arr = arr.reshape(-1) if arr.ndim <= 1 else arr
        if arr.ndim != 1:
            raise ValueError(f"{name} must be a 1D sequence of angles in radians, got shape {arr.shape}")
    else:
        arr = arr[None, :] if arr.ndim == 1 else arr
        if arr.ndim != 2 or arr.shape[1] != cols:
            raise ValueError(f"{name} must have shape (views, {cols}), got {np.shape(value)}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: at least one view is needed")
    require_finite(arr, name)
    return arr


# -------------------------------------------------------------------------------------------------- volume
def _volume_from_astra(vol_geom: Mapping[str, Any]) -> VolumeGeometry:
    if not isinstance(vol_geom, Mapping):
        raise TypeError(f"vol_geom must be an ASTRA volume geometry dict, got {type(vol_geom).__name__}")
    why = "an ASTRA volume geometry needs GridRowCount and GridColCount (and GridSliceCount in 3D)"
    rows = _count(_get(vol_geom, "GridRowCount", "vol_geom", why), "vol_geom['GridRowCount']")
    cols = _count(_get(vol_geom, "GridColCount", "vol_geom", why), "vol_geom['GridColCount']")
    counts = {"X": cols, "Y": rows}
    if "GridSliceCount" in vol_geom:
        counts["Z"] = _count(vol_geom["GridSliceCount"], "vol_geom['GridSliceCount']")
    option = vol_geom.get("option", {}) or {}
    if not isinstance(option, Mapping):
        raise ValueError(f"vol_geom['option'] must be a dict of Window* values, got {type(option).__name__}")
    size, center = {}, {}
    for axis, n in counts.items():
        lo_key, hi_key = f"WindowMin{axis}", f"WindowMax{axis}"
        if (lo_key in option) != (hi_key in option):
            raise ValueError(f"vol_geom['option'] has only one of {lo_key}, {hi_key}: give both or neither")
        lo = _number(option.get(lo_key, -n / 2), f"vol_geom['option'][{lo_key!r}]")
        hi = _number(option.get(hi_key, n / 2), f"vol_geom['option'][{hi_key!r}]")
        if not hi > lo:
            raise ValueError(f"vol_geom['option']: {hi_key} must exceed {lo_key}, got {lo} and {hi}")
        size[axis], center[axis] = (hi - lo) / n, (lo + hi) / 2
    if "Z" in counts:
        sizes = (size["Z"], size["Y"], size["X"])
        return VolumeGeometry((counts["Z"], rows, cols), sizes, (center["X"], center["Y"], center["Z"]))
    # ASTRA 2D rows run downwards: drct's y is ASTRA's -y.
    return VolumeGeometry((rows, cols), (size["Y"], size["X"]), (center["X"], -center["Y"]))


def _volume_to_astra(vg: VolumeGeometry) -> dict[str, Any]:
    lo, hi = list(vg.extent_min), list(vg.extent_max)
    if vg.ndim == 2:  # back to ASTRA's downward rows
        lo[1], hi[1] = -hi[1], -lo[1]
    out: dict[str, Any] = {"option": {}, "GridRowCount": vg.shape[-2], "GridColCount": vg.shape[-1]}
    if vg.ndim == 3:
        out["GridSliceCount"] = vg.shape[0]
    for axis, a, b in zip("XYZ", lo, hi, strict=False):
        out["option"][f"WindowMin{axis}"] = float(a)
        out["option"][f"WindowMax{axis}"] = float(b)
    return out


# ---------------------------------------------------------------------------------------------- projection
def _angle_vectors(kind: str, p: Mapping[str, Any]) -> np.ndarray:
    """``astra.geom_2vec``'s vector rows for an angle-based type (ASTRA's own frame)."""
    angles = _array(p["ProjectionAngles"], "proj_geom['ProjectionAngles']")
    s, c, zero = np.sin(angles), np.cos(angles), np.zeros_like(angles)
    ray = np.stack([s, -c], axis=1)
    if kind in ("parallel", "fanflat"):
        width = _number(p["DetectorWidth"], "proj_geom['DetectorWidth']", positive=True)
        det_u = np.stack([c, s], axis=1) * width
        if kind == "parallel":
            return np.concatenate([ray, np.zeros_like(ray), det_u], axis=1)
        so = _number(p["DistanceOriginSource"], "proj_geom['DistanceOriginSource']", positive=True)
        od = _number(p["DistanceOriginDetector"], "proj_geom['DistanceOriginDetector']")
        return np.concatenate([ray * so, -ray * od, det_u], axis=1)
    sx = _number(p["DetectorSpacingX"], "proj_geom['DetectorSpacingX']", positive=True)
    sy = _number(p["DetectorSpacingY"], "proj_geom['DetectorSpacingY']", positive=True)
    det_u = np.stack([c * sx, s * sx, zero], axis=1)
    det_v = np.stack([zero, zero, zero + sy], axis=1)
    ray3 = np.stack([s, -c, zero], axis=1)
    if kind == "parallel3d":
        return np.concatenate([ray3, np.zeros_like(ray3), det_u, det_v], axis=1)
    so = _number(p["DistanceOriginSource"], "proj_geom['DistanceOriginSource']", positive=True)
    od = _number(p["DistanceOriginDetector"], "proj_geom['DistanceOriginDetector']")
    return np.concatenate([ray3 * so, -ray3 * od, det_u, det_v], axis=1)


def _projection_from_astra(proj_geom: Mapping[str, Any]) -> ProjectionGeometry:
    if not isinstance(proj_geom, Mapping):
        raise TypeError(f"proj_geom must be an ASTRA proj_geom dict, not {type(proj_geom).__name__}")
    kind = _get(proj_geom, "type", "proj_geom", f"expected one of {TYPES_2D + TYPES_3D}")
    if not isinstance(kind, str) or kind not in _NEEDS:
        hint = " (curved detectors are not supported here)" if kind == "cyl_cone_vec" else ""
        raise ValueError(f"proj_geom['type'] must be one of {TYPES_2D + TYPES_3D}, got {kind!r}{hint}")
    for key in _NEEDS[kind]:
        _get(proj_geom, key, "proj_geom", f"a {kind!r} geometry needs {', '.join(_NEEDS[kind])}")
    beam = "parallel" if kind.startswith("parallel") else "cone"
    if kind in TYPES_2D:
        shape: tuple[int, ...] = (_count(proj_geom["DetectorCount"], "proj_geom['DetectorCount']"),)
    else:
        shape = (
            _count(proj_geom["DetectorRowCount"], "proj_geom['DetectorRowCount']"),
            _count(proj_geom["DetectorColCount"], "proj_geom['DetectorColCount']"),
        )
    dim = len(shape) + 1
    if kind.endswith("_vec"):
        vectors = _array(proj_geom["Vectors"], "proj_geom['Vectors']", 3 * dim if dim == 2 else 12)
    else:
        vectors = _angle_vectors(kind, proj_geom)
    if dim == 2:  # into drct's frame: negate y of src/ray, det and u
        vectors = vectors * np.tile(_FLIP_Y_2D, 3)
    src, det, det_u = vectors[:, :dim], vectors[:, dim : 2 * dim], vectors[:, 2 * dim : 3 * dim]
    det_v = vectors[:, 9:12] if dim == 3 else None
    try:
        return ProjectionGeometry(beam, src, det, det_u, det_v, shape)
    except ValueError as err:
        raise ValueError(f"proj_geom (type {kind!r}) describes a degenerate geometry: {err}") from err


def from_astra(vol_geom: AstraDict, proj_geom: AstraDict) -> tuple[VolumeGeometry, ProjectionGeometry]:
    """drct geometries from ASTRA's volume and projection geometry dicts (ASTRA itself is not needed).

    The result projects any array ``x`` as ASTRA projects that same array: ``ct.Projector(vg, pg)(x)``
    matches ``astra.create_sino(x, ...)`` in 2D, and ``sino_from_astra(astra.create_sino3d_gpu(x, ...))``
    in 3D (ASTRA's 3D sinograms are ``(rows, views, cols)``; drct's are ``(views, rows, cols)``). In 2D the
    geometry is mirrored in ``y`` (see the module docstring), so ``pg`` differs from ASTRA's vectors by the
    sign of their ``y`` components.

    Args:
        vol_geom: from ``astra.create_vol_geom`` (``GridRowCount``, ``GridColCount``, optional
            ``GridSliceCount`` and ``option`` ``WindowMin*``/``WindowMax*``; pixels may be non-square).
        proj_geom: from ``astra.create_proj_geom``, of type ``parallel``, ``parallel_vec``, ``fanflat``,
            ``fanflat_vec``, ``parallel3d``, ``parallel3d_vec``, ``cone`` or ``cone_vec``.

    Returns:
        ``(vg, pg)``: a :class:`~drct.VolumeGeometry` and a flat-detector :class:`~drct.ProjectionGeometry`.

    Raises:
        ValueError: unknown type, missing key, wrong shape, non-finite or non-positive value (the message
            names the key), or a 2D volume with a 3D projection type (or the reverse).

    Example:
        >>> import numpy as np, drct as ct
        >>> vol = {"GridRowCount": 64, "GridColCount": 64, "option": {}}
        >>> proj = {"type": "parallel", "DetectorWidth": 1.0, "DetectorCount": 96,
        ...         "ProjectionAngles": np.linspace(0, np.pi, 90, endpoint=False)}
        >>> vg, pg = ct.from_astra(vol, proj)
        >>> vg.shape, pg.shape
        ((64, 64), (90, 96))
    """
    vg = _volume_from_astra(vol_geom)
    pg = _projection_from_astra(proj_geom)
    if vg.ndim != pg.ndim:
        raise ValueError(
            f"vol_geom is {vg.ndim}D ({'with' if vg.ndim == 3 else 'no'} GridSliceCount) but proj_geom type "
            f"{proj_geom['type']!r} is {pg.ndim}D"
        )
    return vg, pg


def to_astra(vg: VolumeGeometry, pg: ProjectionGeometry) -> tuple[dict[str, Any], dict[str, Any]]:
    """ASTRA volume and projection geometry dicts for drct geometries; the inverse of :func:`from_astra`.

    The projection dict is always of a vector type (``parallel_vec``, ``fanflat_vec``, ``parallel3d_vec`` or
    ``cone_vec``), with ``Vectors`` a float64 array; ``from_astra(*to_astra(vg, pg))`` gives back ``vg`` and
    ``pg`` (to rounding). Pass the dicts to ``astra.create_vol_geom``-style consumers as they are.

    Args:
        vg: the volume grid.
        pg: a flat-detector projection geometry.

    Raises:
        ValueError: ``pg`` has a curved detector or is a ray list (ASTRA's types cannot express either), or
            ``vg`` and ``pg`` differ in dimension.

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((32, 48), voxel_size=0.5)
        >>> vol, proj = ct.to_astra(vg, ct.fan(np.linspace(0, 2 * np.pi, 8), 64, 1.0, 100.0, 150.0))
        >>> proj["type"], proj["Vectors"].shape, vol["GridRowCount"], vol["option"]["WindowMaxX"]
        ('fanflat_vec', (8, 6), 32, 12.0)
    """
    if not isinstance(vg, VolumeGeometry):
        raise TypeError(f"vg must be a drct.VolumeGeometry, got {type(vg).__name__}")
    if isinstance(pg, RayGeometry):
        raise ValueError("a ray list (ct.rays) has no ASTRA geometry type: ASTRA's types describe detectors")
    if not isinstance(pg, ProjectionGeometry):
        raise TypeError(f"pg must be a drct.ProjectionGeometry, got {type(pg).__name__}")
    if pg.curved:
        raise ValueError(
            "a curved detector has no ASTRA equivalent among parallel/fanflat/parallel3d/cone(_vec), which "
            "are all flat; use a flat detector (curved=False) to exchange geometries with ASTRA"
        )
    if vg.ndim != pg.ndim:
        raise ValueError(f"vg is {vg.ndim}D (shape {vg.shape}) but pg is {pg.ndim}D ({pg!r})")
    vectors = pg.to_vectors()
    if pg.ndim == 2:  # back to ASTRA's frame (its 2D rows run downwards)
        vectors = vectors * np.tile(_FLIP_Y_2D, 3)
        kind = "parallel_vec" if pg.beam == "parallel" else "fanflat_vec"
        proj: dict[str, Any] = {"type": kind, "DetectorCount": pg.det_shape[0], "Vectors": vectors}
    else:
        kind = "parallel3d_vec" if pg.beam == "parallel" else "cone_vec"
        rows, cols = pg.det_shape
        proj = {"type": kind, "DetectorRowCount": rows, "DetectorColCount": cols, "Vectors": vectors}
    return _volume_to_astra(vg), proj


def _swap_views_rows(sino: Any, expected: str) -> np.ndarray:
    """Swap the first two axes of a 3D sinogram (a view, no copy); 2D sinograms pass unchanged."""
    arr = np.asarray(sino)
    if arr.ndim == 2:
        return arr
    if arr.ndim != 3:
        raise ValueError(f"{expected}, not {arr.shape}")
    return np.transpose(arr, (1, 0, 2))


def sino_from_astra(sino: Any) -> np.ndarray:
    """An ASTRA sinogram in drct's axis order: 3D ``(rows, views, cols)`` -> ``(views, rows, cols)``.

    2D sinograms are ``(views, cols)`` in both and are returned unchanged. The 3D result is a transposed view.

    Example:
        >>> import numpy as np
        >>> sino_from_astra(np.zeros((4, 10, 6))).shape
        (10, 4, 6)
    """
    return _swap_views_rows(sino, "an ASTRA sinogram is 2D (views, cols) or 3D (rows, views, cols)")


def sino_to_astra(sino: Any) -> np.ndarray:
    """A drct sinogram in ASTRA's axis order: 3D ``(views, rows, cols)`` -> ``(rows, views, cols)``.

    The inverse of :func:`sino_from_astra`; 2D sinograms are returned unchanged. For ASTRA's ``data3d``
    functions, which need C-contiguous float32, pass ``np.ascontiguousarray(sino_to_astra(y), np.float32)``.

    Example:
        >>> import numpy as np
        >>> sino_to_astra(np.zeros((10, 4, 6))).shape
        (4, 10, 6)
    """
    return _swap_views_rows(sino, "a drct sinogram is 2D (views, cols) or 3D (views, rows, cols)")
