"""FBP/FDK: amplitudes in physical units on analytic Shepp-Logan data, agreement with ASTRA's CPU FBP, the
building blocks (filters, redundancy weights), exact transposes for AD, and clear refusals."""

from __future__ import annotations

import dataclasses
import importlib
import time

import drjit as dr
import numpy as np
import pytest
from conftest import requires_cuda
from fbp_reference import ReferenceBackprojector, backproject_fan_per_view  # the slow twins (tests/fbp_reference.py)
from scipy import ndimage

import drct as ct
from drct.backend import drjit_module, types
from drct.recon import fbp_weights, filter_response, filter_rows, padded_length, parker_weights
from drct.recon.backproject import make_backprojector
from drct.recon.filters import FILTERS, filter_tensor

fbp_module = importlib.import_module("drct.recon.fbp")  # the module (drct.recon.fbp is also the function)
bp_module = importlib.import_module("drct.recon.backproject")


def _brain(truth: np.ndarray) -> np.ndarray:
    """The large ellipse of the Shepp-Logan phantom (μ = 0.2 / mm), two voxels away from every edge."""
    return ndimage.binary_erosion(np.abs(truth - 0.2) < 1e-6, iterations=2)


def _psnr(rec: np.ndarray, truth: np.ndarray) -> float:
    return float(20 * np.log10(truth.max() / np.sqrt(np.mean((rec - truth) ** 2))))


# --------------------------------------------------------------------------------------------- 2D amplitudes
@pytest.mark.slow
def test_parallel_shepp_logan_amplitude_psnr_and_astra():
    astra = pytest.importorskip("astra")
    angles = np.linspace(0, np.pi, 360, endpoint=False)
    vol_geom = astra.create_vol_geom(256, 256)
    proj_geom = astra.create_proj_geom("parallel", 1.0, 384, angles)
    vg, pg = ct.from_astra(vol_geom, proj_geom)
    y = ct.phantoms.shepp_logan_projections(pg, vg=vg).astype(np.float32)
    truth = ct.phantoms.shepp_logan(vg)
    brain = _brain(truth)
    ours = {}
    for basis in ("voxel", "linear"):
        start = time.perf_counter()
        rec = ct.fbp(ct.Projector(vg, pg, basis=basis), y)
        ours[basis] = _psnr(rec, truth)
        mean = float(rec[brain].mean())
        print(
            f"drct fbp {basis:6s}: mean {mean:.5f} (true 0.2), PSNR {ours[basis]:.2f} dB, "
            f"{time.perf_counter() - start:.2f} s"
        )
        assert mean == pytest.approx(0.2, rel=0.01)
    theirs = {}
    for kind in ("line", "linear", "strip"):
        pid = astra.create_projector(kind, proj_geom, vol_geom)
        sid = astra.data2d.create("-sino", proj_geom, y)
        rid = astra.data2d.create("-vol", vol_geom, 0)
        cfg = astra.astra_dict("FBP")
        cfg.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid, option={"FilterType": "ram-lak"})
        alg = astra.algorithm.create(cfg)
        astra.algorithm.run(alg)
        rec = astra.data2d.get(rid)
        theirs[kind] = _psnr(rec, truth)
        print(f"ASTRA FBP {kind:6s}: mean {float(rec[brain].mean()):.5f}, PSNR {theirs[kind]:.2f} dB")
        astra.algorithm.delete(alg)
        astra.data2d.delete([sid, rid])
        astra.projector.delete(pid)
    # the same model (exact intersection lengths of the box basis): the same image quality
    assert abs(ours["voxel"] - theirs["line"]) < 0.5
    # interpolating models: ours at least as good as ASTRA's within 0.5 dB
    assert ours["linear"] > max(theirs["linear"], theirs["strip"]) - 0.5


@pytest.mark.parametrize("curved", [False, True])
@pytest.mark.parametrize("scan", ["full", "short"])
def test_fan_shepp_logan_amplitude(curved, scan):
    vg = ct.VolumeGeometry((256, 256), voxel_size=1.0)
    cols, spacing, so, sd = 384, 2.0, 500.0, 1000.0
    half_fan = cols * spacing / 2 / sd if curved else np.arctan(cols * spacing / 2 / sd)
    if scan == "full":
        angles = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    else:
        angles = np.linspace(0.3, 0.3 + np.pi + 2 * half_fan, 360)
    pg = ct.fan(angles, cols, spacing, so, sd, curved=curved)
    y = ct.phantoms.shepp_logan_projections(pg, vg=vg).astype(np.float32)
    truth = ct.phantoms.shepp_logan(vg)
    A = ct.Projector(vg, pg, basis="linear")
    assert fbp_weights(pg, vg).short_scan == (scan == "short")
    rec = ct.fbp(A, y)
    mean = float(rec[_brain(truth)].mean())
    print(f"fan {scan} curved={curved}: mean {mean:.5f} (true 0.2), PSNR {_psnr(rec, truth):.2f} dB")
    assert mean == pytest.approx(0.2, rel=0.01)
    assert _psnr(rec, truth) > 30


