"""The SPECT operator (drct.emission): exact transpose, attenuation and collimator response against analytic
cases, derivatives against finite differences, and MLEM/OSEM on it."""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np
import pytest
from conftest import assert_adjoint_float32, transpose_rows
from spect_reference import chord, disk_fraction  # analytic helpers shared with test_spect_peers.py

import drct as ct
from drct.emission import Collimator, SPECTProjector
from drct.emission.collimator import FWHM_PER_SIGMA

MU_WATER = 0.0154  # 1/mm at 140 keV


def small(
    dtype: str = "float32",
    mu: bool = True,
    psf: bool = True,
    radius: Any = 40.0,
    method: str = "direct",
    tiny: bool = False,
) -> SPECTProjector:
    rng = np.random.default_rng(1)
    shape, cols, views = ((3, 6, 5), 7, 3) if tiny else ((6, 10, 9), 11, 7)
    vg = ct.VolumeGeometry(shape, voxel_size=(4.0, 4.0, 3.5))
    angles = np.linspace(0.3, 2 * np.pi + 0.3, views, endpoint=False)
    g = ct.spect(angles, radius, (shape[0], cols), (4.0, 3.0))
    m = (rng.random(vg.shape) * 0.03).astype(np.float32) if mu else None
    return SPECTProjector(vg, g, mu=m, collimator=Collimator.lehr() if psf else None, dtype=dtype, psf_method=method)


@pytest.mark.parametrize("method", ["direct", "incremental"])
def test_adjoint_inner_product_float32_with_attenuation_and_psf(method: str) -> None:
    A = small(method=method)
    assert A.psf_radius[1] > 0
    assert_adjoint_float32(A)


@pytest.mark.parametrize(
    ("radius", "method", "tiny"),
    [
        (40.0, "direct", True),
        (np.array([10.0, 24.0, 19.0]), "direct", True),
        (np.array([10.0, 24.0, 19.0]), "incremental", True),
    ],
)
def test_dense_transpose_equality_float64(radius: Any, method: str, tiny: bool) -> None:
    """A.T is the transpose of A, entry by entry, also for a body-contour orbit cutting the grid's corners."""
    A = small("float64", radius=radius, method=method, tiny=tiny)
    n, m = A.vg.size, int(np.prod(A.range_shape))
    hidden = A.hidden_mask().reshape(-1)
    cols = []
    for c in range(n):
        e = np.zeros(n)
        e[c] = 1.0
        cols.append(np.zeros(m) if hidden[c] else A(e.reshape(A.domain_shape)).reshape(-1))
    dense = np.stack(cols, axis=1)
    rows = transpose_rows(A)
    rows[:, hidden] = 0.0  # A refuses activity there, so those columns are not part of its domain
    assert np.abs(dense).max() > 0
    np.testing.assert_allclose(rows, dense, rtol=0, atol=1e-13 * np.abs(dense).max())
    assert hidden.any() == (np.min(radius) < (12 if tiny else 30))


@pytest.mark.parametrize("method", ["direct", "incremental"])
@pytest.mark.parametrize("point", [(0, 0), (3, -2)])
def test_point_source_in_water_cylinder_matches_exp_minus_mu_l(point: tuple[int, int], method: str) -> None:
    vg = ct.VolumeGeometry((8, 31, 31), voxel_size=2.0)
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    g = ct.spect(angles, 80.0, (8, 31), 2.0)
    cyl = 26.0
    mu = MU_WATER * disk_fraction(vg, cyl)
    f = np.zeros(vg.shape)
    f[4, 15 + point[1], 15 + point[0]] = 1.0
    lehr = Collimator.lehr()
    counts = SPECTProjector(vg, g, mu=mu, collimator=lehr, dtype="float64", psf_method=method)(f).sum(axis=(1, 2))
    free = SPECTProjector(vg, g, collimator=lehr, dtype="float64", psf_method=method)(f).sum(axis=(1, 2))
    p = np.array(point, dtype=np.float64) * 2.0
    expected = np.array([np.exp(-MU_WATER * chord(p, np.array([-np.sin(a), np.cos(a)]), cyl)) for a in angles])
    np.testing.assert_allclose(counts / free, expected, rtol=5e-3)
    assert np.ptp(expected) > 0 or point == (0, 0)


