"""Iterative solvers (CGLS, SIRT, OS-SART, FISTA-TV, MLEM, OSEM): convergence properties, options, array kinds,
differentiability of unrolled solvers; and the ``drct reconstruct`` command."""

from __future__ import annotations

import itertools

import drjit as dr
import numpy as np
import pytest

import drct as ct
from drct.backend import drjit_module
from drct.cli import main


def _psnr(rec: np.ndarray, truth: np.ndarray) -> float:
    return float(20 * np.log10(truth.max() / np.sqrt(np.mean((rec - truth) ** 2))))


def _small(
    dtype: str = "float64", views: int = 30, n: int = 8, cols: int = 24, spacing: float = 0.5
) -> tuple[ct.Projector, np.ndarray]:
    """A well-conditioned little problem (SIRT's normalised matrix has σ_min ≈ 0.17)."""
    vg = ct.VolumeGeometry((n, n))
    pg = ct.parallel(np.linspace(0, np.pi, views, endpoint=False), cols, spacing)
    A = ct.Projector(vg, pg, basis="voxel", dtype=dtype)
    x = np.random.default_rng(0).random(vg.shape)
    return A, x


def _matrix(A: ct.Projector) -> np.ndarray:
    cols = []
    for k in range(A.vg.size):
        e = np.zeros(A.vg.size)
        e[k] = 1
        cols.append(A(e.reshape(A.domain_shape)).reshape(-1))
    return np.stack(cols, axis=1)


def test_cgls_residual_decreases_monotonically():
    vg = ct.VolumeGeometry((48, 48))
    pg = ct.parallel(np.linspace(0, np.pi, 40, endpoint=False), 64)
    A = ct.Projector(vg, pg, basis="linear")
    rng = np.random.default_rng(1)
    y = A(ct.phantoms.shepp_logan(vg))
    y = (y + rng.normal(0, 0.01 * y.max(), y.shape)).astype(np.float32)
    residuals: list[float] = []
    ct.recon.cgls(A, y, niter=25, callback=lambda k, x, r: residuals.append(r), progress=False)
    assert len(residuals) == 25
    assert all(b <= a * (1 + 1e-6) for a, b in itertools.pairwise(residuals))
    assert residuals[-1] < 0.1 * float(np.linalg.norm(y))


def test_cgls_matches_least_squares():
    A, x = _small(views=12, cols=10, spacing=1.0)
    M = _matrix(A)
    y = (M @ x.reshape(-1) + np.random.default_rng(2).normal(0, 0.05, M.shape[0])).reshape(A.range_shape)
    exact = np.linalg.lstsq(M, y.reshape(-1), rcond=None)[0]
    rec = ct.recon.cgls(A, y, niter=64, progress=False)
    np.testing.assert_allclose(rec.reshape(-1), exact, atol=1e-6 * np.abs(exact).max())


def test_sirt_converges_to_least_squares_solution():
    """Consistent data, full column rank: SIRT's limit is the least-squares (here exact) solution."""
    A, x = _small()
    M = _matrix(A)
    assert np.linalg.matrix_rank(M) == A.vg.size
    y = A(x)
    exact = np.linalg.lstsq(M, y.reshape(-1), rcond=None)[0].reshape(A.domain_shape)
    errors: list[float] = []
    rec = ct.recon.sirt(
        A,
        y,
        niter=300,
        relaxation=1.9,
        progress=False,
        callback=lambda k, x, r: errors.append(float(np.linalg.norm(x - exact))),
    )
    assert np.linalg.norm(rec - exact) < 1e-5 * np.linalg.norm(exact)
    assert errors[-1] < 1e-3 * errors[0]
    np.testing.assert_allclose(exact, x, atol=1e-9)


def test_os_sart_reaches_the_same_solution_faster():
    A, x = _small()
    y = A(x)
    sirt = ct.recon.sirt(A, y, niter=10, progress=False)
    os = ct.recon.os_sart(A, y, niter=10, subsets=5, progress=False)
    assert np.linalg.norm(os - x) < 0.5 * np.linalg.norm(sirt - x)
    os_long = ct.recon.os_sart(A, y, niter=150, subsets=5, progress=False)
    assert np.linalg.norm(os_long - x) < 1e-3 * np.linalg.norm(x)