@pytest.mark.parametrize(
    ("basis", "voxel", "spacing", "beam"),
    [
        ("voxel", 0.5, 0.7, "parallel"),
        ("linear", 2.0, 1.3, "parallel"),
        ("bspline2", 1.0, 1.0, "fan"),
        ("bspline3", 0.7, 1.6, "fan"),
        ("voxel", 1.5, 2.5, "fan_curved"),
    ],
)
def test_amplitude_any_basis_voxel_size_and_spacing(basis, voxel, spacing, beam):
    """A uniform disk of μ = 0.05/mm comes back at 0.05/mm whatever the basis and sizes."""
    vg = ct.VolumeGeometry((48, 48), voxel_size=voxel)
    radius = 15 * voxel
    disk = [ct.phantoms.Ellipsoid((0.0, 0.0), (radius, radius), 0.05)]
    angles = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    cols = int(np.ceil(48 * voxel * 1.6 / spacing))
    if beam == "parallel":
        pg = ct.parallel(angles, cols, spacing)
    else:
        pg = ct.fan(angles, cols, spacing, 60 * voxel, 120 * voxel, curved=beam == "fan_curved")
    y = ct.phantoms.project_ellipsoids(disk, pg).astype(np.float32)
    rec = ct.fbp(ct.Projector(vg, pg, basis=basis), y, filter="hann", cutoff=0.8)
    xs, ys = vg.coordinates()
    inner = np.hypot(xs[None, :], ys[:, None]) < 0.7 * radius
    assert float(rec[inner].mean()) == pytest.approx(0.05, rel=0.01)


# --------------------------------------------------------------------------------------------- 3D FDK
@pytest.mark.slow
@pytest.mark.parametrize("scan", ["full", "short"])
def test_fdk_128_cone_amplitude(scan):
    """128³ Shepp-Logan, flat detector, 180 views (full) or a Parker short scan."""
    vg = ct.VolumeGeometry((128, 128, 128), voxel_size=1.0)
    so, sd, det, pitch = 300.0, 600.0, (160, 220), 1.9
    half_fan = np.arctan(det[1] * pitch / 2 / sd)
    if scan == "full":
        angles = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    else:
        angles = np.linspace(0, np.pi + 2 * half_fan + 0.02, 110)
    pg = ct.cone(angles, det, pitch, so, sd)
    y = ct.phantoms.shepp_logan_projections(pg, vg=vg).astype(np.float32)
    start = time.perf_counter()
    rec = ct.fdk(ct.Projector(vg, pg, basis="voxel"), y)
    elapsed = time.perf_counter() - start
    truth = ct.phantoms.shepp_logan(vg, supersample=2)
    brain = _brain(truth)
    brain[:48] = brain[80:] = False  # the central slab: FDK is exact in the mid-plane only
    mean = float(rec[brain].mean())
    print(
        f"FDK 128^3 {scan}: {elapsed:.2f} s, mean {mean:.5f} (true 0.2), PSNR mid-slice "
        f"{_psnr(rec[64], truth[64]):.2f} dB"
    )
    assert mean == pytest.approx(0.2, rel=0.01)


def test_fdk_curved_and_3d_parallel_amplitude():
    vg = ct.VolumeGeometry((24, 40, 40), voxel_size=1.5)
    disk = [ct.phantoms.Ellipsoid((0.0, 0.0, 0.0), (20.0, 20.0, 12.0), 0.03)]
    angles = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    for pg in (
        ct.cone(angles, (40, 80), 1.7, 150.0, 300.0, curved=True),
        ct.parallel(np.linspace(0, np.pi, 45, endpoint=False), (30, 64), 1.1),
    ):
        y = ct.phantoms.project_ellipsoids(disk, pg).astype(np.float32)
        rec = ct.fbp(ct.Projector(vg, pg, basis="voxel"), y)
        assert float(rec[10:14, 14:26, 14:26].mean()) == pytest.approx(0.03, rel=0.01), pg


