"""The slow, obviously-right twin of drct's B-spline march kernels (degree >= 1), as they were before the
per-cell work was cut (issue 15): every face slot located per axis, three select passes to slide the window,
basis values recomputed per node and axis, adjoint weights summed coefficient by coefficient.

Used by ``tests/test_bspline_kernels.py`` (same results on random rays) and ``benchmarks/bench_bspline_march.py``
(old against new in one process). Only :func:`~drct.kernels.march.march` and the knot grid come from drct.
"""

from __future__ import annotations

from itertools import product
from typing import Any

import drjit as dr

from drct.backend import Types
from drct.geometry.ray_arrays import Vec
from drct.kernels.derivatives import RayDerivatives
from drct.kernels.grid import Cell, KnotGrid, Segments, first_cell
from drct.kernels.march import march
from drct.kernels.scatter import scatter_mode
from drct.volume import bspline_segment_slopes, bspline_segments


def oriented(cell: Cell, flip: list[Any] | None) -> tuple[Vec, Vec]:
    if flip is None:
        return cell.local, cell.direction
    starts = [dr.select(f, 1.0 - s, s) for f, s in zip(flip, cell.local, strict=True)]
    slopes = [dr.select(f, -d, d) for f, d in zip(flip, cell.direction, strict=True)]
    return starts, slopes


def dot_fma(a: list[Any], b: list[Any]) -> Any:
    out = a[0] * b[0]
    for x, y in zip(a[1:], b[1:], strict=True):
        out = dr.fma(x, y, out)
    return out


def add_node_weights(total: list[Any] | None, per_axis: list[list[Any]], scale: Any) -> list[Any]:
    products = [scale * v for v in per_axis[0]]
    for values in per_axis[1:-1]:
        products = [p * v for p in products for v in values]
    pairs = [(p, v) for p in products for v in per_axis[-1]]
    if total is None:
        return [p * v for p, v in pairs]
    return [dr.fma(p, v, a) for (p, v), a in zip(pairs, total, strict=True)]


def cell_weights(grid: KnotGrid, cell: Cell, flip: list[Any] | None = None) -> list[Any]:
    n = grid.degree
    starts, slopes = oriented(cell, flip)
    total: list[Any] | None = None
    for xi, omega in zip(grid.nodes, grid.weights, strict=True):
        along = cell.length * xi
        per_axis = [bspline_segments(n, dr.fma(along, d, s)) for s, d in zip(starts, slopes, strict=True)]
        total = add_node_weights(total, per_axis, omega * cell.length)
    assert total is not None
    return total


