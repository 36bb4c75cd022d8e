"""Jacobians of the projections w.r.t. geometry parameters (forward-mode AD), Gauss–Newton normal equations with
their view structure, and gauge detection from the Jacobian's near-null space.

Every parameter column is one JVP of ``theta -> A(theta) x``. A per-view parameter only moves its own view, so
one JVP with the tangent 1 in every view gives all its columns at once (stacked by view); the normal matrix then
has a dense global block, global-by-view couplings and per-view diagonal blocks.

Example:
    >>> import numpy as np
    >>> from drct.calibration.linalg import Columns, cross, dense, normal_equations
    >>> rng = np.random.default_rng(0)
    >>> # theta = (one global entry, one entry per view), 3 views of 5 rays each
    >>> cols = Columns([np.array([0]), np.array([1, 2, 3])], list(rng.normal(size=(2, 3, 5))), size=4)
    >>> J, r = dense(cols), rng.normal(size=(3, 5))
    >>> H, g = normal_equations(cols, r)
    >>> bool(np.allclose(H, J.T @ J) and np.allclose(g, J.T @ r.reshape(-1)))
    True
    >>> bool(np.allclose(cross(cols, r.reshape(-1, 1))[:, 0], g))
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import drjit as dr
import numpy as np

from ..projector import Projector


@dataclass
class Columns:
    """Jacobian columns in the layout of ``theta``.

    ``seeds[k]`` is the list of theta indices whose columns share JVP ``k``: one index (a global entry), or one
    per view (a per-view component). ``data[k]`` is the JVP output shaped ``(views, rays per view)``.
    """

    seeds: list[np.ndarray]
    data: list[np.ndarray]
    size: int


def seed_groups(model: Any) -> list[np.ndarray]:
    """theta indices seeded together: per-view components across all views (independent views), else one each."""
    groups, k = [], 0
    for s in model.specs:
        n = model.num_views if (s.per_view and model.views_independent) else 1
        per = s.count // n
        if s.per_view and model.views_independent:
            for c in range(s.width):
                groups.append(k + c * n + np.arange(n))
        else:
            groups.extend(np.array([k + i]) for i in range(per * n))
        k += s.count
    return groups


def jvp(vg: Any, basis: str, geometry: Any, x: Any) -> np.ndarray:
    """Forward-mode derivative of ``A(geometry) x`` along the tangent seeded into ``geometry``."""
    A = Projector(vg, geometry, basis=basis)
    y = A.forward_tensor(x)
    dr.forward_to(y)
    return np.asarray(dr.grad(y).numpy(), dtype=np.float64)


def jacobian(model: Any, theta: np.ndarray, vg: Any, basis: str, x: Any, groups: list[np.ndarray]) -> Columns:
    """All Jacobian columns at ``theta`` for the (Dr.Jit tensor) volume ``x``."""
    data = []
    views = model.num_views
    for idx in groups:
        seed = np.zeros(model.size)
        seed[idx] = 1.0
        col = jvp(vg, basis, model.geometry(theta, seed), x)
        data.append(col.reshape(views, -1))
    return Columns(groups, data, model.size)


def normal_equations(cols: Columns, residual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(J^T J, J^T r)`` for ``residual`` shaped like one column's data."""
    n = cols.size
    H = np.zeros((n, n))
    g = np.zeros(n)
    r = residual.reshape(cols.data[0].shape)
    for a, (ia, ca) in enumerate(zip(cols.seeds, cols.data, strict=True)):
        ga = np.einsum("vr,vr->v", ca, r)
        if ia.size == 1:
            g[ia[0]] = ga.sum()
        else:
            g[ia] = ga
        for b in range(a, len(cols.seeds)):
            ib, cb = cols.seeds[b], cols.data[b]
            per_view = np.einsum("vr,vr->v", ca, cb)
            if ia.size == 1 and ib.size == 1:
                H[ia[0], ib[0]] = H[ib[0], ia[0]] = per_view.sum()
            elif ia.size == 1:
                H[ia[0], ib] = H[ib, ia[0]] = per_view
            elif ib.size == 1:
                H[ib[0], ia] = H[ia, ib[0]] = per_view
            else:  # two per-view groups: views couple only with themselves
                H[ia, ib] = H[ib, ia] = per_view
    return H, g


def dense(cols: Columns) -> np.ndarray:
    """The Jacobian as a dense ``(rays, parameters)`` matrix (small problems: gauge checks and tests)."""
    views, per = cols.data[0].shape
    J = np.zeros((views * per, cols.size))
    for idx, data in zip(cols.seeds, cols.data, strict=True):
        if idx.size == 1:
            J[:, idx[0]] = data.reshape(-1)
        else:
            for v, i in enumerate(idx):
                J[v * per : (v + 1) * per, i] = data[v]
    return J


def cross(cols: Columns, G: np.ndarray) -> np.ndarray:
    """``J^T G`` for dense columns ``G`` (rays, k) without forming ``J``."""
    views, per = cols.data[0].shape
    Gv = G.reshape(views, per, -1)
    out = np.zeros((cols.size, G.shape[1]))
    for idx, data in zip(cols.seeds, cols.data, strict=True):
        per_view = np.einsum("vr,vrk->vk", data, Gv)
        if idx.size == 1:
            out[idx[0]] = per_view.sum(0)
        else:
            out[idx] = per_view
    return out


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


def gauge_generator_columns(model: Any, theta: np.ndarray, vg: Any, basis: str, x: Any) -> np.ndarray:
    """Jacobian columns of rigid object motions (translations, rotations): the joint problem's exact gauges."""
    dim = vg.ndim
    cols = []
    width = 3 if dim == 3 else 1
    for k in range(dim):
        seed = np.zeros(dim)
        seed[k] = 1.0
        cols.append(jvp(vg, basis, model.gauge_geometry(theta, seed, None), x).reshape(-1))
    for k in range(width):
        seed = np.zeros(width)
        seed[k] = 1.0
        cols.append(jvp(vg, basis, model.gauge_geometry(theta, None, seed), x).reshape(-1))
    return np.stack(cols, axis=1)


def _entry_name(model: Any, i: int) -> str:
    k = 0
    for s in model.specs:
        if i < k + s.count:
            local = i - k
            if s.per_view:
                comp, view = divmod(local, model.num_views)
                return f"{s.name}[view {view}]" + (f"[{comp}]" if s.width > 1 else "")
            return s.name + (f"[{local}]" if s.width > 1 else "")
        k += s.count
    raise IndexError(i)


def detect_gauge(
    model: Any, JtJ: np.ndarray, JtG: np.ndarray, GtG: np.ndarray, tol: float, fixed: list[int] | None = None
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
            report.append({"parameters": involved, "eigenvalue": float(w[j] / w.max()), "action": action})
        if hit is None:
            break
        fixed.append(hit[1])
        free.remove(hit[1])
    con = np.array(constrained) if constrained else np.zeros((0, n))
    dirs = np.array(directions) if directions else np.zeros((0, n))
    return Gauge(dirs, sorted(fixed), con, norms, report)


def _is_global(model: Any, i: int) -> bool:
    k = 0
    for s in model.specs:
        if i < k + s.count:
            return not s.per_view
        k += s.count
    return False
