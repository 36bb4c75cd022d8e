"""Voxel-driven (gather) adjoints of the box and linear bases for 2D parallel beams: per pixel, the rays that see it.

Dr.Jit 1.5's LLVM backend lowers every ``scatter_add`` to a loop over the SIMD lanes, so the ray-driven adjoint
(:func:`drct.kernels.march.backproject`) costs about three forward projections. Here each lane is one pixel and
a launch adds several views; per view the pixel centre is projected onto the detector (column ``col``), and each
of the ``K`` columns ``c`` within the pixel's footprint adds ``y[view, c] × footprint(c - col)``: the closed-form
line integral of the pixel's basis function (:class:`BoxFootprints`, :class:`HatFootprints`), its ``K`` values
of ``y`` read with one packet gather.

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
built by the forward's ray set-up (:func:`drct.kernels.march.clip_rays`), and the chord by the slab method
``min_a (k_a + face_a) · inv_a - max_a (k_a - step_a + face_a) · inv_a`` — the DDA's segment in cell ``k``, bit
for bit. Rays of parallel beams are whole lines, so the clipping at the box never binds inside the volume (its
pixels lie one zero cell inside the box), and rays that miss get ``y = 0``.

The linear basis (:class:`HatFootprints`) projects to a convolution of two triangles, continuous in the ray's
position, so the DDA's rounding never moves a whole chord and every view takes the closed form.

No scatters: the result does not depend on the thread count or on other threads. CPU time as a multiple of the
forward's (``benchmarks/bench_gather_adjoint.py``, 256² x 256 views x 367 float32, 2 shared cores): box
1.18-1.31x (the scatter 2.3-2.5x), linear 1.11-1.23x (the scatter 2.2-2.4x). Freezing the launches
(:func:`drjit.freeze`: later calls replay the kernels without tracing the unrolled views) gave 0.95-1.06x and
0.94-0.97x, but one full test run aborted inside a frozen launch's recording while Python's garbage collector ran
(Dr.Jit 1.5; not reproduced in isolation), so the launches are traced at every call.

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

from ..backend import Types, drjit_module, upload
from ..geometry.projection import AnyGeometry, ProjectionGeometry, host_rows
from ..geometry.ray_arrays import Vec, make_rays
from ..geometry.volume import VolumeGeometry
from .march import KnotGrid, clip_rays, first_cell

VIEWS_PER_LAUNCH = 16
"""Views one launch adds to the volume (unrolled in the kernel; the volume is read and written once per launch).
CPU time as a multiple of the forward's, box basis, 256² x 256 views x 367 float32, 2 shared cores: traced at
every call, as now (load 4-6), 8 views 1.40x, 16 1.31x / 1.22x, 32 1.28x / 1.18x, 64 1.55x; frozen (load 3.5; see
the module docstring for why no longer) 16 1.06x / 1.10x, 32 1.08x / 1.08x, 64 1.46x / 1.28x. 16 compiles
faster (first call 0.6 s against 0.6-0.9 s, under load); grid and detector sizes are opaque, so other operators
reuse the kernels."""

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
    detector, which columns can reach it, and the per-launch tables of ``y``. Subclasses give the footprint
    (:meth:`_footprint`: per view, how far from the centre's column a ray still sees the pixel) and add one
    view's share (:meth:`_add_view`)."""

    degree = -1

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
        self._inputs: dict[tuple[int, ...], tuple[Any, Any, list[list[Any]]]] = {}

    def _footprint(self, d: np.ndarray, across: np.ndarray) -> np.ndarray:
        """Per view (unit ray directions ``d``, ``across`` mm between neighbouring rays): the reach of the
        footprint in columns; may mark views in :attr:`exact`."""
        raise NotImplementedError

    def _add_view(self, acc: Any, table: Any, x: Any, y: Any, p: list[Any]) -> Any:
        """``acc`` plus one view's share (parameters ``p`` of :meth:`view_parameters`; pixel centres ``x, y``)."""
        raise NotImplementedError

    # ---- per-view parameters and tables -------------------------------------------------------------------
    def view_parameters(self, view: int, k: int) -> list[Any]:
        """View ``view``'s parameters (row ``k`` of its launch's table) as Dr.Jit scalars, so that one compiled
        launch serves every view: the column map ``a, b, c``, the ``reach``, the table offset of
        the first candidate (``t.Int``), then :meth:`_extra` (the footprint's own)."""
        t = self.t
        floats = [self.a[view], self.b[view], self.c[view], self.reach[view], *self._extra(view)]
        offset = dr.opaque(t.Int, k * self.width - int(self.low[view]))
        return [offset, *(dr.opaque(t.Float, float(v)) for v in floats)]

    def _extra(self, view: int) -> list[float]:
        """The footprint's own per-view parameters (see :meth:`_add_view`)."""
        return []

    def _slots(self, low: Any, count: int, per_slot: int) -> tuple[Any, Any, Any, Any]:
        """For ``count * width * per_slot`` entries (``count`` views whose table rows start at the columns
        ``low``): the entry's field, the view's position in the launch, the detector column of its slot and
        whether that column exists."""
        t = self.t
        entry = dr.arange(t.UInt, count * self.width * per_slot)
        field = entry % per_slot
        slot = entry // per_slot
        k = slot // self.width
        col = t.Int(slot - k * self.width) + dr.gather(t.Int, low, k)
        return field, k, col, (col >= 0) & (col < self.cols)

    def value_table(self, values: Any, start: Any, rows: Any, low: Any, count: int) -> Any:
        """``y`` of ``count`` views as packets of ``taps`` consecutive columns (zero off the detector): entry
        ``(k, s)`` holds ``y[start + rows[k] * cols + low[k] + s + j]`` for ``j < taps`` (``start``: a ``t.UInt``
        scalar; ``rows``, ``low``: ``t.Int`` per view)."""
        t = self.t
        field, k, col, _ = self._slots(low, count, self.packet_size)
        col = col + t.Int(field)
        real = (col >= 0) & (col < self.cols) & (field < self.taps)
        row = dr.gather(t.Int, rows, k)
        real &= row >= 0
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
            return list(dr.gather(self._packet(size), table, self.t.UInt(slot)))
        packets = size // 4
        index = self.t.UInt(slot) * packets
        return [v for i in range(packets) for v in dr.gather(self._packet(4), table, index + i)]

    def _packet(self, size: int) -> Any:
        return getattr(drjit_module(self.t.backend), f"Array{size}{'f' if self.t.dtype == 'float32' else 'f64'}")

    # ---- the kernel ------------------------------------------------------------------------------------------
    def backproject(
        self, values: Any, vectors: dict[str, Vec], value_start: int = 0, first_view: int = 0, views: int | None = None
    ) -> Any:
        """``A.T y`` (flat, one volume) of views ``first_view .. first_view + views`` (default: all); ``values``
        holds their ``y`` from flat index ``value_start`` on."""
        t = self.t
        nx, ny = self.grid.shape
        index = dr.arange(t.UInt, nx * ny)
        iy = index // dr.opaque(t.UInt, nx)  # opaque sizes: one kernel for every grid
        ix = index - iy * dr.opaque(t.UInt, nx)
        pixel = Pixels(t.Float(ix), t.Float(iy), tuple(dr.opaque(t.Float, m) for m in self.middle))
        dr.eval(pixel.x, pixel.y)
        acc = dr.zeros(t.Float, nx * ny)
        count = self.pg.num_views - first_view if views is None else views
        chosen = np.arange(first_view, first_view + count)
        start = dr.opaque(t.UInt, value_start)
        for exact in (False, True):
            todo = [int(v) for v in chosen[self.exact[chosen] == exact]]
            if not exact and self.looped and todo:
                acc = self._loop(acc, values, start, todo, first_view, pixel)
                dr.eval(acc)
                continue
            for begin in range(0, len(todo), VIEWS_PER_LAUNCH):
                launch = Launch(todo[begin : begin + VIEWS_PER_LAUNCH], values, value_start, first_view, vectors)
                if exact:
                    acc = self._launch_exact(acc, launch, pixel)
                    continue
                rows, low, params = self._launch_inputs(launch.views, first_view)
                acc = self._launch(acc, values, start, rows, low, pixel.x, pixel.y, params)
            dr.eval(acc)
        return acc

    def _launch_inputs(self, views: list[int], first_view: int) -> tuple[Any, Any, list[list[Any]]]:
        """A launch's table rows, first columns and view parameters on the device (kept: the same every call)."""
        key = (first_view, *views)
        if key not in self._inputs:
            t = self.t
            rows = upload(t.Int, np.asarray(views, dtype=np.int32) - first_view)
            low = upload(t.Int, self.low[views].astype(np.int32))
            params = [self.view_parameters(view, k) for k, view in enumerate(views)]
            self._inputs[key] = (rows, low, params)
        return self._inputs[key]

    looped = True
    group = 4

    def _loop_inputs(self, views: list[int], first_view: int) -> tuple[Any, Any, Any, int, Any]:
        """The looped path's inputs on the device (kept: the same every call): table rows and first columns per
        view (padded to a multiple of :attr:`group` with rows that read zeros), the float parameters of each
        group of views as one packet, its size, and the number of groups."""
        key = ("loop", self.group, first_view, *views)
        if key not in self._inputs:
            t = self.t
            count = len(views)
            padded = -(-count // self.group) * self.group
            chosen = np.asarray(views + [views[-1]] * (padded - count), dtype=np.int64)
            rows = np.where(np.arange(padded) < count, chosen - first_view, -1).astype(np.int32)
            low = self.low[chosen]
            floats = np.array(
                [
                    [self.a[v], self.b[v], self.c[v], self.reach[v], *self._extra(int(v)), low[k]]
                    for k, v in enumerate(chosen)
                ]
            ).reshape(padded // self.group, -1)
            size = 1 << int(np.ceil(np.log2(floats.shape[1])))
            floats = np.pad(floats, ((0, 0), (0, size - floats.shape[1])))
            self._inputs[key] = (
                upload(t.Int, rows),
                upload(t.Int, low.astype(np.int32)),
                upload(t.Float, floats.ravel().astype(t.dtype)),
                size,
                dr.opaque(t.UInt, padded // self.group),
            )
        return self._inputs[key]  # type: ignore[return-value]

    def _loop(self, acc: Any, values: Any, start: Any, views: list[int], first_view: int, pixel: Pixels) -> Any:
        """``acc`` plus ``views`` in one kernel: a symbolic loop over the views, each view's parameters gathered
        from device arrays with the loop counter."""
        t = self.t
        rows, low, floats, size, groups = self._loop_inputs(views, first_view)
        table = self.value_table(values, start, rows, low, dr.width(rows))
        dr.eval(table)
        x, y = pixel.x, pixel.y
        group = self.group
        per_view = 5 + len(self._extra(views[0]))
        width = dr.opaque(t.Int, self.width)
        packet = getattr(drjit_module(t.backend), "ArrayXf" if t.dtype == "float32" else "ArrayXf64")

        def cond(index: Any, acc: Any) -> Any:
            return index < groups

        def body(index: Any, acc: Any) -> tuple[Any, Any]:
            q = list(dr.gather(packet, floats, index, shape=(size, dr.width(index))))
            first = t.Int(index) * (group * width)
            for g in range(group):
                p = q[g * per_view : (g + 1) * per_view]
                base = first + g * width if g else first
                acc = self._add_view(acc, table, x, y, [base - t.Int(p[-1]), *p[:-1]])
            return index + 1, acc

        _, acc = dr.while_loop((t.UInt(0), acc), cond, body)
        return acc

    def _launch(
        self, acc: Any, values: Any, start: Any, rows: Any, low: Any, x: Any, y: Any, params: list[list[Any]]
    ) -> Any:
        """``acc`` plus the views of one launch (their parameters ``params``; see :meth:`value_table`)."""
        table = self.value_table(values, start, rows, low, len(params))
        for p in params:
            acc = self._add_view(acc, table, x, y, p)
        return acc

    def _launch_exact(self, acc: Any, launch: Launch, pixel: Pixels) -> Any:
        """``acc`` plus the views of one launch of :attr:`exact` views."""
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

    def _extra(self, view: int) -> list[float]:
        return [self.slope[view], self.peak[view], self.plateau[view]]

    def _launch_exact(self, acc: Any, launch: Launch, pixel: Pixels) -> Any:
        table = self.record_table(launch.vectors, launch.values, launch.value_start, launch.first_view, launch.views)
        dirs, invs = self._directions(launch.vectors, launch.views)
        for k, view in enumerate(launch.views):
            p = self.view_parameters(view, k)
            acc = self._add_exact(acc, table, p, pixel, dirs[k].tolist(), invs[k].tolist())
        return acc

    def record_table(
        self, vectors: dict[str, Vec], values: Any, value_start: int, first_view: int, views: list[int]
    ) -> Any:
        """Per ray of ``views``, the DDA's face offsets and ``y``: ``(face_x, face_y, y, 0)`` (zero off the
        detector and for rays that miss the volume)."""
        t, grid = self.t, self.grid
        _, k, col, real = self._slots(upload(t.Int, self.low[views].astype(np.int32)), len(views), 1)
        view = dr.gather(t.Int, upload(t.Int, np.asarray(views, dtype=np.int32)), k)
        ray = t.UInt(dr.select(real, view * self.cols + col, 0))
        center = [dr.opaque(t.Float64, c) for c in self.vg.first_center]
        spacing = [dr.opaque(t.Float64, h) for h in self.vg.spacing_xyz]
        segs = clip_rays(make_rays(self.pg, t, vectors, ray), grid, center, spacing, t)
        cell0 = first_cell(grid, t, segs)
        faces = [
            dr.select(d == 0, t.Float(k0), dr.select(d > 0, 1.0, 0.0) - e)
            for d, e, k0 in zip(segs.direction, segs.entry, cell0, strict=True)
        ]
        hit = real & (segs.length > 0)
        y = dr.gather(t.Float, values, ray - first_view * self.cols + value_start, hit)
        zero = dr.zeros(t.Float, dr.width(y))
        table = dr.ravel(self._packet(4)(dr.select(real, faces[0], 0.0), dr.select(real, faces[1], 0.0), y, zero))
        dr.eval(table)
        return table

    def _directions(self, vectors: dict[str, Vec], views: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Per view of ``views`` (rows) and axis (columns): the DDA's direction (knot units) and its reciprocal,
        as the forward computes them (the parallel rays of a view share them)."""
        t, grid = self.t, self.grid
        center = [dr.opaque(t.Float64, c) for c in self.vg.first_center]
        spacing = [dr.opaque(t.Float64, h) for h in self.vg.spacing_xyz]
        first_rays = upload(t.UInt, np.asarray(views, dtype=np.uint32) * self.cols)
        dirs = clip_rays(make_rays(self.pg, t, vectors, first_rays), grid, center, spacing, t).direction
        inv = [dr.select(d == 0, 1.0, dr.rcp(d)) for d in dirs]
        dr.eval(dirs, inv)
        return np.stack([d.numpy() for d in dirs], axis=1), np.stack([i.numpy() for i in inv], axis=1)

    def _add_view(self, acc: Any, table: Any, x: Any, y: Any, p: list[Any]) -> Any:
        """``acc`` plus one view's trapezoid footprints (its parameters ``p``; :meth:`view_parameters`)."""
        first, slot, col = self._first(p, x, y)
        values = self._values(table, slot)
        offset = first - col  # the first candidate's offset from the pixel centre, columns, in [-outer, 1 - outer)
        slope, peak, plateau = p[5:8]
        for j in range(self.taps):
            distance = dr.abs(offset + float(j)) if j else dr.abs(offset)
            chord = dr.fma(-slope, distance, peak)  # slope · (outer - |s|)
            if j or not self.first_inside:
                chord = dr.maximum(chord, 0.0)
            acc = dr.fma(dr.minimum(chord, plateau), values[j], acc)
        return acc

    def _add_exact(
        self, acc: Any, table: Any, p: list[Any], pixel: Pixels, dirs: list[float], invs: list[float]
    ) -> Any:
        """``acc`` plus one view's DDA chords (parameters ``p``, records in ``table``; see the module docstring)."""
        t = self.t
        _, slot, _ = self._first(p, pixel.x, pixel.y)
        cell = [pixel.index_x + 1.0, pixel.index_y + 1.0]  # knot cells of the box basis: coefficient i is cell i + 1
        still = [d == 0 for d in dirs]
        inv = [dr.opaque(t.Float, i) for i in invs]
        behind = [c - (1.0 if d > 0 else -1.0) for c, d in zip(cell, dirs, strict=True)]
        for j in range(self.taps):
            rec = dr.gather(self._packet(4), table, t.UInt(slot + j))
            lo, hi = None, None
            for a in range(2):
                if not still[a]:
                    enter, leave = (behind[a] + rec[a]) * inv[a], (cell[a] + rec[a]) * inv[a]
                    lo = enter if lo is None else dr.maximum(lo, enter)
                    hi = leave if hi is None else dr.minimum(hi, leave)
            assert lo is not None and hi is not None
            chord = dr.maximum(hi - lo, 0.0)
            for a in range(2):
                if still[a]:  # the DDA stays in its first cell along this axis
                    chord = dr.select(cell[a] == rec[a], chord, 0.0)
            acc = dr.fma(chord, rec[2], acc)
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

    def _extra(self, view: int) -> list[float]:
        fall = -self.scale[view] / self.wide[view]
        return [self.across[view], self.wide[view], self.narrow[view], self.scale[view], self.cubic[view], fall]

    def _add_view(self, acc: Any, table: Any, x: Any, y: Any, p: list[Any]) -> Any:
        """``acc`` plus one view's hat footprints (its parameters ``p``; :meth:`view_parameters`)."""
        first, slot, col = self._first(p, x, y)
        values = self._values(table, slot)
        offset = first - col
        across, wide, narrow, scale, cubic, fall = p[5:11]
        for j in range(self.taps):
            q = dr.abs(offset + float(j) if j else offset) * across
            hat = dr.maximum(dr.fma(fall, q, scale), 0.0)
            centre = dr.maximum(narrow - q, 0.0)
            edge = dr.maximum(narrow - dr.abs(q - wide), 0.0)
            smooth = dr.fma(-2.0 * centre * centre, centre, edge * edge * edge)
            acc = dr.fma(dr.fma(cubic, smooth, hat), values[j], acc)
        return acc


@dataclass
class Launch:
    """The views of one launch and where their values are (see :meth:`ParallelFootprints.backproject`)."""

    views: list[int]
    values: Any
    value_start: int
    first_view: int
    vectors: dict[str, Vec]


FOOTPRINTS: dict[int, type[ParallelFootprints]] = {0: BoxFootprints, 1: HatFootprints}
"""The gather adjoint of each covered basis degree."""


class Pixels:
    """Pixel indices (float) per lane: ``index`` for the knot cells, ``x``/``y`` centred on the grid's middle
    (smaller magnitudes, so float32 columns round less)."""

    def __init__(self, ix: Any, iy: Any, middle: tuple[Any, ...]) -> None:
        self.index_x, self.index_y = ix, iy
        self.x, self.y = ix - middle[0], iy - middle[1]
