"""The autograd bridge of :mod:`drct.torch`: ``A x`` and ``A.T y`` as a ``torch.autograd.Function``."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import drjit as dr
import torch

from ..autodiff import from_torch, jvp, sync_in, sync_out, vjp
from ..backend import drjit_module
from ..kept import KeptForward, keeping_partials, supplying_partials
from ..projector import Projector
from ._geometry import operator

KEPT = "_drct_kept_partials"  # the forward's kept derivatives ride on its output until setup_context takes them


# ---- the bridge -----------------------------------------------------------------------------------------------
class Spec:
    """What one call computes: ``A`` or ``A.T``, with which geometry parameters laid out how; ``keep``: the
    forward keeps its rays' derivatives for the geometry gradient that will follow (:func:`keeps`)."""

    def __init__(
        self, A: Projector, adjoint: bool, names: list[tuple[str, int]], samples: int | None, keep: bool = False
    ) -> None:
        self.A, self.adjoint, self.names, self.samples, self.keep = A, adjoint, names, samples, keep
        self.backend = A.backend

    def transposed(self) -> Spec:
        return Spec(self.A, not self.adjoint, self.names, self.samples)

    def plain(self) -> Spec:
        """The same operator, keeping nothing."""
        return Spec(self.A, self.adjoint, self.names, self.samples)

    def to_drjit(self, value: torch.Tensor) -> Any:
        """A torch tensor as a Dr.Jit tensor sharing its memory (:func:`drct.autodiff.from_torch`)."""
        return from_torch(value, self.backend)

    def inputs(self, data: torch.Tensor, comps: Sequence[torch.Tensor]) -> list[Any]:
        """The Dr.Jit inputs of :meth:`apply`: the data tensor, then the flat geometry components as Float64
        arrays."""
        mod = drjit_module(self.backend)
        return [self.to_drjit(data), *[mod.Float64(self.to_drjit(c).array) for c in comps]]

    def apply(self, values: Any, *leaves: Any) -> Any:
        """The operator on the Dr.Jit tensor ``values`` with the geometry components ``leaves``."""
        it = iter(leaves)
        params = {name: [next(it) for _ in range(width)] for name, width in self.names}
        op = operator(self.A, params, self.samples)
        return op.adjoint_tensor(values) if self.adjoint else op.forward_tensor(values)


# what torch.compile shows for a drct call: the Dr.Jit kernels run between compiled graphs (a graph break)
COMPILE_NOTE = (
    "drct's Dr.Jit kernels run outside torch.compile's graphs here (a graph break: fan/cone ct.torch.FBP, or a "
    "drct call inside a torch.func transform), so torch.compile(..., fullgraph=True) cannot include this call; "
    "compile without fullgraph=True"
)


TWIN_NOTE = (
    "a drct.torch module builds its projector for a new dtype or device on first use, outside torch.compile's "
    "graphs; call the module once on such an input before torch.compile(..., fullgraph=True)"
)


def outside_compile(fn: Any, reason: str = COMPILE_NOTE) -> Any:
    """``fn`` run between torch.compile's graphs (a graph break), with ``reason`` shown where this torch takes one
    (``reason=`` is recent; drct allows torch >= 2.0)."""
    disable = getattr(getattr(torch, "compiler", None), "disable", None)
    if disable is None:  # pragma: no cover - torch 2.0
        return torch._dynamo.disable(fn)
    try:
        return disable(fn, reason=reason)
    except TypeError:  # pragma: no cover - a torch without reason=
        return disable(fn)


GEOMETRY_SECOND_ORDER = (
    "drct.torch: second derivatives through geometry parameters are not supported (create_graph=True, "
    "torch.func.hessian of geometry tensors); first derivatives (backward, grad, jacrev, jacfwd, forward_ad) are"
)


def _slices(apply: Any, batch_size: int, in_dims: Sequence[int | None], *args: Any) -> list[Any]:
    """``apply`` on each slice of the axis ``torch.func.vmap`` maps (``in_dims``: that axis of each argument)."""
    return [
        apply(*[a if d is None else a.select(d, i) for a, d in zip(args, in_dims, strict=True)])
        for i in range(batch_size)
    ]


