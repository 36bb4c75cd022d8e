"""drct.torch: the projector, its adjoint and FBP as torch autograd operations (CPU / LLVM here)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from conftest import GEOMETRIES, requires_cuda, slow_cases, volume_for

import drct as ct
import drct.torch  # makes ct.torch available

F64 = torch.float64


def _fan() -> tuple[ct.VolumeGeometry, ct.ProjectionGeometry]:
    vg = ct.VolumeGeometry((12, 14), voxel_size=(1.1, 0.9), center=(0.3, -0.2))
    return vg, ct.fan(np.linspace(0, 2 * np.pi, 6, endpoint=False) + 0.1, 20, 1.5, 40.0, 80.0)


def _cone() -> tuple[ct.VolumeGeometry, ct.ProjectionGeometry]:
    vg = ct.VolumeGeometry((6, 7, 8), voxel_size=(1.2, 0.9, 1.0), center=(0.2, -0.1, 0.3))
    return vg, ct.cone(np.linspace(0, 2 * np.pi, 4, endpoint=False) + 0.1, (7, 9), 1.5, 40.0, 80.0)


def _rand(*shape: int, seed: int = 0, grad: bool = True, dtype: Any = F64) -> Any:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=dtype).requires_grad_(grad)


# ---- values ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["parallel2d", "fan_curved", "cone_flat", "helix", "rays3d"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_values_match_the_projector(name: str, dtype: str) -> None:
    pg = GEOMETRIES[name]
    A = ct.Projector(volume_for(pg), pg, basis="linear", dtype=dtype)
    tdt = getattr(torch, dtype)
    x = _rand(2, 3, *A.domain_shape, grad=False, dtype=tdt)
    y = _rand(2, 3, *A.range_shape, seed=1, grad=False, dtype=tdt)
    Ax, ATy = ct.torch.project(x, A), ct.torch.backproject(y, A)
    assert Ax.shape == (2, 3, *A.range_shape) and Ax.dtype == tdt
    assert ATy.shape == (2, 3, *A.domain_shape) and ATy.dtype == tdt
    tol = 1e-6 if dtype == "float32" else 1e-12
    for i in range(2):
        for j in range(3):
            ref_a, ref_t = A(x[i, j].numpy()), A.T(y[i, j].numpy())
            assert np.abs(Ax[i, j].numpy() - ref_a).max() <= tol * np.abs(ref_a).max()
            assert np.abs(ATy[i, j].numpy() - ref_t).max() <= tol * np.abs(ref_t).max()


def test_adjoint_identity_through_torch() -> None:
    vg, pg = _cone()
    A = ct.Projector(vg, pg, basis="bspline2", dtype="float64")
    x, y = _rand(*A.domain_shape, grad=False), _rand(*A.range_shape, seed=1, grad=False)
    lhs = float((ct.torch.project(x, A) * y).sum())
    rhs = float((x * ct.torch.backproject(y, A)).sum())
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


def test_per_sample_geometry_equals_one_projector_per_sample() -> None:
    vg, pg = _fan()
    A = ct.Projector(vg, pg, basis="bspline2", dtype="float64")
    shifts = torch.tensor([0.0, 0.7, -1.3], dtype=F64)
    turns = torch.tensor([[0.01 * (b + 1) * (v - 2) for v in range(6)] for b in range(3)], dtype=F64)
    x = _rand(3, 2, *vg.shape, grad=False)
    y = ct.torch.project(x, A, det_shift_u=shifts, motion_rotation=turns, pixel_scale=1.05)
    assert y.shape == (3, 2, *pg.shape)
    for b in range(3):
        moved = pg.perturb(det_shift_u=float(shifts[b]), motion_rotation=turns[b].numpy(), pixel_scale=1.05)
        single = ct.Projector(vg, moved, basis="bspline2", dtype="float64")
        for c in range(2):
            np.testing.assert_allclose(y[b, c].numpy(), single(x[b, c].numpy()), rtol=1e-12, atol=1e-12)
    assert float((y[1] - y[0]).abs().max()) > 1e-3


def test_angle_offset_is_a_turn_of_the_scanner() -> None:
    """angle_offset a per view equals the nominal scan with angles + a (2D fan and 3D cone)."""
    for make in (_fan, _cone):
        vg, _ = make()
        angles = np.linspace(0, 2 * np.pi, 5, endpoint=False) + 0.2
        offset = np.array([0.02, -0.03, 0.05, 0.0, 0.01])
        if vg.ndim == 2:
            nominal, turned = (ct.fan(a, 20, 1.5, 40.0, 80.0) for a in (angles, angles + offset))
        else:
            nominal, turned = (ct.cone(a, (7, 9), 1.5, 40.0, 80.0) for a in (angles, angles + offset))
        A = ct.Projector(vg, nominal, basis="linear", dtype="float64")
        x = _rand(*vg.shape, grad=False)
        got = ct.torch.project(x, A, angle_offset=torch.tensor(offset, dtype=F64))
        ref = ct.Projector(vg, turned, basis="linear", dtype="float64")(x.numpy())
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["fan_flat", "cone_flat", "parallel2d"])
def test_vector_rows_as_geometry_tensors(name: str) -> None:
    """``vectors=`` (pg.to_vectors() rows, per view or per sample) replaces the geometry; gradients reach it."""
    pg = GEOMETRIES[name]
    assert isinstance(pg, ct.ProjectionGeometry)
    vg = volume_for(pg)
    A = ct.Projector(vg, pg, basis="bspline2", dtype="float64")
    x = _rand(2, *vg.shape, grad=False)
    rows = torch.from_numpy(pg.to_vectors())
    np.testing.assert_allclose(ct.torch.project(x, A, vectors=rows).numpy(), ct.torch.project(x, A).numpy(), rtol=0)
    per_sample = torch.stack([rows, rows + 0.3])
    got = ct.torch.project(x, A, vectors=per_sample, det_shift_u=0.2)
    for b in range(2):
        moved = ct.from_vectors(per_sample[b].numpy(), pg.det_shape, beam=pg.beam).perturb(det_shift_u=0.2)
        ref = ct.Projector(vg, moved, basis="bspline2", dtype="float64")(x[b].numpy())
        np.testing.assert_allclose(got[b].numpy(), ref, rtol=1e-12, atol=1e-12)
    _gradcheck(lambda v: ct.torch.project(x[0], A, vectors=v), (rows.clone().requires_grad_(),), fast=True)
    with pytest.raises(ValueError, match="vectors must have shape"):
        ct.torch.project(x, A, vectors=rows[0])


# ---- gradients ------------------------------------------------------------------------------------------------
def _gradcheck(fn: Any, inputs: tuple[Any, ...], fast: bool = False) -> None:
    """Finite differences against the backward pass: every Jacobian entry, or (``fast``) random projections."""
    # nondet_tol: multithreaded scatters of the adjoint may sum in another order (rounding-level differences)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=fast, nondet_tol=1e-10)


@pytest.mark.parametrize("make", slow_cases([_fan, _cone], {_fan}), ids=["fan2d", "cone3d"])
def test_gradcheck_volume_and_projections(make: Any) -> None:
    vg, pg = make()
    A = ct.Projector(vg, pg, basis="linear", dtype="float64")
    fast = vg.ndim == 3
    _gradcheck(lambda x: ct.torch.project(x, A), (_rand(2, *vg.shape),), fast)
    _gradcheck(lambda y: ct.torch.backproject(y, A), (_rand(*pg.shape),), fast)


@pytest.mark.slow
def test_gradcheck_geometry_scalar_per_view_and_vector() -> None:
    vg, pg = _fan()
    A = ct.Projector(vg, pg, basis="bspline2", dtype="float64")
    x = _rand(*vg.shape)
    shift = torch.tensor(0.4, dtype=F64, requires_grad=True)
    turn = torch.linspace(-0.02, 0.03, 6, dtype=F64).requires_grad_()
    motion = _rand(6, 2, seed=2)

    def fn(x: Any, shift: Any, turn: Any, motion: Any) -> Any:
        return ct.torch.project(x, A, det_shift_u=shift, motion_rotation=turn, motion_shift=motion)

    _gradcheck(fn, (x, shift, turn, motion), fast=True)
    _gradcheck(fn, (x.detach(), shift, turn, motion))
    y = _rand(*pg.shape, seed=3)
    _gradcheck(
        lambda y, shift, turn: ct.torch.backproject(y, A, det_shift_u=shift, angle_offset=turn), (y, shift, turn)
    )


@pytest.mark.slow
def test_gradcheck_geometry_3d_per_sample() -> None:
    vg, _ = _cone()
    pg = ct.cone(np.linspace(0, 2 * np.pi, 4, endpoint=False) + 0.1, (4, 5), 2.5, 40.0, 80.0)
    A = ct.Projector(vg, pg, basis="bspline2", dtype="float64")
    x = _rand(2, *vg.shape)
    roll = torch.tensor([0.01, -0.02], dtype=F64, requires_grad=True)  # per sample
    shift_v = torch.tensor([[0.1, -0.2, 0.3, 0.0], [0.2, 0.1, -0.1, 0.4]], dtype=F64, requires_grad=True)
    rotation = torch.tensor([0.01, 0.02, -0.03], dtype=F64, requires_grad=True)  # one 3-vector for all views

    def fn(x: Any, roll: Any, shift_v: Any, rotation: Any) -> Any:
        return ct.torch.project(x, A, det_roll=roll, det_shift_v=shift_v, motion_rotation=rotation)

    _gradcheck(fn, (x, roll, shift_v, rotation), fast=True)  # random projections of the Jacobian


def test_gradients_when_reused_and_with_views() -> None:
    """One layer twice in a graph, non-contiguous inputs and expanded gradients: exact against numpy A, A.T."""
    vg, pg = _fan()
    A = ct.Projector(vg, pg, basis="linear", dtype="float64")
    layer, back = ct.torch.Projection(A), ct.torch.BackProjection(A)
    base = _rand(vg.shape[1], vg.shape[0], grad=False)
    x1 = base.t().requires_grad_()  # a transposed view: not contiguous
    x2 = _rand(2, *vg.shape, seed=5)
    w = torch.from_numpy(np.random.default_rng(0).uniform(size=pg.shape))
    loss = (layer(x1) * w).sum() + layer(x2[1]).sum() + 0.5 * layer(back(layer(x2[0]))).square().sum()
    loss.backward()
    An, ATn = A, A.T
    ones = np.ones(pg.shape)
    np.testing.assert_allclose(x1.grad.numpy(), ATn(w.numpy()), rtol=1e-12, atol=1e-12)
    assert x2.grad is not None
    np.testing.assert_allclose(x2.grad[1].numpy(), ATn(ones), rtol=1e-12, atol=1e-12)
    z = An(ATn(An(x2[0].detach().numpy())))  # d/dx 0.5|A A^T A x|^2 = (A^T A)^T ... = A^T A A^T z
    np.testing.assert_allclose(x2.grad[0].numpy(), ATn(An(ATn(z))), rtol=1e-10, atol=1e-10)
    strided = _rand(*pg.shape[:1], 2 * pg.shape[1], grad=False)[:, ::2]  # a strided view of projections
    np.testing.assert_allclose(ct.torch.backproject(strided, A).numpy(), ATn(strided.numpy()), rtol=1e-12)


@pytest.mark.slow
def test_retain_graph_and_second_derivatives_of_the_volume() -> None:
    """Backward twice through one output, and Hessian-vector products of ||A x - b||^2 (= 2 A^T A v)."""
    vg, pg = _fan()
    A = ct.Projector(vg, pg, basis="linear", dtype="float64")
    x, b = _rand(*vg.shape), _rand(*pg.shape, seed=1, grad=False)
    y = ct.torch.project(x, A)
    first = torch.autograd.grad(y, x, torch.ones_like(y), retain_graph=True)[0]
    second = torch.autograd.grad(y, x, 2 * torch.ones_like(y))[0]
    np.testing.assert_allclose(second.numpy(), 2 * first.numpy(), rtol=1e-12)
    loss = (ct.torch.project(x, A) - b).square().sum()
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    v = _rand(*vg.shape, seed=2, grad=False)
    (hv,) = torch.autograd.grad(g, x, v)
    np.testing.assert_allclose(hv.numpy(), 2 * A.T(A(v.numpy())), rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradgradcheck(lambda x: ct.torch.project(x, A), (_rand(*vg.shape, seed=4),))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_forward_mode() -> None:
    """torch.autograd.forward_ad: JVPs of A w.r.t. volume and geometry, of A.T w.r.t. the projections."""
    import torch.autograd.forward_ad as fwd

    vg, pg = _fan()
    A = ct.Projector(vg, pg, basis="bspline2", dtype="float64")
    x, shift, turn = _rand(2, *vg.shape), torch.tensor(0.3, dtype=F64, requires_grad=True), _rand(6, seed=1) * 0.01
    fn = lambda x, shift, turn: ct.torch.project(x, A, det_shift_u=shift, angle_offset=turn)  # noqa: E731
    assert torch.autograd.gradcheck(
        fn, (x, shift, turn), check_forward_ad=True, fast_mode=True, nondet_tol=1e-10, atol=1e-6, rtol=1e-5
    )
    y = _rand(*pg.shape, seed=2)
    assert torch.autograd.gradcheck(
        lambda y: ct.torch.backproject(y, A), (y,), check_forward_ad=True, check_backward_ad=False, nondet_tol=1e-10
    )
    with fwd.dual_level(), pytest.raises(NotImplementedError, match=r"forward-mode derivatives of A\.T"):
        ct.torch.backproject(y.detach(), A, det_shift_u=fwd.make_dual(shift.detach(), torch.ones((), dtype=F64)))
    _, tangent = torch.func.jvp(lambda x: ct.torch.project(x, A), (x.detach(),), (torch.ones_like(x),))
    np.testing.assert_allclose(tangent.numpy(), A(np.ones((2, *vg.shape))), rtol=1e-12, atol=1e-12)


def test_geometry_gradient_matches_finite_differences_float32() -> None:
    """float32 operators take float32 (or float64) geometry tensors; gradients match central differences."""
    vg, pg = _fan()
    A = ct.Projector(vg, pg, basis="bspline2", dtype="float32")
    x = torch.from_numpy(ct.phantoms.shepp_logan(vg).astype(np.float32))
    w = torch.from_numpy(np.random.default_rng(1).uniform(size=pg.shape).astype(np.float32))
    shift = torch.tensor(0.3, requires_grad=True)
    (ct.torch.project(x, A, det_shift_u=shift) * w).sum().backward()
    assert shift.grad is not None and shift.grad.dtype == torch.float32
    ref = ct.Projector(vg, pg, basis="bspline2", dtype="float64")
    xw = x.double().numpy()

    def value(s: float) -> float:
        moved = ct.Projector(vg, pg.perturb(det_shift_u=s), basis="bspline2", dtype="float64")
        return float(np.sum(moved(xw) * w.double().numpy()))

    fd = (value(0.3 + 1e-4) - value(0.3 - 1e-4)) / 2e-4
    assert ref is not None and abs(float(shift.grad) - fd) <= 1e-4 * abs(fd)


# ---- modules --------------------------------------------------------------------------------------------------
def test_projection_module_learns_a_detector_shift() -> None:
    """A learnable geometry layer: L-BFGS recovers det_shift_u = 1.3 mm from projections of a known object."""
    vg, pg = _fan()
    A = ct.Projector(vg, pg, basis="bspline2", dtype="float64")
    x = torch.from_numpy(ct.phantoms.shepp_logan(vg, supersample=2)).double()
    target = ct.torch.project(x, A, det_shift_u=1.3)
    layer = ct.torch.Projection(A, geometry={"det_shift_u": 0.0}, learnable=True)
    assert [n for n, _ in layer.named_parameters()] == ["det_shift_u"]
    opt = torch.optim.LBFGS(layer.parameters(), lr=1.0, max_iter=30, line_search_fn="strong_wolfe")

    def closure() -> Any:
        opt.zero_grad()
        loss = (layer(x) - target).square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    assert abs(float(layer.det_shift_u.detach()) - 1.3) < 1e-4
    frozen = ct.torch.Projection(A, geometry={"det_shift_u": 1.3})
    assert not list(frozen.parameters()) and "det_shift_u" in dict(frozen.named_buffers())
    np.testing.assert_allclose(frozen(x).numpy(), target.numpy(), rtol=1e-12)


# ---- FBP ------------------------------------------------------------------------------------------------------
FBP_CASES = {
    "parallel2d": (ct.VolumeGeometry((40, 40), voxel_size=0.5), ct.parallel(np.linspace(0, np.pi, 60, False), 64, 0.5)),
    "fan_flat": (
        ct.VolumeGeometry((40, 40), voxel_size=0.5),
        ct.fan(np.linspace(0, 2 * np.pi, 60, False), 80, 0.6, 60.0, 90.0),
    ),
    "fan_curved_short": (
        ct.VolumeGeometry((40, 40), voxel_size=0.5),
        ct.fan(np.linspace(0, np.pi + 0.8, 60), 80, 0.6, 60.0, 90.0, curved=True),
    ),
    "cone": (ct.VolumeGeometry((8, 24, 24)), ct.cone(np.linspace(0, 2 * np.pi, 40, False), (12, 36), 1.5, 80.0, 120.0)),
}


@pytest.mark.parametrize("name", sorted(FBP_CASES))
def test_fbp_equals_drct_fbp(name: str) -> None:
    """ct.torch.FBP(A)(y) is ct.fbp(A, y) (amplitude included), sample by sample of a batch, for any filter."""
    from drct.recon import fbp

    vg, pg = FBP_CASES[name]
    A = ct.Projector(vg, pg, basis="voxel")
    x = ct.phantoms.shepp_logan(vg)
    y = torch.from_numpy(np.stack([A(x), 0.5 * A(x[..., ::-1].copy())]))
    for filt, cutoff in (("ramp", 1.0), ("hann", 0.8)):
        got = ct.torch.FBP(A, filter=filt, cutoff=cutoff)(y)
        assert got.shape == (2, *vg.shape)
        for i in range(2):
            ref = fbp(A, y[i].numpy(), filter="ram-lak" if filt == "ramp" else filt, cutoff=cutoff, progress=False)
            assert np.abs(got[i].numpy() - ref).max() <= 2e-6 * np.abs(ref).max()
    mean = float(got[0][tuple(slice(n // 2 - 2, n // 2 + 2) for n in vg.shape)].mean())
    assert mean > 0  # the Shepp-Logan interior, not an empty image


def test_fbp_with_geometry_tensors() -> None:
    """2D parallel FBP takes geometry tensors (per sample here): equal to ct.fbp on each moved geometry."""
    from drct.recon import fbp

    vg, pg = FBP_CASES["parallel2d"]
    A = ct.Projector(vg, pg, basis="linear")
    y = torch.from_numpy(np.stack([A(ct.phantoms.shepp_logan(vg))] * 2))
    shifts = torch.tensor([0.0, 1.25])
    got = ct.torch.FBP(A)(y, det_shift_u=shifts)
    for i in range(2):
        moved = ct.Projector(vg, pg.perturb(det_shift_u=float(shifts[i])), basis="linear")
        ref = fbp(moved, y[i].numpy(), progress=False)
        assert np.abs(got[i].numpy() - ref).max() <= 2e-6 * np.abs(ref).max()
    assert float((got[1] - got[0]).abs().max()) > 1e-3
    fan = ct.Projector(*FBP_CASES["fan_flat"], basis="linear")
    with pytest.raises(ValueError, match="2D parallel beams only"):
        ct.torch.FBP(fan)(torch.zeros(fan.range_shape), det_shift_u=0.5)


@pytest.mark.parametrize("beam", ["parallel", "fan"])
def test_fbp_gradcheck_data_and_filter(beam: str) -> None:
    """Gradients w.r.t. the projections and the learnable frequency response (2D parallel: the batched
    A.T path; fan: drct.recon's view-by-view backprojection through Dr.Jit's AD)."""
    vg = ct.VolumeGeometry((8, 8), voxel_size=1.0)
    angles = np.linspace(0, np.pi if beam == "parallel" else 2 * np.pi, 5, endpoint=False)
    pg = ct.parallel(angles, 10) if beam == "parallel" else ct.fan(angles, 10, 1.2, 30.0, 50.0)
    A = ct.Projector(vg, pg, basis="linear", dtype="float64")
    for learnable in ("gain", "response"):
        layer = ct.torch.FBP(A, learnable=learnable)
        start = getattr(layer, learnable).detach().clone().requires_grad_()

        def fn(y: Any, h: Any, layer: Any = layer, name: str = learnable) -> Any:
            return torch.func.functional_call(layer, {name: h}, (y,))

        _gradcheck(fn, (_rand(2, *pg.shape), start), fast=True)


def _pairs(n: int, seed: int, vg: ct.VolumeGeometry, pg: ct.ProjectionGeometry, noise: float) -> tuple[Any, Any]:
    """Phantoms (voxel averages) and their exact analytic sinograms plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(n):
        items = ct.phantoms.random_ellipses(rng, 0.5 * vg.shape[0] * vg.voxel_size[0])
        xs.append(ct.phantoms.rasterize(items, vg, supersample=2))
        y = ct.phantoms.project_ellipsoids(items, pg)
        ys.append(y + rng.normal(scale=noise, size=y.shape))
    return torch.tensor(np.array(xs), dtype=torch.float32), torch.tensor(np.array(ys), dtype=torch.float32)


