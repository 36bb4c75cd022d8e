"""drct's SPECT operator against PyTomography (the `peers` extra) on the same phantom and geometry, and both
against the analytic cases: a point source in a water cylinder (exp(-μL)) and a line source's FWHM vs σ(d)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import drct as ct
from drct.emission import Collimator, SPECTProjector

pytest.importorskip("pytomography")
from spect_reference import (
    PyTomographySPECT,
    disk_fraction,
    line_source_fwhm,
    point_source_attenuation,
)


def drct_make(vg: Any, g: Any, mu: Any, collimator: Any) -> Any:
    return SPECTProjector(vg, g, mu=mu, collimator=collimator, dtype="float64")


def pyt_make(vg: Any, g: Any, mu: Any, collimator: Any) -> Any:
    return PyTomographySPECT(vg, g, mu, collimator).forward


@pytest.mark.parametrize(("with_mu", "with_psf"), [(False, False), (True, False), (False, True), (True, True)])
def test_projections_agree_with_pytomography(with_mu: bool, with_psf: bool) -> None:
    """Different discretisations (bilinear rays vs rotated voxel grids): forward within 2 %, back within 6 %."""
    vg = ct.VolumeGeometry((8, 24, 24), voxel_size=4.0)
    g = ct.spect(np.linspace(0, 2 * np.pi, 8, endpoint=False), 150.0, (8, 24), 4.0)
    zz, yy, xx = np.meshgrid(*(np.arange(k) - (k - 1) / 2 for k in vg.shape), indexing="ij")
    f = ((xx - 6) ** 2 + (yy + 3) ** 2 + (zz - 2) ** 2 <= 16) * 5.0 + ((xx + 5) ** 2 + (yy - 7) ** 2 <= 9) * (
        zz > 0
    ) * 2.0
    f = f.astype(np.float32)
    mu = (0.0154 * disk_fraction(vg, 40.0)).astype(np.float32) if with_mu else None
    c = Collimator.lehr() if with_psf else None
    A, P = SPECTProjector(vg, g, mu=mu, collimator=c), PyTomographySPECT(vg, g, mu, c)
    a, p = A(f), P.forward(f)
    assert np.linalg.norm(a - p) <= 0.02 * np.linalg.norm(a)
    y = np.random.default_rng(0).random(a.shape).astype(np.float32)
    b, q = A.T(y), P.back(y)
    assert np.linalg.norm(b - q) <= 0.06 * np.linalg.norm(b)
    # the layout adapter is right: an orientation error would leave tens of percent
    assert np.linalg.norm(a[:, :, ::-1] - p) > 0.2 * np.linalg.norm(a)


@pytest.mark.parametrize("make", [drct_make, pyt_make], ids=["drct", "pytomography"])
def test_point_source_in_a_water_cylinder(make: Any) -> None:
    measured, expected = point_source_attenuation(make)
    assert np.ptp(expected) > 0.1
    np.testing.assert_allclose(measured, expected, rtol=5e-3)


@pytest.mark.parametrize("make", [drct_make, pyt_make], ids=["drct", "pytomography"])
def test_line_source_fwhm_matches_sigma_of_d(make: Any) -> None:
    rows = line_source_fwhm(make)
    assert [round(d) for d, _, _ in rows] == [191, 149, 109]
    for _distance, got, model in rows:
        assert got == pytest.approx(model, rel=0.02)
