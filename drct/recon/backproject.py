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
detector's column is ``U(x)/N(x)``), :data:`VIEWS_PER_LAUNCH` views unrolled in one launch with their parameters
as opaque scalars (one compiled kernel for every launch), the volume read and written once per launch, and the
four taps of a point read with one packet gather (each cell's taps stored together, a zero border around the
detector, :meth:`_Backprojector._cell_values`). 2.5-3x the rate per CPU-second of the first kernel (one launch
per view, four masked gathers; ``tests/fbp_reference.py``), which it equals to float32 rounding.

The operator is linear in the filtered data; its transpose (a scatter with the same weights, view by view) gives
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
from typing import Any

import drjit as dr
import numpy as np
from tqdm.auto import tqdm

from ..backend import Types, drjit_module, upload
from ..geometry.detector import Vec, add, detector_frame, dot, scaled, sub
from ..geometry.projection import ProjectionGeometry, host_rows
from ..geometry.volume import VolumeGeometry
from ..kernels.march import scatter_mode


def _affine(g: Vec, origin: Vec, offset: Any = 0.0) -> list[Any]:
    """Coefficients and constant of the affine map ``x -> g·(x - origin) + offset`` (per view)."""
    return [*g, offset - sum(a * b for a, b in zip(g, origin, strict=True))]


