"""The voxel-driven (gather) adjoint of the box basis for 2D fan beams on a flat detector.

The sibling of :mod:`drct.kernels.footprints` (2D parallel beams), whose loops it shares: one kernel of symbolic
loops over the views per call, each view's parameters read with the loop counter as one packet, each lane a
column block of :attr:`FanFootprints.block` pixels with the accumulators in registers, ``y`` read from a table of
packets of consecutive columns (:meth:`~drct.kernels.footprints.ParallelFootprints.value_table`).

**Which columns.** A view's rays leave one point, so the centre of the pixel ``x, y`` pixels from the grid's
middle lands on the column ``(a x + b y + c) / (p x + q y + 1)`` (:func:`column_map`), and every ray that can
cross the pixel lies within the view's :func:`reach` of it (the largest distance between the column of a
pixel's centre and that of one of its corners, over the pixels, plus a margin for rounding). A view tests
``taps = floor(2 reach) + 1`` consecutive columns: the views that need fewer than the most are looped apart,
with one candidate less (two kernels at most).

**The chord, without a gather.** The ray of column ``k`` runs along ``D(k) = D0 + k e`` (unnormalised; ``D0``
and ``e`` per view). Through a box ``h_x x h_y`` a line of unit direction ``d`` at distance ``s`` from the box's
centre has the chord ``(min(outer - |s|, outer - inner))+ · plateau / (outer - inner)``, a trapezoid in ``s``
with ``outer, inner = (h_x |d_y| ± h_y |d_x|) / 2`` (absolute value of the difference for ``inner``) and
``plateau = min(h_x / |d_x|, h_y / |d_y|)``. With ``D`` in place of ``d`` every length scales by ``|D|`` and
``(outer - inner) / plateau`` becomes ``|D_x D_y| / |D|``; so per candidate column, in registers,

    ``chord · y[k] = (A + B - max(|A - B|, |S|))+ · y[k] |D| / (2 |D_x D_y|)``,

with ``A = h_x |D_y|``, ``B = h_y |D_x|`` and ``S = 2 cross(D, pixel - source)`` (``2 min(A, B) = A + B - |A -
B|``), and ``A + B``, ``|A - B|`` the larger and smaller of ``|u|, |w|``, ``u, w = h_y D_x ± h_x D_y``: ``u``,
``w`` and ``S`` are affine in ``k``, so the candidates step them by adds (:meth:`FanFootprints._rays`). The
per-ray factor ``|D| / (2 |D_x D_y|)`` (:attr:`FanFootprints.weights`) multiplies ``y`` once per call, when the
value table is built. It is the exact chord; the forward's DDA computes the same to rounding (≈ 1e-14 of the
largest entry in float64 on small grids, ≈ 1e-5 in float32 like the DDA's own rounding).

**Rays near an axis** (``|d_minor| / |d_major| < NEAR_AXIS`` in voxels) are the exception, as in
:mod:`drct.kernels.footprints`: a ray along a pixel edge is put by the DDA in the cell ``floor(entry)`` (the
closed form's weight is infinite there), and nearly so the trapezoid is steep, amplifying rounding (a ray
tilted by 1e-9 rad along a pixel edge: 4e-7 of a chord apart in float64, ``tests/test_fan_footprints.py``).
Their weight is zero in the gather, and the forward's own DDA walks them (:func:`drct.kernels.box.backproject`,
a scatter over about 1% of the rays for a full-orbit scan: bit for bit the forward's transpose there).

**Covered** (:func:`drct.kernels.fan_hat.covers`, which holds the dispatched bases; :func:`fits` the
geometry): degree 0 (the box; degree 1, the linear basis, by :mod:`drct.kernels.fan_hat`, which takes this
module's column map, reach and loops, and has the quadratic's too), ``beam="cone"`` with ``ndim == 2`` (a fan
beam), flat detectors, every view's source and detector line on opposite sides of the
volume's knot box (so that a ray's ends never cut its chords inside the volume), at most :data:`MAX_TAPS`
candidates, at least :data:`drct.kernels.fan_hat.MIN_WORK` pixels x views (2^21 for the box: below, the scatter is
cheaper). Everything else keeps the ray-driven scatter adjoint.

Float32, 2 shared cores, the forward, the scatter adjoint and this one taking turns in one process, medians of 5-7
(``python benchmarks/bench_gather_adjoint.py --workloads fan``), CPU / wall as multiples of the forward's, in
four runs (load 4.4-7.7): 256² x 360 x 512 (source 500 mm, detector 1000 mm; 3 candidates per view) scatter
3.5-4.0x, gather 1.2-1.5x; 512² x 720 x 725 (``bench_projector.py``'s fan2d; 2 candidates in 460 views, 3 in 260)
scatter 3.9-4.6x, gather 1.45-1.65x. The ratio is structural: a candidate costs about what a DDA step costs, and a
pixel tests 2.4 candidates per view where the forward steps ~1.4 times per pixel and view (512²). Those scatter
ratios are of the scatter before it wrote packet pairs (:mod:`drct.kernels.scatter`); since then it costs 1.76x
(256²) and 2.00x (512²) against the gather's 1.25x and 1.49x (one run, load 3.7-3.9), and below 128² the
scatter wins (64² x 90 views: 1.7 ms against 6.1 ms per call, load 7.5; not investigated).

Variants measured on the way (256² x 360 x 512, the same kind of run; ``x`` = the forward's wall): every
candidate's chord by the slab method from a per-ray record of the DDA's faces and reciprocal directions (one
packet gather per candidate; bit for bit the forward's transpose everywhere) 2.6-3.1x; a per-ray record of the
trapezoid (offset plane, slope, peak, plateau; one packet gather per candidate) 3.6x — the gathers, not the
arithmetic, cost; the trapezoid from the ray's column in registers 1.2-1.5x; with ``u, w`` and ``S`` from per-view
planes (this form) 1.3x, and 1.64x -> 1.46x at 512² x 720 x 725. Layouts (views per loop iteration x pixels per
lane): 1x16 and 2x16 alike, 1x8 / 2x8 / 1x4 10-40% slower, 1x32 and 4x8 no better.


Example:
    >>> import numpy as np, drct as ct
    >>> pg = ct.fan(np.linspace(0, 2 * np.pi, 128, endpoint=False), 256, 1.5, 250.0, 500.0)
    >>> A = ct.Projector(ct.VolumeGeometry((128, 128)), pg, basis="voxel", dtype="float64")  # 2^21 pixels x views
    >>> type(A._engine.footprints).__name__
    'FanFootprints'
    >>> y = np.random.default_rng(0).random(A.range_shape)
    >>> scatter = A._engine.backproject(A.types.Float(y.ravel()), A._engine.vectors(), scatter=True)
    >>> bool(np.allclose(A.T(y), scatter.numpy().reshape(A.domain_shape), rtol=1e-12, atol=1e-12))
    True
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import drjit as dr
import numpy as np

from ..backend import Types, upload
from ..geometry.projection import AnyGeometry, ProjectionGeometry, host_rows
from ..geometry.ray_arrays import Vec
from ..geometry.volume import VolumeGeometry
from ..memory import require_memory
from . import box, padding
from .footprints import ParallelFootprints, Plan
from .grid import KnotGrid, larger, smaller
from .packets import upload_packets

NEAR_AXIS = 1e-2
"""Rays whose slope against a grid axis (``|d_minor| / |d_major|`` in voxels) is below this are walked by the
forward's DDA instead (see the module docstring)."""
FRONT = 1e-6
"""How far inside ``(0, 1)`` (source 0, detector line 1) every corner of the knot box must lie."""
MAX_TAPS = 12
"""The most candidate columns per pixel and view the gather takes on (estimated by :func:`fits`); finer detectors
keep the scatter. Measured (64² x 90 views, float32, second calls / first calls): pitch 0.5 px (8-11 candidates)
gather 26 ms / 1.6 s, scatter 57 ms; pitch 0.2 (20-26) gather 102 ms / 6.4 s, scatter 76 ms; pitch 0.1 (40-52)
gather 138 ms / 23.6 s, scatter 71 ms (every class of views one kernel with its candidates unrolled)."""


