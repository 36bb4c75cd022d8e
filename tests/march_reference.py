"""The reference twin of the box (voxel) basis's projection: the general march as it was before
:mod:`drct.kernels.box` and the compare-and-select minimum (``dr.minimum`` per face crossing, a mask per
coefficient, one axis per step), with the degree-0 forward and scatter adjoint on top of it.

Kept so that the tests compare the fast kernels with it on random rays, and the benchmarks time both in one
process (``benchmarks/bench_march.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import drjit as dr

from drct.backend import Types
from drct.kernels.grid import Cell, KnotGrid, Segments, first_cell
from drct.kernels.scatter import scatter_mode


def march(grid: KnotGrid, t: Types, segs: Segments, visit: Callable[[Any, Cell], Any], acc: Any) -> Any:
    """``acc = visit(acc, cell)`` for every cell every ray crosses (one axis per step, ties as zero-length cells)."""
    entry, direction, length = segs.entry, segs.direction, segs.length
    forward = [d > 0 for d in direction]
    still = [d == 0 for d in direction]
    inv = [dr.select(z, 1.0, dr.rcp(d)) for z, d in zip(still, direction, strict=True)]
    face = [dr.select(z, dr.inf, dr.select(f, 1.0, 0.0) - e) for z, f, e in zip(still, forward, entry, strict=True)]
    cell0 = first_cell(grid, t, segs)
    step = [dr.select(f, t.Int(1), t.Int(-1)) for f in forward]
    never = [False] * grid.ndim

    def cond(pos: Any, acc: Any, cell: list[Any]) -> Any:
        return pos < length

    def body(pos: Any, acc: Any, cell: list[Any]) -> tuple[Any, ...]:
        cell_f = [t.Float(k) for k in cell]
        crossing = [(kf + off) * i for kf, off, i in zip(cell_f, face, inv, strict=True)]
        end = length
        for c in crossing:
            end = dr.minimum(end, c)
        base, inside = grid.access(t, cell)
        if not isinstance(segs.offset, int):
            base = base + segs.offset
        crossed = [crossing[0] <= end]
        taken = crossed[0]
        for c in crossing[1:]:
            crossed.append((c <= end) & ~taken)
            taken = taken | crossed[-1]
        current = Cell(
            base=base,
            inside=inside,
            local=[e - kf + pos * d for e, kf, d in zip(entry, cell_f, direction, strict=True)],
            direction=direction,
            length=dr.maximum(end - pos, 0.0),
            start=pos,
            entered=never,
            coords=cell,
            leaving=crossed,
        )
        acc = visit(acc, current)
        moved = [k + dr.select(x, s, 0) for k, x, s in zip(cell, crossed, step, strict=True)]
        return end, acc, moved

    state = (dr.zeros(t.Float, dr.width(length)), acc, cell0)
    return dr.while_loop(state, cond, body, label="drct_march_reference")[1]


def project(grid: KnotGrid, t: Types, segs: Segments, coeffs: Any) -> Any:
    """Box-basis line integrals of the flat coefficients ``coeffs`` (one value per ray)."""

    def visit(acc: Any, cell: Cell) -> Any:
        value = dr.gather(t.Float, coeffs, t.UInt(cell.base), cell.inside[0])
        return dr.fma(value, cell.length, acc)

    return march(grid, t, segs, visit, dr.zeros(t.Float, dr.width(segs.length)))


def backproject(grid: KnotGrid, t: Types, segs: Segments, values: Any, target: Any, spread: bool = False) -> None:
    """Add the transpose of :func:`project` applied to ``values`` into the flat ``target``."""
    mode = scatter_mode(target, spread)

    def visit(acc: Any, cell: Cell) -> Any:
        dr.scatter_add(target, values * cell.length, t.UInt(cell.base), cell.inside[0], mode=mode)
        return acc

    march(grid, t, segs, visit, dr.zeros(t.Float, dr.width(segs.length)))
