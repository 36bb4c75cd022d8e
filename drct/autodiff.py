"""Dr.Jit code under torch autograd, in one place: tensors across, Dr.Jit's AD re-run per derivative.

drct runs a Dr.Jit function ``fn`` (Dr.Jit tensors/arrays in, a Dr.Jit tensor out) for torch in three places:
the projector (:mod:`drct.torch`), the FBP layer and the solvers' torch path (:mod:`drct.recon`). All do it the
same way, written here once:

* the forward pass runs ``fn`` without an AD graph (no Dr.Jit AD state held between forward and backward; the
  projector's forward may keep its rays' derivatives as plain arrays for the geometry gradient:
  :func:`drct.kept.keeping_partials`);
* each derivative runs ``fn`` again in an isolated AD scope, with gradients enabled on the inputs that need
  them, and propagates the seed through it (:func:`vjp` reverse, :func:`jvp` forward), so a second backward
  through the same output (``retain_graph=True``, ``torch.autograd.gradcheck``) is as right as the first —
  unlike ``drjit.wrap``, whose backward consumes the Dr.Jit graph;
* the re-run and its traversal hold drct's launch lock (:func:`drct.concurrency.exclusive`): Dr.Jit 1.5's
  AD traversal is not safe in several threads at once;
* tensors cross by DLPack (:func:`from_torch`), with torch's CUDA stream and Dr.Jit's launches synchronised
  around each crossing (:func:`sync_in`, :func:`sync_out`).

This module sits at the bottom of drct (it imports only the backend) and imports torch only when a torch
tensor reaches it, so :mod:`drct.recon` can use it without importing :mod:`drct.torch`.

Example:
    >>> import drjit as dr, torch
    >>> from drct.autodiff import torch_apply
    >>> x = torch.tensor([1.0, 2.0], requires_grad=True)
    >>> y = torch_apply(lambda v: v * v * 3.0, "llvm", x)  # any Dr.Jit function of Dr.Jit tensors
    >>> y.sum().backward()
    >>> x.grad.tolist()
    [6.0, 12.0]
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import drjit as dr

from .backend import drjit_module
from .concurrency import exclusive

DrJitFunction = Callable[..., Any]  # Dr.Jit values (None passes through) -> one Dr.Jit tensor


def functorch_wrapped(value: Any) -> bool:
    """Whether ``value`` is a tensor wrapped by a ``torch.func`` transform (it has no memory DLPack can share)."""
    import torch

    check = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
    return bool(check(value)) if check is not None else False


def from_torch(value: Any, backend: str) -> Any:
    """A torch tensor as a Dr.Jit tensor of ``backend`` sharing its memory (DLPack; made contiguous first), of
    the same dtype (float32 or float64). Raises for ``torch.func`` transforms, other dtypes and a device that
    is not the backend's."""
    if functorch_wrapped(value):
        raise RuntimeError(
            "a tensor wrapped by a torch.func transform reached Dr.Jit: this drct call has no torch.func rule ("
            "ct.torch.project/backproject and the modules built on them have); use torch.autograd here"
        )
    device = value.device.type
    if (device == "cuda") != (backend == "cuda"):
        raise ValueError(
            f"a tensor on torch device {device!r} cannot run on Dr.Jit's {backend!r} backend; move the tensor or "
            f"use ct.set_backend({'cuda' if device == 'cuda' else 'llvm'!r})"
        )
    mod = drjit_module(backend)
    tensor = {"torch.float32": mod.TensorXf, "torch.float64": mod.TensorXf64}.get(str(value.dtype))
    if tensor is None:
        raise TypeError(f"expected a float32 or float64 tensor, got {value.dtype}")
    return tensor(value.detach().contiguous())


def _jit_backend(backend: str) -> Any:
    return dr.JitBackend.CUDA if backend == "cuda" else dr.JitBackend.LLVM


