"""The X-ray transform's numerical engine: :class:`Transform` runs the kernels of :mod:`drct.kernels` over chunks
of rays.

It gives the forward projection, the exact adjoint, and the derivatives of every ray integral w.r.t. the ray,
chained to the geometry vectors by Dr.Jit's AD one chunk at a time (:meth:`Transform.geometry_vjp`,
:meth:`Transform.geometry_jvps`; the passes live in :mod:`drct.transform_derivatives`): memory stays
O(volume + sinogram + one chunk of rays), plus, where a forward projection keeps its rays' derivatives for the
pass after it, ``2 ndim + 1`` floats per ray within :data:`KEPT_PARTIALS_BUDGET`. :mod:`drct.transform_ops` ties
these passes together as ``dr.CustomOp`` operations for reverse and forward mode.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cached_property
from typing import Any

import drjit as dr
import numpy as np
from tqdm.auto import tqdm

from . import transform_derivatives
from .backend import Types, lanes
from .concurrency import get_deterministic, launches, only_thread
from .geometry.projection import AnyGeometry, ProjectionGeometry, host_rows
from .geometry.ray_arrays import Rays, Vectors, detached, geometry_vectors, make_rays
from .geometry.volume import VolumeGeometry
from .kept import Partials
from .kernels import box, fan_footprints, fan_hat, footprints, march, padding, slabs
from .kernels.grid import KnotGrid, Segments, clip_rays
from .kernels.scatter import even_zeros, expand_fits, trimmed
from .memory import available_bytes

SMALL_COPY = 16 * 2**20
"""Bytes of a padded copy made without asking for the free memory first (:meth:`Transform.pads`):
reading it three times per call cost ~0.3 ms, a few percent of a 256² forward projection."""


KEPT_PARTIALS_BUDGET = 512 * 2**20
"""Bytes a forward projection may keep of its rays' derivatives for the reverse or forward pass that follows
(:meth:`Transform.keeps_partials`; at most a quarter of the free memory on the CPU as well): above it the
derivative pass marches the volume again, and a gradient's memory stays O(volume + sinogram + one chunk of rays)
(the kept derivatives are 7 floats per ray in 3D: 83 MB for 128² pixels × 180 views, 660 MB for 256² × 360)."""


def rays_spread(vg: VolumeGeometry, pg: AnyGeometry) -> bool:
    """Whether neighbouring rays of a detector row cross the volume at least half a voxel apart (median over
    the views), so that a SIMD packet of them rarely adds into one coefficient at once and the adjoint's
    scatters are fastest without a reduction within the packet (:func:`drct.kernels.scatter.scatter_mode`).
    Ray lists: unknown order, so no.

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((64, 64))
        >>> angles = np.linspace(0, np.pi, 90, endpoint=False)
        >>> rays_spread(vg, ct.parallel(angles, 96)), rays_spread(vg, ct.parallel(angles, 512, 0.125))
        (True, False)
    """
    if not isinstance(pg, ProjectionGeometry):
        return False
    src, det, det_u = (np.atleast_2d(np.asarray(host_rows(v), dtype=np.float64)) for v in (pg.src, pg.det, pg.det_u))
    pitch = np.linalg.norm(det_u, axis=1)
    if pg.beam != "parallel":  # the pitch where the rays cross the middle of the volume
        middle = np.asarray(vg.center, dtype=np.float64)
        pitch = pitch * np.linalg.norm(src - middle, axis=1) / np.linalg.norm(det - src, axis=1)
    return bool(np.median(pitch) >= 0.5 * min(vg.spacing_xyz))


class Transform:
    """The numerical engine behind :class:`drct.Projector` (one volume grid, one geometry, one basis).

    Every operation takes ``batch``, the number of volumes (and sinograms) processed in one launch, stacked
    along the flat arrays. With ``stacked = B`` the geometry holds ``B`` samples' views one after the other and
    sample ``b``'s rays see volume ``b``; otherwise (``stacked = 1``) all volumes share the geometry.
    """

    def __init__(
        self, vg: VolumeGeometry, pg: AnyGeometry, degree: int, t: Types, chunk_rays: int, stacked: int = 1
    ) -> None:
        self.vg, self.pg, self.t = vg, pg, t
        self.grid = KnotGrid.of(vg, degree)
        self.chunk_rays = max(1, int(chunk_rays))
        self.stacked = stacked
        self.rays_per_sample = pg.num_rays // stacked
        self._first_center = [dr.opaque(t.Float64, c) for c in vg.first_center]
        self._spacing = [dr.opaque(t.Float64, h) for h in vg.spacing_xyz]
        self._fixed_vectors = None if pg.differentiable else geometry_vectors(pg, t)
        self.deterministic: bool | None = None  # None: follow drct.concurrency's default at each call
        self._footprints: footprints.ParallelFootprints | None = None

    @cached_property
    def spread(self) -> bool:
        """How the adjoint's scatters combine colliding lanes (:func:`rays_spread`); worked out on the first
        scatter, so that operators used only forward never read their geometry back to the host."""
        return rays_spread(self.vg, self.pg)

    def pads(self, batch: int) -> bool:
        """Whether the marches over ``batch`` volumes read and write a padded copy (:mod:`drct.kernels.padding`:
        the box basis's own march, :mod:`drct.kernels.box`, and the B-spline bases' window without masks): with
        the padded copies indexable by 32-bit integers and, on the CPU, taking at most a quarter of the free
        memory (else the general march's masks, which need no copy); a copy of at most :data:`SMALL_COPY` bytes
        is made without asking (the call's memory check still counts it)."""
        size = padding.padded_size(self.grid) * batch
        return size < 2**31 and self._copy_fits(size * self.t.itemsize)

    def _copy_fits(self, nbytes: int) -> bool:
        """Whether a per-call copy of ``nbytes`` may be made: always on a GPU (no free-memory query), on the CPU
        up to :data:`SMALL_COPY` without asking, else within a quarter of the free memory."""
        return self.t.backend != "llvm" or nbytes <= SMALL_COPY or nbytes <= available_bytes() // 4

    def reads_pairs(self, batch: int) -> bool:
        """Whether the 2D box forward over ``batch`` volumes reads its columns' two cells with one 64-bit gather
        from a pair copy (:func:`drct.kernels.box.pairs`, eight times the padded copy's bytes): for float32 on a
        padded copy (:meth:`pads`), with the pairs indexable by 32 bits and, on the CPU, taking at most a quarter
        of the free memory (else two gathers from the padded copy: the same bits)."""
        if self.grid.degree != 0 or self.grid.ndim != 2 or self.t.dtype != "float32" or not self.pads(batch):
            return False
        words = self._pair_words(batch)
        return words < 2**32 and self._copy_fits(8 * words)

    def _pair_words(self, batch: int) -> int:
        """64-bit words in the pair copy of ``batch`` volumes (:func:`drct.kernels.box.pairs`)."""
        return box.PAIR_KINDS * padding.padded_size(self.grid) * batch

    def pair_bytes(self, batch: int) -> int:
        """Bytes of the pair copy a forward projection over ``batch`` volumes makes (:meth:`reads_pairs`)."""
        return 8 * self._pair_words(batch) if self.reads_pairs(batch) else 0

    def scratch_bytes(self, batch: int, item: int, copies: int = 1) -> int:
        """Bytes a pass allocates besides its output for ``copies`` padded copies (:meth:`pads`): one for ``A``
        or ``A.T``, two for a derivative pass (the volume's and the adjoint's)."""
        return padding.padded_size(self.grid) * batch * item * copies if self.pads(batch) else 0

    def reproducible(self) -> bool:
        """Whether this call's scatter kernels must be bit-reproducible (see :mod:`drct.concurrency`)."""
        return get_deterministic() if self.deterministic is None else self.deterministic

    # ---- inputs ---------------------------------------------------------------------------------------------
    def vectors(self) -> Vectors:
        """The geometry vectors; fresh each call when they are Dr.Jit arrays (so new gradients are seen)."""
        return self._fixed_vectors if self._fixed_vectors is not None else geometry_vectors(self.pg, self.t)

    def num_rays(self, batch: int) -> int:
        """Rays in one launch over ``batch`` volumes."""
        return self.rays_per_sample * batch

    def chunks(self, batch: int, linear: bool = False) -> list[tuple[int, int]]:
        """Ray ranges per launch: ``chunk_rays`` for derivative passes (which keep per-ray AD state), 16 times
        more for the linear operators (which keep one value per ray)."""
        n, size = self.num_rays(batch), self.chunk_rays * (16 if linear else 1)
        return [(s, min(size, n - s)) for s in range(0, n, size)]

    def _progress(self, what: str, batch: int, linear: bool = False) -> Iterator[tuple[int, int]]:
        """The chunks, with a progress bar on a terminal when there are several (tqdm hides it elsewhere)."""
        ranges = self.chunks(batch, linear)
        if len(ranges) == 1:  # no bar: a disabled tqdm still costs ~0.1 ms to build
            return iter(ranges)
        return iter(tqdm(ranges, desc=f"drct {what}", unit="chunk", leave=False, disable=None))

    def _index_of(self, index: Any, batch: int) -> tuple[Any, Any]:
        """For the rays at flat positions ``index`` of a launch's output: their flat index in the geometry, and
        the flat index of the first coefficient of the volume each one sees (``0`` for a single volume)."""
        t = self.t
        if batch == 1:
            return index, 0
        sample = index // self.rays_per_sample
        if self.stacked == 1:
            index = index - sample * self.rays_per_sample
        return index, t.Int(sample * self.grid.size)

    def _segments(self, rays: Rays, offset: Any = 0) -> Segments:
        detached = Rays(
            [dr.detach(o) for o in rays.origin],
            [dr.detach(d) for d in rays.direction],
            dr.detach(rays.t_min),
            dr.detach(rays.t_max),
        )
        segs = clip_rays(detached, self.grid, self._first_center, self._spacing, self.t)
        segs.offset = offset
        return segs

    def _ray_segments(self, vectors: Vectors, start: int, count: int, batch: int) -> Segments:
        """The clipped rays ``start .. start + count`` in sinogram order (the tests' view of a launch)."""
        index, offset = self._index_of(lanes(self.t, start, count), batch)
        return self._segments(make_rays(self.pg, self.t, vectors, index), offset)

    @property
    def rows_first(self) -> bool:
        """Whether ``A`` and ``A.T`` march the rays detector row by row across all views (3D projection
        geometries shared by the batch) instead of view by view.

        A detector row sees a thin slab of the volume from every view (the z-planes near the row, for a
        circular orbit), so marching all views of one row while that slab is in the core's cache reads the
        volume from the cache instead of from memory: for the voxel basis on a cone 128³ × 30 × 128² scan
        this took the forward from 160 to 92 CPU ms and the adjoint from 322 to 263 (same cells, same sums;
        ``benchmarks/bench_march.py``). A packet of SIMD lanes is still neighbouring pixels of one row."""
        pg = self.pg
        return isinstance(pg, ProjectionGeometry) and pg.ndim == 3 and self.stacked == 1

    def _launch_order(self, start: int, count: int, batch: int) -> Any:
        """The output positions of lanes ``start .. start + count`` of a linear launch (see :attr:`rows_first`)."""
        lane = lanes(self.t, start, count)
        if not self.rows_first:
            return lane
        assert isinstance(self.pg, ProjectionGeometry)
        rows, cols = self.pg.det_shape
        views = self.rays_per_sample // (rows * cols)
        sample = lane // self.rays_per_sample
        rest = lane - sample * self.rays_per_sample  # row-major over (row, view, column) within the sample
        col = rest % cols
        rest = rest // cols
        view, row = rest % views, rest // views
        return sample * self.rays_per_sample + (view * rows + row) * cols + col

    def _launch_segments(self, vectors: Vectors, start: int, count: int, batch: int) -> tuple[Segments, Any]:
        """The clipped rays of lanes ``start .. start + count`` of a linear launch, and their output positions."""
        position = self._launch_order(start, count, batch)
        index, offset = self._index_of(position, batch)
        return self._segments(make_rays(self.pg, self.t, vectors, index), offset), position

    def _take(self, values: Any, position: Any, start: int, count: int) -> Any:
        """The values (one per ray, sinogram order) of lanes ``start .. start + count`` at their positions."""
        if self.rows_first:
            return dr.gather(self.t.Float, values, position)
        if count == dr.width(values):
            return values
        return dr.gather(self.t.Float, values, lanes(self.t, start, count))

    def _place(self, parts: list[Any], positions: list[Any], batch: int) -> Any:
        """One value per ray in sinogram order from the chunks' per-lane values and output positions."""
        if len(parts) == 1 and not self.rows_first:
            return parts[0]
        out = dr.zeros(self.t.Float, self.num_rays(batch))
        for part, position in zip(parts, positions, strict=True):
            dr.scatter(out, part, position)
        return out

    # ---- linear operators -----------------------------------------------------------------------------------
    def project(self, coeffs: Any, vectors: Vectors, batch: int = 1) -> Any:
        """``A x`` (flat, one value per ray) for flat coefficients ``coeffs`` of ``batch`` volumes."""
        vectors = detached(vectors)
        parts, positions = [], []
        with launches(self.t.backend):
            padded = padding.pad(self.grid, self.t, coeffs, batch) if self.pads(batch) else None
            paired = box.pairs(self.grid, self.t, padded) if self.reads_pairs(batch) else None
            for start, count in self._progress("A x", batch, linear=True):
                segs, position = self._launch_segments(vectors, start, count, batch)
                if padded is None:
                    part = march.project(self.grid, self.t, segs, coeffs)
                elif self.grid.degree == 0:  # the box basis's own march (drct.kernels.box)
                    part = box.project(self.grid, self.t, segs, padded, paired)
                else:
                    part = march.project(self.grid, self.t, segs, padded, padded=True)
                dr.eval(part)
                parts.append(part)
                positions.append(position)
            out = self._place(parts, positions, batch)
            dr.eval(out)
        return out

    def keeps_partials(self, batch: int) -> bool:
        """Whether ``A x`` with geometry gradients wanted keeps each ray's derivatives (``2 ndim + 1`` floats per
        ray) for the derivative pass that follows, instead of that pass marching the volume again: for the
        B-spline bases (degree >= 1; the box's derivatives come from its own march) within
        :data:`KEPT_PARTIALS_BUDGET` and, on the CPU, a quarter of the free memory."""
        if self.grid.degree == 0:
            return False
        nbytes = self.num_rays(batch) * (2 * self.grid.ndim + 1) * self.t.itemsize
        if nbytes > KEPT_PARTIALS_BUDGET:
            return False
        return self.t.backend != "llvm" or nbytes <= available_bytes() // 4

    @property
    def footprints(self) -> footprints.ParallelFootprints | None:
        """The gather adjoint where it covers this operator (:mod:`drct.kernels.footprints` for 2D parallel beams,
        :mod:`drct.kernels.fan_footprints` and :mod:`drct.kernels.fan_hat` for the box and linear bases of 2D
        flat fan beams; CPU only), else None.
        Built once for a fixed geometry; for Dr.Jit geometry vectors, from their current values at each call
        (they may change in place between calls)."""
        if self.t.backend != "llvm":
            return None
        if footprints.covers(self.vg, self.pg, self.grid.degree):
            kind: type[footprints.ParallelFootprints] = footprints.FOOTPRINTS[self.grid.degree]
        elif fan_hat.covers(self.vg, self.pg, self.grid.degree):
            kind = fan_hat.FAN_FOOTPRINTS[self.grid.degree]
        else:
            return None
        assert isinstance(self.pg, ProjectionGeometry)
        if self.pg.differentiable:  # built anew at each call
            return kind(self.grid, self.vg, self.pg, self.t)
        if self._footprints is None:
            self._footprints = kind(self.grid, self.vg, self.pg, self.t)
        return self._footprints

    def backproject(self, values: Any, vectors: Vectors, batch: int = 1, scatter: bool | None = None) -> Any:
        """``A.T y`` (flat, unpadded, ``batch`` volumes) for one value per ray.

        Where :mod:`drct.kernels.footprints` covers the operator, a voxel-driven gather (the same matrix to
        rounding: within 4e-14 of the largest entry in float64, bit for bit where rays run along pixel edges; no
        scatters, so bit-reproducible whatever the threads), likewise for 2D fan beams where
        :mod:`drct.kernels.fan_footprints` (the box basis; its near-axis rays scattered) or
        :mod:`drct.kernels.fan_hat` (the linear basis) does; elsewhere, or with
        ``scatter=True`` (default: the environment variable ``DRCT_ADJOINT=scatter``), the ray-driven scatter of
        :func:`drct.kernels.march.backproject`."""
        vectors = detached(vectors)
        gather = self._gather(scatter)
        if gather is not None:
            return self._backproject_gather(gather, values, vectors, batch)
        size = self.grid.size * batch
        target = even_zeros(self.t.Float, size)
        with launches(self.t.backend, self.reproducible()):
            if self._slabbed(batch):
                for start, count in self._progress("A.T y", batch, linear=True):
                    self._backproject_slabs(values, vectors, start, count, target)
                target = trimmed(target, size)
                dr.eval(target)
                return target
            padded = padding.zeros(self.grid, self.t, batch) if self.pads(batch) else None
            for start, count in self._progress("A.T y", batch, linear=True):
                segs, position = self._launch_segments(vectors, start, count, batch)
                mine = self._take(values, position, start, count)
                if padded is not None:  # into a padded copy (drct.kernels.padding)
                    self._backproject_padded(self.grid, segs, mine, padded)
                    dr.eval(padded)
                else:
                    march.backproject(self.grid, self.t, segs, mine, target, self.spread)
                    dr.eval(target)
            target = trimmed(target, size)
            if padded is not None:
                target = padding.crop_add(self.grid, self.t, padded, target, batch)
            dr.eval(target)
        return target

    def _backproject_padded(self, grid: KnotGrid, segs: Segments, values: Any, padded: Any) -> None:
        """Add ``A.T values`` of the rays ``segs`` into the padded copy ``padded`` (of ``grid``: the volume's or
        a slab's): by the box basis's own march, or the B-spline bases' window without masks."""
        if grid.degree == 0:
            box.backproject(grid, self.t, segs, values, padded, self.spread)
        else:
            march.backproject(grid, self.t, segs, values, padded, self.spread, padded=True)

    def _scatter_entries(self, grid: KnotGrid, batch: int = 1) -> int:
        """Entries of the array :meth:`backproject` scatters into for ``grid``: its padded copy (:meth:`pads`)."""
        return (padding.padded_size(grid) if self.pads(batch) else grid.size) * batch

    def _slabbed(self, batch: int) -> bool:
        """Whether :meth:`backproject` scatters into slabs (:mod:`drct.kernels.slabs`): on the CPU, for one volume
        whose own target is too large for ``Expand``'s copies while this is the only thread (else the atomics'
        mode does not depend on the size)."""
        if self.t.backend != "llvm" or batch != 1 or not only_thread():
            return False
        return not self._fits(self.grid)

    def _slab_launches(self, vectors: Vectors, start: int, count: int, cuts: bool = True) -> Iterator[slabs.Launch]:
        """Lanes ``start .. start + count`` as launches whose rays touch a slab that fits ``Expand``'s copies
        (:func:`drct.kernels.slabs.launches`; ``cuts``: rays may be cut into pieces along z)."""
        return slabs.launches(
            self.grid,
            lambda first, lanes: self._launch_segments(vectors, first, lanes, 1),
            self._fits,
            start,
            count,
            cuts,
        )

    def _fits(self, grid: KnotGrid) -> bool:
        """Whether ``Expand``'s copies of the array :meth:`backproject` scatters into for ``grid`` fit."""
        return expand_fits(self._scatter_entries(grid), 8 if self.t.dtype == "float64" else 4)

    def _backproject_slabs(self, values: Any, vectors: Vectors, start: int, count: int, target: Any) -> None:
        """Add ``A.T`` of lanes ``start .. start + count`` into ``target`` slab by slab (:meth:`_slab_launches`;
        a launch without a slab scatters into the whole volume, with the atomics)."""
        t = self.t
        for first, rays, segs, position, slab, _ in self._slab_launches(vectors, start, count):
            mine = self._take(values, position, first, rays)
            grid = self.grid if slab is None else slab.grid
            if self.pads(1):  # into a padded copy of the slab (or volume)
                padded = padding.zeros(grid, t)
                self._backproject_padded(grid, segs, mine, padded)
                part = padding.crop_add(grid, t, padded, 0.0)  # the interior, read by the add below (no copy)
            elif slab is None:
                march.backproject(grid, t, segs, mine, target, self.spread)
                dr.eval(target)
                continue
            else:
                part = even_zeros(t.Float, grid.size)
                march.backproject(grid, t, segs, mine, part, self.spread)
            (slab or slabs.Slab(self.grid, 0, self.grid.shape[-1])).add_into(t, target, trimmed(part, grid.size))
            dr.eval(target)

    def _gather(self, scatter: bool | None = None) -> footprints.ParallelFootprints | None:
        """The gather adjoint's footprints unless the scatter is asked for (``scatter=True``, or by default the
        environment variable ``DRCT_ADJOINT=scatter``) or the gather does not cover this operator."""
        if scatter is None:
            scatter = os.environ.get("DRCT_ADJOINT", "") == "scatter"
        return None if scatter else self.footprints

    def _backproject_gather(self, fp: footprints.ParallelFootprints, values: Any, vectors: Vectors, batch: int) -> Any:
        """``A.T y`` by the footprints of :mod:`drct.kernels.footprints`, one volume at a time (sample ``b`` reads
        its own views when the geometry stacks the samples', else all of them). The box basis's near-axis rays
        of fan beams are scattered (:mod:`drct.kernels.fan_footprints`): one thread in deterministic mode."""
        views = self.pg.num_views // self.stacked
        parts = []
        scatters = isinstance(fp, fan_footprints.FanFootprints) and len(fp.near_rays) > 0
        with launches(self.t.backend, self.reproducible() and scatters):
            for b in range(batch):
                first = b * views if self.stacked > 1 else 0
                parts.append(fp.backproject(values, vectors, b * self.rays_per_sample, first, views))
            out = parts[0] if batch == 1 else dr.concat(parts)
            dr.eval(out)
        return out

    # ---- derivative passes: the functions of drct.transform_derivatives, as methods ------------------------
    project_keeping_partials = transform_derivatives.project_keeping_partials
    geometry_vjp = transform_derivatives.geometry_vjp
    geometry_jvps = transform_derivatives.geometry_jvps

    def geometry_jvp(
        self, coeffs: Any, vectors: Vectors, tangents: Vectors, batch: int = 1, partials: Partials | None = None
    ) -> Any:
        """Forward mode: the change of every ray integral (one value per ray) for geometry tangents."""
        return self.geometry_jvps(coeffs, vectors, [tangents], batch, partials)[0]
