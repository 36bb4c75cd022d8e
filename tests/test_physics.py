"""Acquisition physics: materials, spectra, noise statistics, quantisation, beam hardening, gradients."""

from __future__ import annotations

import importlib.util

import drjit as dr
import numpy as np
import pytest

from drct import physics
from drct.backend import drjit_module
from drct.physics import Detector, Spectrum, get_material

# NIST XCOM total mass attenuation coefficients with coherent scattering (cm^2/g), NIST SRD 126 tables
NIST = [("water", 60.0, 0.2059), ("water", 100.0, 0.1707), ("aluminium", 60.0, 0.2778), ("iron", 100.0, 0.3717)]


@pytest.mark.parametrize(("name", "energy", "expected"), NIST)
def test_builtin_materials_match_nist(name, energy, expected):
    assert get_material(name).mass_mu(energy)[0] == pytest.approx(expected, rel=0.01)
    assert get_material(name).mu(energy)[0] == pytest.approx(expected * get_material(name).density / 10, rel=0.01)


def test_materials_registry_and_errors():
    names = physics.material_names()
    for name in ("air", "water", "pmma", "bone", "aluminium", "iron", "steel", "copper"):
        assert name in names
    assert get_material("Aluminum").name == "aluminium"
    assert get_material("water", density=2.0).mu(60.0)[0] == pytest.approx(2 * get_material("water").mu(60.0)[0])
    mu = get_material("lead").mu([80.0, 90.0])  # above the K edge (88 keV) attenuation jumps
    assert mu[1] > 2 * mu[0]
    with pytest.raises(KeyError, match="unobtainium"):
        get_material("unobtainium")
    with pytest.raises(ValueError, match=r"\[1, 200\] keV"):
        get_material("water").mu(500.0)
    with pytest.raises(ValueError, match="density"):
        get_material("water", density=-1.0)
    custom = physics.Material("test-x", 1.0, [1.0, 100.0], [10.0, 0.1])
    assert custom.mass_mu(10.0)[0] == pytest.approx(1.0)  # log-log interpolation is exact for power laws
    physics.register_material(custom)
    assert get_material("TEST-X") is custom
    with pytest.raises(ValueError, match="already defined"):
        physics.register_material(custom)


@pytest.mark.skipif(importlib.util.find_spec("xraydb") is None, reason="xraydb not installed")
def test_material_from_formula_matches_table():
    water = physics.Material.from_formula("my-water", "H2O", 1.0)
    e = np.array([20.0, 60.0, 150.0])
    np.testing.assert_allclose(water.mu(e), get_material("water").mu(e), rtol=1e-3)
    with pytest.raises(ValueError, match="Xx9"):
        physics.Material.from_formula("bad", "Xx9", 1.0)


def test_spectrum_construction_and_csv(tmp_path):
    s = Spectrum(np.array([30.0, 50.0, 70.0]), np.array([1.0, 2.0, 1.0]))
    np.testing.assert_allclose(s.weights, [0.25, 0.5, 0.25])
    assert s.mean_energy == pytest.approx(50.0)
    assert Spectrum.from_table(s.as_table()) == s and s != Spectrum.monochromatic(50.0)
    path = tmp_path / "spectrum.csv"
    path.write_text("# measured\nenergy_keV,photons\n30,1\n50,2\n70,1\n")
    np.testing.assert_allclose(Spectrum.from_csv(path).weights, s.weights)
    (tmp_path / "ws.csv").write_text("30 1\n50 2\n70 1\n")
    np.testing.assert_allclose(Spectrum.from_csv(tmp_path / "ws.csv").energies, s.energies)
    (tmp_path / "bad.csv").write_text("30,1\n50,x\n")
    with pytest.raises(ValueError, match=r"bad\.csv: line 2"):
        Spectrum.from_csv(tmp_path / "bad.csv")
    (tmp_path / "three.csv").write_text("30,1,2\n")
    with pytest.raises(ValueError, match="two columns"):
        Spectrum.from_csv(tmp_path / "three.csv")
    (tmp_path / "order.csv").write_text("50,1\n30,1\n")
    with pytest.raises(ValueError, match=r"order\.csv.*increasing"):
        Spectrum.from_csv(tmp_path / "order.csv")
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        Spectrum.from_csv(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="non-negative"):
        Spectrum(np.array([30.0, 40.0]), np.array([1.0, -1.0]))
    with pytest.raises(KeyError, match="weights"):
        Spectrum.from_table({"energies": [1.0]})


