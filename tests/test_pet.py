"""PET (drct.pet): scanner and sinogram geometry, exact transpose, time of flight against a slow numpy twin and
the non-TOF projection, analytic chords and attenuation, listmode, the Poisson log-likelihood and EM on it."""

from __future__ import annotations

import inspect
import math
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from conftest import assert_adjoint_float32, transpose_rows
from test_spect import disk_fraction  # anti-aliased cylinder along z

import drct as ct
from drct.pet import TOF, PETProjector

MU_WATER = 0.0096  # 1/mm at 511 keV


def tiny_scanner(rings: int = 3, crystals: int = 16, radius: float = 50.0) -> ct.pet.Scanner:
    return ct.pet.scanner(rings=rings, crystals_per_ring=crystals, radius=radius, crystal_size=(4.0, 4.0))


def tiny_volume() -> ct.VolumeGeometry:
    return ct.VolumeGeometry((3, 9, 8), voxel_size=(4.0, 5.0, 6.0), center=(1.5, -2.0, 0.5))


# -- geometry ---------------------------------------------------------------------------------------------------
def test_scanner_positions() -> None:
    sc = ct.pet.scanner(rings=3, crystals_per_ring=12, radius=100.0, crystal_size=(4.0, 5.0), ring_spacing=4.5)
    pos = sc.positions()
    assert pos.shape == (36, 3)
    np.testing.assert_allclose(np.hypot(pos[:, 0], pos[:, 1]), 100.0, rtol=1e-12)
    np.testing.assert_allclose(np.unique(pos[:, 2]), [-4.5, 0.0, 4.5], atol=1e-12)
    np.testing.assert_allclose(pos[12 + 3, :2], [0.0, 100.0], atol=1e-12)  # ring 1, crystal 3: 90 degrees
    with pytest.raises(ValueError, match="do not fit"):
        ct.pet.scanner(rings=1, crystals_per_ring=200, radius=100.0, crystal_size=4.0)
    with pytest.raises(ValueError, match="even"):
        ct.pet.scanner(rings=1, crystals_per_ring=15, radius=100.0)
    with pytest.raises(ValueError, match="ring_spacing"):
        ct.pet.scanner(rings=2, crystals_per_ring=16, radius=100.0, crystal_size=4.0, ring_spacing=3.0)


