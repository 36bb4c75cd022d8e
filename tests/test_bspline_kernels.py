"""drct's B-spline march kernels (degree 1-3) against their slow reference twin (``tests/bspline_reference.py``,
the kernels as they were before issue 15's per-cell cuts) on random rays and on the awkward ones: rays along knot
planes, through knot-grid corners, parallel to an axis, starting or ending inside the volume, and misses; one
volume and a batch of two. Forward, adjoint and ray derivatives, 2D and 3D, float64."""

from __future__ import annotations

import math
from typing import Any

import bspline_reference as reference
import drjit as dr
import numpy as np
import pytest

from drct.backend import types
from drct.geometry.ray_arrays import Rays
from drct.kernels import derivatives, march
from drct.kernels.grid import KnotGrid, Segments, clip_rays
from drct.volume import bspline_scaled_segments, bspline_segments, gauss_legendre_01, quadrature_order

SHAPES = {2: (5, 4), 3: (4, 5, 3)}
SPACING = {2: (1.0, 0.75), 3: (1.0, 0.75, 1.25)}


def ray_set(ndim: int, degree: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Origins, unit directions, t_min and t_max (mm) of random and awkward rays for the test volume."""
    shape, spacing = np.array(SHAPES[ndim], float), np.array(SPACING[ndim])
    shift = (degree + 1) / 2  # knot coordinate w = p / h + shift of a point p (first centre at 0)
    cells = shape + degree
    knots = (rng.integers(0, cells + 1, size=(40, ndim)) - shift) * spacing  # points on knot planes
    inside = (rng.random((60, ndim)) * cells - shift) * spacing
    origins, directions = [], []
    for p in inside:  # random lines
        origins.append(p)
        directions.append(rng.normal(size=ndim))
    for p in knots:  # along a knot plane or through a grid corner, often parallel to axes
        d = rng.integers(-1, 2, size=ndim).astype(float)
        if not d.any():
            d[rng.integers(ndim)] = 1.0
        origins.append(p)
        directions.append(d * spacing)
    for axis in range(ndim):  # axis-parallel, both ways
        for sign in (1.0, -1.0):
            d = np.zeros(ndim)
            d[axis] = sign
            origins.append(inside[axis])
            directions.append(d)
    far = (cells + 5) * spacing
    origins += [far, far]  # misses: pointing away, and passing beside the box
    directions += [np.ones(ndim), np.eye(ndim)[0]]
    o = np.array(origins)
    d = np.array(directions)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    count = len(o)
    t_min = np.full(count, -np.inf)
    t_max = np.full(count, np.inf)
    t_min[::5] = 0.0  # these start (or end) inside the volume
    t_max[1::5] = rng.random(len(t_max[1::5])) * 3.0
    return o, d, t_min, t_max


def segments(ndim: int, degree: int, batch: int, seed: int, dtype: str = "float64") -> tuple[KnotGrid, Any, Segments]:
    t = types(dtype)
    rng = np.random.default_rng(seed)
    o, d, t_min, t_max = ray_set(ndim, degree, rng)
    up = [t.Float64(np.ascontiguousarray(c)) for c in (*o.T, *d.T, t_min, t_max)]
    rays = Rays(up[:ndim], up[ndim : 2 * ndim], up[-2], up[-1])
    nodes, weights = gauss_legendre_01(quadrature_order(degree, ndim))
    grid = KnotGrid(degree, SHAPES[ndim], tuple(nodes), tuple(weights))
    segs = clip_rays(rays, grid, [0.0] * ndim, list(SPACING[ndim]), t)
    if batch > 1:
        segs.offset = t.Int(rng.integers(0, batch, len(o)) * grid.size)
    return grid, t, segs


CASES = [(ndim, degree, batch) for ndim in (2, 3) for degree in (1, 2, 3) for batch in (1, 2)]


@pytest.mark.parametrize(("ndim", "degree", "batch"), CASES)
def test_forward_and_adjoint_match_the_reference(ndim: int, degree: int, batch: int) -> None:
    grid, t, segs = segments(ndim, degree, batch, seed=10 * ndim + degree)
    rng = np.random.default_rng(degree)
    coeffs = t.Float(rng.normal(size=grid.size * batch))
    values = t.Float(rng.normal(size=dr.width(segs.length)))
    got, want = march.project(grid, t, segs, coeffs), reference.project(grid, t, segs, coeffs)
    got_f, want_f = np.array(got), np.array(want)
    assert np.abs(want_f).max() > 0 and np.abs(got_f - want_f).max() <= 1e-12 * np.abs(want_f).max()
    hit = np.array(segs.length) > 0
    assert hit.any() and not hit.all()  # some rays miss
    targets = [dr.zeros(t.Float, grid.size * batch) for _ in range(2)]
    march.backproject(grid, t, segs, values, targets[0])
    reference.backproject(grid, t, segs, values, targets[1])
    got_b, want_b = (np.array(x) for x in targets)
    assert np.abs(want_b).max() > 0 and np.abs(got_b - want_b).max() <= 1e-12 * np.abs(want_b).max()


@pytest.mark.parametrize(("ndim", "degree", "batch"), CASES)
def test_ray_derivatives_match_the_reference(ndim: int, degree: int, batch: int) -> None:
    grid, t, segs = segments(ndim, degree, batch, seed=7 * ndim + degree)
    rng = np.random.default_rng(degree + 5)
    coeffs = t.Float(rng.normal(size=grid.size * batch))
    values = t.Float(rng.normal(size=dr.width(segs.length)))
    targets = [dr.zeros(t.Float, grid.size * batch) for _ in range(2)]
    got = derivatives.ray_derivatives(grid, t, segs, coeffs, values, targets[0])
    want = reference.ray_derivatives(grid, t, segs, coeffs, values, targets[1])
    pairs = [*zip(got.grad, want.grad, strict=True), *zip(got.moment, want.moment, strict=True)]
    pairs += [(got.f_start, want.f_start)]
    pairs += [(got.f_end, want.f_end), (targets[0], targets[1])]
    for a, b in pairs:
        a_, b_ = np.array(a), np.array(b)
        assert np.abs(b_).max() > 0 and np.abs(a_ - b_).max() <= 1e-11 * np.abs(b_).max()


@pytest.mark.parametrize(("ndim", "degree"), [(ndim, degree) for ndim in (2, 3) for degree in (1, 2, 3)])
def test_float32_ray_derivatives_stay_at_float32_precision(ndim: int, degree: int) -> None:
    """In float32 every derivative component, ``f`` at the ray's ends included (evaluated once per ray), stays
    within a few float32 roundings of the float64 reference (9.3e-7 of its largest value at most, measured)."""
    rng = np.random.default_rng(degree)
    grid, t64, segs64 = segments(ndim, degree, 1, seed=3)
    _, t32, segs32 = segments(ndim, degree, 1, seed=3, dtype="float32")
    coeffs = rng.normal(size=grid.size)
    want = reference.ray_derivatives(grid, t64, segs64, t64.Float(coeffs))
    got = derivatives.ray_derivatives(grid, t32, segs32, t32.Float(coeffs.astype(np.float32)))
    for a, b in zip(
        [*got.grad, *got.moment, got.f_start, got.f_end],
        [*want.grad, *want.moment, want.f_start, want.f_end],
        strict=True,
    ):
        a_, b_ = np.array(a, float), np.array(b)
        assert np.abs(b_).max() > 0 and np.abs(a_ - b_).max() <= 2e-6 * np.abs(b_).max()


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_scaled_segments_are_factorial_times_the_b_spline(degree: int) -> None:
    x = np.linspace(0.0, 1.0, 257)
    got = np.array(bspline_scaled_segments(degree, x))
    want = math.factorial(degree) * np.array(bspline_segments(degree, x))
    assert np.abs(got - want).max() <= 1e-14 * math.factorial(degree)
