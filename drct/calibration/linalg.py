"""Jacobians of the projections w.r.t. geometry parameters (forward-mode AD) and Gauss–Newton normal equations with
their view structure (the gauge detection that uses them lives in :mod:`drct.calibration.gauge`).

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
from .projectors import projector


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


def jacobian(
    model: Any, theta: np.ndarray, vg: Any, basis: str, x: Any, groups: list[np.ndarray], A: Projector | None = None
) -> Columns:
    """All Jacobian columns at ``theta`` for the (Dr.Jit tensor) volume ``x``: one tangent per group, all from
    one derivative march (:meth:`drct.Projector.geometry_jvps`); ``A``, if given, is the projector at ``theta``."""
    views = model.num_views
    if A is None:
        A = projector(vg, model.geometry(theta), basis)
    tangents = []
    for idx in groups:
        seed = np.zeros(model.size)
        seed[idx] = 1.0
        tangents.append(model.geometry(theta, seed))
    data = [np.asarray(col.numpy(), dtype=np.float64).reshape(views, -1) for col in A.geometry_jvps(x, tangents)]
    return Columns(groups, data, model.size)


def jvp(vg: Any, basis: str, geometry: Any, x: Any) -> np.ndarray:
    """Forward-mode derivative of ``A(geometry) x`` along the tangent seeded into ``geometry`` (one column; the
    slow reference twin of :func:`jacobian`)."""
    A = Projector(vg, geometry, basis=basis)
    y = A.forward_tensor(x)
    dr.forward_to(y)
    return np.asarray(dr.grad(y).numpy(), dtype=np.float64)


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


def __getattr__(name: str) -> Any:
    """``Gauge`` and ``detect_gauge`` moved to :mod:`drct.calibration.gauge`; still importable from here."""
    if name in ("Gauge", "detect_gauge", "gauge_generator_columns"):
        from . import gauge

        return getattr(gauge, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
