"""The exact line integral of a B-spline volume: a DDA over the knot grid with Gauss–Legendre quadrature.

Coordinates: ``w = (p - first_center) / h + (n + 1) / 2`` per axis, for a volume of degree ``n``. In ``w`` the
support of the continuous volume is the box ``[0, N + n]`` and cell ``k = floor(w)`` of the knot grid is touched
by the coefficients ``k .. k + n`` of the array zero-padded by ``n`` on every side. Inside a cell the volume is a
polynomial of degree ``n`` per axis, so ``ceil((ndim * n + 1) / 2)`` Gauss–Legendre nodes integrate it exactly.

The forward projection gathers the ``(n + 1)^ndim`` coefficients of each cell once and weights them; the
adjoint scatters the same weights times the ray's value, so it is the exact transpose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import product
from typing import Any

import drjit as dr

from ..backend import Types
from ..geometry.volume import VolumeGeometry
from ..volume import bspline_segments, gauss_legendre_01, quadrature_order
from .rays import Rays, Vec


@dataclass(frozen=True)
class KnotGrid:
    """Static description of one volume's knot grid (point axis order x, y[, z])."""

    degree: int
    shape: tuple[int, ...]  # coefficients per axis
    nodes: tuple[float, ...]
    weights: tuple[float, ...]

    @staticmethod
    def of(vg: VolumeGeometry, degree: int) -> KnotGrid:
        nodes, weights = gauss_legendre_01(quadrature_order(degree, vg.ndim))
        return KnotGrid(degree, vg.shape_xyz, tuple(nodes), tuple(weights))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def cells(self) -> tuple[int, ...]:
        return tuple(n + self.degree for n in self.shape)

    @property
    def padded(self) -> tuple[int, ...]:
        return tuple(n + 2 * self.degree for n in self.shape)

    @property
    def strides(self) -> tuple[int, ...]:
        out, step = [], 1
        for n in self.padded:
            out.append(step)
            step *= n
        return tuple(out)

    @property
    def offsets(self) -> list[int]:
        """Flat offsets of the ``(n + 1)^ndim`` coefficients of a cell, in the order of :func:`cell_weights`."""
        span = range(self.degree + 1)
        return [sum(j * s for j, s in zip(js, self.strides, strict=True)) for js in product(span, repeat=self.ndim)]


@dataclass
class Segments:
    """Rays clipped to the support box, in knot-grid units: ``w(t) = entry + t * direction``, ``0 <= t <= length``."""

    entry: Vec
    direction: Vec
    length: Any


def clip_rays(rays: Rays, grid: KnotGrid, first_center: Vec, spacing: Vec, t: Types) -> Segments:
    """Clip rays (float64, mm) to the support of the volume; misses get length 0. Returns ``t.Float`` arrays."""
    shift = (grid.degree + 1) / 2
    origin = [(o - c) / h + shift for o, c, h in zip(rays.origin, first_center, spacing, strict=True)]
    direction = [d / h for d, h in zip(rays.direction, spacing, strict=True)]
    t0, t1 = rays.t_min, rays.t_max
    for o, d, hi in zip(origin, direction, grid.cells, strict=True):
        parallel = d == 0
        inside = (o >= 0) & (o <= hi)
        ta = -o / d
        tb = (hi - o) / d
        near = dr.select(parallel, dr.select(inside, -dr.inf, dr.inf), dr.minimum(ta, tb))
        far = dr.select(parallel, dr.select(inside, dr.inf, -dr.inf), dr.maximum(ta, tb))
        t0 = dr.maximum(t0, near)
        t1 = dr.minimum(t1, far)
    hit = t0 < t1
    t0 = dr.select(hit, t0, 0.0)
    entry = [t.Float(dr.select(hit, o + t0 * d, 0.0)) for o, d in zip(origin, direction, strict=True)]
    return Segments(entry, [t.Float(d) for d in direction], t.Float(dr.select(hit, t1 - t0, 0.0)))


