"""Sharded operators on ``torch.distributed`` (optional extra ``distributed``: torch only).

:class:`Projector` splits a scan's views over the ranks of a process group: the forward projection is local
to each rank, the adjoint and the geometry gradients are summed over the ranks, and the solvers of
:mod:`drct.recon` take it unchanged. :class:`SlabProjector` splits the volume instead, in slabs of z-planes
(for volumes larger than one process's memory): each rank projects its slab onto every view and the
projections are summed over the ranks. :class:`WholeScanProjector` splits only the work of the views:
whole-scan inputs and outputs on every rank, for code written for one process (``ct.calibrate(...,
projector=...)``). Start one process per share with ``torchrun`` (gloo on CPUs, NCCL on GPUs)::

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
from .slab import SlabProjector as SlabProjector
from .slab import slab_geometry as slab_geometry
from .slab import split_planes as split_planes
from .whole_scan import WholeScanProjector as WholeScanProjector

__all__ = [
    "Group",
    "Projector",
    "SlabProjector",
    "WholeScanProjector",
    "replicate",
    "shard_range",
    "slab_geometry",
    "split_planes",
    "sum_ranks",
]