# --------------------------------------------------------------------------------------------- building blocks
def test_filter_responses():
    n, spacing = padded_length(200), 0.8
    assert n == 512
    f = np.fft.rfftfreq(n, d=spacing)
    ramp = filter_response(n, spacing)
    mid = (f > 0.05 / spacing) & (f < 0.45 / spacing)
    np.testing.assert_allclose(ramp[mid] * spacing, f[mid], rtol=0.02)  # Δ·H ≈ |f| (continuous ramp)
    for name in FILTERS[1:]:
        windowed = filter_response(n, spacing, name)
        assert np.all(windowed <= ramp + 1e-12) and windowed[1] == pytest.approx(ramp[1], rel=1e-3), name
    cut = filter_response(n, spacing, "ram-lak", cutoff=0.5)
    assert np.all(cut[f > 0.5 * 0.5 / spacing + 1e-9] == 0)
    # the fan-angle ramp tends to the flat one for small angles
    small = filter_response(n, 1e-4, curved=True)
    np.testing.assert_allclose(small, filter_response(n, 1e-4), rtol=1e-3)
    # filtering a constant row far from its ends gives zero (the ramp removes DC)
    q = filter_rows(np.ones((1, 400)), 1.0)
    assert abs(q[0, 200]) < 2e-3
    with pytest.raises(ValueError, match="filter must be one of"):
        filter_response(n, 1.0, "gauss")
    with pytest.raises(ValueError, match="cutoff"):
        filter_response(n, 1.0, cutoff=1.5)


@pytest.mark.parametrize("curved", [False, True])
@pytest.mark.parametrize("cutoff", [1.0, 0.55])
@pytest.mark.parametrize("name", FILTERS)
def test_device_filter_equals_host_fft(name, cutoff, curved):
    """The Dr.Jit convolution with the spatial taps gives numpy's padded-FFT filter to float32 rounding, for
    every filter, cut-off and detector shape (2D sinograms and 3D stacks of rows)."""
    t = ct.Projector(ct.VolumeGeometry((4, 4)), ct.parallel([0.0], 4)).types
    rng = np.random.default_rng(8)
    spacing = 0.02 if curved else 0.7  # radians: fan angles up to ±0.37, (γ/sin γ)² up to 1.05
    for shape in [(5, 37), (2, 3, 20)]:
        p = rng.standard_normal(shape).astype(np.float32)
        host = filter_rows(p, spacing, name, cutoff, curved)
        device = filter_tensor(t.Tensor(p), spacing, name, cutoff, curved, device=True)
        assert device.shape == shape
        np.testing.assert_allclose(device.numpy(), host, rtol=0, atol=2e-6 * float(np.abs(host).max()))


@pytest.mark.parametrize("device", [False, True])
def test_filter_gradients_are_the_filter_itself(device):
    """The filter is symmetric: its VJP applied to ``w`` is the same filter applied to ``w`` (both paths)."""
    TensorXf64 = drjit_module().TensorXf64
    rng = np.random.default_rng(9)
    p0, w = rng.standard_normal((4, 30)), rng.standard_normal((4, 30))
    p = TensorXf64(p0)
    dr.enable_grad(p)
    q = filter_tensor(p, 0.8, "hann", 0.9, device=device)
    dr.backward(dr.sum(q.array * TensorXf64(w).array))
    np.testing.assert_allclose(dr.grad(p).numpy(), filter_rows(w, 0.8, "hann", 0.9), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(q.numpy(), filter_rows(p0, 0.8, "hann", 0.9), rtol=1e-10, atol=1e-12)


def test_parker_weights_sum_to_one_on_redundant_pairs():
    rng = np.random.default_rng(1)
    scan = np.pi + 2 * 0.3 + 0.1
    gamma = rng.uniform(-0.3, 0.3, 500)
    beta = rng.uniform(0, scan - np.pi - 2 * gamma)  # so that the partner ray is in the scan too
    total = parker_weights(beta, gamma, scan) + parker_weights(beta + np.pi + 2 * gamma, -gamma, scan)
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


def test_angular_weights_handle_non_uniform_angles():
    vg = ct.VolumeGeometry((48, 48))
    rng = np.random.default_rng(2)
    angles = np.sort(rng.uniform(0, np.pi, 150))
    pg = ct.parallel(angles, 72)
    disk = [ct.phantoms.Ellipsoid((0.0, 0.0), (15.0, 15.0), 0.05)]
    rec = ct.fbp(ct.Projector(vg, pg, basis="linear"), ct.phantoms.project_ellipsoids(disk, pg).astype(np.float32))
    assert float(rec[18:30, 18:30].mean()) == pytest.approx(0.05, rel=0.01)
    w = fbp_weights(pg, vg)
    assert float(w.post.sum()) == pytest.approx(np.pi * 1.0 / 1.0, rel=1e-9)


def test_short_scan_in_any_view_order_and_direction():
    vg = ct.VolumeGeometry((48, 48))
    disk = [ct.phantoms.Ellipsoid((0.0, 0.0), (15.0, 15.0), 0.05)]
    angles = np.linspace(2.5, 2.5 + np.pi + 1.4, 120)
    results = []
    for order in (angles, angles[::-1], angles[np.random.default_rng(7).permutation(120)] - 2 * np.pi):
        pg = ct.fan(order, 90, 1.0, 100.0, 200.0)
        y = ct.phantoms.project_ellipsoids(disk, pg).astype(np.float32)
        rec = ct.fbp(ct.Projector(vg, pg, basis="linear"), y, progress=False)
        results.append(rec)
    assert float(results[0][20:28, 20:28].mean()) == pytest.approx(0.05, rel=0.01)
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], atol=5e-5)  # 0.1% of μ


