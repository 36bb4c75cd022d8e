"""The slow, obviously-right reference twin of the voxel-driven FBP/FDK backprojection of
:mod:`drct.recon.backproject`: drct's first version, kept to test the fast kernel against (tests/test_fbp.py,
tests/test_outofcore.py) and to time it (benchmarks/bench_fbp.py, benchmarks/bench_outofcore.py).

One launch per view (Python loop, the view's parameters as opaque scalars), the volume read and written once per
view: every coefficient centre (uploaded as three arrays) is moved onto the detector along its ray (the hit point
``s + (SDD/L)(x - s)`` of flat detectors, the cylinder coordinates of curved ones) and the four bilinear taps are
added to the volume one by one, each with its own bounds mask. 3D geometries only.

Also the view-by-view twin of :func:`drct.recon.fbp.backproject_fan` (the ``A.T`` fan-beam backprojection
:func:`drct.fbp` uses for Dr.Jit geometry vectors): one ``A.T`` launch per view and a host-computed ``D/r``.
"""

from __future__ import annotations

import copy
from typing import Any

import drjit as dr
import numpy as np
from tqdm.auto import tqdm

from drct.backend import Types, upload
from drct.geometry.detector import DetectorFrame, detector_frame, dot, scaled, sub
from drct.geometry.projection import ProjectionGeometry, host_rows
from drct.geometry.volume import VolumeGeometry
from drct.kernels.scatter import scatter_mode
from drct.projector import Projector


def _view_parameters(pg: ProjectionGeometry) -> np.ndarray:
    """Per view a row of floats describing the detector mapping (see :func:`_terms`): curved detectors the
    source and the :class:`~drct.geometry.detector.DetectorFrame` of the cylinder, flat ones the source, the
    centre, the plane's dual vectors and its normal facing away from the source."""
    src, det, du, dv = (
        [c for c in np.asarray(host_rows(v), dtype=np.float64).T] for v in (pg.src, pg.det, pg.det_u, pg.det_v)
    )
    frame = detector_frame(src, det, du, dv, bool(pg.curved))
    orbit = np.hypot(src[0], src[1])
    zero = np.zeros_like(orbit)
    if pg.curved:
        assert frame.axis is not None and frame.w_hat is not None and frame.u_hat is not None
        columns = [*src, *det, *frame.axis, *frame.w_hat, *frame.u_hat, *du, *dv, frame.radius, frame.height, orbit]
    else:
        assert frame.normal is not None
        u_dual, v_dual = frame.plane_duals()
        away = np.where((pg.beam == "parallel") | (dot(sub(det, src), frame.normal) > 0), 1.0, -1.0)
        normal = scaled(frame.normal, away)
        columns = [*src, *det, *u_dual, *v_dual, *normal, dot(sub(det, src), normal), orbit, zero]
    return np.stack(np.broadcast_arrays(*columns), axis=1)


