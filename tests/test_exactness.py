"""Exactness: one coefficient of each basis projects to its analytic line integral.

The reference integrates the B-spline, written with the truncated-power formula (independent of drct's
segment polynomials), by 12-point Gauss–Legendre quadrature in float64 on every piece between knots.
"""

from __future__ import annotations

import itertools
from math import comb, factorial

import drjit as dr
import numpy as np
import pytest

import drct as ct
from drct.backend import types
from drct.geometry.ray_arrays import geometry_vectors, make_rays

DEGREES = {"voxel": 0, "linear": 1, "bspline2": 2, "bspline3": 3}


def beta(n: int, x: np.ndarray) -> np.ndarray:
    """Centred B-spline of degree n by the truncated-power formula."""
    x = np.asarray(x, dtype=np.float64) + (n + 1) / 2
    total = np.zeros_like(x)
    for k in range(n + 2):
        shifted = x - k
        total += (-1) ** k * comb(n + 1, k) * np.where(shifted > 0, shifted, 0.0) ** n * (shifted > 0)
    return total / factorial(n)


def line_integral(n: int, center: np.ndarray, h: np.ndarray, o: np.ndarray, d: np.ndarray, t0: float, t1: float):
    """∫_{t0}^{t1} Π_a β_n((o_a + t d_a - center_a) / h_a) dt by piecewise Gauss–Legendre quadrature."""
    half = (n + 1) / 2
    lo, hi = t0, t1
    breaks = []
    for a in range(len(o)):
        if d[a] == 0:
            if abs(o[a] - center[a]) >= half * h[a]:
                return 0.0
            continue
        knots = (center[a] + (np.arange(n + 2) - half) * h[a] - o[a]) / d[a]
        lo, hi = max(lo, knots.min()), min(hi, knots.max())
        breaks.extend(knots)
    if not lo < hi:
        return 0.0
    points = np.unique(np.clip(np.array([lo, hi, *breaks]), lo, hi))
    xg, wg = np.polynomial.legendre.leggauss(12)
    total = 0.0
    for a, b in itertools.pairwise(points):
        t = (a + b) / 2 + (b - a) / 2 * xg
        values = np.ones_like(t)
        for ax in range(len(o)):
            values *= beta(n, (o[ax] + t * d[ax] - center[ax]) / h[ax])
        total += (b - a) / 2 * float(np.sum(wg * values))
    return total


def single_coefficient(vg: ct.VolumeGeometry, index: tuple[int, ...]) -> np.ndarray:
    x = np.zeros(vg.shape, np.float32)
    x[index] = 1.0
    return x


def reference(vg: ct.VolumeGeometry, pg, index: tuple[int, ...], n: int) -> np.ndarray:
    t = types("float64")
    rays = make_rays(pg, t, geometry_vectors(pg, t), dr.arange(t.UInt, pg.num_rays))
    o = np.stack([c.numpy() for c in rays.origin], axis=1)
    d = np.stack([c.numpy() for c in rays.direction], axis=1)
    t0, t1 = rays.t_min.numpy(), rays.t_max.numpy()
    center = np.array([c[i] for c, i in zip(vg.coordinates(), index[::-1], strict=True)])
    h = np.array(vg.spacing_xyz)
    out = [line_integral(n, center, h, o[i], d[i], t0[i], t1[i]) for i in range(len(o))]
    return np.array(out).reshape(pg.shape)


def random_lines(ndim: int, count: int, seed: int, spread: float) -> ct.RayGeometry:
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(count, ndim))
    directions[:5] = np.eye(ndim)[np.arange(5) % ndim]  # axis-aligned rays (zero direction components)
    return ct.rays(rng.uniform(-spread, spread, size=(count, ndim)), directions)


CASES = {
    "2d": (ct.VolumeGeometry((9, 8), voxel_size=(1.3, 0.7), center=(0.4, -0.3)), [(4, 3), (0, 7)]),
    "3d": (
        ct.VolumeGeometry((6, 7, 5), voxel_size=(0.8, 1.1, 1.0), center=(0.1, 0.2, -0.3)),
        [(3, 3, 2), (0, 6, 0)],
    ),
}