def _psnr(x: Any, ref: Any) -> float:
    mse = (x - ref).square().mean(dim=(-2, -1))
    return float((10 * torch.log10(ref.amax(dim=(-2, -1)) ** 2 / mse)).mean())


@pytest.mark.slow
def test_learned_fbp_filter_beats_the_ramp_on_held_out_data() -> None:
    """PYRO-NN's baseline: train the FBP filter on noisy sinograms of random ellipse phantoms (exact analytic
    projections + Gaussian noise); on held-out phantoms it must beat the ramp filter clearly."""
    torch.manual_seed(0)
    vg = ct.VolumeGeometry((48, 48), voxel_size=1.0)
    pg = ct.parallel(np.linspace(0, np.pi, 60, endpoint=False), 72, 1.0)
    A = ct.Projector(vg, pg, basis="voxel")
    x_train, y_train = _pairs(16, 0, vg, pg, noise=0.05)
    x_test, y_test = _pairs(8, 1, vg, pg, noise=0.05)
    ramp, learned = ct.torch.FBP(A), ct.torch.FBP(A, learnable=True)
    assert [name for name, _ in learned.named_parameters()] == ["gain"]
    opt = torch.optim.Adam(learned.parameters(), lr=0.1)
    for _ in range(25):
        pick = torch.randperm(16)[:8]
        opt.zero_grad()
        loss = (learned(y_train[pick]) - x_train[pick]).square().mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        before, after = _psnr(ramp(y_test), x_test), _psnr(learned(y_test), x_test)
    print(f"held-out PSNR: ramp filter {before:.2f} dB, learned filter {after:.2f} dB")
    assert after > before + 5.0


