"""The numerical engine of the SPECT operator: rotate, attenuate, blur per depth, sum — and the exact transpose
of each step.

For view ``v`` the volume is sampled on a grid aligned with the camera: sample ``(v, k, i, j)`` sits at
``s_i e_u + t_j e_d`` in slice ``k`` (``s_i`` the centre of detector column ``i``, ``t_j = (j - J) Δt`` the depth
along the viewing direction ``e_d``, ``Δt`` the depth step), where the activity ``f`` and the attenuation map
``μ`` are read by bilinear interpolation in the ``(x, y)`` plane (zero outside the grid): ``f_r = R_v f``,
``μ_r = R_v μ``. Then

* attenuation: ``a_j = exp(-Δt (Σ_{j' > j} μ_r[j'] + μ_r[j] / 2))``, the midpoint rule for
  ``exp(-∫_t^{face} μ)`` along the ray to the collimator (samples behind the collimator face, ``t_j > R_v``, see
  nothing and attenuate nothing);
* collimator–detector response: each depth plane ``j`` of view ``v`` is convolved with a sampled Gaussian of
  ``σ(R_v - t_j)`` along the columns and the rows (normalised on its support of ``±K`` pixels, ``K`` from the
  largest ``σ``), separable, zero outside the detector;
* projection: ``y[v, k, i] = Δt Σ_j (G_{v,j} * (a ⊙ f_r))[k, i, j]``.

Every step is linear in ``f``; the adjoint applies their transposes in reverse order: the block sum's
transpose copies ``y`` to every depth, the convolutions are symmetric (a kernel that depends only on ``(v, j)``
with ``w(-a) = w(a)`` bit for bit, and the same zero padding), the attenuation is diagonal, and the transpose
of the bilinear read is the scatter-add of the same weights. So ``A.T`` is the exact transpose of ``A`` (to
rounding). The derivative w.r.t. ``μ`` follows from ``∂a_j/∂μ_r[j'] = -Δt a_j (1[j' > j] + 1[j' = j]/2)``:
a block prefix sum of the same kind, in the other direction.

Sample arrays are flat, index ``n = ((v·rows + k)·cols + i)·depths + j``, so the projection is a block sum
of ``depths`` consecutive samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import drjit as dr
import numpy as np

from ..backend import Types
from ..geometry.volume import VolumeGeometry
from ..kernels import scatter
from .geometry import SpectGeometry

SigmaModel = Callable[[np.ndarray], Any]


def gaussian_taps(sigma: np.ndarray, pitch: float, radius: int) -> np.ndarray:
    """Sampled Gaussians ``exp(-(a p)² / 2σ²)`` for ``a = -K..K``, each normalised to sum 1 (``σ = 0``: a
    delta), shape ``(*sigma.shape, 2K + 1)``; symmetric bit for bit.

    Example:
        >>> import numpy as np
        >>> from drct.emission.engine import gaussian_taps
        >>> taps = gaussian_taps(np.array([0.0, 1.5]), pitch=1.0, radius=3)
        >>> taps.shape, taps[0].tolist() == [0, 0, 0, 1, 0, 0, 0], bool(np.allclose(taps.sum(-1), 1.0))
        ((2, 7), True, True)
        >>> bool(np.array_equal(taps[1], taps[1][::-1]))
        True
    """
    a = np.arange(-radius, radius + 1, dtype=np.float64) * pitch
    s = np.asarray(sigma, dtype=np.float64)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(s > 0, np.exp(-(a**2) / (2.0 * np.where(s > 0, s, 1.0) ** 2)), (a == 0).astype(np.float64))
    return g / g.sum(axis=-1, keepdims=True)


def gaussian_taps_derivative(sigma: np.ndarray, pitch: float, radius: int) -> np.ndarray:
    """``∂/∂σ`` of :func:`gaussian_taps` (zero where ``σ = 0``): for ``w_a = e_a / Σ_b e_b`` with
    ``e_a = exp(-x_a² / 2σ²)``, ``∂w_a/∂σ = w_a (x_a² - Σ_b w_b x_b²) / σ³``.

    Example:
        >>> import numpy as np
        >>> from drct.emission.engine import gaussian_taps, gaussian_taps_derivative
        >>> s, h = np.array([1.3]), 1e-6
        >>> fd = (gaussian_taps(s + h, 1.0, 4) - gaussian_taps(s - h, 1.0, 4)) / (2 * h)
        >>> bool(np.allclose(gaussian_taps_derivative(s, 1.0, 4), fd, atol=1e-8))
        True
    """
    w = gaussian_taps(sigma, pitch, radius)
    x2 = (np.arange(-radius, radius + 1, dtype=np.float64) * pitch) ** 2
    s = np.asarray(sigma, dtype=np.float64)[..., None]
    mean = (w * x2).sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s > 0, w * (x2 - mean) / np.where(s > 0, s, 1.0) ** 3, 0.0)


class SpectEngine:
    """Rotate-attenuate-blur-sum for one volume grid, one SPECT geometry and one response model."""

    def __init__(
        self,
        vg: VolumeGeometry,
        sg: SpectGeometry,
        sigma: SigmaModel | None,
        t: Types,
        depth_step: float | None = None,
        cutoff: float = 4.0,
        method: str = "direct",
    ) -> None:
        if vg.ndim != 3:
            raise ValueError(f"SPECT needs a 3D volume (nz, ny, nx), got shape {vg.shape}")
        nz, ny, nx = vg.shape
        dz, dy, dx = vg.voxel_size
        rows, cols = sg.det_shape
        row_pitch, col_pitch = sg.det_spacing
        if rows != nz or not math.isclose(row_pitch, dz, rel_tol=1e-6):
            raise ValueError(
                f"the detector rows must be the volume's z slices: {nz} rows of {dz:g} mm, got {rows} rows of "
                f"{row_pitch:g} mm (det_shape={sg.det_shape}, det_spacing={sg.det_spacing})"
            )
        step = min(dx, dy) if depth_step is None else float(depth_step)
        if not math.isfinite(step) or step <= 0:
            raise ValueError(f"depth_step must be a finite number > 0 (mm), got {depth_step!r}")
        if not math.isfinite(cutoff) or cutoff <= 0:
            raise ValueError(f"psf_cutoff must be a finite number > 0 (in σ), got {cutoff!r}")
        self.t, self.vg, self.sg = t, vg, sg
        self.shape = (nz, ny, nx)
        self.spacing = (dz, dy, dx)
        self.center = vg.center[:2]
        self.rows, self.cols, self.col_pitch, self.dt = rows, cols, col_pitch, step
        # depths covering every point whose bilinear footprint reaches the grid
        hx, hy = (nx + 1) / 2 * dx, (ny + 1) / 2 * dy
        cx, cy = self.center
        reach = max(math.hypot(abs(cx) + hx, abs(cy) + hy), 1e-12)
        self.half = math.ceil(reach / step)
        self.depths = 2 * self.half + 1
        self.views = sg.num_views
        self.size = self.views * rows * cols * self.depths
        depth = (np.arange(self.depths) - self.half) * step
        visible = depth[None, :] <= sg.radius[:, None]  # (V, depths)
        self.all_visible = bool(visible.all())
        distance = np.where(visible, sg.radius[:, None] - depth[None, :], 0.0)
        if sigma is None:
            s = np.zeros_like(distance)
        else:
            s = np.asarray(sigma(distance), dtype=np.float64)
            if s.shape != distance.shape or not np.all(np.isfinite(s)) or np.any(s < 0):
                raise ValueError(
                    "the collimator response sigma(d) must map an array of distances (mm) to finite sigmas >= 0 "
                    f"(mm) of the same shape; got shape {s.shape}, min {np.nanmin(s) if s.size else 'n/a'}"
                )
        self.sigma, self.distance, self._visible_np = s, distance, visible
        self.ku = math.ceil(cutoff * s.max() / col_pitch) if s.max() > 0 else 0
        self.kz = math.ceil(cutoff * s.max() / dz) if s.max() > 0 else 0
        wu = gaussian_taps(s, col_pitch, self.ku) * (visible * step)[..., None]
        wz = gaussian_taps(s, dz, self.kz)
        f = t.Float
        self.wu, self.wz = f(wu.reshape(-1)), f(wz.reshape(-1))
        # a circular orbit has the same response for every view: one table indexed by depth only (small, in cache)
        # instead of one per view; ``uniform = False`` selects the per-view tables (the reference path)
        self.uniform = bool(np.all(sg.radius == sg.radius[0]))
        self.wu_depth, self.wz_depth = f(wu[0].reshape(-1)), f(wz[0].reshape(-1))
        self.visible = f(visible.astype(np.float64).reshape(-1))
        self.cos, self.sin = f(np.cos(sg.angles)), f(np.sin(sg.angles))
        self.offset = f(sg.offset) if np.any(sg.offset) else None
        self.tracked = False  # geometry arrays carry Dr.Jit AD (see attach_geometry)
        if method not in ("direct", "incremental"):
            raise ValueError(f"psf_method must be 'direct' or 'incremental', got {method!r}")
        self.method = method
        self.incremental = None if method == "direct" else IncrementalResponse(self, visible)

    # -- geometry derivatives --------------------------------------------------------------------------------
    def attach_geometry(self, angles: Any, radius: Any, offset: Any, dsigma: np.ndarray | None) -> None:
        """Let Dr.Jit AD reach the geometry: ``angles``, ``radius``, ``offset`` are ``Float64`` arrays of one value
        per view, equal to this engine's geometry (``None``: that part stays fixed), and ``dsigma`` the response's
        ``dσ/dd`` at :attr:`distance` (needed for ``radius``). The view angles and offsets enter the bilinear
        read (differentiable in the sample positions, piecewise linear); the radius enters through the response
        ``σ(R - t)`` (first order: the taps are their values plus ``∂w/∂σ · σ'(d) · dR``; visibility, a step,
        has no derivative). Every later call records its operations for Dr.Jit's AD instead of using the
        custom operators: memory grows with the recorded graph."""
        t, f = self.t, self.t.Float
        if angles is not None:
            self.cos, self.sin = f(dr.cos(angles)), f(dr.sin(angles))
        if offset is not None:
            self.offset = f(offset)
        if radius is not None and self.ku + self.kz > 0:
            if dsigma is None:
                raise ValueError("radius derivatives need the response's dsigma/dd")
            if self.incremental is not None:
                raise ValueError(
                    "radius derivatives are implemented for psf_method='direct' only (the incremental kernels' "
                    "variances have no derivative here)"
                )
            change = f(radius - dr.detach(radius))  # value 0, derivative dR
            ds = dsigma * self._visible_np
            for name, pitch, k, scale in (
                ("wu", self.col_pitch, self.ku, self._visible_np * self.dt),
                ("wz", self.spacing[0], self.kz, None),
            ):
                d = gaussian_taps_derivative(self.sigma, pitch, k) * ds[..., None]
                if scale is not None:
                    d = d * scale[..., None]
                taps = 2 * k + 1
                per_view = dr.arange(t.UInt, self.views * self.depths * taps) // (self.depths * taps)
                grow = dr.gather(f, change, per_view)
                setattr(self, name, getattr(self, name) + f(d.reshape(-1)) * grow)
            self.uniform = False  # the derivatives differ per view
        self.tracked = True

    # -- indices and the bilinear read ----------------------------------------------------------------------
    def _ids(self) -> tuple[Any, Any, Any, Any, Any]:
        """Per sample: flat sample index ``n``, depth ``j``, column ``i``, row ``k``, view-depth ``v·depths + j``."""
        u = self.t.UInt
        n = dr.arange(u, self.size)
        j = n % self.depths
        m = n // self.depths
        i = m % self.cols
        q = m // self.cols
        k = q % self.rows
        v = q // self.rows
        return n, j, i, k, v * self.depths + j

    def plane_ids(self) -> tuple[Any, Any, Any, Any]:
        """Per pixel of one depth plane of every view (index ``p = (v·rows + k)·cols + i``): ``p, i, k, v``."""
        p = dr.arange(self.t.UInt, self.views * self.rows * self.cols)
        q = p // self.cols
        return p, p % self.cols, q % self.rows, q // self.rows

    def _corners(self, plane: int | None = None) -> list[tuple[Any, Any, Any]]:
        """The bilinear read of every sample (or of depth plane ``plane`` only, in plane order): (volume index,
        weight, inside) for its four neighbours."""
        t = self.t
        _nz, ny, nx = self.shape
        _, dy, dx = self.spacing
        if plane is None:
            _, j, i, k, vj = self._ids()
            v = vj // self.depths
            tj = (t.Float(j) - self.half) * self.dt
        else:
            _, i, k, v = self.plane_ids()
            tj = dr.opaque(t.Float, (plane - self.half) * self.dt)  # a kernel parameter: one kernel for all planes
        c, s = dr.gather(t.Float, self.cos, v), dr.gather(t.Float, self.sin, v)
        su = (t.Float(i) - (self.cols - 1) / 2) * self.col_pitch
        if self.offset is not None:
            su = su + dr.gather(t.Float, self.offset, v)
        fx = (su * c - tj * s - self.center[0]) / dx + (nx - 1) / 2
        fy = (su * s + tj * c - self.center[1]) / dy + (ny - 1) / 2
        x0, y0 = dr.floor(fx), dr.floor(fy)
        wx, wy = fx - x0, fy - y0
        ix, iy = t.Int(x0), t.Int(y0)
        base = t.Int(k) * (ny * nx)
        out = []
        for oy in (0, 1):
            for ox in (0, 1):
                xx, yy = ix + ox, iy + oy
                inside = (xx >= 0) & (xx < nx) & (yy >= 0) & (yy < ny)
                w = (wx if ox else 1.0 - wx) * (wy if oy else 1.0 - wy)
                out.append((t.UInt(dr.select(inside, base + yy * nx + xx, 0)), w, inside))
        return out

    def rotate(self, volume: Any) -> Any:
        """``R f``: the volume read at every sample (flat, ``size`` entries)."""
        out = dr.zeros(self.t.Float, self.size)
        for index, w, inside in self._corners():
            out += w * dr.gather(self.t.Float, volume, index, inside)
        dr.eval(out)
        return out

    def rotate_plane(self, volume: Any, plane: int) -> Any:
        """``R f`` on depth plane ``plane`` only (plane order)."""
        out = dr.zeros(self.t.Float, self.views * self.rows * self.cols)
        for index, w, inside in self._corners(plane):
            out += w * dr.gather(self.t.Float, volume, index, inside)
        return out

    def rotate_plane_transpose(self, target: Any, values: Any, plane: int) -> None:
        """Scatter-add ``values`` of depth plane ``plane`` into ``target`` with the bilinear weights."""
        mode = scatter.scatter_mode(target)
        for index, w, inside in self._corners(plane):
            scatter.add(target, values * w, index, inside, mode)

    def rotate_transpose(self, samples: Any) -> Any:
        """``Rᵀ s``: the scatter-add of the same bilinear weights into a volume (into an even-sized target, so
        that :func:`~drct.kernels.scatter.add` writes pairs whatever the volume's size)."""
        size = int(np.prod(self.shape))
        target = scatter.even_zeros(self.t.Float, size)
        mode = scatter.scatter_mode(target)
        for index, w, inside in self._corners():
            scatter.add(target, samples * w, index, inside, mode)
        target = scatter.trimmed(target, size)
        dr.eval(target)
        return target

    # -- attenuation ---------------------------------------------------------------------------------------
    def _visible(self) -> Any:
        return dr.gather(self.t.Float, self.visible, self._ids()[4])

    def attenuation(self, mu: Any) -> Any:
        """``a = exp(-Δt (Σ_{j' > j} μ_r + μ_r / 2))`` per sample (samples behind the collimator face excluded),
        in the depth-fastest layout — or, for the incremental response, in plane order ``[j·P + p]`` (computed
        plane by plane from the collimator side: no depth-fastest array is made)."""
        if self.incremental is not None:
            return self._attenuation_planes(mu)
        mr = self.rotate(mu) * self._visible()
        dr.eval(mr)
        after = dr.block_prefix_sum(mr, self.depths, exclusive=True, reverse=True)
        att = dr.exp(-self.dt * (after + 0.5 * mr))
        dr.eval(att)
        return att

    def _attenuation_planes(self, mu: Any) -> Any:
        t = self.t
        p, _, _, v = self.plane_ids()
        plane = dr.width(p)
        out = dr.zeros(t.Float, self.size)
        after = dr.zeros(t.Float, plane)
        for j in range(self.depths - 1, -1, -1):
            seen = dr.gather(t.Float, self.visible, v * self.depths + dr.opaque(t.UInt, j))
            mr = self.rotate_plane(mu, j) * seen
            dr.scatter(out, dr.exp(-self.dt * (after + 0.5 * mr)), p + dr.opaque(t.UInt, j * plane))
            after = after + mr
            dr.eval(out, after)
        return out

    def _depth_fastest(self, att: Any) -> Any:
        """``att`` in the depth-fastest layout (a copy when it is in plane order)."""
        if self.incremental is None:
            return att
        plane = self.views * self.rows * self.cols
        n = dr.arange(self.t.UInt, self.size)
        out = dr.gather(self.t.Float, att, (n % self.depths) * plane + n // self.depths)
        dr.eval(out)
        return out

    # -- the response and the depth sum ---------------------------------------------------------------------
    def _table(self, axis: str) -> tuple[Any, Any]:
        """The response taps of ``axis`` (``"u"`` or ``"z"``) and the row of each sample in them: per depth for a
        circular orbit (:attr:`uniform`), else per view and depth."""
        _, j, _, _, vj = self._ids()
        if self.uniform:
            return (self.wu_depth if axis == "u" else self.wz_depth), j
        return (self.wu if axis == "u" else self.wz), vj

    def _convolve(self, h: Any, axis: str, radius: int, stride: int, position: Any, count: int) -> Any:
        """``Σ_a w[v, j, a] h[n + a·stride]`` over ``|a| ≤ radius`` with ``0 <= position + a < count``:
        symmetric in ``a``, hence its own transpose."""
        if radius == 0:
            return h
        dr.eval(h)
        n = self._ids()[0]
        weights, row = self._table(axis)
        width = 2 * radius + 1
        out = dr.zeros(self.t.Float, self.size)
        ni, pos = self.t.Int(n), self.t.Int(position)
        for a in range(-radius, radius + 1):
            ok = (pos + a >= 0) & (pos + a < count)
            w = dr.gather(self.t.Float, weights, row * width + (a + radius))
            out += w * dr.gather(self.t.Float, h, self.t.UInt(dr.select(ok, ni + a * stride, 0)), ok)
        dr.eval(out)
        return out

    def _depth_weight(self, h: Any) -> Any:
        """``h`` times the column taps of a response without blur (``Δt`` and visibility)."""
        weights, row = self._table("u")
        return h * dr.gather(self.t.Float, weights, row)

    def _blur(self, h: Any) -> Any:
        """The response of every depth plane (rows, then columns; the column taps carry ``Δt`` and visibility)."""
        _, _, i, k, _ = self._ids()
        h = self._convolve(h, "z", self.kz, self.cols * self.depths, k, self.rows)
        if self.ku == 0:
            out = self._depth_weight(h)
            dr.eval(out)
            return out
        return self._convolve(h, "u", self.ku, self.depths, i, self.cols)

    def _blur_transpose(self, h: Any) -> Any:
        _, _, i, k, _ = self._ids()
        if self.ku == 0:
            h = self._depth_weight(h)
        else:
            h = self._convolve(h, "u", self.ku, self.depths, i, self.cols)
        return self._convolve(h, "z", self.kz, self.cols * self.depths, k, self.rows)

    def _spread(self, y: Any) -> Any:
        """Transpose of the depth sum: each projection value at every depth of its ray."""
        return dr.gather(self.t.Float, y, self._ids()[0] // self.depths)

    def respond(self, h: Any) -> Any:
        """The projection of attenuated samples ``h``: the response of every depth plane, summed over depth."""
        if self.incremental is not None:
            return self.incremental.apply(h)
        y = dr.block_sum(self._blur(h), self.depths)
        dr.eval(y)
        return y

    def respond_transpose(self, y: Any) -> Any:
        if self.incremental is not None:
            return self.incremental.transpose(y)
        return self._blur_transpose(self._spread(y))

    # -- the operator and its derivatives ------------------------------------------------------------------
    def _plane_samples(self, f: Any, att: Any | None, plane: int) -> Any:
        """Depth plane ``plane`` of ``a ⊙ R f`` (plane order)."""
        h = self.rotate_plane(f, plane)
        if att is not None:
            p = self.plane_ids()[0]
            h = h * dr.gather(self.t.Float, att, p + dr.opaque(self.t.UInt, plane * dr.width(p)))
        return h

    def project(self, f: Any, att: Any | None) -> Any:
        if self.incremental is not None:
            return self.incremental.apply_planes(lambda j: self._plane_samples(f, att, j))
        h = self.rotate(f)
        if att is not None:
            h = h * att
        return self.respond(h)

    def backproject(self, y: Any, att: Any | None) -> Any:
        if self.incremental is not None:
            size = int(np.prod(self.shape))
            target = scatter.even_zeros(self.t.Float, size)  # even: the scatters write pairs

            def sink(plane: int, values: Any) -> None:
                if att is not None:
                    p = self.plane_ids()[0]
                    offset = dr.opaque(self.t.UInt, plane * dr.width(p))
                    values = values * dr.gather(self.t.Float, att, p + offset)
                self.rotate_plane_transpose(target, values, plane)

            self.incremental.transpose_planes(y, sink)
            target = scatter.trimmed(target, size)
            dr.eval(target)
            return target
        h = self.respond_transpose(y)
        if att is not None:
            h = h * att
        return self.rotate_transpose(h)

    def mu_vjp(self, f: Any, att: Any, g: Any) -> Any:
        """``(∂y/∂μ)ᵀ g`` at activity ``f`` and attenuation ``att`` (from :meth:`attenuation`)."""
        q = self.respond_transpose(g) * self.rotate(f) * self._depth_fastest(att)
        dr.eval(q)
        before = dr.block_prefix_sum(q, self.depths, exclusive=True, reverse=False)
        return self.rotate_transpose(-self.dt * (before + 0.5 * q) * self._visible())

    def mu_jvp(self, f: Any, att: Any, dmu: Any) -> Any:
        """``(∂y/∂μ) dμ``."""
        dm = self.rotate(dmu) * self._visible()
        dr.eval(dm)
        after = dr.block_prefix_sum(dm, self.depths, exclusive=True, reverse=True)
        return self.respond(self.rotate(f) * self._depth_fastest(att) * (-self.dt) * (after + 0.5 * dm))

    def hidden(self) -> Any:
        """Volume mask (float 0/1): coefficients read by some sample behind the collimator face."""
        if self.all_visible:
            return dr.zeros(self.t.Float, int(np.prod(self.shape)))
        back = self.rotate_transpose(1.0 - self._visible())
        return dr.select(back > 0, self.t.Float(1), self.t.Float(0))

    def bytes_per_call(self) -> int:
        """Peak memory of ``A`` or ``A.T``: about five depth-sample arrays alive at once (direct response), or a
        few depth planes (incremental: the samples are made plane by plane); the cached attenuation apart."""
        item = self.t.itemsize
        if self.incremental is not None:
            return 8 * self.views * self.rows * self.cols * item + 2 * int(np.prod(self.shape)) * item
        return 5 * self.size * item


class SpectOp(dr.CustomOp):
    """``y = A(f, μ)`` with derivatives w.r.t. the activity ``f`` (linear) and the attenuation map ``μ``."""

    def eval(self, engine: SpectEngine, f: Any, mu: Any, att: Any, need: tuple[bool, bool]) -> Any:
        self.engine, self.f, self.att, self.need = engine, f, att, need
        return engine.project(f, att)

    def backward(self) -> None:
        g = self.grad_out()
        if self.need[0]:
            self.set_grad_in("f", self.engine.backproject(g, self.att))
        if self.need[1]:
            self.set_grad_in("mu", self.engine.mu_vjp(self.f, self.att, g))

    def forward(self) -> None:
        out: Any = 0.0
        if self.need[0]:
            out = self.engine.project(self.grad_in("f"), self.att)
        if self.need[1]:
            out = out + self.engine.mu_jvp(self.f, self.att, self.grad_in("mu"))
        self.set_grad_out(out)

    def name(self) -> str:
        return "drct.spect.A"


class SpectAdjointOp(dr.CustomOp):
    """``f = A.T y`` (for a fixed ``μ``), differentiable w.r.t. ``y`` in both modes."""

    def eval(self, engine: SpectEngine, y: Any, att: Any) -> Any:
        self.engine, self.att = engine, att
        return engine.backproject(y, att)

    def backward(self) -> None:
        self.set_grad_in("y", self.engine.project(self.grad_out(), self.att))

    def forward(self) -> None:
        self.set_grad_out(self.engine.backproject(self.grad_in("y"), self.att))

    def name(self) -> str:
        return "drct.spect.A.T"


def variance_kernels(variance: np.ndarray) -> tuple[np.ndarray, int]:
    """Symmetric kernels of exactly the given variances (pixels²): the ``n``-fold convolution of the three-tap
    kernel ``[v/2, 1 - v, v/2]`` with ``v = variance / n ≤ 1/2`` (non-negative, sum 1; a binomial-like
    approximation of the Gaussian that converges to it as kernels compose). Returns ``(kernels, radius)``,
    kernels of shape ``(*variance.shape, 2 radius + 1)``."""
    var = np.asarray(variance, dtype=np.float64)
    counts = np.ceil(var / 0.5).astype(np.int64)
    radius = int(counts.max()) if counts.size else 0
    out = np.zeros((*var.shape, 2 * radius + 1))
    flat_var, flat_n, flat_out = var.reshape(-1), counts.reshape(-1), out.reshape(-1, 2 * radius + 1)
    for e, (v, n) in enumerate(zip(flat_var, flat_n, strict=True)):
        k = np.array([1.0])
        if n > 0:
            step = np.array([v / n / 2, 1.0 - v / n, v / n / 2])
            for _ in range(n):
                k = np.convolve(k, step)
        flat_out[e, radius - n : radius + n + 1] = k
    return out, radius


class IncrementalResponse:
    """The depth-dependent response by incremental blurring (Horner's scheme over the depth planes).

    With ``σ_j`` the response at plane ``j`` (``j`` increasing towards the collimator, ``σ`` non-increasing),
    ``y = K_near * (h_J + K_J * (h_{J-1} + ... + K_1 * h_0))``, where ``K_j`` has the variance
    ``σ_{j-1}² - σ_j²`` and ``K_near`` the variance ``σ_J²`` (per view and axis, :func:`variance_kernels`): the
    response of plane ``j`` is then a kernel of variance exactly ``σ_j²``, near-Gaussian once a few kernels
    compose, for small kernels instead of one wide kernel per plane. The transpose runs the scheme backwards
    with the same (symmetric) kernels.
    """

    def __init__(self, engine: SpectEngine, visible: np.ndarray) -> None:
        var = engine.sigma**2  # (V, depths), mm²; sigma(0) behind the face, where nothing is seen
        steps = var[:, :-1] - var[:, 1:]
        if np.any(steps < -1e-12 * max(float(var.max()), 1e-30)):
            raise ValueError(
                "psf_method='incremental' needs a response that narrows towards the collimator (sigma(d) "
                "non-decreasing in d); use psf_method='direct'"
            )
        steps = np.maximum(steps, 0.0)
        e, t = engine, engine.t
        self.e = e
        self.plane = e.views * e.rows * e.cols
        inc_u, self.ru = variance_kernels(steps / e.col_pitch**2)
        inc_z, self.rz = variance_kernels(steps / e.spacing[0] ** 2)
        near_u, self.nu = variance_kernels(var[:, -1] / e.col_pitch**2)
        near_z, self.nz = variance_kernels(var[:, -1] / e.spacing[0] ** 2)
        self.inc_u, self.inc_z = t.Float(inc_u.reshape(-1)), t.Float(inc_z.reshape(-1))
        self.near_u, self.near_z = t.Float(near_u.reshape(-1)), t.Float(near_z.reshape(-1))
        self.busy = [bool(np.any(steps[:, j - 1] > 0)) for j in range(1, e.depths)]
        scale = visible * e.dt  # Δt per (view, plane), zero behind the face
        self.scale = t.Float(scale.reshape(-1))
        # view 0's kernels and scales, for a circular orbit (engine.uniform): kernel parameters, no gathers
        self.host = {"inc_u": inc_u[0], "inc_z": inc_z[0], "near_u": near_u[0], "near_z": near_z[0], "scale": scale[0]}

    def _ids(self) -> tuple[Any, Any, Any, Any]:
        return self.e.plane_ids()

    def _conv(self, acc: Any, taps: list[Any], stride: int, pos: Any, count: int) -> Any:
        """``Σ_a w_a acc[p + a·stride]`` over ``|a| ≤ radius`` (``taps``: the ``2 radius + 1`` weights), zero
        outside ``0 <= pos + a < count``."""
        radius = len(taps) // 2
        if radius == 0:
            return acc
        t = self.e.t
        dr.eval(acc)
        p, ip = t.Int(self._ids()[0]), t.Int(pos)
        out = dr.zeros(t.Float, self.plane)
        for a, w in zip(range(-radius, radius + 1), taps, strict=True):
            ok = (ip + a >= 0) & (ip + a < count)
            out += w * dr.gather(t.Float, acc, t.UInt(dr.select(ok, p + a * stride, 0)), ok)
        return out

    def _conv_2d(self, acc: Any, z: list[Any], u: list[Any]) -> Any:
        """Both passes in one kernel: ``Σ_{a,b} wz_b wu_a acc[p + b·cols + a]`` (for 3-tap kernels: 9 reads
        instead of 6, but one launch and no intermediate plane). Symmetric: its own transpose."""
        t, e = self.e.t, self.e
        dr.eval(acc)
        ids = self._ids()
        p, i, k = t.Int(ids[0]), t.Int(ids[1]), t.Int(ids[2])
        out = dr.zeros(t.Float, self.plane)
        rz, ru = len(z) // 2, len(u) // 2
        for b, wz in zip(range(-rz, rz + 1), z, strict=True):
            okz = (k + b >= 0) & (k + b < e.rows)
            for a, wu in zip(range(-ru, ru + 1), u, strict=True):
                ok = okz & (i + a >= 0) & (i + a < e.cols)
                out += (wz * wu) * dr.gather(t.Float, acc, t.UInt(dr.select(ok, p + b * e.cols + a, 0)), ok)
        return out

    def _taps(self, name: str, radius: int, j: int | None) -> list[Any]:
        """The ``2 radius + 1`` weights of kernel table ``name`` for plane ``j`` (None: the near kernel): per
        pixel, gathered by view, or — for a circular orbit — kernel parameters, the same for every pixel."""
        t, e = self.e.t, self.e
        width = 2 * radius + 1
        if e.uniform:
            row = self.host[name] if j is None else self.host[name][j - 1]
            return [dr.opaque(t.Float, float(w)) for w in row]
        v = self._ids()[3]
        index = v if j is None else v * (e.depths - 1) + dr.opaque(t.UInt, j - 1)
        table = getattr(self, name)
        return [dr.gather(t.Float, table, index * width + a) for a in range(width)]

    def _blur(self, acc: Any, j: int | None, transpose: bool = False) -> Any:
        """``K_j * acc`` (``j`` a plane) or ``K_near * acc`` (``j`` None); separable, rows then columns (the
        transpose: the same symmetric kernels, columns then rows)."""
        e = self.e
        _, i, k, _ = self._ids()
        kind, (rz, ru) = ("near", (self.nz, self.nu)) if j is None else ("inc", (self.rz, self.ru))
        z, u = self._taps(f"{kind}_z", rz, j), self._taps(f"{kind}_u", ru, j)
        if 0 < max(rz, ru) <= 1:
            return self._conv_2d(acc, z, u)
        passes = [(z, e.cols, k, e.rows), (u, 1, i, e.cols)]
        for taps, stride, pos, count in reversed(passes) if transpose else passes:
            acc = self._conv(acc, taps, stride, pos, count)
        return acc

    def _plane_index(self, j: int) -> Any:
        """Sample indices (depth-fastest layout) of plane ``j``."""
        return self._ids()[0] * self.e.depths + dr.opaque(self.e.t.UInt, j)

    def _scaled(self, values: Any, j: int) -> Any:
        """``values`` of plane ``j`` times ``Δt`` (zero behind the collimator face)."""
        t = self.e.t
        if self.e.uniform:
            return values * dr.opaque(t.Float, float(self.host["scale"][j]))
        v = self._ids()[3]
        return values * dr.gather(t.Float, self.scale, v * self.e.depths + dr.opaque(t.UInt, j))

    def apply_planes(self, plane: Callable[[int], Any]) -> Any:
        """``y`` from the depth planes ``plane(j)`` (plane order, ``j`` from the far side)."""
        acc = self._scaled(plane(0), 0)
        for j in range(1, self.e.depths):
            if self.busy[j - 1]:
                acc = self._blur(acc, j)
            acc = acc + self._scaled(plane(j), j)
            dr.eval(acc)
        y = self._blur(acc, None)
        dr.eval(y)
        return y

    def transpose_planes(self, y: Any, sink: Callable[[int, Any], None]) -> None:
        """The transpose of :meth:`apply_planes`: ``sink(j, values)`` receives plane ``j``'s share (near first)."""
        acc = self._blur(y, None, transpose=True)
        for j in range(self.e.depths - 1, 0, -1):
            sink(j, self._scaled(acc, j))
            if self.busy[j - 1]:
                acc = self._blur(acc, j, transpose=True)
            dr.eval(acc)
        sink(0, self._scaled(acc, 0))

    def apply(self, h: Any) -> Any:
        """``y`` from samples in the depth-fastest layout."""
        return self.apply_planes(lambda j: dr.gather(self.e.t.Float, h, self._plane_index(j)))

    def transpose(self, y: Any) -> Any:
        out = dr.zeros(self.e.t.Float, self.e.size)

        def sink(j: int, values: Any) -> None:
            dr.scatter(out, values, self._plane_index(j))
            dr.eval(out)

        self.transpose_planes(y, sink)
        return out