def _view_parameters(pg: ProjectionGeometry) -> np.ndarray:
    """Per view a row of floats (float64, worked out on the host) that map a point ``x`` to its detector position
    and FDK weight with a few affine forms (see :meth:`_Backprojector._contribution`):

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


VIEWS_PER_LAUNCH = 8
"""Views one launch of :meth:`_Backprojector.apply` adds to the volume (unrolled in the kernel: the volume is read
and written once per this many views; a scan's last launch takes the views left, a kernel of its own that Dr.Jit
compiles once and caches). Measured per CPU-second on 2 shared cores (load 13), 128³ x 96 views: 4 views 576 M
voxel-views, 8 660 M, 12 621 M, 16 549 M, 32 468 M; 256³ x 48: 4 604 M, 8 683 M, 16 463 M (the views' cells
stay in cache)."""


class _Backprojector:
    """Per-geometry state: the grid's axes and per-view parameters on the device (see the module docstring)."""

    def __init__(self, pg: ProjectionGeometry, vg: VolumeGeometry, t: Types) -> None:
        if pg.ndim != vg.ndim:
            raise ValueError(f"a {vg.ndim}D grid cannot be backprojected from a {pg.ndim}D geometry {pg!r}")
        if pg.ndim == 2 and pg.beam != "cone":
            raise ValueError(f"voxel-driven 2D backprojection is for fan beams, got {pg!r}")
        self.pg, self.vg, self.t = pg, vg, t
        self.axes = [upload(t.Float, np.asarray(c, dtype=t.np_dtype)) for c in vg.coordinates()]
        self.params = _view_parameters(pg)
        self.cols = pg.det_shape[-1]
        self.rows = pg.det_shape[0] if pg.ndim == 3 else 1
        self.count = vg.size

    def _points(self) -> list[Any]:
        """The coefficient centres ``x, y[, z]`` (``x`` fastest), from the axes by index."""
        t, shape = self.t, self.vg.shape
        index = dr.arange(t.UInt, self.count)
        plane = shape[-1] * shape[-2]
        ix = index % shape[-1]
        points = [dr.gather(t.Float, self.axes[0], ix)]
        if self.vg.ndim == 2:
            return [*points, dr.gather(t.Float, self.axes[1], index // shape[-1])]
        rest = index % plane
        return [
            *points,
            dr.gather(t.Float, self.axes[1], rest // shape[-1]),
            dr.gather(t.Float, self.axes[2], index // plane),
        ]

    def _position(self, p: list[Any], x: list[Any]) -> tuple[Any, Any, Any, Any]:
        """Column, row, FDK weight and visibility of the points ``x`` in the view with parameters ``p``."""
        n = len(x) + 1

        def form(k: int) -> Any:
            return sum((p[k + i] * x[i] for i in range(1, len(x))), p[k] * x[0]) + p[k + n - 1]

        if self.pg.curved:
            along_w, along_u = form(0), form(n)
            r2 = dr.fma(along_w, along_w, along_u * along_u)
            tail = 2 * n + (n + 2 if len(x) == 3 else 0)
            col = dr.fma(dr.atan2(along_u, along_w), p[tail], p[tail + 1])
            row = dr.fma(form(2 * n) * p[3 * n], dr.rsqrt(r2), p[3 * n + 1]) if len(x) == 3 else 0.0
            return col, row, p[tail + 2] / r2, along_w > 0
        forms = len(x) - 1  # column (and row) numerators
        den = form(forms * n)
        inv = 1.0 / den
        col = form(0) * inv
        row = form(n) * inv if len(x) == 3 else 0.0
        return col, row, p[-1] * inv * inv, den > 0

    def _cells(self) -> tuple[int, int]:
        """Interpolation cells per row and rows of cells of one view: a cell starts one pixel left of (and, in 3D,
        above) the detector, so that every point the view sees has its taps in one cell."""
        return self.cols + 1, (self.rows + 1 if self.vg.ndim == 3 else 1)

    def _cell(self, x: list[Any], p: list[Any], base: Any) -> tuple[Any, Any, Any, Any, Any]:
        """Where and how one view's interpolation reads its cells (``base``: the view's first cell): the cell
        index, the fractions along the columns and rows (None in 2D), the FDK weight and the visibility mask."""
        t = self.t
        width, _ = self._cells()
        col, row, weight, seen = self._position(p, x)
        inside = seen & (col >= -1) & (col < self.cols)
        if len(x) == 3:
            inside &= (row >= -1) & (row < self.rows)
        c0f = dr.floor(col)
        index = t.Int(dr.select(inside, c0f, -1.0)) + 1
        fc, fr = col - c0f, None
        if len(x) == 3:
            r0f = dr.floor(row)
            index += (t.Int(dr.select(inside, r0f, -1.0)) + 1) * width
            fr = row - r0f
        return t.UInt(index) + base, fc, fr, weight, inside

    def _taps(self) -> list[tuple[int, int]]:
        """The (row, column) offsets of a cell's taps from its top-left pixel, in the order they are stored."""
        return [(0, 0), (0, 1), (1, 0), (1, 1)] if self.vg.ndim == 3 else [(0, 0), (0, 1)]

    def _cell_values(self, q: Any, first: int, count: int) -> Any:
        """The taps of every cell of views ``first .. first + count - 1`` of the flat sinogram ``q``, stored
        together (``len(_taps())`` values per cell, zeros off the detector), so that one packet gather reads a
        point's taps."""
        t = self.t
        width, height = self._cells()
        taps = self._taps()
        index = dr.arange(t.UInt, count * height * width * len(taps))
        tap = index % len(taps)
        cell = index // len(taps)
        view = cell // (height * width)
        rest = cell - view * (height * width)
        r = t.Int(rest // width) - (1 if self.vg.ndim == 3 else 0)
        c = t.Int(rest % width) - 1
        if self.vg.ndim == 3:
            r += t.Int(tap >> 1)
        c += t.Int(tap & 1)
        active = (c >= 0) & (c < self.cols) & (r >= 0) & (r < self.rows)
        source = t.UInt(dr.select(active, (t.Int(view + first) * self.rows + r) * self.cols + c, 0))
        return dr.gather(t.Float, q, source, active)

    def _launches(self, progress: bool) -> Any:
        starts = range(0, self.pg.num_views, VIEWS_PER_LAUNCH)
        yield from tqdm(starts, desc="backprojection", disable=not progress or len(starts) == 1, leave=False)

    def with_views(self, pg: ProjectionGeometry) -> _Backprojector:
        """The same coefficient centres with the views of ``pg`` (streaming FDK: one chunk of a scan's views)."""
        other = copy.copy(self)
        other.pg, other.params = pg, _view_parameters(pg)
        return other

    def apply(self, q: Any, progress: bool = False, out: Any = None) -> Any:
        """``Σ_views weight · interp(q)`` for a flat array ``q`` of the sinogram's size, added to ``out`` (a flat
        array of the volume's size; default zeros) view after view, :data:`VIEWS_PER_LAUNCH` views per launch."""
        t, step = self.t, VIEWS_PER_LAUNCH
        width, height = self._cells()
        packet = getattr(drjit_module(t.backend), f"Array{len(self._taps())}{'f' if t.dtype == 'float32' else 'f64'}")
        acc = dr.zeros(t.Float, self.count) if out is None else out
        x = self._points()
        for first in self._launches(progress):
            rows = self.params[first : first + step]
            cells = self._cell_values(q, first, len(rows))
            dr.eval(cells)
            for k, row in enumerate(rows):
                p = [dr.opaque(t.Float, float(v)) for v in row]
                index, fc, fr, weight, inside = self._cell(x, p, k * height * width)
                g = dr.gather(packet, cells, index)
                value = dr.fma(fc, g[1] - g[0], g[0])
                if fr is not None:
                    value = dr.fma(fr, dr.fma(fc, g[3] - g[2], g[2]) - value, value)
                acc = acc + dr.select(inside, weight * value, 0.0)
            dr.eval(acc)
        return acc

    def transpose(self, g: Any) -> Any:
        """The transpose of :meth:`apply` (to rounding): voxel values scattered back onto the sinogram."""
        t = self.t
        out = dr.zeros(t.Float, self.pg.num_rays)
        width, _ = self._cells()
        x = self._points()
        for view, row in enumerate(self.params):
            p = [dr.opaque(t.Float, float(v)) for v in row]
            index, fc, fr, weight, inside = self._cell(x, p, 0)
            w = dr.select(inside, weight, 0.0) * g
            r0 = t.Int(index // width) - (1 if fr is not None else 0)
            c0 = t.Int(index % width) - 1
            shares = [1 - fc, fc] if fr is None else [(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc]
            for (dr_, dc), share in zip(self._taps(), shares, strict=True):
                r, c = r0 + dr_, c0 + dc
                active = inside & (c >= 0) & (c < self.cols) & (r >= 0) & (r < self.rows)
                pixel = t.UInt(dr.select(active, r * self.cols + c, 0)) + dr.opaque(
                    t.UInt, view * self.rows * self.cols
                )
                dr.scatter_add(out, w * share, pixel, active, mode=scatter_mode(out))
            dr.eval(out)
        return out


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
