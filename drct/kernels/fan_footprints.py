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
