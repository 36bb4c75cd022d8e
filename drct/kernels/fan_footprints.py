"""The voxel-driven (gather) adjoint of the box basis for 2D fan beams on a flat detector.

The sibling of :mod:`drct.kernels.footprints` (2D parallel beams), whose loop structure it shares: one kernel of
symbolic loops over the views per call, the per-view parameters read with the loop counter one packet per group
of views, each lane a block of pixels with the accumulators in registers, ``y`` read from a table of packets of
consecutive columns (:meth:`~drct.kernels.footprints.ParallelFootprints.value_table`).

Per view the rays leave one point, so a pixel's centre lands on detector column ``col = (a x + b y + c) / (p x +
q y + 1)`` (a perspective map of the pixel's offset ``x, y`` from the grid's middle, in pixels), and the columns
whose ray can cross the pixel lie within :attr:`FanFootprints.reach` of it: the largest distance, over the view's
pixels, between the column of a pixel's centre and that of one of its corners (found on the boundary of the
volume, where it peaks; see :func:`reach`), plus a margin for rounding. Every view tests the same number of
candidate columns, ``taps = floor(2 max reach) + 1``.

Per candidate ray the chord through the pixel comes from the ray's *record* (:meth:`FanFootprints.record_table`,
built once per operator by the forward's own ray set-up, :func:`drct.kernels.grid.clip_rays`): the DDA's face
offsets and reciprocal directions, so that the slab method ``min_a (k_a + face_a) inv_a - max_a (k_a - step_a +
face_a) inv_a`` gives the DDA's segment in cell ``k`` bit for bit (the same floats, the same operations; see
:mod:`drct.kernels.footprints`' exact path, which every fan view takes here). An axis the ray does not move along
is recorded as ``inv = 2^100``, ``face = 0.5 - k0`` with ``k0`` the DDA's cell on it (the slab is then
``±2^99`` around that cell and empty around every other: no select), a ray that misses the volume as ``face_x =
-2^20`` (every slab empty). The records and the values are 4 + ``taps`` floats per candidate, read as packets.

Covered: degree 0 (the box), ``beam="cone"`` with ``ndim == 2``, flat detectors, and every view's source and
detector line on opposite sides of the volume's knot box (each ray segment crosses the whole box, so the DDA's
segments inside the volume are never cut by the ray's ends; see :func:`covers`). Everything else keeps the
ray-driven scatter adjoint.

Example:
    >>> import numpy as np, drct as ct
    >>> pg = ct.fan(np.linspace(0, 2 * np.pi, 8, endpoint=False), 12, 1.5, 40.0, 80.0)
    >>> A = ct.Projector(ct.VolumeGeometry((7, 6)), pg, basis="voxel", dtype="float64")
    >>> type(A._engine.footprints).__name__
    'FanFootprints'
    >>> y = np.random.default_rng(0).random(A.range_shape)
    >>> scatter = A._engine.backproject(A.types.Float(y.ravel()), A._engine.vectors(), scatter=True)
    >>> bool(np.allclose(A.T(y), scatter.numpy().reshape(A.domain_shape), rtol=0, atol=1e-12))
    True
"""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np

from ..backend import Types
from ..geometry.projection import AnyGeometry, ProjectionGeometry, host_rows
from ..geometry.ray_arrays import Vec, make_rays
from ..geometry.volume import VolumeGeometry
from .footprints import ParallelFootprints, Plan
from .grid import KnotGrid, clip_rays, first_cell, larger, smaller

STILL = 2.0**100
"""The reciprocal direction recorded for an axis a ray does not move along (exact in float32 and float64; the
crossings ``(k + face) · STILL`` stay finite in float32 for cells below 2^27)."""
MISSED = -(2.0**20)
"""The face offset recorded for a ray that misses the volume: every cell's slab lies far below zero."""
FRONT = 1e-6
"""How far inside ``(0, 1)`` (source 0, detector line 1) every corner of the knot box must lie."""