@pytest.mark.parametrize(("span", "mrd", "mash"), [(1, None, 1), (3, None, 2), (3, 3, 1), (5, 4, 4)])
def test_sinogram_bins_hold_every_lor_once(span: int, mrd: int | None, mash: int) -> None:
    """Every ordered-ring LOR with |δ| <= max ring difference lies in exactly one bin, and bin_of finds it."""
    sc = tiny_scanner(rings=5, crystals=16)
    g = ct.pet.sinogram(sc, span=span, max_ring_difference=mrd, mash=mash)
    lors = g.lors()
    a, b = lors.crystal_a[lors.valid], lors.crystal_b[lors.valid]
    n, rings = sc.crystals_per_ring, sc.rings
    limit = rings - 1 if mrd is None else mrd
    pairs_within = sum(rings - abs(d) for d in range(-limit, limit + 1))
    assert a.size == pairs_within * n * (n - 1) // 2
    key = np.minimum(a, b) * sc.num_crystals + np.maximum(a, b)
    assert np.unique(key).size == a.size  # no LOR twice (in either orientation)
    owner = np.repeat(np.arange(int(np.prod(g.shape))), lors.group)[lors.valid]
    index, flipped = g.bin_of(a, b)
    np.testing.assert_array_equal(index, owner)
    assert not flipped.any()
    index, flipped = g.bin_of(b, a)
    np.testing.assert_array_equal(index, owner)
    assert flipped.all()
    if limit < rings - 1:  # pairs beyond the maximum ring difference are in no bin
        ra = np.zeros(n, dtype=np.int64)
        far, _ = g.bin_of(ra * n + np.arange(n), (ra + limit + 1) * n + (np.arange(n) + n // 2) % n)
        assert np.all(far == -1)


def test_sinogram_bin_geometry_view_angle_and_radial_distance() -> None:
    """Bin (v, p, k) of a span-1 sinogram: LOR normal at angle ≈ π(2v + 1/2)/N (± π/2N), signed distance
    R cos(π d / N) with d = k + first radial; the plane's ring pair at the crystals' z."""
    sc = tiny_scanner(rings=2, crystals=24, radius=80.0)
    g = ct.pet.sinogram(sc, radial_bins=15)
    lors = g.lors()
    pos = sc.positions()
    p1, p2 = pos[lors.crystal_a], pos[lors.crystal_b]
    n = sc.crystals_per_ring
    v, p, k = np.unravel_index(np.arange(lors.count), g.shape)
    d = k + g.first_radial
    sigma = 2 * v + d % 2
    normal = np.stack([np.cos(np.pi * sigma / n), np.sin(np.pi * sigma / n)], axis=1)
    mid = 0.5 * (p1 + p2)[:, :2]
    np.testing.assert_allclose((mid * normal).sum(axis=1), 80.0 * np.cos(np.pi * d / n), atol=1e-9)
    np.testing.assert_allclose(((p2 - p1)[:, :2] * normal).sum(axis=1), 0.0, atol=1e-9)  # the LOR is normal to it
    rings = np.array([g.ring_pairs(int(q))[0] for q in p])
    np.testing.assert_allclose(p1[:, 2], (rings[:, 0] - 0.5) * 4.0)
    np.testing.assert_allclose(p2[:, 2], (rings[:, 1] - 0.5) * 4.0)
    assert g.shape == (12, 4, 15)


def test_listmode_and_sinogram_refuse_bad_input() -> None:
    sc = tiny_scanner()
    with pytest.raises(ValueError, match="itself"):
        ct.pet.listmode(sc, [0, 1], [5, 1])
    with pytest.raises(ValueError, match=r"\[0, 48\)"):
        ct.pet.listmode(sc, [0], [48])
    with pytest.raises(ValueError, match="odd"):
        ct.pet.sinogram(sc, span=2)
    with pytest.raises(ValueError, match="mash"):
        ct.pet.sinogram(sc, mash=3)
    with pytest.raises(ValueError, match="inside the ring"):
        PETProjector(ct.VolumeGeometry((3, 30, 30), voxel_size=4.0), ct.pet.sinogram(sc))
    near = ct.VolumeGeometry((3, 24, 24), voxel_size=2.9)  # voxels reach 49.2 mm, cubic B-splines 55.4 mm
    PETProjector(near, ct.pet.sinogram(sc))
    with pytest.raises(ValueError, match="inside the ring"):
        PETProjector(near, ct.pet.sinogram(sc), basis="bspline3")
    with pytest.raises(ValueError, match="tof_bin"):
        PETProjector(tiny_volume(), ct.pet.listmode(sc, [0], [9]), tof=TOF(5, 10.0, 20.0))
    with pytest.raises(ValueError, match="outside"):
        PETProjector(tiny_volume(), ct.pet.listmode(sc, [0], [9], tof_bin=[5]), tof=TOF(5, 10.0, 20.0))
    with pytest.raises(ValueError, match="sensitivity="):
        PETProjector(tiny_volume(), ct.pet.listmode(sc, [0], [9]), normalisation=[0.5])
    with pytest.raises(ValueError, match="for listmode"):
        PETProjector(tiny_volume(), ct.pet.sinogram(sc), sensitivity=np.ones(tiny_volume().shape))
    with pytest.raises(ValueError, match="no bin"):
        ct.pet.sinogram(sc, max_ring_difference=0).histogram(ct.pet.listmode(sc, [0], [16 + 8]))
    with pytest.raises(ct.NonFiniteError):
        PETProjector(tiny_volume(), ct.pet.sinogram(sc))(np.full(tiny_volume().shape, np.nan))


# -- the operator ---------------------------------------------------------------------------------------------
def operators(dtype: str, small: bool = False) -> dict[str, PETProjector]:
    """Sinogram (span 3, mash 2) and listmode, with and without TOF, all with attenuation and normalisation."""
    rng = np.random.default_rng(3)
    sc = tiny_scanner()
    vg = ct.VolumeGeometry((3, 6, 5), voxel_size=(4.0, 5.0, 6.0), center=(1.5, -2.0, 0.5)) if small else tiny_volume()
    mu = (rng.random(vg.shape) * 0.02).astype(dtype)
    tof = TOF(bins=7, bin_width=9.0, fwhm=25.0)
    g = ct.pet.sinogram(sc, span=3, max_ring_difference=1 if small else None, mash=2, radial_bins=7 if small else 11)
    if small:
        g = g.select_views([3])
    norm = 0.5 + rng.random(g.shape)
    events = 40
    a = rng.integers(0, sc.num_crystals, events)
    b = (a + rng.integers(1, sc.num_crystals, events)) % sc.num_crystals
    lm = ct.pet.listmode(sc, a, b)
    lm_tof = ct.pet.listmode(sc, a, b, tof_bin=rng.integers(0, tof.bins, events))
    lm_norm = 0.5 + rng.random(events)
    sens = np.ones(vg.shape)
    opts: dict[str, Any] = {"mu": mu, "dtype": dtype}
    return {
        "sinogram": PETProjector(vg, g, normalisation=norm, **opts),
        "sinogram-tof": PETProjector(vg, g, tof=tof, normalisation=norm, **opts),
        "listmode": PETProjector(vg, lm, normalisation=lm_norm, sensitivity=sens, **opts),
        "listmode-tof": PETProjector(vg, lm_tof, tof=tof, normalisation=lm_norm, sensitivity=sens, **opts),
    }


@pytest.mark.parametrize("kind", ["sinogram", "sinogram-tof", "listmode", "listmode-tof", "sinogram-bspline2"])
def test_adjoint_inner_product_float32(kind: str) -> None:
    if kind == "sinogram-bspline2":
        A = PETProjector(tiny_volume(), ct.pet.sinogram(tiny_scanner(), span=3, mash=2), basis="bspline2")
    else:
        A = operators("float32")[kind]
    assert_adjoint_float32(A)


@pytest.mark.parametrize("kind", ["sinogram-tof", "listmode-tof"])
def test_dense_transpose_equality_float64(kind: str) -> None:
    A = operators("float64", small=True)[kind]
    n = A.vg.size
    dense = np.stack([A(np.eye(1, n, c).reshape(A.domain_shape)).reshape(-1) for c in range(n)], axis=1)
    rows = transpose_rows(A)
    assert np.count_nonzero(dense) >= 40
    np.testing.assert_allclose(rows, dense, rtol=0, atol=1e-13 * np.abs(dense).max())


# -- time of flight -------------------------------------------------------------------------------------------
def _psi(u: float) -> float:
    """Ψ(u) = u Φ(u) + φ(u), the antiderivative of the normal CDF, written out naively."""
    return u * 0.5 * (1.0 + math.erf(u / math.sqrt(2.0))) + math.exp(-0.5 * u * u) / math.sqrt(2.0 * math.pi)


def reference_tof(vg: ct.VolumeGeometry, x: np.ndarray, p1: np.ndarray, p2: np.ndarray, tof: TOF) -> np.ndarray:
    """The slow twin: each LOR's crossings with every voxel plane, the voxel of each chord from its midpoint,
    and ``∫ K_k`` over the chord from the naive antiderivative."""
    lo = np.array(vg.extent_min)
    h = np.array(vg.spacing_xyz)
    shape = np.array(vg.shape_xyz)
    edges, sigma = tof.edges(), tof.sigma
    out = np.zeros((p1.shape[0], tof.bins))
    for r, (a, b) in enumerate(zip(p1, p2, strict=True)):
        mid, u = 0.5 * (a + b), (b - a) / np.linalg.norm(b - a)
        ts = []
        for axis in range(3):
            if abs(u[axis]) > 1e-15:
                planes = lo[axis] + h[axis] * np.arange(shape[axis] + 1)
                ts.extend((planes - mid[axis]) / u[axis])
        for t0, t1 in pairwise(np.sort(np.array(ts))):
            if t1 - t0 < 1e-12:
                continue
            cell = np.floor((mid + 0.5 * (t0 + t1) * u - lo) / h).astype(int)
            if np.any(cell < 0) or np.any(cell >= shape):
                continue
            value = x[cell[2], cell[1], cell[0]]
            big = [sigma * (_psi((e - t0) / sigma) - _psi((e - t1) / sigma)) for e in edges]
            out[r] += value * np.diff(big)
    return out


def test_tof_matches_the_slow_numpy_twin() -> None:
    sc, vg = tiny_scanner(), tiny_volume()
    rng = np.random.default_rng(5)
    x = rng.random(vg.shape)
    tof = TOF(bins=7, bin_width=9.0, fwhm=25.0)
    g = ct.pet.sinogram(sc, max_ring_difference=1, radial_bins=9).select_views([0, 3, 5])
    A = PETProjector(vg, g, tof=tof, dtype="float64")
    lors = g.lors()
    pos = sc.positions()
    ref = reference_tof(vg, x, pos[lors.crystal_a], pos[lors.crystal_b], tof).reshape(A.range_shape)
    got = A(x)
    assert np.abs(ref).max() > 1.0
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9 * np.abs(ref).max())
    single = PETProjector(vg, g, tof=tof)(x.astype(np.float32))  # float32 weights (measured 1.2e-6)
    np.testing.assert_allclose(single, ref, rtol=0, atol=5e-6 * np.abs(ref).max())


def test_tof_bins_sum_to_the_non_tof_projection() -> None:
    """With bins reaching 6σ beyond the volume, Σ_k K_k = 1 to 2e-9 on it: the TOF sinogram summed over its
    bins is the (independently computed) non-TOF projection."""
    sc, vg = tiny_scanner(), tiny_volume()
    x = np.random.default_rng(1).random(vg.shape)
    tof = TOF(bins=21, bin_width=12.0, fwhm=20.0)  # reach 126 mm >= 50 mm (ring) + 6σ (51 mm)
    g = ct.pet.sinogram(sc, span=3, mash=2)
    tof_sum = PETProjector(vg, g, tof=tof, dtype="float64")(x).sum(axis=-1)
    plain = PETProjector(vg, g, dtype="float64")(x)
    np.testing.assert_allclose(tof_sum, plain, rtol=0, atol=1e-9 * plain.max())
    short = TOF(bins=3, bin_width=12.0, fwhm=20.0)  # covers ±18 mm only: counts are lost, as they should be
    assert PETProjector(vg, g, tof=short, dtype="float64")(x).sum() < 0.8 * plain.sum()


def test_tof_profile_of_a_point_is_centred_on_it() -> None:
    """A 1 mm voxel 23 mm along the LOR from its midpoint: the TOF profile's centroid within 0.5 mm of it."""
    sc = ct.pet.scanner(rings=1, crystals_per_ring=64, radius=120.0, crystal_size=(1.0, 4.0))
    vg = ct.VolumeGeometry((1, 81, 81), voxel_size=1.0)
    tof = TOF.from_ps(fwhm_ps=200.0, bin_width_ps=20.0, bins=81)  # 30 mm FWHM, 3 mm bins over ±121 mm
    x = np.zeros(vg.shape)
    x[0, 40, 40 + 23] = 1.0  # (x, y) = (23, 0) mm
    crystal_a, crystal_b = 32, 0  # the LOR along +x, from (-120, 0) to (120, 0)
    A = PETProjector(
        vg,
        ct.pet.listmode(sc, [crystal_a] * tof.bins, [crystal_b] * tof.bins, np.arange(tof.bins)),
        tof=tof,
        dtype="float64",
        sensitivity=np.ones(vg.shape),
    )
    profile = A(x)
    centroid = float((profile * tof.centres()).sum() / profile.sum())
    assert abs(centroid - 23.0) <= 0.5
    assert profile.sum() == pytest.approx(1.0, rel=1e-6)  # the voxel's 1 mm chord, all of it in the bins


# -- analytic cases -----------------------------------------------------------------------------------------------
def box_chords(vg: ct.VolumeGeometry, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """Length of each line's intersection with the grid's box (slab method)."""
    lo, hi = np.array(vg.extent_min), np.array(vg.extent_min) + np.array(vg.spacing_xyz) * np.array(vg.shape_xyz)
    d = (p2 - p1) / np.linalg.norm(p2 - p1, axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ta, tb = (lo - p1) / d, (hi - p1) / d
    inside = (p1 >= lo) & (p1 <= hi)
    near = np.where(d == 0, np.where(inside, -np.inf, np.inf), np.minimum(ta, tb)).max(axis=1)
    far = np.where(d == 0, np.where(inside, np.inf, -np.inf), np.maximum(ta, tb)).min(axis=1)
    return np.maximum(far - near, 0.0)


def test_lor_chord_lengths_through_a_box_are_exact() -> None:
    sc = ct.pet.scanner(rings=4, crystals_per_ring=48, radius=150.0, crystal_size=(4.0, 4.0))
    vg = ct.VolumeGeometry((4, 40, 40), voxel_size=(4.0, 3.0, 3.0))
    g = ct.pet.sinogram(sc)
    lors = g.lors()
    pos = sc.positions()
    chords = box_chords(vg, pos[lors.crystal_a], pos[lors.crystal_b]).reshape(g.shape)
    got = PETProjector(vg, g)(np.ones(vg.shape, np.float32))
    assert chords.max() > 150.0 and (chords == 0).any()
    err = np.abs(got - chords)
    assert err.max() <= 1e-4  # mm; float32 accumulation
    got_tof = PETProjector(vg, g, tof=TOF(bins=15, bin_width=25.0, fwhm=30.0))(np.ones(vg.shape, np.float32))
    np.testing.assert_allclose(got_tof.sum(axis=-1), chords, rtol=0, atol=1e-4)


def circle_chord(p1: np.ndarray, p2: np.ndarray, radius: float) -> np.ndarray:
    """Length of each line's transaxial part inside the circle of ``radius``, scaled to its 3D length."""
    d = p2 - p1
    dxy = d[:, :2]
    a = (dxy**2).sum(axis=1)
    b = 2 * (p1[:, :2] * dxy).sum(axis=1)
    c = (p1[:, :2] ** 2).sum(axis=1) - radius**2
    disc = np.maximum(b * b - 4 * a * c, 0.0)
    return np.sqrt(disc) / a * np.linalg.norm(d, axis=1)


def test_line_integrals_through_a_uniform_cylinder() -> None:
    """A uniform cylinder (anti-aliased on a 1 mm grid) longer than the scanner: every LOR's integral is its
    analytic chord ``c(s) = 2 sqrt(r² - s²)`` up to the voxel model's staircase — at most ``|c'(s)|`` times half
    a voxel (a LOR along a voxel column sees the column's mean chord) plus a quarter voxel where it crosses the
    staircase edge at each end, and 0.3% on average — and zero outside. (Exact chords: the box test above.)"""
    sc = ct.pet.scanner(rings=2, crystals_per_ring=32, radius=100.0, crystal_size=(2.0, 4.0))
    vg = ct.VolumeGeometry((4, 121, 121), voxel_size=(2.0, 1.0, 1.0))
    g = ct.pet.sinogram(sc)
    lors = g.lors()
    pos = sc.positions()
    p1, p2 = pos[lors.crystal_a], pos[lors.crystal_b]
    chords = circle_chord(p1, p2, 50.0).reshape(g.shape)
    s = (np.abs(p1[:, 0] * p2[:, 1] - p1[:, 1] * p2[:, 0]) / np.linalg.norm((p2 - p1)[:, :2], axis=1)).reshape(g.shape)
    got = PETProjector(vg, g, dtype="float64")(disk_fraction(vg, 50.0))
    long = chords > 40.0
    assert long.sum() > 100
    slope = (
        2
        * s[long]
        / np.sqrt(50.0**2 - s[long] ** 2)
        * np.linalg.norm(p2 - p1, axis=1).reshape(g.shape)[long]
        / np.linalg.norm((p2 - p1)[:, :2], axis=1).reshape(g.shape)[long]
    )
    err = np.abs(got[long] - chords[long])
    assert np.all(err <= 0.5 * slope + 0.5)
    assert np.mean(err / chords[long]) < 3e-3
    np.testing.assert_allclose(got[chords == 0], 0.0, atol=1e-12)


def test_attenuation_of_a_point_source_in_a_water_cylinder() -> None:
    """PET attenuation is that of the whole LOR: counts / unattenuated counts = exp(-μ L) for every LOR through
    the point, L the LOR's chord through the cylinder; within 0.5%."""
    sc = ct.pet.scanner(rings=1, crystals_per_ring=96, radius=150.0, crystal_size=(2.0, 4.0))
    vg = ct.VolumeGeometry((1, 121, 121), voxel_size=(2.0, 1.0, 1.0))
    mu = MU_WATER * disk_fraction(vg, 55.0)
    x = np.zeros(vg.shape)
    x[0, 60 - 12 - 1 : 60 - 12 + 2, 60 + 20 - 1 : 60 + 20 + 2] = 1.0  # a 3 mm source at (20, -12) mm
    g = ct.pet.sinogram(sc)
    counts = PETProjector(vg, g, mu=mu, dtype="float64")(x)
    free = PETProjector(vg, g, dtype="float64")(x)
    seen = free > 0.5  # LORs crossing the source by more than half a millimetre
    assert seen.sum() >= 20
    lors = g.lors()
    pos = sc.positions()
    chords = circle_chord(pos[lors.crystal_a], pos[lors.crystal_b], 55.0).reshape(g.shape)
    np.testing.assert_allclose(counts[seen] / free[seen], np.exp(-MU_WATER * chords[seen]), rtol=5e-3)
    af = ct.pet.attenuation_factors(vg, mu, g)
    np.testing.assert_allclose(af[seen], counts[seen] / free[seen], rtol=1e-12)


# -- listmode -------------------------------------------------------------------------------------------------------
def test_listmode_em_step_equals_the_sinogram_em_step() -> None:
    """LM-MLEM over events (sensitivity over every LOR) is MLEM on their histogram, iterate for iterate."""
    sc, vg = tiny_scanner(), tiny_volume()
    rng = np.random.default_rng(2)
    mu = (rng.random(vg.shape) * 0.02).astype(np.float64)
    g = ct.pet.sinogram(sc)
    lors = g.lors()
    pick = rng.integers(0, lors.count, 300)
    a, b = lors.crystal_a[pick], lors.crystal_b[pick]
    swap = rng.random(pick.size) < 0.5  # either orientation is the same LOR without TOF
    lm = ct.pet.listmode(sc, np.where(swap, b, a), np.where(swap, a, b))
    A_sino = PETProjector(vg, g, mu=mu, dtype="float64")
    A_lm = PETProjector(vg, lm, mu=mu, dtype="float64")
    assert isinstance(A_lm, ct.pet.ListmodePETProjector)
    np.testing.assert_allclose(A_lm.sensitivity_tensor().numpy(), A_sino.T(np.ones(A_sino.range_shape)), rtol=1e-12)
    counts = g.histogram(lm)
    assert counts.sum() == 300
    rec_sino = ct.recon.mlem(A_sino, counts, niter=3, progress=False)
    rec_lm = ct.recon.mlem(A_lm, np.ones(lm.shape), niter=3, progress=False)
    np.testing.assert_allclose(rec_lm, rec_sino, rtol=1e-9, atol=1e-12 * rec_sino.max())
    subsets = ct.recon.osem(A_lm, np.ones(lm.shape), niter=1, subsets=3, progress=False)
    assert subsets.shape == vg.shape and subsets.min() >= 0


def test_listmode_tof_equals_the_tof_sinogram_entries() -> None:
    sc, vg = tiny_scanner(), tiny_volume()
    tof = TOF(bins=5, bin_width=15.0, fwhm=25.0)
    g = ct.pet.sinogram(sc, max_ring_difference=1)
    x = np.random.default_rng(4).random(vg.shape)
    y = PETProjector(vg, g, tof=tof, dtype="float64")(x)
    lors = g.lors()
    pick = np.arange(0, lors.count, 7)
    k = pick % tof.bins
    flip = pick % 2 == 1  # the reversed LOR has its TOF axis reversed
    a, b = lors.crystal_a[pick], lors.crystal_b[pick]
    lm = ct.pet.listmode(sc, np.where(flip, b, a), np.where(flip, a, b), np.where(flip, tof.bins - 1 - k, k))
    got = PETProjector(vg, lm, tof=tof, dtype="float64")(x)
    np.testing.assert_allclose(got, y.reshape(-1, tof.bins)[pick, k], rtol=1e-12, atol=1e-14)
    counts = g.histogram(lm, tof.bins)  # each event back in its own (bin, TOF bin)
    assert counts.sum() == pick.size
    np.testing.assert_array_equal(counts.reshape(-1, tof.bins)[pick, k], 1.0)


# -- likelihood and reconstruction ----------------------------------------------------------------------------------
def test_log_likelihood_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(6)
    for kind in ("sinogram-tof", "listmode"):
        A = operators("float64")[kind]
        x = 0.5 + rng.random(A.domain_shape)
        y = rng.poisson(A(x) + 0.1).astype(np.float64) if kind != "listmode" else np.ones(A.range_shape)
        s = np.full(A.range_shape, 0.1)
        grad = ct.pet.log_likelihood_gradient(A, x, y, additive=s)
        for _ in range(3):
            d = rng.standard_normal(A.domain_shape)
            h = 1e-4
            fd = (ct.pet.log_likelihood(A, x + h * d, y, s) - ct.pet.log_likelihood(A, x - h * d, y, s)) / (2 * h)
            assert float(np.vdot(grad, d)) == pytest.approx(fd, rel=1e-6)


def test_log_likelihood_refuses_a_model_of_zero_where_counts_were_seen() -> None:
    A = operators("float64")["sinogram"]
    y = np.ones(A.range_shape)
    with pytest.raises(ValueError, match="-inf"):
        ct.pet.log_likelihood(A, np.zeros(A.domain_shape), y)
    with pytest.raises(ValueError, match="non-negative"):
        ct.pet.log_likelihood(A, np.ones(A.domain_shape), -y)


def test_osem_decreases_the_negative_log_likelihood() -> None:
    sc = tiny_scanner(rings=4, crystals=32, radius=70.0)
    vg = ct.VolumeGeometry((4, 16, 16), voxel_size=(4.0, 4.0, 4.0))
    g = ct.pet.sinogram(sc, span=3, radial_bins=25)
    tof = TOF(bins=9, bin_width=14.0, fwhm=30.0)
    truth = cylinder_phantom(vg)
    rng = np.random.default_rng(7)
    for tof_model in (None, tof):
        A = PETProjector(vg, g, tof=tof_model, mu=MU_WATER * (truth > 0), dtype="float64")
        y = rng.poisson(A(truth)).astype(np.float64)
        values: list[float] = []
        ct.recon.osem(
            A,
            y,
            niter=6,
            subsets=4,
            progress=False,
            callback=lambda k, x, r, A=A, y=y, values=values: values.append(-ct.pet.log_likelihood(A, x, y)),
        )
        assert all(b < a for a, b in pairwise(values[:5]))  # the first iterations strictly
        start = -ct.pet.log_likelihood(A, np.ones(vg.shape), y)
        assert values[-1] < start - 0.5 * abs(start - values[0])


def cylinder_phantom(vg: ct.VolumeGeometry) -> np.ndarray:
    _, yy, xx = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in vg.shape], indexing="ij")
    return ((xx**2 + yy**2) < 36).astype(np.float64) + 2.0 * (((xx - 2) ** 2 + (yy + 1) ** 2) < 4)


def test_osem_recovers_the_activity_through_attenuation_and_normalisation() -> None:
    """Noise-free TOF data with attenuation and normalisation (span 3, mash 2): OSEM on the same model gets close
    to the phantom, while ignoring the attenuation does not."""
    sc = tiny_scanner(rings=4, crystals=32, radius=70.0)
    vg = ct.VolumeGeometry((4, 16, 16), voxel_size=4.0)
    g = ct.pet.sinogram(sc, span=3, mash=2, radial_bins=25)
    truth = cylinder_phantom(vg)
    norm = 0.5 + np.random.default_rng(10).random(g.shape)
    opts: dict[str, Any] = {"tof": TOF(bins=9, bin_width=14.0, fwhm=30.0), "normalisation": norm, "dtype": "float64"}
    A = PETProjector(vg, g, mu=3 * MU_WATER * (truth > 0), **opts)
    y = A(truth)
    rec = ct.recon.osem(A, y, niter=10, subsets=4, progress=False)
    wrong = ct.recon.osem(PETProjector(vg, g, **opts), y, niter=10, subsets=4, progress=False)
    error = np.linalg.norm(rec - truth) / np.linalg.norm(truth)
    assert error < 0.22  # 0.19: the sharp edges of a 4 mm phantom after 10 x 4 subsets
    assert np.linalg.norm(wrong - truth) / np.linalg.norm(truth) > 1.5 * error


@pytest.mark.skipif(
    "additive" not in inspect.signature(ct.recon.osem).parameters,
    reason="ct.recon.osem(additive=...) comes with the emission scatter work (branch spect)",
)
def test_osem_with_randoms_and_scatter_as_the_additive_term() -> None:
    sc = tiny_scanner(rings=4, crystals=32, radius=70.0)
    vg = ct.VolumeGeometry((4, 16, 16), voxel_size=4.0)
    A = PETProjector(vg, ct.pet.sinogram(sc, span=3, radial_bins=25), dtype="float64")
    truth = cylinder_phantom(vg)
    background = np.full(A.range_shape, 0.5 * A(truth).mean())  # randoms + scatter: a third of the counts
    y = A(truth) + background
    kwargs: dict[str, Any] = {"niter": 20, "subsets": 4, "progress": False}
    rec = ct.recon.osem(A, y, additive=background, **kwargs)  # type: ignore[call-arg]
    ignored = ct.recon.osem(A, y, **kwargs)
    error = np.linalg.norm(rec - truth) / np.linalg.norm(truth)
    assert error < 0.25
    assert np.linalg.norm(ignored - truth) / np.linalg.norm(truth) > 2 * error
    assert ct.pet.log_likelihood(A, rec, y, background) > ct.pet.log_likelihood(A, ignored, y, background)


@pytest.mark.parametrize("kind", ["sinogram", "sinogram-tof", "listmode-tof"])
def test_mu_map_gradient_matches_finite_differences(kind: str) -> None:
    """``A.forward_tensor(x, mu=...)`` is differentiable w.r.t. the μ-map (float64, central differences)."""
    import drjit as dr

    A = operators("float64")[kind]
    rng = np.random.default_rng(12)
    t = A.types
    x = t.Tensor(rng.random(A.domain_shape))
    w = rng.random(A.range_shape)
    mu0 = 0.01 + 0.02 * rng.random(A.mu_vg.shape)
    mu = t.Tensor(mu0)
    dr.enable_grad(mu)
    dr.backward(dr.sum(A.forward_tensor(x, mu=mu).array * t.Float(w.reshape(-1))))
    grad = dr.grad(mu).numpy()
    assert np.abs(grad).max() > 0

    def value(m: np.ndarray) -> float:
        return float(np.vdot(A.forward_tensor(x, mu=t.Tensor(m)).numpy(), w))

    for _ in range(2):
        d = rng.standard_normal(A.mu_vg.shape)
        h = 1e-6  # in 1/mm: exp(-∫μ) over ~100 mm chords is far from linear at 1e-4 already
        fd = (value(mu0 + h * d) - value(mu0 - h * d)) / (2 * h)
        assert float(np.vdot(grad, d)) == pytest.approx(fd, rel=1e-7)
    with pytest.raises(ValueError, match=">= 0"):
        A.forward_tensor(x, mu=t.Tensor(-mu0))


def test_deterministic_mode_gives_bit_identical_tof_adjoints() -> None:
    A = operators("float32")["sinogram-tof"]
    y = np.random.default_rng(11).random(A.range_shape).astype(np.float32)
    with ct.deterministic():
        first, second = A.T(y), A.T(y)
    assert first.tobytes() == second.tobytes()


def test_forward_is_differentiable_for_drjit_ad() -> None:
    import drjit as dr

    A = operators("float32")["sinogram-tof"]
    x = A.types.Tensor(np.random.default_rng(8).random(A.domain_shape).astype(np.float32))
    dr.enable_grad(x)
    w = np.random.default_rng(9).random(A.range_shape).astype(np.float32)
    loss = dr.sum(A.forward_tensor(x).array * A.types.Float(w.reshape(-1)))
    dr.backward(loss)
    np.testing.assert_allclose(dr.grad(x).numpy(), A.T(w), rtol=1e-5, atol=1e-5 * np.abs(A.T(w)).max())


def test_torch_gradient_through_the_tof_listmode_operator() -> None:
    torch = pytest.importorskip("torch")
    A = operators("float32")["listmode-tof"]
    x = torch.rand(A.domain_shape, dtype=torch.float32, requires_grad=True)
    w = torch.rand(A.range_shape, dtype=torch.float32)
    (A(x) * w).sum().backward()
    assert x.grad is not None
    np.testing.assert_allclose(x.grad.numpy(), A.T(w.numpy()), rtol=1e-5, atol=1e-6)