class ReferenceBackprojector:
    """Per-geometry state: coefficient centres and per-view parameters on the device."""

    def __init__(self, pg: ProjectionGeometry, vg: VolumeGeometry, t: Types) -> None:
        if pg.ndim != 3:
            raise ValueError(f"voxel-driven backprojection is for 3D geometries, got {pg!r}")
        self.pg, self.vg, self.t = pg, vg, t
        xs, ys, zs = vg.coordinates()
        zz, yy, xx = np.meshgrid(zs, ys, xs, indexing="ij")
        self.points = [upload(t.Float, c.reshape(-1)) for c in (xx, yy, zz)]
        self.params = _view_parameters(pg)
        self.rows, self.cols = pg.det_shape
        self.count = vg.size

    def _terms(self, p: list[Any], view: Any) -> list[tuple[Any, Any, Any]]:
        """The four bilinear taps of one view (parameters ``p``, index ``view``, a ``t.UInt``): (flat sinogram
        index, weight, active) per tap."""
        t = self.t
        x, y, z = self.points
        if self.pg.curved:
            src, axis, w_hat = p[0:3], p[6:9], p[9:12]
            frame = DetectorFrame(p[3:6], p[15:18], p[18:21], True, None, None, axis, w_hat, p[12:15], p[21], p[22])
            u, v, r2 = frame.cylinder_coordinates(src, [x, y, z])
            col, row = u + (self.cols - 1) / 2, v + (self.rows - 1) / 2
            weight = p[23] / r2
            valid = dot(sub([x, y, z], src), w_hat) > 0
        else:
            a, d, ud, vd, nrm = p[0:3], p[3:6], p[6:9], p[9:12], p[12:15]
            sdd, orbit = p[15], p[16]
            if self.pg.beam == "parallel":
                direction = a
                num = (d[0] - x) * nrm[0] + (d[1] - y) * nrm[1] + (d[2] - z) * nrm[2]
                den = direction[0] * nrm[0] + direction[1] * nrm[1] + direction[2] * nrm[2]
                step = num / den
                hit = [x + step * direction[0], y + step * direction[1], z + step * direction[2]]
                weight = dr.full(t.Float, 1.0, self.count)
                valid = dr.full(t.Bool, True, self.count)
            else:
                rel = [x - a[0], y - a[1], z - a[2]]
                depth = rel[0] * nrm[0] + rel[1] * nrm[1] + rel[2] * nrm[2]
                step = sdd / depth
                hit = [a[k] + step * rel[k] for k in range(3)]
                weight = orbit * sdd / dr.square(depth)
                valid = depth > 0
            e = [hit[k] - d[k] for k in range(3)]
            col = e[0] * ud[0] + e[1] * ud[1] + e[2] * ud[2] + (self.cols - 1) / 2
            row = e[0] * vd[0] + e[1] * vd[1] + e[2] * vd[2] + (self.rows - 1) / 2
        c0f, r0f = dr.floor(col), dr.floor(row)
        fc, fr = col - c0f, row - r0f
        inside = valid & (c0f > -2) & (c0f < self.cols) & (r0f > -2) & (r0f < self.rows)
        c0 = t.Int(dr.select(inside, c0f, 0))
        r0 = t.Int(dr.select(inside, r0f, 0))
        base = view * (self.rows * self.cols)
        taps = []
        for dr_, dc, wgt in (
            (0, 0, (1 - fr) * (1 - fc)),
            (0, 1, (1 - fr) * fc),
            (1, 0, fr * (1 - fc)),
            (1, 1, fr * fc),
        ):
            rr, cc = r0 + dr_, c0 + dc
            active = inside & (rr >= 0) & (rr < self.rows) & (cc >= 0) & (cc < self.cols)
            index = t.UInt(dr.select(active, rr * self.cols + cc, 0)) + base
            taps.append((index, weight * wgt, active))
        return taps

    def _views(self, progress: bool = False) -> Any:
        """Per view: its parameters and index as opaque scalars (one compiled kernel for every view).

        A Python loop of launches: measured 2x less CPU time than one symbolic loop over the views, whose
        per-voxel gathers of the view parameters cost more than the launches."""
        for view in tqdm(range(self.pg.num_views), desc="backprojection", disable=not progress, leave=False):
            p = [dr.opaque(self.t.Float, float(v)) for v in self.params[view]]
            yield self._terms(p, dr.opaque(self.t.UInt, view))

    def with_views(self, pg: ProjectionGeometry) -> ReferenceBackprojector:
        """The same coefficient centres with the views of ``pg`` (streaming FDK: one chunk of a scan's views)."""
        other = copy.copy(self)
        other.pg, other.params = pg, _view_parameters(pg)
        return other

    def apply(self, q: Any, progress: bool = False, out: Any = None) -> Any:
        """``Σ_views weight · interp(q)`` for a flat array ``q`` of the sinogram's size, added to ``out`` (a flat
        array of the volume's size; default zeros) view after view."""
        out = dr.zeros(self.t.Float, self.count) if out is None else out
        for taps in self._views(progress):
            for index, weight, active in taps:
                out += weight * dr.gather(self.t.Float, q, index, active)
            dr.eval(out)
        return out

    def transpose(self, g: Any) -> Any:
        """The exact transpose of :meth:`apply`: voxel values scattered back onto the sinogram."""
        out = dr.zeros(self.t.Float, self.pg.num_rays)
        for taps in self._views():
            for index, weight, active in taps:
                dr.scatter_add(out, weight * g, index, active, mode=scatter_mode(out))
            dr.eval(out)
        return out


def distance_factor(pg: ProjectionGeometry, vg: VolumeGeometry, view: int) -> np.ndarray:
    """``D / |x - s|`` for the coefficient centres ``x`` of ``vg`` and the source ``s`` of one 2D fan view
    (``D`` the source's distance from the rotation centre), shape ``vg.shape``."""
    src = np.asarray(host_rows(pg.src), dtype=np.float64)[view]
    xs, ys = vg.coordinates()
    r = np.hypot(xs[None, :] - src[0], ys[:, None] - src[1])
    return float(np.linalg.norm(src)) / r


def backproject_fan_per_view(A: Projector, z: Any) -> Any:
    """``Σ_i (D/r_i) ⊙ A_i.T z_i`` of a 2D fan beam view by view (one projector and ``A.T`` launch per view)."""
    t = A.types
    pg = A.pg
    assert isinstance(pg, ProjectionGeometry)
    cols = A.range_shape[-1]
    out = dr.zeros(t.Tensor, A.domain_shape)
    for i in range(pg.num_views):
        Ai = Projector(A.vg, pg.select_views([i]), A.basis, A.dtype, A.backend)
        idx = t.UInt(np.arange(i * cols, (i + 1) * cols, dtype=np.uint32))
        zi = t.Tensor(dr.gather(t.Float, z.array, idx), (1, cols))
        factor = distance_factor(pg, A.vg, i).astype(t.np_dtype)
        out = out + Ai.adjoint_tensor(zi) * t.Tensor(upload(t.Float, factor.reshape(-1)), A.domain_shape)
        dr.eval(out)
    return out
