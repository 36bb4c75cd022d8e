"""Derivatives of every ray integral w.r.t. the ray: one march per chunk of rays.

For the B-spline bases (degree >= 1) the march integrates ``∂f/∂w`` and ``s ∂f/∂w`` along each ray with the
cell's coefficients carried in the same sliding window as the forward projection (and, when the volume
gradient is wanted too, the adjoint weights in the window of the backprojection). The box basis is piecewise
constant: its derivative is the sum of the jumps at the cell faces the ray crosses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import drjit as dr

from ..backend import Types
from ..geometry.ray_arrays import Vec
from ..volume import bspline_scaled_segments, bspline_segment_slopes
from . import scatter
from .grid import Cell, KnotGrid, Segments, first_cell
from .march import (
    Window,
    add_node_weights,
    dot_fma,
    gather_cell,
    march,
    node_bases,
    oriented,
    scatter_cell,
)


def _contract(
    coeffs: list[Any], values: list[list[Any]], slopes: list[list[Any]] | None = None
) -> tuple[Any, list[Any]]:
    """``Σ_j c_j Π_a b_a[j_a]`` for coefficients in ``grid.offsets`` order (first axis slowest), and with
    ``slopes`` also the same sum with axis ``a``'s values replaced by its slopes, for every ``a``.

    Sum-factorised, fastest axis first; the derivative sums share the value's partial contractions (3D,
    degree 2: 93 multiply-adds for the value and all three slopes instead of 4 x 39).
    """
    partials: dict[int | None, list[Any]] = {None: coeffs}
    for a in reversed(range(len(values))):
        width = len(values[a])

        def contract(vals: list[Any], weights: list[Any], width: int = width) -> list[Any]:
            return [dot_fma(vals[i : i + width], weights) for i in range(0, len(vals), width)]

        step = {label: contract(vals, values[a]) for label, vals in partials.items()}
        if slopes is not None:
            step[a] = contract(partials[None], slopes[a])
        partials = step
    return partials[None][0], [partials[a][0] for a in range(len(values))] if slopes is not None else []


def cell_derivatives(
    grid: KnotGrid,
    cell: Cell,
    coeffs: list[Any],
    flip: list[Any] | None = None,
    weights: list[Any] | None = None,
    ends: bool = True,
    integral: bool = False,
) -> tuple[list[Any], list[Any], Any, Any, list[Any] | None, Any]:
    """Integrals over the segment of ``∂f/∂w_a`` and ``s ∂f/∂w_a`` (``s`` = distance from the segment start, mm),
    the values of ``f`` at the segment's two ends (only with ``ends``, else ``None``: a continuous ``f`` needs
    them once per ray, :func:`point_value`, not once per cell), for the cell
    coefficients ``coeffs`` (ordered as :func:`cell_weights` orders its weights for the same ``flip``), and —
    given ``weights`` — ``weights`` plus the cell's :func:`cell_weights`, from the same basis values (degree >= 1),
    and — with ``integral`` — the integral of ``f`` over the segment (else ``None``), summed as
    :func:`~drct.kernels.march.contract_cell` sums it (the same bits: the value is the first partial sum of the
    slopes' contraction).

    Reversed axes are taken at ``1 - x`` (:func:`~drct.kernels.march.oriented`), so their slopes change sign.
    The basis values are ``n!`` times the B-spline's (:func:`~drct.volume.bspline_scaled_segments`), the slopes
    the B-spline's own: the sums are rescaled once per node.
    """
    n, ndim = grid.degree, grid.ndim
    starts, slopes = oriented(cell, flip)
    sign: list[Any] = [1.0] * ndim if flip is None else [dr.select(f, -1.0, 1.0) for f in flip]
    scale = math.factorial(n)

    def value(along: Any) -> Any:
        x = [dr.fma(along, d, s) for s, d in zip(starts, slopes, strict=True)]
        return _contract(coeffs, [bspline_scaled_segments(n, v) for v in x])[0] * (1.0 / scale**ndim)

    start, end = (value(0.0), value(cell.length)) if ends else (None, None)
    grad: list[Any] = [0.0] * ndim
    moment: list[Any] = [0.0] * ndim
    total: Any = 0.0
    if n > 0:
        for omega, along, x, values in node_bases(grid, cell, flip):
            f, g = _contract(coeffs, values, [bspline_segment_slopes(n, v) for v in x])
            if integral:
                total = dr.fma(omega, f, total)
            if weights is not None:
                weights = add_node_weights(weights, values, omega * cell.length)
            step = omega * scale * cell.length  # the slope's own axis carries no n!
            for a in range(ndim):
                slope = g[a] * sign[a] * step
                grad[a] = grad[a] + slope
                moment[a] = moment[a] + slope * along
    return grad, moment, start, end, weights, (total * cell.length if integral and n > 0 else None)


def point_value(grid: KnotGrid, t: Types, point: Vec, cell: list[Any], window: list[Any], flip: list[Any]) -> Any:
    """``f`` at the knot-grid ``point``, from the (oriented) window of a ``cell`` that holds it."""
    local = [p - t.Float(k) for p, k in zip(point, cell, strict=True)]
    x = [dr.select(f, 1.0 - s, s) for f, s in zip(flip, local, strict=True)]
    values = [bspline_scaled_segments(grid.degree, v) for v in x]
    return _contract(window, values)[0] * (1.0 / math.factorial(grid.degree) ** grid.ndim)


def exit_value(grid: KnotGrid, t: Types, segs: Segments, coeffs: Any, win: Window) -> Any:
    """``f`` where each clipped ray leaves (zero for misses), from the coefficients of the cell its end point lies
    in: ``f`` is continuous (degree >= 1), so either cell of a point on a face gives it, and the end needs no
    cell of the march (which may have stepped past it)."""
    point = [dr.fma(segs.length, d, e) for e, d in zip(segs.entry, segs.direction, strict=True)]
    cell = [dr.clip(t.Int(dr.floor(p)), 0, c - 1) for p, c in zip(point, grid.cells, strict=True)]
    return point_value(grid, t, point, cell, win.gather(coeffs, cell, segs.length > 0), win.flip)


@dataclass
class RayDerivatives:
    """Per ray, in knot-grid units: ``grad[a] = ∂y/∂o_w[a]``, ``moment[a] = ∂y/∂d_w[a]`` measured from the
    clipped start (add ``t_enter * grad`` for the true origin), and ``f`` at the clipped start and end."""

    grad: Vec
    moment: Vec
    f_start: Any
    f_end: Any
    value: Any = None  # the ray integral itself, where asked for (``with_value``)


def ray_derivatives(
    grid: KnotGrid,
    t: Types,
    segs: Segments,
    coeffs: Any,
    values: Any | None = None,
    target: Any | None = None,
    spread: bool = False,
    with_value: bool = False,
    padded: bool = False,
) -> RayDerivatives:
    """Derivatives of every ray's integral w.r.t. its origin and direction, for the coefficients ``coeffs``.

    If ``target`` is given, the same march also adds the adjoint of ``values`` into it (see :func:`backproject`).
    ``with_value`` (degree >= 1) also returns the integral itself, bit for bit :func:`~drct.kernels.march.project`'s
    (the node values are the first partial sums of the slopes' contraction): a forward projection that keeps
    its derivatives for a later reverse or forward pass.
    The box basis (degree 0) is piecewise constant: its derivative is the sum of the jumps at the cell faces the
    ray crosses (exact wherever the ray does not pass through an edge or corner of the grid). ``spread``: see
    :func:`~drct.kernels.scatter.scatter_mode`. ``padded`` (degree >= 1): ``coeffs`` and ``target`` are padded
    copies (:mod:`drct.kernels.padding`), read and written without masks.
    """
    width = dr.width(segs.length)
    zero = dr.zeros(t.Float, width)
    mode = scatter.scatter_mode(target, spread) if target is not None else dr.ReduceMode.Auto
    if grid.degree == 0:
        if with_value or padded:
            raise ValueError("with_value and padded need a B-spline basis of degree >= 1 (the box has its own march)")
        return _box_derivatives(grid, t, segs, coeffs, values, target, mode)
    win = Window(grid, t, segs, padded)

    def visit(acc: Any, cell: Cell) -> Any:
        grad, moment, window, weights, total = acc
        g, m, _, _, added, part = cell_derivatives(
            grid, cell, window, win.flip, weights if target is not None else None, ends=False, integral=with_value
        )
        if added is not None:
            weights = win.flush(added, cell, values, target, mode)
        if part is not None:
            total = total + part
        grad = [x + y for x, y in zip(grad, g, strict=True)]
        moment = [x + y + gy * cell.start for x, y, gy in zip(moment, m, g, strict=True)]
        return grad, moment, win.advance(coeffs, window, cell), weights, total

    weights0 = [zero] * len(win.span) if target is not None else []
    window0 = win.first(coeffs, segs)
    # f is continuous: its values at the ray's two ends come once per ray, not from every cell's segment ends
    f_start = point_value(grid, t, segs.entry, first_cell(grid, t, segs), window0, win.flip)
    acc = ([zero] * grid.ndim, [zero] * grid.ndim, window0, weights0, zero if with_value else [])
    (grad, moment, _, weights, total), coords = march(grid, t, segs, visit, acc, return_cell=True)
    if target is not None:
        win.flush_all(weights, coords, values, target, segs.length > 0, mode)
    end = exit_value(grid, t, segs, coeffs, win)
    return RayDerivatives(grad, moment, f_start, end, total if with_value else None)


def _box_derivatives(
    grid: KnotGrid, t: Types, segs: Segments, coeffs: Any, values: Any | None, target: Any | None, mode: dr.ReduceMode
) -> RayDerivatives:
    """:func:`ray_derivatives` for the box basis: one coefficient per cell, and jumps at the faces."""
    width = dr.width(segs.length)
    zero = dr.zeros(t.Float, width)

    def visit(acc: Any, cell: Cell) -> Any:
        grad, moment, f_start, _, previous, first = acc
        coeffs_here = gather_cell(grid, t, coeffs, cell)
        if target is not None:
            scatter_cell(grid, t, target, values, cell, mode)
        g, m, start, end, _, _ = cell_derivatives(grid, cell, coeffs_here)
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
