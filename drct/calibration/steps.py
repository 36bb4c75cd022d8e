"""The geometry steps of the calibration with the volume held fixed: Levenberg–Marquardt (with a quasi-Newton step
for the reduced loss), Adam, and the Gauss–Newton standard deviations, all kept off the gauge directions."""

from __future__ import annotations

from typing import Any

import numpy as np

from .linalg import Gauge, normal_equations
from .problem import LevelProblem


def subspace(gauge: Gauge | None, free: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Orthonormal basis (in the coordinates ``d * theta[free]``) of the steps that keep off the gauge.

    Example:
        >>> import numpy as np
        >>> from drct.calibration.linalg import Gauge
        >>> from drct.calibration.steps import subspace
        >>> along = np.array([[1.0, 1.0, 0.0]]) / np.sqrt(2)  # moving theta[0] and theta[1] together: invisible
        >>> gauge = Gauge(directions=along, fixed=[], constrained=along, norms=np.ones(3), report=[])
        >>> B = subspace(gauge, np.arange(3), np.ones(3))
        >>> B.shape, bool(np.allclose(along @ B, 0.0)), bool(np.allclose(B.T @ B, np.eye(2)))
        ((3, 2), True, True)
    """
    n = free.size
    if gauge is None or gauge.constrained.shape[0] == 0:
        return np.eye(n)
    c = gauge.constrained[:, free] * (gauge.norms[free] / d)
    q, _ = np.linalg.qr(c.T)
    return np.linalg.svd(np.eye(n) - q @ q.T)[0][:, : n - q.shape[1]]


def lm_step(
    prob: LevelProblem,
    theta: np.ndarray,
    x: np.ndarray,
    loss: float,
    free: np.ndarray,
    gauge: Gauge | None,
    mu: float,
    memory: dict[str, Any],
) -> tuple[np.ndarray, float, float, np.ndarray, np.ndarray | None]:
    """One Levenberg–Marquardt step with the volume fixed, and a quasi-Newton step for the reduced loss.

    Returns ``(theta, loss, mu, J^T J, theta_qn)``; theta is unchanged if no step helped. The volume adapts to
    the geometry, so the *reduced* loss (volume re-fitted) is flatter than ``J^T J`` says, most along the
    directions the volume can imitate. ``memory`` keeps a correction ``C`` of ``J^T J`` updated by BFGS from the
    gradients ``J^T r`` of successive iterations (which are gradients of the reduced loss once the volume is
    re-fitted); ``theta_qn`` is the step of ``J^T J + C``, for the caller to try with a re-fitted volume.
    """
    r = prob.residual(theta, x)
    H, g = normal_equations(prob.jacobian(theta, x), r)
    Hf, gf = H[np.ix_(free, free)], g[free]
    n = theta.size
    C = memory.get("C", np.zeros((n, n)))
    B = Hf + C[np.ix_(free, free)]
    if "theta" in memory:
        step = (theta - memory["theta"])[free]
        change = (g - memory["g"])[free]
        curvature = float(step @ change)
        if curvature > 1e-12 * np.linalg.norm(step) * np.linalg.norm(change):
            Bs = B @ step
            B = B - np.outer(Bs, Bs) / float(step @ Bs) + np.outer(change, change) / curvature
    B = 0.5 * (B + B.T)
    if np.linalg.eigvalsh(B).min() <= 0:  # keep the model convex: start again from J^T J
        B = Hf.copy()
    C = np.zeros((n, n))
    C[np.ix_(free, free)] = B - Hf
    memory["C"], memory["theta"], memory["g"] = C, theta.copy(), g.copy()
    d = np.sqrt(np.maximum(np.diag(Hf), 1e-300))
    Bm = subspace(gauge, free, d)

    def solve(M: np.ndarray, damping: float) -> np.ndarray:
        Mb = Bm.T @ (M / np.outer(d, d)) @ Bm
        z = np.linalg.solve(Mb + damping * np.eye(Mb.shape[0]), -(Bm.T @ (gf / d)))
        out = theta.copy()
        out[free] += (Bm @ z) / d
        return out

    theta_qn = solve(B, 1e-10) if np.any(C) else None
    for _ in range(6):
        trial = solve(Hf, mu)
        trial_loss = prob.loss(trial, x)
        if trial_loss < loss:
            return trial, trial_loss, max(mu / 3, 1e-10), H, theta_qn
        mu *= 4
    return theta, loss, mu, H, theta_qn


def adam_update(
    prob: LevelProblem,
    theta: np.ndarray,
    x: np.ndarray,
    free: np.ndarray,
    gauge: Gauge | None,
    state: dict[str, Any],
    steps: int,
    lr: float,
) -> tuple[np.ndarray, float]:
    """``steps`` Adam steps in units of the model's scales (lr = step length in 'pixels')."""
    scale = prob.model.scale
    for _ in range(steps):
        _, grad = prob.gradient(theta, x)
        g = np.zeros_like(theta)
        g[free] = grad[free] * scale[free]
        if gauge is not None and gauge.constrained.shape[0]:
            c = gauge.constrained * (gauge.norms / np.maximum(gauge.norms, 1e-300))  # unit rows in theta
            cs = c * scale  # directions in scaled coordinates
            q, _ = np.linalg.qr(cs.T)
            g -= q @ (q.T @ g)
        state["t"] += 1
        state["m"] = 0.9 * state["m"] + 0.1 * g
        state["v"] = 0.999 * state["v"] + 0.001 * g * g
        mhat = state["m"] / (1 - 0.9 ** state["t"])
        vhat = state["v"] / (1 - 0.999 ** state["t"])
        theta = theta - lr * scale * mhat / (np.sqrt(vhat) + 1e-12)
    return theta, prob.loss(theta, x)


def uncertainty(
    prob: LevelProblem,
    theta: np.ndarray,
    x: np.ndarray,
    free: np.ndarray,
    gauge: Gauge | None,
    H: np.ndarray | None,
    optimizer: str,
) -> np.ndarray | None:
    """Standard deviations from the Gauss–Newton covariance ``σ² (J^T J)^-1`` (volume held fixed)."""
    if free.size == 0:
        return None
    r = prob.residual(theta, x)
    if H is None or optimizer != "lm" or H.shape[0] != theta.size:
        H, _ = normal_equations(prob.jacobian(theta, x), r)
    m = r.size
    sigma2 = float(np.vdot(r, r)) / max(m - free.size, 1)
    Hf = H[np.ix_(free, free)]
    d = np.sqrt(np.maximum(np.diag(Hf), 1e-300))
    B = subspace(gauge, free, d)
    cov_n = B @ np.linalg.pinv(B.T @ (Hf / np.outer(d, d)) @ B) @ B.T
    std = np.zeros(theta.size)
    std[free] = np.sqrt(np.maximum(np.diag(cov_n), 0.0) * sigma2) / d
    return std