def keeps(adjoint: bool, comps: Sequence[torch.Tensor]) -> bool:
    """Whether an eager ``A x`` should keep its rays' derivatives (:func:`drct.kept.keeping_partials`, where
    the operator allows it) for the reverse-mode geometry gradient: torch records a graph and some geometry
    component requires a gradient (not under a ``torch.func`` transform, whose slices re-run instead). The
    gradient then costs ``A.T`` and products instead of a second march of the volume."""
    if adjoint or not torch.is_grad_enabled() or torch._C._are_functorch_transforms_active():
        return False
    return any(c.requires_grad for c in comps)


class _Transform(torch.autograd.Function):
    """``A x`` or ``A.T y`` with gradients to the data and to flat geometry components.

    The gradient of the data alone is the transposed operator, itself a :class:`_Transform` (so it can be
    differentiated again), and so is the forward-mode tangent of the data; geometry gradients and tangents re-run
    the operator under Dr.Jit's AD (:func:`drct.autodiff.vjp`, :func:`drct.autodiff.jvp`), a fresh graph at each
    call. A forward with ``spec.keep`` keeps its rays' derivatives (torch tensors saved for backward, so torch
    frees them after it and checkpointing sees them; no AD graph), and the geometry gradient's re-run takes them
    instead of marching the volume again. ``torch.func``: :meth:`vmap` maps the data over the leading batch axes
    of one launch (or, with per-sample or mapped geometry, one launch per slice); ``grad``/``vjp``/``jacrev`` use
    :meth:`backward`, ``jvp``/``jacfwd`` :meth:`jvp`.
    """

    @staticmethod
    def forward(spec: Spec, data: torch.Tensor, *comps: torch.Tensor) -> torch.Tensor:
        sync_in(spec.backend, data.device)
        with dr.suspend_grad(), keeping_partials() if spec.keep else nullcontext([]) as kept:
            out = spec.apply(*spec.inputs(data, comps))
            dr.eval(out)
        sync_out(spec.backend)
        result = out.torch()
        if kept:
            setattr(result, KEPT, kept)
        return result

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        spec, data, *comps = inputs
        ctx.spec = spec
        kept: list[KeptForward] | None = getattr(output, KEPT, None) if spec.keep else None  # never under dynamo
        ctx.kept_layout, arrays = None, []
        if kept is not None:
            delattr(output, KEPT)
            records = [k.arrays() for k in kept]
            ctx.kept_layout = [(len(k.partials), k.batch, len(r)) for k, r in zip(kept, records, strict=True)]
            arrays = [a.torch() for r in records for a in r]  # shares the memory (DLPack)
        ctx.save_for_backward(data, *comps, *arrays)
        ctx.save_for_forward(data, *comps)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> Any:
        spec: Spec = ctx.spec
        need = ctx.needs_input_grad
        data, *rest = ctx.saved_tensors
        comps, arrays = rest[: len(need) - 2], rest[len(need) - 2 :]
        grad_data = _Transform.apply(spec.transposed(), grad_out, *comps) if need[1] else None
        if not any(need[2:]):
            return None, grad_data, *[None] * len(comps)
        grad_comps = _GeometryGradient.apply(
            spec, tuple(need[2:]), _kept(spec, ctx.kept_layout, arrays), data, grad_out, *comps
        )
        it = iter(grad_comps)
        return None, grad_data, *[next(it) if wanted else None for wanted in need[2:]]

    @staticmethod
    def jvp(ctx: Any, _spec: Any, data_t: torch.Tensor | None, *comps_t: torch.Tensor | None) -> torch.Tensor:
        """Forward mode (``torch.autograd.forward_ad``, ``torch.func.jvp``): the data part is the operator
        itself; geometry tangents use drct's forward-mode derivative (``A`` only: ``A.T`` has none)."""
        spec: Spec = ctx.spec
        data, *comps = ctx.saved_tensors
        out = None if data_t is None else _Transform.apply(spec.plain(), data_t, *comps)
        if all(c is None for c in comps_t):
            assert out is not None  # torch asks for a JVP only when some input has a tangent
            return out
        geometry = _GeometryTangent.apply(spec, len(comps), data, *comps, *comps_t)
        return geometry if out is None else out + geometry

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], spec: Spec, data: torch.Tensor, *comps: torch.Tensor) -> Any:
        data_dim, *comp_dims = in_dims[1:]
        if data_dim is not None and spec.samples is None and all(d is None for d in comp_dims):
            return _Transform.apply(spec, data.movedim(data_dim, 0), *comps), 0  # extra leading axes: one launch
        outs = _slices(lambda *a: _Transform.apply(spec, *a), info.batch_size, in_dims[1:], data, *comps)
        return torch.stack(outs), 0