def test_tube_spectrum_filtration_hardens():
    soft = Spectrum.tube(100.0)
    hard = Spectrum.tube(100.0, {"aluminium": 2.0, "copper": 0.3})
    assert soft.energies.max() < 100.0
    assert hard.mean_energy > soft.mean_energy + 10
    with pytest.raises(ValueError, match="kvp"):
        Spectrum.tube(500.0)
    with pytest.raises(ValueError, match="filter thickness"):
        Spectrum.tube(80.0, {"aluminium": -1.0})
    with pytest.raises(ValueError, match="model"):
        Spectrum.tube(80.0, model="magic")


@pytest.mark.skipif(importlib.util.find_spec("spekpy") is None, reason="spekpy not installed")
def test_spekpy_spectrum_agrees_roughly_with_kramers():
    spek = Spectrum.tube(80.0, {"aluminium": 2.5}, model="spekpy")
    kramers = Spectrum.tube(80.0, {"aluminium": 2.5})
    assert 40.0 < spek.mean_energy < 55.0
    assert spek.mean_energy == pytest.approx(kramers.mean_energy, rel=0.15)


def test_monochromatic_transmission_is_beer_lambert():
    p = np.linspace(0.0, 3.0, 7)
    np.testing.assert_allclose(physics.transmitted(p, None, 500.0), 500.0 * np.exp(-p), rtol=1e-14)
    mono = Spectrum.monochromatic(60.0)
    mu = get_material("aluminium").mu(60.0)[0]
    length = np.linspace(0.0, 20.0, 5)
    both = physics.transmitted({"aluminium": length, None: p[:5]}, mono, 1.0)
    np.testing.assert_allclose(both, np.exp(-mu * length - p[:5]), rtol=1e-12)
    with pytest.raises(ValueError, match=r"\(aluminium\) need a spectrum"):
        physics.transmitted({"aluminium": length}, None)
    with pytest.raises(ValueError, match="same shape"):
        physics.transmitted({"aluminium": length, None: p}, mono)


def test_beam_hardening_in_aluminium_wedge():
    thickness = np.linspace(1.0, 60.0, 40)  # mm of aluminium along the wedge
    spectrum = Spectrum.tube(100.0, {"aluminium": 1.0})
    intensity = physics.transmitted({"aluminium": thickness}, spectrum, 1.0)
    mu_eff = -np.log(intensity) / thickness
    assert np.all(np.diff(mu_eff) < 0)  # effective attenuation falls with thickness: the beam hardens
    assert mu_eff[0] > 1.5 * mu_eff[-1]
    al = get_material("aluminium")
    assert al.mu(spectrum.energies[-1])[0] < mu_eff[-1] and mu_eff[0] < al.mu(spectrum.energies[0])[0]
    mono = physics.transmitted({"aluminium": thickness}, Spectrum.monochromatic(spectrum.mean_energy), 1.0)
    np.testing.assert_allclose(-np.log(mono) / thickness, al.mu(spectrum.mean_energy)[0], rtol=1e-12)
    # the noisy, digitised and log-transformed data show the same cupping
    det = Detector(i0=1e6, bits=None)
    readings = physics.simulate_counts({"aluminium": np.tile(thickness, (50, 1))}, spectrum, det, seed=4)
    y = physics.log_transform(readings, physics.flat_field(det)).mean(axis=0)
    np.testing.assert_allclose(y / thickness, mu_eff, rtol=2e-3)


@pytest.mark.parametrize("bits", [None, 16])
def test_noise_statistics_flat_object(bits):
    det = Detector(i0=2000.0, gain=2.5, sigma=8.0, bits=bits, dark=12.0, blur=1.5)
    p = np.full((100, 1000), 0.5)  # 1e5 pixels of a flat object
    spectrum = Spectrum.tube(80.0, {"aluminium": 2.0})
    paths = {None: p, "water": np.full(p.shape, 10.0)}
    mean_photons = physics.expected_counts(paths, spectrum, det)
    expected = (
        2000.0 * np.exp(-0.5) * np.sum(spectrum.weights * np.exp(-10.0 * get_material("water").mu(spectrum.energies)))
    )
    np.testing.assert_allclose(mean_photons, expected, rtol=1e-12)  # blur keeps a flat field flat
    r = physics.simulate_counts(paths, spectrum, det, seed=11).astype(np.float64)
    mean = expected / 2.5 + 12.0
    var = (expected + 8.0**2) / 2.5**2 + (1 / 12 if bits else 0.0)  # rounding adds a uniform error
    assert r.mean() == pytest.approx(mean, rel=0.02)
    assert r.var() == pytest.approx(var, rel=0.02)
    assert abs(r.mean() - mean) < 5 * np.sqrt(var / r.size)  # much tighter than 2 %