# --------------------------------------------------------------------------------------------- AD and kinds
@pytest.mark.parametrize("geometry", ["fan", "fan_curved", "cone", "cone_flat"])
def test_fbp_is_differentiable_with_exact_transpose(geometry):
    """<FBP y, w> = <y, dFBP/dy^T w>: the reverse-mode gradient is the exact transpose of the linear FBP."""
    TensorXf64 = drjit_module().TensorXf64

    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    if geometry.startswith("fan"):
        vg = ct.VolumeGeometry((12, 12))
        pg = ct.fan(angles, 20, 1.0, 40.0, 80.0, curved=geometry == "fan_curved")
    else:
        vg = ct.VolumeGeometry((6, 10, 10))
        pg = ct.cone(angles, (10, 20), 1.0, 40.0, 80.0, curved=geometry == "cone")
    A = ct.Projector(vg, pg, basis="linear", dtype="float64")
    rng = np.random.default_rng(3)
    y = TensorXf64(rng.standard_normal(pg.shape))
    w = rng.standard_normal(vg.shape)
    dr.enable_grad(y)
    rec = ct.fbp(A, y)
    loss = dr.sum(rec.array * TensorXf64(w).array)
    dr.backward(loss)
    grad = dr.grad(y).numpy()
    assert float(loss.numpy()[0]) == pytest.approx(float(np.sum(grad * y.numpy())), rel=1e-9)
    np.testing.assert_allclose(rec.numpy(), ct.fbp(A, y.numpy()), rtol=1e-10, atol=1e-12)


def _tilted_cone(angles: np.ndarray) -> ct.ProjectionGeometry:
    """A flat cone beam whose detector is shifted, tilted (rows not along z) and skewed, per view."""
    vectors = ct.cone(angles, (14, 22), 1.3, 45.0, 85.0).to_vectors()
    rng = np.random.default_rng(8)
    vectors[:, 3:6] += rng.normal(0, 1.5, (angles.size, 3))  # detector centres
    vectors[:, 9:12] += rng.normal(0, 0.15, (angles.size, 3))  # det_v: tilted and skewed
    return ct.from_vectors(vectors, (14, 22))


@pytest.mark.parametrize("beam", ["cone", "cone_curved", "parallel", "tilted"])
def test_voxel_driven_backprojection_equals_the_per_view_reference(monkeypatch, beam):
    """The kernel that loops over the views (affine forms per view, one packet gather of a cell's bilinear form)
    gives the sum of the first per-view kernel (tests/fbp_reference.py), to float32 rounding: several kernels with
    an uneven last one (37 = 7 * 5 + 2 views), an off-centre grid of anisotropic voxels whose slowest axis is not
    a whole number of blocks (11 = 8 + 3), points beyond the detector's edges."""
    monkeypatch.setattr(bp_module._Backprojector, "views_per_kernel", lambda self: 5)
    angles = np.linspace(0.3, 0.3 + 2 * np.pi, 37, endpoint=False)
    pg = {
        "cone": ct.cone(angles, (14, 22), 1.3, 45.0, 85.0),
        "cone_curved": ct.cone(angles, (14, 22), 1.3, 45.0, 85.0, curved=True),
        "parallel": ct.parallel(angles / 2, (14, 22), 1.1),
        "tilted": _tilted_cone(angles),
    }[beam]
    vg = ct.VolumeGeometry((11, 16, 13), voxel_size=(1.4, 1.2, 1.1), center=(1.5, -2.0, 3.0))
    t = types("float32")
    q = t.Float(np.random.default_rng(1).standard_normal(pg.num_rays).astype(np.float32))
    new = make_backprojector(pg, vg, t).apply(q).numpy()
    old = ReferenceBackprojector(pg, vg, t).apply(q).numpy()
    assert np.count_nonzero(old) > 0.5 * old.size
    np.testing.assert_allclose(new, old, rtol=0, atol=2e-5 * float(np.abs(old).max()))


def _engine_cases() -> dict[str, tuple[ct.ProjectionGeometry, ct.VolumeGeometry]]:
    """Every kind the voxel-driven backprojector serves, on grids whose slowest axis is not a whole number of
    lane blocks (11 = 8 + 3; 2D: 13 = 8 + 5)."""
    angles = np.linspace(0.3, 0.3 + 2 * np.pi, 37, endpoint=False)
    vg3 = ct.VolumeGeometry((11, 16, 13), voxel_size=(1.4, 1.2, 1.1), center=(1.5, -2.0, 3.0))
    vg2 = ct.VolumeGeometry((13, 18), voxel_size=(1.3, 1.2), center=(0.7, -1.1))
    return {
        "cone": (ct.cone(angles, (14, 22), 1.3, 45.0, 85.0), vg3),
        "cone_curved": (ct.cone(angles, (14, 22), 1.3, 45.0, 85.0, curved=True), vg3),
        "parallel": (ct.parallel(angles / 2, (14, 22), 1.1), vg3),
        "tilted": (_tilted_cone(angles), vg3),
        "fan": (ct.fan(angles, 40, 1.2, 50.0, 90.0), vg2),
        "fan_curved": (ct.fan(angles, 40, 1.2, 50.0, 90.0, curved=True), vg2),
    }


