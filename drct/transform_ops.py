"""The X-ray transform as differentiable Dr.Jit operations: :class:`ForwardOp` (``A x``) and :class:`AdjointOp`
(``A.T y``) are ``dr.CustomOp`` operations over a :class:`drct.transform.Transform`, so that reverse mode (VJP)
and forward mode (JVP) reach both the volume and every geometry vector without an AD graph through the march.
:func:`apply` runs one, through ``dr.custom`` only when something needs derivatives.

Example:
    >>> import drjit as dr, numpy as np, drct as ct
    >>> from drct.transform_ops import ForwardOp, apply
    >>> A = ct.Projector(ct.VolumeGeometry((4, 4)), ct.parallel([0.0], 3), basis="voxel")
    >>> x = A.types.Float(np.ones(16, np.float32))
    >>> dr.enable_grad(x)
    >>> y = apply(ForwardOp, A._engine, x)
    >>> dr.backward(dr.sum(y))  # the gradient is A.T of ones: each voxel's length along the rays through it
    >>> float(dr.sum(dr.grad(x))[0])  # three rays, 4 mm each
    12.0
"""

from __future__ import annotations

from typing import Any

import drjit as dr

from .backend import Types
from .geometry.projection import AnyGeometry
from .geometry.ray_arrays import geometry_vectors
from .kept import KeptForward, Partials, recording, take_supplied
from .transform import Transform, Vectors


def geometry_tangents(geometry: AnyGeometry, t: Types, primal: AnyGeometry) -> Vectors:
    """The forward-mode tangents carried by ``geometry``'s Dr.Jit vectors (zero where none), after checking that
    its values are those of ``primal`` (the operator's geometry)."""
    if type(geometry) is not type(primal) or geometry.shape != primal.shape:
        raise ValueError(f"a tangent geometry must have the operator's geometry shape {primal!r}, got {geometry!r}")
    vectors = geometry_vectors(geometry, t)
    reference = geometry_vectors(primal, t)
    for name, comps in vectors.items():
        for c, r in zip(comps, reference[name], strict=True):
            gap = dr.max(dr.abs(dr.detach(c) - r), axis=None)[0]
            scale = dr.max(dr.abs(r), axis=None)[0] + 1.0
            if not gap <= 1e-9 * scale:
                raise ValueError(
                    f"a tangent geometry's {name!r} differs from the operator's by {gap:g} mm: build the tangents at "
                    "the operator's own geometry (only the derivatives may differ)"
                )
    comps = [c for group in vectors.values() for c in group]
    # keep the gradients of interior nodes: one vector may feed another (a ray's origin feeds its direction
    # b - a), and the default flags would clear the origin's tangent once the traversal passed it
    dr.forward_to(*comps, flags=dr.ADFlag.ClearEdges)
    grads = {name: [dr.grad(c) for c in group] for name, group in vectors.items()}
    dr.eval(grads)
    return grads


def _has_grad(tree: Any) -> bool:
    return bool(dr.grad_enabled(tree))


class ForwardOp(dr.CustomOp):
    """``y = A x`` with derivatives w.r.t. ``x`` and the geometry vectors (reverse and forward mode). With the
    geometry's derivatives wanted, ``eval`` keeps every ray's derivatives where :meth:`Transform.keeps_partials`
    allows (or takes ``supplied``, what an earlier run of the same ``A x`` kept:
    :func:`drct.kept.supplying_partials`), and the derivative passes use them instead of marching the volume
    again."""

    def eval(
        self,
        engine: Transform,
        x: Any,
        vectors: Vectors,
        need: tuple[bool, bool],
        batch: int,
        supplied: KeptForward | None = None,
    ) -> Any:
        self.engine, self.x, self.vectors, self.need, self.batch = engine, x, vectors, need, batch
        # with geometry gradients wanted, keep every ray's derivatives now (one march, ~1.5x the forward) rather
        # than march the volume again in the derivative pass
        self.partials: Partials | None = None
        if supplied is not None:
            self.partials = supplied.partials
            if supplied.value is None:  # the caller holds the projection: only the derivatives are wanted here
                return dr.zeros(engine.t.Float, engine.num_rays(batch))
            return supplied.value
        if need[1] and engine.keeps_partials(batch):
            out, self.partials = engine.project_keeping_partials(x, vectors, batch)
            return out
        return engine.project(x, vectors, batch)

    def backward(self) -> None:
        want_volume, want_geometry = self.need
        g = self.grad_out()
        if want_geometry:
            volume, grads = self.engine.geometry_vjp(self.x, self.vectors, g, want_volume, self.batch, self.partials)
            self.set_grad_in("vectors", grads)
        else:
            volume = self.engine.backproject(g, self.vectors, self.batch)
        if want_volume:
            self.set_grad_in("x", volume)

    def forward(self) -> None:
        want_volume, want_geometry = self.need
        out = 0.0
        if want_volume:
            out = self.engine.project(self.grad_in("x"), self.vectors, self.batch)
        if want_geometry:
            tangents: Any = self.grad_in("vectors")
            out = out + self.engine.geometry_jvp(self.x, self.vectors, tangents, self.batch, self.partials)
        self.set_grad_out(out)

    def name(self) -> str:
        return "drct.A"


class AdjointOp(dr.CustomOp):
    """``x = A.T y`` with derivatives w.r.t. ``y`` (both modes) and w.r.t. the geometry (reverse mode)."""

    def eval(self, engine: Transform, y: Any, vectors: Vectors, need: tuple[bool, bool], batch: int) -> Any:
        self.engine, self.y, self.vectors, self.need, self.batch = engine, y, vectors, need, batch
        return engine.backproject(y, vectors, batch)

    def backward(self) -> None:
        want_values, want_geometry = self.need
        grad_x = self.grad_out()
        if want_values:
            self.set_grad_in("y", self.engine.project(grad_x, self.vectors, self.batch))
        if want_geometry:  # d<grad_x, A.T y> = d<y, A grad_x>
            _, grads = self.engine.geometry_vjp(grad_x, self.vectors, self.y, False, self.batch)
            self.set_grad_in("vectors", grads)

    def forward(self) -> None:
        if self.need[1]:
            raise NotImplementedError(
                "forward-mode derivatives of A.T w.r.t. the geometry are not implemented; use reverse mode "
                "(dr.backward) or differentiate A instead"
            )
        self.set_grad_out(self.engine.backproject(self.grad_in("y"), self.vectors, self.batch))

    def name(self) -> str:
        return "drct.A.T"


def apply(op: type[dr.CustomOp], engine: Transform, values: Any, batch: int = 1) -> Any:
    """Run ``op`` on flat ``values`` (``batch`` volumes or sinograms) through ``dr.custom`` when anything needs
    derivatives, else directly."""
    vectors = engine.vectors()
    need = (_has_grad(values), _has_grad(vectors))
    if not any(need):
        if op is ForwardOp:
            records = recording()
            if records is not None and engine.keeps_partials(batch):
                out, partials = engine.project_keeping_partials(values, vectors, batch)
                records.append(KeptForward(out, partials, batch))
                return out
            return engine.project(values, vectors, batch)
        return engine.backproject(values, vectors, batch)
    if op is ForwardOp and need[1]:  # checked here, so that a mismatch raises its own error
        supplied = take_supplied(batch, [count for _, count in engine.chunks(batch)])
        return dr.custom(op, engine, values, vectors, need, batch, supplied)
    return dr.custom(op, engine, values, vectors, need, batch)