def contract_cell(grid: KnotGrid, cell: Cell, window: list[Any], flip: list[Any]) -> Any:
    n, m = grid.degree, grid.degree + 1
    starts, slopes = oriented(cell, flip)
    total: Any = 0.0
    for xi, omega in zip(grid.nodes, grid.weights, strict=True):
        along = cell.length * xi
        values = window
        for a in reversed(range(grid.ndim)):
            b = bspline_segments(n, dr.fma(along, slopes[a], starts[a]))
            values = [dot_fma([values[i * m + j] for j in range(m)], b) for i in range(len(values) // m)]
        total = dr.fma(omega, values[0], total)
    return total * cell.length


class Window:
    """The cell's coefficients carried with the ray, oriented along it (see drct's own ``Window``)."""

    def __init__(self, grid: KnotGrid, t: Types, segs: Segments) -> None:
        self.grid, self.t, self.n = grid, t, grid.degree
        self.offset = segs.offset
        self.flip = [d < 0 for d in segs.direction]
        self.step = [dr.select(f, t.Int(-1), t.Int(1)) for f in self.flip]
        self.span = list(product(range(self.n + 1), repeat=grid.ndim))
        self.near = [[i for i, js in enumerate(self.span) if js[a] == 0] for a in range(grid.ndim)]
        self.far = [[i for i, js in enumerate(self.span) if js[a] == self.n] for a in range(grid.ndim)]

    def locate(self, coords: list[Any], i: int) -> tuple[Any, Any]:
        grid, t, n = self.grid, self.t, self.n
        index, inside = None, None
        for a, (j, stride) in enumerate(zip(self.span[i], grid.strides, strict=True)):
            pos = coords[a] + dr.select(self.flip[a], t.Int(n - j), t.Int(j)) - grid.pad
            ok = t.UInt(pos) < grid.shape[a]
            index = pos * stride if index is None else index + pos * stride
            inside = ok if inside is None else inside & ok
        if not isinstance(self.offset, int):
            index = index + self.offset
        return index, inside

    def first(self, coeffs: Any, segs: Segments) -> list[Any]:
        hit = segs.length > 0
        start = first_cell(self.grid, self.t, segs)
        out = []
        for i in range(len(self.span)):
            index, inside = self.locate(start, i)
            out.append(dr.gather(self.t.Float, coeffs, self.t.UInt(index), inside & hit))
        return out

    def advance(self, coeffs: Any, window: list[Any], cell: Cell) -> list[Any]:
        grid, t = self.grid, self.t
        leaving = cell.leaves
        entering = []
        for slot in range(len(self.far[0])):
            index, inside = None, None
            for a in range(grid.ndim):
                after = [k + self.step[b] if b == a else k for b, k in enumerate(cell.coords)]
                idx, ok = self.locate(after, self.far[a][slot])
                index = idx if index is None else dr.select(cell.leaving[a], idx, index)
                inside = ok if inside is None else dr.select(cell.leaving[a], ok, inside)
            entering.append(dr.gather(t.Float, coeffs, t.UInt(index), inside & leaving))
        for a in range(grid.ndim):
            window = [
                dr.select(cell.leaving[a], s_, w) for s_, w in zip(self.slid(window, a, entering), window, strict=True)
            ]
        return window

    def flush(self, weights: list[Any], cell: Cell, values: Any, target: Any, mode: dr.ReduceMode) -> list[Any]:
        t, ndim = self.t, self.grid.ndim
        leaving = cell.leaves
        for slot in range(len(self.near[0])):
            value, (index, inside) = weights[self.near[0][slot]], self.locate(cell.coords, self.near[0][slot])
            for a in range(1, ndim):
                i = self.near[a][slot]
                idx, ok = self.locate(cell.coords, i)
                value = dr.select(cell.leaving[a], weights[i], value)
                index = dr.select(cell.leaving[a], idx, index)
                inside = dr.select(cell.leaving[a], ok, inside)
            dr.scatter_add(target, value * values, t.UInt(index), inside & leaving, mode=mode)
        for a in range(ndim):
            weights = [dr.select(cell.leaving[a], s_, w) for s_, w in zip(self.slid(weights, a), weights, strict=True)]
        return weights

    def flush_all(
        self, weights: list[Any], coords: list[Any], values: Any, target: Any, hit: Any, mode: dr.ReduceMode
    ) -> None:
        for i in range(len(self.span)):
            index, inside = self.locate(coords, i)
            dr.scatter_add(target, weights[i] * values, self.t.UInt(index), inside & hit, mode=mode)

    def slid(self, window: list[Any], a: int, fill: list[Any] | None = None) -> list[Any]:
        out = []
        for js in self.span:
            if js[a] == self.n:
                out.append(0.0 if fill is None else fill[self.far[a].index(self.span.index(js))])
            else:
                out.append(window[self.span.index(tuple(j + 1 if b == a else j for b, j in enumerate(js)))])
        return out


def project(grid: KnotGrid, t: Types, segs: Segments, coeffs: Any) -> Any:
    """Line integrals of ``coeffs`` along ``segs`` (degree >= 1)."""
    assert grid.degree >= 1
    width = dr.width(segs.length)
    win = Window(grid, t, segs)
    window0 = win.first(coeffs, segs)

    def visit(acc: tuple[Any, list[Any]], cell: Cell) -> tuple[Any, list[Any]]:
        total, window = acc
        total = total + contract_cell(grid, cell, window, win.flip)
        return total, win.advance(coeffs, window, cell)

    total, _ = march(grid, t, segs, visit, (dr.zeros(t.Float, width), window0))
    return total


def backproject(grid: KnotGrid, t: Types, segs: Segments, values: Any, target: Any, spread: bool = False) -> None:
    """Add the transpose of :func:`project` applied to ``values`` into ``target`` (degree >= 1)."""
    assert grid.degree >= 1
    mode = scatter_mode(target, spread)
    win = Window(grid, t, segs)

    def visit(window: list[Any], cell: Cell) -> list[Any]:
        window = [a + w for a, w in zip(window, cell_weights(grid, cell, win.flip), strict=True)]
        return win.flush(window, cell, values, target, mode)

    width = dr.width(segs.length)
    window, coords = march(grid, t, segs, visit, [dr.zeros(t.Float, width)] * len(win.span), return_cell=True)
    win.flush_all(window, coords, values, target, segs.length > 0, mode)


def _contract(
    coeffs: list[Any], values: list[list[Any]], slopes: list[list[Any]] | None = None
) -> tuple[Any, list[Any]]:
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
    grid: KnotGrid, cell: Cell, coeffs: list[Any], flip: list[Any] | None = None, weights: list[Any] | None = None
) -> tuple[list[Any], list[Any], Any, Any, list[Any] | None]:
    n, ndim = grid.degree, grid.ndim
    starts, slopes = oriented(cell, flip)
    sign: list[Any] = [1.0] * ndim if flip is None else [dr.select(f, -1.0, 1.0) for f in flip]

    def value(along: Any) -> Any:
        x = [dr.fma(along, d, s) for s, d in zip(starts, slopes, strict=True)]
        return _contract(coeffs, [bspline_segments(n, v) for v in x])[0]

    start, end = value(0.0), value(cell.length)
    grad: list[Any] = [0.0] * ndim
    moment: list[Any] = [0.0] * ndim
    for xi, omega in zip(grid.nodes, grid.weights, strict=True):
        along = cell.length * xi
        x = [dr.fma(along, d, s) for s, d in zip(starts, slopes, strict=True)]
        values = [bspline_segments(n, v) for v in x]
        _, g = _contract(coeffs, values, [bspline_segment_slopes(n, v) for v in x])
        scale = omega * cell.length
        if weights is not None:
            weights = add_node_weights(weights, values, scale)
        for a in range(ndim):
            slope = g[a] * sign[a] * scale
            grad[a] = grad[a] + slope
            moment[a] = moment[a] + slope * along
    return grad, moment, start, end, weights


def ray_derivatives(
    grid: KnotGrid,
    t: Types,
    segs: Segments,
    coeffs: Any,
    values: Any | None = None,
    target: Any | None = None,
    spread: bool = False,
) -> RayDerivatives:
    """Derivatives of every ray's integral w.r.t. its origin and direction (degree >= 1)."""
    assert grid.degree >= 1
    width = dr.width(segs.length)
    zero = dr.zeros(t.Float, width)
    mode = scatter_mode(target, spread) if target is not None else dr.ReduceMode.Auto
    win = Window(grid, t, segs)

    def visit(acc: Any, cell: Cell) -> Any:
        grad, moment, f_start, _, first, window, weights = acc
        g, m, start, end, added = cell_derivatives(
            grid, cell, window, win.flip, weights if target is not None else None
        )
        if added is not None:
            weights = win.flush(added, cell, values, target, mode)
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