@pytest.mark.slow
def test_tv_beats_sirt_by_2db_on_60_noisy_views():
    vg = ct.VolumeGeometry((64, 64))
    pg = ct.parallel(np.linspace(0, np.pi, 60, endpoint=False), 96)
    A = ct.Projector(vg, pg, basis="voxel")
    truth = ct.phantoms.shepp_logan(vg)
    y0 = A(truth)
    y = (y0 + np.random.default_rng(3).normal(0, 0.02 * y0.max(), y0.shape)).astype(np.float32)
    sirt_psnr: list[float] = []
    ct.recon.sirt(A, y, niter=100, callback=lambda k, x, r: sirt_psnr.append(_psnr(x, truth)), progress=False)
    best_sirt = max(sirt_psnr)  # SIRT at its best iteration (early stopping with the truth known)
    tv = ct.recon.fista_tv(A, y, niter=60, lam=1.0, progress=False)
    print(
        f"60 noisy views: SIRT best {best_sirt:.2f} dB (iteration {int(np.argmax(sirt_psnr)) + 1}), "
        f"FISTA-TV {_psnr(tv, truth):.2f} dB"
    )
    assert _psnr(tv, truth) >= best_sirt + 2.0
    assert tv.min() >= 0


@pytest.mark.slow
def test_osem_matches_mlem_fixed_point():
    vg = ct.VolumeGeometry((16, 16), voxel_size=2.0)
    pg = ct.parallel(np.linspace(0, np.pi, 60, endpoint=False), 24, 1.5)
    A = ct.Projector(vg, pg, basis="voxel", dtype="float64")
    truth = ct.phantoms.shepp_logan(vg) * 20 + 2
    mean = A(truth)

    def loglik(x: np.ndarray, y: np.ndarray) -> float:
        ax = A(x)
        return float(np.sum(y * np.log(np.maximum(ax, 1e-300)) - ax))

    # Poisson model, noise-free expected counts: both converge to the same fixed point (the truth)
    mlem = ct.recon.mlem(A, mean, niter=800, progress=False)
    osem = ct.recon.osem(A, mean, niter=60, subsets=6, progress=False)
    assert np.linalg.norm(osem - mlem) < 2e-3 * np.linalg.norm(mlem)
    step = ct.recon.mlem(A, mean, x0=osem, niter=1, progress=False)
    assert np.linalg.norm(step - osem) < 1e-4 * np.linalg.norm(osem)  # a fixed point of the MLEM map
    # Poisson counts: OSEM ends next to the ML point (its limit cycle), at the same likelihood
    counts = np.random.default_rng(4).poisson(mean).astype(np.float64)
    mlem = ct.recon.mlem(A, counts, niter=800, progress=False)
    osem = ct.recon.osem(A, counts, niter=60, subsets=6, progress=False)
    assert np.linalg.norm(osem - mlem) < 0.05 * np.linalg.norm(mlem)
    assert abs(loglik(osem, counts) - loglik(mlem, counts)) < 1e-4 * abs(loglik(mlem, counts))
    assert osem.min() >= 0 and mlem.min() >= 0


@pytest.mark.slow
def test_masks_nonnegativity_callbacks_and_kinds():
    torch = pytest.importorskip("torch")
    A, x = _small("float32")
    y = A((x - 0.3).astype(np.float32))
    mask = np.zeros(A.domain_shape, bool)
    mask[2:6, 2:6] = True
    for solver in (ct.recon.sirt, ct.recon.os_sart, ct.recon.fista_tv):
        rec = solver(A, y, niter=5, nonneg=True, mask=mask, progress=False)
        assert rec.min() >= 0 and np.all(rec[~mask] == 0), solver.__name__
    for solver in (ct.recon.cgls, ct.recon.mlem, ct.recon.osem):
        rec = solver(A, np.abs(y), niter=3, mask=mask, progress=False)
        assert np.all(rec[~mask] == 0), solver.__name__
    seen: list[int] = []
    ct.recon.sirt(A, y, niter=50, callback=lambda k, x, r: seen.append(k) or k == 3, progress=False)
    assert seen == [1, 2, 3]
    out = ct.recon.sirt(A, torch.from_numpy(y), niter=3, progress=False)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), ct.recon.sirt(A, y, niter=3, progress=False), rtol=1e-5, atol=1e-6)
    got: list[type] = []
    ct.recon.cgls(A, torch.from_numpy(y), niter=2, callback=lambda k, x, r: got.append(type(x)), progress=False)
    assert got == [torch.Tensor, torch.Tensor]


