"""The adjoint's scatter target cut to the slab of planes a launch's rays touch, so that the fast scatter fits.

The CPU adjoints scatter-add fastest with Dr.Jit's ``ReduceMode.Expand`` (:mod:`drct.kernels.scatter`), which keeps
one copy of the target per pool worker: within :data:`~drct.kernels.scatter.EXPAND_BUDGET` that is a volume of
about 400³ on 2 cores, 200³ on 16; larger volumes fell back to the atomics, about half the speed. But a launch's
rays touch only the planes of the last (slowest) axis between where they enter and leave the volume: for a few
detector rows of a circular scan, a thin slab. Marched through the knot grid of that slab alone — the same grid
with fewer planes, each ray's knot coordinate along that axis moved by a whole number of planes — the rays visit
the same cells with the same in-cell positions (the moved coordinate and its offset from its cell are exact: both
are multiples of the coordinate's last bit and no larger than it; a face crossing may round differently in its
last bit), so they scatter the same weights, to float rounding, into a target small enough for the copies; the
slab is then added into the volume at its first plane. :func:`launches` (for
:meth:`drct.transform.Transform.backproject` and its gradient) cuts launches in halves until their slab fits, and
the rays of a launch whose halves stop shrinking (each ray crosses more planes than a slab holds: a cone's outer
detector rows at 512³ with 16 cores' copies) into pieces along z (:func:`clip`, :func:`pieces`), each marched into
its own slab.

Example:
    >>> import drct as ct
    >>> from drct.kernels.grid import KnotGrid
    >>> grid = KnotGrid.of(ct.VolumeGeometry((8, 8, 8)), degree=2)  # 8³ coefficients, 10 cells per axis
    >>> slab = Slab.of(grid, 3, 5)  # rays in cells 3..5 of the last axis: coefficients 1..5 (8 planes: 0..7)
    >>> slab.first, slab.planes, slab.grid.shape
    (0, 8, (8, 8, 8))
    >>> big = KnotGrid.of(ct.VolumeGeometry((40, 8, 8)), degree=2)  # numpy order: 40 planes along z
    >>> Slab.of(big, 20, 25).first, Slab.of(big, 20, 25).planes  # coefficients 18..25
    (18, 8)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import drjit as dr

from ..backend import Types
from .grid import KnotGrid, Segments

PLANES_STEP = 8
"""A slab's planes are a multiple of this (or the whole axis): the grid's shape is compiled into the march, so a
few slab shapes keep the number of kernels small (where it starts is a run-time value)."""

MARGIN = 2
"""Cells a slab holds beyond those its rays' end points (or a piece's cuts, :func:`pieces`) fall in: an end point
moved to a cut may round into the cell before it, and a march's cell index may run one cell past the one its
position rounds to (:func:`~drct.kernels.march.march`); the slab must hold every cell a march visits."""

MIN_LANES = 2**16
"""Rays of a launch below which :func:`launches` stops halving it to find a slab small enough for ``Expand``'s
copies and cuts its rays into pieces along z instead: launches of a detector row each (4096 rays at 512³ × 8
views) were ten times slower than the atomics."""

SHRINK = 0.75
"""A halved launch whose slab keeps more than this share of its parent's planes is not halved further (its rays
each cross that many planes: halving cannot make them fit); its rays are cut into pieces along z instead."""

Launch = tuple[int, int, Segments, Any, "Slab | None", "tuple[int, int] | None"]
"""One launch of :func:`launches`: first lane, lanes, rays, output positions, slab, cells cut to."""


@dataclass(frozen=True)
class Slab:
    """Coefficient planes ``first .. first + planes - 1`` of the last axis of ``volume``, as a knot grid of its own."""

    volume: KnotGrid
    first: int
    planes: int

    @staticmethod
    def of(volume: KnotGrid, low: int, high: int) -> Slab | None:
        """The slab holding every coefficient that cells ``low .. high`` of the last axis touch (cell ``k`` touches
        coefficients ``k - pad .. k - pad + degree``), from its first such plane inside the volume; None when they
        touch none (rays only in the zero border)."""
        pad, n, size = volume.pad, volume.degree, volume.shape[-1]
        first = max(low - pad, 0)
        last = min(high - pad + n, size - 1)
        if last < first:
            return None
        planes = min(-(-(last - first + 1) // PLANES_STEP) * PLANES_STEP, size)  # few shapes: few kernels
        return Slab(volume, min(first, size - planes), planes)

    @property
    def grid(self) -> KnotGrid:
        return dataclasses.replace(self.volume, shape=(*self.volume.shape[:-1], self.planes))

    @property
    def size(self) -> int:
        return self.grid.size

    @property
    def offset(self) -> int:
        """Flat index of the slab's first coefficient in the volume."""
        return self.first * self.volume.strides[-1]

    def segments(self, segs: Segments) -> Segments:
        """``segs`` in the slab's knot coordinates (its cell 0 is the volume's cell ``first``)."""
        first = dr.opaque(type(segs.entry[-1]), self.first)
        return dataclasses.replace(segs, entry=[*segs.entry[:-1], segs.entry[-1] - first])

    def add_into(self, t: Types, target: Any, values: Any) -> None:
        """``target[offset .. offset + size) += values`` (``values``: the slab's flat coefficients)."""
        index = dr.arange(t.UInt, self.size) + dr.opaque(t.UInt, self.offset)
        dr.scatter_add(target, values, index, mode=dr.ReduceMode.NoConflicts)


