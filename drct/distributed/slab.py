"""A projector whose volume is split in slabs along its first array axis (z in 3D) over the ranks of a
``torch.distributed`` process group: for volumes larger than one process's (or device's) memory.

Why it is exact, with no halo to store or exchange: a drct volume is the continuous function
``f(p) = Σ_k c_k β_n((p - p_k) / h)`` (:mod:`drct.volume`), so splitting the *coefficients* splits the function,
``f = Σ_r f_r`` with ``f_r`` built from rank ``r``'s planes only, and the line integral is linear:
``A x = Σ_r A_r x_r``. Each rank's ``A_r`` is an ordinary :class:`drct.Projector` on its slab's grid; its knot
grid already reaches ``max(n, 1)`` planes beyond the slab on each side (the zero border every drct grid
integrates), which is exactly the support that rank's boundary coefficients spread into the neighbours' slabs —
the halo of a degree-``n`` basis is in the ray march, not in the data. The adjoint needs no halo either:
``(A.T y)`` restricted to rank ``r``'s planes is ``A_r.T y``. So ``A(x)`` sums the ranks' projections (one
all-reduce of a sinogram) and ``A.T(y)`` backprojects into this rank's slab only (no communication).

Example (one rank, so it runs anywhere; under ``torchrun --nproc_per_node=R`` each rank holds about ``1/R`` of
the planes and gets the same projections):
    >>> import numpy as np, torch.distributed as dist, drct as ct, drct.distributed
    >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    >>> vg = ct.VolumeGeometry((16, 24, 24))
    >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 20, endpoint=False), (20, 32), 1.5, 100.0, 200.0)
    >>> A = ct.distributed.SlabProjector(vg, pg, basis="bspline2")
    >>> x = A.split(ct.phantoms.shepp_logan(vg))  # this rank's planes of a whole volume
    >>> y = A(x)  # the whole scan, summed over the ranks: the same on every rank
    >>> A.planes, x.shape, y.shape, A.T(y).shape, A.gather(A.T(y)).shape
    (range(0, 16), (16, 24, 24), (20, 20, 32), (16, 24, 24), (16, 24, 24))
    >>> dist.destroy_process_group()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..geometry.projection import AnyGeometry, ProjectionGeometry
from ..geometry.volume import VolumeGeometry
from ..operator import Adjoint, ArrayCalls
from ..projector import Projector
from .comm import Group, OnRanks, shard_range
from .ops import replicate, replicate_geometry, sum_ranks


def slab_geometry(vg: VolumeGeometry, planes: range) -> VolumeGeometry:
    """The grid of planes ``planes`` of ``vg``'s first array axis (z in 3D, y in 2D): the same voxels, at the
    same places.

    Example:
        >>> import drct as ct
        >>> slab_geometry(ct.VolumeGeometry((8, 4, 4)), range(6, 8)).extent_min
        (-2.0, -2.0, 2.0)
    """
    count = vg.shape[0]
    if not (isinstance(planes, range) and planes.step == 1 and 0 <= planes.start < planes.stop <= count):
        raise ValueError(f"planes must be a non-empty range of steps 1 within 0..{count}, got {planes!r}")
    center = list(vg.center)
    center[-1] += ((planes.start + planes.stop - 1) / 2 - (count - 1) / 2) * vg.voxel_size[0]
    return VolumeGeometry((len(planes), *vg.shape[1:]), vg.voxel_size, center)


class SlabProjector(OnRanks, ArrayCalls):
    """The X-ray transform of ``vg`` on ``pg``, the volume split in slabs of planes over the ranks.

    Rank ``r`` of ``R`` holds planes ``r * N // R .. (r + 1) * N // R - 1`` of the ``N`` planes of ``vg``'s first
    array axis (z in 3D; :attr:`planes`, :attr:`vg` that slab's grid, :attr:`full_vg` the whole one) and every
    view. ``A(x)`` takes this rank's slab and returns the whole scan's projections, summed over the ranks (every
    rank gets them); ``A.T(y)`` takes the whole scan's projections (the same on every rank) and returns this
    rank's slab of the backprojection. No halo is stored or exchanged for any basis (see the module docstring):
    each rank's memory is its slab plus one sinogram.

    Gradients are those of the whole objective, counted the way :mod:`drct.distributed.ops` does: replicated
    values (the projections ``A(x)``, the geometry, ``y`` entering ``A.T``) once, each rank's slab terms summed.
    So a loss of ``A(x)`` computed alike on every rank gives each rank the gradient of its slab, and the
    geometry gradients (Dr.Jit geometry vectors, :meth:`drct.ProjectionGeometry.perturb`) are summed over the
    ranks; torch autograd and forward mode work too. Every call is collective: every rank must make the same
    calls in the same order.

    Not for the solvers of :mod:`drct.recon`, FBP/FDK or calibration yet (their volume inner products would
    need a sum over the slabs): they refuse it with a TypeError. Reconstruct with :class:`Projector` (views
    split, the whole volume on every rank) or stream slabs with :mod:`drct.outofcore`.

    Args:
        vg: the whole volume grid (the same on every rank).
        pg: the whole scan's projection geometry (the same on every rank).
        basis: as for :class:`drct.Projector`.
        group: a ``torch.distributed`` process group; default the default group.
        options: ``dtype``, ``backend``, ``chunk_rays``, ``deterministic``, as for :class:`drct.Projector`.

    Example (one rank; under ``torchrun`` each rank holds its own planes):
        >>> import numpy as np, torch.distributed as dist, drct as ct, drct.distributed
        >>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        >>> vg = ct.VolumeGeometry((8, 12, 12))
        >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 6, endpoint=False), (10, 16), 1.5, 60.0, 120.0)
        >>> A = ct.distributed.SlabProjector(vg, pg, basis="linear")
        >>> x = A.split(np.ones(vg.shape, np.float32))
        >>> bool(np.allclose(A(x), ct.Projector(vg, pg, basis="linear")(np.ones(vg.shape, np.float32)), rtol=1e-5))
        True
        >>> dist.destroy_process_group()
    """

    leading_batch = True

    def __init__(
        self, vg: VolumeGeometry, pg: AnyGeometry, basis: str = "linear", *, group: Any = None, **options: Any
    ) -> None:
        if not isinstance(vg, VolumeGeometry):
            raise TypeError(f"vg must be a drct.VolumeGeometry, got {type(vg).__name__}")
        if not isinstance(pg, ProjectionGeometry):
            raise TypeError(f"drct.distributed.SlabProjector needs a ProjectionGeometry, got {pg!r}")
        if options.get("batch") is not None:
            raise ValueError("drct.distributed.SlabProjector does not take per-sample geometries (batch=...)")
        self.group = Group(group)
        self.full_vg = vg
        self.pg = pg
        self.planes = shard_range(vg.shape[0], self.group.rank, self.group.size, "volume plane")
        self.local = Projector(
            slab_geometry(vg, self.planes), replicate_geometry(self.group, pg), basis=basis, **options
        )
        self.types = self.local.types

    @property
    def vg(self) -> VolumeGeometry:
        """This rank's slab's grid."""
        return self.local.vg

    @property
    def basis(self) -> str:
        return self.local.basis

    @property
    def domain_shape(self) -> tuple[int, ...]:
        """This rank's slab: ``(len(planes), *full_vg.shape[1:])``."""
        return self.local.domain_shape

    @property
    def range_shape(self) -> tuple[int, ...]:
        """The whole scan's projections."""
        return self.pg.shape

    @property
    def T(self) -> Adjoint[SlabProjector]:
        """The adjoint (transpose) operator: ``A.T(y)``."""
        return Adjoint(self)

    def forward_tensor(self, x: Any) -> Any:
        """``A x`` summed over the ranks, for this rank's slab ``x`` (a Dr.Jit tensor, after any leading batch
        dimensions); every rank gets the whole scan's projections."""
        self.group.require_finite(x, "x (this rank's slab)", self.types)  # every rank raises, or none
        (total,) = sum_ranks(self.group, [self.local.forward_tensor(x)])
        return total

    def adjoint_tensor(self, y: Any) -> Any:
        """This rank's slab of ``A.T y`` for the whole scan's projections ``y`` (the same on every rank; reverse
        mode sums the gradient of ``y`` over the ranks)."""
        (shared,) = replicate(self.group, [y])
        return self.local.adjoint_tensor(shared)

    def geometry_jvps(self, x: Any, geometries: Sequence[AnyGeometry]) -> list[Any]:
        """:meth:`drct.Projector.geometry_jvps` for this rank's slab ``x``, summed over the ranks: the whole
        scan's change along each tangent (``geometries`` are whole-scan geometries like ``pg``)."""
        return self.group.all_reduce(self.local.geometry_jvps(x, geometries))

    def split(self, x: Any) -> Any:
        """This rank's planes of a whole volume ``x`` (numpy, torch or Dr.Jit; shape ``full_vg.shape`` after any
        leading batch dimensions)."""
        shape = tuple(x.shape)
        if shape[len(shape) - self.full_vg.ndim :] != self.full_vg.shape:
            raise ValueError(f"split takes whole volumes of shape (..., {self.full_vg.shape}), got {shape}")
        index = (Ellipsis, slice(self.planes.start, self.planes.stop), *(slice(None),) * (self.full_vg.ndim - 1))
        return x[index]

    def gather(self, x: Any) -> Any:
        """The whole volume from every rank's slab ``x`` (on every rank; numpy, torch or Dr.Jit in, the same kind
        out, detached). Collective."""
        return self.group.gather_array(x, self.domain_shape, self.types, "x (this rank's slab)")

    def __repr__(self) -> str:
        return (
            f"distributed.SlabProjector(rank {self.rank}/{self.world_size}, planes {self.planes.start}:"
            f"{self.planes.stop} of vg shape={self.full_vg.shape}, {self.pg!r}, basis={self.basis!r}, "
            f"dtype={self.dtype!r}, backend={self.backend!r})"
        )


def split_planes(count: int, size: int) -> list[range]:
    """Every rank's planes of ``count`` planes over ``size`` ranks (what :class:`SlabProjector` uses).

    Example:
        >>> split_planes(10, 3)
        [range(0, 3), range(3, 6), range(6, 10)]
    """
    return [shard_range(count, r, size, "volume plane") for r in range(size)]
