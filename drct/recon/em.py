"""Expectation maximisation for Poisson data: MLEM and OSEM.

``y`` holds expected counts (or any non-negative data modelled as ``y ~ Poisson(A x)``); the iterates stay
non-negative. Same signature as the other solvers (see :mod:`drct.recon.solvers`).
"""

from __future__ import annotations

from typing import Any

import drjit as dr

from ..arrays import to_tensor
from ..projector import Projector
from ._common import Callback, Problem, check_niter, report, safe_inverse, steps, torch_autograd


def _ratio(y: Any, ax: Any, cls: Any) -> Any:
    return dr.select(ax > 0, y / dr.maximum(ax, 1e-30), cls(0))


def _check_data(p: Problem) -> None:
    low = -p.A.reduce_max(-dr.min(dr.detach(p.y)))[0]  # over every process sharing A's views: all raise or none
    if low < 0:
        raise ValueError(f"{p.name}: y must be non-negative (Poisson data), but its minimum is {low}")


def _sensitivity(p: Problem, count: int, op: Any = None) -> Any:
    """``Aᵀ 1`` (``count`` ones), or the operator's own ``sensitivity_tensor()`` (listmode PET: the sum over every
    LOR of the scanner, not over the recorded events)."""
    own = getattr(op or p.A, "sensitivity_tensor", None)
    if own is not None:
        return own().array
    return p.adjoint(dr.full(p.t.Float, 1.0, count), op)


def _additive(p: Problem, additive: Any) -> Any:
    """The additive term ``s`` of ``y ~ Poisson(A x + s)`` (scatter, randoms) as a flat array, or 0."""
    if additive is None:
        return 0.0
    s = dr.detach(to_tensor(additive, p.A.range_shape, p.t, "additive (background counts)")[0].array)
    if dr.min(s)[0] < 0:
        raise ValueError(
            f"{p.name}: additive must be non-negative (expected counts), but its minimum is {dr.min(s)[0]}"
        )
    return s


def _subset_plan(p: Problem, subsets: int, additive: Any, s: Any, m: Any) -> list[tuple[Any, Any, Any, Any, Any]]:
    """Per ordered subset of views: its operator, data ``y_m``, additive share ``s_m``, sensitivity ``A_mᵀ 1``
    and ``1 / A_mᵀ 1`` (masked), for the subset updates of :func:`osem` and :func:`drct.recon.bsrem`."""
    plan = []
    for op, index in p.subsets(subsets):
        sens = _sensitivity(p, dr.width(index), op)
        s_m = s if additive is None else p.gather(s, index)
        scale = safe_inverse(sens, p.t.Float)
        plan.append((op, p.gather(p.y, index), s_m, sens, scale if m is None else scale * m))
    return plan


def _unseen(scale: Any, cls: Any) -> Any:
    """1 where the (masked) inverse sensitivity ``scale`` is 0, else 0: coefficients that the data of an update do
    not see (``Aᵀ 1 = 0``, e.g. between the LORs of one PET view) keep their value, since those data say nothing
    about them (outside the mask they are 0 and stay 0)."""
    return dr.select(scale > 0, cls(0), cls(1))


def _start(p: Problem, x0: Any, m: Any) -> Any:
    """The start ``x0`` (default ones), masked; refused unless non-negative with a positive entry, since the
    multiplicative updates keep a zero at zero and flip the sign of nothing."""
    x = p.start(x0, 1.0)
    if m is not None:
        x = x * m
    low, high = float(dr.min(dr.detach(x))[0]), float(dr.max(dr.detach(x))[0])
    if low < 0 or not high > 0:
        raise ValueError(
            f"{p.name}: x0 must be non-negative with at least one positive entry (inside the mask), got values "
            f"in [{low}, {high}]; EM updates are multiplicative: zeros stay zero and negative starts are meaningless"
        )
    return x


@torch_autograd
def mlem(
    A: Projector,
    y: Any,
    x0: Any = None,
    niter: int = 50,
    callback: Callback | None = None,
    progress: bool = True,
    *,
    mask: Any = None,
    additive: Any = None,
) -> Any:
    """MLEM: ``x ← x / (Aᵀ 1) · Aᵀ (y / (A x + s))``, the maximum-likelihood iteration for
    ``y ~ Poisson(A x + s)``; coefficients that no ray sees (``Aᵀ 1 = 0``) keep their start value.

    Args:
        A, y, niter, callback, progress: as in :func:`drct.recon.sirt`.
        x0: a positive start (default ones; zeros stay zero).
        mask: volume-shaped 0/1 array; coefficients outside stay 0.
        additive: ``s``, known non-negative expected counts added to ``A x`` (scatter, e.g.
            :func:`drct.emission.tew_scatter`, or randoms), shaped like ``y``; default none.

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((32, 32))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 48, endpoint=False), 48), basis="voxel")
        >>> x = ct.phantoms.shepp_logan(vg)
        >>> rec = ct.recon.mlem(A, A(x), niter=50, progress=False)
        >>> bool(rec.min() >= 0 and np.linalg.norm(rec - x) < 0.5 * np.linalg.norm(x))
        True
    """
    p = Problem(A, y, "mlem")
    _check_data(p)
    niter = check_niter(niter, "mlem")
    m = p.mask(mask)
    s = _additive(p, additive)
    sens = safe_inverse(_sensitivity(p, dr.width(p.y)), p.t.Float)
    if m is not None:
        sens = sens * m
    x = _start(p, x0, m)
    ax = p.forward(x) + s
    keep = _unseen(sens, p.t.Float)
    for k in steps(niter, progress, "mlem"):
        x = x * (sens * p.adjoint(_ratio(p.y, ax, p.t.Float)) + keep)
        ax = p.forward(x) + s
        dr.eval(x, ax)
        if report(callback, p, k, x, p.y - ax):
            break
    return p.output(x)


@torch_autograd
def osem(
    A: Projector,
    y: Any,
    x0: Any = None,
    niter: int = 10,
    callback: Callback | None = None,
    progress: bool = True,
    *,
    subsets: int = 8,
    mask: Any = None,
    additive: Any = None,
) -> Any:
    """OSEM: MLEM updates over ordered subsets of views (interleaved); ``subsets=1`` is MLEM. A subset's update
    leaves the coefficients it does not see (zero subset sensitivity) unchanged.

    Args:
        A, y, x0, niter, callback, progress, mask, additive: as in :func:`mlem`.
        subsets: number of ordered subsets.

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((32, 32))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 48, endpoint=False), 48), basis="voxel")
        >>> x = ct.phantoms.shepp_logan(vg)
        >>> rec = ct.recon.osem(A, A(x), niter=10, subsets=6, progress=False)
        >>> bool(np.linalg.norm(rec - x) < 0.5 * np.linalg.norm(x))
        True
    """
    p = Problem(A, y, "osem")
    _check_data(p)
    niter = check_niter(niter, "osem")
    m = p.mask(mask)
    s = _additive(p, additive)
    plan = _subset_plan(p, subsets, additive, s, m)
    x = _start(p, x0, m)
    for k in steps(niter, progress, "osem"):
        for op, y_s, s_s, _, scale in plan:
            keep = _unseen(scale, p.t.Float)
            x = x * (scale * p.adjoint(_ratio(y_s, p.forward(x, op) + s_s, p.t.Float), op) + keep)
            dr.eval(x)
        if callback is not None and report(callback, p, k, x, p.y - p.forward(x) - s):
            break
    return p.output(x)
