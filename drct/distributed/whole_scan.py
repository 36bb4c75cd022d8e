"""A :class:`drct.Projector` that takes and returns the whole scan on every rank but marches only this rank's
share of the views: code written for one process (geometry calibration) runs unchanged, its ray work split.

Example (one rank, so it runs anywhere; under ``torchrun --nproc_per_node=R`` each rank marches ``1/R`` of the
rays and every rank gets the same calibration):
    >>> import numpy as np, torch.distributed as dist, drct as ct, drct.distributed
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> vg = ct.VolumeGeometry((16, 16, 16), voxel_size=1.5)
    >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 24, endpoint=False), (16, 16), 3.0, 60.0, 120.0)
    >>> y = ct.Projector(vg, pg.perturb(det_shift_u=0.8), basis="bspline2")(ct.phantoms.shepp_logan(vg))
    >>> res = ct.calibrate(y, pg, ["det_shift_u"], vg=vg, levels=[1], iterations=4, progress=False,
    ...                    diagnostics="off", projector=drct.distributed.WholeScanProjector)
    >>> round(res.params["det_shift_u"], 1)
    0.8
    >>> dist.destroy_process_group()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..arrays import require_finite_tensor
from ..geometry.projection import AnyGeometry
from ..geometry.volume import VolumeGeometry
from ..projector import Projector as _Projector
from .comm import OnRanks
from .ops import gather_ranks, replicate
from .projector import Projector


class WholeScanProjector(OnRanks, _Projector):
    """The X-ray transform of ``vg`` on ``pg`` with whole-scan inputs and outputs on every rank, each rank
    marching only its share of the views (those of :class:`drct.distributed.Projector`, :attr:`share`).

    ``A(x)`` projects the replicated volume onto this rank's views and gathers every rank's (one all-gather of
    a sinogram); ``A.T(y)`` takes the whole scan's projections (the same on every rank), backprojects this
    rank's views and sums over the ranks (one all-reduce of a volume). So every input and output is the same
    on every rank, as in one process, and gradients w.r.t. the volume, the projections and the geometry (Dr.Jit
    vectors, reverse and forward mode) are the single-process ones on every rank. The projections are held
    whole by every rank; only the work is split. That is what lets ``ct.calibrate(..., projector=
    drct.distributed.WholeScanProjector)`` split its projections, backprojections and Jacobian marches over the
    ranks with its own (small, numpy) algebra unchanged. For memory split too, use
    :class:`drct.distributed.Projector` (views) or :class:`drct.distributed.SlabProjector` (volume).

    Every call is collective. :meth:`select_views` (and so the ordered subsets of OS-SART/OSEM) gives a plain
    single-process :class:`drct.Projector` of those views: the same numbers, its work not split.
    Arguments as for :class:`drct.distributed.Projector`.

    Example (one rank; the module docstring calibrates with it):
        >>> import numpy as np, torch.distributed as dist, drct as ct, drct.distributed
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> vg = ct.VolumeGeometry((12, 12))
        >>> pg = ct.parallel(np.linspace(0, np.pi, 8, endpoint=False), 16)
        >>> A = drct.distributed.WholeScanProjector(vg, pg)
        >>> x = np.ones(vg.shape, np.float32)
        >>> A(x).shape, bool(np.allclose(A(x), ct.Projector(vg, pg)(x)))
        ((8, 16), True)
        >>> dist.destroy_process_group()
    """

    def __init__(
        self, vg: VolumeGeometry, pg: AnyGeometry, basis: str = "linear", *, group: Any = None, **options: Any
    ) -> None:
        self.share = Projector(vg, pg, basis, group=group, **options)
        self.group = self.share.group
        super().__init__(vg, pg, basis, **options)

    def forward_tensor(self, x: Any) -> Any:
        """``A x`` for the replicated volume ``x``: the whole scan's projections on every rank."""
        lead, _ = self._batch(x.shape, self.domain_shape, "x (volume)")
        require_finite_tensor(x, "x (volume)")
        return gather_ranks(self.group, self.share.forward_tensor(x), self.share._share(), len(lead))

    def adjoint_tensor(self, y: Any) -> Any:
        """``A.T y`` for the whole scan's projections ``y`` (the same on every rank), on every rank."""
        lead, _ = self._batch(y.shape, self.range_shape, "y (projections)")
        require_finite_tensor(y, "y (projections)")  # every rank checks every view: all raise or none
        (shared,) = replicate(self.group, [y])
        views = self.share._share()
        return self.share.adjoint_tensor(shared[(*(slice(None),) * len(lead), slice(views.start, views.stop))])

    def geometry_jvps(self, x: Any, geometries: Sequence[AnyGeometry]) -> list[Any]:
        """:meth:`drct.Projector.geometry_jvps`: each rank marches its views, every rank gets every view."""
        return [self.group.all_gather(jvp) for jvp in self.share.geometry_jvps(x, geometries)]

    def __repr__(self) -> str:
        views = self.share._share()
        return (
            f"distributed.WholeScanProjector(rank {self.rank}/{self.world_size} marching views {views.start}:"
            f"{views.stop} of {self.pg!r}, vg shape={self.vg.shape}, basis={self.basis!r}, dtype={self.dtype!r}, "
            f"backend={self.backend!r})"
        )
