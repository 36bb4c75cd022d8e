"""The one detector-frame function (drct.geometry.detector) against an obviously right scalar reference.

The reference walks every pixel of every view in plain float64 Python: a flat detector is the plane spanned by
``det_u``/``det_v`` through ``det``; a curved one is the cylinder around the axis through the source along
``det_v`` (2D: the circle around the source) through ``det``, its columns spaced by the arc length ``|det_u|``.
Its users — the Dr.Jit rays of the projector, FBP's numpy weights and the FDK backprojection's cylinder
mapping — must all agree with it.
"""

from __future__ import annotations

import math

import drjit as dr
import numpy as np
import pytest

import drct as ct
from drct.backend import types
from drct.geometry.detector import detector_frame
from drct.geometry.ray_arrays import geometry_vectors, make_rays
from drct.recon.weights import _cone_rays

ANGLES = np.array([0.0, 0.7, 2.0, 4.1])


def geometries() -> dict[str, ct.ProjectionGeometry]:
    return {
        "fan flat": ct.fan(ANGLES, 7, 1.3, 40.0, 70.0),
        "fan curved": ct.fan(ANGLES, 7, 1.3, 40.0, 70.0, curved=True),
        "cone flat": ct.cone(ANGLES, (5, 7), (1.1, 1.3), 40.0, 70.0),
        "cone curved": ct.cone(ANGLES, (5, 7), (1.1, 1.3), 40.0, 70.0, curved=True),
        "parallel 2D": ct.parallel(ANGLES, 7, 1.3),
        "parallel 3D": ct.parallel(ANGLES, (5, 7), (1.1, 1.3)),
    }


def _vec(row: np.ndarray) -> list[float]:
    return [float(c) for c in row]


def _norm(a: list[float]) -> float:
    return math.sqrt(sum(c * c for c in a))


def _cross(a: list[float], b: list[float]) -> list[float]:
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def reference_pixel(pg: ct.ProjectionGeometry, view: int, row: int, col: int) -> tuple[list[float], list[float]]:
    """Pixel centre and unit surface normal (flat: along det_u x det_v; curved: away from the axis)."""
    src, det, du = _vec(pg.src[view]), _vec(pg.det[view]), _vec(pg.det_u[view])
    dv = _vec(pg.det_v[view]) if pg.det_v is not None else [0.0] * len(src)
    rows = pg.det_shape[0] if pg.ndim == 3 else 1
    u = col - (pg.det_shape[-1] - 1) / 2
    v = row - (rows - 1) / 2
    if not pg.curved:
        n = _cross(du, dv) if pg.ndim == 3 else [-du[1], du[0]]
        pos = [d + u * a + v * b for d, a, b in zip(det, du, dv, strict=True)]
        return pos, [c / _norm(n) for c in n]
    if pg.ndim == 3:  # cylinder axis through the source along det_v
        axis = [c / _norm(dv) for c in dv]
        h = sum((d - s) * a for d, s, a in zip(det, src, axis, strict=True))
        foot = [s + h * a for s, a in zip(src, axis, strict=True)]
    else:
        foot = src
    radial = [d - f for d, f in zip(det, foot, strict=True)]
    radius = _norm(radial)
    w = [c / radius for c in radial]
    tangent = _cross(axis, w) if pg.ndim == 3 else [-w[1], w[0]]
    if sum(a * b for a, b in zip(tangent, du, strict=True)) < 0:  # columns run along det_u
        tangent = [-c for c in tangent]
    angle = u * _norm(du) / radius  # arc length |det_u| per column
    normal = [math.cos(angle) * a + math.sin(angle) * b for a, b in zip(w, tangent, strict=True)]
    pos = [f + radius * n + v * b for f, n, b in zip(foot, normal, dv, strict=True)]
    return pos, normal


def reference_rays(pg: ct.ProjectionGeometry) -> dict[str, np.ndarray]:
    """Per ray in sinogram order: origin, direction, t_max (inf for parallel beams), pixel, normal."""
    rows = pg.det_shape[0] if pg.ndim == 3 else 1
    out: dict[str, list[list[float]]] = {"origin": [], "direction": [], "t_max": [], "pixel": [], "normal": []}
    for view in range(pg.num_views):
        src = _vec(pg.src[view])
        for row in range(rows):
            for col in range(pg.det_shape[-1]):
                pos, normal = reference_pixel(pg, view, row, col)
                if pg.beam == "parallel":
                    origin, d, length = pos, [c / _norm(src) for c in src], math.inf
                else:
                    ray = [p - s for p, s in zip(pos, src, strict=True)]
                    origin, d, length = src, [c / _norm(ray) for c in ray], _norm(ray)
                for key, value in zip(out, (origin, d, [length], pos, normal), strict=True):
                    out[key].append(value)
    return {key: np.array(value) for key, value in out.items()}