@pytest.mark.parametrize("basis", list(DEGREES))
@pytest.mark.parametrize("case", list(CASES))
def test_single_coefficient_matches_analytic_integral(case: str, basis: str) -> None:
    vg, indices = CASES[case]
    n = DEGREES[basis]
    for index in indices:
        center = [c[i] for c, i in zip(vg.coordinates(), index[::-1], strict=True)]
        pg = random_lines(vg.ndim, 300, seed=sum(index) + n, spread=0.4 * (n + 1) * min(vg.voxel_size))
        pg = ct.rays(pg.origins + np.array(center), pg.directions)  # lines through the coefficient's support
        got = ct.Projector(vg, pg, basis=basis)(single_coefficient(vg, index))
        want = reference(vg, pg, index, n)
        assert np.count_nonzero(want) > 100, "most test lines must hit the support"
        err = np.max(np.abs(got - want)) / np.max(np.abs(want))
        assert err <= 1e-4, f"{case} {basis} index {index}: max error {err:.2e} of the peak"


@pytest.mark.parametrize("basis", ["voxel", "bspline2"])
def test_cone_rays_stop_at_source_and_pixel(basis: str) -> None:
    """Cone-beam rays integrate from the source to the pixel: a source inside the support sees half a blob."""
    vg = ct.VolumeGeometry((7, 7, 7))
    pg = ct.cone(np.array([0.0, 0.4]), (5, 5), 0.8, 0.5, 6.0)  # source 0.5 mm from the centre voxel
    index = (3, 3, 3)
    got = ct.Projector(vg, pg, basis=basis)(single_coefficient(vg, index))
    want = reference(vg, pg, index, DEGREES[basis])
    assert np.max(np.abs(got - want)) <= 1e-4 * np.max(np.abs(want))


def test_voxel_basis_is_intersection_length() -> None:
    """For the box basis, A[ray, voxel] is the length of the ray inside the voxel (slab method reference)."""
    vg = ct.VolumeGeometry((5, 6), voxel_size=(1.5, 1.0))
    pg = random_lines(2, 400, seed=3, spread=4.0)
    A = ct.Projector(vg, pg, basis="voxel")
    lo = np.array(vg.extent_min)
    h = np.array(vg.spacing_xyz)
    for index in [(2, 3), (0, 0), (4, 5)]:
        box_lo = lo + np.array(index[::-1]) * h
        box_hi = box_lo + h
        with np.errstate(divide="ignore", invalid="ignore"):
            ta = (box_lo - pg.origins) / pg.directions
            tb = (box_hi - pg.origins) / pg.directions
        near = np.nanmax(np.where(pg.directions == 0, -np.inf, np.minimum(ta, tb)), axis=1)
        far = np.nanmin(np.where(pg.directions == 0, np.inf, np.maximum(ta, tb)), axis=1)
        inside = np.all((pg.directions != 0) | ((pg.origins > box_lo) & (pg.origins < box_hi)), axis=1)
        length = np.where(inside, np.maximum(far - near, 0.0), 0.0)
        got = A(single_coefficient(vg, index))
        assert np.count_nonzero(length) > 10
        np.testing.assert_allclose(got, length, atol=2e-6 * h.max(), rtol=1e-5)


def test_rays_that_miss_give_exactly_zero() -> None:
    vg = ct.VolumeGeometry((8, 8, 8))
    pg = ct.rays(
        [[20.0, 0.0, 0.0], [0.0, 0.0, 4.6], [0.0, 3.9, 0.0]],
        [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
    )
    for basis in DEGREES:
        y = ct.Projector(vg, pg, basis=basis)(np.ones(vg.shape, np.float32))
        # rays 0 and 1 pass outside the support of every basis (the support grows by (n + 1) / 2 - 1/2 voxels)
        support_edge = 4.0 + (DEGREES[basis] + 1) / 2 - 0.5
        assert y[0] == 0.0
        assert (y[1] == 0.0) == (4.6 >= support_edge)
        assert y[2] > 0.0
