"""The knot grid a volume's rays march through, the rays clipped to it, and the cell a march visits.

What every march shares (:mod:`drct.kernels.march` for the B-spline bases, :mod:`drct.kernels.box` for the voxel
basis, :mod:`drct.kernels.derivatives` for the ray derivatives, :mod:`drct.kernels.footprints` for the gather
adjoint): the coordinates are described in :mod:`drct.kernels.march`.

Example:
    >>> import drct as ct
    >>> grid = KnotGrid.of(ct.VolumeGeometry((4, 3)), degree=2)
    >>> grid.shape, grid.pad, grid.cells, grid.strides
    ((3, 4), 2, (5, 6), (1, 3))
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Any

import drjit as dr

from ..backend import Types
from ..geometry.ray_arrays import Rays, Vec
from ..geometry.volume import VolumeGeometry
from ..volume import gauss_legendre_01, quadrature_order


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
    def pad(self) -> int:
        """Zeros added on each side: ``n``, or 1 for the box so that rays enter it across a face."""
        return max(self.degree, 1)

    @property
    def shift(self) -> float:
        """``w - (p - first_center) / h``."""
        return self.pad - self.degree // 2 + (0.5 if self.degree % 2 == 0 else 0.0)

    @property
    def cells(self) -> tuple[int, ...]:
        return tuple(n + 2 * self.pad - self.degree for n in self.shape)

    @property
    def size(self) -> int:
        """Number of coefficients."""
        size = 1
        for n in self.shape:
            size *= n
        return size

    @property
    def strides(self) -> tuple[int, ...]:
        """Flat-index step per axis of the (unpadded, C-order) coefficient array."""
        out, step = [], 1
        for n in self.shape:
            out.append(step)
            step *= n
        return tuple(out)

    @property
    def offsets(self) -> list[int]:
        """Flat offsets of the ``(n + 1)^ndim`` coefficients of a cell, in the order of :func:`cell_weights`."""
        span = range(self.degree + 1)
        return [sum(j * s for j, s in zip(js, self.strides, strict=True)) for js in product(span, repeat=self.ndim)]

    def access(self, t: Types, cell: list[Any]) -> tuple[Any, list[Any]]:
        """Flat index of cell ``cell``'s first coefficient (possibly outside the array) and, per coefficient of
        the cell, whether it lies inside the array (the zero padding is never stored, only masked)."""
        base = (cell[0] - self.pad) * self.strides[0]
        for k, stride in zip(cell[1:], self.strides[1:], strict=True):
            base = base + (k - self.pad) * stride
        per_axis = [
            [t.UInt(k + (j - self.pad)) < n for j in range(self.degree + 1)]  # negative wraps: one compare
            for k, n in zip(cell, self.shape, strict=True)
        ]
        masks: list[Any] = [True]
        for valid in per_axis:
            masks = [m & v for m in masks for v in valid]
        return base, masks


@dataclass
class Segments:
    """Rays clipped to the support box, in knot-grid units: ``w(t) = entry + t * direction``, ``0 <= t <= length``.

    ``t_enter`` is where the clipped ray starts on the original ray (mm, float64); ``starts_at_t_min`` /
    ``ends_at_t_max`` tell whether the ray's own range (not the box) cut it there. ``offset`` is the flat index
    of the first coefficient of the ray's volume in a batch of volumes (``0`` for a single volume).
    """

    entry: Vec
    direction: Vec
    length: Any
    t_enter: Any
    starts_at_t_min: Any
    ends_at_t_max: Any
    offset: Any = 0


def clip_rays(rays: Rays, grid: KnotGrid, first_center: Vec, spacing: Vec, t: Types) -> Segments:
    """Clip rays (float64, mm) to the support of the volume; misses get length 0. Returns ``t.Float`` arrays.

    Each ray is first re-based at its point nearest the middle of the box, so that the clipping parameters are
    small and the chord ``t1 - t0`` does not cancel for rays that start far away (an origin at 1e17 mm gave
    chords off by whole cells)."""
    origin = [(o - c) / h + grid.shift for o, c, h in zip(rays.origin, first_center, spacing, strict=True)]
    direction = [d / h for d, h in zip(rays.direction, spacing, strict=True)]
    middle = [0.5 * c for c in grid.cells]
    shift = sum(((m - o) * d for m, o, d in zip(middle, origin, direction, strict=True)), start=0.0)
    shift = shift / sum((d * d for d in direction), start=0.0)
    origin = [dr.fma(shift, d, o) for o, d in zip(origin, direction, strict=True)]
    t_min, t_max = rays.t_min - shift, rays.t_max - shift
    near_box, far_box = -dr.inf, dr.inf
    for o, d, hi in zip(origin, direction, grid.cells, strict=True):
        parallel = d == 0
        inside = (o >= 0) & (o <= hi)
        ta = -o / d
        tb = (hi - o) / d
        near_box = dr.maximum(near_box, dr.select(parallel, dr.select(inside, -dr.inf, dr.inf), dr.minimum(ta, tb)))
        far_box = dr.minimum(far_box, dr.select(parallel, dr.select(inside, dr.inf, -dr.inf), dr.maximum(ta, tb)))
    t0 = dr.maximum(t_min, near_box)
    t1 = dr.minimum(t_max, far_box)
    hit = t0 < t1
    t0 = dr.select(hit, t0, 0.0)
    entry = [t.Float(dr.select(hit, o + t0 * d, 0.0)) for o, d in zip(origin, direction, strict=True)]
    return Segments(
        entry,
        [t.Float(d) for d in direction],
        t.Float(dr.select(hit, t1 - t0, 0.0)),
        t0 + shift,
        hit & (t_min >= near_box),
        hit & (t_max <= far_box),
    )


@dataclass
class Cell:
    """One segment of one ray inside one knot cell, as seen by a :func:`march` visitor."""

    base: Any  # flat index of the cell's first coefficient (Int; may lie outside the array)
    inside: list[Any]  # per coefficient of the cell: does it lie inside the array
    local: Vec  # in-cell position at the segment start
    direction: Vec  # change of ``local`` per mm
    length: Any  # segment length, mm
    start: Any  # distance from the clipped ray's start to the segment start, mm
    entered: list[Any]  # per axis: did the ray cross a face of that axis to enter this cell
    coords: list[Any]  # the cell's knot-grid coordinates (Int per axis)
    leaving: list[Any]  # per axis: does the ray leave the cell through a face of that axis (one axis at most)

    @property
    def leaves(self) -> Any:
        """Does the ray step into another cell after this segment."""
        out = self.leaving[0]
        for leave in self.leaving[1:]:
            out = out | leave
        return out


def smaller(a: Any, b: Any) -> Any:
    """``min(a, b)`` for values that are never NaN, as one compare and select: Dr.Jit's ``dr.minimum`` lowers
    to LLVM's NaN-propagating ``llvm.minimum``, which x86 expands to several instructions (in the march's
    inner loop that was a quarter of the box forward's time)."""
    return dr.select(b < a, b, a)


def larger(a: Any, b: Any) -> Any:
    """``max(a, b)`` for values that are never NaN (see :func:`smaller`)."""
    return dr.select(b > a, b, a)


def first_cell(grid: KnotGrid, t: Types, segs: Segments) -> list[Any]:
    """Knot-grid coordinates of the cell each clipped ray starts in."""
    return [dr.clip(t.Int(dr.floor(e)), 0, c - 1) for e, c in zip(segs.entry, grid.cells, strict=True)]
