"""Shared plumbing of the iterative solvers: input conversion, operators on flat Dr.Jit arrays, subsets,
progress bars and callbacks."""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import drjit as dr
import numpy as np
from tqdm.auto import tqdm

from ..arrays import from_tensor, to_tensor
from ..autodiff import torch_apply
from ..errors import require_finite
from ..projector import Projector

Callback = Callable[[int, Any, float], Any]
"""``callback(iteration, x, residual)``: the iteration number (1-based), the current iterate (the same kind of
array as ``y``: numpy, torch or Dr.Jit) and ``||A x - y||₂`` of that iterate. Returning ``True`` stops early."""

_SUBSETS: weakref.WeakKeyDictionary[Projector, dict[int, list[tuple[Projector, np.ndarray]]]] = (
    weakref.WeakKeyDictionary()
)


_OPERATOR = (
    "vg",
    "pg",
    "types",
    "backend",
    "domain_shape",
    "range_shape",
    "forward_tensor",
    "adjoint_tensor",
    "select_views",
    "full_pg",
    "view_subset",
    "sharded",
    "reduce_sum",
    "reduce_max",
    "replicate",
)
"""What the solvers use of an operator that is not a :class:`~drct.Projector` (duck-typed, e.g.
:class:`drct.emission.SPECTProjector`; the view hooks come with :class:`drct.operator.AllViewsHere`): recon does
not import the packages that define them."""


class Problem:
    """``A`` and ``y`` as flat Dr.Jit arrays, with the kind of array to hand back."""

    def __init__(self, A: Projector, y: Any, name: str) -> None:
        if not isinstance(A, Projector) and not all(hasattr(A, a) for a in _OPERATOR):
            raise TypeError(
                f"{name}: A must be a drct.Projector or an operator with {', '.join(_OPERATOR)}, got {type(A).__name__}"
            )
        self.A = A
        self.t = A.types
        self.name = name
        tensor, self.kind = to_tensor(y, A.range_shape, self.t, "y (projections)")
        self.y = tensor.array

    # -- operators on flat arrays -------------------------------------------------------------------------
    def forward(self, x: Any, op: Projector | None = None) -> Any:
        op = op or self.A
        return op.forward_tensor(self.t.Tensor(x, op.domain_shape)).array

    def adjoint(self, y: Any, op: Projector | None = None) -> Any:
        op = op or self.A
        return op.adjoint_tensor(self.t.Tensor(y, op.range_shape)).array

    def data_dot(self, a: Any, b: Any) -> Any:
        """``<a, b>`` of two sinograms, summed over the processes that share ``A``'s views (keeps AD)."""
        return self.A.reduce_sum(dot(a, b))

    def data_norm(self, r: Any) -> float:
        return float(np.sqrt(max(item(self.data_dot(r, r)), 0.0)))

    def row_inverse(self, values: Any) -> Any:
        """:func:`safe_inverse` of a sinogram (its peak taken over every process sharing ``A``'s views)."""
        return safe_inverse(values, self.t.Float, self.A.reduce_max)

    def zeros(self) -> Any:
        return dr.zeros(self.t.Float, self.A.vg.size)

    def full(self, value: float) -> Any:
        return dr.full(self.t.Float, value, self.A.vg.size)

    def volume(self, x: Any, what: str) -> Any:
        """A user volume (numpy/torch/Dr.Jit, or a scalar) as a flat array."""
        if np.isscalar(x):
            if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
                raise TypeError(f"{self.name}: {what} must be a number or a volume array, got {x!r}")
            require_finite(float(x), what)
            return self.full(float(x))
        return to_tensor(x, self.A.domain_shape, self.t, what)[0].array

    def start(self, x0: Any, default: float = 0.0) -> Any:
        return self.full(default) if x0 is None else self.volume(x0, "x0")

    def mask(self, mask: Any) -> Any | None:
        """A mask (bool or 0/1 of the volume's shape) as a flat float array, or None."""
        if mask is None:
            return None
        arr = mask
        if type(mask).__module__.startswith("torch"):
            arr = mask.detach().cpu().numpy()
        if isinstance(arr, np.ndarray):
            if arr.dtype == bool or np.issubdtype(arr.dtype, np.integer):
                arr = arr.astype(self.t.np_dtype)
            if arr.shape == self.A.domain_shape and not np.all((arr == 0) | (arr == 1)):
                raise ValueError(f"{self.name}: mask must hold only 0 and 1 (or booleans)")
        return self.volume(arr, "mask")

    def output(self, x: Any) -> Any:
        return from_tensor(self.t.Tensor(x, self.A.domain_shape), self.kind)

    def subsets(self, count: int) -> list[tuple[Projector, Any]]:
        """``count`` interleaved ordered subsets of views: (projector, flat sinogram indices) per subset."""
        views = self.A.full_pg.num_views
        if not isinstance(count, (int, np.integer)) or not 1 <= count <= views:
            raise ValueError(
                f"{self.name}: subsets must be an integer in [1, {views}] (the number of views), got {count!r}"
            )
        cache = _SUBSETS.setdefault(self.A, {})
        if count not in cache:
            per_view = int(np.prod(self.A.range_shape[1:]))
            cache[count] = []
            for s in range(count):
                op, views_s = self.A.view_subset(np.arange(s, views, count))
                index = (views_s[:, None] * per_view + np.arange(per_view)[None, :]).reshape(-1)
                cache[count].append((op, index.astype(np.uint32)))
        return [(op, self.t.UInt(index)) for op, index in cache[count]]

    def gather(self, values: Any, index: Any) -> Any:
        return dr.gather(self.t.Float, values, index)


