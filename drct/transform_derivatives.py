"""The derivative passes of :class:`drct.transform.Transform`: every ray integral's derivatives w.r.t. its ray,
chained to the geometry vectors by Dr.Jit's AD one chunk of rays at a time.

- :func:`project_keeping_partials`: ``A x`` and each ray's derivatives, kept for the pass that follows;
- :func:`geometry_vjp`: reverse mode, ``A.T w`` and the geometry vectors' gradient from one march per chunk;
- :func:`geometry_jvps`: forward mode along several geometry tangents from one march per chunk.

Each derivative march reads the volume's padded copy where :meth:`Transform.pads` allows it
(:func:`marched_volume`), or each slab's own copy for volumes whose adjoint goes slab by slab. The
:class:`~drct.transform.Transform` methods of the same names call these; :mod:`drct.transform_ops` ties them into
``dr.CustomOp`` operations.

Example:
    >>> import numpy as np, drjit as dr, drct as ct
    >>> from drjit.llvm.ad import Float64, TensorXf
    >>> shift = Float64(0.0)
    >>> dr.enable_grad(shift)
    >>> pg = ct.parallel([0.0, 1.0], 24).perturb(det_shift_u=shift)
    >>> A, x = ct.Projector(ct.VolumeGeometry((16, 16)), pg, basis="bspline2"), TensorXf(np.ones((16, 16), np.float32))
    >>> dr.backward(dr.sum(A(x).array))  # through geometry_vjp
    >>> bool(abs(dr.grad(shift)[0]) < 1e-3)  # a shifted detector still sees the whole object's mass
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import drjit as dr

from .backend import lanes
from .concurrency import launches
from .geometry.detector import dot
from .geometry.projection import ProjectionGeometry
from .geometry.ray_arrays import Vec, Vectors, detached, per_ray, ray_views, rays_from
from .kept import Partials
from .kernels import derivatives, padding, slabs
from .kernels.grid import Segments
from .kernels.scatter import add, even_zeros, trimmed

if TYPE_CHECKING:
    from .transform import Transform


def project_keeping_partials(engine: Transform, coeffs: Any, vectors: Vectors, batch: int = 1) -> tuple[Any, Partials]:
    """``A x`` (bit for bit :meth:`Transform.project`'s, degree >= 1) and every ray's derivatives w.r.t. its origin and
    direction, from one derivative march per chunk (about 1.5x the forward march, cone bspline2): the
    reverse pass then needs only ``A.T`` for the volume and elementwise products for the geometry, and a
    forward-mode pass only the products (:func:`geometry_vjp`, :func:`geometry_jvps` with ``partials``)."""
    vectors = detached(vectors)
    parts, positions, partials = [], [], []
    with launches(engine.t.backend):
        marched, padded = marched_volume(engine, coeffs, batch)
        for start, count in engine._progress("A x", batch):
            segs, position = engine._launch_segments(vectors, start, count, batch)
            der = derivatives.ray_derivatives(engine.grid, engine.t, segs, marched, with_value=True, padded=padded)
            kept = derivatives.RayDerivatives(der.grad, der.moment, None, der.f_end)
            dr.eval(der.value, kept.grad, kept.moment, kept.f_end)
            parts.append(der.value)
            positions.append(position)
            partials.append(kept)
        out = engine._place(parts, positions, batch)
        dr.eval(out)
    return out, partials


def ray_partials(engine: Transform, der: derivatives.RayDerivatives, segs: Segments) -> tuple[Vec, Vec, Any]:
    """``dy/do``, ``dy/dd`` (mm) and ``dy/dt_max`` per ray, float64."""
    f64 = engine.t.Float64
    grad = [f64(g) / h for g, h in zip(der.grad, engine._spacing, strict=True)]
    moment = [f64(m) / h + segs.t_enter * g for m, h, g in zip(der.moment, engine._spacing, grad, strict=True)]
    d_tmax = dr.select(segs.ends_at_t_max, f64(der.f_end), 0.0)
    return grad, moment, d_tmax


def ray_vector_gradients(
    engine: Transform,
    coeffs: Any,
    vectors: Vectors,
    start: int,
    count: int,
    batch: int,
    weights: Any = None,
    target: Any = None,
    slab: slabs.Slab | None = None,
    cut: tuple[int, int] | None = None,
    kept: derivatives.RayDerivatives | None = None,
    padded: bool = False,
) -> tuple[Any, Any, Vectors]:
    """For lanes ``start .. start + count`` (in the order of :meth:`Transform._launch_order`): the output position
    of each lane's ray, the index of its vector set, and the gradient of the ray's integral (times its
    weight, if given; one per lane) w.r.t. that set. Adds ``A.T weights`` into ``target`` (through the
    ``slab`` of planes the rays touch, when given, for the rays' pieces in the cells ``cut`` when given:
    see :meth:`Transform._slab_launches`). With ``kept`` (these lanes' derivatives, kept by
    :func:`project_keeping_partials`) nothing is marched: no ``coeffs`` and no ``target``. ``padded``
    (:func:`marches_padded`): ``coeffs`` and ``target`` are padded copies (not with a ``slab``, whose own
    copies :func:`slab_derivatives` makes).

    The vectors are gathered to one copy per ray before differentiating, so the AD pass is elementwise (no
    scatters, nothing evaluated until the caller combines the result).
    """
    t = engine.t
    position = engine._launch_order(start, count, batch)
    index, offset = engine._index_of(position, batch)
    views = ray_views(engine.pg, t, index)
    with dr.isolate_grad():
        leaves = per_ray(vectors, t, views)
        dr.enable_grad(leaves)
        rays = rays_from(engine.pg, t, leaves, index)
        segs = engine._segments(rays, offset)
        if cut is not None:
            segs = slabs.clip(segs, *cut)
        if kept is not None:
            der = kept
        elif slab is None:
            der = derivatives.ray_derivatives(
                engine.grid, t, segs, coeffs, weights, target, engine.spread, padded=padded
            )
        else:  # the slab's coefficients and weights: the rays' derivatives do not move with the planes
            der = slab_derivatives(engine, coeffs, weights, target, slab, segs)
        d_o, d_d, d_tmax = ray_partials(engine, der, segs)
        if weights is not None:
            w = t.Float64(weights)
            d_o, d_d, d_tmax = [w * g for g in d_o], [w * g for g in d_d], w * d_tmax
        seed = dot(rays.origin, d_o) + dot(rays.direction, d_d)
        if isinstance(engine.pg, ProjectionGeometry) and engine.pg.beam == "cone":
            seed = seed + rays.t_max * d_tmax
        dr.backward_from(seed)
        grads = {name: [dr.grad(c) for c in comps] for name, comps in leaves.items()}
    return position, views, grads


def marches_padded(engine: Transform, batch: int) -> bool:
    """Whether the derivative marches over ``batch`` volumes read (and write) padded copies (:meth:`Transform.pads`):
    the B-spline bases' window; the box's derivative march is the general one."""
    return engine.grid.degree > 0 and engine.pads(batch)


def marched_volume(engine: Transform, coeffs: Any, batch: int, allowed: bool = True) -> tuple[Any, bool]:
    """The volume as a derivative march over ``batch`` volumes reads it: its padded copy where ``allowed`` and
    :func:`marches_padded`, else itself; and whether it is the copy."""
    padded = allowed and marches_padded(engine, batch)
    return (padding.pad(engine.grid, engine.t, coeffs, batch) if padded else coeffs), padded


def slab_derivatives(
    engine: Transform, coeffs: Any, weights: Any, target: Any, slab: slabs.Slab, segs: Segments
) -> derivatives.RayDerivatives:
    """The rays' derivatives through the ``slab`` of the (unpadded) volume ``coeffs``, adding ``A.T weights``
    into ``target`` (unpadded) by way of the slab's own copies (padded: :func:`marches_padded`)."""
    t, grid, padded = engine.t, slab.grid, marches_padded(engine, 1)
    mine = dr.gather(t.Float, coeffs, lanes(t, slab.offset, slab.size))
    if padded:
        mine = padding.pad(grid, t, mine)
    part = padding.zeros(grid, t) if padded else even_zeros(t.Float, slab.size)
    der = derivatives.ray_derivatives(grid, t, slab.segments(segs), mine, weights, part, engine.spread, padded=padded)
    slab.add_into(t, target, padding.crop_add(grid, t, part, 0.0) if padded else trimmed(part, slab.size))
    return der


def per_chunk(engine: Transform, partials: Partials | None, batch: int) -> Sequence[derivatives.RayDerivatives | None]:
    """What each chunk of :meth:`Transform.chunks` was kept (``partials``), or None for each (the pass marches)."""
    return partials or [None] * len(engine.chunks(batch))


def geometry_vjp(
    engine: Transform,
    coeffs: Any,
    vectors: Vectors,
    weights: Any,
    want_volume: bool,
    batch: int = 1,
    partials: Partials | None = None,
) -> tuple[Any, Vectors]:
    """Reverse mode for ray weights ``weights``: ``A.T weights`` (if ``want_volume``) and the gradient of
    ``<weights, A x>`` w.r.t. every geometry vector, from one march per chunk. Where the gather adjoint
    covers the operator (:meth:`Transform.backproject`), ``A.T weights`` comes from it and the march does no scatters.
    Given the ``partials`` a forward projection kept (:func:`project_keeping_partials`), nothing marches but
    ``A.T``."""
    t = engine.t
    vectors = detached(vectors)
    # A.T weights apart from the march: from the gather adjoint, or because kept partials leave nothing to march
    apart = want_volume and (partials is not None or engine._gather() is not None)
    target = even_zeros(t.Float, engine.grid.size * batch) if want_volume and not apart else None
    out = {name: [dr.zeros(t.Float64, dr.width(c)) for c in comps] for name, comps in vectors.items()}
    kept = per_chunk(engine, partials, batch)
    with launches(t.backend, engine.reproducible()):
        slabbed = target is not None and engine._slabbed(batch)
        # the whole volume's padded copies where the march reads it (slabs pad their own)
        coeffs, padded = marched_volume(engine, coeffs, batch, partials is None and not slabbed)
        if padded and target is not None:
            target = padding.zeros(engine.grid, t, batch)
        # the box basis's derivative counts the jumps at the faces a ray crosses: no cuts across its rays
        cuts = engine.grid.degree > 0
        for (start, count), mine in zip(engine._progress("gradient", batch), kept, strict=True):
            parts = engine._slab_launches(vectors, start, count, cuts) if slabbed else [(start, count) + (None,) * 4]
            for first, rays, _, _, slab, cut in parts:
                position = engine._launch_order(first, rays, batch)
                w = engine._take(weights, position, first, rays)
                _, views, grads = ray_vector_gradients(
                    engine, coeffs, vectors, first, rays, batch, w, target, slab, cut, mine, padded
                )
                for name, comps in grads.items():
                    for acc, g in zip(out[name], comps, strict=True):
                        add(acc, g, views)
                dr.eval(out, target)
    if apart:
        target = engine.backproject(weights, vectors, batch)
    elif target is not None and padded:
        target = padding.crop_add(engine.grid, t, target, 0.0, batch)
    elif target is not None:
        target = trimmed(target, engine.grid.size * batch)
    return target, out


def geometry_jvps(
    engine: Transform,
    coeffs: Any,
    vectors: Vectors,
    tangent_sets: list[Vectors],
    batch: int = 1,
    partials: Partials | None = None,
) -> list[Any]:
    """Forward mode along several tangents of the geometry vectors at once: one derivative march per chunk
    gives every ray's gradient w.r.t. its vectors, and each tangent set is one dot product with it (a
    calibration's Jacobian columns cost one march, not one each). Given the ``partials`` a forward
    projection kept (:func:`project_keeping_partials`), nothing is marched."""
    t = engine.t
    vectors = detached(vectors)
    sets = [{name: [t.Float64(c) for c in tangents[name]] for name in vectors} for tangents in tangent_sets]
    dr.eval(sets)
    parts: list[list[Any]] = [[] for _ in sets]
    positions = []
    with launches(t.backend):
        kept = per_chunk(engine, partials, batch)
        coeffs, padded = marched_volume(engine, coeffs, batch, partials is None)
        for (start, count), mine in zip(engine._progress("JVP", batch), kept, strict=True):
            position, views, grads = ray_vector_gradients(
                engine, coeffs, vectors, start, count, batch, kept=mine, padded=padded
            )
            positions.append(position)
            changes = []
            for tangents in sets:
                change = 0.0
                for name, comps in grads.items():
                    for g, dv in zip(comps, tangents[name], strict=True):
                        change = change + g * (dv if dr.width(dv) == 1 else dr.gather(t.Float64, dv, views))
                changes.append(t.Float(change))
            dr.eval(changes)
            for out, part in zip(parts, changes, strict=True):
                out.append(part)
        result = [engine._place(p, positions, batch) for p in parts]
        dr.eval(result)
    return result
