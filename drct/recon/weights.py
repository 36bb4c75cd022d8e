"""Weights that turn backprojection into filtered backprojection in physical units (1/mm).

drct's FBP is ``f = BP( post ⊙ filter( pre ⊙ y ) )``:

* ``pre`` (before filtering): ``1`` for parallel beams; for fan/cone beams the cosine of the ray's angle to
  the detector normal (flat) or ``cos γ · R/ρ`` (curved; ``γ`` the fan angle, ``ρ`` the source–pixel distance,
  ``R`` the cylinder radius), times the redundancy weights: each view's share of the orbit (non-uniform angles
  welcome), halved for full 2π scans, Parker's weights for short scans.
* the filter (:mod:`drct.recon.filters`): a ramp along the rows, spacing ``|det_u|`` mm or ``Δγ = |det_u|/R``.
* ``post`` and ``BP``: in 2D, ``BP = A.T`` (the exact adjoint). ``A.T`` gives a ray's value to a coefficient with
  the weight ``∫ β((p - p_k)/h) dt``; summed over one view's rays this is ``h^d / a(p_k)`` times the value at the
  coefficient's projection, where ``h^d`` is the voxel area (every drct basis integrates to ``h^d``, whatever
  its degree) and ``a`` the width one ray occupies at ``p_k``: ``|det_u|`` for parallel rays, so
  ``post = w_θ |det_u| / h²``; ``∝ r`` (the distance from the source) in a fan, so the fan-beam weight
  ``1/r²`` leaves a factor ``D/r`` per view and coefficient. :func:`drct.fbp` backprojects 2D fan beams and all
  3D scans voxel-driven (:mod:`drct.recon.backproject`: each coefficient centre projected onto the detector, the
  filtered data interpolated there, FDK's distance weights, which hold the same ``h²/a · D/r`` in 2D; in 3D
  ``A.T`` would alias along ``z``), so ``post`` holds only parallel-beam angular weights there.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..geometry.detector import detector_frame, dot, sub
from ..geometry.projection import ProjectionGeometry, host_rows
from ..geometry.volume import VolumeGeometry
from ..memory import require_memory


@dataclass(frozen=True)
class FBPWeights:
    """Everything FBP needs besides ``A.T`` (see the module docstring).

    Attributes:
        pre: weights applied before filtering, broadcastable to ``pg.shape`` (float64).
        post: weights applied after filtering, broadcastable to ``pg.shape`` (angular weights and scale
            included).
        spacing: the filter's sample spacing (mm, or radians when ``curved``).
        curved: filter in the fan angle (equiangular detector).
        fan_2d: a 2D fan beam: backprojected voxel-driven, as 3D scans are (``post`` is 1).
        short_scan: Parker weights were used.
        redundancy: the short-scan (Parker) factor that ``pre`` includes, shape of ``pre``, all > 0 (None for
            full scans and parallel beams): ``pre / redundancy`` is the data weighting without it.

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.recon import fbp_weights
        >>> vg = ct.VolumeGeometry((16, 16))
        >>> short = ct.fan(np.linspace(0, 1.3 * np.pi, 36, endpoint=False), 24, 1.5, 60.0, 120.0)  # less than 2π
        >>> w = fbp_weights(short, vg)  # an FBPWeights
        >>> w.pre.shape, w.short_scan, w.fan_2d, w.spacing
        ((36, 24), True, True, 1.5)
    """

    pre: np.ndarray
    post: np.ndarray
    spacing: float
    curved: bool
    fan_2d: bool
    short_scan: bool
    redundancy: np.ndarray | None = None


def _rows(value: object) -> np.ndarray:
    return np.asarray(host_rows(value), dtype=np.float64)


def view_angles(pg: ProjectionGeometry) -> np.ndarray:
    """Orbit angle of each view around the ``z`` axis (drct's convention: source at ``(sin θ, -cos θ) R``;
    parallel rays along ``(sin θ, -cos θ)``), radians, unwrapped along the view order.

    Example:
        >>> import numpy as np, drct as ct
        >>> a = np.linspace(0, 3 * np.pi, 7)
        >>> bool(np.allclose(view_angles(ct.fan(a, 8, 1.0, 50.0, 100.0)), a))
        True
    """
    src = _rows(pg.src)
    return np.unwrap(np.arctan2(src[:, 0], -src[:, 1]))


def _voronoi(angles: np.ndarray, period: float) -> np.ndarray:
    """Width of each angle's share of a circle of ``period``; a gap wider than 10° and 5 typical spacings (a
    missing wedge) counts as one typical spacing, with a warning."""
    n = angles.size
    if n == 1:
        return np.array([period / 2])
    wrapped = np.mod(angles, period)
    order = np.argsort(wrapped, kind="stable")
    sorted_angles = wrapped[order]
    gaps = np.diff(np.concatenate([sorted_angles, sorted_angles[:1] + period]))  # gap after each angle
    typical = float(np.median(gaps[gaps > 1e-12])) if np.any(gaps > 1e-12) else period / n
    wedge = (gaps > 5 * typical) & (gaps > np.radians(10))
    capped = np.where(wedge, typical, gaps)
    if np.any(wedge):
        warnings.warn(
            f"the views leave a gap of {float(gaps.max()):.3g} rad in the orbit (typical spacing {typical:.3g} rad): "
            "limited-angle data, FBP will show streaks and a reduced amplitude; consider ct.recon solvers",
            stacklevel=4,
        )
    width = 0.5 * (capped + np.roll(capped, 1))
    out = np.empty(n)
    out[order] = width
    return out


def _covers_full_circle(angles: np.ndarray) -> bool:
    wrapped = np.sort(np.mod(angles, 2 * np.pi))
    gaps = np.diff(np.concatenate([wrapped, wrapped[:1] + 2 * np.pi]))
    typical = float(np.median(gaps[gaps > 1e-12])) if np.any(gaps > 1e-12) else 2 * np.pi
    return bool(gaps.max() <= max(5 * typical, np.radians(10)))


def parker_weights(beta: np.ndarray, gamma: np.ndarray, scan_range: float) -> np.ndarray:
    """Parker's short-scan weights, generalised to any scan range ``≥ π + 2 max|γ|`` (overscan).

    Args:
        beta: orbit angle of each view from the scan's start, increasing along the rotation, shape ``(V, 1)``.
        gamma: fan angle of each ray, positive in the direction of rotation, broadcastable with ``beta``.
        scan_range: the orbit range covered ``Λ`` (radians); ``Δ = (Λ - π)/2`` plays the half fan angle.

    Returns:
        Weights in [0, 1] with ``w(β, γ) + w(β + π + 2γ, -γ) = 1``.

    Example:
        >>> import numpy as np
        >>> w = parker_weights(np.array([[0.0], [1.0], [np.pi]]), np.array([0.0, 0.1]), np.pi + 0.4)
        >>> w.shape, float(w[0, 0]), float(w[1, 0])
        ((3, 2), 0.0, 1.0)
    """
    delta = 0.5 * (scan_range - np.pi)
    beta, gamma = np.broadcast_arrays(np.asarray(beta, float), np.asarray(gamma, float))
    if np.any(delta - np.abs(gamma) <= 0):
        raise ValueError(
            f"a short scan of {scan_range:.4f} rad needs at least π + 2·max|γ| = "
            f"{np.pi + 2 * float(np.abs(gamma).max()):.4f} rad (π plus the fan angle) for FBP/FDK; "
            "use an iterative method (ct.recon) for limited-angle data"
        )
    w = np.ones_like(beta)
    rise = beta < 2 * (delta - gamma)
    w = np.where(rise, np.sin(np.pi / 4 * beta / (delta - gamma)) ** 2, w)
    fall = beta > np.pi - 2 * gamma
    w = np.where(fall, np.sin(np.pi / 4 * (np.pi + 2 * delta - beta) / (delta + gamma)) ** 2, w)
    return np.clip(w, 0.0, 1.0)


def _cone_rays(pg: ProjectionGeometry) -> dict[str, np.ndarray]:
    """Per view and pixel (shape ``(V, rows, cols)``; rows = 1 in 2D): ``rho`` (source-pixel distance),
    ``cos_n`` (cosine to the pixel normal), ``gamma`` (signed fan angle in the xy-plane, CCW), plus per view
    ``radius`` (curved: cylinder radius), ``orbit`` (source distance to the z axis)."""
    cols = pg.det_shape[-1]
    rows = pg.det_shape[0] if pg.ndim == 3 else 1

    def per_view(value: object) -> list[np.ndarray]:  # components broadcastable to (V, rows, cols)
        return [c[:, None, None] for c in _rows(value).T]

    src = per_view(pg.src)
    frame = detector_frame(
        src, per_view(pg.det), per_view(pg.det_u), per_view(pg.det_v) if pg.ndim == 3 else None, bool(pg.curved)
    )
    u = (np.arange(cols) - (cols - 1) / 2)[None, None, :]
    v = (np.arange(rows) - (rows - 1) / 2)[None, :, None]
    position, normal = frame.pixel(u, v)
    ray = sub(position, src)
    rho = np.sqrt(dot(ray, ray))
    cos_n = np.abs(dot(ray, normal)) / rho
    central = [-src[0], -src[1]]
    gamma = np.arctan2(central[0] * ray[1] - central[1] * ray[0], central[0] * ray[0] + central[1] * ray[1])
    shape = (pg.num_views, rows, cols)
    return {
        "rho": np.broadcast_to(rho, shape),
        "cos_n": np.broadcast_to(cos_n, shape),
        "gamma": np.broadcast_to(gamma, shape),
        "radius": frame.radius[:, 0, 0] if pg.curved else np.zeros(pg.num_views),
        "orbit": np.hypot(src[0], src[1])[:, 0, 0],
    }


def _constant(values: np.ndarray, what: str) -> float:
    if not np.allclose(values, values[0], rtol=1e-6, atol=0):
        raise ValueError(
            f"FBP filters every view with one ramp, but the {what} varies between views "
            f"({values.min():.6g} to {values.max():.6g}); use an iterative method (ct.recon)"
        )
    return float(values[0])


WEIGHT_BYTES_PER_RAY = 96
"""Memory of the temporaries of :func:`fbp_weights` per pixel of a fan or cone scan (measured: 92 bytes per pixel
at 720 x 256² and 360 x 384² when they were made for a whole scan at once); they are made a chunk of views at a
time, :data:`WEIGHT_CHUNK_BYTES` at most."""

WEIGHT_CHUNK_BYTES = 256 << 20


def fbp_weights(pg: ProjectionGeometry, vg: VolumeGeometry, views: np.ndarray | None = None) -> FBPWeights:
    """The pre-filter weights, filter spacing and post-filter weights of FBP/FDK on ``pg`` (module docstring).

    ``views`` (indices): the weights of these views only, as rows of the whole scan's weights (the angular and
    Parker weights still come from the whole orbit) — what streaming FDK (:mod:`drct.outofcore`) needs per chunk.

    Raises:
        ValueError: for helical orbits, ray lists, too short scans or views with different pixel spacing.

    Example:
        >>> import numpy as np, drct as ct
        >>> pg = ct.parallel(np.linspace(0, np.pi, 4, endpoint=False), 8, 0.5)
        >>> w = fbp_weights(pg, ct.VolumeGeometry((8, 8), voxel_size=0.5))
        >>> float(w.post.sum()) == np.pi * 0.5 / 0.25, w.spacing
        (True, 0.5)
    """
    if not isinstance(pg, ProjectionGeometry):
        raise ValueError(f"FBP/FDK need a detector geometry (ct.parallel, ct.fan, ct.cone), got {pg!r}")
    voxel_volume = float(np.prod(vg.voxel_size))
    angles = view_angles(pg)
    du = _rows(pg.det_u)
    dim = pg.ndim
    chosen = np.arange(pg.num_views) if views is None else np.asarray(views, dtype=np.int64).reshape(-1)
    if dim == 3:
        src = _rows(pg.src)
        height = src[:, 2] if pg.beam == "cone" else _rows(pg.det)[:, 2]
        span = float(np.ptp(height))
        if span > 1e-6 * max(1.0, float(np.linalg.norm(src[:, :2], axis=1).max())):
            raise ValueError(
                f"helical or non-planar orbits (source/detector height varies by {span:.4g} mm over the views) "
                "are not supported by FBP/FDK; use an iterative method (ct.recon.sirt, cgls, ...)"
            )
    if pg.beam == "parallel":
        direction = _rows(pg.src)
        direction = direction / np.linalg.norm(direction, axis=1, keepdims=True)
        u_perp = np.linalg.norm(du - np.sum(du * direction, axis=1, keepdims=True) * direction, axis=1)
        spacing = _constant(u_perp, "detector column spacing")
        angular = _voronoi(angles, np.pi)
        post = (angular if dim == 3 else angular * u_perp / voxel_volume)[chosen]
        shape = (chosen.size,) + (1,) * (dim - 1)
        return FBPWeights(np.ones(shape), post.reshape(shape), spacing, False, False, False)

    rows, cols = (pg.det_shape[0] if dim == 3 else 1), pg.det_shape[-1]
    full = _covers_full_circle(angles)
    # the per-pixel arrays are kept (pre; short scans: redundancy too), their temporaries only a chunk at a time
    require_memory(
        (8 if full else 16) * chosen.size * rows * cols + WEIGHT_CHUNK_BYTES,
        f"the FBP/FDK weights of {chosen.size} views x {pg.det_shape} pixels (float64 per pixel; a scan this "
        "large is reconstructed by streaming views: drct.outofcore.fdk)",
    )
    # angular weights: full orbits share each ray between two views (half a view's cell); short scans weight a
    # view's cell by Parker's redundancy factor at its arc position beta
    if full:
        cell, beta, scan_range = _voronoi(angles, 2 * np.pi) / 2, None, 0.0
    else:
        # position on the arc, counter-clockwise from the end of the largest gap (views in any order; the
        # weights are mirror-symmetric, so the direction of rotation does not matter)
        wrapped = np.mod(angles, 2 * np.pi)
        order = np.argsort(wrapped, kind="stable")
        ring = wrapped[order]
        gaps = np.diff(np.concatenate([ring, ring[:1] + 2 * np.pi]))
        start = ring[(int(np.argmax(gaps)) + 1) % ring.size]
        rel = np.mod(angles - start, 2 * np.pi)
        rel_sorted = np.sort(rel)
        step = np.diff(rel_sorted)
        typical = float(np.median(step)) if step.size else 0.0
        cell_sorted = np.full(rel.size, typical)
        if rel.size > 2:
            cell_sorted[1:-1] = 0.5 * (step[1:] + step[:-1])
        cell = np.empty_like(rel)
        cell[np.argsort(rel, kind="stable")] = cell_sorted
        scan_range = float(rel_sorted[-1] - rel_sorted[0]) + typical
        beta = rel + typical / 2
    pre = np.empty((chosen.size, rows, cols))
    redundancy = None if beta is None else np.empty_like(pre)
    radii = []
    chunk = max(1, WEIGHT_CHUNK_BYTES // (WEIGHT_BYTES_PER_RAY * rows * cols))
    for first in range(0, chosen.size, chunk):
        part = chosen[first : first + chunk]
        whole = views is None and part.size == pg.num_views
        rays = _cone_rays(pg if whole else pg.select_views(part))
        rho, cos_n, gamma = rays["rho"], rays["cos_n"], rays["gamma"]
        if pg.curved:
            radii.append(rays["radius"])
            weight = np.cos(gamma) * rays["radius"][:, None, None] / rho
        else:
            weight = cos_n
        angular = cell[part, None, None]
        if beta is not None and redundancy is not None:
            factor = parker_weights(beta[part, None, None], gamma, scan_range)
            redundancy[first : first + part.size] = factor
            angular = angular * factor
        pre[first : first + part.size] = weight * angular  # redundancy weights act on the data before filtering
    ulen = np.linalg.norm(du, axis=1)
    if pg.curved:
        spacing = _constant(ulen[chosen] / np.concatenate(radii), "fan angle per column")
    else:
        spacing = _constant(ulen, "detector column spacing")
    ulen = ulen[chosen]
    if dim == 3:
        post = np.ones((chosen.size, 1, 1))  # 3D: voxel-driven backprojection with the weights of backproject.py
    else:
        post = np.ones((chosen.size, 1))
        pre = pre[:, 0, :]
        redundancy = None if redundancy is None else redundancy[:, 0, :]
    if dim == 3 and not pg.curved and np.any(np.abs(_rows(pg.det_v)[chosen, :2]).max(axis=1) > 1e-6 * ulen):
        warnings.warn("FDK assumes detector rows parallel to the z axis; this geometry tilts them", stacklevel=3)
    return FBPWeights(pre, post, spacing, bool(pg.curved), dim == 2, not full, redundancy)