def test_noise_is_reproducible_and_seeded():
    det = Detector(i0=100.0, sigma=2.0)
    a = physics.simulate_counts(np.zeros((10, 10)), None, det, seed=5)
    b = physics.simulate_counts(np.zeros((10, 10)), None, det, seed=5)
    c = physics.simulate_counts(np.zeros((10, 10)), None, det, seed=6)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="seed"):
        physics.simulate_counts(np.zeros(3), None, det, seed=-1)
    with pytest.raises(ValueError, match="non-negative"):
        physics.sample_counts(np.array([-1.0]), det, seed=0)


def test_quantisation_clamps():
    det = Detector(i0=1e5, gain=1.0, sigma=50.0, bits=8)
    r = physics.simulate_counts(np.zeros((20, 20)), None, det, seed=0)
    assert r.dtype == np.uint16 and np.all(r == 255)
    low = Detector(i0=0.5, gain=1.0, sigma=3.0, bits=12)
    r = physics.simulate_counts(np.zeros((50, 50)), None, low, seed=0)
    assert r.min() == 0 and (r == 0).mean() > 0.3 and r.max() <= 4095
    assert physics.simulate_counts(np.zeros(4), None, Detector(bits=32), seed=0).dtype == np.uint32
    exact = physics.sample_counts(np.array([0.0, 7.0, 1e9]), Detector(sigma=0.0, bits=10, gain=2.0), seed=0)
    assert exact[0] == 0 and exact[2] == 1023


def test_log_transform_undoes_detector_with_gain_map_and_dark():
    rng = np.random.default_rng(2)
    gain = rng.uniform(0.5, 2.0, (4, 6))  # per-pixel gain: removed by flat-field correction
    dark = rng.uniform(5.0, 20.0, (4, 6))
    det = Detector(i0=5e3, gain=gain, dark=dark, bits=None)
    p = rng.uniform(0.0, 4.0, (3, 4, 6))
    r = physics.expected_readings(p, None, det)
    flat, dark_field = physics.flat_field(det), physics.dark_field(det)
    np.testing.assert_allclose(physics.log_transform(r, flat, dark_field), p, rtol=1e-12, atol=1e-12)
    starved = physics.log_transform(np.array([0.0, 3.0]), flat=1000.0, dark=5.0, floor=0.5)
    np.testing.assert_allclose(starved, -np.log(0.5 / 995.0))  # finite at and below dark
    noisy_flat = physics.flat_field(det, shape=(4, 6), seed=1, frames=200)
    np.testing.assert_allclose(noisy_flat, flat, rtol=0.01)
    with pytest.raises(ValueError, match="shape"):
        physics.flat_field(Detector(), seed=1)
    with pytest.raises(ValueError, match="floor"):
        physics.log_transform(r, flat, floor=0.0)


def test_blur_kernel_moments():
    y = np.zeros((2, 41, 41))
    y[:, 20, 20] = 1.0
    out = physics.blur(y, 1.7)
    assert out.sum() == pytest.approx(2.0)
    x = np.arange(41) - 20
    assert np.sum(out[0].sum(axis=0) * x**2) == pytest.approx(1.7**2, rel=1e-3)
    assert np.sum(out[0].sum(axis=1) * x**2) == pytest.approx(1.7**2, rel=1e-3)
    np.testing.assert_allclose(physics.blur(np.full((3, 9), 4.0), 2.0), 4.0)  # edges replicated
    ramp = np.repeat(np.arange(9.0)[:, None], 7, axis=1)[None]  # varies along rows only
    np.testing.assert_allclose(physics.blur(ramp, 1.0, det_ndim=1), ramp)  # blurred along columns only
    assert not np.allclose(physics.blur(ramp, 1.0), ramp)
    with pytest.raises(ValueError, match="det_ndim"):
        physics.blur(np.zeros(5), 1.0, det_ndim=2)


