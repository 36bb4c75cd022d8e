"""The joint problem's gauge: parameter combinations the data cannot tell from a rigid motion of the object (which
the reconstruction absorbs exactly), found at the first level from the Jacobian's near-null space, and how steps
keep off them (entries fixed, or steps along per-view combinations removed).

In one place: the test at the first level (:func:`first_level_gauge`), the detection from normal matrices
(:func:`detect_gauge`), and the bases the step strategies use to keep off the gauge (:func:`subspace` for
Levenberg–Marquardt in column-normalised coordinates, :func:`constraint_rows` for Adam in theta).

Example:
    >>> import numpy as np
    >>> from drct.calibration.gauge import Gauge, constraint_rows
    >>> g = Gauge(np.zeros((0, 2)), [], np.array([[0.6, 0.8]]), np.array([1.0, 10.0]), [])
    >>> constraint_rows(g)  # in theta: the rows times the column norms
    array([[0.6, 8. ]])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .linalg import cross, normal_equations
from .projectors import projector

if TYPE_CHECKING:
    from .model import GeometryModel, ParamSpec
    from .problem import LevelProblem


@dataclass
class Gauge:
    """Parameter combinations the data cannot determine (jointly with the volume).

    Attributes:
        directions: rows of unit vectors in theta's scaled coordinates spanning the near-null space.
        fixed: theta indices held at their starting values.
        constrained: orthonormal rows (in column-normalised coordinates ``norms * theta``) along which steps are
            removed (combinations of per-view entries).
        norms: the Jacobian's column norms that define those coordinates.
        report: human-readable description per direction.
    """

    directions: np.ndarray
    fixed: list[int]
    constrained: np.ndarray
    norms: np.ndarray
    report: list[dict[str, Any]]


def gauge_generator_columns(model: GeometryModel, theta: np.ndarray, vg: Any, basis: str, x: Any) -> np.ndarray:
    """Jacobian columns of rigid object motions (translations, rotations): the joint problem's exact gauges."""
    dim = vg.ndim
    width = 3 if dim == 3 else 1
    tangents = [model.gauge_geometry(theta, seed, None) for seed in np.eye(dim)]
    tangents += [model.gauge_geometry(theta, None, seed) for seed in np.eye(width)]
    A = projector(vg, model.gauge_geometry(theta, None, None), basis)  # one march for every column
    cols = [np.asarray(col.numpy(), dtype=np.float64).reshape(-1) for col in A.geometry_jvps(x, tangents)]
    return np.stack(cols, axis=1)


def locate(model: GeometryModel, i: int) -> tuple[ParamSpec, int]:
    """The parameter that theta entry ``i`` belongs to, and the entry's index within it."""
    k = 0
    for s in model.specs:
        if i < k + s.count:
            return s, i - k
        k += s.count
    raise IndexError(f"theta entry {i} is beyond the model's {model.size} entries")


def spec_label(model: GeometryModel, i: int) -> str:
    """The name of the parameter that theta entry ``i`` belongs to."""
    return locate(model, i)[0].name


def _entry_name(model: GeometryModel, i: int) -> str:
    s, local = locate(model, i)
    if s.per_view:
        comp, view = divmod(local, model.num_views)
        return f"{s.name}[view {view}]" + (f"[{comp}]" if s.width > 1 else "")
    return s.name + (f"[{local}]" if s.width > 1 else "")


def detect_gauge(
    model: GeometryModel, JtJ: np.ndarray, JtG: np.ndarray, GtG: np.ndarray, tol: float, fixed: list[int] | None = None
) -> Gauge:
    """Near-null directions of the Jacobian ``J`` once the rigid-motion columns ``G`` are projected out, from the
    normal matrices ``J^T J``, ``J^T G`` and ``G^T G`` (so per-view Jacobians never need to be dense).

    Columns are normalised to unit length first, so the test compares shapes, not units. A direction whose
    eigenvalue is below ``tol`` times the largest is a gauge: if a global parameter carries at least a third of
    it, the one listed last among those is fixed (and the search repeats); otherwise (combinations of per-view
    parameters) steps along it are removed.
    """
    n = JtJ.shape[0]
    fixed = list(fixed or [])
    free = [i for i in range(n) if i not in fixed]
    norms = np.sqrt(np.maximum(np.diag(JtJ), 0.0))
    M = JtJ.copy()
    if GtG.size:
        w, V = np.linalg.eigh(GtG)
        keep = w > 1e-12 * max(float(w.max()), 1e-300)  # drop motions that do not change the data (symmetries)
        inv = (V[:, keep] / w[keep]) @ V[:, keep].T
        M = M - JtG @ inv @ JtG.T
    M = 0.5 * (M + M.T)
    directions, constrained, report = [], [], []
    for i in list(free):  # a parameter that does not change the data at all
        if norms[i] <= 1e-12 * max(float(norms.max()), 1e-300):
            fixed.append(i)
            free.remove(i)
            report.append({"parameters": {_entry_name(model, i): 1.0}, "eigenvalue": 0.0, "action": "fixed"})
    while free:
        w, V = np.linalg.eigh(M[np.ix_(free, free)] / np.outer(norms[free], norms[free]))
        small = np.flatnonzero(w < tol * max(float(w.max()), 1e-300))
        if small.size == 0:
            break
        hit = None
        for j in small:
            weights = np.abs(V[:, j]) / np.abs(V[:, j]).max()
            globals_ = [free[i] for i in np.flatnonzero(weights > 1 / 3) if _is_global(model, free[i])]
            if globals_:
                hit = (j, max(globals_))
                break
        for j in small if hit is None else [hit[0]]:
            vec = V[:, j]
            full = np.zeros(n)
            full[free] = vec
            weights = np.abs(vec) / np.abs(vec).max()
            involved = {_entry_name(model, free[i]): round(float(vec[i]), 4) for i in np.flatnonzero(weights > 0.05)}
            directions.append(full)
            if hit is not None:
                action = f"fixed {_entry_name(model, hit[1])}"
            else:
                constrained.append(full)
                action = "steps along it removed"
            # the same direction in the parameters' own units (mm, radians): moving along it changes nothing
            units = {
                _entry_name(model, free[i]): float(vec[i] / max(norms[free[i]], 1e-300))
                for i in np.flatnonzero(weights > 0.05)
            }
            report.append(
                {"parameters": involved, "eigenvalue": float(w[j] / w.max()), "action": action, "direction": units}
            )
        if hit is None:
            break
        fixed.append(hit[1])
        free.remove(hit[1])
    con = np.array(constrained) if constrained else np.zeros((0, n))
    dirs = np.array(directions) if directions else np.zeros((0, n))
    return Gauge(dirs, sorted(fixed), con, norms, report)