def _kept(
    spec: Spec, layout: list[tuple[int, int, int]] | None, arrays: Sequence[torch.Tensor]
) -> list[KeptForward] | None:
    """The forward's kept records, rebuilt from the tensors saved for backward (None if it kept nothing);
    ``layout``: per record its chunks, batch and number of arrays."""
    if layout is None:
        return None
    it = iter(arrays)
    return [
        KeptForward.rebuilt([spec.to_drjit(next(it)).array for _ in range(count)], chunks, batch)
        for chunks, batch, count in layout
    ]


class _FirstOrder(torch.autograd.Function):
    """A geometry derivative computed by Dr.Jit's AD: exact, not differentiable again (both modes raise)."""

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        raise RuntimeError(GEOMETRY_SECOND_ORDER)

    @staticmethod
    def jvp(ctx: Any, *tangents: Any) -> Any:
        raise RuntimeError(GEOMETRY_SECOND_ORDER)


class _GeometryTangent(_FirstOrder):
    """The derivative of ``A(data; comps)`` along the geometry tangents ``comps_t`` (None: that component fixed),
    by Dr.Jit's forward mode; not differentiable again (raises)."""

    @staticmethod
    def forward(spec: Spec, count: int, data: torch.Tensor, *rest: Any) -> torch.Tensor:
        comps, comps_t = rest[:count], rest[count:]  # the geometry components, then their tangents or None
        sync_in(spec.backend, data.device)
        inputs = spec.inputs(data, comps)
        tangents = [None] + [
            None if c is None else type(x)(spec.to_drjit(c).array) for x, c in zip(inputs[1:], comps_t, strict=True)
        ]
        out = jvp(spec.apply, inputs, tangents)
        sync_out(spec.backend)
        return out.torch()

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None, ...], spec: Spec, count: int, *args: Any) -> Any:
        outs = _slices(lambda *a: _GeometryTangent.apply(spec, count, *a), info.batch_size, in_dims[2:], *args)
        return torch.stack(outs), 0


class _GeometryGradient(_FirstOrder):
    """The gradients of ``<grad_out, A(data; comps)>`` w.r.t. the ``wanted`` geometry components, by Dr.Jit's
    reverse mode; differentiating them again raises (their own derivative is not implemented), so they are exact
    first derivatives under ``create_graph=True`` and ``torch.func.grad``/``jacrev`` alike. ``kept``: what the
    forward of the same ``A(data; comps)`` kept (or None: the re-run marches the volume)."""

    @staticmethod
    def forward(
        spec: Spec,
        wanted: tuple[bool, ...],
        kept: list[KeptForward] | None,
        data: torch.Tensor,
        grad_out: torch.Tensor,
        *comps: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        sync_in(spec.backend, grad_out.device)
        with supplying_partials(kept or []):
            grads = vjp(spec.apply, spec.inputs(data, comps), (False, *wanted), spec.to_drjit(grad_out))
        sync_out(spec.backend)
        return tuple(
            torch.as_tensor(g.torch(), dtype=c.dtype).reshape(c.shape)
            for g, c, w in zip(grads[1:], comps, wanted, strict=True)
            if w
        )

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple[int | None, ...], spec: Spec, wanted: tuple[bool, ...], kept: Any, *args: Any
    ) -> Any:
        per_slice = _slices(
            lambda *a: _GeometryGradient.apply(spec, wanted, None, *a), info.batch_size, in_dims[3:], *args
        )
        outs = tuple(torch.stack(grads) for grads in zip(*per_slice, strict=True))
        return outs, tuple(0 for _ in outs)
