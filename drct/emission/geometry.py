"""SPECT acquisition geometry: a parallel-hole camera on a circular or body-contour orbit around the ``z`` axis.

drct's parallel-beam conventions (:func:`drct.parallel`): at view angle ``θ`` the detector columns run along
``e_u = (cos θ, sin θ)``, the rows along ``z``, and the camera looks back at the axis from the side of
``e_d = (-sin θ, cos θ)``: photons travel along ``e_d`` to the collimator, whose face is at distance ``R(θ)``
(the radius of rotation, per view for body-contour orbits) from the axis. A centre-of-rotation offset ``c(θ)``
moves the detector along ``e_u``: the ray of column ``i`` runs at ``s_i + c(θ)`` from the axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import require_finite


def _positive_pair(value: Any, name: str) -> tuple[float, float]:
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (2,))
    require_finite(arr, name)
    if np.any(arr <= 0):
        raise ValueError(f"spect: {name} must be > 0 mm, got {value!r}")
    return float(arr[0]), float(arr[1])


def _per_view(value: Any, views: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(views, float(arr))
    if arr.shape != (views,):
        raise ValueError(f"spect: {name} must be one number or one per view ({views}), got shape {arr.shape}")
    require_finite(arr, name)
    return arr


@dataclass(frozen=True, eq=False)
class SpectGeometry:
    """Views of a parallel-hole SPECT camera (see the module docstring for the axes).

    Attributes:
        angles: view angles (radians), shape ``(V,)``.
        radius: distance (mm) from the rotation axis to the collimator face, per view, shape ``(V,)``.
        det_shape: ``(rows, cols)``; rows run along ``z``.
        det_spacing: ``(row_pitch, col_pitch)`` in mm.
        offset: centre-of-rotation offset (mm along ``e_u``) per view, shape ``(V,)`` (zeros: a centred camera).

    Example:
        >>> import numpy as np, drct as ct
        >>> g = ct.spect(np.linspace(0, 2 * np.pi, 60, endpoint=False), 150.0, (64, 64), 4.0)  # a SpectGeometry
        >>> g.shape, float(g.radius[0])
        ((60, 64, 64), 150.0)
        >>> g.select_views([0, 30]).shape
        (2, 64, 64)
    """

    angles: np.ndarray
    radius: np.ndarray
    det_shape: tuple[int, int]
    det_spacing: tuple[float, float]
    offset: np.ndarray

    @property
    def num_views(self) -> int:
        return int(self.angles.size)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the projections: ``(views, rows, cols)``."""
        return (self.num_views, *self.det_shape)

    @property
    def ndim(self) -> int:
        return 3

    def select_views(self, views: Any) -> SpectGeometry:
        """The geometry of the given views (indices), in that order (for ordered subsets)."""
        idx = np.asarray(views, dtype=np.int64).reshape(-1)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= self.num_views:
            raise ValueError(f"views must be indices in [0, {self.num_views}), got {views!r}")
        return SpectGeometry(
            self.angles[idx].copy(), self.radius[idx].copy(), self.det_shape, self.det_spacing, self.offset[idx].copy()
        )

    def perturb(self, angle: Any = 0.0, radius: Any = 0.0, offset: Any = 0.0) -> SpectGeometry:
        """This geometry with the view angles, radii and centre-of-rotation offsets changed by the given amounts
        (numbers, one per view, or arrays that broadcast to ``(V,)``; radians and mm).

        Example:
            >>> import numpy as np, drct as ct
            >>> g = ct.spect([0.0, np.pi / 2], 100.0, (4, 8), 4.0).perturb(radius=[1.0, -2.0], offset=0.5)
            >>> g.radius.tolist(), g.offset.tolist()
            ([101.0, 98.0], [0.5, 0.5])
        """
        v = (self.num_views,)
        return spect(
            self.angles + np.broadcast_to(np.asarray(angle, dtype=np.float64), v),
            self.radius + np.broadcast_to(np.asarray(radius, dtype=np.float64), v),
            self.det_shape,
            self.det_spacing,
            self.offset + np.broadcast_to(np.asarray(offset, dtype=np.float64), v),
        )

    def __repr__(self) -> str:
        r = self.radius
        orbit = f"radius={r[0]:g} mm" if np.all(r == r[0]) else f"radius {r.min():g}..{r.max():g} mm"
        c = self.offset
        shift = "" if not np.any(c) else f", COR offset {c.min():g}..{c.max():g} mm"
        return (
            f"SpectGeometry({self.num_views} views, {orbit}{shift}, det_shape={self.det_shape}, "
            f"det_spacing={self.det_spacing})"
        )


def spect(angles: Any, radius: Any, det_shape: tuple[int, int], det_spacing: Any, offset: Any = 0.0) -> SpectGeometry:
    """A parallel-hole SPECT geometry on a circular (one ``radius``) or body-contour (one radius per view) orbit.

    Args:
        angles: view angles in radians.
        radius: distance (mm) from the rotation axis to the collimator face: one number, or one per view.
        det_shape: ``(rows, cols)``; the rows must match the volume's ``z`` slices (same count and pitch).
        det_spacing: pixel pitch in mm, one number or ``(row_pitch, col_pitch)``.
        offset: centre-of-rotation offset (mm along the detector columns): one number or one per view.

    Example:
        >>> import numpy as np, drct as ct
        >>> g = ct.spect(np.linspace(0, 2 * np.pi, 60, endpoint=False), 250.0, (40, 64), 4.8)
        >>> g.shape
        (60, 40, 64)
    """
    a = np.asarray(angles, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError("spect: angles must hold at least one view")
    require_finite(a, "angles")
    r = _per_view(radius, a.size, "radius")
    if np.any(r <= 0):
        raise ValueError(f"spect: radius must be > 0 mm for every view, got min {r.min():g}")
    try:
        rows, cols = (int(n) for n in det_shape)
    except (TypeError, ValueError):
        raise TypeError(f"spect: det_shape must be (rows, cols), got {det_shape!r}") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"spect: det_shape entries must be >= 1, got {det_shape!r}")
    c = _per_view(offset, a.size, "offset")
    return SpectGeometry(a, r, (rows, cols), _positive_pair(det_spacing, "det_spacing"), c)