def sync_in(backend: str, device: Any) -> None:
    """Before Dr.Jit reads torch memory: on CUDA, finish torch's pending work on it."""
    dr.detail.new_scope(_jit_backend(backend))
    if device.type == "cuda":
        import torch

        torch.cuda.current_stream(device).synchronize()


def sync_out(backend: str) -> None:
    """Before torch reads Dr.Jit memory: finish Dr.Jit's launches (asynchronous on both backends)."""
    dr.sync_thread()
    dr.detail.new_scope(_jit_backend(backend))


def vjp(fn: DrJitFunction, inputs: Sequence[Any], wanted: Sequence[bool], seed: Any) -> list[Any]:
    """Reverse mode: ``fn(*inputs)`` re-run in an isolated AD scope with gradients on the ``wanted`` inputs,
    ``seed`` propagated back; the gradients of the wanted inputs (evaluated; None for the others)."""
    with exclusive(), dr.isolate_grad(), dr.resume_grad():
        enabled = [w and x is not None for x, w in zip(inputs, wanted, strict=True)]
        for x, on in zip(inputs, enabled, strict=True):
            if on:
                dr.enable_grad(x)
        out = fn(*inputs)
        dr.set_grad(out, seed)
        dr.enqueue(dr.ADMode.Backward, out)
        dr.traverse(dr.ADMode.Backward)
        grads = [dr.grad(x) if on else None for x, on in zip(inputs, enabled, strict=True)]
        dr.eval(grads)
    return grads


def jvp(fn: DrJitFunction, inputs: Sequence[Any], tangents: Sequence[Any]) -> Any:
    """Forward mode: the derivative of ``fn(*inputs)`` along ``tangents`` (None: no change of that input),
    evaluated."""
    with exclusive(), dr.isolate_grad(), dr.resume_grad():
        moving = [(x, tangent) for x, tangent in zip(inputs, tangents, strict=True) if tangent is not None]
        for x, _ in moving:
            dr.enable_grad(x)
        out = fn(*inputs)
        for x, tangent in moving:
            dr.set_grad(x, tangent)
        dr.enqueue(dr.ADMode.Forward, [x for x, _ in moving])
        dr.traverse(dr.ADMode.Forward)
        tangent_out = dr.grad(out)
        dr.eval(tangent_out)
    return tangent_out


@functools.cache
def _function() -> Any:
    """The ``torch.autograd.Function`` of :func:`torch_apply` (created on first use: torch is imported lazily)."""
    import torch

    class DrJitFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, fn: DrJitFunction, backend: str, *args: Any) -> Any:
            ctx.fn, ctx.backend = fn, backend
            ctx.present = [a is not None for a in args]
            ctx.save_for_backward(*[a for a in args if a is not None])
            inputs = [None if a is None else from_torch(a, backend) for a in args]  # checks dtypes and devices
            sync_in(backend, next(a.device for a in args if a is not None))
            with dr.suspend_grad():
                out = fn(*inputs)
                dr.eval(out)
            sync_out(backend)
            return out.torch().clone()

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx: Any, grad_out: Any) -> Any:
            saved = iter(ctx.saved_tensors)
            args = [next(saved) if present else None for present in ctx.present]
            sync_in(ctx.backend, grad_out.device)
            inputs = [None if a is None else from_torch(a, ctx.backend) for a in args]
            grads = vjp(ctx.fn, inputs, ctx.needs_input_grad[2:], from_torch(grad_out, ctx.backend))
            sync_out(ctx.backend)
            return None, None, *[None if g is None else g.torch().clone() for g in grads]

    return DrJitFunction


def torch_apply(fn: DrJitFunction, backend: str, *args: Any) -> Any:
    """``fn(*args)`` for torch tensors (``None`` passes through as ``None``), differentiable by torch autograd
    through Dr.Jit's AD (first order: see the module docstring); ``backend`` is the Dr.Jit backend ``fn``
    runs on (``"llvm"`` for CPU tensors, ``"cuda"`` for CUDA tensors)."""
    return _function().apply(fn, backend, *args)