@pytest.mark.parametrize("name", list(geometries()))
def test_drjit_rays_match_the_scalar_reference(name: str) -> None:
    pg = geometries()[name]
    want = reference_rays(pg)
    t = types("float64", "llvm")
    rays = make_rays(pg, t, geometry_vectors(pg, t), dr.arange(t.UInt, pg.num_rays))
    origin = np.stack([np.asarray(c) for c in rays.origin], axis=1)
    direction = np.stack([np.asarray(c) for c in rays.direction], axis=1)
    np.testing.assert_allclose(origin, want["origin"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(direction, want["direction"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.asarray(rays.t_max), want["t_max"][:, 0], rtol=1e-14)
    assert np.all(np.asarray(rays.t_min) == (-np.inf if pg.beam == "parallel" else 0.0))


@pytest.mark.parametrize("name", [n for n in geometries() if not n.startswith("parallel")])
def test_numpy_weights_rays_match_the_scalar_reference(name: str) -> None:
    pg = geometries()[name]
    want = reference_rays(pg)
    rays = _cone_rays(pg)
    rho = want["t_max"][:, 0]
    cos_n = np.abs(np.sum((want["pixel"] - want["origin"]) * want["normal"], axis=1)) / rho
    np.testing.assert_allclose(rays["rho"].reshape(-1), rho, rtol=1e-14)
    np.testing.assert_allclose(rays["cos_n"].reshape(-1), cos_n, rtol=0, atol=1e-14)


@pytest.mark.parametrize("name", ["fan curved", "cone curved"])
def test_cylinder_mapping_inverts_the_pixel_position(name: str) -> None:
    """A point anywhere on a ray lands on that ray's pixel (the FDK backprojection's mapping)."""
    pg = geometries()[name]
    want = reference_rays(pg)
    rows = pg.det_shape[0] if pg.ndim == 3 else 1
    per_view = rows * pg.det_shape[-1]
    views = np.repeat(np.arange(pg.num_views), per_view)
    comps = [[pg.src[views, k], pg.det[views, k], pg.det_u[views, k]] for k in range(pg.ndim)]
    src, det, du = ([c[i] for c in comps] for i in range(3))
    dv = [pg.det_v[views, k] for k in range(3)] if pg.det_v is not None else None
    frame = detector_frame(src, det, du, dv, curved=True)
    point = want["origin"] + 0.37 * want["t_max"] * want["direction"]  # inside the orbit, off the detector
    u, v, r2 = frame.cylinder_coordinates(src, list(point.T))
    index = np.arange(pg.num_rays) % per_view
    np.testing.assert_allclose(u, index % pg.det_shape[-1] - (pg.det_shape[-1] - 1) / 2, atol=1e-12)
    np.testing.assert_allclose(v, index // pg.det_shape[-1] - (rows - 1) / 2, atol=1e-12)
    assert np.all(r2 > 0)
    # and the frame's own pixel() is the reference pixel
    pos, normal = frame.pixel(u, v)
    np.testing.assert_allclose(np.stack(pos, axis=1), want["pixel"], atol=1e-12)
    np.testing.assert_allclose(np.stack(normal, axis=1), want["normal"], atol=1e-14)


def test_skewed_flat_detector_duals() -> None:
    """Flat detectors with non-orthogonal pixel axes: the dual vectors read a point's (u, v) back."""
    du, dv = [1.2, 0.3, 0.1], [0.2, -0.1, 0.9]
    frame = detector_frame([0.0, -50.0, 0.0], [1.0, 30.0, 2.0], du, dv, curved=False)
    pos, _ = frame.pixel(2.5, -1.5)
    u_dual, v_dual = frame.plane_duals()
    rel = [p - d for p, d in zip(pos, frame.det, strict=True)]
    assert sum(a * b for a, b in zip(rel, u_dual, strict=True)) == pytest.approx(2.5, abs=1e-13)
    assert sum(a * b for a, b in zip(rel, v_dual, strict=True)) == pytest.approx(-1.5, abs=1e-13)