def cell_weights(grid: KnotGrid, local: Vec, step: Vec, seg: Any) -> list[Any]:
    """Exact integrals over one segment of each cell coefficient's basis function.

    ``local`` is the in-cell position at the segment start, ``step`` the change of it per mm, ``seg`` the
    segment length in mm. Returned in the order of :attr:`KnotGrid.offsets`.
    """
    n = grid.degree
    if n == 0:
        return [seg]
    total: list[Any] = [0.0] * (n + 1) ** grid.ndim
    for xi, omega in zip(grid.nodes, grid.weights, strict=True):
        along = seg * xi
        per_axis = [bspline_segments(n, s + along * d) for s, d in zip(local, step, strict=True)]
        # offsets enumerate (j_x, j_y[, j_z]) with j_x slowest: build the products in the same order
        products: list[Any] = [omega]
        for values in per_axis:
            products = [p * v for p in products for v in values]
        total = [a + p for a, p in zip(total, products, strict=True)]
    return [w * seg for w in total]


def march(
    grid: KnotGrid,
    t: Types,
    segs: Segments,
    visit: Callable[[Any, Any, list[Any]], Any],
    acc: Any,
) -> Any:
    """Walk every ray through the knot cells it crosses, calling ``visit(acc, base_index, weights)`` per cell.

    ``base_index`` is the flat index (padded array) of the cell's first coefficient; ``visit`` returns the new
    accumulator. The loop is symbolic: one kernel, no per-step graph.
    """
    entry, direction, length = segs.entry, segs.direction, segs.length
    ndim = grid.ndim
    forward = [d > 0 for d in direction]
    still = [d == 0 for d in direction]
    inv = [dr.select(z, 0.0, dr.rcp(d)) for z, d in zip(still, direction, strict=True)]
    cell0 = [dr.clip(t.Int(dr.floor(e)), 0, c - 1) for e, c in zip(entry, grid.cells, strict=True)]
    step = [dr.select(f, t.Int(1), t.Int(-1)) for f in forward]
    strides = grid.strides

    def cond(pos: Any, acc: Any, *cell: Any) -> Any:
        alive = pos < length
        for k, c in zip(cell, grid.cells, strict=True):
            alive &= (k >= 0) & (k < c)
        return alive

    def body(pos: Any, acc: Any, *cell: Any) -> tuple[Any, ...]:
        cell_f = [t.Float(k) for k in cell]
        crossing = [
            dr.select(z, dr.inf, (kf + dr.select(f, 1.0, 0.0) - e) * i)
            for z, kf, f, e, i in zip(still, cell_f, forward, entry, inv, strict=True)
        ]
        end = length
        for c in crossing:
            end = dr.minimum(end, c)
        seg = dr.maximum(end - pos, 0.0)
        local = [e - kf + pos * d for e, kf, d in zip(entry, cell_f, direction, strict=True)]
        weights = cell_weights(grid, local, direction, seg)
        base = cell[0] * strides[0]
        for a in range(1, ndim):
            base = base + cell[a] * strides[a]
        acc = visit(acc, t.UInt(base), weights)
        moved = tuple(k + dr.select(c <= end, s, 0) for k, c, s in zip(cell, crossing, step, strict=True))
        return (end, acc, *moved)

    state = (dr.zeros(t.Float, dr.width(length)), acc, *cell0)
    out = dr.while_loop(state, cond, body, label="drct_march")
    return out[1]


def project(grid: KnotGrid, t: Types, segs: Segments, coeffs: Any) -> Any:
    """Line integrals of the padded coefficient array ``coeffs`` (flat, ``t.Float``) along ``segs``."""
    offsets = grid.offsets

    def gather_weighted(acc: Any, base: Any, weights: list[Any]) -> Any:
        for off, w in zip(offsets, weights, strict=True):
            acc = dr.fma(dr.gather(t.Float, coeffs, base + off), w, acc)
        return acc

    return march(grid, t, segs, gather_weighted, dr.zeros(t.Float, dr.width(segs.length)))


def backproject(grid: KnotGrid, t: Types, segs: Segments, values: Any, target: Any) -> None:
    """Add the transpose of :func:`project` applied to ``values`` (one per ray) into ``target`` (padded, flat)."""
    offsets = grid.offsets

    def scatter_weighted(acc: Any, base: Any, weights: list[Any]) -> Any:
        for off, w in zip(offsets, weights, strict=True):
            dr.scatter_add(target, values * w, base + off, mode=dr.ReduceMode.Expand)
        return acc

    march(grid, t, segs, scatter_weighted, dr.zeros(t.Float, dr.width(segs.length)))
