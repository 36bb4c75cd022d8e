"""The autograd bridge of :mod:`drct.torch`: ``A x`` and ``A.T y`` as a ``torch.autograd.Function``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import drjit as dr
import torch

from ..backend import drjit_module
from ..projector import Projector
from ._geometry import GeometryTensors, check_projector, check_tensor, operator, split_batch


# ---- the bridge -----------------------------------------------------------------------------------------------
def _functorch_wrapped(value: torch.Tensor) -> bool:
    check = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
    return bool(check(value)) if check is not None else False


class Spec:
    """What one call computes: ``A`` or ``A.T``, with which geometry parameters laid out how."""

    def __init__(self, A: Projector, adjoint: bool, names: list[tuple[str, int]], samples: int | None) -> None:
        self.A, self.adjoint, self.names, self.samples = A, adjoint, names, samples
        self.backend = dr.JitBackend.CUDA if A.backend == "cuda" else dr.JitBackend.LLVM
        self.mod = drjit_module(A.backend)

    def transposed(self) -> Spec:
        return Spec(self.A, not self.adjoint, self.names, self.samples)

    def to_drjit(self, value: torch.Tensor) -> Any:
        """A torch tensor as a Dr.Jit tensor sharing its memory (DLPack; contiguous first)."""
        if _functorch_wrapped(value):
            raise RuntimeError(
                "drct.torch operators do not support torch.func transforms (vmap, jvp, grad, jacrev, ...); use "
                "torch.autograd (backward, torch.autograd.grad, torch.autograd.forward_ad) and batch dimensions"
            )
        tensor = self.mod.TensorXf if value.dtype == torch.float32 else self.mod.TensorXf64
        return tensor(value.detach().contiguous())

    def parameters(self, comps: tuple[torch.Tensor, ...], grad: bool) -> tuple[dict[str, list[Any]], list[Any]]:
        """The flat geometry components as Dr.Jit Float64 arrays (gradient-enabled leaves when ``grad``)."""
        leaves = [self.mod.Float64(self.to_drjit(c).array) for c in comps]
        if grad:
            dr.enable_grad(leaves)
        params: dict[str, list[Any]] = {}
        it = iter(leaves)
        for name, width in self.names:
            params[name] = [next(it) for _ in range(width)]
        return params, leaves

    def run(
        self, data: torch.Tensor, comps: tuple[torch.Tensor, ...], geometry_grad: bool = False, data_grad: bool = False
    ) -> tuple[Any, list[Any], Any]:
        """The operator on ``data`` with geometry components ``comps`` (inside ``dr.isolate_grad()`` when a
        gradient is enabled): the Dr.Jit output, the geometry leaves and the Dr.Jit input."""
        params, leaves = self.parameters(comps, grad=geometry_grad)
        values = self.to_drjit(data)
        if data_grad:
            dr.enable_grad(values)
        op = operator(self.A, params, self.samples)
        return (op.adjoint_tensor(values) if self.adjoint else op.forward_tensor(values)), leaves, values

    def sync_in(self, device: torch.device) -> None:
        """Before Dr.Jit reads torch memory: on CUDA, finish torch's pending work on it."""
        dr.detail.new_scope(self.backend)
        if device.type == "cuda":
            torch.cuda.current_stream(device).synchronize()

    def sync_out(self) -> None:
        """Before torch reads Dr.Jit memory: finish Dr.Jit's launches (asynchronous on both backends)."""
        dr.sync_thread()
        dr.detail.new_scope(self.backend)