# ---- errors ---------------------------------------------------------------------------------------------------
def test_clear_errors() -> None:
    vg, pg = _fan()
    A = ct.Projector(vg, pg, basis="linear")  # float32
    x = torch.zeros(vg.shape)
    with pytest.raises(TypeError, match="float32"):
        ct.torch.project(x.double(), A)
    with pytest.raises(TypeError, match=r"torch\.int32"):
        ct.torch.project(x.int(), A)
    with pytest.raises(TypeError, match=r"torch\.float16"):
        ct.torch.project(x.half(), A)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        ct.torch.project(x.numpy(), A)
    with pytest.raises(TypeError, match=r"drct\.Projector"):
        ct.torch.project(x, "A")
    with pytest.raises(ValueError, match=r"\(\*batch, 12, 14\)"):
        ct.torch.project(torch.zeros(14, 12), A)
    with pytest.raises(ValueError, match=r"\(\*batch, 6, 20\)"):
        ct.torch.backproject(torch.zeros(6, 21), A)
    with pytest.raises(ValueError, match="device 'meta'"):
        ct.torch.project(torch.zeros(vg.shape, device="meta"), A)
    with pytest.raises(ValueError, match="device 'meta'"):
        ct.torch.project(x, A, det_shift_u=torch.zeros((), device="meta"))
    with pytest.raises(ValueError, match="unknown geometry parameter"):
        ct.torch.project(x, A, det_shift=torch.zeros(()))
    with pytest.raises(ValueError, match=r"det_shift_u has shape \(5,\)"):
        ct.torch.project(x, A, det_shift_u=torch.zeros(5))
    with pytest.raises(ValueError, match="leading batch axis"):
        ct.torch.project(x, A, det_shift_u=torch.zeros(3, 6))
    with pytest.raises(ValueError, match="2 components"):
        ct.torch.project(x, A, motion_shift=torch.zeros(6))
    with pytest.raises(ValueError, match="only exist for 3D"):
        ct.torch.project(x, A, det_roll=0.1)
    with pytest.raises(ValueError, match="not both"):
        ct.torch.project(x, A, angle_offset=0.1, motion_rotation=0.1)
    rays = ct.Projector(volume_for(GEOMETRIES["rays2d"]), GEOMETRIES["rays2d"])
    with pytest.raises(ValueError, match="ray list"):
        ct.torch.project(torch.zeros(rays.domain_shape), rays, det_shift_u=0.1)
    with pytest.raises(ValueError, match="unknown geometry parameter"):
        ct.torch.Projection(A, geometry={"shift": 0.0})
    turn = torch.zeros((), dtype=F64, requires_grad=True)
    A64 = ct.Projector(vg, pg, basis="linear", dtype="float64")
    y = ct.torch.project(torch.ones(vg.shape, dtype=F64, requires_grad=True), A64, angle_offset=turn)
    with ct.deterministic():  # the per-view sums scatter: bit-equal only in a fixed order
        (first,) = torch.autograd.grad(y.sum(), turn, create_graph=True)  # first order under create_graph is exact
        assert float(first.detach()) == float(torch.autograd.grad(y.sum(), turn, retain_graph=True)[0])
    with pytest.raises(RuntimeError, match="second derivatives through geometry"):
        torch.autograd.grad(first, turn)