def cell_span(grid: KnotGrid, segs: Segments) -> tuple[int, int] | None:
    """The cells of the last axis that a march of ``segs`` may visit (``MARGIN`` added, within the grid), from
    where the clipped rays enter and leave; None when no ray hits the volume. Evaluates the rays (one sync)."""
    hit = segs.length > 0
    enter = segs.entry[-1]
    leave = dr.fma(segs.length, segs.direction[-1], enter)
    low = dr.min(dr.select(hit, dr.minimum(enter, leave), dr.inf))
    high = dr.max(dr.select(hit, dr.maximum(enter, leave), -dr.inf))
    lo, hi = float(low[0]), float(high[0])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return None
    cells = grid.cells[-1]
    return max(math.floor(lo) - MARGIN, 0), min(math.floor(hi) + MARGIN, cells - 1)


def clip(segs: Segments, low: int, high: int) -> Segments:
    """The part of each segment whose knot coordinate along the last axis lies in ``[low, high]`` (cells ``low ..
    high - 1``), empty where there is none: a ray that crosses more planes than a slab holds is marched piece by
    piece, each piece into its own slab. Neighbouring pieces meet at the same ``t`` (computed alike on both sides),
    so their lengths add up to the whole; which cell a sliver at the cut falls in may differ from the whole
    march's by rounding (the pieces' sums agree with it to float rounding, not bit for bit). ``t_enter`` moves to
    the piece's start, and only the piece holding the ray's own start (end) keeps ``starts_at_t_min``
    (``ends_at_t_max``), so the rays' derivatives add up over the pieces too."""
    t = type(segs.length)
    z, d = segs.entry[-1], segs.direction[-1]
    lo, hi = dr.opaque(t, low), dr.opaque(t, high)
    flat = d == 0
    inv = dr.select(flat, 0.0, dr.rcp(d))
    ta, tb = (lo - z) * inv, (hi - z) * inv
    inside = (z >= lo) & (z < hi)
    t0 = dr.select(flat, dr.select(inside, 0.0, dr.inf), dr.maximum(dr.minimum(ta, tb), 0.0))
    t1 = dr.select(flat, segs.length, dr.minimum(dr.maximum(ta, tb), segs.length))
    keep = t1 > t0
    start = dr.select(keep, t0, 0.0)
    entry = [dr.fma(start, di, e) for e, di in zip(segs.entry, segs.direction, strict=True)]
    return dataclasses.replace(
        segs,
        entry=entry,
        length=dr.select(keep, t1 - t0, 0.0),
        t_enter=segs.t_enter + type(segs.t_enter)(start),
        starts_at_t_min=segs.starts_at_t_min & keep & (t0 <= 0.0),
        ends_at_t_max=segs.ends_at_t_max & keep & (t1 >= segs.length),
    )


def planes_that_fit(volume: KnotGrid, fits: Callable[[KnotGrid], bool]) -> int:
    """The most planes a slab of ``volume`` may hold for ``fits(slab grid)`` (0 when not even one fits)."""
    low, high = 0, volume.shape[-1]
    while low < high:
        mid = (low + high + 1) // 2
        if fits(Slab(volume, 0, mid).grid):
            low = mid
        else:
            high = mid - 1
    return low


def pieces(volume: KnotGrid, span: tuple[int, int], planes: int) -> list[tuple[Slab, int, int]]:
    """Cells ``span[0] .. span[1]`` of the last axis cut into runs whose slab (their coefficients, ``MARGIN``
    cells each side for the rounding at the cuts) holds at most ``planes`` planes: per run its slab and its cells
    ``[low, high)`` (for :func:`clip`); empty when even one cell's slab would not fit."""
    n, step = volume.degree, PLANES_STEP
    width = (planes // step) * step - n - 2 * MARGIN if planes < volume.shape[-1] else span[1] - span[0] + 1
    if width < 1:
        return []
    out = []
    for low in range(span[0], span[1] + 1, width):
        high = min(low + width, span[1] + 1)
        slab = Slab.of(volume, max(low - MARGIN, 0), min(high - 1 + MARGIN, volume.cells[-1] - 1))
        if slab is not None:
            out.append((slab, low, high))
    return out


def launches(
    volume: KnotGrid,
    segments: Callable[[int, int], tuple[Segments, Any]],
    fits: Callable[[KnotGrid], bool],
    start: int,
    count: int,
    cuts: bool = True,
    parent: int = 0,
) -> Iterator[Launch]:
    """Lanes ``start .. start + count`` (their clipped rays and output positions from ``segments(first, lanes)``)
    as launches whose rays touch a slab for which ``fits(slab grid)``: per launch its lanes (first, count), its
    rays in the slab's coordinates, their output positions, the slab and the cells it owns (``None``, or
    ``(low, high)`` when the rays were cut to them). A launch is cut in halves while its slab shrinks: not below
    :data:`MIN_LANES` rays, nor when the halves keep more than :data:`SHRINK` of their parent's planes (rays that
    each cross many planes: a cone's outer detector rows). Such a launch's rays are cut into pieces along z
    instead, each piece marched into its own slab (:func:`clip`, :func:`pieces`), or, where not even one cell's
    slab fits or ``cuts`` is false, scattered into the whole volume (slab None). Launches whose rays touch no
    coefficient are left out."""
    segs, position = segments(start, count)
    span = cell_span(volume, segs)
    slab = None if span is None else Slab.of(volume, *span)
    if span is None or slab is None:
        return
    if fits(slab.grid):
        yield start, count, slab.segments(segs), position, slab, None
    elif count > MIN_LANES and not (parent and slab.planes > SHRINK * parent):
        half = count // 2
        yield from launches(volume, segments, fits, start, half, cuts, slab.planes)
        yield from launches(volume, segments, fits, start + half, count - half, cuts, slab.planes)
    else:
        cut = pieces(volume, span, planes_that_fit(volume, fits)) if cuts else []
        for piece, low, high in cut:
            yield start, count, piece.segments(clip(segs, low, high)), position, piece, (low, high)
        if not cut:
            yield start, count, segs, position, None, None
