"""Differentiable rays of a projection geometry for the analytic objects (from :mod:`drct.geometry.ray_arrays`)."""

from __future__ import annotations

from typing import Any

from ..backend import Types, lanes
from ..geometry import ray_arrays as _rays
from ..geometry.projection import ProjectionGeometry


def geometry_rays(pg: ProjectionGeometry, t: Types, start: int, count: int) -> Any:
    """Rays ``start .. start + count`` of ``pg`` (float64; AD flows from Dr.Jit geometry vectors).

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.backend import types
        >>> from drct.scene.rays import geometry_rays
        >>> pg = ct.fan([0.0, 0.5], 5, 1.0, 100.0, 150.0)  # 2 views of 5 pixels, source-detector 150 mm
        >>> rays = geometry_rays(pg, types("float64"), 0, 10)
        >>> bool(np.allclose(rays.direction[0].numpy() ** 2 + rays.direction[1].numpy() ** 2, 1.0))
        True
        >>> round(float(rays.t_min.numpy()[2]), 9), round(float(rays.t_max.numpy()[2]), 9)  # source to detector
        (0.0, 150.0)
    """
    vectors = _rays.geometry_vectors(pg, t)
    return _rays.make_rays(pg, t, vectors, lanes(t, start, count))
