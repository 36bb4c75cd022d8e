"""Voxel-driven backprojection with FDK distance weights, for 3D FBP/FDK and 2D fan-beam FBP (a Dr.Jit custom op).

Why not ``A.T``: in a 3D circular scan every view samples ``z`` on the same detector rows, so a ray-driven
backprojection (``A.T``) of a box or hat basis aliases along ``z`` whenever the row pitch (at the rotation
axis) is not a multiple of the voxel size — a ripple of up to tens of percent that no number of views averages
out. The standard cure, used here, projects each coefficient centre onto the detector and interpolates the
filtered projection bilinearly (linearly on a 2D fan beam's one row, where it is 5-9 times faster than the
``A.T`` of every view with its ``D/r`` weight, ``benchmarks/bench_fbp.py``).

For view ``i`` (source ``s``, detector centre ``d``, orbit radius ``D``) the weight of a point ``x`` is

* parallel beams: 1;
* flat cone beams: ``D · SDD / L²`` with ``L = (x - s)·n`` and ``SDD = (d - s)·n`` (``n`` the detector normal);
* cylindrical detectors: ``D / r⊥²`` with ``r⊥`` the distance of ``x`` from the cylinder's axis through ``s``.

The kernel: per view a few affine forms worked out on the host in float64 (:func:`_view_parameters`; a flat
detector's column is ``U(x)/N(x)``), rounded to the working precision and uploaded once per engine
(:meth:`_Backprojector.plan`). A call is one kernel per :data:`TABLE_BYTES` of interpolation cells (all the views
of a 2D scan or of a 128² detector's 15, at least :data:`MIN_VIEWS`), each a symbolic loop (``dr.while_loop``)
over its views, traced in about a millisecond whatever their number: a view's parameters are one packet gather
with the loop counter; each lane holds a block of :data:`BLOCK` voxels along the grid's slowest axis, whose
running sums stay in registers and which one parameter read serves; a form that does not change along that axis
in any view (on a circular orbit the column, the FDK weight, a curved detector's ``atan2``) is computed once per
block; a point's four taps are one packet gather, stored per cell as the coefficients of its bilinear form (a zero
border around the detector, :meth:`_Backprojector._cell_values`). A 3D voxel's arithmetic uses its world
coordinates and every voxel's sum runs in scan order on from ``out``, so the result does not depend on the lane
blocks, the slabs or the split into calls (streaming FDK, :mod:`drct.outofcore`, gives the same bits at any
budget).

Before, 8 views were unrolled per launch with their parameters as opaque scalars and every launch was traced at
every call. Wall / CPU ms per call, float32, 2 cores shared with other work (load 7.6-7.7), the two alternating in
one process, medians of 5, the engine alone (``python benchmarks/bench_fbp.py --cases none --engines-against
7f94bd4``): 2D fan 256² x 360 x 367 71.9 / 46.3 -> 52.0 / 34.0, curved 107 / 72.5 -> 76.0 / 48.5; 512² x 720 x
735 391 / 257 -> 332 / 224; cone 128³ x 180 x 128² 848 / 563 -> 725 / 482, curved 1130 / 753 -> 761 / 518, 3D
parallel 800 / 531 -> 681 / 450 (other runs at load 4-6: fan 256² 0.6-0.8x, 512² 0.8-0.93x, cone 0.85-0.93x,
curved cone 0.7x). ``ct.fbp`` / ``ct.fdk`` end to end (load 6.9-7.6): fan 256²
72.0 / 48.0 -> 56.0 / 37.3, cone 128³ 864 / 582 -> 788 / 526, fan 512² 404 / 268 -> 360 / 237. The first call
with an empty kernel cache (``~/.drjit``): fan 256² 766-1228 -> 167-185 ms, cone 128³ 880-1275 -> 790-1179 ms.
Equal to float32 rounding (max |new - old| / max |old| 0.7-3.5e-6; float64 against the first kernel 1e-14) and as
close to float64 (``ct.fbp`` of random data, RMS error / max: fan 512² 1.10e-5 before, 1.11e-5 now; cone 128³
1.62e-6, 1.60e-6). Gathers are about half of the time in 3D (with the cell gather replaced by arithmetic a 128³
call took 260 ms instead of 530), which is why the flat cone gains least. The first kernel (one launch per view,
four masked gathers; ``tests/fbp_reference.py``) is the reference twin.

The operator is linear in the filtered data; its transpose (a scatter with the same arithmetic, view by view) gives
the reverse-mode gradient, so the op is differentiable w.r.t. the data (not w.r.t. the geometry).

Example:
    >>> import numpy as np, drct as ct
    >>> from drct.backend import types
    >>> from drct.recon.backproject import backproject_tensor, make_backprojector
    >>> vg, pg = ct.VolumeGeometry((4, 6, 6)), ct.parallel(np.linspace(0, np.pi, 8, endpoint=False), (6, 12))
    >>> t = types("float32")
    >>> ones = t.Tensor(np.ones(pg.shape, np.float32).ravel(), pg.shape)
    >>> volume = backproject_tensor(make_backprojector(pg, vg, t), ones).numpy()
    >>> volume.shape, bool(np.allclose(volume, 8.0))  # weight 1 in each of the 8 views
    ((4, 6, 6), True)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import drjit as dr
import numpy as np
from tqdm.auto import tqdm

from ..backend import Types, upload
from ..geometry.detector import Vec, add, detector_frame, dot, scaled, sub
from ..geometry.projection import ProjectionGeometry, host_rows
from ..geometry.volume import VolumeGeometry
from ..kernels import scatter
from ..kernels.packets import Packets, gather_packet, packet_type, upload_packets
from ..memory import require_memory


def _affine(g: Vec, origin: Vec, offset: Any = 0.0) -> list[Any]:
    """Coefficients and constant of the affine map ``x -> g·(x - origin) + offset`` (per view)."""
    return [*g, offset - sum(a * b for a, b in zip(g, origin, strict=True))]


def _view_parameters(pg: ProjectionGeometry) -> np.ndarray:
    """Per view a row of floats (float64, worked out on the host) that map a point ``x`` to its detector position
    and FDK weight with a few affine forms (see :meth:`_Backprojector._position`):

    * flat detectors and parallel beams: ``col = U(x)/N(x)``, ``row = R(x)/N(x)``, weight ``c/N(x)²``, seen where
      ``N(x) > 0`` (cone: ``N`` the depth along the detector normal, ``c = D·SDD``; parallel: ``N = 1``, ``c = 1``);
    * curved detectors: ``W``, ``A``, ``H`` the point's offsets from the source along the central ray, the
      tangent and the cylinder's axis; ``col = atan2(A, W)·R/|det_u| + c0``, ``row = H·R/|det_v|/√(W² + A²) + r0``,
      weight ``D/(W² + A²)``, seen where ``W > 0``.

    In 2D the ``z`` coefficients and the rows are left out."""
    three = pg.ndim == 3
    rows_of = [np.asarray(host_rows(v), dtype=np.float64).T for v in (pg.src, pg.det, pg.det_u)]
    src, det, du = ([c for c in r] for r in rows_of)
    dv = [c for c in np.asarray(host_rows(pg.det_v), dtype=np.float64).T] if three else None
    frame = detector_frame(src, det, du, dv, bool(pg.curved))
    cols = pg.det_shape[-1]
    rows = pg.det_shape[0] if three else 1
    cc, rc = (cols - 1) / 2, (rows - 1) / 2
    orbit = np.hypot(src[0], src[1])
    if pg.curved:
        assert frame.w_hat is not None and frame.u_hat is not None
        axis = frame.axis
        tangent = frame.u_hat if axis is None else add(frame.u_hat, axis, -dot(frame.u_hat, axis))
        columns = [*_affine(frame.w_hat, src), *_affine(tangent, src)]
        if three:
            assert axis is not None and dv is not None
            scale_v = frame.radius / np.sqrt(dot(dv, dv))
            columns += [*_affine(axis, src), scale_v, rc - frame.height / np.sqrt(dot(dv, dv))]
        columns += [frame.radius / np.sqrt(dot(du, du)), np.full_like(orbit, cc), orbit]
    else:
        assert frame.normal is not None
        if three:
            u_dual, v_dual = frame.plane_duals()
            duals = [u_dual, v_dual]
        else:
            duals = [scaled(du, 1.0 / dot(du, du))]
        away = np.where((pg.beam == "parallel") | (dot(sub(det, src), frame.normal) > 0), 1.0, -1.0)
        normal = scaled(frame.normal, away)
        centres = [cc, rc][: len(duals)]
        if pg.beam == "parallel":  # src is the ray direction; x moves along it onto the plane
            slope = 1.0 / dot(src, normal)
            forms = [
                _affine(add(d, normal, -dot(d, src) * slope), det, centre)
                for d, centre in zip(duals, centres, strict=True)
            ]
            zero = np.zeros_like(orbit)
            columns = [c for form in forms for c in form] + [zero] * len(src) + [np.ones_like(orbit)] * 2
        else:  # col = (k·N(x) + SDD·u*·(x - s)) / N(x), k = u*·(s - d) + c0
            sdd = dot(sub(det, src), normal)
            forms = []
            for d, centre in zip(duals, centres, strict=True):
                k = dot(d, sub(src, det)) + centre
                forms.append(_affine(add(scaled(normal, k), d, sdd), src))
            columns = [c for form in forms for c in form] + _affine(normal, src) + [orbit * sdd]
    return np.stack(np.broadcast_arrays(*columns), axis=1)


BLOCK = 8
"""Voxels per lane, consecutive along the grid's slowest axis (``z`` in 3D, ``y`` in 2D): one read of a view's
parameters serves them all, their running sums stay in registers, and what does not change along that axis (on a
circular orbit the column, the FDK weight and a curved detector's ``atan2``) is computed once per block (the
kernel's common subexpressions). CPU ms per call by block, float32, one run each (load 4.1-4.8), the unrolled form
in the same run: 128³ x 180 x 128², unrolled 635, block 4 623, 8 525, 16 500, 8 with two views per loop iteration
528 (2D fan 256² x 360: two views per iteration 32 against 32); with the final kernel, block 8 against 16: cone
455 / 428, fan 256² 30.3 / 28.0 (unrolled 521, 40.5). 16 is a few percent faster on this AVX-512 machine (32
vector registers), but 16 running sums and their temporaries would not fit in an AVX2 machine's 16."""

TABLE_BYTES = {2: 2 << 20, 3: 4 << 20}
"""Bytes of interpolation cells (:meth:`_Backprojector._cell_values`) one kernel reads, by dimension: a scan's views
are split into kernels of this many bytes of cells (at least :data:`MIN_VIEWS` views), the volume read and written
once per kernel. The cells a sweep of the lanes reads should stay in the caches (1 MiB L2 per core here): a 2D
view's every cell, a 3D view's band of rows. Median ms per call (float32, one run each, load 4.1-4.2; the unrolled
form in the same run): 2D fan 512² x 720 x 735 (5.9 KiB per view), 128 KB 287, 512 KB 232, 2 MB 236, 8 MB 273
(unrolled 308); 256² x 360 x 367, 256 KB 34, 1 MB 31, 4 MB 27 (unrolled 46); 3D cone 128³ x 180 x 128² (266 KiB
per view), 1 MB 573, 2 MB 502, 4 MB 447, 8 MB 454 (unrolled 566)."""

MIN_VIEWS = 8
"""The fewest views one kernel adds (large detectors): fewer would read and write the volume too often."""


class _Backprojector:
    """Per-geometry state: the lanes' voxel blocks and the per-view parameters on the device (see the module
    docstring); built once per engine and kept."""

    def __init__(self, pg: ProjectionGeometry, vg: VolumeGeometry, t: Types) -> None:
        if pg.ndim != vg.ndim:
            raise ValueError(f"a {vg.ndim}D grid cannot be backprojected from a {pg.ndim}D geometry {pg!r}")
        if pg.ndim == 2 and pg.beam != "cone":
            raise ValueError(f"voxel-driven 2D backprojection is for fan beams, got {pg!r}")
        self.pg, self.vg, self.t = pg, vg, t
        self.params = _view_parameters(pg)
        self.cols = pg.det_shape[-1]
        self.rows = pg.det_shape[0] if pg.ndim == 3 else 1
        self.count = vg.size
        shape = vg.shape_xyz
        self.plane = int(np.prod(shape[:-1]))  # voxels per slice across the slowest axis
        self.lanes = -(-shape[-1] // BLOCK) * self.plane
        self.axes = [upload(t.Float, np.asarray(c, dtype=t.np_dtype)) for c in vg.coordinates()]
        self._plan: _Plan | None = None

    def with_views(self, pg: ProjectionGeometry) -> _Backprojector:
        """The same coefficient centres with the views of ``pg`` (streaming FDK: one chunk of a scan's views)."""
        other = copy.copy(self)
        other.pg, other.params, other._plan = pg, _view_parameters(pg), None
        return other

    # ---- what a call reads: built once per engine --------------------------------------------------------------
    def plan(self) -> _Plan:
        """The per-view parameters as the kernel reads them (built once, kept): :func:`_view_parameters` rounded
        to the working precision, one packet per view, and per affine form whether it changes along the lane
        blocks' axis in any view."""
        if self._plan is None:
            n, t = self.vg.ndim, self.t
            rows = self.params.astype(t.np_dtype)
            varies = tuple(bool(np.any(rows[:, f * (n + 1) + n - 1] != 0)) for f in range(n))
            self._plan = _Plan(upload_packets(t, rows), rows, varies)
        return self._plan

    def centres(self) -> tuple[list[Any], list[Any]]:
        """Per lane the coordinates of its block's voxels (unevaluated: a kernel computes them once per lane):
        those across the block (``x[, y]``) and, per voxel of the block, the one along it (``z``, or ``y`` in
        2D; the last block's voxels beyond the grid repeat its last plane). World coordinates, as
        :meth:`~drct.geometry.volume.VolumeGeometry.coordinates` gives them: a voxel's arithmetic does not
        depend on which block or slab of a grid it is in (streaming FDK gives the same bits for any budget)."""
        t, shape = self.t, self.vg.shape_xyz
        rest = dr.arange(t.UInt, self.lanes)
        across = []
        for axis, m in zip(self.axes[:-1], shape[:-1], strict=True):
            size = dr.opaque(t.UInt, m)
            across.append(dr.gather(t.Float, axis, rest % size))
            rest = rest // size
        if self.vg.ndim == 2:  # the block's first row only (see _block)
            return across, [dr.gather(t.Float, self.axes[-1], rest * BLOCK)]
        last = dr.opaque(t.UInt, shape[-1] - 1)
        along = [dr.gather(t.Float, self.axes[-1], dr.minimum(rest * BLOCK + k, last)) for k in range(BLOCK)]
        return across, along

    # ---- the arithmetic forward and transpose share ------------------------------------------------------------
    def _position(self, forms: list[Any], tail: list[Any]) -> tuple[Any, Any, Any, Any]:
        """Column, row (None in 2D), FDK weight and visibility (None: every point) of the points whose affine forms
        (:func:`_view_parameters`) are ``forms``; ``tail`` the view's other parameters."""
        three = self.vg.ndim == 3
        if self.pg.curved:
            along_w, along_u = forms[0], forms[1]
            r2 = dr.fma(along_w, along_w, along_u * along_u)
            col = dr.fma(dr.atan2(along_u, along_w), tail[-3], tail[-2])
            row = dr.fma(forms[2] * tail[0], dr.rsqrt(r2), tail[1]) if three else None
            return col, row, tail[-1] / r2, along_w > 0
        if self.pg.beam == "parallel":  # N(x) = 1, weight 1
            return forms[0], forms[1] if three else None, 1.0, None
        inv = 1.0 / forms[-1]
        return forms[0] * inv, forms[1] * inv if three else None, tail[0] * inv * inv, forms[-1] > 0

    def _cell(self, forms: list[Any], tail: list[Any], base: Any) -> tuple[Any, Any, Any, Any, Any]:
        """Where and how one view's interpolation reads its cells (``base``: the view's first cell): the cell
        index, the fractions along the columns and rows (None in 2D), the FDK weight and the visibility mask."""
        t = self.t
        width, _ = self._cells()
        col, row, weight, seen = self._position(forms, tail)
        inside = (col >= -1) & (col < dr.opaque(t.Float, self.cols))
        if seen is not None:
            inside &= seen
        c0f = dr.floor(col)
        index = t.Int(dr.select(inside, c0f, -1.0)) + 1
        fc, fr = col - c0f, None
        if row is not None:
            inside &= (row >= -1) & (row < dr.opaque(t.Float, self.rows))
            r0f = dr.floor(row)
            index = dr.fma(t.Int(dr.select(inside, r0f, -1.0)) + 1, dr.opaque(t.Int, width), index)
            fr = row - r0f
        return t.UInt(index) + base, fc, fr, weight, inside

    def _block(self, p: list[Any], base: Any, centres: tuple[list[Any], list[Any]]) -> list[tuple[Any, ...]]:
        """:meth:`_cell` of every voxel of each lane's block (``centres``: :meth:`centres`) in the view with
        parameters ``p``. Each affine form is ``(c_along · along + its share across the block) + constant``: the
        constant, of the form's own magnitude (a flat detector's ``U`` is the column times the depth), comes last,
        so that a form is rounded at its magnitude once, as a plain sum of the terms would be (adding it first
        cost 20-25% more float32 error against float64). A form whose ``c_along`` is zero in every view is the
        same variable for the whole block, so that what depends on it only is computed once."""
        n = self.vg.ndim
        plan = self.plan()
        across, along = centres
        shared, steps, constants = [], [], []
        for f in range(n):
            c = p[f * (n + 1) : (f + 1) * (n + 1)]
            value = c[n - 2] * across[n - 2]
            for i in reversed(range(n - 2)):
                value = dr.fma(c[i], across[i], value)
            shared.append(value)
            steps.append(c[n - 1])
            constants.append(c[n])
        tail = p[n * (n + 1) :]
        if n == 2:  # rows k * h_y apart: no per-row coordinates held across the loop
            first = [dr.fma(s, along[0], v) for v, s in zip(shared, steps, strict=True)]
            spacing = dr.opaque(self.t.Float, self.vg.spacing_xyz[-1])
            rises = [s * spacing for s in steps]
            rows = [
                [(dr.fma(float(k), r, v) if k else v) + d for v, r, d in zip(first, rises, constants, strict=True)]
                for k in range(BLOCK)
            ]
            return [self._cell(forms, tail, base) for forms in rows]
        fixed = [v + d for v, d in zip(shared, constants, strict=True)]
        return [
            self._cell(
                [
                    dr.fma(s, z, v) + d if vary else w
                    for v, s, d, w, vary in zip(shared, steps, constants, fixed, plan.varies, strict=True)
                ],
                tail,
                base,
            )
            for z in along
        ]

    def _cells(self) -> tuple[int, int]:
        """Interpolation cells per row and rows of cells of one view: a cell starts one pixel left of (and, in 3D,
        above) the detector, so that every point the view sees has its taps in one cell."""
        return self.cols + 1, (self.rows + 1 if self.vg.ndim == 3 else 1)

    def _taps(self) -> list[tuple[int, int]]:
        """The (row, column) offsets of a cell's taps from its top-left pixel, in the order they are stored."""
        return [(0, 0), (0, 1), (1, 0), (1, 1)] if self.vg.ndim == 3 else [(0, 0), (0, 1)]

    def _cell_values(self, q: Any, first: int, count: int) -> Any:
        """The interpolation cells of views ``first .. first + count - 1`` of the flat sinogram ``q`` (zeros off
        the detector): per cell its taps ``g`` (:meth:`_taps`) as the coefficients of the bilinear form, ``(g0,
        g1 - g0, g2 - g0, g3 - g2 - g1 + g0)`` (in 2D ``(g0, g1 - g0)``), stored together so that one packet
        gather reads a point's, and three fmas interpolate (:meth:`_interpolate`)."""
        t = self.t
        width, height = self._cells()
        cell = dr.arange(t.UInt, count * height * width)
        view = cell // (height * width)
        rest = cell - view * (height * width)
        r = t.Int(rest // width) - (1 if self.vg.ndim == 3 else 0)
        c = t.Int(rest % width) - 1
        row = t.Int(view + first) * self.rows
        taps = []
        for dr_, dc in self._taps():
            active = (c + dc >= 0) & (c + dc < self.cols) & (r + dr_ >= 0) & (r + dr_ < self.rows)
            source = t.UInt(dr.select(active, (row + r + dr_) * self.cols + c + dc, 0))
            taps.append(dr.gather(t.Float, q, source, active))
        along = taps[1] - taps[0]
        coefficients = [taps[0], along]
        if len(taps) == 4:
            coefficients += [taps[2] - taps[0], (taps[3] - taps[2]) - along]
        return dr.ravel(packet_type(self.t, len(taps))(*coefficients))

    @staticmethod
    def _interpolate(g: Any, fc: Any, fr: Any) -> Any:
        """The bilinear (2D: linear) interpolation at fractions ``fc``, ``fr`` of a cell ``g`` of
        :meth:`_cell_values`."""
        value = dr.fma(fc, g[1], g[0])
        return value if fr is None else dr.fma(fr, dr.fma(fc, g[3], g[2]), value)

    # ---- the kernel ------------------------------------------------------------------------------------------
    def views_per_kernel(self) -> int:
        """Views one kernel of :meth:`apply` adds (:data:`TABLE_BYTES`, :data:`MIN_VIEWS`)."""
        width, height = self._cells()
        per_view = width * height * len(self._taps()) * np.dtype(self.t.np_dtype).itemsize
        return max(MIN_VIEWS, TABLE_BYTES[self.vg.ndim] // per_view)

    def apply(self, q: Any, progress: bool = False, out: Any = None) -> Any:
        """``Σ_views weight · interp(q)`` for a flat array ``q`` of the sinogram's size, added to ``out`` (a flat
        array of the volume's size; default zeros): per kernel (:meth:`views_per_kernel` views) the views' cells,
        then one symbolic loop over the views (:meth:`_loop`)."""
        t, views = self.t, self.pg.num_views
        step = self.views_per_kernel()
        width, height = self._cells()
        table = min(step, views) * width * height * len(self._taps())
        volumes = 5 * BLOCK * self.lanes  # the blocks before and after a kernel, joined, put in place, added to out
        require_memory(
            (table + volumes) * np.dtype(t.np_dtype).itemsize,
            f"the FDK backprojection of {views} views into {self.vg.shape} voxels",
        )
        starts = range(0, views, step)
        if out is None:
            accs = [dr.zeros(t.Float, self.lanes) for _ in range(BLOCK)]
        else:  # the running sums go on: each voxel's sum in scan order, however a scan is split into calls
            accs = [dr.gather(t.Float, out, index, real) for index, real in self._lane_voxels()]
        for first in tqdm(starts, desc="backprojection", disable=not progress or len(starts) == 1, leave=False):
            count = min(step, views - first)
            cells = self._cell_values(q, first, count)
            dr.eval(cells)
            accs = self._loop(cells, first, count, accs)
        voxel = dr.arange(t.UInt, self.count)
        slow = voxel // dr.opaque(t.UInt, self.plane)
        rest = voxel - slow * dr.opaque(t.UInt, self.plane)
        block = (slow % BLOCK) * dr.opaque(t.UInt, self.lanes)
        return dr.gather(t.Float, dr.concat(accs), block + (slow // BLOCK) * dr.opaque(t.UInt, self.plane) + rest)

    def _lane_voxels(self) -> list[tuple[Any, Any]]:
        """Per voxel of a lane's block: its flat index in the volume and whether it is in the grid."""
        t = self.t
        lane = dr.arange(t.UInt, self.lanes)
        plane = dr.opaque(t.UInt, self.plane)
        block = lane // plane
        rest = lane - block * plane
        slows = [block * BLOCK + k for k in range(BLOCK)]
        return [(s * plane + rest, s < dr.opaque(t.UInt, self.vg.shape_xyz[-1])) for s in slows]

    def _loop(self, cells: Any, first: int, count: int, accs: list[Any]) -> list[Any]:
        """``accs`` (one per voxel of a lane's block) plus views ``first .. first + count - 1`` (their cells
        ``cells``): a symbolic loop over the views, each view's parameters one packet gather with the loop
        counter, its cells' taps one packet gather per voxel."""
        t, plan = self.t, self.plan()
        width, height = self._cells()
        packet = packet_type(t, len(self._taps()))
        per_view = dr.opaque(t.UInt, width * height)
        start = dr.opaque(t.UInt, first)
        centres = self.centres()  # before the loop: computed once per lane

        def body(view: Any, *accs: Any) -> tuple[Any, ...]:
            p = gather_packet(t, plan.packets, view)
            out = list(accs)
            for k, (index, fc, fr, weight, inside) in enumerate(self._block(p, (view - start) * per_view, centres)):
                g = dr.gather(packet, cells, index)
                out[k] = dr.select(inside, dr.fma(weight, self._interpolate(g, fc, fr), out[k]), out[k])
            return (view + 1, *out)

        end = dr.opaque(t.UInt, first + count)
        _, *accs = dr.while_loop((dr.opaque(t.UInt, first), *accs), lambda view, *_: view < end, body)
        dr.eval(*accs)
        return accs

    def transpose(self, g: Any) -> Any:
        """The transpose of :meth:`apply` (to rounding, the same arithmetic): voxel values scattered back onto the
        sinogram, one launch per view."""
        t, plan = self.t, self.plan()
        out = scatter.even_zeros(t.Float, self.pg.num_rays)  # even: scatter.add writes pairs
        mode = scatter.scatter_mode(out)  # once: asked per add, its memory check cost 2x at 361 views of 256²
        width, _ = self._cells()
        values = [dr.gather(t.Float, g, index, real) for index, real in self._lane_voxels()]
        centres = self.centres()
        dr.eval(values, centres)
        for view, row in enumerate(plan.rows):
            p = [dr.opaque(t.Float, float(v)) for v in row]
            first_pixel = dr.opaque(t.UInt, view * self.rows * self.cols)
            for (index, fc, fr, weight, inside), value in zip(self._block(p, 0, centres), values, strict=True):
                w = dr.select(inside, weight, 0.0) * value
                r0 = t.Int(index // width) - (1 if fr is not None else 0)
                c0 = t.Int(index % width) - 1
                shares = [1 - fc, fc] if fr is None else [(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc]
                for (dr_, dc), share in zip(self._taps(), shares, strict=True):
                    r, c = r0 + dr_, c0 + dc
                    active = inside & (c >= 0) & (c < self.cols) & (r >= 0) & (r < self.rows)
                    pixel = t.UInt(dr.select(active, r * self.cols + c, 0)) + first_pixel
                    scatter.add(out, w * share, pixel, active, mode)
            dr.eval(out)
        out = scatter.trimmed(out, self.pg.num_rays)
        dr.eval(out)
        return out


@dataclass
class _Plan:
    """The per-view parameters of an engine (:meth:`_Backprojector.plan`): one packet per view on the device, the
    same rows on the host, and per affine form whether it changes along the block's axis."""

    packets: Packets
    rows: np.ndarray
    varies: tuple[bool, ...]


class _BackprojectOp(dr.CustomOp):
    def eval(self, q: Any, engine: _Backprojector, progress: bool) -> Any:
        self.engine = engine
        return engine.apply(dr.detach(q), progress)

    def forward(self) -> None:
        self.set_grad_out(self.engine.apply(self.grad_in("q")))

    def backward(self) -> None:
        self.set_grad_in("q", self.engine.transpose(self.grad_out()))

    def name(self) -> str:
        return "fdk_backproject"


def make_backprojector(pg: ProjectionGeometry, vg: VolumeGeometry, t: Types) -> _Backprojector:
    """The voxel-driven FDK backprojector of a 3D geometry (see the module docstring)."""
    return _Backprojector(pg, vg, t)


def backproject_tensor(engine: _Backprojector, q: Any, progress: bool = False) -> Any:
    """Apply ``engine`` to a Dr.Jit tensor of the sinogram's shape; differentiable in ``q``."""
    flat = dr.custom(_BackprojectOp, q.array, engine, progress)
    out = engine.t.Tensor(flat, engine.vg.shape)
    dr.eval(out)
    return out
