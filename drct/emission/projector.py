"""The SPECT operator ``y = A f``: attenuated, collimator-blurred parallel projections of an activity volume,
with ``A.T`` its exact transpose (the numerics are in :mod:`drct.emission.engine`)."""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np

from ..arrays import require_finite_tensor, to_tensor
from ..backend import Types, canonical_dtype, get_backend, types
from ..concurrency import get_deterministic, launches
from ..errors import require_finite
from ..geometry.volume import VolumeGeometry
from ..memory import require_memory
from ..operator import Adjoint, AllViewsHere, ArrayCalls
from .collimator import Collimator
from .engine import SigmaModel, SpectAdjointOp, SpectEngine, SpectOp
from .geometry import SpectGeometry


class SPECTProjector(ArrayCalls, AllViewsHere):
    """SPECT projections ``y = A f`` of an activity ``f`` (voxel values on ``vg``, per mm) for a parallel-hole
    camera, with attenuation by the map ``mu`` and the depth-dependent collimator–detector response; ``A.T`` is
    the exact transpose of the discretised ``A`` (see :mod:`drct.emission.engine` for the discretisation).

    ``y[v, k, i]`` is the attenuated line integral ``∫ f(t) exp(-∫_t^{face} μ) dt`` along the ray of detector
    pixel ``(k, i)`` of view ``v``, blurred by the response at each depth: multiply by the camera's sensitivity
    (and the acquisition time) for expected counts. ``ct.recon.mlem`` and ``ct.recon.osem`` take it as ``A``.

    Args:
        vg: the volume grid (3D); the detector rows must be its ``z`` slices (same count and pitch).
        geometry: the camera's views, from :func:`drct.spect`.
        mu: attenuation map (1/mm) on ``vg`` (numpy, torch or Dr.Jit; read bilinearly in-plane like ``f``), or
            ``None`` for no attenuation.
        collimator: a :class:`Collimator`, or any function mapping a numpy array of distances from the
            collimator face (mm) to Gaussian sigmas (mm), or ``None`` for no blur.
        dtype: ``"float32"`` (default) or ``"float64"``.
        backend: ``"llvm"`` or ``"cuda"``; default the active backend.
        depth_step: sample spacing along the rays (mm), default the in-plane voxel size.
        psf_cutoff: the Gaussian kernels reach ``psf_cutoff`` times the largest ``σ`` (default 4).
        psf_method: ``"direct"`` (default: each depth plane convolved with the sampled Gaussian of its ``σ``) or
            ``"incremental"`` (incremental blurring: small kernels between neighbouring planes whose variances
            add up to ``σ²`` exactly; near-Gaussian, several times fewer operations for wide responses; needs
            ``σ(d)`` non-decreasing). Either way ``A.T`` is the exact transpose.
        deterministic: bit-reproducible ``A.T`` (one-thread scatter); ``None`` follows :func:`drct.set_deterministic`.

    Activity read by samples behind the collimator face (a body-contour orbit closer to the axis than the
    corners of the grid) would be invisible: ``A`` refuses volumes with activity there (:meth:`hidden_mask`).

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((16, 32, 32), voxel_size=4.0)
        >>> g = ct.spect(np.linspace(0, 2 * np.pi, 24, endpoint=False), 150.0, (16, 32), 4.0)
        >>> mu = np.full(vg.shape, 0.0154, np.float32)  # water at 140 keV, 1/mm
        >>> A = ct.emission.SPECTProjector(vg, g, mu=mu, collimator=ct.emission.Collimator.lehr())
        >>> f = np.zeros(vg.shape, np.float32); f[8, 16, 16] = 1.0
        >>> y = A(f)
        >>> y.shape, A.T(y).shape
        ((24, 16, 32), (16, 32, 32))
    """

    def __init__(
        self,
        vg: VolumeGeometry,
        geometry: SpectGeometry,
        mu: Any = None,
        collimator: Collimator | SigmaModel | None = None,
        dtype: Any = "float32",
        backend: str | None = None,
        depth_step: float | None = None,
        psf_cutoff: float = 4.0,
        psf_method: str = "direct",
        deterministic: bool | None = None,
    ) -> None:
        if not isinstance(vg, VolumeGeometry):
            raise TypeError(f"vg must be a drct.VolumeGeometry, got {type(vg).__name__}")
        if not isinstance(geometry, SpectGeometry):
            raise TypeError(f"geometry must come from drct.spect(...), got {type(geometry).__name__}")
        if collimator is not None and not callable(collimator):
            raise TypeError(f"collimator must be a Collimator, a function d -> sigma (mm) or None, got {collimator!r}")
        if deterministic is not None and not isinstance(deterministic, bool):
            raise TypeError(f"deterministic must be True, False or None, got {deterministic!r}")
        self.vg, self.pg = vg, geometry
        self.collimator = collimator
        self.types: Types = types(canonical_dtype(dtype), backend or get_backend())
        self._options = {
            "depth_step": depth_step,
            "psf_cutoff": psf_cutoff,
            "psf_method": psf_method,
            "deterministic": deterministic,
        }
        self._engine = SpectEngine(vg, geometry, collimator, self.types, depth_step, psf_cutoff, psf_method)
        self.deterministic = deterministic
        self.mu = None if mu is None else self._mu_tensor(mu)
        self._att: Any = None
        self._hidden: Any = None

    # -- shapes, as for drct.Projector -----------------------------------------------------------------------
    @property
    def domain_shape(self) -> tuple[int, ...]:
        return self.vg.shape

    @property
    def range_shape(self) -> tuple[int, ...]:
        return self.pg.shape

    @property
    def shape(self) -> tuple[int, int]:
        """``(number of detector pixels over all views, number of voxels)``."""
        return (int(np.prod(self.range_shape)), self.vg.size)

    @property
    def psf_radius(self) -> tuple[int, int]:
        """Half widths ``(rows, cols)`` of the direct method's response kernels (the widest plane's), in pixels."""
        return (self._engine.kz, self._engine.ku)

    @property
    def T(self) -> Adjoint[SPECTProjector]:
        return Adjoint(self)

    def select_views(self, views: Any) -> SPECTProjector:
        """The operator of a subset of views (same volume, μ-map and response), e.g. for OSEM."""
        mu = None if self.mu is None else self.mu
        return SPECTProjector(
            self.vg, self.pg.select_views(views), mu, self.collimator, self.dtype, self.backend, **self._options
        )

    def perturbed(self, angle: Any = None, radius: Any = None, offset: Any = None) -> SPECTProjector:
        """The operator at the geometry moved by ``angle`` (radians), ``radius`` (mm) and ``offset`` (the
        centre-of-rotation offset, mm): each one number or one per view, as numbers, numpy arrays or Dr.Jit
        ``Float64`` arrays. With Dr.Jit arrays, ``A`` and ``A.T`` of the result are differentiable w.r.t. them
        (first order, reverse and forward mode, through the same rotate-attenuate-blur program, recorded for
        Dr.Jit's AD: the memory of a call grows about ``psf taps`` times), and still w.r.t. the activity and the
        ``mu`` of ``forward_tensor``. Radius derivatives act through the response ``σ(R - t)`` and need a
        :class:`Collimator` (or no blur) and ``psf_method="direct"``. For torch tensors: :func:`drct.emission.project`.

        Example:
            >>> import numpy as np, drjit as dr, drct as ct
            >>> from drct.backend import drjit_module
            >>> vg = ct.VolumeGeometry((4, 12, 12), voxel_size=4.0)
            >>> g = ct.spect(np.linspace(0, 2 * np.pi, 6, endpoint=False), 60.0, (4, 12), 4.0)
            >>> A = ct.emission.SPECTProjector(vg, g, collimator=ct.emission.Collimator.lehr(), dtype="float64")
            >>> shift = drjit_module().Float64(0.0)  # one COR offset for every view
            >>> dr.enable_grad(shift)
            >>> y = A.perturbed(offset=shift).forward_tensor(A.types.Tensor(np.ones(vg.shape)))
            >>> dr.backward(dr.sum(y.array * dr.arange(A.types.Float, y.array.shape[0])))
            >>> bool(abs(dr.grad(shift)[0]) > 0)
            True
        """
        t64 = self.types.Float64
        views = self.pg.num_views
        moves: dict[str, Any] = {}
        values: dict[str, np.ndarray] = {}
        for name, value in (("angle", angle), ("radius", radius), ("offset", offset)):
            if value is None:
                values[name] = np.zeros(views)
                continue
            if dr.is_array_v(value):
                host = np.asarray(dr.detach(t64(value)).numpy(), dtype=np.float64).reshape(-1)
                moves[name] = t64(value)
            else:
                host = np.asarray(value, dtype=np.float64).reshape(-1)
            if host.size not in (1, views):
                raise ValueError(f"perturbed: {name} must be one number or one per view ({views}), got {host.size}")
            require_finite(host, f"perturbed {name}")
            values[name] = np.broadcast_to(host, (views,))
        op = SPECTProjector(
            self.vg, self.pg.perturb(**values), self.mu, self.collimator, self.dtype, self.backend, **self._options
        )
        if moves:
            e = op._engine
            nominal = {"angle": self.pg.angles, "radius": self.pg.radius, "offset": self.pg.offset}
            full = {k: t64(nominal[k]) + v for k, v in moves.items()}  # width-1 moves broadcast to every view
            dsigma = None
            if "radius" in full and e.ku + e.kz > 0:
                derivative = getattr(self.collimator, "sigma_derivative", None)
                if derivative is None:
                    raise TypeError(
                        "radius derivatives need the response's dsigma/dd: use a drct.emission.Collimator (a plain "
                        "function d -> sigma has none)"
                    )
                dsigma = np.asarray(derivative(e.distance), dtype=np.float64)
            e.attach_geometry(full.get("angle"), full.get("radius"), full.get("offset"), dsigma)
        return op

    # -- helpers -----------------------------------------------------------------------------------------------
    def _mu_tensor(self, mu: Any) -> Any:
        tensor, _ = to_tensor(mu, self.domain_shape, self.types, "mu (attenuation map)")
        self._check_mu(tensor)
        return dr.detach(tensor)

    def _check_mu(self, tensor: Any) -> None:
        require_finite_tensor(tensor, "mu (attenuation map)")
        low = float(dr.min(dr.detach(tensor.array), axis=None)[0])
        if low < 0:
            raise ValueError(f"mu (attenuation map) must be >= 0 (1/mm), got a minimum of {low:g}")

    def _launch(self) -> Any:
        flag = get_deterministic() if self.deterministic is None else self.deterministic
        return launches(self.backend, flag)

    def _attenuation(self) -> Any:
        if self.mu is None:
            return None
        if self._att is None:
            require_memory(self._engine.size * self.types.itemsize, f"the attenuation of {self!r}")
            self._att = self._engine.attenuation(self.mu.array)
        return self._att

    def hidden_mask(self) -> np.ndarray:
        """Boolean volume: voxels read by samples behind the collimator face in some view (all False for an orbit
        outside the grid); activity there is refused by ``A``."""
        return self._hidden_array().numpy().reshape(self.domain_shape) > 0

    def _hidden_array(self) -> Any:
        if self._hidden is None:
            with self._launch():
                self._hidden = self._engine.hidden()
        return self._hidden

    def _check_visible(self, f: Any) -> None:
        if self._engine.all_visible:
            return
        count: Any = dr.count((dr.detach(f) != 0) & (self._hidden_array() > 0))
        bad = int(count[0])
        if bad > 0:
            raise ValueError(
                f"the activity has {bad} nonzero voxels that lie behind the "
                f"collimator face in some view ({self.pg!r}): move the orbit out or zero them "
                "(A.hidden_mask(); mlem/osem take mask=~A.hidden_mask())"
            )

    # -- the operator ------------------------------------------------------------------------------------------
    def forward_tensor(self, x: Any, mu: Any = None) -> Any:
        """``A x`` for a Dr.Jit tensor ``x`` of shape ``vg.shape``. Differentiable w.r.t. ``x``; pass ``mu`` (a
        Dr.Jit tensor, e.g. with gradients enabled) to project with that attenuation map instead of the
        operator's, differentiable w.r.t. it too (both modes)."""
        if tuple(x.shape) != self.domain_shape:
            raise ValueError(f"x (volume) must have shape {self.domain_shape}, got {tuple(x.shape)}")
        require_finite_tensor(x, "x (volume)")
        self._check_visible(x.array)
        require_memory(self._engine.bytes_per_call(), f"A of {self!r}")
        if self._engine.tracked:
            return self._recorded(x, mu, adjoint=False)
        with self._launch():
            if mu is None:
                att, mu_arr, need_mu = self._attenuation(), None, False
            else:
                if tuple(mu.shape) != self.domain_shape:
                    raise ValueError(f"mu must have shape {self.domain_shape}, got {tuple(mu.shape)}")
                self._check_mu(mu)
                mu_arr, need_mu = mu.array, dr.grad_enabled(mu.array)
                att = self._engine.attenuation(dr.detach(mu_arr))
            need = (dr.grad_enabled(x.array), need_mu)
            if any(need):
                out = dr.custom(SpectOp, self._engine, x.array, mu_arr if need_mu else None, att, need)
            else:
                out = self._engine.project(dr.detach(x.array), att)
            y = self.types.Tensor(out, self.range_shape)
            dr.eval(y)
        return y

    def adjoint_tensor(self, y: Any) -> Any:
        """``A.T y`` for a Dr.Jit tensor ``y`` of shape ``range_shape`` (differentiable w.r.t. ``y``)."""
        if tuple(y.shape) != self.range_shape:
            raise ValueError(f"y (projections) must have shape {self.range_shape}, got {tuple(y.shape)}")
        require_finite_tensor(y, "y (projections)")
        require_memory(self._engine.bytes_per_call(), f"A.T of {self!r}")
        if self._engine.tracked:
            return self._recorded(y, None, adjoint=True)
        with self._launch():
            att = self._attenuation()
            if dr.grad_enabled(y.array):
                out = dr.custom(SpectAdjointOp, self._engine, y.array, att)
            else:
                out = self._engine.backproject(y.array, att)
            x = self.types.Tensor(out, self.domain_shape)
            dr.eval(x)
        return x

    def _recorded(self, value: Any, mu: Any, adjoint: bool) -> Any:
        """``A x`` or ``A.T y`` with every operation recorded for Dr.Jit's AD (geometry derivatives, see
        :meth:`perturbed`)."""
        e = self._engine
        require_memory(e.bytes_per_call() * (e.ku + e.kz + 4), f"the geometry derivatives of {self!r}")
        if mu is not None:
            if tuple(mu.shape) != self.domain_shape:
                raise ValueError(f"mu must have shape {self.domain_shape}, got {tuple(mu.shape)}")
            self._check_mu(mu)
        mu_arr = mu.array if mu is not None else None if self.mu is None else self.mu.array
        with self._launch():
            att = None if mu_arr is None else e.attenuation(mu_arr)
            if adjoint:
                out = self.types.Tensor(e.backproject(value.array, att), self.domain_shape)
            else:
                out = self.types.Tensor(e.project(value.array, att), self.range_shape)
            dr.eval(out)
        return out

    def __repr__(self) -> str:
        return (
            f"SPECTProjector(vg shape={self.vg.shape}, {self.pg!r}, mu={'yes' if self.mu is not None else 'none'}, "
            f"psf radius={self.psf_radius}, dtype={self.dtype!r}, backend={self.backend!r})"
        )
