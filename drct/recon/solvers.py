"""Least-squares solvers: SIRT, CGLS and OS-SART.

All share the signature ``(A, y, x0=None, niter=..., callback=None, progress=True, **options)``: ``y`` and
``x0`` may be numpy arrays, torch tensors or Dr.Jit tensors and the result is the kind of ``y``. With Dr.Jit
tensors that carry gradients the whole unrolled solver is differentiable (Dr.Jit AD): each iteration keeps
O(volume + sinogram) for the backward pass, since ``A`` and ``A.T`` are custom ops with no graph inside
(measured: about 4 volume/sinogram-sized arrays per SIRT iteration). Torch tensors that require gradients go
through Dr.Jit AD, so torch autograd differentiates the unrolled solver too.
"""

from __future__ import annotations

from typing import Any

import drjit as dr

from ..krylov import CGLSOperations, CGLSState, cgls_iterate, cgls_start
from ..projector import Projector
from ._common import (
    Callback,
    Problem,
    check_niter,
    check_positive,
    dot,
    item,
    report,
    safe_inverse,
    steps,
    torch_autograd,
)


def _project(x: Any, nonneg: bool, mask: Any | None) -> Any:
    if nonneg:
        x = dr.maximum(x, 0)
    if mask is not None:
        x = x * mask
    return x


@torch_autograd
def sirt(
    A: Projector,
    y: Any,
    x0: Any = None,
    niter: int = 100,
    callback: Callback | None = None,
    progress: bool = True,
    *,
    relaxation: float = 1.0,
    nonneg: bool = False,
    mask: Any = None,
) -> Any:
    """SIRT: ``x ← x + λ C Aᵀ R (y - A x)`` with ``R = 1/(A 1)``, ``C = 1/(Aᵀ 1)``.

    Converges (for ``0 < λ < 2``) to the minimiser of ``||A x - y||²_R`` closest to ``x0`` in the ``C⁻¹`` norm —
    the least-squares solution when the data are consistent.

    Args:
        A: the projector.
        y: projections, shape ``A.range_shape``.
        x0: start (default zeros).
        niter: iterations.
        callback: ``callback(k, x, ||A x - y||)`` after every iteration; return True to stop.
        progress: show a tqdm progress bar.
        relaxation: ``λ`` in (0, 2).
        nonneg: clip negative values after every update.
        mask: volume-shaped 0/1 (or bool) array; coefficients outside it stay 0.

    Returns:
        The reconstruction, the same kind of array as ``y``.

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((32, 32))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 48, endpoint=False), 48), basis="voxel")
        >>> x = ct.phantoms.shepp_logan(vg)
        >>> rec = ct.recon.sirt(A, A(x), niter=50, progress=False)
        >>> bool(np.linalg.norm(rec - x) < 0.5 * np.linalg.norm(x))
        True
    """
    p = Problem(A, y, "sirt")
    niter = check_niter(niter, "sirt")
    lam = check_positive(relaxation, "sirt", "relaxation")
    if lam >= 2:
        raise ValueError(f"sirt: relaxation must be in (0, 2) for convergence, got {relaxation!r}")
    m = p.mask(mask)
    row = p.row_inverse(p.forward(p.full(1.0) if m is None else m))
    col = safe_inverse(p.adjoint(dr.full(p.t.Float, 1.0, dr.width(p.y))), p.t.Float) * lam
    if m is not None:
        col = col * m
    x = _project(p.start(x0), nonneg, m)
    r = p.y - p.forward(x)
    for k in steps(niter, progress, "sirt"):
        x = _project(x + col * p.adjoint(row * r), nonneg, m)
        r = p.y - p.forward(x)
        dr.eval(x, r)
        if report(callback, p, k, x, r):
            break
    return p.output(x)


