"""Voxel-driven (gather) adjoints of the box and linear bases for 2D parallel beams: per pixel, the rays that see it.

Dr.Jit 1.5's LLVM backend lowers every ``scatter_add`` to a loop over the SIMD lanes, so the ray-driven adjoint
(:func:`drct.kernels.march.backproject`) costs about three forward projections. Here each lane holds pixels and
adds every view; per view the pixel centre is projected onto the detector (column ``col``), and each of the
``K`` columns ``c`` within the pixel's footprint adds ``y[view, c] × footprint(c - col)``: the closed-form line
integral of the pixel's basis function (:class:`BoxFootprints`, :class:`HatFootprints`), its ``K`` values of
``y`` read with one packet gather from a table of the call's views (:meth:`ParallelFootprints.value_table`).

One call is one kernel of symbolic loops (``dr.while_loop``) over the views, traced in about a millisecond
whatever the number of views: the per-view parameters (column map, footprint) are device arrays read with the loop
counter, one packet per :attr:`~ParallelFootprints.group` of views, and each lane is a column block of
:attr:`~ParallelFootprints.block` pixels so that one parameter read serves them all; the accumulators stay in
registers. Everything that depends on the geometry only is built once per operator (:meth:`ParallelFootprints.plan`).

For a box ``h_x × h_y`` and unit ray direction ``d``, the chord as a function of the signed offset ``s`` (in
columns) between the ray and the pixel centre is a trapezoid: ``min(plateau, slope · (outer - |s|))`` clipped at
zero, with ``plateau = min(h_x / |d_x|, h_y / |d_y|)``, ``outer`` and ``inner`` the half-widths
``(h_x |d_y| ± h_y |d_x|) / 2`` (in columns) of its support and top, and ``slope = plateau / (outer - inner)``.
It is the exact chord; the forward's DDA computes the same chords to rounding (≈ 1e-14 in float64 on small
grids), except where a ray runs (nearly) along a pixel edge: there the DDA's answer depends on how the ray's
entry point was rounded (a direction component of 6e-17, as ``cos(π/2)`` gives, moves the row change by cells),
and an axis the ray does not move along at all puts the ray in cell ``floor(entry)``.

So views within :data:`NEAR_AXIS` of a grid axis take the *exact* path instead: per ray a record of the DDA's own
face offsets (``select(d > 0, 1, 0) - entry``, or the DDA's cell for an axis the ray does not move along),
built by the forward's ray set-up (:func:`drct.kernels.grid.clip_rays`), and the chord by the slab method
``min_a (k_a + face_a) · inv_a - max_a (k_a - step_a + face_a) · inv_a`` — the DDA's segment in cell ``k``, bit
for bit. Rays of parallel beams are whole lines, so the clipping at the box never binds inside the volume (its
pixels lie one zero cell inside the box), and rays that miss get ``y = 0``.

The linear basis (:class:`HatFootprints`) projects to a convolution of two triangles, continuous in the ray's
position, so the DDA's rounding never moves a whole chord and every view takes the closed form.

No scatters: the result does not depend on the thread count or on other threads. Wall / CPU ms per call, float32,
2 shared cores (load 4.4-4.7), the previous form (16 views unrolled per launch, traced at every call) and this one
alternating in one process, medians of 9 (5 at 512²): 256² x 256 x 367 box 59.7 / 59.3 -> 23.1 / 22.8 (forward
24.0 / 21.5), linear 104.0 / 100.4 -> 38.6 / 35.1 (forward 57.1 / 55.6); 64² x 64 x 92, where tracing dominated,
box 8.0 / 8.0 -> 3.3 / 1.5, linear 12.0 / 10.5 -> 7.0 / 2.9; 512² x 512 x 735 box 344 / 339 -> 136 / 136
(forward 124 / 123), linear 589 / 572 -> 280 / 270 (forward 339 / 339). Bit-identical results. The first call
compiles one small kernel for every operator of a basis (0.1-0.3 s) where the unrolled kernel grew with the views
(5.9 s for 256 views in float64, 12.5-29.8 s for 512). The unrolled form's tracing had once been removed by
:func:`drjit.freeze`, but a full test run aborted inside a frozen recording while Python's garbage collector ran
(Dr.Jit 1.5): nothing here is frozen.

Example:
    >>> import numpy as np, drct as ct
    >>> A = ct.Projector(ct.VolumeGeometry((6, 5)), ct.parallel(np.linspace(0, np.pi, 7), 9), basis="voxel")
    >>> A._engine.footprints is not None
    True
    >>> y = np.random.default_rng(0).random(A.range_shape)
    >>> scatter = A._engine.backproject(A.types.Float(y.ravel()), A._engine.vectors(), scatter=True)
    >>> bool(np.allclose(A.T(y), scatter.numpy().reshape(A.domain_shape), atol=1e-5))
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import drjit as dr
import numpy as np

from ..backend import Types, upload
from ..geometry.projection import AnyGeometry, ProjectionGeometry, host_rows
from ..geometry.ray_arrays import Vec, make_rays
from ..geometry.volume import VolumeGeometry
from ..memory import require_memory
from .grid import KnotGrid, Segments, clip_rays, first_cell, larger, smaller
from .packets import Packets, gather_packet, packet_type, upload_packets

NEAR_AXIS = 1e-2
"""Views whose rays' slope against a grid axis (``|d_minor| / |d_major|`` in voxels) is below this take the exact
path (see the module docstring): there the DDA's rounding moves whole chords between neighbouring pixels."""