@requires_cuda
@pytest.mark.cuda
def test_cuda_tensors_run_on_the_cuda_backend() -> None:
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    vg, pg = _fan()
    cpu = ct.Projector(vg, pg, basis="bspline2", dtype="float64", backend="llvm")
    gpu = ct.Projector(vg, pg, basis="bspline2", dtype="float64", backend="cuda")
    x = _rand(2, *vg.shape)
    xg = x.detach().cuda().requires_grad_()
    shift = torch.tensor(0.5, dtype=F64, device="cuda", requires_grad=True)
    y = ct.torch.project(xg, gpu, det_shift_u=shift)
    assert y.device.type == "cuda"
    y.square().sum().backward()
    ref_shift = torch.tensor(0.5, dtype=F64, requires_grad=True)
    ct.torch.project(x, cpu, det_shift_u=ref_shift).square().sum().backward()
    assert xg.grad is not None and x.grad is not None and shift.grad is not None and ref_shift.grad is not None
    np.testing.assert_allclose(
        y.detach().cpu().numpy(), ct.torch.project(x.detach(), cpu, det_shift_u=0.5).numpy(), rtol=1e-10
    )
    np.testing.assert_allclose(xg.grad.cpu().numpy(), x.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(float(shift.grad), float(ref_shift.grad), rtol=1e-8)
    with pytest.raises(ValueError, match="device 'cpu'"):
        ct.torch.project(x.detach(), gpu)