@pytest.mark.parametrize("beam", ["cone", "cone_curved", "parallel", "tilted"])
def test_voxel_driven_backprojection_equals_the_per_view_reference_in_float64(monkeypatch, beam):
    """In float64 the loop kernel and the first per-view kernel agree to rounding (1e-12 of the largest value):
    the same interpolation and weights, whatever the kernel split (37 = 7 * 5 + 2 views)."""
    monkeypatch.setattr(bp_module._Backprojector, "views_per_kernel", lambda self: 5)
    pg, vg = _engine_cases()[beam]
    t = types("float64")
    q = t.Float(np.random.default_rng(1).standard_normal(pg.num_rays))
    new = make_backprojector(pg, vg, t).apply(q).numpy()
    old = ReferenceBackprojector(pg, vg, t).apply(q).numpy()
    np.testing.assert_allclose(new, old, rtol=0, atol=1e-12 * float(np.abs(old).max()))


@pytest.mark.parametrize("beam", list(_engine_cases()))
def test_voxel_driven_transpose_is_the_exact_adjoint(monkeypatch, beam):
    """``<apply(q), g> = <q, transpose(g)>`` in float64 (the reverse-mode gradient is the transpose of the loop
    kernel's own arithmetic), for every kind, split into several kernels, with a partial last lane block."""
    monkeypatch.setattr(bp_module._Backprojector, "views_per_kernel", lambda self: 6)
    pg, vg = _engine_cases()[beam]
    t = types("float64")
    rng = np.random.default_rng(7)
    q, g = rng.standard_normal(pg.num_rays), rng.standard_normal(vg.size)
    engine = make_backprojector(pg, vg, t)
    forward = engine.apply(t.Float(q)).numpy()
    back = engine.transpose(t.Float(g)).numpy()
    assert np.count_nonzero(forward) > 0.5 * forward.size and np.count_nonzero(back) > 0.3 * back.size
    lhs, rhs = float(forward @ g), float(q @ back)
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12 * float(np.abs(forward).sum() * np.abs(g).max()))


@pytest.mark.parametrize("beam", ["cone", "cone_curved", "parallel"])
def test_forms_shared_along_a_block_give_the_general_result(beam):
    """On a circular orbit the column and weight do not change along ``z``: the kernel computes them once per
    lane block (a form whose step is zero in every view is one variable). The general path, every form stepped
    per voxel, gives the same numbers bit for bit."""
    pg, vg = _engine_cases()[beam]
    t = types("float32")
    q = t.Float(np.random.default_rng(3).standard_normal(pg.num_rays).astype(np.float32))
    shared = make_backprojector(pg, vg, t)
    assert not all(shared.plan().varies)  # the circular orbit's shortcut is taken
    general = make_backprojector(pg, vg, t)
    general._plan = dataclasses.replace(general.plan(), varies=(True,) * vg.ndim)
    np.testing.assert_array_equal(shared.apply(q).numpy(), general.apply(q).numpy())


def test_voxel_driven_backprojection_adds_to_out_and_shows_progress(monkeypatch, capsys):
    """Streaming FDK adds a chunk of views to a running volume (``out``); a call of several kernels shows a
    progress bar when asked, one kernel none."""
    monkeypatch.setattr(bp_module._Backprojector, "views_per_kernel", lambda self: 10)
    pg, vg = _engine_cases()["cone"]
    t = types("float32")
    q = t.Float(np.random.default_rng(4).standard_normal(pg.num_rays).astype(np.float32))
    engine = make_backprojector(pg, vg, t)
    whole = engine.apply(q, progress=True).numpy()
    assert "backprojection" in capsys.readouterr().err
    start = t.Float(np.full(vg.size, 2.0, dtype=np.float32))
    np.testing.assert_allclose(engine.apply(q, out=start).numpy(), whole + 2.0, rtol=0, atol=1e-5)
    monkeypatch.setattr(bp_module._Backprojector, "views_per_kernel", lambda self: 64)
    engine.apply(q, progress=True)
    assert "backprojection" not in capsys.readouterr().err


