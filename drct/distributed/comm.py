"""The process group behind a sharded operator: which views a rank holds, and all-reduce of Dr.Jit values.

Dr.Jit values cross to torch by DLPack (``.torch()``, zero-copy on the CPU), are copied (the DLPack view
shares Dr.Jit's buffer, which other variables may share too), summed by :func:`torch.distributed.all_reduce`
in one call per operation (every array of a tree packed into one flat buffer) and come back as the same Dr.Jit
types. torch is imported here only, and only when a sharded operator is built.
"""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np

from ..arrays import array_kind, from_tensor, to_tensor
from ..autodiff import sync_in, sync_out
from ..errors import NonFiniteError, require_finite
from ..extras import require


def torch_distributed() -> Any:
    """:mod:`torch.distributed`, or an error naming the extra that provides it."""
    dist = require("torch.distributed", "drct.distributed", extra="distributed")
    if not dist.is_available():  # pragma: no cover - builds of torch without distributed support
        raise ImportError("drct.distributed needs a torch build with torch.distributed (this one has none)")
    return dist


class Group:
    """The ranks that share one operator: ``torch.distributed``'s default group, or ``group``.

    Example:
        >>> import torch.distributed as dist
        >>> from drct.distributed import Group
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> group = Group()  # the default group: here one rank
        >>> group.rank, group.size, group.views(10)
        (0, 1, range(0, 10))
        >>> dist.destroy_process_group()
    """

    def __init__(self, group: Any = None) -> None:
        dist = torch_distributed()
        if not dist.is_initialized():
            raise RuntimeError(
                "drct.distributed needs an initialised process group: call "
                "torch.distributed.init_process_group('gloo') (CPU) or ('nccl') (GPU) first, e.g. under torchrun"
            )
        self.group = group
        self.rank = int(dist.get_rank(group))
        self.size = int(dist.get_world_size(group))

    def views(self, num_views: int) -> range:
        """This rank's views: a contiguous range, sizes differing by at most one across the ranks."""
        return shard_range(num_views, self.rank, self.size)

    def views_of(self, rank: int, num_views: int) -> range:
        """Rank ``rank``'s views."""
        return shard_range(num_views, rank, self.size)

    def all_reduce(self, values: list[Any], op: str = "sum") -> list[Any]:
        """Element-wise sum (or max) over the ranks of a list of Dr.Jit arrays (each the same type and width on
        every rank); returns new arrays, detached."""
        import torch

        dist = torch_distributed()
        backend = _backend(values[0])
        dr.eval(values)
        sync_out(backend)
        parts = [dr.detach(v).torch().reshape(-1) for v in values]
        flat = torch.cat([p.to(torch.float64) for p in parts])  # a copy: never reduce into Dr.Jit's buffers
        dist.all_reduce(flat, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX, group=self.group)
        sync_in(backend, flat.device)
        out, start = [], 0
        for value, part in zip(values, parts, strict=True):
            piece = flat[start : start + part.numel()].to(part.dtype).reshape(dr.detach(value).torch().shape)
            start += part.numel()
            out.append(_like(value, piece))
        return out

    def require_finite(self, x: Any, name: str, types: Any) -> None:
        """Raise :class:`drct.NonFiniteError` on every rank when any rank's ``x`` (numpy, torch or Dr.Jit: its
        own share of a value) holds NaN or ±Inf: raised on that rank alone, the others would wait for it in
        their next collective until the group's timeout. Collective (one all-reduce of ``size`` flags, as
        ``types.Float64`` on the operator's backend)."""
        bad = not _all_finite(x)
        flags = np.zeros(self.size)
        flags[self.rank] = float(bad)
        (total,) = self.all_reduce([types.Float64(flags)])
        ranks = [r for r, flag in enumerate(np.asarray(total.numpy())) if flag > 0]
        if not ranks:
            return
        if bad:  # name this rank's first bad entry
            kind = array_kind(x)
            require_finite(x if kind == "numpy" else x.detach().cpu().numpy() if kind == "torch" else x.numpy(), name)
        raise NonFiniteError(
            f"{name} of rank(s) {ranks} has non-finite entries (NaN or ±Inf); this rank's ({self.rank}) is finite"
        )

    def gather_array(self, value: Any, shape: tuple[int, ...], types: Any, name: str) -> Any:
        """:meth:`all_gather` of a numpy, torch or Dr.Jit array of this rank's ``shape`` (of ``types``; ``name``
        in errors): the same kind of array comes back."""
        tensor, kind = to_tensor(value, shape, types, name, leading=False)
        return from_tensor(self.all_gather(tensor), kind)

    def all_gather(self, value: Any, axis: int = 0) -> Any:
        """Every rank's Dr.Jit tensor ``value`` (shapes may differ along ``axis``, the first by default)
        concatenated in rank order along ``axis``, on every rank (detached)."""
        import torch

        dist = torch_distributed()
        backend = _backend(value)
        dr.eval(value)
        sync_out(backend)
        local = dr.detach(value).torch().movedim(axis, 0)
        rows = torch.tensor([local.shape[0]], dtype=torch.int64, device=local.device)
        sizes = [torch.zeros_like(rows) for _ in range(self.size)]
        dist.all_gather(sizes, rows, group=self.group)
        padded = torch.zeros((int(max(sizes)), *local.shape[1:]), dtype=local.dtype, device=local.device)
        padded[: local.shape[0]] = local
        pieces = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(pieces, padded, group=self.group)
        full = torch.cat([p[: int(n)] for p, n in zip(pieces, sizes, strict=True)]).movedim(0, axis)
        sync_in(backend, full.device)
        return _like(value, full)