def _is_global(model: GeometryModel, i: int) -> bool:
    return not locate(model, i)[0].per_view


def subspace(gauge: Gauge | None, free: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Orthonormal basis (in the coordinates ``d * theta[free]``) of the steps that keep off the gauge.

    Example:
        >>> import numpy as np
        >>> from drct.calibration.gauge import Gauge, subspace
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


def constraint_rows(gauge: Gauge | None) -> np.ndarray:
    """The removed combinations as rows in theta: a step ``s`` keeps off them when ``rows @ s == 0``.

    ``constrained`` is in the column-normalised coordinates ``z = norms * theta``, so ``c · z = (c * norms) · theta``.
    """
    if gauge is None:
        return np.zeros((0, 0))
    return gauge.constrained * gauge.norms


def first_level_gauge(
    prob: LevelProblem, model: GeometryModel, theta: np.ndarray, x: np.ndarray, mode: str, tol: float, fixed: list[int]
) -> Gauge:
    """The gauge test at the first level: the parameters' Jacobian columns against those of a rigid motion of the
    object (the pose parameters' own columns when the model has them). In ``"report"`` mode nothing is fixed."""
    cols = prob.jacobian(theta, x)
    H0, _ = normal_equations(cols, np.zeros(prob.level.y.size))
    nu = model.user_size
    if nu < model.size:  # the pose columns are the rigid-motion generators
        JtJ, JtG, GtG = H0[:nu, :nu], H0[:nu, nu:], H0[nu:, nu:]
    else:
        columns = gauge_generator_columns(prob.model, theta, prob.level.vg, prob.basis, prob.tensor(x))
        G = prob.weighted_columns(columns)
        JtJ, JtG, GtG = H0, cross(cols, G), G.T @ G
    info = detect_gauge(prob.model, JtJ, JtG, GtG, tol, fixed)
    pad = model.size - nu
    info.constrained = np.pad(info.constrained, ((0, 0), (0, pad)))
    info.directions = np.pad(info.directions, ((0, 0), (0, pad)))
    info.norms = np.sqrt(np.maximum(np.diag(H0), 0.0))
    if mode == "report":
        info.fixed = list(fixed)
        info.constrained = np.zeros((0, model.size))
    return info


def held_truth(
    report: list[dict[str, Any]], estimates: dict[str, Any], truth: dict[str, Any]
) -> dict[str, tuple[str, float]]:
    """For a parameter whose gauge partner was held: the truth moved along the gauge direction (which changes no
    data) until the partner sits at its held value, i.e. what the estimate should be: ``{name: (held, value)}``.

    ``report`` is :attr:`~drct.calibration.CalibrationResult.gauge` (its ``"direction"`` in the parameters' units),
    ``estimates`` the result's ``params``, ``truth`` the true values.

    Example:
        >>> report = [{"action": "fixed cor_offset", "direction": {"det_shift_u": 2.0, "cor_offset": -1.0}}]
        >>> held_truth(report, {"det_shift_u": 1.0, "cor_offset": 0.0}, {"det_shift_u": 1.1, "cor_offset": -0.05})
        {'det_shift_u': ('cor_offset', 1.0)}
    """
    out: dict[str, tuple[str, float]] = {}
    for g in report:
        held = g["action"][len("fixed ") :] if g["action"].startswith("fixed ") else None
        direction = g.get("direction") or {}
        if held not in direction or held not in truth or held not in estimates or not direction[held]:
            continue
        t = (float(np.asarray(estimates[held])) - float(np.asarray(truth[held]))) / direction[held]
        for name, component in direction.items():
            if name != held and name in truth and np.size(truth[name]) == 1:
                out[name] = (held, float(np.asarray(truth[name]).reshape(-1)[0]) + t * component)
    return out