class _Transform(torch.autograd.Function):
    """``A x`` or ``A.T y`` with gradients to the data and to flat geometry components.

    Not ``drjit.wrap``: its backward consumes the Dr.Jit graph, so a second backward through the same output
    (``retain_graph=True``, ``torch.autograd.gradcheck``) silently returns stale gradients. Here the gradient
    of the data is the transposed operator, itself a :class:`_Transform` (so it can be differentiated again),
    and geometry gradients rebuild a fresh Dr.Jit graph at each backward.
    """

    @staticmethod
    def forward(spec: Spec, data: torch.Tensor, *comps: torch.Tensor) -> torch.Tensor:
        spec.sync_in(data.device)
        out, _, _ = spec.run(data, comps)
        spec.sync_out()
        return out.torch()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        spec, data, *comps = inputs
        ctx.spec = spec
        ctx.save_for_backward(data, *comps)
        ctx.save_for_forward(data, *comps)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> Any:
        spec: Spec = ctx.spec
        data, *comps = ctx.saved_tensors
        need_data = ctx.needs_input_grad[1]
        need_geometry = any(ctx.needs_input_grad[2:])
        none_for_geometry = [None] * len(comps)
        if not need_geometry:
            grad_data = _Transform.apply(spec.transposed(), grad_out, *comps) if need_data else None
            return None, grad_data, *none_for_geometry
        if torch.is_grad_enabled():
            raise RuntimeError(
                "drct.torch: second derivatives through geometry parameters are not supported "
                "(create_graph=True with geometry tensors that require grad)"
            )
        spec.sync_in(grad_out.device)
        with dr.isolate_grad():
            out, leaves, values = spec.run(data, tuple(comps), geometry_grad=True, data_grad=need_data)
            dr.set_grad(out, spec.to_drjit(grad_out))
            dr.enqueue(dr.ADMode.Backward, out)
            dr.traverse(dr.ADMode.Backward)
            grads = [dr.grad(leaf) for leaf in leaves]
            grad_values = dr.grad(values) if need_data else None
            dr.eval(grads, grad_values)
        spec.sync_out()
        grad_comps = [
            torch.as_tensor(g.torch(), dtype=c.dtype).reshape(c.shape) if ctx.needs_input_grad[2 + i] else None
            for i, (g, c) in enumerate(zip(grads, comps, strict=True))
        ]
        grad_data = None if grad_values is None else grad_values.torch().reshape(data.shape)
        return None, grad_data, *grad_comps

    @staticmethod
    def jvp(ctx: Any, _spec: Any, data_t: torch.Tensor | None, *comps_t: torch.Tensor | None) -> torch.Tensor:
        """Forward mode (``torch.autograd.forward_ad``): the data part is the operator itself; geometry
        tangents use drct's forward-mode derivative (``A`` only: ``A.T`` has none)."""
        spec: Spec = ctx.spec
        data, *comps = ctx.saved_tensors
        spec.sync_in(data.device)
        with dr.isolate_grad():
            geometry = any(t is not None for t in comps_t)
            out, leaves, values = spec.run(data, tuple(comps), geometry_grad=geometry, data_grad=data_t is not None)
            for leaf, tangent in zip(leaves, comps_t, strict=True):
                if tangent is not None:
                    dr.set_grad(leaf, type(leaf)(spec.to_drjit(tangent).array))
            if data_t is not None:
                dr.set_grad(values, spec.to_drjit(data_t))
            dr.enqueue(dr.ADMode.Forward, [*leaves, values])
            dr.traverse(dr.ADMode.Forward)
            tangent_out = dr.grad(out)
            dr.eval(tangent_out)
        spec.sync_out()
        return tangent_out.torch().reshape(out.shape)


def _apply(adjoint: bool, data: Any, A: Any, geometry: Mapping[str, Any]) -> torch.Tensor:
    A = check_projector(A)
    name = "y (projections)" if adjoint else "x (volume)"
    data = check_tensor(data, name, A)
    core = tuple(A.range_shape if adjoint else A.domain_shape)
    out_core = tuple(A.domain_shape if adjoint else A.range_shape)
    if A.batch is not None and tuple(data.shape) != core:
        raise ValueError(
            f"{name} must have shape {core}: the projector stacks {A.batch} per-sample geometries, got "
            f"{tuple(data.shape)}"
        )
    batch = split_batch(data, name, core)
    geo = GeometryTensors(A, geometry, batch)
    if geo.samples is not None:  # per-sample geometry: one stacked geometry of N * V views, data as (N, *core)
        data = data.reshape(geo.samples, *core)
    names = [(k, len(v)) for k, v in geo.values.items()]
    comps = [c for v in geo.values.values() for c in v]
    out = _Transform.apply(Spec(A, adjoint, names, geo.samples), data, *comps)
    return out.reshape(*batch, *out_core)


def project(x: torch.Tensor, A: Projector, **geometry: Any) -> torch.Tensor:
    """``A x`` as a differentiable torch operation.

    Args:
        x: volume(s) of shape ``(*batch, *A.domain_shape)``, float32 or float64 like ``A``, on the CPU for the
            LLVM backend or on a CUDA device for the CUDA backend. Non-contiguous tensors and views are fine.
        A: the projector.
        **geometry: misalignment parameters of :meth:`drct.ProjectionGeometry.perturb` as numbers or torch
            tensors (``()``, ``(V,)``, ``(B,)``/``(B, 1)`` or ``(B, V)``, see the module docstring); gradients
            reach those with ``requires_grad``.

    Returns:
        The projections, ``(*batch, *A.range_shape)``, same dtype and device as ``x``.

    Example:
        >>> import numpy as np, torch, drct as ct
        >>> import drct.torch
        >>> vg = ct.VolumeGeometry((16, 16))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 8, endpoint=False), 24), backend="llvm")
        >>> ct.torch.project(torch.ones(2, 3, 16, 16), A).shape
        torch.Size([2, 3, 8, 24])
    """
    return _apply(False, x, A, geometry)


def backproject(y: torch.Tensor, A: Projector, **geometry: Any) -> torch.Tensor:
    """``A.T y`` (the exact adjoint) as a differentiable torch operation.

    Args:
        y: projections of shape ``(*batch, *A.range_shape)``, float32 or float64 like ``A``, on ``A``'s device.
        A: the projector.
        **geometry: misalignment parameters, as for :func:`project`.

    Returns:
        ``(*batch, *A.domain_shape)``, same dtype and device as ``y``.

    Example:
        >>> import numpy as np, torch, drct as ct
        >>> import drct.torch
        >>> vg = ct.VolumeGeometry((16, 16))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 8, endpoint=False), 24), backend="llvm")
        >>> ct.torch.backproject(torch.ones(5, 8, 24), A).shape
        torch.Size([5, 16, 16])
    """
    return _apply(True, y, A, geometry)