class OnRanks:
    """What an operator shared by the ranks of a :class:`Group` tells about its place in it, and its array calls'
    collective check of non-finite input (mix in before :class:`drct.operator.ArrayCalls`; the operator sets
    ``group``)."""

    group: Group
    types: Any

    def _apply(self, run: Any, value: Any, shape: tuple[int, ...], name: str) -> Any:
        """``A(x)`` / ``A.T(y)``: every rank refuses non-finite input when any rank's holds some (before the
        conversion, which would raise on that rank alone), then the operator's own call."""
        self.group.require_finite(value, name, self.types)
        return super()._apply(run, value, shape, name)  # type: ignore[misc]

    @property
    def rank(self) -> int:
        """This process's rank in the operator's group."""
        return self.group.rank

    @property
    def world_size(self) -> int:
        """The number of ranks sharing the operator."""
        return self.group.size


def shard_range(num_views: int, rank: int, size: int, what: str = "view") -> range:
    """Views ``[rank * V // R, (rank + 1) * V // R)`` of ``V`` views split over ``R`` ranks (or of ``V`` other
    items: ``what`` names them in the error).

    Example:
        >>> [list(shard_range(5, r, 2)) for r in range(2)]
        [[0, 1], [2, 3, 4]]
    """
    if num_views < size:
        raise ValueError(f"{num_views} {what}s cannot be split over {size} ranks (each needs at least one {what})")
    return range(rank * num_views // size, (rank + 1) * num_views // size)


def _all_finite(x: Any) -> bool:
    """Whether a numpy array, torch tensor or Dr.Jit array holds no NaN or ±Inf (non-float arrays: True)."""
    kind = array_kind(x)
    if kind == "numpy":
        return not np.issubdtype(x.dtype, np.inexact) or bool(np.isfinite(x).all())
    if kind == "torch":
        return not x.is_floating_point() or bool(x.detach().isfinite().all())
    flat = dr.detach(x.array if dr.is_tensor_v(x) else x)
    return dr.width(flat) == 0 or bool(dr.all(dr.isfinite(flat), axis=None))


def _backend(value: Any) -> str:
    return "cuda" if dr.backend_v(value) == dr.JitBackend.CUDA else "llvm"


def _like(value: Any, tensor: Any) -> Any:
    """``tensor`` (torch, CPU or CUDA) as a Dr.Jit value of ``value``'s type and shape."""
    return type(dr.detach(value))(tensor.contiguous())
