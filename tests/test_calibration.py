"""Geometry calibration: recovery of known misalignments, gauge handling, per-view jitter, ray lists, multi-resolution
helpers, result files, Ctrl-C behaviour and the ``drct calibrate`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

import drct as ct
from drct.calibration import EndpointModel, PerturbModel
from drct.calibration.levels import bin_detector, build_levels, default_strides
from drct.calibration.linalg import Columns, cross, dense, detect_gauge, normal_equations
from drct.calibration.problem import LevelProblem
from drct.cli import main as cli_main


def small_cone(n: int = 24, views: int = 40) -> tuple[ct.VolumeGeometry, ct.ProjectionGeometry]:
    vg = ct.VolumeGeometry((n, n, n), voxel_size=48.0 / n)
    pg = ct.cone(np.linspace(0, 2 * np.pi, views, endpoint=False), (n, n), 2.5 * 48.0 / n, 150.0, 300.0)
    return vg, pg


def small_fan(n: int = 48, views: int = 90) -> tuple[ct.VolumeGeometry, ct.ProjectionGeometry]:
    vg = ct.VolumeGeometry((n, n), voxel_size=64.0 / n)
    pg = ct.fan(np.linspace(0, 2 * np.pi, views, endpoint=False), n + n // 2, 2.0 * 64.0 / n, 200.0, 400.0)
    return vg, pg


def simulate(vg: ct.VolumeGeometry, pg: ct.ProjectionGeometry | ct.RayGeometry, basis: str = "bspline2") -> np.ndarray:
    """Projections of the rasterised phantom with drct's own model: at these tiny sizes the analytic phantom's
    discretisation error would dominate the geometric signal (the examples use analytic data at full size, where
    ``calibrate``'s detector low-pass suppresses that error)."""
    return ct.Projector(vg, pg, basis=basis)(ct.phantoms.shepp_logan(vg))


@pytest.mark.slow
def test_cone_recovers_detector_shift() -> None:
    vg, pg = small_cone(20, 30)
    pixel = float(np.linalg.norm(pg.det_u[0]))
    truth = {"det_shift_u": 0.6 * pixel}
    y = simulate(vg, pg.perturb(**truth))
    # model-made data: nothing for the low-pass to suppress, and on a 20-pixel detector it would blur 10% of it
    res = ct.calibrate(y, pg, list(truth), vg=vg, levels=[1], iterations=3, lowpass=0, progress=False)
    assert abs(res.params["det_shift_u"] - truth["det_shift_u"]) < 0.05 * pixel
    assert res.loss[-1] < 0.2 * res.loss[0]
    assert res.fixed == [] and res.gauge == []
    assert res.std is not None and 0 < res.std["det_shift_u"] < 0.05 * pixel
    # the estimated geometry is the nominal one moved by the estimates
    moved = pg.perturb(**res.params)
    assert np.allclose(res.geometry.to_vectors(), moved.to_vectors())
    assert res.reconstruction.shape == vg.shape and res.vg == vg


@pytest.mark.slow
def test_fan_recovers_shift_and_tilt_coarse_to_fine() -> None:
    vg, pg = small_fan(48, 90)
    pixel = float(np.linalg.norm(pg.det_u[0]))
    truth = {"det_shift_u": 1.3 * pixel, "det_yaw": np.deg2rad(3.0)}
    y = simulate(vg, pg.perturb(**truth))
    res = ct.calibrate(y, pg, list(truth), vg=vg, levels=[2, 1], iterations=[4, 6], recon_iterations=30, progress=False)
    assert abs(res.params["det_shift_u"] - truth["det_shift_u"]) < 0.05 * pixel
    # the tilt of a 2D detector acts only through the magnification across it: a weak, slowly converging direction
    assert abs(res.params["det_yaw"] - truth["det_yaw"]) < 0.2 * truth["det_yaw"]
    assert res.levels[0] == 2 and res.levels[-1] == 1 and res.vg == vg


@pytest.mark.slow
def test_fan_adam_recovers_cor_offset() -> None:
    vg, pg = small_fan()
    pixel = float(np.linalg.norm(pg.det_u[0]))
    truth = 0.8 * pixel / 2  # magnification 2: 0.8 detector pixels
    y = simulate(vg, pg.perturb(cor_offset=truth))
    res = ct.calibrate(
        y, pg, ["cor_offset"], vg=vg, levels=[2, 1], iterations=[6, 4], optimizer="adam", adam_lr=0.3, progress=False
    )
    assert abs(res.params["cor_offset"] - truth) < 0.05 * pixel
    assert res.std is not None  # from one Jacobian at the end


@pytest.mark.slow
def test_gauge_exact_pair_fixes_last_listed() -> None:
    """Parallel beam: cor_offset moves the detector along u exactly like det_shift_u."""
    vg, _ = small_fan(32, 40)
    pg = ct.parallel(np.linspace(0, np.pi, 40, endpoint=False), 48, 64.0 / 32)
    y = simulate(vg, pg.perturb(det_shift_u=1.0))
    res = ct.calibrate(y, pg, ["det_shift_u", "cor_offset"], vg=vg, levels=[1], iterations=3, progress=False)
    assert res.fixed == ["cor_offset"] and res.params["cor_offset"] == 0.0
    assert abs(res.params["det_shift_u"] - 1.0) < 0.05
    assert res.gauge and set(res.gauge[0]["parameters"]) == {"det_shift_u", "cor_offset"}
    flipped = ct.calibrate(y, pg, ["cor_offset", "det_shift_u"], vg=vg, levels=[1], iterations=1, progress=False)
    assert flipped.fixed == ["det_shift_u"]
    reported = ct.calibrate(
        y, pg, ["det_shift_u", "cor_offset"], vg=vg, levels=[1], iterations=1, gauge="report", progress=False
    )
    assert reported.fixed == [] and reported.gauge[0]["action"].startswith("fixed")
    # without the pose, the rigid-motion columns come from their own JVPs, weighted like the data term
    no_pose = ct.calibrate(
        y, pg, ["det_shift_u", "cor_offset"], vg=vg, levels=[1], iterations=1, pose=False, lowpass=1.0, progress=False
    )
    assert no_pose.fixed == ["cor_offset"]


def test_detect_gauge_on_synthetic_jacobian() -> None:
    rng = np.random.default_rng(0)
    _vg, pg = small_fan(16, 8)
    model = PerturbModel(pg, ["det_shift_u", "det_yaw", "cor_offset"], pose=False)
    a, b, g = rng.normal(size=(3, 500))
    J = np.stack([a, b, 2 * a + 3 * g + 1e-6 * rng.normal(size=500)], axis=1)  # column 3 = 2 col 1 + a motion
    G = g[:, None]
    out = detect_gauge(model, J.T @ J, J.T @ G, G.T @ G, tol=1e-4)
    assert out.fixed == [2] and "cor_offset" in out.report[0]["parameters"]
    none = np.zeros((500, 0))
    assert detect_gauge(model, J.T @ J, J.T @ none, none.T @ none, tol=1e-4).fixed == []  # without the motion


def test_structured_normal_equations_match_dense() -> None:
    """One global column and a per-view group (block-diagonal by view) against the dense Jacobian."""
    rng = np.random.default_rng(2)
    views, per = 5, 7
    cols = Columns([np.array([0]), 1 + np.arange(views)], [rng.normal(size=(views, per)) for _ in range(2)], 1 + views)
    J = dense(cols)
    assert J.shape == (views * per, 1 + views) and np.count_nonzero(J[:per, 2:]) == 0
    r, G = rng.normal(size=views * per), rng.normal(size=(views * per, 3))
    H, g = normal_equations(cols, r)
    assert np.allclose(H, J.T @ J) and np.allclose(g, J.T @ r)
    assert np.allclose(cross(cols, G), J.T @ G)


def test_per_view_jitter_reduced() -> None:
    vg, pg = small_fan(40, 60)
    pixel = float(np.linalg.norm(pg.det_u[0]))
    jitter = np.random.default_rng(1).normal(0, 0.5 * pixel, pg.num_views)
    y = simulate(vg, pg.perturb(det_shift_u=jitter))
    res = ct.calibrate(y, pg, ["det_shift_u:view"], vg=vg, levels=[1], iterations=4, progress=False)
    est = np.asarray(res.params["det_shift_u"])
    assert est.shape == (pg.num_views,)
    before, after = np.sqrt(np.mean(jitter**2)), np.sqrt(np.mean((est - jitter) ** 2))
    assert after < before / 4, (before, after)
    assert res.trace("det_shift_u").shape == (len(res.loss), pg.num_views)


@pytest.mark.slow
def test_ray_list_module_shifts() -> None:
    """PET-like ring of 6 modules in 2D; two modules are displaced, one module is the reference."""
    vg = ct.VolumeGeometry((32, 32), voxel_size=2.0)
    crystals, per = 96, 16
    phi = 2 * np.pi * (np.arange(crystals) + 0.5) / crystals
    ring = 50.0 * np.stack([np.cos(phi), np.sin(phi)], axis=1)
    module = np.arange(crystals) // per
    i, j = np.triu_indices(crystals, 1)
    keep = module[i] != module[j]
    i, j = i[keep], j[keep]
    model = EndpointModel(ring[i], ring[j], module[i], module[j], crystals // per)
    shift = np.zeros((6, 2))
    shift[1] = (0.6, -0.4)
    shift[4] = (-0.5, 0.3)
    true = model.final_geometry(np.ascontiguousarray(shift.T).reshape(-1))
    y = simulate(vg, true, "linear")
    res = ct.calibrate(
        y, model.nominal_geometry(), vg=vg, model=model, basis="linear", levels=[1], iterations=5, progress=False
    )
    est = np.asarray(res.params["module_shift"])
    # a rigid motion of the whole ring is a motion of the object (the gauge): compare without it
    before = np.sqrt(np.mean(model.without_rigid_motion(shift) ** 2))
    after = np.sqrt(np.mean(model.without_rigid_motion(est - shift) ** 2))
    assert after < 0.25 * before, (before, after)
    assert res.gauge, "the common translation of all modules must be detected"


def test_bin_detector() -> None:
    vg, pg = small_cone(16, 6)
    x = ct.phantoms.shepp_logan(vg)
    y = ct.Projector(vg, pg, basis="linear")(x)
    binned, yb = bin_detector(pg, y, 2)
    assert binned.shape == (6, 8, 8) and yb.shape == binned.shape
    direct = ct.Projector(vg, binned, basis="linear")(x)
    error = np.abs(direct - yb).mean()
    assert error < 0.1 * np.abs(yb).mean()  # point samples vs pixel averages
    off = ct.from_vectors(binned.to_vectors() + np.r_[np.zeros(3), 0.5 * binned.det_u[0], np.zeros(6)], (8, 8))
    assert np.abs(ct.Projector(vg, off, basis="linear")(x) - yb).mean() > 1.5 * error  # centres matter
    odd = ct.cone(np.linspace(0, np.pi, 3), (7, 9), 3.0, 150.0, 300.0)
    geo, data = bin_detector(odd, np.zeros(odd.shape), 2)
    assert geo.det_shape == (3, 4) and data.shape == (3, 3, 4)


def test_finest_level_refines_on_a_view_subset_and_reconstructs_from_every_view() -> None:
    """The finest level takes every 2nd view for its geometry steps by default (half their passes;
    ``default_strides`` after a coarser level), but the returned reconstruction is made from every view."""
    assert default_strides([4, 2, 1], 360) == [4, 2, 2]  # the default: 180 views left at the finest level
    assert default_strides([4, 2, 1], 360, fine_subset=False) == [4, 2, 1]  # every view at the finest level
    assert default_strides([2, 1], 120) == [2, 1]  # fewer than 90 would be left: every view
    assert default_strides([1], 360) == [1]  # nothing coarser got close first
    assert default_strides([4, 2, 1], 360, per_view=True) == [1, 1, 1]
    vg, pg = small_cone(12, 24)
    y = simulate(vg, pg.perturb(det_shift_u=0.5))
    built: list[tuple[tuple[int, ...], int]] = []

    def factory(v: ct.VolumeGeometry, g: ct.ProjectionGeometry, basis: str) -> ct.Projector:
        built.append((v.shape, g.num_views))
        return ct.Projector(v, g, basis=basis)

    res = ct.calibrate(
        y, pg, ["det_shift_u"], vg=vg, levels=[2, 1], view_strides=[2, 2], iterations=[1, 1], lowpass=0,
        progress=False, diagnostics="off", projector=factory,
    )  # fmt: skip
    finest = [views for shape, views in built if shape == vg.shape]
    assert 12 in finest and finest[-1] == 24  # the steps on 12 views, the reconstruction on all 24
    # the reconstruction fits every view: its residual is that of a fit to all the data, not to half of it
    A = ct.Projector(vg, res.geometry, basis="bspline2")
    fitted = np.linalg.norm(A(res.reconstruction) - y) / np.linalg.norm(y)
    assert fitted < 0.1, fitted


def test_every_view_ridge_is_the_subsets_scaled_by_the_view_ratio() -> None:
    """The final reconstruction on every view takes the subset level's ridge times the view ratio instead of
    measuring the bound of |AᵀA| again (two passes at full size): the two agree."""
    vg, pg = small_cone(12, 24)
    y = simulate(vg, pg)
    full, half = (build_levels(vg, pg, y, [1], [k])[0] for k in (1, 2))
    measured = [LevelProblem(lv, PerturbModel(lv.pg, ["det_shift_u"]), "bspline2", 1e-5).ridge for lv in (full, half)]
    assert measured[0] == pytest.approx(2 * measured[1], rel=0.05)


@pytest.mark.slow
def test_interrupt_keeps_best_and_save(tmp_path) -> None:
    vg, pg = small_cone(16, 24)
    y = ct.phantoms.shepp_logan_projections(pg.perturb(det_shift_v=0.8), vg=vg)
    calls = []

    def stop(state) -> None:
        calls.append(state.loss)
        assert isinstance(state.geometry, ct.ProjectionGeometry)
        if len(calls) == 2:
            raise KeyboardInterrupt

    res = ct.calibrate(y, pg, ["det_shift_v"], vg=vg, levels=[1], iterations=5, callback=stop, progress=False)
    assert res.interrupted and len(res.loss) == 3 and np.isfinite(res.params["det_shift_v"])
    assert res.reconstruction is not None and res.reconstruction.shape == vg.shape
    paths = res.save(tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == sorted(
        ["geometry.json", "reconstruction.tif", "calibration.json", "report.png"]
    )
    data = json.loads(paths["calibration"].read_text())
    assert data["interrupted"] is True and data["parameters"]["det_shift_v"]["unit"] == "mm"
    assert np.allclose(data["parameters"]["det_shift_v"]["trace"], res.trace("det_shift_v"))
    assert len(data["parameters"]["det_shift_v"]["trace"]) == len(data["loss"]) == 3
    pg2, vg2 = ct.load_geometry(paths["geometry"])
    assert vg2 is not None and np.allclose(pg2.to_vectors(), res.geometry.to_vectors()) and vg2.shape == vg.shape
    with pytest.raises(FileExistsError, match=r"calibration\.json"):
        res.save(tmp_path / "out")
    res.save(tmp_path / "out", overwrite=True)


def test_bad_inputs() -> None:
    vg, pg = small_cone(8, 4)
    y = np.zeros(pg.shape, np.float32)
    with pytest.raises(ValueError, match="unknown calibration parameter 'det_shift_w'"):
        ct.calibrate(y, pg, ["det_shift_w"], vg=vg)
    with pytest.raises(ValueError, match="shape"):
        ct.calibrate(y[1:], pg, ["det_shift_u"], vg=vg)
    with pytest.raises(ValueError, match="optimizer"):
        ct.calibrate(y, pg, ["det_shift_u"], vg=vg, optimizer="sgd")
    with pytest.raises(ValueError, match="fix names"):
        ct.calibrate(y, pg, ["det_shift_u"], vg=vg, fix=["det_roll"])
    with pytest.raises(ValueError, match="at least one"):
        ct.calibrate(y, pg, [], vg=vg)
    with pytest.raises(ValueError, match="per-view"):
        ct.calibrate(y, pg, ["det_shift_u:view"], vg=vg, view_strides=[2])


@pytest.mark.slow
def test_cli_projections(tmp_path, capsys) -> None:
    vg, pg = small_cone(16, 24)
    y = simulate(vg, pg.perturb(det_shift_u=0.7))
    np.save(tmp_path / "scan.npy", y)
    ct.save_geometry(tmp_path / "nominal.json", pg, vg)
    out = tmp_path / "calib"
    argv = [
        "calibrate",
        str(tmp_path / "scan.npy"),
        "--geometry",
        str(tmp_path / "nominal.json"),
        "--params",
        "det_shift_u",
        "-o",
        str(out),
        "--levels",
        "1",
        "--iterations",
        "3",
        "--lowpass",
        "0",
        "--no-progress",
    ]
    assert cli_main(argv) == 0
    data = json.loads((out / "calibration.json").read_text())
    assert data["complete"] is True
    assert abs(data["parameters"]["det_shift_u"]["value"] - 0.7) < 0.05
    assert (out / "report.png").stat().st_size > 1000 and (out / "reconstruction.tif").exists()
    assert cli_main(argv) == 2 and "refusing to overwrite" in capsys.readouterr().err
    assert cli_main([*argv, "--force"]) == 0
    assert cli_main([*argv[:2], "--params", "det_shift_u", "-o", str(tmp_path / "x")]) == 2
    assert "--geometry" in capsys.readouterr().err


def test_detector_lowpass_is_symmetric_and_weights_the_operator() -> None:
    """The calibration's data term ``|L (A x - y)|^2``: ``L`` is its own transpose (so ``A^T L`` is the weighted
    operator's adjoint), it blurs across the detector only, and ``sigma = 0`` is the identity."""
    from drct.calibration.lowpass import DetectorLowPass, WeightedOperator

    rng = np.random.default_rng(3)
    L = DetectorLowPass(1.5, 2)
    a, b = rng.standard_normal((2, 5, 12, 16)).astype(np.float64)
    assert np.isclose(np.vdot(L(a), b), np.vdot(a, L(b)), rtol=1e-12)
    spike = np.zeros((3, 15, 15))
    spike[1, 7, 7] = 1.0
    blurred = L(spike)
    assert blurred[0].max() == 0 and blurred[2].max() == 0  # views are not mixed
    assert np.isclose(blurred.sum(), 1.0, atol=1e-6) and 0 < blurred[1, 7, 7] < 0.2
    assert DetectorLowPass(0.0, 2)(a) is a
    vg, pg = small_cone(12, 8)
    A = WeightedOperator(ct.Projector(vg, pg, basis="linear"), L)
    x = rng.random(vg.shape).astype(np.float32)
    y = rng.random(pg.shape).astype(np.float32)
    lhs, rhs = float(np.vdot(A(x).astype(np.float64), y)), float(np.vdot(x.astype(np.float64), A.T(y)))
    assert abs(lhs - rhs) < 1e-5 * abs(lhs)


def test_detector_lowpass_on_the_device_is_the_hosts() -> None:
    """The inner CGLS blurs Dr.Jit tensors with ``dr.convolve``, the rest of the calibration numpy arrays with
    scipy: the same taps (scipy's ``gaussian_filter`` kernel, truncated at 3 sigma), the same zero border, the
    same symmetric matrix, for 2D and 1D detectors and narrow sigmas (a few taps) as well as wide ones (wider
    than the detector)."""
    from scipy.ndimage import gaussian_filter

    from drct.backend import drjit_module
    from drct.calibration.lowpass import DetectorLowPass, WeightedOperator

    mod = drjit_module()
    rng = np.random.default_rng(4)
    for sigma, ndim, shape in ((1.5, 2, (5, 12, 16)), (0.5, 2, (3, 7, 9)), (6.0, 2, (2, 9, 11)), (1.0, 1, (6, 20))):
        L = DetectorLowPass(sigma, ndim)
        a = rng.standard_normal(shape)
        host = gaussian_filter(a, (0.0,) * (len(shape) - ndim) + (sigma,) * ndim, mode="constant", truncate=3.0)
        assert np.array_equal(L(a), host)
        device = np.asarray(L.tensor(mod.TensorXf64(a)).numpy())
        assert device.shape == shape and np.abs(device - host).max() < 1e-13
        b = rng.standard_normal(shape)
        blur = [np.asarray(L.tensor(mod.TensorXf64(v)).numpy()) for v in (a, b)]
        assert np.isclose(np.vdot(blur[0], b), np.vdot(a, blur[1]), rtol=1e-12)
    vg, pg = small_cone(12, 8)
    A = WeightedOperator(ct.Projector(vg, pg, basis="linear"), DetectorLowPass(1.5, 2))
    x = rng.random(vg.shape).astype(np.float32)
    y = rng.random(pg.shape).astype(np.float32)
    forward = A.forward_tensor(mod.TensorXf(x)).numpy()
    adjoint = A.adjoint_tensor(mod.TensorXf(y)).numpy()
    assert np.allclose(forward, A(x), rtol=0, atol=1e-6 * np.abs(A(x)).max())
    assert np.allclose(adjoint, A.T(y), rtol=0, atol=1e-6 * np.abs(A.T(y)).max())


def test_lowpass_gradient_matches_finite_differences() -> None:
    """The reverse-mode geometry gradient of the weighted loss (used by Adam) against central differences."""
    from drct.calibration.levels import build_levels
    from drct.calibration.problem import LevelProblem

    vg, pg = small_cone(16, 12)
    y = simulate(vg, pg.perturb(det_shift_u=0.8, det_roll=0.02))
    model = PerturbModel(pg, ["det_shift_u", "det_roll"], pose=False)
    prob = LevelProblem(build_levels(vg, pg, y, [1], [1])[0], model, "bspline2", 1e-5, lowpass=1.5)
    x = ct.phantoms.shepp_logan(vg).astype(np.float32)
    theta = np.array([0.3, 0.005])
    _, grad = prob.gradient(theta, x)
    for k, h in enumerate((1e-2, 1e-4)):
        e = np.zeros(2)
        e[k] = h
        fd = (prob.loss(theta + e, x) - prob.loss(theta - e, x)) / (2 * h)
        assert abs(grad[k] - fd) < 2e-2 * abs(fd), (k, grad[k], fd)


def test_lowpass_is_checked() -> None:
    vg, pg = small_cone(12, 8)
    y = np.zeros(pg.shape, np.float32)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="lowpass"):
            ct.calibrate(y, pg, ["det_shift_u"], vg=vg, lowpass=bad)


@pytest.mark.slow
def test_cli_scene(tmp_path) -> None:
    """``drct calibrate SCENE``: simulate the scene with its noise, calibrate its misalignment, write everything."""
    from pathlib import Path

    scene = Path(__file__).parent.parent / "scenes" / "micro_ct_misaligned.toml"
    out = tmp_path / "calib"
    argv = ["calibrate", str(scene), "--scale", "0.25", "--levels", "1", "--iterations", "2", "-o", str(out)]
    assert cli_main([*argv, "--no-progress"]) == 0
    data = json.loads((out / "calibration.json").read_text())
    assert data["complete"] is True and "det_roll" in data["truth"]
    roll = data["parameters"]["det_roll"]["value"]
    assert abs(roll - np.deg2rad(0.8)) < np.deg2rad(0.15), np.rad2deg(roll)
    for name in ("geometry.json", "reconstruction.tif", "report.png", "scene.toml"):
        assert (out / name).stat().st_size > 0
    assert ct.load_scene(out / "scene.toml").misalignment["det_roll"] == pytest.approx(roll)