@pytest.mark.slow
def test_unrolled_solvers_are_differentiable():
    TensorXf64 = drjit_module().TensorXf64

    A, x = _small()
    rng = np.random.default_rng(5)
    y_np = A(x)
    w = rng.standard_normal(A.domain_shape)
    v = rng.standard_normal(A.range_shape)
    for solver, kwargs in (
        (ct.recon.sirt, {}),
        (ct.recon.cgls, {}),
        (ct.recon.fista_tv, {"lam": 0.05, "tv_iterations": 3}),
    ):
        y = TensorXf64(y_np)
        dr.enable_grad(y)
        rec = solver(A, y, niter=4, progress=False, **kwargs)
        loss = dr.sum(rec.array * TensorXf64(w).array)
        dr.backward(loss)
        grad = dr.grad(y).numpy()
        eps = 1e-6

        def value(shift: float, solver=solver, kwargs=kwargs) -> float:
            out = solver(A, y_np + shift * v, niter=4, progress=False, **kwargs)
            return float(np.sum(out * w))

        fd = (value(eps) - value(-eps)) / (2 * eps)
        assert float(np.sum(grad * v)) == pytest.approx(fd, rel=1e-5, abs=1e-8), solver.__name__


def test_solver_errors_are_clear():
    A, x = _small("float32")
    y = A(x.astype(np.float32))
    with pytest.raises(ValueError, match="niter"):
        ct.recon.sirt(A, y, niter=-1)
    with pytest.raises(ValueError, match="relaxation"):
        ct.recon.sirt(A, y, relaxation=2.5)
    with pytest.raises(ValueError, match="subsets"):
        ct.recon.osem(A, y, subsets=999)
    with pytest.raises(ValueError, match="non-negative"):
        ct.recon.mlem(A, y - 10)
    with pytest.raises(ValueError, match="shape"):
        ct.recon.cgls(A, y[:3])
    with pytest.raises(TypeError, match="Projector"):
        ct.recon.sirt("A", y)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- CLI
