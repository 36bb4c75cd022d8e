"""The two differentiable collectives a view-sharded operator is made of (the pair of Megatron-style tensor
parallelism, here for Dr.Jit's AD).

A value is either *replicated* (the same on every rank: the volume, the geometry parameters, a norm) or
*local* (this rank's share: its views' projections). The objective of a sharded computation is the sum of the
ranks' local terms plus the replicated terms counted once, and each rank's gradients are those of that whole
objective:

* :func:`sum_ranks` (local → replicated): the forward value is the all-reduced sum; the reverse is the
  identity (the replicated cotangent is every rank's share); forward mode all-reduces the tangent.
* :func:`replicate` (replicated → local use): the forward value is the identity; the reverse all-reduces the
  cotangents, since every rank's local use of the value contributes to its gradient; forward mode is the
  identity.
* :func:`gather_ranks` (local shares → their replicated concatenation): the reverse takes this rank's share
  of the cotangent; forward mode gathers the tangents.

So the sharded ``A.T y = sum_ranks(A_r.T y_r)`` and its transpose, ``A_r`` applied to the replicated gradient,
needs no communication, while ``A x = A_r replicate(x)`` sums ``A_r.T`` of the local cotangents in reverse.

Example (one rank; with ``R`` ranks ``total`` is ``R`` times larger and so is the gradient of ``replicate``):
    >>> import drjit as dr, torch.distributed as dist
    >>> from drjit.llvm.ad import Float
    >>> from drct.distributed import Group, replicate, sum_ranks
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> x = Float(1.0, 2.0)
    >>> dr.enable_grad(x)
    >>> (shared,) = replicate(Group(), [x])
    >>> (total,) = sum_ranks(Group(), [shared * 3.0])
    >>> dr.backward(dr.sum(total))
    >>> total, dr.grad(x)
    ([3, 6], [3, 3])
    >>> dist.destroy_process_group()
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import drjit as dr

from ..geometry.projection import is_drjit
from .comm import Group


class _SumRanks(dr.CustomOp):
    def eval(self, group: Group, values: list[Any]) -> list[Any]:
        self.group = group
        return group.all_reduce(values)

    def backward(self) -> None:
        self.set_grad_in("values", self.grad_out())

    def forward(self) -> None:
        tangents: Any = self.grad_in("values")
        self.set_grad_out(self.group.all_reduce(tangents))

    def name(self) -> str:
        return "drct.distributed.sum_ranks"


class _Replicate(dr.CustomOp):
    def eval(self, group: Group, values: list[Any]) -> list[Any]:
        self.group = group
        return [dr.detach(v) for v in values]

    def backward(self) -> None:
        cotangents: Any = self.grad_out()
        self.set_grad_in("values", self.group.all_reduce(cotangents))

    def forward(self) -> None:
        self.set_grad_out(self.grad_in("values"))

    def name(self) -> str:
        return "drct.distributed.replicate"


def sum_ranks(group: Group, values: list[Any]) -> list[Any]:
    """The sum over the ranks of each Dr.Jit array in ``values`` (local shares in, replicated sums out), with
    the reverse-mode identity and forward-mode all-reduce described in the module docstring. Every rank must
    call it, in the same order.

    Example:
        >>> import torch.distributed as dist
        >>> from drjit.llvm.ad import Float
        >>> from drct.distributed import Group, sum_ranks
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> sum_ranks(Group(), [Float(1.0, 2.0)])  # with R ranks: the sum of their shares
        [[1, 2]]
        >>> dist.destroy_process_group()
    """
    if not dr.grad_enabled(values):
        return group.all_reduce(values)
    return dr.custom(_SumRanks, group, values)


class _GatherRanks(dr.CustomOp):
    def eval(self, group: Group, value: Any, share: range, axis: int) -> Any:
        self.group, self.share, self.axis = group, share, axis
        return group.all_gather(value, axis)

    def backward(self) -> None:
        cotangent: Any = self.grad_out()
        index = (*(slice(None),) * self.axis, slice(self.share.start, self.share.stop))
        self.set_grad_in("value", cotangent[index])

    def forward(self) -> None:
        self.set_grad_out(self.group.all_gather(self.grad_in("value"), self.axis))

    def name(self) -> str:
        return "drct.distributed.gather_ranks"


def gather_ranks(group: Group, value: Any, share: range, axis: int) -> Any:
    """The ranks' Dr.Jit tensors ``value`` concatenated along ``axis`` (local shares in, a replicated whole
    out); ``share`` is where this rank's lies along ``axis``. Reverse mode takes this rank's share of the
    replicated cotangent (no communication); forward mode gathers the tangents. Collective."""
    if not dr.grad_enabled(value):
        return group.all_gather(value, axis)
    return dr.custom(_GatherRanks, group, value, share, axis)


def replicate_geometry(group: Group, pg: Any) -> Any:
    """``pg`` with its Dr.Jit vectors passed through :func:`replicate` (the whole scan's geometry parameters are
    replicated; each rank's operator uses them for its share, so their gradients are summed over the ranks).
    A geometry of numpy vectors comes back as it is."""
    names = [n for n in ("src", "det", "det_u", "det_v") if is_drjit(getattr(pg, n))]
    if not names:
        return pg
    shared = replicate(group, [getattr(pg, n) for n in names])
    return replace(pg, **dict(zip(names, shared, strict=True)))


def replicate(group: Group, values: list[Any]) -> list[Any]:
    """Mark replicated Dr.Jit arrays before their local use: the identity, whose reverse mode sums the
    cotangents over the ranks. Free (no communication, no AD node) for arrays without gradients.

    Example:
        >>> import drjit as dr, torch.distributed as dist
        >>> from drjit.llvm.ad import Float
        >>> from drct.distributed import Group, replicate
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> x = Float(1.0, 2.0)
        >>> dr.enable_grad(x)
        >>> (shared,) = replicate(Group(), [x])  # the identity; its reverse mode sums the ranks' cotangents
        >>> dr.backward(dr.sum(2.0 * shared))
        >>> dr.grad(x)
        [2, 2]
        >>> dist.destroy_process_group()
    """
    if not dr.grad_enabled(values):
        return values
    return dr.custom(_Replicate, group, values)
