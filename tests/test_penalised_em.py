"""BSREM with the relative-difference prior (drct/recon/penalised.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import drct as ct
from drct.backend import types
from drct.emission import SPECTProjector
from drct.errors import NonFiniteError


def rdp_reference(x: np.ndarray, spacing: tuple[float, ...], gamma: float, face: bool) -> float:
    """The prior straight from its definition: every voxel j, every neighbour k of j (both ends of each pair)."""
    total = 0.0
    side = min(spacing)
    for j in itertools.product(*map(range, x.shape)):
        for off in itertools.product((-1, 0, 1), repeat=x.ndim):
            if not any(off) or (face and sum(map(abs, off)) != 1):
                continue
            k = tuple(a + o for a, o in zip(j, off, strict=True))
            if not all(0 <= a < n for a, n in zip(k, x.shape, strict=True)):
                continue
            w = side / np.linalg.norm(np.multiply(off, spacing))
            a, b = x[j], x[k]
            total += w * (a - b) ** 2 / (a + b + gamma * abs(a - b))
    return total


CASES = [((5, 6), (1.0, 1.0), "full"), ((5, 6), (2.0, 1.0), "face"), ((3, 4, 5), (2.0, 1.0, 1.5), "full")]


@pytest.mark.parametrize(("shape", "spacing", "neighbourhood"), CASES)
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_prior_value_matches_its_definition(shape, spacing, neighbourhood, gamma) -> None:
    x = np.random.default_rng(0).uniform(0.1, 2.0, shape)
    R = ct.recon.RelativeDifferencePrior(
        ct.VolumeGeometry(shape, voxel_size=spacing), gamma, neighbourhood, types("float64")
    )
    expected = rdp_reference(x, spacing, gamma, neighbourhood == "face")
    assert R.value(x) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("shape", "spacing", "neighbourhood"), CASES)
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_prior_gradient_matches_finite_differences(shape, spacing, neighbourhood, gamma) -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 2.0, shape)
    x.flat[0] = x.flat[1]  # a zero difference: |d| is not differentiable there, but the term is flat to 2nd order
    R = ct.recon.RelativeDifferencePrior(
        ct.VolumeGeometry(shape, voxel_size=spacing), gamma, neighbourhood, types("float64")
    )
    grad = R.gradient(x)
    h = 1e-6
    fd = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = h
        fd.flat[i] = (R.value(x + e) - R.value(x - e)) / (2 * h)
    assert grad.shape == shape
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7)


def test_prior_of_zeros_is_zero_with_zero_gradient() -> None:
    R = ct.recon.RelativeDifferencePrior(ct.VolumeGeometry((4, 4)), 2.0, types=types("float64"))
    x = np.zeros((4, 4))
    x[1, 1] = 1.0
    assert R.value(np.zeros((4, 4))) == 0.0
    assert np.all(R.gradient(np.zeros((4, 4))) == 0.0)
    assert np.isfinite(R.gradient(x)).all() and R.gradient(x)[1, 1] > 0


def parallel_problem(shape=(24, 24), views=24):
    vg = ct.VolumeGeometry(shape)
    A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, views, endpoint=False), shape[-1] + 4), basis="voxel")
    x = 20 * ct.phantoms.shepp_logan(vg)
    y = np.random.default_rng(0).poisson(A(x)).astype(np.float32)
    return A, x, y


def test_beta_zero_without_relaxation_is_osem() -> None:
    A, _, y = parallel_problem()
    s = np.full(y.shape, 0.5, np.float32)
    osem = ct.recon.osem(A, y, niter=4, subsets=4, additive=s, progress=False)
    bsrem = ct.recon.bsrem(A, y, niter=4, subsets=4, additive=s, beta=0.0, relaxation=0.0, progress=False)
    np.testing.assert_allclose(bsrem, osem, rtol=2e-4, atol=2e-4 * osem.max())


def spect_problem():
    vg = ct.VolumeGeometry((2, 32, 32), voxel_size=4.0)
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    A = SPECTProjector(vg, ct.spect(angles, 120.0, (2, 36), (4.0, 4.0)), collimator=None)
    _, yy, xx = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in vg.shape), indexing="ij")
    body = yy**2 + xx**2 < 12**2
    x = np.where(body, 1.0, 0.0).astype(np.float32)
    x[(yy - 4) ** 2 + (xx + 3) ** 2 < 3**2] = 4.0  # a hot lesion; the rest of the disc is the uniform region
    y = np.random.default_rng(3).poisson(A(x)).astype(np.float32)
    uniform = body & ((yy + 4) ** 2 + (xx - 2) ** 2 < 5**2)
    return A, x, y, uniform


def objective(A, x, y, R, beta) -> float:
    return ct.pet.log_likelihood(A, x, y) - beta * R.value(x)


def test_penalised_result_is_less_noisy_and_its_objective_increases() -> None:
    A, _, y, uniform = spect_problem()
    beta = 0.5
    R = ct.recon.RelativeDifferencePrior(A.vg, 2.0)
    values: list[float] = []
    rec = ct.recon.bsrem(
        A,
        y,
        niter=8,
        subsets=4,
        beta=beta,
        progress=False,
        callback=lambda k, xk, r: values.append(objective(A, xk, y, R, beta)),
    )
    osem = ct.recon.osem(A, y, niter=8, subsets=4, progress=False)
    assert rec[uniform].std() < 0.7 * osem[uniform].std()
    assert abs(rec[uniform].mean() - 1.0) < 0.1  # the uniform region's level is kept (bias)
    assert values[-1] > values[0]
    assert all(b > a for a, b in itertools.pairwise(values))  # measured: it ascends at every iteration here
    assert objective(A, rec, y, R, beta) > objective(A, osem, y, R, beta)


def test_pet_projector() -> None:
    sc = ct.pet.scanner(rings=2, crystals_per_ring=32, radius=60.0, crystal_size=(4.0, 4.0))
    vg = ct.VolumeGeometry((2, 16, 16), voxel_size=4.0)
    P = ct.pet.PETProjector(vg, ct.pet.sinogram(sc))
    x = np.zeros(vg.shape, np.float32)
    x[:, 4:12, 4:12] = 5.0
    y = np.random.default_rng(0).poisson(P(x)).astype(np.float32)
    rec = ct.recon.bsrem(P, y, niter=4, subsets=2, beta=0.1, progress=False)
    assert rec.shape == vg.shape and rec.min() >= 0
    assert np.linalg.norm(rec - x) < 0.5 * np.linalg.norm(x)


def test_refusals() -> None:
    A, _, y = parallel_problem((8, 8), 8)
    bad = y.copy()
    bad[0, 0] = -1.0
    with pytest.raises(ValueError, match="non-negative"):
        ct.recon.bsrem(A, bad, niter=1, subsets=2, progress=False)
    bad[0, 0] = np.nan
    with pytest.raises(NonFiniteError):
        ct.recon.bsrem(A, bad, niter=1, subsets=2, progress=False)
    for kwargs, match in (
        ({"beta": -1.0}, "beta"),
        ({"beta": float("inf")}, "beta"),
        ({"relaxation": -0.1}, "relaxation"),
        ({"gamma": -1.0}, "gamma"),
        ({"neighbourhood": "diagonal"}, "neighbourhood"),
    ):
        with pytest.raises(ValueError, match=match):
            ct.recon.bsrem(A, y, niter=1, subsets=2, progress=False, **kwargs)
    R = ct.recon.RelativeDifferencePrior(A.vg)
    with pytest.raises(ValueError, match="non-negative"):
        R.value(-np.ones((8, 8), np.float32))


def test_torch_gradient_through_the_iterations_matches_finite_differences() -> None:
    torch = pytest.importorskip("torch")
    A, _, y = parallel_problem((8, 8), 8)
    y = y + 1.0
    kwargs = {"niter": 2, "subsets": 2, "beta": 0.1, "progress": False}
    y_t = torch.tensor(y, requires_grad=True)
    w = np.random.default_rng(5).standard_normal(A.vg.shape).astype(np.float32)
    (ct.recon.bsrem(A, y_t, **kwargs) * torch.from_numpy(w)).sum().backward()
    assert y_t.grad is not None
    h = 1e-2
    for i in (19, 30):
        e = np.zeros_like(y)
        e.flat[i] = h
        fd = np.sum((ct.recon.bsrem(A, y + e, **kwargs) - ct.recon.bsrem(A, y - e, **kwargs)) * w) / (2 * h)
        assert y_t.grad.numpy().flat[i] == pytest.approx(fd, rel=2e-3, abs=1e-4)


def test_mask_keeps_outside_at_zero_and_x0_is_used() -> None:
    A, _, y = parallel_problem((16, 16), 16)
    mask = np.zeros((16, 16), bool)
    mask[2:14, 2:14] = True
    rec = ct.recon.bsrem(A, y, niter=2, subsets=2, beta=0.1, mask=mask, progress=False)
    assert np.all(rec[~mask] == 0) and rec[mask].max() > 0
    start = np.full((16, 16), 3.0, np.float32)
    zero = ct.recon.bsrem(A, y, start, niter=0, progress=False)
    np.testing.assert_array_equal(zero, start)


def test_a_large_beta_that_zeros_the_image_is_refused() -> None:
    """A large β's first steps overshoot below 0 everywhere and the multiplicative update keeps the zeros: bsrem
    returned an all-zero image without a word (regression); now it says so."""
    A, _, y, _ = spect_problem()
    with pytest.raises(ValueError, match=r"beta=200\.0"):
        ct.recon.bsrem(A, y, niter=4, subsets=4, beta=200.0, progress=False)
    assert ct.recon.bsrem(A, y, niter=2, subsets=4, beta=1.0, progress=False).max() > 0