def _views(pg: ProjectionGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per view (rows): the source, the detector centre and the column step, float64."""
    src, det, det_u = (np.atleast_2d(np.asarray(host_rows(v), dtype=np.float64)) for v in (pg.src, pg.det, pg.det_u))
    return src, det, det_u


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _box_corners(vg: VolumeGeometry, grid: KnotGrid) -> np.ndarray:
    """The 4 corners (rows, mm) of the knot grid's box: the pixels and the one-cell zero border around them."""
    low = np.array(vg.first_center) - grid.shift * np.array(vg.spacing_xyz)
    high = low + np.array(grid.cells) * np.array(vg.spacing_xyz)
    return np.array([[low[0], low[1]], [low[0], high[1]], [high[0], low[1]], [high[0], high[1]]])


def depth(src: np.ndarray, det: np.ndarray, det_u: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Per view (rows) and point (columns): where the point lies between the view's source (0) and its detector
    line (1), along the detector's normal."""
    return _cross(det_u[:, None, :], points[None, :, :] - src[:, None, :]) / _cross(det_u, det - src)[:, None]


def covers(vg: VolumeGeometry, pg: AnyGeometry, degree: int) -> bool:
    """Whether :class:`FanFootprints` serves this operator: the box basis, a 2D fan beam on a flat detector with
    the volume's whole knot box strictly between every view's source and detector line.

    Example:
        >>> import numpy as np, drct as ct
        >>> covers(ct.VolumeGeometry((8, 8)), ct.fan(np.zeros(1), 16, 1.0, 40.0, 80.0), 0)
        True
        >>> covers(ct.VolumeGeometry((8, 8)), ct.fan(np.zeros(1), 16, 1.0, 4.0, 80.0), 0)  # source inside
        False
    """
    if degree != 0 or not isinstance(pg, ProjectionGeometry) or pg.ndim != 2 or pg.beam != "cone" or pg.curved:
        return False
    src, det, det_u = _views(pg)
    with np.errstate(divide="ignore", invalid="ignore"):
        where = depth(src, det, det_u, _box_corners(vg, KnotGrid.of(vg, degree)))
    return bool(np.all((where > FRONT) & (where < 1 - FRONT)))


def column_map(vg: VolumeGeometry, pg: ProjectionGeometry) -> np.ndarray:
    """Per view (rows): ``a, b, c, p, q`` of the detector column ``(a x + b y + c) / (p x + q y + 1)`` where the
    ray through the point ``x, y`` pixels from the grid's middle lands (columns counted from the first)."""
    src, det, det_u = _views(pg)
    hx, hy = vg.spacing_xyz
    w = src - det
    c0 = np.asarray(vg.center, dtype=np.float64)[None, :] - src
    u0, n0 = _cross(w, c0), _cross(det_u, c0)  # u = cross(w, r) / cross(det_u, r), r = point - source
    off = (pg.det_shape[-1] - 1) / 2
    ux, uy = -hx * w[:, 1], hy * w[:, 0]
    nx, ny = -hx * det_u[:, 1], hy * det_u[:, 0]
    return np.column_stack([(ux + off * nx) / n0, (uy + off * ny) / n0, u0 / n0 + off, nx / n0, ny / n0])


def _columns(m: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The columns of points ``x, y`` (broadcast against the views' maps ``m``, one row per view)."""
    a, b, c, p, q = (m[:, i, None] for i in range(5))
    return (a * x + b * y + c) / (p * x + q * y + 1)


def reach(vg: VolumeGeometry, pg: ProjectionGeometry, m: np.ndarray) -> np.ndarray:
    """Per view: the largest distance (columns) between the column of a pixel's centre and that of one of its
    corners, over the pixels.

    The column of corner ``δ`` less that of the centre ``P`` is ``A(P) / (n(P) (n(P) + n_δ))`` with ``A`` and
    ``n`` affine in ``P`` (``n > 0`` in front of the source): along a level line of ``n`` it is affine, so its
    extremes over the box of the pixel centres lie on the box's boundary, sampled here finely enough (spacing
    ``dist / 32``, ``dist`` the source's distance from the box in pixels, at most half a pixel) that the
    returned value, 0.1% larger than the samples' largest, bounds it."""
    nx, ny = vg.shape_xyz
    mx, my = (nx - 1) / 2, (ny - 1) / 2
    src, _, _ = _views(pg)
    corners = _box_corners(vg, KnotGrid.of(vg, 0))
    gap = np.min(np.maximum(corners.min(0)[None] - src, src - corners.max(0)[None]).max(1)) / min(vg.spacing_xyz)
    step = float(np.clip(gap / 32, 1 / 64, 0.5))
    tx = np.linspace(-mx, mx, max(int(np.ceil(2 * mx / step)) + 1, 2))
    ty = np.linspace(-my, my, max(int(np.ceil(2 * my / step)) + 1, 2))
    xs = np.concatenate([tx, tx, np.full_like(ty, -mx), np.full_like(ty, mx)])
    ys = np.concatenate([np.full_like(tx, -my), np.full_like(tx, my), ty, ty])
    out = np.zeros(len(m))
    for start in range(0, len(m), 64):  # a few MB per chunk of views
        part = m[start : start + 64]
        centre = _columns(part, xs, ys)
        spread = np.zeros_like(centre)
        for dx, dy in ((-0.5, -0.5), (-0.5, 0.5), (0.5, -0.5), (0.5, 0.5)):
            spread = np.maximum(spread, np.abs(_columns(part, xs + dx, ys + dy) - centre))
        out[start : start + 64] = spread.max(axis=1)
    return out * 1.001


class FanFootprints(ParallelFootprints):
    """The gather adjoint of the box basis for 2D fan beams (see the module docstring).

    It takes the loops, packets and value tables of :class:`~drct.kernels.footprints.ParallelFootprints`
    (whose constructor, for parallel beams, it does not call) and gives the fan's column map, reach and chords.
    """

    degree = 0

    def __init__(self, grid: KnotGrid, vg: VolumeGeometry, pg: ProjectionGeometry, t: Types) -> None:
        if grid.degree != self.degree or not covers(vg, pg, grid.degree):
            raise ValueError(
                f"FanFootprints serves the box basis on 2D flat fan beams in front of the volume, not {pg!r}"
            )
        self.grid, self.vg, self.pg, self.t = grid, vg, pg, t
        self.cols = pg.det_shape[-1]
        nx, ny = grid.shape
        self.middle = ((nx - 1) / 2, (ny - 1) / 2)
        self.map = column_map(vg, pg)
        corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=np.float64) * np.array(self.middle)
        cols_at = _columns(self.map, corners[:, 0], corners[:, 1])  # extremes of a perspective map: at corners
        eps = 2.0**-24 if t.dtype == "float32" else 2.0**-53
        bound = np.abs(self.map[:, :3]) @ np.array([self.middle[0], self.middle[1], 1.0])
        bound = bound / np.min(np.abs(1 - np.abs(self.map[:, 3:]) @ np.array(self.middle)))
        margin = (1e-3 if t.dtype == "float32" else 1e-9) + 64 * eps * float(bound.max())
        self.reach = reach(vg, pg, self.map) + margin
        self.taps = int(np.floor(2 * self.reach.max())) + 1
        self.low = np.floor(cols_at.min(axis=1) - self.reach).astype(np.int64) - 2
        high = np.ceil(cols_at.max(axis=1) - self.reach).astype(np.int64) + 2
        self.width = int((high - self.low).max()) + self.taps + 1
        self.exact = np.zeros(pg.num_views, dtype=bool)
        self._plans: dict[tuple[int, int, int], Plan] = {}
        self._records: dict[tuple[int, int, int], Any] = {}

    def _parameters(self, views: np.ndarray) -> np.ndarray:
        """Per view (rows): its column map ``a, b, c, p, q``, ``reach`` and its table row's first column."""
        return np.column_stack([self.map[views], self.reach[views], self.low[views]])

    def record_table(self, vectors: dict[str, Vec], plan: Plan, first_view: int) -> Any:
        """Per ray of the plan's table rows (laid out as :meth:`value_table`'s, one slot per column): the DDA's
        ``(face_x, face_y, inv_x, inv_y)`` (see the module docstring; rays off the detector as misses)."""
        t, grid = self.t, self.grid
        _, k, col, real = self._slots(plan.low, plan.count, 1)
        row = dr.gather(t.Int, plan.rows, k)
        view = dr.select(row >= 0, row, 0) + first_view
        ray = t.UInt(dr.select(real, view * self.cols + col, 0))
        center = [dr.opaque(t.Float64, c) for c in self.vg.first_center]
        spacing = [dr.opaque(t.Float64, h) for h in self.vg.spacing_xyz]
        segs = clip_rays(make_rays(self.pg, t, vectors, ray), grid, center, spacing, t)
        hit = real & (segs.length > 0)
        faces, invs = [], []
        for d, e, k0 in zip(segs.direction, segs.entry, first_cell(grid, t, segs), strict=True):
            still = d == 0
            faces.append(dr.select(still, 0.5 - t.Float(k0), dr.select(d > 0, 1.0, 0.0) - e))
            invs.append(dr.select(still, STILL, dr.rcp(d)))
        fx, fy = dr.select(hit, faces[0], MISSED), dr.select(hit, faces[1], 0.0)
        ix, iy = dr.select(hit, invs[0], STILL), dr.select(hit, invs[1], 1.0)
        table = dr.ravel(self._packet(4)(fx, fy, ix, iy))
        dr.eval(table)
        return table

    def backproject(
        self, values: Any, vectors: dict[str, Vec], value_start: int = 0, first_view: int = 0, views: int | None = None
    ) -> Any:
        """``A.T y`` (flat, one volume) of views ``first_view .. first_view + views`` (default: all); ``values``
        holds their ``y`` from flat index ``value_start`` on: one kernel of symbolic loops over the views."""
        t = self.t
        nx, ny = self.grid.shape
        count = self.pg.num_views - first_view if views is None else views
        if count <= 0:
            return dr.zeros(t.Float, nx * ny)
        plan = self.plan(vectors, first_view, count)
        key = (first_view, count, self.group)
        records = self._records.get(key)
        if records is None:
            records = self._records[key] = self.record_table(vectors, plan, first_view)
        table = self.value_table(values, dr.opaque(t.UInt, value_start), plan.rows, plan.low, plan.count)
        dr.eval(table)
        acc = self._loop((table, records), plan.groups)
        dr.eval(acc)
        return acc

    def _add_view(self, acc: Any, table: Any, x: Any, y: Any, p: list[Any]) -> Any:
        """``acc`` plus one view's chords (``p``: the table offset, the column map, the reach)."""
        t = self.t
        values_table, records = table
        base, a, b, c, pp, q, reach = p
        col = dr.fma(a, x, dr.fma(b, y, c)) / dr.fma(pp, x, dr.fma(q, y, 1.0))
        slot = t.Int(dr.ceil(col - reach)) + base
        values = self._values(values_table, slot)
        kx = x + (self.middle[0] + 1.0)  # knot cells of the box basis: coefficient i is cell i + 1
        ky = y + (self.middle[1] + 1.0)
        record = self._packet(4)
        for j in range(self.taps):
            fx, fy, ix, iy = dr.gather(record, records, t.UInt(slot + j) if j == 0 else t.UInt(slot + j))
            hi = smaller((kx + fx) * ix, (ky + fy) * iy)
            lo = larger(
                (dr.select(ix > 0, kx - 1.0, kx + 1.0) + fx) * ix, (dr.select(iy > 0, ky - 1.0, ky + 1.0) + fy) * iy
            )
            chord = hi - lo
            acc = dr.fma(dr.select(chord > 0, chord, 0.0), values[j], acc)
        return acc


NEAR_AXIS = 1e-2


class TrapezoidFanFootprints(FanFootprints):
    """Variant: per ray the closed-form trapezoid (offset map, slope, peak, plateau); near-axis rays left out."""

    def ray_parameters(self) -> np.ndarray:
        """Per view and column: ``alpha, beta, gamma, slope, peak, plateau`` (float64; zeros for near-axis rays)."""
        src, det, det_u = _views(self.pg)
        hx, hy = self.vg.spacing_xyz
        u = np.arange(self.cols) - (self.cols - 1) / 2
        pix = det[:, None, :] + u[None, :, None] * det_u[:, None, :]
        d = pix - src[:, None, :]
        d = d / np.linalg.norm(d, axis=-1, keepdims=True)
        dx, dy = d[..., 0], d[..., 1]
        rel = np.asarray(self.vg.center, dtype=np.float64)[None, :] - src
        gamma = dx * rel[:, None, 1] - dy * rel[:, None, 0]
        ax, ay = np.abs(dx) / hx, np.abs(dy) / hy
        self.near = np.minimum(ax, ay) < NEAR_AXIS * np.maximum(ax, ay)
        with np.errstate(divide="ignore", invalid="ignore"):
            plateau = np.minimum(hx / np.abs(dx), hy / np.abs(dy))
            outer = (hx * np.abs(dy) + hy * np.abs(dx)) / 2
            inner = np.abs(hx * np.abs(dy) - hy * np.abs(dx)) / 2
            slope = plateau / (outer - inner)
        out = np.stack([-dy * hx, dx * hy, gamma, slope, slope * outer, plateau], axis=-1)
        out[self.near] = 0.0
        return out

    def record_table(self, vectors: dict[str, Vec], plan: Plan, first_view: int) -> Any:
        rays = self.ray_parameters()
        rows = plan.rows.numpy()
        low = plan.low.numpy()
        views = np.where(rows >= 0, rows, 0) + first_view
        cols = low[:, None] + np.arange(self.width)[None, :]
        real = (cols >= 0) & (cols < self.cols)
        table = np.zeros((len(views), self.width, 8))
        v = np.broadcast_to(views[:, None], cols.shape)
        table[real, :6] = rays[v[real], cols[real]]
        t = self.t
        from ..backend import upload

        return upload(t.Float, table.ravel().astype(t.dtype))

    def _add_view(self, acc: Any, table: Any, x: Any, y: Any, p: list[Any]) -> Any:
        t = self.t
        values_table, records = table
        base, a, b, c, pp, q, reach = p
        col = dr.fma(a, x, dr.fma(b, y, c)) / dr.fma(pp, x, dr.fma(q, y, 1.0))
        slot = t.Int(dr.ceil(col - reach)) + base
        values = self._values(values_table, slot)
        record = self._packet(None)
        for j in range(self.taps):
            index = t.UInt(slot + j)
            alpha, beta, gamma, slope, peak, plateau, _, _ = dr.gather(record, records, index, shape=(8, dr.width(index)))
            s = dr.fma(alpha, x, dr.fma(beta, y, gamma))
            chord = dr.fma(-slope, dr.abs(s), peak)
            chord = dr.select(chord > 0, chord, 0.0)
            chord = dr.select(chord < plateau, chord, plateau)
            acc = dr.fma(chord, values[j], acc)
        return acc


class AnalyticFanFootprints(FanFootprints):
    """Variant: the trapezoid chord computed from the ray's column (no per-candidate gather); the near-axis
    rays walked by the forward's own DDA (a scatter over those rays only)."""

    near_axis = 1e-2

    def __init__(self, grid: KnotGrid, vg: VolumeGeometry, pg: ProjectionGeometry, t: Types) -> None:
        super().__init__(grid, vg, pg, t)
        src, det, det_u = _views(pg)
        hx, hy = vg.spacing_xyz
        scale = 1.0 / np.linalg.norm(det - src, axis=1)
        off = (self.cols - 1) / 2
        d0 = (det - src - off * det_u) * scale[:, None]  # the direction of column 0's ray; column c adds c e
        e = det_u * scale[:, None]
        rel = np.asarray(vg.center, dtype=np.float64)[None, :] - src
        kappa0 = _cross(d0, rel)  # cross(D(c), centre - source) = kappa0 + c kappa1
        kappa1 = _cross(e, rel)
        self.rays = np.column_stack([hy * d0[:, 0], hx * d0[:, 1], hy * e[:, 0], hx * e[:, 1], kappa0, kappa1])
        c = np.arange(self.cols)
        dx = d0[:, 0, None] + c[None, :] * e[:, 0, None]
        dy = d0[:, 1, None] + c[None, :] * e[:, 1, None]
        ax, ay = np.abs(dx) / hx, np.abs(dy) / hy
        self.near = np.minimum(ax, ay) < self.near_axis * np.maximum(ax, ay)
        with np.errstate(divide="ignore"):
            weight = np.hypot(dx, dy) / np.abs(dx * dy)
        self.weight_host = np.where(self.near, 0.0, weight)
        from ..backend import upload

        self.weights = upload(t.Float, self.weight_host.ravel().astype(t.dtype))
        self.near_rays = np.flatnonzero(self.near)

    def _parameters(self, views: np.ndarray) -> np.ndarray:
        return np.column_stack([self.map[views], self.reach[views], self.rays[views], self.low[views]])

    def backproject(
        self, values: Any, vectors: dict[str, Vec], value_start: int = 0, first_view: int = 0, views: int | None = None
    ) -> Any:
        t = self.t
        nx, ny = self.grid.shape
        count = self.pg.num_views - first_view if views is None else views
        if count <= 0:
            return dr.zeros(t.Float, nx * ny)
        plan = self.plan(vectors, first_view, count)
        field, k, col, _ = self._slots(plan.low, plan.count, self.packet_size)
        col = col + t.Int(field)
        row = dr.gather(t.Int, plan.rows, k)
        real = (col >= 0) & (col < self.cols) & (field < self.taps) & (row >= 0)
        ray = t.UInt(dr.select(real, row * self.cols + col, 0))
        table = dr.gather(t.Float, values, ray + dr.opaque(t.UInt, value_start), real) * dr.gather(
            t.Float, self.weights, ray + dr.opaque(t.UInt, first_view * self.cols), real
        )
        dr.eval(table)
        acc = self._loop(table, plan.groups)
        near = self.near_rays[(self.near_rays >= first_view * self.cols) & (self.near_rays < (first_view + count) * self.cols)]
        if len(near):
            from ..backend import upload
            from . import box

            index = upload(t.UInt, near.astype(np.uint32))
            center = [dr.opaque(t.Float64, c) for c in self.vg.first_center]
            spacing = [dr.opaque(t.Float64, h) for h in self.vg.spacing_xyz]
            segs = clip_rays(make_rays(self.pg, t, vectors, index), self.grid, center, spacing, t)
            mine = dr.gather(t.Float, values, index - first_view * self.cols + value_start)
            padded = dr.zeros(t.Float, box.padded_size(self.grid))
            box.backproject(self.grid, t, segs, mine, padded)
            acc = box.crop_add(self.grid, t, padded, acc)
        dr.eval(acc)
        return acc

    def _add_view(self, acc: Any, table: Any, x: Any, y: Any, p: list[Any]) -> Any:
        t = self.t
        base, a, b, c, pp, q, reach, dx0, dy0, ex, ey, kappa0, kappa1 = p
        col = dr.fma(a, x, dr.fma(b, y, c)) / dr.fma(pp, x, dr.fma(q, y, 1.0))
        first = dr.ceil(col - reach)
        values = self._values(table, t.Int(first) + base)
        dx = dr.fma(first, ex, dx0)
        dy = dr.fma(first, ey, dy0)
        s = dr.fma(dx, y, -dy * x) + dr.fma(first, kappa1, kappa0)
        step = dr.fma(ex, y, dr.fma(-ey, x, kappa1))
        for j in range(self.taps):
            if j:
                dx, dy, s = dx + ex, dy + ey, s + step
            ay, ax = dr.abs(dy), dr.abs(dx)
            outer = (ax + ay) * 0.5
            narrow = smaller(ax, ay)
            chord = outer - dr.abs(s)
            chord = smaller(dr.select(chord > 0, chord, 0.0), narrow)
            acc = dr.fma(chord, values[j], acc)
        return acc
