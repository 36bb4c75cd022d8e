"""Factories for the common scan geometries; all return vector-form geometries.

Lengths are millimetres and angles radians; each also takes a pint quantity (:mod:`drct.units`).

Angle convention (ASTRA's 3D one, used in 2D as well so that a 2D geometry is the ``z = 0`` slice of the
corresponding 3D one): at angle ``θ`` the source sits at ``(sin θ, -cos θ) * src_orig_dist``, the detector
centre at ``(-sin θ, cos θ) * (src_det_dist - src_orig_dist)``, the detector columns step along
``(cos θ, sin θ)`` and the rows along ``+z``. Parallel rays travel along ``(sin θ, -cos θ)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..units import angle, length
from ._checks import angles_array, as_positive, det_shape_tuple, finite_rows, finite_scalar, positive_scalar
from .projection import ProjectionGeometry, RayGeometry


def _spacing(det_spacing: Any, det_shape: tuple[int, ...]) -> tuple[float, float]:
    """(row spacing, column spacing)."""
    det_spacing = length(det_spacing, "det_spacing")
    if len(det_shape) == 1:
        return 1.0, positive_scalar(det_spacing, "det_spacing")
    rows, cols = as_positive(det_spacing, 2, "det_spacing")
    return float(rows), float(cols)


def _circular(
    angles: np.ndarray,
    det_shape: tuple[int, ...],
    det_spacing: Any,
    src_orig_dist: float | None,
    src_det_dist: float | None,
    z: np.ndarray | None = None,
    curved: bool = False,
) -> ProjectionGeometry:
    row_step, col_step = _spacing(det_spacing, det_shape)
    s, c = np.sin(angles), np.cos(angles)
    zero = np.zeros_like(angles)
    if src_orig_dist is None:  # parallel beam
        src = np.stack([s, -c], axis=1)
        det = np.zeros((angles.size, 2))
    else:
        assert src_det_dist is not None
        orig_det = src_det_dist - src_orig_dist
        src = np.stack([s, -c], axis=1) * src_orig_dist
        det = np.stack([-s, c], axis=1) * orig_det
    det_u = np.stack([c, s], axis=1) * col_step
    if len(det_shape) == 1:
        return ProjectionGeometry(
            "parallel" if src_orig_dist is None else "cone", src, det, det_u, None, det_shape, curved
        )
    height = zero if z is None else z
    src = np.concatenate([src, (zero if src_orig_dist is None else height)[:, None]], axis=1)
    det = np.concatenate([det, height[:, None]], axis=1)
    det_u = np.concatenate([det_u, zero[:, None]], axis=1)
    det_v = np.stack([zero, zero, zero + row_step], axis=1)
    return ProjectionGeometry(
        "parallel" if src_orig_dist is None else "cone", src, det, det_u, det_v, det_shape, curved
    )


def _distances(src_orig_dist: Any, src_det_dist: Any) -> tuple[float, float]:
    so = positive_scalar(length(src_orig_dist, "src_orig_dist"), "src_orig_dist")
    sd = positive_scalar(length(src_det_dist, "src_det_dist"), "src_det_dist")
    return so, sd


def parallel(angles: Any, det_shape: int | tuple[int, int], det_spacing: Any = 1.0) -> ProjectionGeometry:
    """Parallel-beam geometry on a circular orbit.

    Args:
        angles: projection angles in radians.
        det_shape: number of detector columns (2D), or ``(rows, cols)`` (3D).
        det_spacing: pixel pitch in mm; in 3D one number or ``(row_pitch, col_pitch)``.

    Example:
        >>> import numpy as np, drct as ct
        >>> ct.parallel(np.linspace(0, np.pi, 180, endpoint=False), 256).shape
        (180, 256)
    """
    return _circular(angles_array(angle(angles, "angles")), det_shape_tuple(det_shape), det_spacing, None, None)


def fan(
    angles: Any,
    det_count: int,
    det_spacing: Any,
    src_orig_dist: Any,
    src_det_dist: Any,
    curved: bool = False,
) -> ProjectionGeometry:
    """2D fan-beam geometry on a circular orbit, flat or equiangular (``curved=True``) detector.

    Args:
        angles: source angles in radians.
        det_count: number of detector pixels.
        det_spacing: pixel pitch in mm (the arc length per pixel at ``src_det_dist`` when curved).
        src_orig_dist: source to rotation-centre distance in mm.
        src_det_dist: source to detector-centre distance in mm.
        curved: equiangular detector (a circle arc centred on the source).

    Example:
        >>> import numpy as np, drct as ct
        >>> ct.fan(np.linspace(0, 2 * np.pi, 360, endpoint=False), 512, 1.2, 500.0, 1000.0).shape
        (360, 512)
    """
    shape = det_shape_tuple(det_count)
    if len(shape) != 1:
        raise ValueError(f"det_count must be one int for a 2D fan beam, got {det_count!r}; use ct.cone for 3D")
    so, sd = _distances(src_orig_dist, src_det_dist)
    return _circular(angles_array(angle(angles, "angles")), shape, det_spacing, so, sd, curved=curved)


def cone(
    angles: Any,
    det_shape: tuple[int, int],
    det_spacing: Any,
    src_orig_dist: Any,
    src_det_dist: Any,
    curved: bool = False,
) -> ProjectionGeometry:
    """3D cone-beam geometry on a circular orbit, flat or cylindrical (``curved=True``) detector.

    Args:
        angles: source angles in radians.
        det_shape: ``(rows, cols)``.
        det_spacing: pixel pitch in mm, one number or ``(row_pitch, col_pitch)``.
        src_orig_dist: source to rotation-axis distance in mm.
        src_det_dist: source to detector-centre distance in mm.
        curved: cylindrical detector centred on the source, axis along the rows (``z``).

    Example:
        >>> import numpy as np, drct as ct
        >>> ct.cone(np.linspace(0, 2 * np.pi, 180, endpoint=False), (128, 128), 2.0, 300.0, 600.0).shape
        (180, 128, 128)
    """
    shape = det_shape_tuple(det_shape)
    if len(shape) != 2:
        raise ValueError(f"det_shape must be (rows, cols) for a cone beam, got {det_shape!r}; use ct.fan for 2D")
    so, sd = _distances(src_orig_dist, src_det_dist)
    return _circular(angles_array(angle(angles, "angles")), shape, det_spacing, so, sd, curved=curved)


def helix(
    angles: Any,
    pitch: Any,
    det_shape: tuple[int, int],
    det_spacing: Any,
    src_orig_dist: Any,
    src_det_dist: Any,
    curved: bool = False,
) -> ProjectionGeometry:
    """Helical cone-beam geometry: the circular orbit of :func:`cone` rising ``pitch`` mm per turn.

    Source and detector centre sit at ``z = pitch * θ / (2π)``; choose the angles so that the helix is centred
    on the volume (e.g. from ``-turns * π`` to ``turns * π``).

    Example:
        >>> import numpy as np, drct as ct
        >>> pg = ct.helix(np.linspace(-2 * np.pi, 2 * np.pi, 200), 20.0, (16, 64), 1.0, 200.0, 400.0)
        >>> float(pg.src[-1, 2])
        20.0
    """
    shape = det_shape_tuple(det_shape)
    if len(shape) != 2:
        raise ValueError(f"det_shape must be (rows, cols) for a helix, got {det_shape!r}")
    rise = finite_scalar(length(pitch, "pitch"), "pitch")
    theta = angles_array(angle(angles, "angles"))
    so, sd = _distances(src_orig_dist, src_det_dist)
    return _circular(theta, shape, det_spacing, so, sd, z=theta * rise / (2 * np.pi), curved=curved)


def from_vectors(
    vectors: Any, det_shape: int | tuple[int, int], beam: str = "cone", curved: bool = False
) -> ProjectionGeometry:
    """A geometry from ASTRA-style vector rows, one per view.

    Args:
        vectors: ``(views, 6)`` rows ``(src|ray, det, u)`` in 2D or ``(views, 12)`` rows ``(src|ray, det, u, v)``
            in 3D, as in ASTRA's ``parallel_vec``/``fanflat_vec``/``parallel3d_vec``/``cone_vec``.
        det_shape: detector columns (2D) or ``(rows, cols)`` (3D).
        beam: ``"parallel"`` (first columns are the ray direction) or ``"cone"`` (they are the source).
        curved: cylindrical/equiangular detector (cone beam only).

    Example:
        >>> import numpy as np, drct as ct
        >>> pg = ct.fan(np.linspace(0, np.pi, 4), 32, 1.0, 100.0, 200.0)
        >>> pg2 = ct.from_vectors(pg.to_vectors(), 32, beam="cone")
        >>> bool(np.array_equal(pg2.to_vectors(), pg.to_vectors()))
        True
    """
    shape = det_shape_tuple(det_shape)
    dim = len(shape) + 1
    rows = finite_rows(vectors, 3 * dim if dim == 2 else 12, "vectors")
    src, det, det_u = rows[:, :dim], rows[:, dim : 2 * dim], rows[:, 2 * dim : 3 * dim]
    det_v = rows[:, 9:12] if dim == 3 else None
    return ProjectionGeometry(beam, src, det, det_u, det_v, shape, curved)


def rays(origins: Any, directions: Any) -> RayGeometry:
    """Arbitrary lines through the volume, each integrated over its whole length.

    Args:
        origins: ``(n, 2)`` or ``(n, 3)`` points, one on each line.
        directions: same shape, the line directions (any non-zero length).

    Example:
        >>> import drct as ct
        >>> ct.rays([[0.0, 0.0, -100.0]], [[0.0, 0.0, 1.0]]).shape
        (1,)
    """
    return RayGeometry(origins, directions)
