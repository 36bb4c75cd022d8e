"""SPECT acquisition geometry: a parallel-hole camera on a circular or body-contour orbit around the ``z`` axis.

drct's parallel-beam conventions (:func:`drct.parallel`): at view angle ``θ`` the detector columns run along
``e_u = (cos θ, sin θ)``, the rows along ``z``, and the camera looks back at the axis from the side of
``e_d = (-sin θ, cos θ)``: photons travel along ``e_d`` to the collimator, whose face is at distance ``R(θ)``
(the radius of rotation, per view for body-contour orbits) from the axis.
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


@dataclass(frozen=True, eq=False)
class SpectGeometry:
    """Views of a parallel-hole SPECT camera (see the module docstring for the axes).

    Attributes:
        angles: view angles (radians), shape ``(V,)``.
        radius: distance (mm) from the rotation axis to the collimator face, per view, shape ``(V,)``.
        det_shape: ``(rows, cols)``; rows run along ``z``.
        det_spacing: ``(row_pitch, col_pitch)`` in mm.

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
        return SpectGeometry(self.angles[idx].copy(), self.radius[idx].copy(), self.det_shape, self.det_spacing)

    def __repr__(self) -> str:
        r = self.radius
        orbit = f"radius={r[0]:g} mm" if np.all(r == r[0]) else f"radius {r.min():g}..{r.max():g} mm"
        return (
            f"SpectGeometry({self.num_views} views, {orbit}, det_shape={self.det_shape}, "
            f"det_spacing={self.det_spacing})"
        )


def spect(angles: Any, radius: Any, det_shape: tuple[int, int], det_spacing: Any) -> SpectGeometry:
    """A parallel-hole SPECT geometry on a circular (one ``radius``) or body-contour (one radius per view) orbit.

    Args:
        angles: view angles in radians.
        radius: distance (mm) from the rotation axis to the collimator face: one number, or one per view.
        det_shape: ``(rows, cols)``; the rows must match the volume's ``z`` slices (same count and pitch).
        det_spacing: pixel pitch in mm, one number or ``(row_pitch, col_pitch)``.

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
    r = np.asarray(radius, dtype=np.float64)
    if r.ndim == 0:
        r = np.full(a.size, float(r))
    if r.shape != a.shape:
        raise ValueError(f"spect: radius must be one number or one per view ({a.size}), got shape {r.shape}")
    require_finite(r, "radius")
    if np.any(r <= 0):
        raise ValueError(f"spect: radius must be > 0 mm for every view, got min {r.min():g}")
    try:
        rows, cols = (int(n) for n in det_shape)
    except (TypeError, ValueError):
        raise TypeError(f"spect: det_shape must be (rows, cols), got {det_shape!r}") from None
    if rows < 1 or cols < 1:
        raise ValueError(f"spect: det_shape entries must be >= 1, got {det_shape!r}")
    return SpectGeometry(a, r, (rows, cols), _positive_pair(det_spacing, "det_spacing"))