def _views(pg: ProjectionGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per view (rows): the source, the detector centre and the column step, float64."""
    src, det, det_u = (np.atleast_2d(np.asarray(host_rows(v), dtype=np.float64)) for v in (pg.src, pg.det, pg.det_u))
    return src, det, det_u


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The 2D cross product ``a_x b_y - a_y b_x`` over the last axis."""
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def knot_box(vg: VolumeGeometry, degree: int = 0) -> np.ndarray:
    """The 4 corners (rows, mm) of the knot box of the basis of ``degree``: the box basis's pixels and the
    one-cell zero border around them, the linear basis's coefficients' supports."""
    grid = KnotGrid.of(vg, degree)
    low = np.array(vg.first_center) - grid.shift * np.array(vg.spacing_xyz)
    high = low + np.array(grid.cells) * np.array(vg.spacing_xyz)
    return np.array([[low[0], low[1]], [low[0], high[1]], [high[0], low[1]], [high[0], high[1]]])


def depth(pg: ProjectionGeometry, points: np.ndarray) -> np.ndarray:
    """Per view (rows) and point (columns, mm): where the point lies between the view's source (0) and its
    detector line (1), along the detector's normal.

    Example:
        >>> import numpy as np, drct as ct
        >>> depth(ct.fan([0.0], 4, 1.0, 10.0, 30.0), np.array([[0.0, 0.0], [0.0, 20.0]])).tolist()
        [[0.3333333333333333, 1.0]]
    """
    src, det, det_u = _views(pg)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _cross(det_u[:, None, :], points[None, :, :] - src[:, None, :]) / _cross(det_u, det - src)[:, None]


def fits(vg: VolumeGeometry, pg: AnyGeometry, degree: int) -> bool:
    """Whether the fan gathers' closed forms hold for this operator: the box, linear or quadratic basis (degree
    0-2), a 2D fan beam on a flat detector with the volume's whole knot box strictly between every view's source
    and detector line, at most :data:`MAX_TAPS` candidates.

    Example:
        >>> import numpy as np, drct as ct
        >>> fits(ct.VolumeGeometry((8, 8)), ct.fan(np.zeros(1), 16, 1.0, 40.0, 80.0), 2)
        True
    """
    if degree not in (0, 1, 2) or not isinstance(pg, ProjectionGeometry):
        return False
    if pg.ndim != 2 or pg.beam != "cone" or pg.curved:
        return False
    where = depth(pg, knot_box(vg, degree))
    if not np.all((where > FRONT) & (where < 1 - FRONT)):
        return False
    mx, my = ((n - 1) / 2 for n in vg.shape_xyz)  # the corner pixels and the edges' middles: an estimate
    xs, ys = np.array([-mx, -mx, mx, mx, 0, 0, -mx, mx]), np.array([-my, my, -my, my, -my, my, 0, 0])
    return bool(np.floor(2 * _spread(column_map(vg, pg), xs, ys, (degree + 1) / 2).max()) + 1 <= MAX_TAPS)


def column_map(vg: VolumeGeometry, pg: ProjectionGeometry) -> np.ndarray:
    """Per view (rows): ``a, b, c, p, q`` of the detector column ``(a x + b y + c) / (p x + q y + 1)`` (counted
    from the first column) where the ray through the point ``x, y`` pixels from the grid's middle lands.

    Example:
        >>> import numpy as np, drct as ct
        >>> m = column_map(ct.VolumeGeometry((4, 4)), ct.fan([0.0], 9, 1.0, 10.0, 20.0))
        >>> (np.round(m, 6) + 0.0).tolist()  # middle on column 4; x moves 2 columns there, less farther away
        [[2.0, 0.4, 4.0, 0.0, 0.1]]
    """
    src, det, det_u = _views(pg)
    hx, hy = vg.spacing_xyz
    w = src - det
    rel = np.asarray(vg.center, dtype=np.float64)[None, :] - src
    u0, n0 = _cross(w, rel), _cross(det_u, rel)  # u = cross(w, r) / cross(det_u, r), r = point - source
    off = (pg.det_shape[-1] - 1) / 2
    ux, uy = -hx * w[:, 1], hy * w[:, 0]
    nx, ny = -hx * det_u[:, 1], hy * det_u[:, 0]
    return np.column_stack([(ux + off * nx) / n0, (uy + off * ny) / n0, u0 / n0 + off, nx / n0, ny / n0])


def _columns(m: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The columns of points ``x, y`` (broadcast against the views' maps ``m``, one row per view)."""
    a, b, c, p, q = (m[:, i, None] for i in range(5))
    return (a * x + b * y + c) / (p * x + q * y + 1)


def reach(vg: VolumeGeometry, pg: ProjectionGeometry, m: np.ndarray, degree: int = 0) -> np.ndarray:
    """Per view: a bound on the distance (columns) between the column of a pixel's centre and that of one of
    the corners of its basis function's support (``(degree + 1) / 2`` pixels from the centre along each axis),
    over the pixels (``m``: the views' :func:`column_map`).

    The column of corner ``P + δ`` less that of the centre ``P`` is ``A(P) / (n(P) (n(P) + n_δ))`` with ``A``
    and ``n`` affine in ``P`` (``n > 0`` in front of the source): along a level line of ``n`` it is affine, so
    its extremes over the box of the pixel centres lie on the box's boundary. That boundary is sampled here
    (spacing ``dist / 32`` pixels, ``dist`` the sources' least distance from the box, at most half a pixel), and
    the samples' largest value taken 0.1% larger."""
    nx, ny = vg.shape_xyz
    mx, my = (nx - 1) / 2, (ny - 1) / 2
    src, _, _ = _views(pg)
    corners = knot_box(vg, degree)
    gap = np.maximum(corners.min(0)[None] - src, src - corners.max(0)[None]).max(1).min() / max(vg.spacing_xyz)
    step = float(np.clip(gap / 32, 1 / 64, 0.5))
    tx = np.linspace(-mx, mx, max(int(np.ceil(2 * mx / step)) + 1, 2))
    ty = np.linspace(-my, my, max(int(np.ceil(2 * my / step)) + 1, 2))
    xs = np.concatenate([tx, tx, np.full_like(ty, -mx), np.full_like(ty, mx)])
    ys = np.concatenate([np.full_like(tx, -my), np.full_like(tx, my), ty, ty])
    half = (degree + 1) / 2
    return np.concatenate([_spread(m[start : start + 64], xs, ys, half) for start in range(0, len(m), 64)]) * 1.001


def _spread(m: np.ndarray, xs: np.ndarray, ys: np.ndarray, half: float = 0.5) -> np.ndarray:
    """Per view (the rows of the maps ``m``): the largest distance (columns) between the column of a pixel
    centre ``xs, ys`` and that of one of the corners ``half`` pixels from it along each axis."""
    centre = _columns(m, xs, ys)
    spread = np.zeros_like(centre)
    for dx, dy in ((-half, -half), (-half, half), (half, -half), (half, half)):
        spread = np.maximum(spread, np.abs(_columns(m, xs + dx, ys + dy) - centre))
    return spread.max(axis=1)


def block_for(block: int, work: int) -> int:
    """Pixels per lane for an operator of ``work`` pixels x views: ``block``, or the largest power of two below
    ``work / 2**20`` (at least 1) where that is smaller.

    Measured (float32, load 2.7-3.2, medians of 5; wall ms of the gather for blocks 16 / 8 / 4 / 2 / 1): 64² x 90 x
    128 linear 13.6 / 12.1 / 8.0 / 7.9 / 8.0, bspline2 43.9 / 24.2 / 16.0 / 12.0 / 9.9 (box 6.4 / - / 5.9 / - /
    3.0); 128² x 180 x 256 linear 27.7 / 24.0 / 24.0 / 23.1 / 24.8, bspline2 50.6 / 44.0 / 38.9 / 39.9 / 40.1;
    256² x 360 x 512 linear 92.0 / 88.1 / 99.9 / 100.7 / 134.1, bspline2 276 / 253 / 251 / 252 / 255.

    Example:
        >>> block_for(16, 64 * 64 * 90), block_for(16, 128 * 128 * 180), block_for(16, 256 * 256 * 360)
        (1, 2, 16)
    """
    return min(block, 1 << int(np.log2(max(work / 2**20, 1.0))))


@dataclass
class FanPlan:
    """The device inputs of one call: per class of views with ``taps`` candidate columns, its plan (rows,
    first columns, parameter packets); the near-axis rays' indices (``None`` if there are none)."""

    classes: list[tuple[int, Plan]]
    near: Any


class FanFootprints(ParallelFootprints):
    """The gather adjoint of the box basis for 2D flat fan beams (see the module docstring).

    It takes the loops, packets and value tables of :class:`~drct.kernels.footprints.ParallelFootprints`
    (whose constructor, for parallel beams, it does not call) and gives the fan's column map, reach and chords.
    """

    degree = 0
    group = 1
    block = 16
    """Pixels per lane. Wall ms by (group, block), fan 256² x 360 x 512 float32, one run of an earlier form of
    the chord (load 3.7; forward 32.0): (1, 16) 42.9, (2, 16) 46.8, (1, 32) 48.0, (1, 12) 44.0; another run
    (load 3.7; forward 46.7): (2, 8) 73.3, (1, 8) 64.7, (1, 4) 73.2, (2, 4) 64.5, (1, 16) 54.3, (4, 8) 58.4.

    Small operators take fewer (:func:`block_for`): a call traces ``block`` x candidates unrolled closed forms
    (milliseconds in Python), which dominate where the kernel runs for a few."""

    def __init__(self, grid: KnotGrid, vg: VolumeGeometry, pg: ProjectionGeometry, t: Types) -> None:
        if grid.degree != self.degree or not fits(vg, pg, grid.degree):
            raise ValueError(
                f"{type(self).__name__} serves degree {self.degree} of 2D flat fan beams outside the volume, not {pg!r}"
            )
        self.grid, self.vg, self.pg, self.t = grid, vg, pg, t
        self.cols = pg.det_shape[-1]
        nx, ny = grid.shape
        self.middle = ((nx - 1) / 2, (ny - 1) / 2)
        self.map = column_map(vg, pg)
        corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=np.float64) * np.array(self.middle)
        cols_at = _columns(self.map, corners[:, 0], corners[:, 1])  # a perspective map's extremes: at corners
        eps = 2.0**-24 if t.dtype == "float32" else 2.0**-53
        terms = np.abs(self.map[:, :3]) @ np.array([*self.middle, 1.0])
        smallest = np.min(1 - np.abs(self.map[:, 3:]) @ np.array(self.middle))  # the denominator's least value
        margin = (1e-3 if t.dtype == "float32" else 1e-9) + 64 * eps * float(terms.max()) / smallest
        self.reach = reach(vg, pg, self.map, self.degree) + margin
        self.view_taps = np.floor(2 * self.reach).astype(np.int64) + 1
        self.taps = int(self.view_taps.max())
        self.low = np.floor(cols_at.min(axis=1) - self.reach).astype(np.int64) - 2
        high = np.ceil(cols_at.max(axis=1) - self.reach).astype(np.int64) + 2
        self.width = int((high - self.low).max()) + self.taps + 1
        self.block = block_for(type(self).block, pg.num_views * nx * ny)
        self.exact = np.zeros(pg.num_views, dtype=bool)
        self._rays(vg, pg)
        self._plans: dict[tuple[int, int, int], FanPlan] = {}  # pyright: ignore[reportIncompatibleVariableOverride]

    def _rays(self, vg: VolumeGeometry, pg: ProjectionGeometry) -> None:
        """Per view, the lines of the candidate rays as functions of ``k`` (the column less the middle one), in
        registers (:meth:`_add_view`): with ``D(k) = D0 + k e`` the ray's direction (unnormalised), ``X = h_y
        D_x`` and ``Y = h_x D_y``, the sum and difference ``u = X + Y``, ``w = X - Y`` (so that ``max(|u|, |w|)
        = A + B`` and ``min(|u|, |w|) = |A - B|`` of the module docstring) and ``S = 2 cross(D, pixel -
        source) = 2 (X y - Y x + cross(D, centre - source))`` for the pixel ``x, y`` pixels from the grid's
        middle: ``u0, w0, du, dw`` and ``S = sx x + sy y + s0 + k (tx x + ty y + ts)``. Then ``2 chord ·
        |D_x D_y| / |D| = (A + B - max(|A - B|, |S|))+``, and the per-ray weight ``|D| / (2 |D_x D_y|)`` (zero
        for the near-axis rays, whose flat indices are kept) goes into the value table."""
        src, det, det_u = _views(pg)
        hx, hy = vg.spacing_xyz
        scale = 1.0 / np.linalg.norm(det - src, axis=1, keepdims=True)
        d0, e = (det - src) * scale, det_u * scale  # the middle column's ray, and the step per column
        rel = np.asarray(vg.center, dtype=np.float64)[None, :] - src
        x0, y0, ex, ey = hy * d0[:, 0], hx * d0[:, 1], hy * e[:, 0], hx * e[:, 1]
        kappa0, kappa1 = _cross(d0, rel), _cross(e, rel)
        self.lines = np.column_stack(
            [x0 + y0, x0 - y0, ex + ey, ex - ey, -2 * y0, 2 * x0, 2 * kappa0, -2 * ey, 2 * ex, 2 * kappa1]
        )
        k = np.arange(self.cols) - (self.cols - 1) / 2
        dx = d0[:, 0, None] + k[None, :] * e[:, 0, None]
        dy = d0[:, 1, None] + k[None, :] * e[:, 1, None]
        ax, ay = np.abs(dx) / hx, np.abs(dy) / hy
        near = np.minimum(ax, ay) < NEAR_AXIS * np.maximum(ax, ay)
        with np.errstate(divide="ignore", invalid="ignore"):
            weight = np.where(near, 0.0, np.hypot(dx, dy) / np.abs(2 * dx * dy))
        self.weights = upload(self.t.Float, weight.ravel().astype(self.t.dtype))
        self.near_rays = np.flatnonzero(near)

    def _parameters(self, views: np.ndarray) -> np.ndarray:
        """Per view (rows): the map ``(a, b, c, p, q)`` to the first candidate column before rounding up (the
        column map shifted by the reach), the rays' ``u``, ``w``, their steps, ``S`` at column ``middle`` and its
        ``x``/``y`` terms (:meth:`_rays`), and the table row's first column."""
        a, b, c, p, q = self.map[views].T
        r = self.reach[views]
        return np.column_stack([a - r * p, b - r * q, c - r, p, q, self.lines[views], self.low[views]])

    def plan(self, vectors: dict[str, Vec], first_view: int, count: int) -> FanPlan:  # pyright: ignore[reportIncompatibleMethodOverride]
        """The device inputs of a call over views ``first_view .. first_view + count`` (built once, kept: they
        depend on the geometry only): per class of views with the same ``taps``, its rows of the value table
        (in groups of :attr:`group`, the last padded with rows that read zeros) and their parameters."""
        key = (first_view, count, self.group)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        t = self.t
        chosen = np.arange(first_view, first_view + count)
        require_memory(
            3 * count * self.width * self.packet_size * t.itemsize, f"the fan gather's tables of {count} views"
        )
        classes = []
        lower = self.view_taps[chosen] < self.taps  # two classes at most: every class is a kernel to compile
        for taps, views in ((self.taps - 1, chosen[lower]), (self.taps, chosen[~lower])):
            if not len(views):
                continue
            padded = -(-len(views) // self.group) * self.group
            order = np.concatenate([views, np.full(padded - len(views), views[-1])])
            rows = np.where(np.arange(padded) < len(views), order - first_view, -1)
            groups = self._parameters(order).reshape(padded // self.group, -1)
            low = upload(t.Int, self.low[order].astype(np.int32))
            classes.append(
                (int(taps), Plan(upload(t.Int, rows.astype(np.int32)), low, padded, upload_packets(t, groups), None))
            )
        near = self.near_rays[
            (self.near_rays >= first_view * self.cols) & (self.near_rays < (first_view + count) * self.cols)
        ]
        plan = FanPlan(classes, upload(t.UInt, near.astype(np.uint32)) if len(near) else None)
        self._plans[key] = plan
        return plan

    def backproject(
        self, values: Any, vectors: dict[str, Vec], value_start: int = 0, first_view: int = 0, views: int | None = None
    ) -> Any:
        """``A.T y`` (flat, one volume) of views ``first_view .. first_view + views`` (default: all); ``values``
        holds their ``y`` from flat index ``value_start`` on. Per class of views one kernel of symbolic loops
        over them (and its value table); the near-axis rays by the forward's DDA."""
        t = self.t
        nx, ny = self.grid.shape
        count = self.pg.num_views - first_view if views is None else views
        acc = dr.zeros(t.Float, nx * ny)
        if count <= 0:
            return acc
        plan = self.plan(vectors, first_view, count)
        start, weights_start = dr.opaque(t.UInt, value_start), dr.opaque(t.UInt, first_view * self.cols)
        for taps, part in plan.classes:
            sized = self.sized(taps)
            table = sized.value_table(values, start, part.rows, part.low, part.count)
            table = table * sized.value_table(self.weights, weights_start, part.rows, part.low, part.count)
            dr.eval(table)
            acc = acc + sized._loop((table, taps), part.groups)
        if plan.near is not None:
            acc = self._near_axis(acc, values, vectors, plan.near, value_start - first_view * self.cols)
        dr.eval(acc)
        return acc

    def sized(self, taps: int) -> FanFootprints:
        """This gather with ``taps`` candidates per view (its value tables' packets as small as they can be): a
        shallow copy, made at each call so that it follows :attr:`group` and :attr:`block`."""
        if taps == self.taps:
            return self
        out = copy.copy(self)
        out.taps = taps
        return out

    def _near_axis(self, acc: Any, values: Any, vectors: dict[str, Vec], rays: Any, shift: int) -> Any:
        """``acc`` plus the transpose of the forward's box march (:mod:`drct.kernels.box`) over the near-axis
        rays ``rays`` (flat sinogram indices; their values at ``rays + shift`` in ``values``)."""
        t = self.t
        segs = self.segments(vectors, rays)
        mine = dr.gather(t.Float, values, t.UInt(t.Int(rays) + dr.opaque(t.Int, shift)))
        padded = padding.zeros(self.grid, t)
        box.backproject(self.grid, t, segs, mine, padded)
        return padding.crop_add(self.grid, t, padded, acc)

    def _add_view(self, acc: Any, table: Any, x: Any, y: Any, p: list[Any]) -> Any:
        """``acc`` plus one view's chords (``table``: the value table and the view's ``taps``; ``p``: the table
        offset and :meth:`_parameters`): per candidate ``(max(|u|, |w|) - max(min(|u|, |w|), |S|))+`` times
        its value (see :meth:`_rays`)."""
        t = self.t
        table, taps = table
        base, a, b, c, pp, q, u, w, du, dw, sx, sy, s0, tx, ty, ts = p
        first = dr.ceil(dr.fma(b, y, dr.fma(a, x, c)) / dr.fma(q, y, dr.fma(pp, x, 1.0)))  # x-terms: per lane
        values = self._values(table, t.Int(first) + base)
        k = first - dr.opaque(t.Float, (self.cols - 1) / 2)  # opaque: one kernel for every detector
        u, w = dr.fma(k, du, u), dr.fma(k, dw, w)
        step = dr.fma(ty, y, dr.fma(tx, x, ts))
        s = dr.fma(k, step, dr.fma(sy, y, dr.fma(sx, x, s0)))
        for j in range(taps):
            if j:
                u, w, s = u + du, w + dw, s + step
            au, aw = dr.abs(u), dr.abs(w)
            chord = larger(au, aw) - larger(smaller(au, aw), dr.abs(s))
            acc = dr.fma(dr.select(chord > 0, chord, 0.0), values[j], acc)
        return acc
