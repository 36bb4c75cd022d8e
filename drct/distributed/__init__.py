"""View-sharded operators on ``torch.distributed`` (optional extra ``distributed``: torch only).

:class:`Projector` splits a scan's views over the ranks of a process group: the forward projection is local
to each rank, the adjoint and the geometry gradients are summed over the ranks, and the solvers of
:mod:`drct.recon` take it unchanged. Start one process per share with ``torchrun`` (gloo on CPUs, NCCL on
GPUs)::

    torchrun --nproc_per_node=2 my_recon.py

Example:
    >>> import drct.distributed
    >>> drct.distributed.shard_range(10, 1, 3)
    range(3, 6)
"""

from __future__ import annotations

from .comm import Group as Group
from .comm import shard_range as shard_range
from .ops import replicate as replicate
from .ops import sum_ranks as sum_ranks
from .projector import Projector as Projector

__all__ = ["Group", "Projector", "replicate", "shard_range", "sum_ranks"]