@pytest.mark.parametrize("method", ["direct", "incremental"])
@pytest.mark.parametrize("radius", [50.0, 120.0, 250.0])
def test_collimator_response_fwhm_matches_the_model(radius: float, method: str) -> None:
    """A point 16 mm off the axis in x and y: at 0° it is 16 mm nearer the collimator, at 90° 16 mm farther."""
    vg = ct.VolumeGeometry((31, 31, 31), voxel_size=2.0)
    lehr = Collimator.lehr()
    f = np.zeros(vg.shape)
    f[15, 15 + 8, 15 + 8] = 1.0
    for angle, distance in ((0.0, radius - 16.0), (np.pi / 2, radius + 16.0)):
        g = ct.spect([angle], radius, (31, 45), 2.0)
        A = SPECTProjector(vg, g, collimator=lehr, dtype="float64", psf_method=method)
        y = A(f)[0]  # 45 columns: the widest response fits on the detector
        model = float(lehr.fwhm(distance))
        for axis in (0, 1):  # the profile along the columns, along the rows
            profile = y.sum(axis=axis)
            pos = np.arange(profile.size) * 2.0
            centre = (profile * pos).sum() / profile.sum()
            sigma = np.sqrt((profile * (pos - centre) ** 2).sum() / profile.sum())
            assert abs(sigma * FWHM_PER_SIGMA - model) <= 0.02 * model
    assert float(lehr.fwhm(250.0)) > 1.5 * float(lehr.fwhm(50.0))


def test_collimator_formula() -> None:
    c = Collimator(hole_diameter=1.5, hole_length=30.0, intrinsic_fwhm=3.0, gap=5.0, septal_mu=2.0)
    geo = 1.5 * (29.0 + 100.0 + 5.0) / 29.0
    assert float(c.fwhm(100.0)) == pytest.approx(np.hypot(geo, 3.0), rel=1e-12)
    assert float(c.sigma(100.0)) == pytest.approx(np.hypot(geo, 3.0) / 2.3548200450309493, rel=1e-12)
    with pytest.raises(ValueError, match="hole_diameter"):
        Collimator(hole_diameter=0.0, hole_length=30.0)
    with pytest.raises(ValueError, match="effective hole length"):
        Collimator(hole_diameter=1.0, hole_length=3.0, septal_mu=0.5)
    with pytest.raises(ValueError, match="distances"):
        c.fwhm(-1.0)


def test_forward_matches_the_parallel_x_ray_transform_without_physics() -> None:
    """Without attenuation and blur, A is drct's parallel projection (same axes), up to interpolation."""
    vg = ct.VolumeGeometry((6, 24, 24), voxel_size=2.0)
    angles = np.linspace(0, 2 * np.pi, 9, endpoint=False)
    A = SPECTProjector(vg, ct.spect(angles, 60.0, (6, 24), 2.0))
    P = ct.Projector(vg, ct.parallel(angles, (6, 24), 2.0), basis="linear")
    zz, yy, xx = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in vg.shape), indexing="ij")
    x = np.exp(-((xx - 3) ** 2 + (yy + 2) ** 2) / 12.0).astype(np.float32) * (zz > -2)
    a, p = A(x), P(x)
    assert np.abs(a - p).max() <= 0.02 * np.abs(p).max()


