"""What every drct operator tells the solvers about where its views live (one room for the single-process case).

The solvers of :mod:`drct.recon` sum sinogram inner products, take maxima and build ordered subsets through these
hooks, so that an operator whose views are split across processes (:class:`drct.distributed.Projector`) gives the
single-process result; an operator that holds every view (:class:`drct.Projector`,
:class:`drct.emission.SPECTProjector`) inherits the identities below.

Example:
    >>> import numpy as np, drct as ct
    >>> A = ct.Projector(ct.VolumeGeometry((8, 8)), ct.parallel(np.linspace(0, np.pi, 6, endpoint=False), 8))
    >>> A.sharded, A.reduce_sum(2.0), A.full_pg is A.pg
    (False, 2.0, True)
    >>> sub, where = A.view_subset(np.array([0, 3]))
    >>> sub.range_shape, where.tolist()
    ((2, 8), [0, 3])
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from .algebra import Algebra, Transposed


class LinearOperator(Protocol):
    """What :class:`Adjoint` needs of an operator."""

    @property
    def domain_shape(self) -> tuple[int, ...]: ...

    @property
    def range_shape(self) -> tuple[int, ...]: ...

    def adjoint(self, y: Any) -> Any: ...


Op = TypeVar("Op", bound=LinearOperator)


class AllViewsHere:
    """The hooks of an operator that holds all its views in this process (mix into the operator class; it must
    define ``pg`` and ``select_views(views)``)."""

    pg: Any

    def select_views(self, views: Any) -> Any:  # pragma: no cover - every operator defines its own
        raise NotImplementedError

    @property
    def full_pg(self) -> Any:
        """The whole scan's geometry: :attr:`pg` (a sharded projector holds a share of its views)."""
        return self.pg

    def view_subset(self, views: Any) -> tuple[Any, Any]:
        """The operator on the views ``views`` (indices into :attr:`full_pg`, e.g. one ordered subset of
        OS-SART/OSEM), and their positions in this operator's sinogram."""
        return self.select_views(views), views

    @property
    def sharded(self) -> bool:
        """True when this process holds only a share of the views (:class:`drct.distributed.Projector`)."""
        return False

    def reduce_sum(self, value: Any) -> Any:
        """The sum of a value over the processes sharing this operator's views: the value itself here.
        Solvers pass their sinogram inner products through it."""
        return value

    def reduce_max(self, value: Any) -> Any:
        """The maximum over the processes sharing this operator's views: the value itself here."""
        return value

    def replicate(self, value: Any) -> Any:
        """A value every process holds alike, before it enters this process's share of a sinogram computation
        (e.g. a step length times projections): the value itself here; a sharded projector sums its gradient
        over the ranks, which reverse mode through such a use needs."""
        return value


class Adjoint(Transposed, Generic[Op]):
    """``A.T`` of any drct operator: calling it applies ``A.adjoint``; its ``.T`` is ``A`` again, and its shapes
    are ``A``'s swapped (an operator of :mod:`drct.algebra` like any other)."""

    _op: Op

    @property
    def T(self) -> Op:
        return self._op


def torch_needs_grad(value: Any) -> bool:
    """A torch tensor that requires grad while torch records gradients (torch is imported only for torch input)."""
    if not type(value).__module__.startswith("torch") or not getattr(value, "requires_grad", False):
        return False
    import torch

    return torch.is_grad_enabled()


class ArrayCalls(Algebra):
    """``A(x)`` and ``A.adjoint(y)`` for numpy arrays, torch tensors and Dr.Jit tensors (the same kind comes back;
    a torch tensor that requires grad gets a differentiable torch result), around the operator's
    ``forward_tensor`` / ``adjoint_tensor`` on Dr.Jit tensors; ``x_name`` / ``y_name`` name them in errors."""

    types: Any
    domain_shape: tuple[int, ...]
    range_shape: tuple[int, ...]
    x_name = "x (volume)"
    y_name = "y (projections)"
    leading_batch = False  # whether leading batch dimensions are accepted before domain_shape / range_shape

    def forward_tensor(self, x: Any) -> Any:  # pragma: no cover - every operator defines its own
        raise NotImplementedError

    def adjoint_tensor(self, y: Any) -> Any:  # pragma: no cover - every operator defines its own
        raise NotImplementedError

    @property
    def dtype(self) -> str:
        return self.types.dtype

    @property
    def backend(self) -> str:
        return self.types.backend

    def _apply(self, run: Any, value: Any, shape: tuple[int, ...], name: str) -> Any:
        from .arrays import from_tensor, to_tensor
        from .autodiff import torch_apply

        if torch_needs_grad(value):
            return torch_apply(run, self.backend, value)
        tensor, kind = to_tensor(value, shape, self.types, name, leading=self.leading_batch)
        return from_tensor(run(tensor), kind)

    def __call__(self, x: Any) -> Any:
        """``A x`` for a numpy array, torch tensor or Dr.Jit tensor of shape :attr:`domain_shape` (after any
        leading batch dimensions where the operator takes them); a torch tensor that requires grad gets a
        differentiable torch result."""
        return self._apply(self.forward_tensor, x, self.domain_shape, self.x_name)

    def forward(self, x: Any) -> Any:
        """``A x`` (the same as calling ``A``)."""
        return self(x)

    def adjoint(self, y: Any) -> Any:
        """``A.T y`` for projections of shape :attr:`range_shape` (numpy, torch or Dr.Jit; as in ``A(x)``)."""
        return self._apply(self.adjoint_tensor, y, self.range_shape, self.y_name)
