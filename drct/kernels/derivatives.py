"""Derivatives of every ray integral w.r.t. the ray: one march per chunk of rays.

For the B-spline bases (degree >= 1) the march integrates ``∂f/∂w`` and ``s ∂f/∂w`` along each ray with the
cell's coefficients carried in the same sliding window as the forward projection (and, when the volume
gradient is wanted too, the adjoint weights in the window of the backprojection). The box basis is piecewise
constant: its derivative is the sum of the jumps at the cell faces the ray crosses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import drjit as dr

from ..backend import Types
from ..geometry.ray_arrays import Vec
from ..volume import bspline_segment_slopes, bspline_segments
from .march import (
    Cell,
    KnotGrid,
    Segments,
    Window,
    cell_weights,
    gather_cell,
    march,
    scatter_cell,
    scatter_mode,
)


def _contract(coeffs: list[Any], per_axis: list[list[Any]]) -> Any:
    """``Σ_j c_j Π_a b_a[j_a]`` for coefficients in ``grid.offsets`` order (first axis slowest)."""
    values = coeffs
    for b in reversed(per_axis):  # contract the fastest axis first
        width = len(b)
        values = [
            sum((v * w for v, w in zip(values[i : i + width], b, strict=True)), start=0.0)
            for i in range(0, len(values), width)
        ]
    return values[0]


def cell_derivatives(
    grid: KnotGrid, cell: Cell, coeffs: list[Any], flip: list[Any] | None = None
) -> tuple[list[Any], list[Any], Any, Any]:
    """Integrals over the segment of ``∂f/∂w_a`` and ``s ∂f/∂w_a`` (``s`` = distance from the segment start, mm),
    and the values of ``f`` at the segment's two ends, for the cell coefficients ``coeffs`` (ordered as
    :func:`cell_weights` orders its weights for the same ``flip``)."""
    n = grid.degree

    def at(s: list[Any], slope_axis: int | None) -> Any:
        per_axis = [
            bspline_segment_slopes(n, x) if a == slope_axis else bspline_segments(n, x) for a, x in enumerate(s)
        ]
        if flip is not None:
            per_axis = [
                [dr.select(f, b[n - j], b[j]) for j in range(n + 1)] for f, b in zip(flip, per_axis, strict=True)
            ]
        return _contract(coeffs, per_axis)

    start = at(cell.local, None)
    end = at([s + cell.length * d for s, d in zip(cell.local, cell.direction, strict=True)], None)
    grad = [0.0] * grid.ndim
    moment = [0.0] * grid.ndim
    if n > 0:
        for xi, omega in zip(grid.nodes, grid.weights, strict=True):
            along = cell.length * xi
            s = [x + along * d for x, d in zip(cell.local, cell.direction, strict=True)]
            for a in range(grid.ndim):
                slope = at(s, a) * (omega * cell.length)
                grad[a] = grad[a] + slope
                moment[a] = moment[a] + slope * along
    return grad, moment, start, end


@dataclass
class RayDerivatives:
    """Per ray, in knot-grid units: ``grad[a] = ∂y/∂o_w[a]``, ``moment[a] = ∂y/∂d_w[a]`` measured from the
    clipped start (add ``t_enter * grad`` for the true origin), and ``f`` at the clipped start and end."""

    grad: Vec
    moment: Vec
    f_start: Any
    f_end: Any


def ray_derivatives(
    grid: KnotGrid, t: Types, segs: Segments, coeffs: Any, values: Any | None = None, target: Any | None = None
) -> RayDerivatives:
    """Derivatives of every ray's integral w.r.t. its origin and direction, for the coefficients ``coeffs``.

    If ``target`` is given, the same march also adds the adjoint of ``values`` into it (see :func:`backproject`).
    The box basis (degree 0) is piecewise constant: its derivative is the sum of the jumps at the cell faces the
    ray crosses (exact wherever the ray does not pass through an edge or corner of the grid).
    """
    width = dr.width(segs.length)
    zero = dr.zeros(t.Float, width)
    if grid.degree == 0:
        return _box_derivatives(grid, t, segs, coeffs, values, target)
    win = Window(grid, t, segs)
    mode = scatter_mode(target) if target is not None else dr.ReduceMode.Auto

    def visit(acc: Any, cell: Cell) -> Any:
        grad, moment, f_start, _, first, window, weights = acc
        g, m, start, end = cell_derivatives(grid, cell, window, win.flip)
        if target is not None:
            weights = [a + w for a, w in zip(weights, cell_weights(grid, cell, win.flip), strict=True)]
            weights = win.flush(weights, cell, values, target, mode)
        grad = [x + y for x, y in zip(grad, g, strict=True)]
        moment = [x + y + gy * cell.start for x, y, gy in zip(moment, m, g, strict=True)]
        f_start = dr.select(first, start, f_start)
        return grad, moment, f_start, end, dr.zeros(t.Bool, width), win.advance(coeffs, window, cell), weights

    weights0 = [zero] * len(win.span) if target is not None else []
    acc = ([zero] * grid.ndim, [zero] * grid.ndim, zero, zero, dr.full(t.Bool, True, width), win.first(coeffs, segs))
    (grad, moment, f_start, f_end, _, _, weights), coords = march(
        grid, t, segs, visit, (*acc, weights0), return_cell=True
    )
    if target is not None:
        win.flush_all(weights, coords, values, target, segs.length > 0, mode)
    return RayDerivatives(grad, moment, f_start, f_end)


def _box_derivatives(
    grid: KnotGrid, t: Types, segs: Segments, coeffs: Any, values: Any | None, target: Any | None
) -> RayDerivatives:
    """:func:`ray_derivatives` for the box basis: one coefficient per cell, and jumps at the faces."""
    width = dr.width(segs.length)
    zero = dr.zeros(t.Float, width)

    def visit(acc: Any, cell: Cell) -> Any:
        grad, moment, f_start, _, previous, first = acc
        coeffs_here = gather_cell(grid, t, coeffs, cell)
        if target is not None:
            scatter_cell(grid, t, target, values, cell)
        g, m, start, end = cell_derivatives(grid, cell, coeffs_here)
        # y jumps by (after - before) at a face t_c = (w_a - o_a) / d_a: dt_c/do_a = -1/d_a
        for a in range(grid.ndim):
            g[a] = g[a] + dr.select(cell.entered[a], (coeffs_here[0] - previous) / cell.direction[a], 0.0)
        grad = [x + y for x, y in zip(grad, g, strict=True)]
        moment = [x + y + gy * cell.start for x, y, gy in zip(moment, m, g, strict=True)]
        f_start = dr.select(first, start, f_start)
        return grad, moment, f_start, end, coeffs_here[0], dr.zeros(t.Bool, width)

    acc = ([zero] * grid.ndim, [zero] * grid.ndim, zero, zero, zero, dr.full(t.Bool, True, width))
    grad, moment, f_start, f_end, _, _ = march(grid, t, segs, visit, acc, track_faces=True)
    return RayDerivatives(grad, moment, f_start, f_end)
