"""Can the data tell? Identifiability and model-error diagnostics of a calibration, and uncertainties that include
the volume's adaptation and the residual's structure.

The calibration's loss is minimised over the geometry ``θ`` *and* the volume ``x``. Holding ``x`` fixed (as
``J^T J`` does) hides the directions the volume can imitate (a magnification against a scaled object, a vertical
detector shift against a vertical object shift seen through a small cone angle): the data then look decisive
about a parameter they barely constrain. Here every free global parameter's Jacobian column ``J_i`` is
*reduced*: its projection on the rigid motions of the object (the pose columns, which the reconstruction absorbs
exactly) is removed, then the best imitation of what is left by a change of the volume (ridge CGLS on ``L A``, all
columns in one batched solve) is subtracted. The reduced columns ``J̃`` give

* the **Schur complement** ``S = J̃^T J̃``, the curvature of the loss with the volume re-fitted;
* per parameter the **retained fraction** ``1 / (D^-1 S D^-1)^-1_ii`` (``D`` the fixed-volume column norms): the
  share of its signal that neither the volume nor the other parameters can imitate (1: fully its own; 1e-4: the
  data determine it 100× less well than ``J^T J`` suggests);
* the **weak combinations**: eigenvectors of ``D^-1 S D^-1`` with small eigenvalues;
* the **covariance** as a sandwich ``S^-1 J̃^T C J̃ S^-1`` whose noise covariance ``C`` is the residual's own
  stationary autocovariance (Bartlett-windowed, across the detector and the views): correlated misfit (model
  error, discretisation, the low-pass) widens the uncertainty by how much it looks like the parameters' signal;
  white noise gives back ``σ² S^-1``. The residual's variance is corrected for the degrees of freedom the volume
  used;
* with ``volume_iterations``, the **noise the fitted volume carries** taken off: the Jacobian at a noisy
  reconstruction holds the noise's gradient too and over-counts the information (:func:`noise_columns`);
* the **pending step** ``S^-1 J̃^T r`` in units of σ (a Gauss–Newton step still left to take: not converged;
  the calibration takes it once, :class:`Diagnostics` ``theta_step``, when the analysis ran on the level it
  fitted; on a coarser level the step measures how far that level's own minimum lies, so it is only reported);
* the **bias bound** ``|r_sys| sqrt((S^-1)_ii)``: the most the residual's part beyond the data's noise floor
  (:func:`noise_floor`) could move each parameter, a model error no local σ shows;
* the residual's **whiteness**: its normalised lag-1 autocorrelation across the detector and between views.

A parameter is *undetermined* when its retained fraction is below ``tol``, when ``2σ`` exceeds one pixel's worth
of its effect (the data cannot place it to within a detector pixel) or when its bias bound exceeds half of that
(:data:`BIAS_LIMIT`); the calibration warns
(:class:`CalibrationWarning`) or refuses (:class:`UndeterminedParameterError`, naming it).

Example:
    >>> import numpy as np
    >>> from drct.calibration.diagnostics import sandwich_moments
    >>> rng = np.random.default_rng(0)
    >>> J = rng.normal(size=(2, 50, 40))  # two columns, 50 views x 40 pixels
    >>> r = 0.1 * rng.normal(size=(50, 40))  # white residual
    >>> M = sandwich_moments(J, r, (1, 1))  # lag 0 only: |r|^2 / m J^T J
    >>> bool(np.allclose(M, np.mean(r**2) * np.einsum("avr,bvr->ab", J, J)))
    True
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .gauge import Gauge, locate
from .problem import LevelProblem, ridge_cgls

BIAS_LIMIT = 0.5  # a systematic misfit that could move a parameter by half a pixel's worth: not determined


class CalibrationWarning(UserWarning):
    """A calibrated parameter is not trustworthy (not determined by the data, or the fit did not converge)."""


class UndeterminedParameterError(ValueError):
    """The data do not determine a parameter (``diagnostics="raise"``); ``result`` holds the full result anyway."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class Diagnostics:
    """What the diagnostics found (see the module docstring); one entry per analysed parameter in ``names``.

    Attributes:
        names: the analysed entries (free global parameters of the user).
        index: their theta indices.
        level: the level factor the analysis was made at.
        retained: fraction of each parameter's signal the volume, the pose and the other parameters cannot imitate.
        std: one-sigma uncertainty (theta units) with the volume re-fitted and the residual's structure.
        std_fixed_volume: ``σ² (J^T J)^-1`` (white noise, volume held fixed) for comparison.
        inflation: ``std`` over the same with white noise (how much the residual's structure widens it).
        pending: the Gauss–Newton step still left, in units of ``std``.
        step: that step itself (theta units, signed): where the re-fitted loss's local quadratic model has its
            minimum, relative to ``theta``.
        theta_step: the same step for all of theta (the object pose following the parameters).
        volume_step: the volume's change that goes with it (the imitation removed from the columns, undone).
        bias_bound: the most the residual's systematic part (what exceeds the data's noise floor) could move
            each parameter if it all looked like that parameter's signal: ``|r_sys| sqrt((S^-1)_ii)``.
        scale: one pixel's worth of effect per parameter (theta units).
        weak: the weak combinations: ``{"eigenvalue", "parameters": {name: weight}}``.
        residual: whiteness of the residual: lag-1 autocorrelations and the lag window used.
        undetermined: ``{name: reason}`` for the parameters the data do not determine (gauge-fixed ones too).
        unconverged: names whose pending step exceeds 1σ.
        seconds: the analysis's run time.
        std_statistical: ``std`` before a model-error term was added (:mod:`drct.calibration.misfit`), or None.
        model_check: what the model-error check found (:class:`~drct.calibration.misfit.WeightingCheck`), or None.
        fitted_level: whether the analysis ran on the level the geometry was fitted on. When not (a coarser level,
            ``diagnostic_size``), ``pending`` is the distance to that level's own minimum, which its coarser
            discretisation moves: no step is taken for it and ``unconverged`` stays empty.
    """

    names: list[str]
    index: np.ndarray
    level: int
    retained: np.ndarray
    std: np.ndarray
    std_fixed_volume: np.ndarray
    inflation: np.ndarray
    pending: np.ndarray
    scale: np.ndarray
    weak: list[dict[str, Any]] = field(default_factory=list)
    residual: dict[str, Any] = field(default_factory=dict)
    undetermined: dict[str, str] = field(default_factory=dict)
    unconverged: list[str] = field(default_factory=list)
    seconds: float = 0.0
    step: np.ndarray = field(default_factory=lambda: np.zeros(0))
    theta_step: np.ndarray = field(default_factory=lambda: np.zeros(0))
    volume_step: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bias_bound: np.ndarray = field(default_factory=lambda: np.zeros(0))
    std_statistical: np.ndarray | None = None
    model_check: Any = None
    fitted_level: bool = True

    def messages(self) -> list[str]:
        """One human-readable line per problem found (empty: nothing to warn about)."""
        out = [f"{name}: not determined by the data ({why})" for name, why in self.undetermined.items()]
        out += [
            f"{name}: not converged (a Gauss–Newton step of {self.pending[self.names.index(name)]:.1f}σ is left)"
            for name in self.unconverged
        ]
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        per = {
            n: {
                "retained_fraction": float(self.retained[k]),
                "std": float(self.std[k]),
                "std_fixed_volume": float(self.std_fixed_volume[k]),
                "inflation": float(self.inflation[k]),
                "pending_step_sigma": float(self.pending[k]),
                "bias_bound": float(self.bias_bound[k]) if self.bias_bound.size else None,
                "pixel_effect": float(self.scale[k]),
            }
            for k, n in enumerate(self.names)
        }
        return {
            "level": self.level,
            "fitted_level": self.fitted_level,
            "parameters": per,
            "weak_combinations": self.weak,
            "residual": self.residual,
            "undetermined": self.undetermined,
            "unconverged": self.unconverged,
            "seconds": self.seconds,
            "model_check": None if self.model_check is None else self.model_check.to_dict(self.names),
        }


