"""Differentiable rays of a projection geometry for the analytic objects (from :mod:`drct.geometry.ray_arrays`)."""

from __future__ import annotations

from typing import Any

import drjit as dr

from ..backend import Types
from ..geometry import ray_arrays as _rays
from ..geometry.projection import ProjectionGeometry


def geometry_rays(pg: ProjectionGeometry, t: Types, start: int, count: int) -> Any:
    """Rays ``start .. start + count`` of ``pg`` (float64; AD flows from Dr.Jit geometry vectors)."""
    vectors = _rays.geometry_vectors(pg, t)
    return _rays.make_rays(pg, t, vectors, dr.arange(t.UInt, start, start + count))