def covers(vg: VolumeGeometry, pg: AnyGeometry, degree: int) -> bool:
    """Whether a gather adjoint of :data:`FOOTPRINTS` serves this operator: the box or linear basis (degree 0
    or 1), a 2D parallel-beam geometry.

    Example:
        >>> import numpy as np, drct as ct
        >>> covers(ct.VolumeGeometry((4, 4)), ct.parallel(np.zeros(1), 6), 1)
        True
        >>> covers(ct.VolumeGeometry((4, 4)), ct.parallel(np.zeros(1), 6), 2)
        False
    """
    return degree in FOOTPRINTS and isinstance(pg, ProjectionGeometry) and pg.ndim == 2 and pg.beam == "parallel"


class ParallelFootprints:
    """What every basis's gather adjoint of a 2D parallel beam shares: where each pixel centre lands on the
    detector, which columns can reach it, the tables of ``y`` and the loops over the views. Subclasses give the
    footprint (:meth:`_footprint`: per view, how far from the centre's column a ray still sees the pixel) and add
    one view's share (:meth:`_add_view`)."""

    degree = -1
    group = 2
    """Views per iteration of the symbolic loop (their parameters one packet: :mod:`drct.kernels.packets`)."""
    block = 8
    """Pixels per lane (a column block of the grid): one parameter gather serves them all.

    Kernel ms per call by (:attr:`group`, :attr:`block`), box / linear, 256² x 256 x 367 float32, one run
    (``load average: 4.5``; forward 17.6 / 40.9): (1, 1) 29.8 / 56.0, (2, 1) 29.3 / 42.2, (4, 1) 28.2 / 51.1;
    (1, 4) 16.5 / 29.8, (2, 4) 16.6 / 24.1; (1, 8) 13.5 / 26.0, (2, 8) 16.1 / 22.2, (4, 8) 14.1 / 25.1;
    (2, 16) 12.9 / 17.9, (4, 16) 14.7 / 33.2. Blocks of 8 or more pixels matter, the group hardly; 16 pixels'
    accumulators and temporaries would not fit in an AVX2 machine's 16 registers."""

    def __init__(self, grid: KnotGrid, vg: VolumeGeometry, pg: ProjectionGeometry, t: Types) -> None:
        if not covers(vg, pg, grid.degree) or grid.degree != self.degree:
            raise ValueError(f"{type(self).__name__} serves degree {self.degree} on 2D parallel beams, not {pg!r}")
        self.grid, self.vg, self.pg, self.t = grid, vg, pg, t
        self.cols = pg.det_shape[-1]
        src, det, det_u = (
            np.atleast_2d(np.asarray(host_rows(v), dtype=np.float64)) for v in (pg.src, pg.det, pg.det_u)
        )
        d = src / np.linalg.norm(src, axis=1, keepdims=True)
        den = det_u[:, 0] * d[:, 1] - det_u[:, 1] * d[:, 0]  # mm across the rays per column
        if np.any(den == 0):
            raise ValueError("a parallel-beam view whose detector columns run along its rays sees nothing: check det_u")
        hx, hy = vg.spacing_xyz
        nx, ny = grid.shape
        self.middle = ((nx - 1) / 2, (ny - 1) / 2)
        # the column of pixel (i, j)'s centre: a (i - middle_x) + b (j - middle_y) + c
        self.a = hx * d[:, 1] / den
        self.b = -hy * d[:, 0] / den
        centre = np.asarray(vg.center, dtype=np.float64)
        rel = centre[None, :] - det
        self.c = (self.cols - 1) / 2 + (rel[:, 0] * d[:, 1] - rel[:, 1] * d[:, 0]) / den
        self.exact = np.zeros(pg.num_views, dtype=bool)
        self.reach = self._footprint(d, np.abs(den))
        self.taps = int(np.floor(2 * self.reach.max())) + 1
        # per view, the smallest first candidate over the volume (at a corner: the column is affine), less a
        # margin for rounding: each view's table row starts there, so candidate indices need no clipping
        corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=np.float64) * np.array(self.middle)
        cols_at = self.a[:, None] * corners[None, :, 0] + self.b[:, None] * corners[None, :, 1] + self.c[:, None]
        self.low = np.ceil(cols_at.min(axis=1) - self.reach).astype(np.int64) - 2
        high = np.ceil(cols_at.max(axis=1) - self.reach).astype(np.int64) + 2
        self.width = int((high - self.low).max()) + self.taps + 1
        self._plans: dict[tuple[int, int, int], Plan] = {}

    def _footprint(self, d: np.ndarray, across: np.ndarray) -> np.ndarray:
        """Per view (unit ray directions ``d``, ``across`` mm between neighbouring rays): the reach of the
        footprint in columns; may mark views in :attr:`exact`."""
        raise NotImplementedError

    def _extra(self, views: np.ndarray) -> list[np.ndarray]:
        """The footprint's own parameters of ``views`` (see :meth:`_add_view`), one array each."""
        return []

    def _add_view(self, acc: Any, table: Any, x: Any, y: Any, p: list[Any]) -> Any:
        """``acc`` plus one view's share: ``p`` is the view's table offset (``t.Int``), its column map ``a, b,
        c``, its ``reach`` and :meth:`_extra`; ``x, y`` the pixel centres."""
        raise NotImplementedError

    # ---- the plan of a call: per-view parameters and table rows, kept between calls ---------------------------
    def plan(self, vectors: dict[str, Vec], first_view: int, count: int) -> Plan:
        """The device inputs of a call over views ``first_view .. first_view + count`` (built once, kept: they
        depend on the geometry only). The value table's rows (:meth:`value_table`) hold the looped views in groups
        of :attr:`group` (the last group padded with rows that read zeros), then the :attr:`exact` views."""
        key = (first_view, count, self.group)
        plan = self._plans.get(key)
        if plan is None:
            t = self.t
            chosen = np.arange(first_view, first_view + count)
            looped, exact = chosen[~self.exact[chosen]], chosen[self.exact[chosen]]
            padded = -(-len(looped) // self.group) * self.group
            order = np.concatenate([looped, np.full(padded - len(looped), looped[-1] if len(looped) else 0), exact])
            rows = np.where(np.arange(len(order)) < len(looped), order - first_view, -1)
            rows[padded:] = exact - first_view
            table_size = len(order) * self.width * self.packet_size * t.itemsize
            require_memory(2 * table_size, f"the gather adjoint's table of {count} views x {self.width} columns")
            parameters = self._parameters(order[:padded])
            groups = parameters.reshape(padded // self.group, self.group * parameters.shape[1])
            plan = Plan(
                rows=upload(t.Int, rows.astype(np.int32)),
                low=upload(t.Int, self.low[order].astype(np.int32)),
                count=len(order),
                groups=upload_packets(self.t, groups),
                exact=self._exact_plan(vectors, exact, padded) if len(exact) else None,
            )
            self._plans[key] = plan
        return plan

    def _parameters(self, views: np.ndarray) -> np.ndarray:
        """Per view (rows): its column map ``a, b, c``, ``reach``, :meth:`_extra` and its table row's first
        column ``low`` — the parameters :meth:`_add_view` takes, the offset last."""
        columns = [self.a[views], self.b[views], self.c[views], self.reach[views], *self._extra(views)]
        return np.column_stack([*columns, self.low[views]])

    def _exact_plan(self, vectors: dict[str, Vec], views: np.ndarray, first_row: int) -> ExactPlan:
        """The inputs of the :attr:`exact` views' loop (only bases that mark views exact have them)."""
        raise NotImplementedError

    def _slots(self, low: Any, count: int, per_slot: int) -> tuple[Any, Any, Any, Any]:
        """For ``count * width * per_slot`` entries (``count`` views whose table rows start at the columns
        ``low``): the entry's field, the view's row, the detector column of its slot and whether that column
        exists."""
        t = self.t
        entry = dr.arange(t.UInt, count * self.width * per_slot)
        field = entry % per_slot
        slot = entry // per_slot
        k = slot // self.width
        col = t.Int(slot - k * self.width) + dr.gather(t.Int, low, k)
        return field, k, col, (col >= 0) & (col < self.cols)

    def value_table(self, values: Any, start: Any, rows: Any, low: Any, count: int) -> Any:
        """``y`` of ``count`` views as packets of ``taps`` consecutive columns (zero off the detector and in rows
        ``-1``): entry ``(k, s)`` holds ``y[start + rows[k] * cols + low[k] + s + j]`` for ``j < taps``
        (``start``: a ``t.UInt`` scalar; ``rows``, ``low``: ``t.Int`` per view)."""
        t = self.t
        field, k, col, _ = self._slots(low, count, self.packet_size)
        col = col + t.Int(field)
        row = dr.gather(t.Int, rows, k)
        real = (col >= 0) & (col < self.cols) & (field < self.taps) & (row >= 0)
        index = t.UInt(dr.select(real, row * self.cols + col, 0)) + start
        return dr.gather(t.Float, values, index, real)

    @property
    def packet_size(self) -> int:
        """Values per packet of :meth:`value_table`: ``taps`` rounded up to a packet size Dr.Jit gathers at once."""
        return 2 if self.taps <= 2 else 4 * -(-self.taps // 4)

    def _values(self, table: Any, slot: Any) -> list[Any]:
        """The ``taps`` values of :meth:`value_table` at ``slot`` (per lane), in packets Dr.Jit gathers at once."""
        size = self.packet_size
        if size <= 4:
            return list(dr.gather(packet_type(self.t, size), table, self.t.UInt(slot)))
        packets = size // 4
        index = self.t.UInt(slot) * packets
        return [v for i in range(packets) for v in dr.gather(packet_type(self.t, 4), table, index + i)]

    def segments(self, vectors: dict[str, Vec], rays: Any) -> Segments:
        """The rays of flat sinogram indices ``rays`` clipped to the knot grid, as the forward sets them up."""
        t = self.t
        center = [dr.opaque(t.Float64, c) for c in self.vg.first_center]
        spacing = [dr.opaque(t.Float64, h) for h in self.vg.spacing_xyz]
        return clip_rays(make_rays(self.pg, t, vectors, rays), self.grid, center, spacing, t)

    # ---- the kernel ------------------------------------------------------------------------------------------
    def backproject(
        self, values: Any, vectors: dict[str, Vec], value_start: int = 0, first_view: int = 0, views: int | None = None
    ) -> Any:
        """``A.T y`` (flat, one volume) of views ``first_view .. first_view + views`` (default: all); ``values``
        holds their ``y`` from flat index ``value_start`` on. One kernel of symbolic loops over the views, one
        gather putting its pixel blocks in place (with the exact views' loop), and the value table."""
        t = self.t
        nx, ny = self.grid.shape
        count = self.pg.num_views - first_view if views is None else views
        if count <= 0:
            return dr.zeros(t.Float, nx * ny)
        plan = self.plan(vectors, first_view, count)
        table = self.value_table(values, dr.opaque(t.UInt, value_start), plan.rows, plan.low, plan.count)
        dr.eval(table)
        acc = self._loop(table, plan.groups) if plan.groups.count else dr.zeros(t.Float, nx * ny)
        if plan.exact is not None:
            acc = self._loop_exact(acc, table, plan.exact)
        dr.eval(acc)
        return acc

    def _pixels(self, rows: int, row_step: int = 1, row_offset: int = 0) -> tuple[Any, Any, Any, Any]:
        """Per lane over ``nx * rows`` lanes: the pixel indices ``(ix, iy)`` with ``iy = row * row_step +
        row_offset`` (clamped to the grid), and the pixel centres relative to the grid's middle (smaller
        magnitudes, so float32 columns round less). Opaque sizes: one kernel for every grid."""
        t = self.t
        nx, ny = self.grid.shape
        lane = dr.arange(t.UInt, nx * rows)
        row = lane // dr.opaque(t.UInt, nx)
        ix = lane - row * dr.opaque(t.UInt, nx)
        iy = row if row_step == 1 else dr.minimum(row * row_step + row_offset, dr.opaque(t.UInt, ny - 1))
        x = t.Float(ix) - dr.opaque(t.Float, self.middle[0])
        y = t.Float(iy) - dr.opaque(t.Float, self.middle[1])
        return ix, iy, x, y

    def _loop(self, table: Any, groups: Packets) -> Any:
        """The looped views' share of every pixel: a symbolic loop over the groups of :attr:`group` views (their
        parameters one packet gather), each lane a column block of :attr:`block` pixels (the parameters serve
        them all), the accumulators in registers; then the blocks put in place (flat, unevaluated)."""
        t, group, block = self.t, self.group, self.block
        nx, ny = self.grid.shape
        rows = -(-ny // block)
        centres = [self._pixels(rows, block, k)[2:] for k in range(block)]
        x, ys = centres[0][0], [y for _, y in centres]
        dr.eval(x, *ys)
        per_view = groups.used // group
        width = dr.opaque(t.Int, self.width)

        def body(index: Any, *accs: Any) -> tuple[Any, ...]:
            q = gather_packet(self.t, groups, index)
            row = t.Int(index) * group * width  # the group's first row of the value table
            out = list(accs)
            for g in range(group):
                p = q[g * per_view : (g + 1) * per_view]
                base = (row + g * width if g else row) - t.Int(p[-1])
                out = [self._add_view(a, table, x, y, [base, *p[:-1]]) for a, y in zip(out, ys, strict=True)]
            return (index + 1, *out)

        count = dr.opaque(t.UInt, groups.count)
        zeros = [dr.zeros(t.Float, nx * rows) for _ in range(block)]
        _, *accs = dr.while_loop((t.UInt(0), *zeros), lambda index, *_: index < count, body)
        dr.eval(*accs)
        ix, iy, _, _ = self._pixels(ny)
        lane = (iy // block) * nx + ix
        return dr.gather(t.Float, dr.concat(accs) if block > 1 else accs[0], (iy % block) * (nx * rows) + lane)

    def _loop_exact(self, acc: Any, table: Any, exact: ExactPlan) -> Any:
        """``acc`` plus the :attr:`exact` views (only bases that mark views exact have them)."""
        raise NotImplementedError

    def _first(self, p: list[Any], x: Any, y: Any) -> tuple[Any, Any, Any]:
        """The first candidate column, its table slot and the pixel centre's column (view parameters ``p``)."""
        offset, a, b, c, reach = p[:5]
        col = dr.fma(a, x, dr.fma(b, y, c))
        first = dr.ceil(col - reach)
        return first, self.t.Int(first) + offset, col


class BoxFootprints(ParallelFootprints):
    """The gather adjoint of the box basis (see the module docstring): trapezoids, and DDA records near the axes."""

    degree = 0

    def _footprint(self, d: np.ndarray, across: np.ndarray) -> np.ndarray:
        hx, hy = self.vg.spacing_xyz
        along_x, along_y = hx * np.abs(d[:, 1]), hy * np.abs(d[:, 0])
        self.outer = (along_x + along_y) / (2 * across)
        inner = np.abs(along_x - along_y) / (2 * across)
        with np.errstate(divide="ignore"):
            self.plateau = np.minimum(hx / np.abs(d[:, 0]), hy / np.abs(d[:, 1]))
            slope_x, slope_y = np.abs(d[:, 0]) / hx, np.abs(d[:, 1]) / hy
        self.exact = np.minimum(slope_x, slope_y) < NEAR_AXIS * np.maximum(slope_x, slope_y)
        self.slope = np.where(self.exact, 0.0, self.plateau / np.where(self.exact, 1.0, self.outer - inner))
        self.peak = self.slope * self.outer
        # the first candidate lies within the footprint (|offset| <= outer) when every footprint is a column wide
        self.first_inside = bool(np.all(self.outer[~self.exact] >= 0.5))
        margin = 1e-3 if self.t.dtype == "float32" else 1e-9  # columns: the exact path must not miss a grazing ray
        return self.outer + np.where(self.exact, margin, 0.0)

    def _extra(self, views: np.ndarray) -> list[np.ndarray]:
        return [self.slope[views], self.peak[views], self.plateau[views]]

    def _exact_plan(self, vectors: dict[str, Vec], views: np.ndarray, first_row: int) -> ExactPlan:
        """Per exact view: the column map, the DDA's direction's sign, its reciprocal and whether it is zero,
        per axis (:meth:`_directions`); per ray, the DDA's face offsets (:meth:`face_table`)."""
        dirs, invs = self._directions(vectors, views)
        columns = [self.a[views], self.b[views], self.c[views], self.reach[views], self.low[views]]
        signs, still = np.where(dirs > 0, 1.0, -1.0), (dirs == 0).astype(np.float64)
        rows = np.column_stack([*columns, signs, invs, still])
        return ExactPlan(upload_packets(self.t, rows), self.face_table(vectors, views), first_row)

    def face_table(self, vectors: dict[str, Vec], views: np.ndarray) -> Any:
        """Per ray of ``views`` (rows laid out as :meth:`value_table`'s), the DDA's face offsets and whether the
        ray hits the volume: ``(face_x, face_y, hit, 0)`` (zero off the detector)."""
        t, grid = self.t, self.grid
        _, k, col, real = self._slots(upload(t.Int, self.low[views].astype(np.int32)), len(views), 1)
        view = dr.gather(t.Int, upload(t.Int, views.astype(np.int32)), k)
        ray = t.UInt(dr.select(real, view * self.cols + col, 0))
        segs = self.segments(vectors, ray)
        cell0 = first_cell(grid, t, segs)
        faces = [
            dr.select(d == 0, t.Float(k0), dr.select(d > 0, 1.0, 0.0) - e)
            for d, e, k0 in zip(segs.direction, segs.entry, cell0, strict=True)
        ]
        hit = dr.select(real & (segs.length > 0), 1.0, 0.0)
        zero = dr.zeros(t.Float, dr.width(hit))
        table = dr.ravel(
            packet_type(self.t, 4)(dr.select(real, faces[0], 0.0), dr.select(real, faces[1], 0.0), hit, zero)
        )
        dr.eval(table)
        return table

    def _directions(self, vectors: dict[str, Vec], views: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per view of ``views`` (rows) and axis (columns): the DDA's direction (knot units) and its reciprocal
        (1 where the direction is 0), as the forward computes them (the parallel rays of a view share them)."""
        t = self.t
        dirs = self.segments(vectors, upload(t.UInt, views.astype(np.uint32) * self.cols)).direction
        inv = [dr.select(d == 0, 1.0, dr.rcp(d)) for d in dirs]
        dr.eval(dirs, inv)
        return np.stack([d.numpy() for d in dirs], axis=1), np.stack([i.numpy() for i in inv], axis=1)

    def _loop_exact(self, acc: Any, table: Any, exact: ExactPlan) -> Any:
        """``acc`` plus the exact views' DDA chords (see the module docstring): a symbolic loop over the views.

        Per axis the chord's entry and exit are ``(k - sign + face) · inv`` and ``(k + face) · inv``; an axis
        the ray does not move along adds no bound (``∓inf``) but keeps only the DDA's own cell."""
        t = self.t
        width = dr.opaque(t.Int, self.width)
        ix, iy, x, y = self._pixels(self.grid.shape[1])
        cell = [t.Float(ix) + 1.0, t.Float(iy) + 1.0]  # knot cells of the box basis: coefficient i is cell i + 1
        first_row = dr.opaque(t.Int, exact.first_row)

        def body(index: Any, acc: Any) -> tuple[Any, Any]:
            a, b, c, reach, low, *axes = gather_packet(self.t, exact.views, index)
            signs, invs, still = axes[:2], axes[2:4], [s != 0 for s in axes[4:]]
            row = t.Int(index) * width - t.Int(low)  # the view's row of the face table
            _, slot, _ = self._first([row, a, b, c, reach], x, y)
            values = self._values(table, slot + first_row * width)
            behind = [k - sign for k, sign in zip(cell, signs, strict=True)]
            for j in range(self.taps):
                rec = dr.gather(packet_type(self.t, 4), exact.faces, t.UInt(slot + j))
                bounds = [
                    (dr.select(s, -dr.inf, (k0 + r) * i), dr.select(s, dr.inf, (k + r) * i))
                    for k0, k, r, i, s in zip(behind, cell, rec[:2], invs, still, strict=True)
                ]
                lo = dr.maximum(bounds[0][0], bounds[1][0])
                hi = dr.minimum(bounds[0][1], bounds[1][1])
                chord = dr.maximum(hi - lo, 0.0)
                for k, r, s in zip(cell, rec[:2], still, strict=True):  # the DDA stays in its first cell
                    chord = dr.select(s & (k != r), 0.0, chord)
                acc = dr.select(rec[2] != 0, dr.fma(chord, values[j], acc), acc)  # rays that miss add nothing
            return index + 1, acc

        count = dr.opaque(t.UInt, exact.views.count)
        _, acc = dr.while_loop((t.UInt(0), acc), lambda index, _: index < count, body)
        return acc

    def _add_view(self, acc: Any, table: Any, x: Any, y: Any, p: list[Any]) -> Any:
        """``acc`` plus one view's trapezoid footprints (parameters ``p``: :meth:`ParallelFootprints._add_view`)."""
        first, slot, col = self._first(p, x, y)
        values = self._values(table, slot)
        offset = first - col  # the first candidate's offset from the pixel centre, columns, in [-outer, 1 - outer)
        slope, peak, plateau = p[5:8]
        for j in range(self.taps):
            distance = dr.abs(offset + float(j)) if j else dr.abs(offset)
            chord = dr.fma(-slope, distance, peak)  # slope · (outer - |s|)
            if j or not self.first_inside:
                chord = larger(0.0, chord)
            acc = dr.fma(smaller(chord, plateau), values[j], acc)
        return acc


class HatFootprints(ParallelFootprints):
    """The gather adjoint of the linear basis (the bilinear hat ``Λ(x/h_x) Λ(y/h_y)``) of 2D parallel beams.

    Its projection at distance ``q`` (mm) from the coefficient's centre is the convolution of two triangles of
    half-widths ``a = |n_A| h_A >= b = |n_B| h_B`` (``n`` the rays' normal): ``(h_B / |n_A|) (Λ_a(q) +
    (φ_b(q - a) - 2 φ_b(q)) / a)`` with ``φ_b(z) = max(0, b - |z|)³ / (6 b²)`` — a ramp smoothed by a triangle
    (the ``q + a`` kink never reaches ``q >= 0``). It is continuous in the ray's position, so the DDA's rounding
    moves nothing discontinuously and no view needs the exact path.
    """

    degree = 1

    def _footprint(self, d: np.ndarray, across: np.ndarray) -> np.ndarray:
        hx, hy = self.vg.spacing_xyz
        half_x, half_y = np.abs(d[:, 1]) * hx, np.abs(d[:, 0]) * hy  # the triangles' half-widths across the rays
        wide = half_x >= half_y
        self.wide = np.maximum(half_x, half_y)
        self.narrow = np.minimum(half_x, half_y)
        self.scale = np.where(
            wide, hy / np.where(wide, np.abs(d[:, 1]), 1.0), hx / np.where(wide, 1.0, np.abs(d[:, 0]))
        )
        smooth = self.narrow > 1e-13 * self.wide  # else φ is below float64 rounding: leave it out
        self.narrow = np.where(smooth, self.narrow, 0.0)
        self.cubic = np.where(smooth, self.scale / (6 * self.wide * np.where(smooth, self.narrow, 1.0) ** 2), 0.0)
        self.across = across
        return (self.wide + self.narrow) / across

    def _extra(self, views: np.ndarray) -> list[np.ndarray]:
        fall = -self.scale[views] / self.wide[views]
        return [self.across[views], self.wide[views], self.narrow[views], self.scale[views], self.cubic[views], fall]

    def _add_view(self, acc: Any, table: Any, x: Any, y: Any, p: list[Any]) -> Any:
        """``acc`` plus one view's hat footprints (parameters ``p``: :meth:`ParallelFootprints._add_view`)."""
        first, slot, col = self._first(p, x, y)
        values = self._values(table, slot)
        offset = first - col
        across, wide, narrow, scale, cubic, fall = p[5:11]
        for j in range(self.taps):
            q = dr.abs(offset + float(j) if j else offset) * across
            hat = larger(0.0, dr.fma(fall, q, scale))
            centre = larger(0.0, narrow - q)
            edge = larger(0.0, narrow - dr.abs(q - wide))
            smooth = dr.fma(-2.0 * centre * centre, centre, edge * edge * edge)
            acc = dr.fma(dr.fma(cubic, smooth, hat), values[j], acc)
        return acc


@dataclass
class ExactPlan:
    """The exact views of a call: their parameters, their rays' face offsets, their first value-table row."""

    views: Packets
    faces: Any
    first_row: int


@dataclass
class Plan:
    """The device inputs of one call (see :meth:`ParallelFootprints.plan`)."""

    rows: Any
    low: Any
    count: int
    groups: Packets
    exact: ExactPlan | None


FOOTPRINTS: dict[int, type[ParallelFootprints]] = {0: BoxFootprints, 1: HatFootprints}
"""The gather adjoint of each covered basis degree."""
