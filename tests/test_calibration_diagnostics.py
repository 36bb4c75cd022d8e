"""Calibration that knows when it cannot tell: identifiability with the volume re-fitted, uncertainties that cover
the error, warnings and refusals (:mod:`drct.calibration.diagnostics`), and the CLI's truth-beside-estimate report."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import drct as ct
from drct.calibration import ridge_cgls
from drct.calibration.diagnostics import CalibrationWarning, UndeterminedParameterError, sandwich_moments
from drct.cli.calibrate import summary_lines


def fan(n: int = 24, views: int = 40, sod: float = 200.0) -> tuple[ct.VolumeGeometry, ct.ProjectionGeometry]:
    vg = ct.VolumeGeometry((n, n), voxel_size=64.0 / n)
    pg = ct.fan(np.linspace(0, 2 * np.pi, views, endpoint=False), n + n // 2, 2.0 * 64.0 / n, sod, 2 * sod)
    return vg, pg


def noisy(vg: ct.VolumeGeometry, pg: ct.ProjectionGeometry, seed: int, level: float = 0.01) -> np.ndarray:
    y = ct.Projector(vg, pg, basis="bspline2")(ct.phantoms.shepp_logan(vg))
    noise = np.random.default_rng(seed).normal(scale=level * float(y.max()), size=y.shape)
    return (y + noise).astype(np.float32)


def quiet_calibrate(*args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = ct.calibrate(*args, progress=False, **kwargs)
    return res, [str(w.message) for w in caught if issubclass(w.category, CalibrationWarning)]


@pytest.fixture(scope="module")
def well_posed() -> tuple[Any, list[str], float, float]:
    vg, pg = fan()
    pixel = float(np.linalg.norm(pg.det_u[0]))
    truth = 0.7 * pixel
    y = noisy(vg, pg.perturb(det_shift_u=truth), seed=1)
    res, messages = quiet_calibrate(y, pg, ["det_shift_u"], vg=vg, levels=[1], iterations=4, lowpass=0)
    return res, messages, truth, pixel


def test_no_false_alarm_on_a_well_posed_case(well_posed) -> None:
    res, messages, _, _ = well_posed
    assert messages == []
    d = res.diagnostics
    assert d is not None and d.names == ["det_shift_u"] and d.undetermined == {} and d.unconverged == []
    assert d.retained[0] > 0.3  # most of a detector shift's signal is its own
    assert res.to_dict()["diagnostics"]["parameters"]["det_shift_u"]["retained_fraction"] == pytest.approx(
        d.retained[0]
    )


def test_sigma_covers_the_error_and_includes_the_volume(well_posed) -> None:
    res, _, truth, pixel = well_posed
    d = res.diagnostics
    err = abs(res.params["det_shift_u"] - truth)
    assert err <= 2 * res.std["det_shift_u"]
    assert res.std["det_shift_u"] == pytest.approx(d.std[0])
    assert d.std[0] >= d.std_fixed_volume[0] * 0.99  # re-fitting the volume never makes the data more decisive
    assert d.std[0] < 0.05 * pixel


def test_non_identifiable_parameter_is_flagged_and_refused() -> None:
    # a nearly parallel fan (source 4 m away, object 64 mm): a change of the source-detector distance is a change
    # of magnification, which a scaled volume imitates; the fixed-volume J^T J does not see that
    vg, pg = fan(sod=4000.0)
    y = noisy(vg, pg.perturb(src_det_delta=40.0), seed=2)
    res, messages = quiet_calibrate(y, pg, ["det_shift_u", "src_det_delta"], vg=vg, levels=[1], iterations=2, lowpass=0)
    d = res.diagnostics
    k = d.names.index("src_det_delta")
    assert "src_det_delta" in d.undetermined
    assert d.retained[k] < 1e-2 and d.std[k] > 3 * d.std_fixed_volume[k]
    assert any("src_det_delta: not determined" in m for m in messages)
    assert "det_shift_u" not in d.undetermined
    with pytest.raises(UndeterminedParameterError, match="src_det_delta") as info:
        ct.calibrate(
            y, pg, ["src_det_delta"], vg=vg, levels=[1], iterations=1, lowpass=0, progress=False, diagnostics="raise"
        )
    assert info.value.result is not None and "src_det_delta" in info.value.result.params


def test_remaining_gauss_newton_step_is_taken_and_off_is_silent() -> None:
    # no outer iteration at all: the analysis's Gauss-Newton step of the re-fitted loss (pose and volume
    # following) is still taken
    vg, pg = fan()
    pixel = float(np.linalg.norm(pg.det_u[0]))
    y = noisy(vg, pg.perturb(det_shift_u=1.5 * pixel), seed=3)
    res, messages = quiet_calibrate(y, pg, ["det_shift_u"], vg=vg, levels=[1], iterations=0, lowpass=0)
    assert res.params["det_shift_u"] > 0.5 * pixel  # a third of the way at least; before: 0 (it stayed put)
    assert res.theta[0] == pytest.approx(res.params["det_shift_u"])
    # the volume was fitted at the nominal geometry and re-fitted only briefly: the run says it is not done
    assert any("det_shift_u: not" in m for m in messages)
    res, messages = quiet_calibrate(
        y, pg, ["det_shift_u"], vg=vg, levels=[1], iterations=0, lowpass=0, diagnostics="off"
    )
    assert messages == [] and res.diagnostics is None and res.params["det_shift_u"] == 0.0


def test_a_coarser_levels_step_is_reported_not_taken(monkeypatch) -> None:
    # the analysis runs on the coarse level (diagnostic_size): its Gauss-Newton step points at the coarse level's
    # own minimum. Taking it moved the 128³ cone-beam example's roll 10x further from the truth; it must only be
    # reported, and must not be called non-convergence
    from drct.calibration import solver

    analysed: list[np.ndarray] = []

    def spy(prob: Any, theta: np.ndarray, *args: Any) -> Any:
        analysed.append(theta.copy())
        found = real(prob, theta, *args)
        found.pending = np.maximum(found.pending, 10.0)  # as if far from that level's minimum
        return found

    real = solver.analyse
    monkeypatch.setattr(solver, "analyse", spy)
    vg, pg = fan()
    pixel = float(np.linalg.norm(pg.det_u[0]))
    y = noisy(vg, pg.perturb(det_shift_u=1.5 * pixel), seed=3)
    res, messages = quiet_calibrate(
        y, pg, ["det_shift_u"], vg=vg, levels=[2, 1], iterations=[0, 0], lowpass=0, diagnostic_size=12 * 12
    )
    d = res.diagnostics
    assert len(analysed) == 1 and res.params["det_shift_u"] == analysed[0][0] == 0.0  # before: the step was taken
    assert d.level == 2 and not d.fitted_level and res.to_dict()["diagnostics"]["fitted_level"] is False
    assert abs(d.step[0]) > 0.5 * pixel  # the coarse level's minimum does lie elsewhere: the step is reported
    assert d.unconverged == [] and not any("not converged" in m for m in messages)
    # on the fitted level the same step is taken
    analysed.clear()
    res, _ = quiet_calibrate(y, pg, ["det_shift_u"], vg=vg, levels=[2, 1], iterations=[0, 0], lowpass=0)
    assert res.diagnostics.fitted_level and len(analysed) == 2 and res.params["det_shift_u"] > 0.5 * pixel


def test_unconverged_parameter_is_named_in_the_warning() -> None:
    from drct.calibration.diagnostics import Diagnostics, act

    one = np.ones(1)
    d = Diagnostics(["det_shift_u"], np.zeros(1, int), 1, one, one, one, one, 3 * one, one, unconverged=["det_shift_u"])
    with pytest.warns(CalibrationWarning, match=r"det_shift_u: not converged \(a Gauss–Newton step of 3.0σ"):
        act(d, "warn", None)


def test_gauge_fixed_parameter_is_reported_undetermined() -> None:
    vg, pg = fan()
    pixel = float(np.linalg.norm(pg.det_u[0]))
    y = noisy(vg, pg.perturb(det_shift_u=0.5 * pixel), seed=4)
    res, messages = quiet_calibrate(y, pg, ["det_shift_u", "cor_offset"], vg=vg, levels=[1], iterations=2, lowpass=0)
    assert "cor_offset" in res.fixed
    assert "gauge" in res.diagnostics.undetermined["cor_offset"]
    assert any("cor_offset: not determined" in m for m in messages)


def test_sandwich_moments_white_and_correlated() -> None:
    rng = np.random.default_rng(0)
    J = rng.normal(size=(2, 30, 64))
    J[1] = np.cumsum(J[1], axis=1) / 8  # a smooth column
    white = rng.normal(size=(30, 64))
    lag0 = sandwich_moments(J, white, (1, 1))
    assert np.allclose(lag0, np.mean(white**2) * np.einsum("avr,bvr->ab", J, J))
    # noise correlated along the detector: the smooth column's variance is much larger than white noise says
    smooth = np.apply_along_axis(lambda v: np.convolve(v, np.ones(9) / 3, mode="same"), 1, white)
    M = sandwich_moments(J, smooth, (4, 16))
    naive = np.mean(smooth**2) * np.einsum("avr,bvr->ab", J, J)
    assert M[1, 1] > 3 * naive[1, 1]
    assert np.all(np.linalg.eigvalsh(M) > -1e-9 * np.abs(M).max())  # a covariance


@pytest.mark.parametrize("geometry", ["parallel", "rays"])
def test_batched_ridge_cgls_matches_one_at_a_time(geometry: str) -> None:
    vg = ct.VolumeGeometry((12, 12))
    pg: Any = ct.parallel(np.linspace(0, np.pi, 16, endpoint=False), 18)
    if geometry == "rays":  # data and volume of different ranks: the per-problem scalars must broadcast to both
        rng = np.random.default_rng(6)
        a = rng.normal(size=(200, 2)) * 3 - np.array([20.0, 0.0])
        pg = ct.RayGeometry(a, np.array([40.0, 0.0]) + rng.normal(size=(200, 2)))
    A = ct.Projector(vg, pg, basis="linear")
    ys = np.random.default_rng(5).normal(size=(3, *A.range_shape)).astype(np.float32)
    both = ridge_cgls(A, ys, np.zeros((3, *vg.shape), np.float32), 8, 0.1)
    for k in range(3):
        one = ridge_cgls(A, ys[k], np.zeros(vg.shape, np.float32), 8, 0.1)
        # float64 sums for a batch, float32 BLAS for one problem: equal to float32 accuracy over 8 iterations
        assert np.abs(both[k] - one).max() <= 1e-3 * np.abs(one).max()


def test_cli_summary_shows_truth_error_and_verdict() -> None:
    data = {
        "detector_pixel_mm": 0.5,
        "parameters": {
            "det_shift_u": {"value": 1.0, "std": 0.05, "unit": "mm", "value_px": 2.0},
            "det_pitch": {"value": np.deg2rad(0.5), "std": np.deg2rad(0.1), "unit": "rad", "value_deg": 0.5},
        },
        "diagnostics": {"undetermined": {"det_pitch": "2σ = 3 × one pixel"}, "unconverged": []},
        "gauge": [
            {
                "parameters": {"det_shift_u": 0.7, "cor_offset": -0.7},
                "action": "fixed cor_offset",
                "direction": {"det_shift_u": 2.0, "cor_offset": -1.0},  # det_shift_u + 2 cor_offset: no change
            }
        ],
        "fixed": ["cor_offset"],
    }
    data["parameters"]["cor_offset"] = {"value": 0.0, "std": 0.0, "unit": "mm", "value_px": 0.0}
    truth = {"det_shift_u": 1.1, "det_pitch": np.deg2rad(2.0), "cor_offset": -0.05}
    lines = summary_lines(data, truth)
    assert lines[0].startswith("det_shift_u") and "± 0.1000 px" in lines[0]
    assert "truth +2.2000 px, error -0.2000 = 2.0σ" in lines[0] and "NOT" not in lines[0]
    # moved along the gauge until cor_offset sits at its held 0: det_shift_u 1.1 + 2 * -0.05 = 1.0 mm = 2.0 px
    assert "with cor_offset held: truth +2.0000 px, error +0.0000 = 0.0σ" in lines[0]
    assert "truth +2.0000 deg" in lines[1] and "NOT DETERMINED: 2σ = 3" in lines[1]
    assert "carries the held cor_offset's share" in lines[0]
    assert any("cannot tell apart" in line for line in lines) and lines[-1] == "fixed: cor_offset"
    assert "with cor_offset held" not in summary_lines(data, None)[0]


def test_systematic_misfit_beyond_the_noise_marks_a_parameter_not_determined() -> None:
    # the volume cannot reproduce a smooth bump added to the sinogram: a misfit far above the noise floor that the
    # local σ (curvature and residual around the estimate) does not turn into a bias; the bound does
    from drct.calibration.diagnostics import analyse
    from drct.calibration.levels import build_levels
    from drct.calibration.model import PerturbModel
    from drct.calibration.problem import LevelProblem, ridge_cgls

    vg, pg = fan(16, 32)
    clean = noisy(vg, pg, seed=8)
    views, cols = np.meshgrid(np.arange(32), np.arange(24), indexing="ij")
    bump = 0.6 * float(clean.max()) * np.exp(-((views - 8) ** 2) / 72.0 - (cols - 8) ** 2 / 32.0)
    model = PerturbModel(pg, ["det_shift_u"])
    free = np.arange(model.size)
    found = {}
    for label, y in (("noise only", clean), ("misfit", (clean + bump).astype(np.float32))):
        prob = LevelProblem(build_levels(vg, pg, y, [1], [1])[0], model, "bspline2", 1e-5, 0.0)
        x = ridge_cgls(prob.operator(model.theta0), prob.y, np.zeros(vg.shape, np.float32), 60, prob.ridge)
        found[label] = analyse(prob, model.theta0, x, free, None, 20, 1e-2, 60)
    quiet, loud = found["noise only"], found["misfit"]
    assert quiet.undetermined == {} and quiet.residual["systematic_rms"] < 0.5 * quiet.residual["noise_floor"]
    assert loud.residual["systematic_rms"] > 2 * loud.residual["noise_floor"]
    assert loud.bias_bound[0] > 10 * quiet.bias_bound[0]
    assert "model error" in loud.undetermined["det_shift_u"]
    assert "× the noise floor" in loud.undetermined["det_shift_u"]


def test_model_error_on_noise_free_data_says_so_instead_of_an_absurd_ratio(monkeypatch) -> None:
    # simulated data without noise have a noise floor of 0 (most second differences vanish): the message named
    # the misfit as 1e152× the floor; it now says the whole misfit lies beyond the (absent) noise
    from drct.calibration import diagnostics
    from drct.calibration.levels import build_levels
    from drct.calibration.model import PerturbModel
    from drct.calibration.problem import LevelProblem, ridge_cgls

    monkeypatch.setattr(diagnostics, "noise_floor", lambda y: 0.0)
    vg, pg = fan(16, 32)
    clean = ct.Projector(vg, pg, basis="bspline2")(ct.phantoms.shepp_logan(vg))
    views, cols = np.meshgrid(np.arange(32), np.arange(24), indexing="ij")
    y = clean + 0.6 * float(clean.max()) * np.exp(-((views - 8) ** 2) / 72.0 - (cols - 8) ** 2 / 32.0)
    model = PerturbModel(pg, ["det_shift_u"])
    prob = LevelProblem(build_levels(vg, pg, y.astype(np.float32), [1], [1])[0], model, "bspline2", 1e-5, 0.0)
    x = ridge_cgls(prob.operator(model.theta0), prob.y, np.zeros(vg.shape, np.float32), 60, prob.ridge)
    found = diagnostics.analyse(prob, model.theta0, x, np.arange(model.size), None, 20, 1e-2, 60)
    message = found.undetermined["det_shift_u"]
    assert "model error" in message and "noise-free data: all of it" in message and "noise floor" not in message