def _clamped_blur_matrix(n: int, sigma: float) -> np.ndarray:
    """The blur of one axis as a dense matrix, built tap by tap with clamped (replicated-edge) indices."""
    radius = max(1, int(np.ceil(4 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    B = np.zeros((n, n))
    for i in range(n):
        for k, w in zip(range(-radius, radius + 1), taps, strict=True):
            B[i, min(max(i + k, 0), n - 1)] += w
    return B


@pytest.mark.parametrize(
    ("shape", "sigma", "det_ndim"),
    [((2, 9, 11), 1.7, None), ((3, 4), 0.6, None), ((2, 5, 3), 6.0, None), ((2, 5, 6), 1.2, 1)],
)
def test_blur_is_the_clamped_gaussian_on_numpy_and_drjit_with_its_transpose_as_gradient(
    shape: tuple[int, ...], sigma: float, det_ndim: int | None
) -> None:
    """numpy (scipy.ndimage) and Dr.Jit (drjit.convolve) give the same blur, the one of a dense reference (kernels
    wider than the detector included); Dr.Jit's reverse mode applies its transpose."""
    y = np.random.default_rng(3).random(shape)
    cols = _clamped_blur_matrix(shape[-1], sigma)
    rows = _clamped_blur_matrix(shape[-2], sigma) if (det_ndim or (2 if len(shape) >= 3 else 1)) == 2 else None
    want = np.einsum("...j,ij->...i", y, cols)
    if rows is not None:
        want = np.einsum("...jc,ij->...ic", want, rows)
    np.testing.assert_allclose(physics.blur(y, sigma, det_ndim), want, rtol=1e-12, atol=1e-15)
    T = drjit_module("llvm").TensorXf
    yt = T(y.astype(np.float32))
    dr.enable_grad(yt)
    out = physics.blur(yt, sigma, det_ndim)
    np.testing.assert_allclose(out.numpy(), want, rtol=2e-6, atol=1e-6)
    w = np.random.default_rng(4).random(shape)
    dr.backward(dr.sum(dr.ravel(out) * dr.ravel(T(w.astype(np.float32)))))
    back = np.einsum("...i,ij->...j", w, cols) if rows is None else None
    if rows is not None:
        back = np.einsum("...ic,ij->...jc", np.einsum("...i,ij->...j", w, cols), rows)
    np.testing.assert_allclose(yt.grad.numpy(), back, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"i0": -1.0}, "i0"),
        ({"i0": float("nan")}, "i0"),
        ({"gain": 0.0}, "gain"),
        ({"sigma": -2.0}, "sigma"),
        ({"bits": 0}, "bits"),
        ({"bits": 40}, "bits"),
        ({"bits": 12.5}, "bits"),
        ({"blur": -1.0}, "blur"),
        ({"dark": -3.0}, "dark"),
        ({"i0": [1.0, 2.0]}, "i0"),
    ],
)
def test_detector_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Detector(**kwargs)


def _chain(paths, spectrum, det):
    r = physics.expected_readings(paths, spectrum, det)
    return physics.log_transform(r, physics.flat_field(det), physics.dark_field(det))


def test_gradients_match_finite_differences():
    mod = drjit_module("llvm")
    rng = np.random.default_rng(7)
    shape = (2, 3, 5)
    water, al, p = rng.uniform(0, 30, shape), rng.uniform(0, 5, shape), rng.uniform(0, 0.5, shape)
    weights = rng.normal(size=shape)
    spectrum = Spectrum.tube(90.0, {"aluminium": 1.5}, energy_bin=5.0)
    det = Detector(i0=1e4, gain=rng.uniform(0.5, 2.0, (3, 5)), dark=3.0, blur=0.8, bits=12)

    def loss_np(w, a, q):
        return float(np.sum(weights * _chain({"water": w, "aluminium": a, None: q}, spectrum, det)))

    tensors = [mod.TensorXf64(x) for x in (water, al, p)]
    dr.enable_grad(*tensors)
    y = _chain({"water": tensors[0], "aluminium": tensors[1], None: tensors[2]}, spectrum, det)
    assert type(y) is mod.TensorXf64 and y.shape == shape
    np.testing.assert_allclose(y.numpy(), _chain({"water": water, "aluminium": al, None: p}, spectrum, det), rtol=1e-12)
    loss = dr.sum(y.array * mod.Float64(weights.reshape(-1)))
    dr.backward(loss)
    grads = [dr.grad(t).numpy() for t in tensors]
    h = 1e-5
    for k, base in enumerate((water, al, p)):
        for idx in [(0, 0, 0), (1, 2, 3), (0, 1, 4)]:
            plus, minus = [a.copy() for a in (water, al, p)], [a.copy() for a in (water, al, p)]
            plus[k][idx] += h
            minus[k][idx] -= h
            fd = (loss_np(*plus) - loss_np(*minus)) / (2 * h)
            assert grads[k][idx] == pytest.approx(fd, rel=1e-6, abs=1e-9), (k, idx)
        assert base.shape == shape

    # forward mode: directional derivative equals <gradient, direction>
    tangent = [rng.normal(size=shape) for _ in range(3)]
    tensors = [mod.TensorXf64(x) for x in (water, al, p)]
    dr.enable_grad(*tensors)
    y = _chain({"water": tensors[0], "aluminium": tensors[1], None: tensors[2]}, spectrum, det)
    loss = dr.sum(y.array * mod.Float64(weights.reshape(-1)))
    for t, d in zip(tensors, tangent, strict=True):
        dr.set_grad(t, mod.TensorXf64(d))
    dr.forward_to(loss)
    expected = sum(float(np.sum(g * d)) for g, d in zip(grads, tangent, strict=True))
    assert dr.grad(loss)[0] == pytest.approx(expected, rel=1e-9)