@pytest.mark.parametrize("beam", ["cone", "tilted"])
def test_voxel_driven_backprojection_gives_the_same_bits_for_any_split(beam):
    """Streaming FDK (:mod:`drct.outofcore`) backprojects chunks of views into slabs of planes: a voxel's result
    is the same bits as in one call over the whole grid (its world coordinates, its sum in scan order from
    ``out``), whatever the slab (here 5 = a partial lane block) and the chunks of views (15 + 22)."""
    pg, vg = _engine_cases()[beam]
    t = types("float32")
    y = np.random.default_rng(5).standard_normal(pg.num_rays).astype(np.float32)
    whole = make_backprojector(pg, vg, t).apply(t.Float(y)).numpy().reshape(vg.shape)
    nz, ny, nx = vg.shape
    hz, pixels = vg.voxel_size[0], pg.num_rays // pg.num_views
    planes = []
    for z0, depth in [(0, 5), (5, 6)]:
        centre = (*vg.center[:2], vg.center[2] + (z0 + (depth - 1) / 2 - (nz - 1) / 2) * hz)
        engine = make_backprojector(pg, ct.VolumeGeometry((depth, ny, nx), vg.voxel_size, centre), t)
        out = None
        for a, b in [(0, 15), (15, pg.num_views)]:
            part = engine.with_views(pg.select_views(np.arange(a, b)))
            out = part.apply(t.Float(y[a * pixels : b * pixels]), out=out)
        assert out is not None
        planes.append(out.numpy().reshape(depth, ny, nx))
    np.testing.assert_array_equal(np.concatenate(planes), whole)


def test_voxel_driven_backprojection_refuses_what_does_not_fit(monkeypatch):
    """The cells and the lane blocks are estimated before anything is allocated (a failed allocation inside
    Dr.Jit's thread pool is a crash, not an exception)."""
    import drct.memory
    from drct.errors import MemoryBudgetError

    pg, vg = _engine_cases()["cone"]
    t = types("float32")
    engine = make_backprojector(pg, vg, t)
    monkeypatch.setattr(drct.memory, "available_bytes", lambda: 1 << 16)
    with pytest.raises(MemoryBudgetError, match="FDK backprojection of 37 views"):
        engine.apply(t.Float(np.zeros(pg.num_rays, dtype=np.float32)))


@pytest.mark.parametrize("curved", [False, True])
def test_2d_fan_backprojection_is_the_cone_kernel_in_one_plane(curved):
    """A 2D fan beam is backprojected as the mid-plane of a one-row cone beam with the same orbit (the same
    detector interpolation and FDK weights), here by the per-view 3D reference."""
    angles = np.linspace(0.1, 0.1 + 2 * np.pi, 30, endpoint=False)
    fan = ct.fan(angles, 40, 1.2, 50.0, 90.0, curved=curved)
    cone = ct.cone(angles, (1, 40), 1.2, 50.0, 90.0, curved=curved)
    t = types("float32")
    q = t.Float(np.random.default_rng(2).standard_normal(fan.num_rays).astype(np.float32))
    new = make_backprojector(fan, ct.VolumeGeometry((18, 21), voxel_size=1.3), t).apply(q).numpy()
    old = ReferenceBackprojector(cone, ct.VolumeGeometry((1, 18, 21), voxel_size=1.3), t).apply(q).numpy()
    np.testing.assert_allclose(new, old.reshape(new.shape), rtol=0, atol=2e-5 * float(np.abs(old).max()))


@pytest.mark.parametrize(("basis", "curved"), [("linear", False), ("voxel", True), ("bspline2", False)])
def test_fan_backprojection_equals_the_view_by_view_reference(monkeypatch, basis, curved):
    """The batched ``A.T`` 2D fan backprojection (views in launches of several, uneven last launch) gives the sum
    of the per-view ``D/r``-weighted adjoints of the old view-by-view path, to float32 rounding."""
    monkeypatch.setattr(fbp_module, "FAN_CHUNK_BYTES", 7 * 30 * 26 * 4)  # 7 views per launch: 40 = 5 * 7 + 5
    vg = ct.VolumeGeometry((30, 26), voxel_size=0.9)
    pg = ct.fan(np.linspace(0.2, 0.2 + 2 * np.pi, 40, endpoint=False), 45, 1.1, 50.0, 90.0, curved=curved)
    A = ct.Projector(vg, pg, basis=basis, deterministic=curved)
    assert [c.count for c in fbp_module._fan_chunks(A)] == [7] * 5 + [5]
    assert all(c.op._engine.reproducible() == curved for c in fbp_module._fan_chunks(A))  # A's own setting
    z = A.types.Tensor(np.random.default_rng(4).standard_normal(pg.shape).astype(np.float32))
    new = fbp_module.backproject_fan(A, z).numpy()
    old = backproject_fan_per_view(A, z).numpy()
    np.testing.assert_allclose(new, old, rtol=0, atol=2e-6 * float(np.abs(old).max()))


