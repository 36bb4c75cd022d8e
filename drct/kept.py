"""What a forward projection keeps of its rays' derivatives for the derivative pass after it, and how a caller
carries that from one call to another.

:meth:`drct.transform.Transform.project_keeping_partials` returns, per chunk of rays, each ray's derivatives
w.r.t. its origin and direction (:data:`Partials`). Within one Dr.Jit AD graph ``ForwardOp`` holds them itself;
across calls without AD state in between (the torch bridge: a forward now, its backward later)
:func:`keeping_partials` records them and :func:`supplying_partials` hands them back, as :class:`KeptForward`
records, per thread (context variables).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import drjit as dr

from .kernels import derivatives

Partials = list[derivatives.RayDerivatives]
"""Per chunk of :meth:`drct.transform.Transform.chunks` (lanes in its ``_launch_order``): every ray's derivatives,
as a forward projection that kept them found them (:meth:`drct.transform.Transform.project_keeping_partials`)."""


@dataclass(frozen=True)
class KeptForward:
    """One ``A x`` that kept its rays' derivatives (:func:`keeping_partials`): the projection (None where the
    caller holds it itself), the derivatives per chunk (:data:`Partials`) and the batch it was run for."""

    value: Any
    partials: Partials
    batch: int

    def arrays(self) -> list[Any]:
        """The derivatives as flat arrays, chunk by chunk: ``∂y/∂o`` per axis, ``∂y/∂d`` per axis, ``f`` at the
        ray's end (``2 ndim + 1`` per chunk)."""
        return [a for p in self.partials for a in (*p.grad, *p.moment, p.f_end)]

    @staticmethod
    def rebuilt(arrays: Sequence[Any], chunks: int, batch: int) -> KeptForward:
        """The record :meth:`arrays` came from, without its projection (``value`` None)."""
        per = len(arrays) // chunks
        ndim = (per - 1) // 2
        if chunks * per != len(arrays) or per != 2 * ndim + 1:
            raise ValueError(f"{len(arrays)} kept arrays cannot be {chunks} chunks of 2 ndim + 1 arrays")
        parts = [arrays[i * per : (i + 1) * per] for i in range(chunks)]
        partials = [derivatives.RayDerivatives(list(p[:ndim]), list(p[ndim:-1]), None, p[-1]) for p in parts]
        return KeptForward(None, partials, batch)


_RECORDING: ContextVar[list[KeptForward] | None] = ContextVar("drct_recording_partials", default=None)
_SUPPLIED: ContextVar[list[KeptForward] | None] = ContextVar("drct_supplied_partials", default=None)


@contextmanager
def keeping_partials() -> Iterator[list[KeptForward]]:
    """Within it, every ``A x`` run without AD for which :meth:`drct.transform.Transform.keeps_partials` allows it
    runs the derivative march instead (the same bits, ~1.5x the forward, cone bspline2) and appends a
    :class:`KeptForward` to the list it yields. A caller that will differentiate the same ``A x`` w.r.t. its
    geometry later, without Dr.Jit AD state in between (:mod:`drct.torch`), hands the list to
    :func:`supplying_partials` then. Per thread (a context variable).

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.kept import keeping_partials
        >>> A = ct.Projector(ct.VolumeGeometry((8, 8)), ct.parallel(np.linspace(0, 3, 4), 12), basis="bspline2")
        >>> x = A.types.Tensor(np.ones((8, 8), np.float32))
        >>> with keeping_partials() as kept:
        ...     y = A.forward_tensor(x)
        >>> len(kept), np.array_equal(kept[0].value.numpy(), y.array.numpy())
        (1, True)
    """
    kept: list[KeptForward] = []
    token = _RECORDING.set(kept)
    try:
        yield kept
    finally:
        _RECORDING.reset(token)


@contextmanager
def supplying_partials(kept: Sequence[KeptForward]) -> Iterator[None]:
    """Within it, the ``A x`` evaluations under AD that want geometry derivatives take the records of ``kept``
    in order (:func:`keeping_partials`: the same ``A x`` run before) instead of marching the volume; once they
    are used up the evaluations march as usual. Per thread (a context variable).

    Only the layout of each record is checked against the operator (its chunks and batch: ValueError naming the
    mismatch), not that it was kept for the same volume and geometry: that is the caller's to ensure. A record
    without its projection (``value`` None) makes that evaluation's value zeros: only its derivatives are
    right."""
    token = _SUPPLIED.set(list(kept))
    try:
        yield
    finally:
        _SUPPLIED.reset(token)


def recording() -> list[KeptForward] | None:
    """The list :func:`keeping_partials` is filling in this thread (None outside it)."""
    return _RECORDING.get()


def take_supplied(batch: int, expected: list[int]) -> KeptForward | None:
    """The next record :func:`supplying_partials` holds in this thread (None when there is none), checked against
    the ``A x`` that takes it: its ``batch`` and the rays of each of its chunks (``expected``)."""
    queue = _SUPPLIED.get()
    if not queue:
        return None
    kept = queue.pop(0)
    widths = [dr.width(p.f_end) for p in kept.partials]
    if kept.batch != batch or widths != expected:
        raise ValueError(
            f"supplied partials do not belong to this projection: kept for batch {kept.batch} with chunks of "
            f"{widths} rays, the operator has batch {batch} with chunks of {expected} rays"
        )
    return kept
