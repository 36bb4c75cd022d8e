"""Total-variation regularised least squares with FISTA: ``min ½||A x - y||² + λ TV(x)`` (optionally ``x ≥ 0``).

TV is the isotropic total variation on the coefficient grid (forward differences in index units, zero flux at
the border). Each FISTA step takes a gradient step of ``1/L`` (``L = ||A||²`` from a power iteration) and the
proximal map of ``λ/L · TV`` computed by the fast gradient projection of Beck and Teboulle on the dual, warm
started from the previous step.
"""

from __future__ import annotations

import math
from typing import Any

import drjit as dr
import numpy as np

from ..krylov import power_iteration
from ..projector import Projector
from ._common import Callback, Problem, check_niter, check_positive, item, report, safe_inverse, steps, torch_autograd


class _Grid:
    """Forward differences and their exact adjoint on a flat array of ``shape``."""

    def __init__(self, p: Problem) -> None:
        shape = p.A.domain_shape
        self.t = p.t
        size = int(np.prod(shape))
        index = np.arange(size, dtype=np.int64)
        self.axes = []
        stride = 1
        for n in reversed(shape):
            coord = (index // stride) % n
            fwd_ok = coord < n - 1
            bwd_ok = coord > 0
            self.axes.append(
                (
                    p.t.UInt(np.where(fwd_ok, index + stride, index).astype(np.uint32)),
                    p.t.UInt(np.where(bwd_ok, index - stride, index).astype(np.uint32)),
                    p.t.Bool(fwd_ok),
                    p.t.Bool(bwd_ok),
                )
            )
            stride *= n
        self.lipschitz = 4.0 * len(shape)

    def grad(self, x: Any) -> list[Any]:
        out = []
        for nxt, _, ok, _ in self.axes:
            out.append(dr.select(ok, dr.gather(self.t.Float, x, nxt) - x, self.t.Float(0)))
        return out

    def grad_adjoint(self, g: list[Any]) -> Any:
        total = dr.zeros(self.t.Float, dr.width(g[0]))
        for (_, prev, ok, back_ok), gk in zip(self.axes, g, strict=True):
            total += dr.select(back_ok, dr.gather(self.t.Float, gk, prev), self.t.Float(0))
            total -= dr.select(ok, gk, self.t.Float(0))
        return total


def _norm_squared(p: Problem, iterations: int = 20) -> float:
    """``||A||²`` by the power iteration on ``Aᵀ A`` (:func:`drct.krylov.power_iteration` on flat Dr.Jit arrays,
    detached; 2% safety margin)."""

    def normal(v: Any) -> Any:
        dr.eval(v)  # once, not inside every gather of the projection
        return p.adjoint(p.forward(v))

    with dr.suspend_grad():
        start = p.t.Float(np.random.default_rng(0).random(p.A.vg.size).astype(p.t.np_dtype))
        value = power_iteration(normal, start, lambda w: math.sqrt(max(item(dr.sum(w * w)), 0.0)), iterations)
    if value == 0:
        raise ValueError("fista_tv: A is zero on this volume (no ray meets it)")
    return 1.02 * value


@torch_autograd
def fista_tv(
    A: Projector,
    y: Any,
    x0: Any = None,
    niter: int = 50,
    callback: Callback | None = None,
    progress: bool = True,
    *,
    lam: float | None = None,
    nonneg: bool = True,
    mask: Any = None,
    tv_iterations: int = 10,
    lipschitz: float | None = None,
) -> Any:
    """FISTA for ``min ½||A x - y||² + λ TV(x)``, with ``x ≥ 0`` (``nonneg``) and a support ``mask``.

    Args:
        A, y, x0, niter, callback, progress: as in :func:`drct.recon.sirt` (the callback's residual costs one
            extra projection per iteration).
        lam: the TV weight ``λ`` (units of ``||A x - y||²`` per unit of TV: scale it with your data). Default:
            ``3e-4 · L · max|x_SIRT1|`` (mild; tune it), with ``x_SIRT1`` one SIRT step from zero and ``L = ||A||²``.
        nonneg: constrain ``x ≥ 0``.
        mask: volume-shaped 0/1 array; coefficients outside stay 0.
        tv_iterations: dual iterations of the TV proximal map per FISTA step.
        lipschitz: ``||A||²`` if known (it costs 20 ``Aᵀ A`` products otherwise); an underestimate diverges.

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((32, 32))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 24, endpoint=False), 48), basis="voxel")
        >>> x = ct.phantoms.shepp_logan(vg)
        >>> rec = ct.recon.fista_tv(A, A(x), niter=30, progress=False)
        >>> bool(np.linalg.norm(rec - x) < 0.5 * np.linalg.norm(x))
        True
    """
    p = Problem(A, y, "fista_tv")
    niter = check_niter(niter, "fista_tv")
    inner = check_niter(tv_iterations, "fista_tv (tv_iterations)")
    m = p.mask(mask)
    grid = _Grid(p)
    lip = _norm_squared(p) if lipschitz is None else check_positive(lipschitz, "fista_tv", "lipschitz")
    if lam is None:
        with dr.suspend_grad():
            row = p.row_inverse(p.forward(p.full(1.0)))
            col = safe_inverse(p.adjoint(dr.full(p.t.Float, 1.0, dr.width(p.y))), p.t.Float)
            scale = item(dr.max(dr.abs(col * p.adjoint(row * dr.detach(p.y)))))
        lam = 3e-4 * lip * scale
    lam = float(lam) if lam == 0 else check_positive(lam, "fista_tv", "lam")
    mu = lam / lip  # TV weight of the proximal map
    dual = [dr.zeros(p.t.Float, A.vg.size) for _ in grid.axes]

    def constrain(v: Any) -> Any:
        if nonneg:
            v = dr.maximum(v, 0)
        return v if m is None else v * m

    def prox(b: Any) -> Any:
        nonlocal dual
        if mu == 0:
            return constrain(b)
        q = list(dual)
        prev = list(dual)
        t = 1.0
        step = 1.0 / (grid.lipschitz * mu)
        for _ in range(inner):
            xk = constrain(b - mu * grid.grad_adjoint(q))
            g = grid.grad(xk)
            cand = [qi + step * gi for qi, gi in zip(q, g, strict=True)]
            length: Any = dr.sqrt(sum(dr.square(c) for c in cand))
            scale = dr.rcp(dr.maximum(length, 1.0))
            new = [c * scale for c in cand]
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            q = [n + ((t - 1) / t_new) * (n - o) for n, o in zip(new, prev, strict=True)]
            prev, t = new, t_new
            dr.eval(q, prev)
        dual = prev
        return constrain(b - mu * grid.grad_adjoint(prev))

    x = constrain(p.start(x0))
    z, t = x, 1.0
    for k in steps(niter, progress, "fista_tv"):
        x_new = prox(z - (1.0 / lip) * p.adjoint(p.forward(z) - p.y))
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        z = x_new + ((t - 1) / t_new) * (x_new - x)
        x, t = x_new, t_new
        dr.eval(x, z)
        if callback is not None and report(callback, p, k, x, p.y - p.forward(x)):
            break
    return p.output(x)