@pytest.mark.slow
def test_cli_reconstruct(tmp_path, capsys):
    tifffile = pytest.importorskip("tifffile")
    vg = ct.VolumeGeometry((8, 24, 24), voxel_size=1.0)
    pg = ct.cone(np.linspace(0, 2 * np.pi, 40, endpoint=False), (12, 40), 1.2, 80.0, 160.0)
    y = ct.phantoms.project_ellipsoids([ct.phantoms.Ellipsoid((0, 0, 0), (8.0, 8.0, 3.0), 0.04)], pg)
    np.save(tmp_path / "y.npy", y.astype(np.float32))
    tifffile.imwrite(tmp_path / "y_astra.tif", np.transpose(y, (1, 0, 2)).astype(np.float32))
    ct.save_geometry(tmp_path / "g.json", pg, vg)
    out = tmp_path / "out" / "fdk.tif"
    assert (
        main(
            [
                "reconstruct",
                str(tmp_path / "y.npy"),
                "--geometry",
                str(tmp_path / "g.json"),
                "--method",
                "fdk",
                "-o",
                str(out),
                "--basis",
                "voxel",
            ]
        )
        == 0
    )
    vol = tifffile.imread(out)
    assert vol.shape == vg.shape and (tmp_path / "out" / "fdk.png").stat().st_size > 1000
    assert float(vol[3:5, 10:14, 10:14].mean()) == pytest.approx(0.04, rel=0.02)
    # never overwrites without --force
    args = [
        "reconstruct",
        str(tmp_path / "y_astra.tif"),
        "--geometry",
        str(tmp_path / "g.json"),
        "--layout",
        "astra",
        "--method",
        "sirt",
        "--niter",
        "3",
        "-o",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    # plain ASTRA vector rows need the volume on the command line
    np.savetxt(tmp_path / "v.txt", pg.to_vectors())
    base = [
        "reconstruct",
        str(tmp_path / "y.npy"),
        "--geometry",
        str(tmp_path / "v.txt"),
        "--beam",
        "cone",
        "--det-shape",
        "12",
        "40",
        "-o",
        str(tmp_path / "v.tif"),
        "--method",
        "osem",
        "--niter",
        "2",
    ]
    assert main(base) == 2
    assert "--shape" in capsys.readouterr().err
    assert main([*base, "--shape", "8", "24", "24", "--subsets", "4", "--no-progress"]) == 0
    # wrong shapes and options are one-line errors
    assert (
        main(
            [
                "reconstruct",
                str(tmp_path / "y.npy"),
                "--geometry",
                str(tmp_path / "g.json"),
                "-o",
                str(tmp_path / "x.png"),
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "reconstruct",
                str(tmp_path / "y_astra.tif"),
                "--geometry",
                str(tmp_path / "g.json"),
                "-o",
                str(tmp_path / "x.tif"),
            ]
        )
        == 2
    )
    assert "--layout astra" in capsys.readouterr().err
    assert (
        main(
            [
                "reconstruct",
                str(tmp_path / "y.npy"),
                "--geometry",
                str(tmp_path / "g.json"),
                "--method",
                "cgls",
                "--lam",
                "1",
                "-o",
                str(tmp_path / "x.tif"),
            ]
        )
        == 2
    )


def test_torch_autograd_through_solvers_and_fbp():
    torch = pytest.importorskip("torch")
    A, x = _small("float32")
    y_np = A(x.astype(np.float32))
    w = torch.from_numpy(np.random.default_rng(6).standard_normal(A.domain_shape).astype(np.float32))
    seen: list[type] = []
    for run in (
        lambda yy: ct.recon.sirt(A, yy, None, 3, lambda k, x, r: seen.append(type(x)), False),
        lambda yy: ct.recon.cgls(A, yy, niter=3, progress=False),
        lambda yy: ct.fbp(A, yy),
    ):
        # deterministic sums: the two paths run the same Dr.Jit code, and the comparison must not depend on the
        # order in which threads added partial sums (it failed 1 element in 720 at 6e-5 under load)
        with ct.deterministic():
            y = torch.from_numpy(y_np.copy()).requires_grad_(True)
            out = run(y)
            assert isinstance(out, torch.Tensor) and out.requires_grad
            (out * w).sum().backward()
            assert y.grad is not None
            # the same gradient through Dr.Jit AD
            yd = drjit_module().TensorXf(y_np)
            dr.enable_grad(yd)
            ref = run(yd)
            dr.backward(dr.sum(ref.array * drjit_module().TensorXf(w.numpy()).array))
        np.testing.assert_allclose(y.grad.numpy(), dr.grad(yd).numpy(), rtol=1e-5, atol=1e-7)
    assert seen[:3] == [torch.Tensor] * 3  # callbacks of the torch run see torch tensors


@pytest.mark.slow
def test_torch_backward_twice_through_the_same_output():
    """A second backward through one output (retain_graph, as gradcheck does) gives the same gradients again."""
    torch = pytest.importorskip("torch")
    A, x = _small("float64")
    y = torch.from_numpy(A(x)).requires_grad_(True)
    w = torch.from_numpy(np.random.default_rng(7).standard_normal(A.domain_shape))
    for run in (
        lambda yy: ct.fbp(A, yy),
        lambda yy: ct.recon.sirt(A, yy, niter=3, progress=False),
        lambda yy: ct.recon.cgls(A, yy, niter=3, progress=False),
    ):
        out = run(y)
        (first,) = torch.autograd.grad((out * w).sum(), y, retain_graph=True)
        (second,) = torch.autograd.grad((2 * out * w).sum(), y)
        assert float(first.abs().max()) > 0
        torch.testing.assert_close(second, 2 * first, rtol=1e-10, atol=1e-12)
