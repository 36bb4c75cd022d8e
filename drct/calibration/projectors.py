"""Where the calibration gets its projectors: :class:`drct.Projector` unless ``calibrate(..., projector=F)``
names another factory ``F(vg, pg, basis=...)`` for the duration of that call (e.g.
:class:`drct.distributed.WholeScanProjector`, which splits the rays' work over the ranks of a process group).

Example:
    >>> import numpy as np, drct as ct
    >>> from drct.calibration.projectors import projector, projectors
    >>> vg, pg = ct.VolumeGeometry((8, 8)), ct.parallel(np.linspace(0, 3, 4), 8)
    >>> made = []
    >>> with projectors(lambda vg, pg, basis: made.append(basis) or ct.Projector(vg, pg, basis)):
    ...     A = projector(vg, pg, "voxel")
    >>> made, type(projector(vg, pg, "voxel")).__name__
    (['voxel'], 'Projector')
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from ..geometry.projection import AnyGeometry
from ..geometry.volume import VolumeGeometry
from ..projector import Projector

Factory = Callable[..., Projector]
_FACTORY: ContextVar[Factory] = ContextVar("drct_calibration_projector", default=Projector)
P = ParamSpec("P")
R = TypeVar("R")


def projector(vg: VolumeGeometry, pg: AnyGeometry, basis: str) -> Projector:
    """A projector from the current factory; it must hold every view here (whole-scan input and output)."""
    A = _FACTORY.get()(vg, pg, basis=basis)
    if not isinstance(A, Projector) or A.sharded or A.domain_shape != vg.shape:
        raise TypeError(
            "calibrate's projector= must build a drct.Projector with the whole volume and every view on each "
            f"process (e.g. drct.distributed.WholeScanProjector), got {A!r}"
        )
    return A


@contextmanager
def projectors(factory: Factory | None) -> Iterator[None]:
    """Build the calibration's projectors with ``factory`` inside the block (``None``: :class:`drct.Projector`)."""
    if factory is not None and not callable(factory):
        raise TypeError(f"projector must be a callable (vg, pg, basis=...) -> drct.Projector, got {factory!r}")
    token = _FACTORY.set(factory or Projector)
    try:
        yield
    finally:
        _FACTORY.reset(token)


def with_projector_option(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with its keyword argument ``projector`` as the factory of :func:`projectors`."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        factory: Any = kwargs.get("projector")
        with projectors(factory):
            return fn(*args, **kwargs)

    return run