@torch_autograd
def cgls(
    A: Projector,
    y: Any,
    x0: Any = None,
    niter: int = 20,
    callback: Callback | None = None,
    progress: bool = True,
    *,
    mask: Any = None,
) -> Any:
    """CGLS: conjugate gradients on the normal equations ``Aᵀ A x = Aᵀ y``; ``||A x - y||`` decreases
    monotonically. No non-negativity (it would break the Krylov recursion); a ``mask`` restricts the unknowns.
    The iteration is :mod:`drct.krylov`'s (the one CGLS of drct) on flat Dr.Jit arrays.

    Args:
        A, y, x0, niter, callback, progress: as in :func:`sirt`.
        mask: volume-shaped 0/1 array; solves for the coefficients inside it only.

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((32, 32))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 48, endpoint=False), 48), basis="voxel")
        >>> y = A(ct.phantoms.shepp_logan(vg))
        >>> res = []
        >>> _ = ct.recon.cgls(A, y, niter=10, callback=lambda k, x, r: res.append(r), progress=False)
        >>> all(b <= a for a, b in zip(res, res[1:]))
        True
    """
    p = Problem(A, y, "cgls")
    niter = check_niter(niter, "cgls")
    m = p.mask(mask)

    def restrict(v: Any) -> Any:
        return v if m is None else v * m

    x = restrict(p.start(x0))
    ops = _CGLSOperations(p, restrict)
    state = cgls_start(ops, x, p.y - p.forward(x))
    dr.eval(state.x, state.r, state.s, state.gamma)

    def after(k: int, s: CGLSState[Any, Any]) -> bool:
        dr.eval(s.x, s.r, s.s, s.p, s.gamma)
        return report(callback, p, k, s.x, s.r)

    return p.output(cgls_iterate(ops, state, steps(niter, progress, "cgls"), after).x)


class _CGLSOperations(CGLSOperations[Any, Any]):
    """CGLS on flat Dr.Jit arrays: the unknowns restricted to the mask, the data's inner products and step
    lengths summed over the processes sharing ``A``'s views (a sharded ``A``), scalars kept in the AD graph."""

    def __init__(self, p: Problem, restrict: Any) -> None:
        super().__init__(p.forward, lambda r: restrict(p.adjoint(r)), dot, p.data_dot)
        self.A = p.A

    def nonzero(self, c: Any) -> bool:
        return item(c) != 0

    def descend(self, r: Any, alpha: Any, q: Any) -> tuple[Any, Any]:
        r = r - self.A.replicate(alpha) * q  # alpha is every rank's, q this rank's share (a sharded A)
        return r, self.adjoint(r)


@torch_autograd
def os_sart(
    A: Projector,
    y: Any,
    x0: Any = None,
    niter: int = 10,
    callback: Callback | None = None,
    progress: bool = True,
    *,
    subsets: int = 10,
    relaxation: float = 1.0,
    nonneg: bool = False,
    mask: Any = None,
) -> Any:
    """OS-SART: SART updates over ordered subsets of views (interleaved: view ``i`` in subset ``i % subsets``);
    one iteration visits every subset once. ``subsets=1`` is SIRT.

    Args:
        A, y, x0, niter, callback, progress, relaxation, nonneg, mask: as in :func:`sirt` (the callback's
            residual costs one extra projection per iteration).
        subsets: number of ordered subsets.

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((32, 32))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 48, endpoint=False), 48), basis="voxel")
        >>> x = ct.phantoms.shepp_logan(vg)
        >>> rec = ct.recon.os_sart(A, A(x), niter=5, subsets=8, progress=False)
        >>> bool(np.linalg.norm(rec - x) < 0.5 * np.linalg.norm(x))
        True
    """
    p = Problem(A, y, "os_sart")
    niter = check_niter(niter, "os_sart")
    lam = check_positive(relaxation, "os_sart", "relaxation")
    if lam >= 2:
        raise ValueError(f"os_sart: relaxation must be in (0, 2), got {relaxation!r}")
    m = p.mask(mask)
    plan = []
    for op, index in p.subsets(subsets):
        row = p.row_inverse(p.forward(p.full(1.0) if m is None else m, op))
        col = safe_inverse(p.adjoint(dr.full(p.t.Float, 1.0, dr.width(index)), op), p.t.Float) * lam
        plan.append((op, p.gather(p.y, index), row, col if m is None else col * m))
    x = _project(p.start(x0), nonneg, m)
    for k in steps(niter, progress, "os_sart"):
        for op, y_s, row, col in plan:
            x = _project(x + col * p.adjoint(row * (y_s - p.forward(x, op)), op), nonneg, m)
            dr.eval(x)
        if callback is not None and report(callback, p, k, x, p.y - p.forward(x)):
            break
    return p.output(x)