def check_niter(niter: Any, name: str) -> int:
    if not isinstance(niter, (int, np.integer)) or isinstance(niter, bool) or niter < 0:
        raise ValueError(f"{name}: niter must be a non-negative integer, got {niter!r}")
    return int(niter)


def check_positive(value: Any, name: str, what: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating, np.integer))
        or not np.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name}: {what} must be a finite number > 0, got {value!r}")
    return float(value)


def steps(niter: int, progress: bool, name: str) -> Iterator[int]:
    """Iteration numbers 1..niter with a tqdm bar (when ``progress``)."""
    yield from tqdm(range(1, niter + 1), desc=name, disable=not progress, leave=False)


def dot(a: Any, b: Any) -> Any:
    """``<a, b>`` as a width-1 Dr.Jit array (keeps AD)."""
    return dr.sum(a * b)


def item(value: Any) -> float:
    """A width-1 Dr.Jit array as a Python float (detached)."""
    return float(np.asarray(dr.detach(value).numpy()).reshape(-1)[0])


def safe_inverse(values: Any, cls: Any, reduce_max: Callable[[Any], Any] | None = None) -> Any:
    """``1/values`` where ``values`` is clearly positive, else 0 (rays/voxels that see nothing); ``reduce_max``
    turns the local peak into the global one (a view-sharded sinogram)."""
    peak = dr.max(dr.detach(values))
    if reduce_max is not None:
        peak = reduce_max(peak)
    return dr.select(values > 1e-6 * peak, dr.rcp(dr.maximum(values, 1e-30)), cls(0))


def report(callback: Callback | None, problem: Problem, k: int, x: Any, residual: Any) -> bool:
    """Call the user's callback; True when it asks to stop."""
    if callback is None:
        return False
    value = residual if isinstance(residual, float) else problem.data_norm(residual)
    return bool(callback(k, problem.output(x), value))


def torch_requires_grad(value: Any) -> bool:
    """True for a torch tensor that requires gradients."""
    return type(value).__module__.startswith("torch") and bool(getattr(value, "requires_grad", False))


def torch_differentiable(A: Projector, run: Callable[..., Any], *inputs: Any) -> Any:
    """``run(*inputs)`` for torch tensors, differentiable by torch autograd through Dr.Jit AD.

    ``run`` maps Dr.Jit tensors (``None`` stays ``None``) to a Dr.Jit tensor; it runs on ``A``'s backend under
    :func:`drct.autodiff.torch_apply` (forward without an AD graph, each backward re-runs ``run`` with
    gradients, so a second backward through the same output is as correct as the first). torch is imported
    only there, and only for torch inputs.
    """
    return torch_apply(run, A.backend, *inputs)


def torch_autograd(solver: Callable[..., Any]) -> Callable[..., Any]:
    """Make a solver ``(A, y, x0=None, ...)`` differentiable for torch autograd: when ``y`` or ``x0`` is a torch
    tensor that requires gradients, the solver runs on Dr.Jit tensors under :func:`torch_differentiable`, so
    ``loss.backward()`` reaches them through the unrolled iterations. Callbacks still see torch tensors (during
    the forward pass only)."""

    @functools.wraps(solver)
    def run(A: Any, y: Any, x0: Any = None, *args: Any, **kwargs: Any) -> Any:
        if not (torch_requires_grad(y) or torch_requires_grad(x0)):
            return solver(A, y, x0, *args, **kwargs)
        bound = inspect.signature(solver).bind(A, y, x0, *args, **kwargs)
        user_callback = bound.arguments.get("callback")
        rest = {key: value for key, value in bound.arguments.items() if key not in ("A", "y", "x0")}
        replay = dict(rest, callback=None, progress=False)  # the backward pass re-runs the iterations quietly
        if user_callback is not None:
            rest["callback"] = lambda k, x, r: user_callback(k, dr.detach(x).torch(), r)
        passes = {"count": 0}

        def solve(yy: Any, xx: Any) -> Any:
            passes["count"] += 1
            return solver(A, yy, xx, **(rest if passes["count"] == 1 else replay))

        return torch_differentiable(A, solve, y, x0)

    return run
