"""Rays of a projection geometry as (lazy) Dr.Jit arrays, in sinogram order.

A ray is ``o + t * d`` with ``|d| = 1`` and ``t`` in ``[t_min, t_max]`` (millimetres): the whole line for parallel
beams and ray lists, the segment from the source to the pixel centre for cone/fan beams. Everything is
computed in float64 so that far-away sources do not cost precision; nothing is evaluated here, so the ray set-up
fuses into the kernel that consumes it. Pixel positions and directions come from :mod:`drct.geometry.detector`.

Example:
    >>> import drjit as dr, numpy as np, drct as ct
    >>> from drct.backend import types
    >>> pg = ct.fan(np.array([0.0]), 3, 1.0, 40.0, 60.0)
    >>> t = types("float64", "llvm")
    >>> rays = make_rays(pg, t, geometry_vectors(pg, t), dr.arange(t.UInt, pg.num_rays))
    >>> [float(c[1]) for c in rays.origin], np.round(np.asarray(rays.t_max), 6).tolist()  # source; |pixel - source|
    ([0.0, -40.0], [60.008333, 60.0, 60.008333])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import drjit as dr
import numpy as np

from ..backend import Types, upload
from .detector import detector_frame, normalize, ray_through
from .projection import AnyGeometry, ProjectionGeometry, is_drjit

Vec = list[Any]  # one Dr.Jit array per point axis (x, y[, z])
Vectors = dict[str, Vec]  # a geometry's vectors by name (source, detector centre, u, v, ...), one Vec each


@dataclass
class Rays:
    """Per-ray origins, unit directions and parameter range, float64 Dr.Jit arrays."""

    origin: Vec
    direction: Vec
    t_min: Any
    t_max: Any


def upload_vectors(rows: np.ndarray, t: Types) -> Vec:
    """Columns of a ``(n, ndim)`` float64 array as Dr.Jit float64 arrays."""
    return [upload(t.Float64, rows[:, i]) for i in range(rows.shape[1])]


def ray_views(pg: AnyGeometry, t: Types, index: Any) -> Any:
    """Index of the vector set (view, or ray for ray lists) of the rays with flat sinogram indices ``index``."""
    if not isinstance(pg, ProjectionGeometry):
        return index
    return index // (pg.num_rays // pg.num_views)


def per_ray(vectors: dict[str, Vec], t: Types, views: Any) -> dict[str, Vec]:
    """The geometry vectors gathered to one set per ray."""
    return {name: [dr.gather(t.Float64, c, views) for c in comps] for name, comps in vectors.items()}


def make_rays(pg: AnyGeometry, t: Types, vectors: dict[str, Vec], index: Any) -> Rays:
    """The rays of ``pg`` with flat sinogram indices ``index`` (a ``t.UInt`` array) from its per-view vectors
    (``geometry_vectors``: ``src, det, det_u[, det_v]`` or ``origins, directions``)."""
    return rays_from(pg, t, per_ray(vectors, t, ray_views(pg, t, index)), index)


def rays_from(pg: AnyGeometry, t: Types, vectors: dict[str, Vec], index: Any) -> Rays:
    """The rays of ``pg`` with flat sinogram indices ``index`` from geometry vectors already gathered per ray."""
    count = dr.width(index)
    inf = dr.full(t.Float64, dr.inf, count)
    if not isinstance(pg, ProjectionGeometry):
        direction, _ = normalize(vectors["directions"])
        return Rays(vectors["origins"], direction, -inf, inf)

    cols = pg.det_shape[-1]
    rows = pg.det_shape[0] if pg.ndim == 3 else 1
    pixel = index % (rows * cols)
    row = pixel // cols
    col = pixel - row * cols
    src = vectors["src"]
    frame = detector_frame(src, vectors["det"], vectors["det_u"], vectors.get("det_v"), pg.curved)
    position, _ = frame.pixel(t.Float64(col) - (cols - 1) / 2, t.Float64(row) - (rows - 1) / 2)
    direction, length = ray_through(src, position, pg.beam)
    if length is None:
        return Rays(position, direction, -inf, inf)
    return Rays(src, direction, dr.zeros(t.Float64, count), length)


def _vectors(value: Any, t: Types, name: str) -> Vec:
    """One field of a geometry as per-axis float64 Dr.Jit arrays; Dr.Jit fields keep their AD graph."""
    if not is_drjit(value):
        return upload_vectors(np.asarray(value), t)
    backend = "cuda" if dr.backend_v(value) == dr.JitBackend.CUDA else "llvm"
    if backend != t.backend:
        raise ValueError(
            f"geometry vectors {name!r} live on Dr.Jit's {backend!r} backend but the operator runs on {t.backend!r}; "
            "build both on the same backend"
        )
    if not dr.is_diff_v(value):
        raise TypeError(f"geometry vectors {name!r} must be differentiable Dr.Jit arrays (drjit.{backend}.ad.*)")
    return [t.Float64(c) for c in value]


def detached(vectors: Vectors) -> Vectors:
    """The geometry vectors without their AD graph (the kernels' inputs; the derivative passes chain to them)."""
    return {name: [dr.detach(c) for c in comps] for name, comps in vectors.items()}


def geometry_vectors(pg: AnyGeometry, t: Types) -> Vectors:
    """The per-view vectors of ``pg`` as Dr.Jit float64 arrays, for :func:`make_rays`."""
    names = ("src", "det", "det_u", "det_v") if isinstance(pg, ProjectionGeometry) else ("origins", "directions")
    return {name: _vectors(getattr(pg, name), t, name) for name in names if getattr(pg, name) is not None}