@pytest.mark.parametrize("method", ["direct", "incremental"])
def test_gradients_match_finite_differences(method: str) -> None:
    A = small("float64", method=method)
    t = A.types
    rng = np.random.default_rng(3)
    f = rng.random(A.domain_shape)
    mu = rng.random(A.domain_shape) * 0.03
    w = rng.random(A.range_shape)
    df, dmu = rng.standard_normal(A.domain_shape), rng.standard_normal(A.domain_shape) * 0.01

    def loss(ff: np.ndarray, mm: np.ndarray) -> float:
        y = A.forward_tensor(t.Tensor(ff), mu=t.Tensor(mm))
        return float(np.vdot(y.numpy(), w))

    ft, mt = t.Tensor(f), t.Tensor(mu)
    dr.enable_grad(ft, mt)
    y = A.forward_tensor(ft, mu=mt)
    dr.backward(dr.sum(y.array * t.Float(w.reshape(-1))))
    gf, gm = ft.grad.numpy(), mt.grad.numpy()
    h = 1e-4
    fd_f = (loss(f + h * df, mu) - loss(f - h * df, mu)) / (2 * h)
    fd_mu = (loss(f, mu + h * dmu) - loss(f, mu - h * dmu)) / (2 * h)
    assert np.vdot(gf, df) == pytest.approx(fd_f, rel=1e-8)
    assert np.vdot(gm, dmu) == pytest.approx(fd_mu, rel=1e-6)
    assert abs(fd_mu) > 1e-3 * abs(fd_f) > 0

    # forward mode, both inputs at once
    ft, mt = t.Tensor(f), t.Tensor(mu)
    dr.enable_grad(ft, mt)
    dr.set_grad(ft, t.Tensor(df))
    dr.set_grad(mt, t.Tensor(dmu))
    y = A.forward_tensor(ft, mu=mt)
    jvp = float(np.vdot(dr.forward_to(y).numpy(), w))
    assert jvp == pytest.approx(fd_f + fd_mu, rel=1e-6)

    # A.T is differentiable w.r.t. its input: its VJP is A
    yt = t.Tensor(w)
    dr.enable_grad(yt)
    back = A.adjoint_tensor(yt)
    dr.backward(dr.sum(back.array * t.Float(df.reshape(-1))))
    np.testing.assert_allclose(yt.grad.numpy(), A(df), rtol=1e-10, atol=1e-12)


def hot_sphere_problem():
    vg = ct.VolumeGeometry((12, 24, 24), voxel_size=4.0)
    g = ct.spect(np.linspace(0, 2 * np.pi, 24, endpoint=False), 80.0, (12, 24), 4.0)
    zz, yy, xx = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in vg.shape), indexing="ij")
    body = (xx**2 + yy**2 <= 9.5**2) & (np.abs(zz) <= 5)
    sphere = (xx - 3) ** 2 + (yy + 2) ** 2 + zz**2 <= 3.2**2
    f = (body * 1.0 + sphere * 7.0).astype(np.float32)
    A = SPECTProjector(vg, g, mu=(MU_WATER * body).astype(np.float32), collimator=Collimator.lehr())
    return A, f, sphere, body & ~sphere


def test_mlem_and_osem_recover_a_hot_sphere() -> None:
    A, f, sphere, background = hot_sphere_problem()
    y = A(f)
    true_contrast = f[sphere].mean() / f[background].mean()
    start = A(np.ones_like(f))
    rec = ct.recon.mlem(A, y, niter=40, progress=False)
    contrast = rec[sphere].mean() / rec[background].mean()
    assert 0.7 * true_contrast < contrast < 1.1 * true_contrast
    assert np.linalg.norm(A(rec) - y) < 0.05 * np.linalg.norm(y - start)
    assert abs(rec[background].mean() - 1.0) < 0.15
    rec_os = ct.recon.osem(A, y, niter=5, subsets=6, progress=False)
    assert 0.7 * true_contrast < rec_os[sphere].mean() / rec_os[background].mean() < 1.1 * true_contrast