def test_fan_fbp_with_drjit_geometry_uses_the_adjoint_and_reaches_the_geometry():
    """2D fan beams with Dr.Jit geometry vectors are backprojected with ``A.T`` (gradients reach the vectors);
    the image agrees with the voxel-driven one up to the basis smoothing (here within 1% of μ inside a disk)."""
    vg = ct.VolumeGeometry((40, 40))
    pg = ct.fan(np.linspace(0, 2 * np.pi, 90, endpoint=False), 64, 1.0, 60.0, 120.0)
    y = ct.phantoms.project_ellipsoids([ct.phantoms.Ellipsoid((0.0, 0.0), (12.0, 12.0), 0.05)], pg)
    voxel_driven = ct.fbp(ct.Projector(vg, pg, basis="linear"), y.astype(np.float32), progress=False)
    moving = pg.with_drjit_vectors()
    dr.enable_grad(moving.det)
    A = ct.Projector(vg, moving, basis="linear")
    rec = fbp_module.fbp_tensor(A, A.types.Tensor(y.astype(np.float32)))
    dr.backward(dr.sum(rec.array))
    assert float(np.abs(np.asarray(dr.grad(moving.det))).max()) > 0
    inner = np.hypot(*np.meshgrid(*vg.coordinates())) < 9.0
    np.testing.assert_allclose(rec.numpy()[inner], voxel_driven[inner], rtol=0, atol=5e-4)


@pytest.mark.parametrize("views_per_kernel", [5, 24])
def test_fan_fbp_gradients_match_finite_differences(monkeypatch, views_per_kernel):
    """FBP is linear in ``y``: reverse mode (VJP) and forward mode (JVP) through the voxel-driven fan
    backprojection agree with a central difference, in one kernel and in several."""
    TensorXf64 = drjit_module().TensorXf64
    vg = ct.VolumeGeometry((10, 12))
    monkeypatch.setattr(bp_module._Backprojector, "views_per_kernel", lambda self: views_per_kernel)
    pg = ct.fan(np.linspace(0, 2 * np.pi, 24, endpoint=False), 18, 1.0, 40.0, 80.0, curved=True)
    A = ct.Projector(vg, pg, basis="linear", dtype="float64")
    rng = np.random.default_rng(5)
    y0, d, w = rng.standard_normal(pg.shape), rng.standard_normal(pg.shape), rng.standard_normal(vg.shape)
    eps = 1e-3
    fd = (ct.fbp(A, y0 + eps * d, progress=False) - ct.fbp(A, y0 - eps * d, progress=False)) / (2 * eps)
    y = TensorXf64(y0)
    dr.enable_grad(y)
    rec = ct.fbp(A, y, progress=False)
    dr.backward(dr.sum(rec.array * TensorXf64(w).array))
    assert float(np.sum(dr.grad(y).numpy() * d)) == pytest.approx(float(np.sum(w * fd)), rel=1e-7)
    y = TensorXf64(y0)
    dr.enable_grad(y)
    rec = ct.fbp(A, y, progress=False)
    dr.set_grad(y, TensorXf64(d))
    np.testing.assert_allclose(dr.forward_to(rec).numpy(), fd, rtol=1e-7, atol=1e-9 * float(np.abs(fd).max()))


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("beam", ["fan", "fan_curved", "cone", "cone_curved"])
def test_cuda_fbp_matches_llvm(beam):
    """On CUDA the filter (a Dr.Jit convolution) and the voxel-driven backprojection (packet gathers) run on the
    device and give the LLVM result to float32 rounding."""
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    curved = beam.endswith("curved")
    if beam.startswith("fan"):
        vg, pg = ct.VolumeGeometry((24, 28)), ct.fan(angles, 48, 1.0, 60.0, 110.0, curved=curved)
    else:
        vg, pg = ct.VolumeGeometry((10, 24, 28)), ct.cone(angles, (16, 48), 1.0, 60.0, 110.0, curved=curved)
    y = np.random.default_rng(6).random(pg.shape).astype(np.float32)
    cpu = ct.fbp(ct.Projector(vg, pg, backend="llvm"), y, progress=False)
    gpu = ct.fbp(ct.Projector(vg, pg, backend="cuda"), y, progress=False)
    assert np.abs(gpu - cpu).max() <= 1e-4 * np.abs(cpu).max()


def test_fbp_accepts_torch():
    torch = pytest.importorskip("torch")
    vg = ct.VolumeGeometry((16, 16))
    pg = ct.parallel(np.linspace(0, np.pi, 20, endpoint=False), 24)
    A = ct.Projector(vg, pg)
    y = np.random.default_rng(0).random(pg.shape).astype(np.float32)
    out = ct.fbp(A, torch.from_numpy(y))
    assert isinstance(out, torch.Tensor)
    ref = ct.fbp(A, y)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-6 * float(np.abs(ref).max()))


