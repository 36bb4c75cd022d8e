"""A drct projector as a ``deepinv.physics.LinearPhysics``: :class:`Tomography`."""

# pyright: reportMissingImports=false
# (deepinv is the optional ``learn`` extra: the type check runs with and without it)

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from deepinv.physics import LinearPhysics

from ..geometry.projection import ProjectionGeometry
from ..physics import Detector
from ..projector import Projector
from ..torch import FBP, Projection, backproject, project
from ..torch._geometry import NAMES, TORCH_DTYPES, check_projector, device_type
from ._noise import DetectorNoise


class Tomography(LinearPhysics):
    """deepinv's tomography physics with drct's exact projector and adjoint.

    ``physics.A(x)`` is :func:`drct.torch.project` and ``physics.A_adjoint(y)`` is :func:`drct.torch.backproject`
    (the exact transpose: deepinv's ``adjointness_test`` is at float rounding), for images ``x`` of shape
    ``(B, C, *A.domain_shape)`` — any leading dimensions, the whole batch in one launch — and measurements
    ``(B, C, *A.range_shape)``: drct's layout, views first. ``physics(x)`` adds the noise model.

    Geometry: misalignment parameters of :meth:`drct.ProjectionGeometry.perturb` (``det_shift_u``, ``det_roll``,
    ``cor_offset``, ``angle_offset``, ``motion_shift``, ``vectors``, ...; see :mod:`drct.torch` for their
    shapes: one value, one per view, one per sample ``(B,)``/``(B, 1)`` or per sample and view ``(B, V)``) are
    attributes of the physics. deepinv's ways all work: ``physics.update_parameters(det_shift_u=t)``,
    ``physics.update(...)`` and ``physics.A(x, det_shift_u=t)`` store ``t`` as given (gradients flow back to
    it through autograd), and ``learnable=True`` makes the ``geometry`` given here ``nn.Parameter`` s that an
    optimiser over ``physics.parameters()`` calibrates. Values stay until replaced.

    Args:
        A: a :class:`drct.Projector` of one geometry (for a geometry per sample, give per-sample parameters).
        geometry: initial misalignment parameters, name → value.
        learnable: make ``geometry`` trainable ``nn.Parameter`` s.
        normalize: divide ``A`` and ``A_adjoint`` by ``‖A‖₂`` (power method, seeded, at construction; as
            deepinv's ``Tomography(normalize=True)``), so that the operator has unit norm; :meth:`fbp` undoes it.
            The norm is that of the geometry at construction.
        detector: a :class:`drct.physics.Detector` for the noise model :class:`DetectorNoise` (line integrals
            → noisy, quantised readings → line integrals); or give any deepinv ``noise_model``.
        filter: the filter of :meth:`fbp` (``"ramp"``, ``"shepp-logan"``, ``"cosine"``, ``"hamming"``,
            ``"hann"``).
        **kwargs: passed to ``deepinv.physics.LinearPhysics`` (``noise_model``, ``sensor_model``, ``max_iter``,
            ``tol``, ``solver``).

    Example:
        >>> import numpy as np, torch, drct as ct
        >>> import drct.deepinv
        >>> vg = ct.VolumeGeometry((32, 32))
        >>> A = ct.Projector(vg, ct.fan(np.linspace(0, 2 * np.pi, 30, endpoint=False), 64, 1.0, 60.0, 120.0))
        >>> physics = ct.deepinv.Tomography(A, detector=ct.physics.Detector(i0=1e4, bits=16))
        >>> x = torch.zeros(2, 1, 32, 32); x[..., 8:24, 8:24] = 0.02
        >>> y = physics(x)  # noisy line integrals, (B, C, views, cols)
        >>> y.shape
        torch.Size([2, 1, 30, 64])
        >>> rec = physics.A_dagger(y, fbp=True)  # drct's FBP, in the units of x
        >>> round(float(rec[..., 12:20, 12:20].mean()), 2)
        0.02
    """

    operator_norm: torch.Tensor

    def __init__(
        self,
        A: Projector,
        geometry: Mapping[str, Any] | None = None,
        learnable: bool = False,
        normalize: bool = False,
        detector: Detector | None = None,
        filter: str = "ramp",
        **kwargs: Any,
    ) -> None:
        A = check_projector(A)
        if A.batch is not None:
            raise ValueError(
                f"Tomography needs a projector of one geometry; this one stacks batch={A.batch} per-sample "
                "geometries. Give per-sample misalignment parameters instead (shape (B,) or (B, V))"
            )
        if detector is not None:
            if "noise_model" in kwargs:
                raise ValueError("give detector= or noise_model=, not both")
            det_ndim = len(A.pg.shape) - 1 if isinstance(A.pg, ProjectionGeometry) else 1
            kwargs["noise_model"] = DetectorNoise(detector, det_ndim=min(det_ndim, 2))
        super().__init__(img_size=(1, *A.domain_shape), device=device_type(A), **kwargs)
        self.op = A
        self.projection = Projection(A, geometry, learnable)  # holds the geometry tensors (buffers or parameters)
        self.filter_name = filter
        self._fbp: FBP | None = None
        self.normalize = False
        self.register_buffer("operator_norm", torch.ones((), dtype=TORCH_DTYPES[A.dtype], device=device_type(A)))
        if normalize:
            x0 = torch.zeros((1, 1, *A.domain_shape), dtype=TORCH_DTYPES[A.dtype], device=device_type(A))
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                torch.manual_seed(0)
                norm = self.compute_norm(x0, squared=False, verbose=False)
            self.operator_norm = torch.as_tensor(norm, dtype=self.operator_norm.dtype).reshape(())
            self.normalize = True

    # ---- geometry -------------------------------------------------------------------------------------------
    @property
    def geometry(self) -> dict[str, Any]:
        """The misalignment parameters in use, name → tensor."""
        return self.projection.geometry({})

    def _accepts(self, name: str) -> bool:
        """Whether a keyword of ``A``/``A_adjoint``/``forward`` that is not geometry belongs to the noise model."""
        noise = self.noise_model
        return hasattr(noise, name) or name in inspect.signature(noise.forward).parameters

    def _split(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The geometry keywords of ``kwargs``; other keywords must be the noise model's (deepinv passes the
        keywords of ``physics(x, ...)`` to both), else a typo would be ignored silently."""
        unknown = sorted(k for k in kwargs if k not in NAMES and not self._accepts(k))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {unknown}: expected drct geometry parameters {list(NAMES)} or parameters of "
                f"the noise model {type(self.noise_model).__name__}"
            )
        return {k: v for k, v in kwargs.items() if k in NAMES}

    def update_parameters(self, **kwargs: Any) -> None:
        """Store the geometry tensors among ``kwargs`` (as given: gradients flow back to them); ``None`` values
        are ignored and other names go to deepinv's ``LinearPhysics.update_parameters``."""
        layer = self.projection
        rest = {}
        for name, value in kwargs.items():
            if name not in NAMES:
                rest[name] = value
                continue
            if value is None:
                continue
            if name in layer._parameters:
                raise ValueError(
                    f"{name} is a learnable nn.Parameter of this physics (learnable=True): train it with an "
                    f"optimiser, or set its value in place with physics.projection.{name}.data.copy_(value)"
                )
            if not isinstance(value, torch.Tensor):
                value = torch.as_tensor(value, dtype=TORCH_DTYPES[self.op.dtype], device=device_type(self.op))
            if name in layer._buffers:
                setattr(layer, name, value)
            else:
                layer.register_buffer(name, value)
                layer._geometry_names.append(name)
        super().update_parameters(**rest)

    # ---- the operator ---------------------------------------------------------------------------------------
    def A(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """``A x`` (divided by ``‖A‖`` with ``normalize``): ``(B, C, *A.domain_shape)`` → ``(B, C,
        *A.range_shape)``; geometry keywords update the stored parameters first."""
        self.update_parameters(**self._split(kwargs))
        y = project(x, self.op, **self.geometry)
        return y / self.operator_norm if self.normalize else y

    def A_adjoint(self, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The exact adjoint of :meth:`A`: ``(B, C, *A.range_shape)`` → ``(B, C, *A.domain_shape)``."""
        self.update_parameters(**self._split(kwargs))
        x = backproject(y, self.op, **self.geometry)
        return x / self.operator_norm if self.normalize else x

    def fbp(self, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Filtered backprojection (FDK in 3D) of the measurements, in the units of ``x``: :class:`drct.torch.FBP`
        (differentiable w.r.t. ``y``; geometry parameters in use are applied for 2D parallel beams and refused
        for other geometries, whose FBP here is the nominal one)."""
        geometry = self._split(kwargs)
        self.update_parameters(**geometry)
        if self._fbp is None:
            self._fbp = FBP(self.op, filter=self.filter_name)
        return self._fbp(y * self.operator_norm if self.normalize else y, **self.geometry)

    def A_dagger(self, y: torch.Tensor, fbp: bool = False, **kwargs: Any) -> torch.Tensor:
        """``fbp=True``: :meth:`fbp`; else deepinv's least-squares solution with this operator."""
        if fbp:
            return self.fbp(y, **kwargs)
        return super().A_dagger(y, **kwargs)

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}, filter={self.filter_name!r}"
