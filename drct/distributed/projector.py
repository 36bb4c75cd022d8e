"""A :class:`drct.Projector` whose views are split over the ranks of a ``torch.distributed`` process group.

Example (one rank, so it runs anywhere; under ``torchrun --nproc_per_node=R`` each rank holds ``1/R`` of the
views and gets the same reconstruction):
    >>> import numpy as np, torch.distributed as dist, drct as ct, drct.distributed
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> vg = ct.VolumeGeometry((32, 32))
    >>> pg = ct.parallel(np.linspace(0, np.pi, 48, endpoint=False), 48)
    >>> A = ct.distributed.Projector(vg, pg, basis="linear")
    >>> y = A(ct.phantoms.shepp_logan(vg))  # this rank's views
    >>> x = ct.recon.cgls(A, y, niter=10, progress=False)  # the whole volume, on every rank
    >>> A.views, A.gather(y).shape, x.shape
    (range(0, 48), (48, 48), (32, 32))
    >>> dist.destroy_process_group()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import drjit as dr
import numpy as np

from ..geometry.projection import AnyGeometry, ProjectionGeometry
from ..geometry.volume import VolumeGeometry
from ..projector import Projector as _Projector
from .comm import Group, OnRanks
from .ops import replicate, replicate_geometry, sum_ranks


class Projector(OnRanks, _Projector):
    """The X-ray transform of ``vg`` on ``pg``, views split over the ranks of a process group.

    Rank ``r`` holds views ``r * V // R .. (r + 1) * V // R - 1`` of the ``V`` views of ``pg`` (``R`` ranks):
    its :attr:`pg` is that share (:attr:`full_pg` the whole scan, :attr:`views` the range), ``A(x)`` projects
    the replicated volume ``x`` onto its own views only, and ``A.T(y)`` takes its own views' projections and
    returns the full backprojection, summed over the ranks (every rank gets it). Gradients are those of the sum
    of the ranks' objectives: the volume gradient of ``A`` and the geometry gradients of ``A`` and ``A.T`` are
    summed over the ranks inside the operators' ``dr.CustomOp`` (see :mod:`drct.distributed.ops`), so
    ``dr.backward`` on each rank's share of a loss leaves every rank with the single-process gradient.

    It is a :class:`drct.Projector` (one process per share), so the iterative solvers of :mod:`drct.recon`
    take it unchanged: each rank passes its own views' projections (:meth:`shard`) and gets the full
    reconstruction; their sinogram inner products go through :meth:`reduce_sum`, ordered subsets through
    :meth:`view_subset` (each rank's share must meet every subset). ``ct.fbp`` and
    ``ct.fdk`` take it too: each rank filters and backprojects its own views with their rows of the whole
    scan's weights (angular, Parker), and the volumes are summed over the ranks.

    Every rank must make the same calls in the same order (they are collective). Build it after
    ``torch.distributed.init_process_group`` (gloo on CPUs, NCCL on GPUs), e.g. under ``torchrun``.

    Args:
        vg: the volume grid (replicated on every rank).
        pg: the whole scan's projection geometry (the same on every rank); Dr.Jit vectors with gradients
            (:meth:`drct.ProjectionGeometry.perturb`) get the summed geometry gradients.
        basis: as for :class:`drct.Projector`.
        group: a ``torch.distributed`` process group; default the default group.
        options: ``dtype``, ``backend``, ``chunk_rays``, ``deterministic``, as for :class:`drct.Projector`.

    Example:
        >>> import numpy as np, torch.distributed as dist, drct as ct, drct.distributed
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> vg = ct.VolumeGeometry((16, 16))
        >>> A = ct.distributed.Projector(vg, ct.parallel(np.linspace(0, np.pi, 12, endpoint=False), 24))
        >>> y = A(ct.phantoms.shepp_logan(vg))  # this rank's views (all of them with one rank)
        >>> A.views, y.shape, A.T(y).shape
        (range(0, 12), (12, 24), (16, 16))
        >>> dist.destroy_process_group()
    """

    def __init__(
        self, vg: VolumeGeometry, pg: AnyGeometry, basis: str = "linear", *, group: Any = None, **options: Any
    ) -> None:
        if not isinstance(pg, ProjectionGeometry):
            raise TypeError(f"drct.distributed.Projector splits views: pg must be a ProjectionGeometry, got {pg!r}")
        if options.get("batch") is not None:
            raise ValueError("drct.distributed.Projector does not take per-sample geometries (batch=...)")
        self._setup(vg, pg, basis, Group(group), None, options)

    def _setup(
        self, vg: VolumeGeometry, pg: ProjectionGeometry, basis: str, group: Group, views: Any, options: Any
    ) -> None:
        """Hold ``views`` of ``pg`` (whole-scan view indices; ``None``: this rank's balanced share)."""
        self.group = group
        self._full_pg = pg
        self.views: range | np.ndarray = group.views(pg.num_views) if views is None else views
        super().__init__(vg, self._local_geometry(pg, np.asarray(self.views)), basis, **options)

    def _local_geometry(self, pg: ProjectionGeometry, views: np.ndarray) -> ProjectionGeometry:
        """``views`` of ``pg``; Dr.Jit vectors pass :func:`replicate` first, so the gradients of the full
        geometry's parameters are summed over the ranks."""
        return replicate_geometry(self.group, pg).select_views(views)

    def _share(self) -> range:
        """This rank's contiguous share of the views (an ordered subset's operator has none)."""
        if not isinstance(self.views, range):
            raise NotImplementedError("an ordered subset's operator (inside os_sart/osem) holds no contiguous share")
        return self.views

    @property
    def full_pg(self) -> ProjectionGeometry:
        """The whole scan's geometry (:attr:`pg` is this rank's share)."""
        return self._full_pg

    def view_subset(self, views: np.ndarray) -> tuple[_Projector, np.ndarray]:
        """The sharded operator on the whole-scan views ``views`` (each rank keeps those it holds), and their
        positions in this rank's sinogram. Every rank must hold at least one of them."""
        share, views = self._share(), np.asarray(views)
        shares = [self.group.views_of(r, self._full_pg.num_views) for r in range(self.world_size)]
        missed = [s for s in shares if not np.any((views >= s.start) & (views < s.stop))]
        if missed:  # the same answer on every rank: all raise, none waits for the others
            raise ValueError(
                f"views {missed[0].start}:{missed[0].stop} (one rank's share) hold none of the {len(views)} views of "
                "this subset; use fewer subsets (at most the smallest share's number of views)"
            )
        mine = views[(views >= share.start) & (views < share.stop)]
        op = Projector.__new__(Projector)
        options = {"dtype": self.dtype, "backend": self.backend, "chunk_rays": self._engine.chunk_rays}
        op._setup(
            self.vg,
            self._full_pg,
            self.basis,
            self.group,
            mine,
            dict(options, deterministic=self._engine.deterministic),
        )
        return op, mine - share.start

    @property
    def sharded(self) -> bool:
        return True

    def reduce_sum(self, value: Any) -> Any:
        """The sum over the ranks of a Dr.Jit array (e.g. this rank's part of a sinogram inner product);
        differentiable (see :func:`drct.distributed.ops.sum_ranks`)."""
        return sum_ranks(self.group, [value])[0]

    def replicate(self, value: Any) -> Any:
        """The identity for a replicated Dr.Jit array about to enter this rank's share of a sinogram
        computation; reverse mode sums its gradient over the ranks (see :func:`drct.distributed.ops.replicate`)."""
        return replicate(self.group, [value])[0]

    def reduce_max(self, value: Any) -> Any:
        """The element-wise maximum over the ranks of a Dr.Jit array (detached)."""
        return self.group.all_reduce([dr.detach(value)], op="max")[0]

    def forward_tensor(self, x: Any) -> Any:
        """``A x`` on this rank's views, for the replicated Dr.Jit volume ``x``; reverse mode sums the volume
        and geometry gradients over the ranks."""
        (shared,) = replicate(self.group, [x])
        return super().forward_tensor(shared)

    def adjoint_tensor(self, y: Any) -> Any:
        """``A.T y`` summed over the ranks, for this rank's views' projections ``y``: every rank gets the full
        backprojection."""
        self.group.require_finite(y, "y (this rank's projections)", self.types)  # every rank raises, or none
        local = super().adjoint_tensor(y)
        (total,) = sum_ranks(self.group, [local])
        return total

    def geometry_jvps(self, x: Any, geometries: Sequence[AnyGeometry]) -> list[Any]:
        """:meth:`drct.Projector.geometry_jvps` on this rank's views; ``geometries`` are whole-scan geometries
        (like ``pg``) carrying the tangents."""
        window = slice(self._share().start, self._share().stop)
        return super().geometry_jvps(x, [g.select_views(window) for g in geometries])  # type: ignore[union-attr]

    def shard(self, y: Any) -> Any:
        """This rank's views of a whole-scan sinogram ``y`` (numpy, torch or Dr.Jit, views first)."""
        if tuple(y.shape) != tuple(self.full_pg.shape):
            raise ValueError(f"shard takes the whole scan's projections, shape {self.full_pg.shape}, got {y.shape}")
        share = self._share()
        if type(y).__module__.startswith("drjit"):  # a gather keeps Dr.Jit's AD
            per_view = int(np.prod(self.pg.shape[1:]))
            index = dr.arange(self.types.UInt, share.start * per_view, share.stop * per_view)
            return type(y)(dr.gather(type(y.array), y.array, index), self.range_shape)
        return y[share.start : share.stop]

    def gather(self, y: Any) -> Any:
        """The whole scan's projections from every rank's share ``y`` (on every rank; numpy, torch or Dr.Jit
        in, the same kind out). Collective."""
        return self.group.gather_array(y, self.range_shape, self.types, "y (this rank's projections)")

    def __repr__(self) -> str:
        return (
            f"distributed.Projector(rank {self.rank}/{self.world_size}, {self.pg.num_views} views "
            f"of {self.full_pg!r}, vg shape={self.vg.shape}, basis={self.basis!r}, dtype={self.dtype!r}, "
            f"backend={self.backend!r})"
        )