def test_incremental_response_is_close_to_the_direct_one() -> None:
    """Incremental blurring (variance-exact, near-Gaussian kernels) against per-plane sampled Gaussians."""
    A, f, _, _ = hot_sphere_problem()
    B = SPECTProjector(A.vg, A.pg, mu=A.mu, collimator=Collimator.lehr(), psf_method="incremental")
    a, b = A(f), B(f)
    assert np.abs(a - b).max() <= 0.03 * np.abs(a).max()
    assert np.abs(a.sum() - b.sum()) <= 5e-3 * a.sum()  # they lose different tails past the detector's edges
    with pytest.raises(ValueError, match="non-decreasing"):
        SPECTProjector(A.vg, A.pg, collimator=lambda d: 5.0 / (1.0 + d), psf_method="incremental")


def test_subsets_keep_the_physics() -> None:
    A = small()
    S = A.select_views([1, 4])
    x = np.random.default_rng(0).random(A.domain_shape).astype(np.float32)
    np.testing.assert_allclose(S(x), A(x)[[1, 4]], rtol=1e-6, atol=1e-7)


def test_refusals() -> None:
    A = small(radius=np.linspace(22.0, 40.0, 7))
    mask = A.hidden_mask()
    x = np.zeros(A.domain_shape, np.float32)
    x[mask] = 1.0
    with pytest.raises(ValueError, match="behind the collimator face"):
        A(x)
    x = np.ones(A.domain_shape, np.float32)
    x[0, 0, 0] = np.nan
    with pytest.raises(ct.NonFiniteError):
        small()(x)
    vg = ct.VolumeGeometry((6, 10, 9), voxel_size=4.0)
    with pytest.raises(ValueError, match="z slices"):
        SPECTProjector(vg, ct.spect([0.0], 50.0, (5, 10), 4.0))
    with pytest.raises(ValueError, match="mu"):
        SPECTProjector(vg, ct.spect([0.0], 50.0, (6, 10), 4.0), mu=-np.ones(vg.shape, np.float32))
    with pytest.raises(ValueError, match="radius"):
        ct.spect([0.0, 1.0], [50.0], (6, 10), 4.0)


def test_unrolled_mlem_is_differentiable_through_the_operator_in_torch() -> None:
    """The paper's point: gradients of a loss on a few MLEM iterates w.r.t. the data, through A and A.T."""
    torch = pytest.importorskip("torch")
    A = small("float64")
    rng = np.random.default_rng(0)
    y0 = torch.tensor(A(rng.random(A.domain_shape) + 0.5), requires_grad=True)
    w = torch.tensor(rng.random(A.domain_shape))
    (ct.recon.mlem(A, y0, niter=3, progress=False) * w).sum().backward()
    assert y0.grad is not None
    d = rng.standard_normal(A.range_shape)

    def loss(y: np.ndarray) -> float:
        return float((ct.recon.mlem(A, y, niter=3, progress=False) * w.numpy()).sum())

    h = 1e-5
    base = y0.detach().numpy()
    fd = (loss(base + h * d) - loss(base - h * d)) / (2 * h)
    assert float((y0.grad * torch.tensor(d)).sum()) == pytest.approx(fd, rel=1e-6)


@pytest.mark.parametrize("method", ["direct", "incremental"])
def test_circular_orbit_shares_one_kernel_table(method: str) -> None:
    """A circular orbit reads its response from one table for all views (the fast path); the per-view tables
    (``uniform = False``, the reference) give the same projections and back projections."""
    A = small(method=method)
    assert A._engine.uniform
    B = small(method=method)
    B._engine.uniform = False
    x = np.random.default_rng(2).random(A.domain_shape).astype(np.float32)
    y = np.random.default_rng(3).random(A.range_shape).astype(np.float32)
    np.testing.assert_allclose(A(x), B(x), rtol=1e-6, atol=1e-7 * np.abs(B(x)).max())
    np.testing.assert_allclose(A.T(y), B.T(y), rtol=1e-6, atol=1e-7 * np.abs(B.T(y)).max())
    assert not small(radius=np.linspace(30.0, 40.0, 7), method=method)._engine.uniform
