"""Triple-energy-window scatter (drct.emission.tew_scatter) and its use as OSEM's additive term."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import drct as ct
from drct.emission import Collimator, SPECTProjector, tew_scatter

MU_WATER = 0.0154


def test_tew_formula_and_refusals() -> None:
    rng = np.random.default_rng(0)
    lo, up = rng.random((3, 4, 5)) * 10, rng.random((3, 4, 5)) * 3
    s = tew_scatter(lo, up, lower_width=4.0, upper_width=6.0, peak_width=20.0)
    np.testing.assert_allclose(s, (lo / 4.0 + up / 6.0) * 20.0 / 2, rtol=1e-14)
    np.testing.assert_allclose(tew_scatter(lo, None, 4.0, 0.0, 20.0), lo / 4.0 * 10.0, rtol=1e-14)
    smooth = tew_scatter(lo, up, 4.0, 6.0, 20.0, smooth_sigma=1.0)
    assert smooth.shape == s.shape and smooth.min() >= 0 and smooth.std() < s.std()
    bad = lo.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ct.NonFiniteError):
        tew_scatter(bad, up, 4.0, 6.0, 20.0)
    with pytest.raises(ValueError, match="non-negative"):
        tew_scatter(-lo, up, 4.0, 6.0, 20.0)
    with pytest.raises(ValueError, match="peak_width"):
        tew_scatter(lo, up, 4.0, 6.0, 0.0)
    with pytest.raises(ValueError, match="must match"):
        tew_scatter(lo, up[:2], 4.0, 6.0, 20.0)


def test_osem_with_the_tew_estimate_removes_the_scatter_bias() -> None:
    """Synthetic three-window acquisition: the scatter's energy spectrum is linear across the windows (TEW's
    model), spatially a wide blur of the primaries. OSEM with the TEW estimate as additive term recovers the
    activity; without it the scatter shows up as activity."""
    vg = ct.VolumeGeometry((8, 24, 24), voxel_size=4.0)
    g = ct.spect(np.linspace(0, 2 * np.pi, 24, endpoint=False), 80.0, (8, 24), 4.0)
    zz, yy, xx = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in vg.shape), indexing="ij")
    body = xx**2 + yy**2 <= 9.5**2
    sphere = (xx - 3) ** 2 + (yy + 2) ** 2 + zz**2 <= 3.2**2
    f = (body * 1.0 + sphere * 5.0).astype(np.float32) * 40.0
    A = SPECTProjector(vg, g, mu=(MU_WATER * body).astype(np.float32), collimator=Collimator.lehr())
    primary = A(f).astype(np.float64)
    # scatter density (counts per keV) per pixel, falling linearly with energy: 126-134 | 134-154 | 154-162 keV
    spread = gaussian_filter(primary, sigma=(0, 2.5, 4.0), mode="reflect")
    density = lambda e: 0.6 * spread / 20.0 * (1.0 - (e - 126.0) / 40.0)  # noqa: E731
    energies = np.linspace(126.0, 162.0, 361)
    per_kev = np.stack([density(e) for e in energies])
    window = lambda a, b: np.trapezoid(per_kev[(energies >= a - 1e-9) & (energies <= b + 1e-9)], dx=0.1, axis=0)  # noqa: E731
    true_scatter = window(134.0, 154.0)
    rng = np.random.default_rng(2)
    peak = rng.poisson(primary + true_scatter).astype(np.float64)
    lower, upper = rng.poisson(window(126.0, 134.0)), rng.poisson(window(154.0, 162.0))
    estimate = tew_scatter(lower, upper, 8.0, 8.0, 20.0, smooth_sigma=2.0)
    # the (noisy, smoothed) estimate tracks the true scatter in total and shape
    assert abs(estimate.sum() / true_scatter.sum() - 1.0) < 0.03
    assert np.linalg.norm(estimate - true_scatter) < 0.15 * np.linalg.norm(true_scatter)
    assert true_scatter.sum() > 0.25 * primary.sum()

    inside = body & ~sphere
    plain = ct.recon.osem(A, peak, niter=4, subsets=6, progress=False)
    corrected = ct.recon.osem(A, peak, niter=4, subsets=6, progress=False, additive=estimate)
    exact = ct.recon.osem(A, peak, niter=4, subsets=6, progress=False, additive=true_scatter)
    truth = f[inside].mean()
    assert plain[inside].mean() > 1.2 * truth  # scatter counted as activity
    assert abs(corrected[inside].mean() / truth - 1.0) < 0.04
    assert abs(corrected[inside].mean() / exact[inside].mean() - 1.0) < 0.03
    # MLEM takes the same term
    ml = ct.recon.mlem(A, peak, niter=8, progress=False, additive=estimate)
    assert abs(ml[inside].mean() / truth - 1.0) < 0.05


def test_additive_term_is_checked() -> None:
    vg = ct.VolumeGeometry((4, 8, 8), voxel_size=4.0)
    A = SPECTProjector(vg, ct.spect(np.linspace(0, np.pi, 4), 40.0, (4, 8), 4.0))
    y = A(np.ones(vg.shape, np.float32))
    with pytest.raises(ValueError, match="additive must be non-negative"):
        ct.recon.osem(A, y, niter=1, subsets=2, progress=False, additive=-np.ones_like(y))
    with pytest.raises(ValueError, match="shape"):
        ct.recon.mlem(A, y, niter=1, progress=False, additive=np.ones((2, 2)))
    with pytest.raises(ct.NonFiniteError):
        ct.recon.mlem(A, y, niter=1, progress=False, additive=np.full_like(y, np.inf))
