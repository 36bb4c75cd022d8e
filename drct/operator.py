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


class Adjoint(Generic[Op]):
    """``A.T`` of any drct operator: calling it applies ``A.adjoint``; its ``.T`` is ``A`` again, and its shapes
    are ``A``'s swapped."""

    def __init__(self, op: Op) -> None:
        self._op = op

    def __call__(self, y: Any) -> Any:
        return self._op.adjoint(y)

    @property
    def T(self) -> Op:
        return self._op

    @property
    def domain_shape(self) -> tuple[int, ...]:
        return self._op.range_shape

    @property
    def range_shape(self) -> tuple[int, ...]:
        return self._op.domain_shape