def test_energy_integrating_detector_statistics_and_weaker_hardening():
    spectrum = Spectrum.tube(120.0, {"aluminium": 2.0})
    e = spectrum.energies / spectrum.mean_energy
    water = np.exp(-40.0 * get_material("water").mu(spectrum.energies))
    det = Detector(i0=3000.0, gain=1.5, sigma=4.0, bits=None, dark=2.0, response="integrating")
    paths = {"water": np.full((200, 500), 40.0)}
    mean = 3000.0 * np.sum(spectrum.weights * e * water)  # photon equivalents at the mean energy
    second = 3000.0 * np.sum(spectrum.weights * e**2 * water)  # compound Poisson variance
    np.testing.assert_allclose(physics.expected_counts(paths, spectrum, det), mean, rtol=1e-12)
    np.testing.assert_allclose(physics.noise_factor(paths, spectrum, det), second / mean, rtol=1e-12)
    assert physics.flat_field(det) == pytest.approx(3000.0 / 1.5 + 2.0)  # the flat field keeps i0 / k + d
    r = physics.simulate_counts(paths, spectrum, det, seed=3)
    assert r.mean() == pytest.approx(mean / 1.5 + 2.0, rel=0.02)
    assert r.var() == pytest.approx((second + 16.0) / 1.5**2, rel=0.02)
    assert second / mean > 1.05  # not the Poisson variance: the test separates the two models
    thickness = np.linspace(1.0, 40.0, 20)
    counting = -np.log(physics.transmitted({"aluminium": thickness}, spectrum)) / thickness
    integrating = -np.log(physics.transmitted({"aluminium": thickness}, spectrum, energy_power=1)) / thickness
    assert np.all(integrating < counting) and np.all(np.diff(integrating) < 0)
    with pytest.raises(ValueError, match="response"):
        Detector(response="magic")


def test_float32_tensors_stay_float32_and_match_numpy():
    mod = drjit_module("llvm")
    water = np.linspace(0.0, 50.0, 24).reshape(2, 3, 4)
    det = Detector(i0=1e4, gain=2.0, blur=0.7, bits=None)
    spectrum = Spectrum.tube(70.0, {"aluminium": 1.0})
    x = mod.TensorXf(water.astype(np.float32))
    dr.enable_grad(x)
    y = physics.log_transform(physics.expected_readings({"water": x}, spectrum, det), physics.flat_field(det))
    assert type(y) is mod.TensorXf
    ref = physics.log_transform(physics.expected_readings({"water": water}, spectrum, det), physics.flat_field(det))
    np.testing.assert_allclose(y.numpy(), ref, rtol=2e-5, atol=1e-6)
    dr.backward(dr.sum(y.array))
    assert np.all(dr.grad(x).numpy() > 0)  # more water, more attenuation everywhere
    readings = physics.sample_counts(physics.expected_counts({"water": x}, spectrum, det), det, seed=0)
    assert type(readings) is mod.TensorXf and readings.shape == (2, 3, 4)


def test_per_pixel_maps_must_fit_the_detector():
    mod = drjit_module("llvm")
    det = Detector(gain=np.full((4, 6), 2.0), dark=np.full((4, 6), 1.0), bits=None)
    good = physics.expected_readings(mod.TensorXf(np.zeros((2, 4, 6), np.float32)), None, det)
    assert type(good) is mod.TensorXf
    np.testing.assert_allclose(good.numpy(), det.i0 / 2.0 + 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match=r"detector gain of shape \(4, 6\) does not fit arrays of shape \(2, 5, 6\)"):
        physics.expected_readings(np.zeros((2, 5, 6)), None, det)
    with pytest.raises(ValueError, match="detector gain"):
        physics.simulate_counts(np.zeros((3, 7)), None, det, seed=0)
    with pytest.raises(ValueError, match="flat field"):
        physics.log_transform(np.ones((2, 4, 6)), flat=np.ones((5, 6)))