def reduce_columns(
    prob: LevelProblem, theta: np.ndarray, columns: np.ndarray, iterations: int
) -> tuple[np.ndarray, np.ndarray]:
    """``columns`` (k, *data shape), weighted) minus their best imitation by a change of the volume: ``J - L A z``
    with ``z = argmin |L A z - J|^2 + ridge |z|^2`` (``iterations`` CGLS steps, all columns in one batch); and
    ``z`` (k, *volume shape)."""
    A = prob.operator(theta)
    J32 = columns.astype(np.float32)
    z = ridge_cgls(A, J32, np.zeros((columns.shape[0], *A.domain_shape), np.float32), iterations, prob.ridge)
    return columns - A(z).astype(np.float64), z


def lag_window(shape: tuple[int, ...], lowpass: float) -> tuple[int, ...]:
    """Bartlett lag-window half-widths per axis (views, then detector axes): wide enough for the low-pass's
    correlation (4σ) and growing slowly with the axis length (``2 n^(1/3)``), at most half the axis."""
    views, det = shape[0], shape[1:]
    out = [max(1, min(views // 2, math.ceil(2 * views ** (1 / 3))))]
    for n in det:
        out.append(max(1, min(n // 2, math.ceil(4 * lowpass) + math.ceil(2 * n ** (1 / 3)))))
    return tuple(out)


def sandwich_moments(J: np.ndarray, r: np.ndarray, lags: tuple[int, ...]) -> np.ndarray:
    """``J^T C J`` for ``J`` (k, *shape) and ``C`` the stationary covariance of the residual ``r`` (shape): its
    sample autocovariance, tapered by a Bartlett window of half-widths ``lags`` (which keeps ``C`` positive
    semi-definite). Lags of 1 everywhere give ``mean(r²) J^T J``."""
    fft = np.fft
    shape = r.shape
    pad = tuple(2 * n for n in shape)
    axes = tuple(range(len(shape)))
    spectrum = np.abs(fft.rfftn(r, pad, axes)) ** 2
    acov = fft.irfftn(spectrum, pad, axes) / r.size
    window = np.ones(pad)
    for axis, (n, lag) in enumerate(zip(pad, lags, strict=True)):
        k = np.minimum(np.arange(n), n - np.arange(n))  # circular lag index
        w = np.clip(1.0 - k / lag, 0.0, None)
        window *= w.reshape((1,) * axis + (n,) + (1,) * (len(pad) - axis - 1))
    weights = fft.rfftn(acov * window, None, axes).real
    M = np.zeros((J.shape[0], J.shape[0]))
    for b in range(J.shape[0]):
        CJ = fft.irfftn(fft.rfftn(J[b], pad, axes) * weights, pad, axes)[tuple(slice(0, n) for n in shape)]
        M[:, b] = J.reshape(J.shape[0], -1) @ CJ.reshape(-1)
    return 0.5 * (M + M.T)


def noise_columns(
    prob: LevelProblem,
    theta: np.ndarray,
    shape: tuple[int, ...],
    user: list[int],
    Q: np.ndarray | None,
    floor: float,
    iterations: int,
) -> tuple[np.ndarray, float]:
    """The user's Jacobian columns (k, rays; weighted, the pose projected out) at the volume that white noise of
    level ``floor`` alone reconstructs to (``iterations`` CGLS steps from zero, a fixed seed), and the residual
    energy that fit leaves (what the noise alone contributes to ``|r|^2``).

    The fitted volume is the true one plus a reconstruction of the noise, and the Jacobian at it carries that
    noise's gradient too: ``J^T J`` then over-counts what the data tell about the geometry (measured: σ 73–83% of
    σ at the true volume on 24² fan problems with 1% noise). The expected excess is this noise volume's ``J^T J``.
    """
    rng = np.random.default_rng(0)
    noise = prob.lowpass((floor * rng.standard_normal(prob.level.y.shape)).astype(np.float32))
    A = prob.operator(theta)
    dx = ridge_cgls(A, noise, np.zeros(shape, np.float32), iterations, prob.ridge)
    left = float(np.sum((noise - A(dx)).astype(np.float64) ** 2))  # the noise energy such a fit leaves
    cols = prob.jacobian(theta, dx)
    by_index = {int(s[0]): d for s, d in zip(cols.seeds, cols.data, strict=True) if s.size == 1}
    Jn = np.stack([by_index[i].reshape(-1).astype(np.float64) for i in user])
    return (Jn if Q is None else Jn - (Jn @ Q) @ Q.T), left


def noise_floor(y: np.ndarray) -> float:
    """The data's white-noise level, estimated robustly from second differences along each axis (views, detector
    rows and columns), the smallest of them: a median absolute deviation, so the object's edges (a minority of
    samples) do not count, and along the smoothest axis the signal's own curvature least. Correlated noise (a
    blurring detector) reads lower, and a coarse sampling of a detailed object higher.

    Example:
        >>> import numpy as np
        >>> y = np.linspace(0, 5, 200)[None, :] + np.random.default_rng(0).normal(scale=0.1, size=(50, 200))
        >>> round(noise_floor(y), 2)
        0.1
    """
    a = np.asarray(y, dtype=np.float64)
    levels = []
    for axis in range(a.ndim):
        if a.shape[axis] < 3:
            continue
        b = np.moveaxis(a, axis, -1)
        d2 = (b[..., :-2] - 2 * b[..., 1:-1] + b[..., 2:]) / math.sqrt(6.0)
        levels.append(float(np.median(np.abs(d2 - np.median(d2)))) / 0.6745)
    return min(levels, default=0.0)


def _lag1(r: np.ndarray, axis: int) -> float:
    a, b = np.take(r, np.arange(r.shape[axis] - 1), axis), np.take(r, np.arange(1, r.shape[axis]), axis)
    return float(np.sum(a * b) / max(float(np.sum(r * r)), 1e-300))


def analyse(
    prob: LevelProblem,
    theta: np.ndarray,
    x: np.ndarray,
    free: np.ndarray,
    gauge: Gauge | None,
    iterations: int = 20,
    tol: float = 1e-2,
    volume_iterations: int = 0,
) -> Diagnostics | None:
    """The diagnostics at ``theta`` with the fitted volume ``x`` (None when no free global parameter is left).

    ``volume_iterations``: the CGLS iterations ``x`` was fitted with; when given, the Jacobian's share of the
    noise ``x`` carries is removed from the covariance (:func:`noise_columns`)."""
    start = time.perf_counter()
    model = prob.model
    user = [int(i) for i in free if i < model.user_size and not locate(model, int(i))[0].per_view]
    pose = list(range(model.user_size, model.size))
    if not user:
        return None
    cols = prob.jacobian(theta, x)
    by_index = {int(s[0]): d for s, d in zip(cols.seeds, cols.data, strict=True) if s.size == 1}
    shape = prob.y.shape
    J = np.stack([by_index[i].reshape(shape) for i in user])
    norms = np.sqrt(np.einsum("kr,kr->k", J.reshape(len(user), -1), J.reshape(len(user), -1)))
    J1 = J.reshape(len(user), -1)
    follow = np.zeros((len(pose), len(user)))  # the pose change that goes with a unit change of each parameter
    Q = None  # an orthonormal basis of the pose columns
    if pose:  # a rigid motion of the object is exact to imitate: project its columns out first, exactly
        G = np.stack([by_index[i].reshape(-1) for i in pose])
        Q, R = np.linalg.qr(G.T)
        Q = Q[:, np.abs(np.diag(R)) > 1e-9 * max(float(np.abs(np.diag(R)).max()), 1e-300)]
        J1 = J1 - (J1 @ Q) @ Q.T
        follow = -np.linalg.lstsq(G.T, J.reshape(len(user), -1).T, rcond=None)[0]
    # then the volume's imitation of what is left (CGLS: the part a volume change can reproduce)
    Ju, z = reduce_columns(prob, theta, J1.reshape(J.shape), iterations)
    flat = Ju.reshape(len(user), -1)
    S = flat @ flat.T
    d = np.maximum(norms, 1e-300)
    Sn = S / np.outer(d, d)
    Sn_inv = np.linalg.pinv(Sn, rcond=1e-12, hermitian=True)
    retained = 1.0 / np.maximum(np.diag(Sn_inv), 1e-300)
    retained = np.clip(np.where(np.diag(Sn_inv) > 0, retained, 0.0), 0.0, 1.0)
    ev, V = np.linalg.eigh(Sn)
    names = [_name(model, i) for i in user]
    weak = []
    for j in np.flatnonzero(ev < max(tol, 1e-12)):
        vec = V[:, j]
        big = np.flatnonzero(np.abs(vec) > 0.05 * np.abs(vec).max())
        weak.append({"eigenvalue": float(ev[j]), "parameters": {names[k]: round(float(vec[k]), 4) for k in big}})
    r = prob.residual(theta, x).astype(np.float64).reshape(shape)
    m, dof = r.size, min(prob.level.vg.size, r.size // 2)
    lags = lag_window(shape, prob.lowpass.sigma)
    correction = m / max(m - dof, 1)
    M = sandwich_moments(Ju, r, lags) * correction
    curvature_inv = Sn_inv / np.outer(d, d)  # the loss's own curvature (the noisy volume's): for the step
    floor = noise_floor(prob.level.y)
    gain = prob.lowpass.noise_gain(prob.level.y.ndim)  # the low-pass's variance factor for white noise
    noise_left = m * floor**2 * gain / correction  # the noise energy a fit leaves in the residual (estimate)
    if volume_iterations > 0 and floor > 0:  # errors in variables: J at the noisy x over-counts the information
        Jn, noise_left = noise_columns(prob, theta, x.shape, user, Q, floor, volume_iterations)
        S_c, M_c = S - Jn @ Jn.T, M - sandwich_moments(Jn.reshape(len(user), *shape), r, lags) * correction
        if np.all(np.linalg.eigvalsh(S_c / np.outer(d, d)) > 0.1 * np.linalg.eigvalsh(Sn).min()):
            S, M = S_c, M_c
            Sn = S / np.outer(d, d)
            Sn_inv = np.linalg.pinv(Sn, rcond=1e-12, hermitian=True)
    white = float(np.mean(r * r)) * correction
    S_inv = Sn_inv / np.outer(d, d)
    cov = S_inv @ M @ S_inv
    std = np.sqrt(np.maximum(np.diag(cov), 0.0))
    std_white = np.sqrt(np.maximum(np.diag(S_inv) * white, 0.0))
    Jf = J.reshape(len(user), -1)
    JtJ = Jf @ Jf.T
    std_fixed = np.sqrt(np.maximum(np.diag(np.linalg.pinv(JtJ, hermitian=True)) * white, 0.0))
    systematic = math.sqrt(max(float(np.sum(r * r)) - noise_left, 0.0))
    bias_bound = systematic * np.sqrt(np.maximum(np.diag(S_inv), 0.0))
    misfit = math.sqrt(float(np.mean(r * r)) / max(floor**2 * gain, 1e-300))  # the residual over the noise floor
    step = -(curvature_inv @ (flat @ r.reshape(-1)))
    full = np.zeros(model.size)
    full[user] = step
    full[pose] = follow @ step
    volume_change = -np.tensordot(step, z.astype(np.float64), axes=1)
    pending = np.abs(step) / np.maximum(std, 1e-300)
    scale = np.asarray(model.scale)[user]
    undetermined: dict[str, str] = {}
    for k, name in enumerate(names):
        if retained[k] < tol:
            undetermined[name] = (
                f"only {retained[k]:.1e} of its signal cannot be imitated by the volume, the object's pose and the "
                "other parameters"
            )
        elif 2 * std[k] > scale[k]:
            undetermined[name] = f"2σ = {2 * std[k] / scale[k]:.2f} × one detector pixel's worth of its effect"
        elif bias_bound[k] > BIAS_LIMIT * scale[k]:
            beyond = f"{misfit:.1f}× the noise floor" if floor > 0 else "noise-free data: all of it"
            undetermined[name] = (
                f"model error: the misfit beyond the noise ({beyond}) could move it by up to "
                f"{bias_bound[k] / scale[k]:.2f} × one detector pixel's worth of its effect, which σ does not include"
            )
    for i in sorted(set(gauge.fixed) if gauge is not None else set()):
        if i < model.user_size:
            undetermined.setdefault(_name(model, i), "held at its start value by the gauge test (see .gauge)")
    unconverged = [n for k, n in enumerate(names) if pending[k] > 1.0 and n not in undetermined]
    residual = {
        "lag1_views": _lag1(r, 0),
        **{f"lag1_axis{a}": _lag1(r, a) for a in range(1, r.ndim)},
        "lag_window": list(lags),
        "rms": float(np.sqrt(np.mean(r * r))),
        "noise_floor": floor * math.sqrt(gain),
        "systematic_rms": systematic / math.sqrt(m),
    }
    return Diagnostics(
        names,
        np.array(user),
        int(prob.level.factor),
        retained,
        std,
        std_fixed,
        std / np.maximum(std_white, 1e-300),
        pending,
        scale,
        weak,
        residual,
        undetermined,
        unconverged,
        time.perf_counter() - start,
        step,
        full,
        volume_change,
        bias_bound,
    )


def _name(model: Any, i: int) -> str:
    s, local = locate(model, i)
    return s.name + (f"[{local}]" if s.width > 1 else "")


def act(diagnostics: Diagnostics | None, mode: str, result: Any) -> None:
    """Warn (``mode="warn"``) or raise :class:`UndeterminedParameterError` (``"raise"``) for what was found."""
    if diagnostics is None or mode == "off":
        return
    lines = diagnostics.messages()
    if not lines:
        return
    text = "calibration estimate not trustworthy:\n  " + "\n  ".join(lines)
    if mode == "raise" and diagnostics.undetermined:
        raise UndeterminedParameterError(text, result)
    warnings.warn(text, CalibrationWarning, stacklevel=3)