# --------------------------------------------------------------------------------------------- refusals
def test_refusals_are_clear():
    vg3 = ct.VolumeGeometry((8, 16, 16))
    helix = ct.helix(np.linspace(-2 * np.pi, 2 * np.pi, 40), 10.0, (8, 24), 1.0, 60.0, 120.0)
    with pytest.raises(ValueError, match="helical"):
        ct.fdk(ct.Projector(vg3, helix), np.zeros(helix.shape, np.float32))
    vg = ct.VolumeGeometry((16, 16))
    pg = ct.parallel(np.linspace(0, np.pi, 10, endpoint=False), 24)
    A = ct.Projector(vg, pg)
    with pytest.raises(ValueError, match="3D cone-beam"):
        ct.fdk(A, np.zeros(pg.shape, np.float32))
    with pytest.raises(ValueError, match="filter must be one of"):
        ct.fbp(A, np.zeros(pg.shape, np.float32), filter="ramp")
    with pytest.raises(ValueError, match="must have shape"):
        ct.fbp(A, np.zeros((3, 3), np.float32))
    short = ct.fan(np.linspace(0, np.pi, 30), 40, 1.0, 50.0, 100.0)
    with pytest.raises(ValueError, match="short scan"):
        ct.fbp(ct.Projector(vg, short), np.zeros(short.shape, np.float32))
    limited = ct.parallel(np.linspace(0, np.pi / 2, 30), 24)
    with pytest.warns(UserWarning, match="limited-angle"):
        ct.fbp(ct.Projector(vg, limited), np.zeros(limited.shape, np.float32))
    lines = ct.rays([[0.0, -50.0]], [[0.0, 1.0]])
    with pytest.raises(ValueError, match="detector geometry"):
        ct.fbp(ct.Projector(vg, lines), np.zeros(lines.shape, np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_filter_rows_in_blocks_equals_one_batched_fft(dtype, monkeypatch) -> None:
    """The rows are filtered a block at a time (a 1024² x 720 scan's padded spectra alone are 6 GB, which ct.fdk
    ran out of memory on): blocks of a few rows give the one-shot FFT's values, an uneven last block included."""
    from drct.recon import filters

    p = np.random.default_rng(3).normal(size=(5, 3, 24)).astype(dtype)
    n = filters.padded_length(24)
    response = filters.filter_response(n, 0.7, "hann", 0.8, False)
    expected = np.fft.irfft(np.fft.rfft(p.astype(np.float64), n, axis=-1) * response, n, axis=-1)[..., :24] * 0.7
    monkeypatch.setattr(filters, "FILTER_BLOCK_BYTES", 2 * n * np.dtype(dtype).itemsize * 4)  # 4 rows per block
    out = filters.filter_rows(p, 0.7, "hann", 0.8)
    assert out.dtype == dtype and out.shape == p.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert np.max(np.abs(out - expected)) <= tol * np.max(np.abs(expected))


def test_fdk_weights_are_made_a_chunk_of_views_at_a_time(monkeypatch) -> None:
    """The in-memory FDK of 720 x 1024² projections was killed by the kernel on a 24 GB machine: the weights'
    per-pixel temporaries for the whole scan at once took ~70 GB. Now a chunk of views at a time: the same bits."""
    from drct.recon import weights

    vg = ct.VolumeGeometry((8, 16, 16))
    short = ct.cone(np.linspace(0, 1.3 * np.pi, 33, endpoint=False), (12, 20), 1.5, 60.0, 120.0)
    curved = ct.cone(np.linspace(0, 2 * np.pi, 30, endpoint=False), (12, 20), 0.02, 60.0, 120.0, curved=True)
    cases = [(short, None), (short, np.array([3, 7, 20, 31])), (curved, None), (curved, np.arange(5, 17))]
    whole = [fbp_weights(pg, vg, views) for pg, views in cases]
    monkeypatch.setattr(weights, "WEIGHT_CHUNK_BYTES", 1 << 16)  # 3 views per chunk
    for (pg, views), a in zip(cases, whole, strict=True):
        b = fbp_weights(pg, vg, views)
        assert np.array_equal(a.pre, b.pre) and a.spacing == b.spacing
        if a.redundancy is None or b.redundancy is None:
            assert a.redundancy is None and b.redundancy is None
        else:
            assert np.array_equal(a.redundancy, b.redundancy)


def test_fdk_of_a_scan_whose_weights_do_not_fit_is_refused_before_any_work(monkeypatch) -> None:
    """Weights that do not fit are estimated first and refused with a message naming drct.outofcore."""
    import drct.memory
    from drct.errors import MemoryBudgetError

    monkeypatch.setattr(drct.memory, "available_bytes", lambda: 4 << 30)  # 720 x 1024² weights: 6 GB
    vg = ct.VolumeGeometry((8, 8, 8))
    pg = ct.cone(np.linspace(0, 2 * np.pi, 720, endpoint=False), (1024, 1024), 1.5, 4096.0, 6144.0)
    with pytest.raises(MemoryBudgetError, match=r"drct\.outofcore\.fdk"):
        ct.recon.fbp_weights(pg, vg)
