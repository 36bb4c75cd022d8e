"""The geometry steps of the calibration, as strategies with one interface (:class:`StepStrategy`):
Levenberg–Marquardt with the volume held fixed plus a quasi-Newton step for the reduced loss
(:class:`LevenbergMarquardt`), or Adam on reverse-mode gradients (:class:`Adam`); and the Gauss–Newton standard
deviations. All keep off the gauge directions (:mod:`drct.calibration.gauge`).

Example:
    >>> from drct.calibration.steps import make_strategy
    >>> type(make_strategy("adam", adam_steps=5, adam_lr=0.2)).__name__
    'Adam'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .gauge import Gauge, constraint_rows, subspace
from .linalg import normal_equations
from .problem import LevelProblem, ridge_cgls


@dataclass
class Step:
    """The outcome of one outer iteration's geometry step: the new ``theta``, the volume and the loss; ``refit``
    says the volume still has to be re-fitted to ``theta`` (False when the strategy already did)."""

    theta: np.ndarray
    x: np.ndarray
    loss: float
    refit: bool


class StepStrategy(Protocol):
    """One geometry step per outer iteration, with state kept across the iterations of a level."""

    hessian: np.ndarray | None  # J^T J of the last step, if the strategy forms it (reused for the uncertainties)

    def start_level(self, size: int) -> None:
        """Reset the per-level state (damping, curvature memory, moments) for ``size`` unknowns."""
        ...

    def step(
        self, prob: LevelProblem, theta: np.ndarray, x: np.ndarray, loss: float, free: np.ndarray, gauge: Gauge | None
    ) -> Step:
        """One step from ``theta`` with the volume ``x`` (loss ``loss``), moving only ``free`` entries."""
        ...


@dataclass
class LevenbergMarquardt:
    """Levenberg–Marquardt on forward-mode Jacobians; with ``accelerate``, a quasi-Newton step on the reduced loss
    (volume re-fitted with ``recon_iterations`` CGLS iterations) is kept when it lowers the loss."""

    accelerate: bool = True
    recon_iterations: int = 20
    hessian: np.ndarray | None = None
    mu: float = 1e-6
    memory: dict[str, Any] = field(default_factory=dict)

    def start_level(self, size: int) -> None:
        self.mu, self.memory = 1e-6, {}

    def step(
        self, prob: LevelProblem, theta: np.ndarray, x: np.ndarray, loss: float, free: np.ndarray, gauge: Gauge | None
    ) -> Step:
        previous = loss
        theta, loss, self.mu, self.hessian, theta_qn = lm_step(prob, theta, x, loss, free, gauge, self.mu, self.memory)
        if theta_qn is not None and self.accelerate:  # quasi-Newton step on the reduced loss, if it helps
            x_qn = ridge_cgls(prob.operator(theta_qn), prob.y, x, self.recon_iterations, prob.ridge)
            loss_qn = prob.loss(theta_qn, x_qn)
            if loss_qn < previous:
                return Step(theta_qn, x_qn, loss_qn, refit=False)  # x is already re-fitted
        return Step(theta, x, loss, refit=True)


@dataclass
class Adam:
    """``steps`` Adam steps per outer iteration on reverse-mode gradients, step length ``lr`` in units of one
    pixel's effect (the model's scales)."""

    steps: int = 5
    lr: float = 0.2
    hessian: np.ndarray | None = None
    state: dict[str, Any] = field(default_factory=dict)

    def start_level(self, size: int) -> None:
        self.state = {"t": 0, "m": np.zeros(size), "v": np.zeros(size)}

    def step(
        self, prob: LevelProblem, theta: np.ndarray, x: np.ndarray, loss: float, free: np.ndarray, gauge: Gauge | None
    ) -> Step:
        if not self.state:
            self.start_level(theta.size)
        theta, loss = adam_update(prob, theta, x, free, gauge, self.state, self.steps, self.lr)
        return Step(theta, x, loss, refit=True)


def make_strategy(
    optimizer: str, accelerate: bool = True, recon_iterations: int = 20, adam_steps: int = 5, adam_lr: float = 0.2
) -> StepStrategy:
    """The strategy named by ``optimizer``: ``"lm"`` or ``"adam"``."""
    if optimizer == "lm":
        return LevenbergMarquardt(accelerate, recon_iterations)
    if optimizer == "adam":
        return Adam(adam_steps, adam_lr)
    raise ValueError(f"optimizer must be 'lm' or 'adam', got {optimizer!r}")


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
    """``steps`` Adam steps in units of the model's scales (lr = step length in 'pixels'), off the gauge.

    In the scaled coordinates ``s = theta / scale`` the removed combinations are the rows
    ``constraint_rows(gauge) * scale``: both the gradient (so the moments build up nothing along them) and the
    step (Adam's per-entry normalisation would turn a projected gradient off them again) are projected off.
    """
    scale = prob.model.scale
    rows = constraint_rows(gauge)
    q = np.linalg.qr((rows * scale).T)[0] if rows.shape[0] else None  # orthonormal, scaled coordinates
    for _ in range(steps):
        _, grad = prob.gradient(theta, x)
        g = np.zeros_like(theta)
        g[free] = grad[free] * scale[free]
        if q is not None:
            g -= q @ (q.T @ g)
        state["t"] += 1
        state["m"] = 0.9 * state["m"] + 0.1 * g
        state["v"] = 0.999 * state["v"] + 0.001 * g * g
        mhat = state["m"] / (1 - 0.9 ** state["t"])
        vhat = state["v"] / (1 - 0.999 ** state["t"])
        direction = mhat / (np.sqrt(vhat) + 1e-12)
        if q is not None:
            direction -= q @ (q.T @ direction)
        theta = theta - lr * scale * direction
    return theta, prob.loss(theta, x)


def uncertainty(
    prob: LevelProblem,
    theta: np.ndarray,
    x: np.ndarray,
    free: np.ndarray,
    gauge: Gauge | None,
    H: np.ndarray | None,
) -> np.ndarray | None:
    """Standard deviations from the Gauss–Newton covariance ``σ² (J^T J)^-1`` (volume held fixed); ``H`` is a
    ``J^T J`` to reuse (the last Levenberg–Marquardt step's), or None to form it here."""
    if free.size == 0:
        return None
    r = prob.residual(theta, x)
    if H is None or H.shape[0] != theta.size:
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
