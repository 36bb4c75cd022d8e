"""The X-ray transform ``A`` of a volume model on a scan geometry, and its exact adjoint ``A.T``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import drjit as dr

from .arrays import require_finite_tensor
from .backend import Types, canonical_dtype, get_backend, types
from .geometry.projection import AnyGeometry, ProjectionGeometry, RayGeometry
from .geometry.volume import VolumeGeometry
from .memory import require_memory
from .operator import Adjoint, AllViewsHere, ArrayCalls
from .transform import Transform
from .transform_ops import AdjointOp, ForwardOp, apply, geometry_tangents
from .volume import BASES, basis_degree


class Projector(ArrayCalls, AllViewsHere):
    """The exact line-integral transform of a continuous volume model, ``y = A x``, with ``A.T`` its adjoint.

    ``x`` holds the coefficients of the volume model ``basis`` on the grid ``vg``; ``A x`` integrates that
    continuous function along every ray of ``pg`` (in mm, so ``x`` in 1/mm gives dimensionless line integrals).
    The integral is exact (a knot-grid DDA with Gauss–Legendre quadrature), and ``A.T`` applies the same
    weights, so ``<A x, y> = <x, A.T y>`` to rounding.

    Args:
        vg: the volume grid.
        pg: the projection geometry (from :func:`drct.parallel`, :func:`drct.cone`, ... or :func:`drct.rays`).
        basis: ``"voxel"`` (box, exact intersection lengths), ``"linear"`` (bi/trilinear), ``"bspline2"`` or
            ``"bspline3"``.
        dtype: ``"float32"`` (default) or ``"float64"``.
        backend: ``"llvm"`` or ``"cuda"``; default the active backend (:func:`drct.set_backend`).
        chunk_rays: rays per launch of the derivative kernels (16 times more for ``A`` and ``A.T``); bounds the
            memory of gradients and of huge scans.
        batch: for a different geometry per sample: ``pg`` holds ``batch`` samples' views one after the other
            (views ``b * V .. b * V + V - 1`` are sample ``b``'s), and ``A`` maps ``(batch, *vg.shape)`` to
            ``(batch, V, *det)``. Without it, ``A`` and ``A.T`` accept any leading batch dimensions and apply
            the one geometry to every sample — in one launch either way.
        deterministic: bit-reproducible ``A.T`` and gradients (their scatter kernels run on one CPU thread in a
            fixed order); ``None`` follows :func:`drct.set_deterministic` / ``with ct.deterministic():`` at each
            call. See :mod:`drct.concurrency`.

    Inputs must be finite: NaN or ±Inf in ``x`` or ``y`` raise :class:`drct.NonFiniteError` (drct's one rule
    for non-finite values, :mod:`drct.errors`). Every call is safe from several threads at once, and estimates
    its memory first: a problem that cannot fit raises :class:`drct.MemoryBudgetError` instead of crashing.

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((64, 64))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 90, endpoint=False), 96), basis="linear")
        >>> x = np.ones(vg.shape, np.float32)
        >>> y = A(x)
        >>> y.shape, A.T(y).shape
        ((90, 96), (64, 64))
        >>> A(np.ones((8, 64, 64), np.float32)).shape  # a batch, one launch
        (8, 90, 96)
    """

    def __init__(
        self,
        vg: VolumeGeometry,
        pg: AnyGeometry,
        basis: str = "linear",
        dtype: Any = "float32",
        backend: str | None = None,
        chunk_rays: int = 1 << 20,
        batch: int | None = None,
        deterministic: bool | None = None,
    ) -> None:
        if not isinstance(vg, VolumeGeometry):
            raise TypeError(f"vg must be a drct.VolumeGeometry, got {type(vg).__name__}")
        if not isinstance(pg, (ProjectionGeometry, RayGeometry)):
            raise TypeError(
                f"pg must be a drct projection geometry (ct.parallel, ct.cone, ...), got {type(pg).__name__}"
            )
        if vg.ndim != pg.ndim:
            raise ValueError(f"the volume is {vg.ndim}D (shape {vg.shape}) but the geometry is {pg.ndim}D ({pg!r})")
        if not isinstance(basis, str) or basis not in BASES:
            raise ValueError(f"basis must be one of {tuple(BASES)}, got {basis!r}")
        self.vg = vg
        self.pg = pg
        self.basis = basis
        self.degree = basis_degree(basis)
        if batch is not None:
            if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
                raise ValueError(f"batch must be a positive integer (samples stacked in pg), got {batch!r}")
            if pg.num_views % batch:
                raise ValueError(
                    f"batch={batch} samples must split the geometry's {pg.num_views} views evenly "
                    "(pg holds each sample's views one after the other)"
                )
        self.batch = batch
        self.types: Types = types(canonical_dtype(dtype), backend or get_backend())
        if chunk_rays is True or chunk_rays is False or not isinstance(chunk_rays, int) or chunk_rays < 1:
            raise ValueError(f"chunk_rays must be a positive integer, got {chunk_rays!r}")
        if deterministic is not None and not isinstance(deterministic, bool):
            raise TypeError(f"deterministic must be True, False or None, got {deterministic!r}")
        self._engine = Transform(vg, pg, self.degree, self.types, chunk_rays, stacked=batch or 1)
        self._engine.deterministic = deterministic
        self._check_size(batch or 1)

    def _check_size(self, batch: int) -> None:
        size, rays = self._engine.grid.size * batch, self._engine.num_rays(batch)
        if size >= 2**31 or rays >= 2**32:
            raise ValueError(
                f"problem too large for one launch: {size} coefficients (limit 2**31) and {rays} rays "
                "(limit 2**32); split the volume into slabs, the views or the batch into chunks"
            )

    def memory_estimate(self, batch: int = 1, adjoint: bool = False, gradient: bool = False) -> int:
        """Bytes one call allocates besides its input: the output (twice when it is assembled from several
        chunks, once more for the numpy copy returned), the per-thread copies of a CPU scatter target, the
        per-ray state of one chunk of a derivative pass (about 0.5 kB per ray), and the padded copies of the
        volume that the marches read and write (:mod:`drct.kernels.padding`; two for a derivative pass), with
        the 2D box forward's pair copy (:func:`drct.kernels.box.pairs`)."""
        engine, item = self._engine, self.types.itemsize
        volume, rays = engine.grid.size * batch * item, engine.num_rays(batch) * item
        chunks = len(engine.chunks(batch, linear=True))
        if adjoint:
            need = 2 * volume + min(volume * max(dr.thread_count(), 1), 32 * 2**20)
        else:
            need = rays * (3 if chunks > 1 else 2)
        if gradient:
            need += min(engine.chunk_rays, engine.num_rays(batch)) * 512 + volume + rays
        need += 0 if adjoint else engine.pair_bytes(batch)
        return need + engine.scratch_bytes(batch, item, 2 if gradient else 1)

    def _check_memory(self, batch: int, adjoint: bool) -> None:
        if self.backend != "llvm":  # device memory: Dr.Jit raises its own error on CUDA
            return
        what = f"{'A.T' if adjoint else 'A'} of {self!r} over {batch} sample(s)"
        require_memory(self.memory_estimate(batch, adjoint), what)

    @property
    def leading_batch(self) -> bool:
        """``A`` and ``A.T`` take any leading batch dimensions, except with per-sample geometries (``batch=``)."""
        return self.batch is None

    @property
    def domain_shape(self) -> tuple[int, ...]:
        """Shape of ``x``: the volume shape (``(batch, *vg.shape)`` with per-sample geometries)."""
        return self.vg.shape if self.batch is None else (self.batch, *self.vg.shape)

    @property
    def range_shape(self) -> tuple[int, ...]:
        """Shape of ``A x``: the sinogram shape (``(batch, views per sample, *det)`` with per-sample geometries)."""
        if self.batch is None:
            return self.pg.shape
        return (self.batch, self.pg.num_views // self.batch, *self.pg.shape[1:])

    @property
    def shape(self) -> tuple[int, int]:
        """``(number of rays, number of coefficients)``: the shape of ``A`` as a matrix."""
        return (self.pg.num_rays, self.vg.size * (self.batch or 1))

    def select_views(self, views: Any) -> Projector:
        """The same operator on the views ``views`` of its geometry (e.g. one ordered subset of OS-SART/OSEM)."""
        pg = self.pg.select_views(views)  # type: ignore[union-attr]
        return Projector(self.vg, pg, self.basis, self.dtype, self.backend, deterministic=self._engine.deterministic)

    @property
    def T(self) -> Adjoint[Projector]:
        """The adjoint (transpose) operator: ``A.T(y)``."""
        return Adjoint(self)

    def _batch(self, shape: tuple[int, ...], core: tuple[int, ...], name: str) -> tuple[tuple[int, ...], int]:
        """Leading dimensions of ``shape`` before ``core`` and the number of samples they hold."""
        got = tuple(int(n) for n in shape)
        if self.batch is not None:
            if got != core:
                raise ValueError(f"{name} must have shape {core} (batch={self.batch} per-sample geometries), got {got}")
            return (), self.batch
        if got[len(got) - len(core) :] != core:
            raise ValueError(f"{name} must have shape (..., {', '.join(map(str, core))}), got {got}")
        lead = got[: len(got) - len(core)]
        count = 1
        for n in lead:
            count *= n
        if count < 1:
            raise ValueError(f"{name} has an empty batch dimension: shape {got}")
        self._check_size(count)
        return lead, count

    def forward_tensor(self, x: Any) -> Any:
        """``A x`` for a Dr.Jit tensor ``x`` of the operator's type and shape ``(*batch, *vg.shape)``; returns a
        tensor of shape ``(*batch, *pg.shape)`` (one launch for the whole batch).

        Differentiable: gradients reach ``x`` and any geometry vector that is a Dr.Jit array with gradients
        enabled (see :meth:`drct.ProjectionGeometry.with_drjit_vectors` and :meth:`~drct.ProjectionGeometry.perturb`).
        """
        lead, count = self._batch(x.shape, self.domain_shape, "x (volume)")
        require_finite_tensor(x, "x (volume)")
        self._check_memory(count, adjoint=False)
        out = self.types.Tensor(apply(ForwardOp, self._engine, x.array, count), (*lead, *self.range_shape))
        dr.eval(out)
        return out

    def adjoint_tensor(self, y: Any) -> Any:
        """``A.T y`` for a Dr.Jit tensor ``y`` of the operator's type and shape ``(*batch, *pg.shape)``; returns a
        tensor of shape ``(*batch, *vg.shape)``.

        Differentiable w.r.t. ``y`` (both modes) and the geometry vectors (reverse mode).
        """
        lead, count = self._batch(y.shape, self.range_shape, "y (projections)")
        require_finite_tensor(y, "y (projections)")
        self._check_memory(count, adjoint=True)
        out = self.types.Tensor(apply(AdjointOp, self._engine, y.array, count), (*lead, *self.domain_shape))
        dr.eval(out)
        return out

    def geometry_jvps(self, x: Any, geometries: Sequence[AnyGeometry]) -> list[Any]:
        """Forward-mode derivatives of ``A x`` along several geometry tangents at once, from one derivative march
        (instead of one per tangent, as ``dr.forward_to`` through :meth:`forward_tensor` needs).

        Each entry of ``geometries`` is this projector's geometry (same values) whose Dr.Jit vectors carry a
        forward-mode tangent, e.g. ``pg.perturb(det_shift_u=s)`` with ``s`` a ``Float64`` that has
        ``dr.enable_grad(s)`` and ``dr.set_grad(s, 1.0)``.

        Args:
            x: the volume, a Dr.Jit tensor of the operator's type and shape :attr:`domain_shape`.
            geometries: the geometries carrying the tangents.

        Returns:
            One Dr.Jit tensor of shape :attr:`range_shape` per geometry: ``d(A x)`` along its tangent.

        Example:
            >>> import numpy as np, drjit as dr, drct as ct
            >>> from drjit.llvm.ad import Float64, TensorXf
            >>> vg = ct.VolumeGeometry((32, 32))
            >>> pg = ct.fan(np.linspace(0, np.pi, 20), 48, 1.0, 100.0, 200.0)
            >>> A, x = ct.Projector(vg, pg, basis="bspline2"), TensorXf(ct.phantoms.shepp_logan(vg))
            >>> tangents = []
            >>> for name in ("det_shift_u", "cor_offset"):
            ...     s = Float64(0.0)
            ...     dr.enable_grad(s)
            ...     dr.set_grad(s, 1.0)
            ...     tangents.append(pg.perturb(**{name: s}))
            >>> d_shift, d_cor = A.geometry_jvps(x, tangents)
            >>> h = 1e-3  # against a central difference
            >>> fd = (A(x.numpy()) - ct.Projector(vg, pg.perturb(det_shift_u=-h), basis="bspline2")(x.numpy()))
            >>> fd2 = ct.Projector(vg, pg.perturb(det_shift_u=h), basis="bspline2")(x.numpy()) - A(x.numpy())
            >>> bool(np.allclose(d_shift.numpy(), (fd + fd2) / (2 * h), atol=2e-2))
            True
        """
        if self.batch is not None:
            raise NotImplementedError("geometry_jvps does not take per-sample geometries (batch=...) yet")
        if tuple(x.shape) != self.domain_shape:
            raise ValueError(f"geometry_jvps takes one volume of shape {self.domain_shape}, got {tuple(x.shape)}")
        require_finite_tensor(x, "x (volume)")
        tangent_sets = [geometry_tangents(g, self._engine.t, self.pg) for g in geometries]
        flat = self._engine.geometry_jvps(dr.detach(x.array), self._engine.vectors(), tangent_sets)
        return [self.types.Tensor(f, self.range_shape) for f in flat]

    def __repr__(self) -> str:
        return (
            f"Projector(vg shape={self.vg.shape}, {self.pg!r}, basis={self.basis!r}, dtype={self.dtype!r}, "
            f"backend={self.backend!r}{'' if self.batch is None else f', batch={self.batch}'})"
        )
