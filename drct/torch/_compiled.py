"""drct's transform as torch custom operators: the form ``torch.compile`` traces, ``fullgraph=True`` included.

Eager torch runs :class:`drct.torch._bridge._Transform` (an ``autograd.Function`` with forward mode and
``torch.func`` rules). Under ``torch.compile`` the same computation is the custom operator ``drct::transform``
(``torch.library.custom_op``) with a shape rule for tracing (``register_fake``) and its gradients
(``register_autograd``): the data's by the transposed operator, the geometry's by ``drct::geometry_vjp``, exact
first derivatives that refuse to be differentiated again. An operator takes tensors and numbers only, so the
projector and the layout of the geometry tensors (a :class:`~drct.torch._bridge.Spec`) are registered once per
process under an integer key (:func:`spec_key`, a constant of the traced graph). The registry keeps each
projector alive, so a key never comes to name another one (a small cost: the projectors a process compiled).

Example:
    >>> import numpy as np, torch, drct as ct
    >>> import drct.torch
    >>> A = ct.Projector(ct.VolumeGeometry((8, 8)), ct.parallel(np.linspace(0, np.pi, 6, endpoint=False), 11))
    >>> f = torch.compile(lambda x: ct.torch.project(x, A).sum(), backend="eager", fullgraph=True)
    >>> x = torch.ones(8, 8)
    >>> bool(torch.isclose(f(x), ct.torch.project(x, A).sum()))
    True
    >>> torch._dynamo.reset()  # drop the compiled code (it refers to this example's globals)
"""

from __future__ import annotations

from typing import Any

import torch

from ..projector import Projector
from ._bridge import GEOMETRY_SECOND_ORDER, Spec, _GeometryGradient, _Transform

_SPECS: list[Spec] = []  # key -> spec, for the process's lifetime (compiled graphs hold the keys)
_KEYS: dict[tuple[int, bool, tuple[tuple[str, int], ...], int | None], int] = {}


def register(spec: Spec) -> int:
    """The key of ``spec`` (registered on first use)."""
    key = (id(spec.A), spec.adjoint, tuple(spec.names), spec.samples)
    if key not in _KEYS:
        _SPECS.append(spec)
        _KEYS[key] = len(_SPECS) - 1
    return _KEYS[key]


@torch._dynamo.assume_constant_result
def spec_key(A: Projector, adjoint: bool, names: tuple[tuple[str, int], ...], samples: int | None) -> int:
    """:func:`register` for dynamo: run while tracing, its result a constant of the graph."""
    return register(Spec(A, adjoint, list(names), samples))


@torch.library.custom_op("drct::transform", mutates_args=())
def transform(data: torch.Tensor, comps: list[torch.Tensor], key: int) -> torch.Tensor:
    """``A x`` or ``A.T y`` of the registered spec ``key`` with the flat geometry components ``comps``."""
    return _Transform.forward(_SPECS[key], data, *comps)


@transform.register_fake
def _(data: torch.Tensor, comps: list[torch.Tensor], key: int) -> torch.Tensor:
    A, adjoint = _SPECS[key].A, _SPECS[key].adjoint
    core, out = (A.range_shape, A.domain_shape) if adjoint else (A.domain_shape, A.range_shape)
    return data.new_empty((*data.shape[: data.ndim - len(core)], *out))


@torch.library.custom_op("drct::geometry_vjp", mutates_args=())
def geometry_vjp(
    data: torch.Tensor, grad_out: torch.Tensor, comps: list[torch.Tensor], key: int, wanted: list[bool]
) -> list[torch.Tensor]:
    """The gradients w.r.t. the ``wanted`` geometry components (:class:`~drct.torch._bridge._GeometryGradient`)."""
    return list(_GeometryGradient.forward(_SPECS[key], tuple(wanted), None, data, grad_out, *comps))


@geometry_vjp.register_fake
def _(
    data: torch.Tensor, grad_out: torch.Tensor, comps: list[torch.Tensor], key: int, wanted: list[bool]
) -> list[torch.Tensor]:
    return [c.new_empty(c.shape) for c, w in zip(comps, wanted, strict=True) if w]


def _setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    data, comps, key = inputs
    ctx.key, ctx.wanted = key, [c.requires_grad for c in comps]
    ctx.save_for_backward(data, *comps)


def _backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
    data, *comps = ctx.saved_tensors
    spec = _SPECS[ctx.key]
    grad_data = transform(grad, comps, register(spec.transposed())) if ctx.needs_input_grad[0] else None
    grads = iter(geometry_vjp(data, grad, comps, ctx.key, ctx.wanted) if any(ctx.wanted) else [])
    return grad_data, [next(grads) if w else None for w in ctx.wanted], None


def _refuse(ctx: Any, *grads: Any) -> Any:
    raise RuntimeError(GEOMETRY_SECOND_ORDER)


def _no_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    pass


transform.register_autograd(_backward, setup_context=_setup)
geometry_vjp.register_autograd(_refuse, setup_context=_no_context)


def apply(A: Projector, adjoint: bool, names: list[tuple[str, int]], samples: int | None, data: Any, comps: Any) -> Any:
    """The compiled form of ``_Transform.apply(Spec(A, adjoint, names, samples), data, *comps)``."""
    return transform(data, list(comps), spec_key(A, adjoint, tuple(names), samples))
