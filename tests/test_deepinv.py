"""drct.deepinv: drct operators as deepinv physics (adjointness by deepinv's own test, batching, geometry
gradients, the noise model) and the error without the ``learn`` extra."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

import drct as ct
from drct.errors import NonFiniteError


def _drct_deepinv() -> Any:
    """drct.deepinv, or a skip naming the reason (deepinv missing, or a torchvision built for another torch)."""
    return pytest.importorskip("drct.deepinv")


def _deepinv() -> ModuleType:
    _drct_deepinv()
    import deepinv

    return deepinv


FULL = np.linspace(0, 2 * np.pi, 12, endpoint=False) + 0.1
HALF = np.linspace(0, np.pi, 12, endpoint=False) + 0.1
GEOMETRIES = {
    "parallel": (ct.VolumeGeometry((20, 20)), ct.parallel(HALF, 30, 1.0)),
    "fan": (ct.VolumeGeometry((20, 20)), ct.fan(FULL, 32, 1.2, 50.0, 100.0)),
    "cone": (ct.VolumeGeometry((10, 12, 12)), ct.cone(FULL, (14, 18), 1.5, 50.0, 100.0)),
}


def _physics(kind: str, basis: str = "linear", dtype: str = "float32", **kwargs: Any) -> Any:
    vg, pg = GEOMETRIES[kind]
    return _drct_deepinv().Tomography(ct.Projector(vg, pg, basis=basis, dtype=dtype), **kwargs)


# ---- without deepinv --------------------------------------------------------------------------------------------
def test_import_without_deepinv_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "drct.deepinv" or m.startswith("drct.deepinv.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "deepinv", None)  # `import deepinv` now raises ImportError
    with pytest.raises(ModuleNotFoundError, match=r"drct\[learn\]") as info:
        import drct.deepinv  # noqa: F401
    assert info.value.name == "deepinv"


# ---- adjointness ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("basis", ["voxel", "linear", "bspline2", "bspline3"])
@pytest.mark.parametrize("kind", list(GEOMETRIES))
def test_deepinv_adjointness_test_float32(kind: str, basis: str) -> None:
    physics = _physics(kind, basis)
    torch.manual_seed(0)
    error = float(physics.adjointness_test(num_samples=4))
    assert error <= 1e-5, (kind, basis, error)


def test_adjointness_with_normalisation_and_unit_norm() -> None:
    physics = _physics("fan", normalize=True)
    raw = _physics("fan")
    x = torch.rand(3, 1, 20, 20)
    torch.testing.assert_close(physics.A(x), raw.A(x) / physics.operator_norm)
    assert float(physics.adjointness_test(x)) <= 1e-5
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        norm = float(physics.compute_norm(x[:1], squared=False, verbose=False, tol=1e-5))
    assert abs(norm - 1.0) < 1e-2


# ---- batching and layout --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["parallel", "cone"])
def test_batches_match_sample_by_sample(kind: str) -> None:
    physics = _physics(kind)
    A = physics.op
    x = torch.rand(3, 2, *A.domain_shape)
    y = physics.A(x)
    assert y.shape == (3, 2, *A.range_shape)
    for b in range(3):
        for c in range(2):
            np.testing.assert_allclose(y[b, c].numpy(), A(x[b, c].numpy()), rtol=1e-5, atol=1e-5)
    back = physics.A_adjoint(y)
    np.testing.assert_allclose(back[1, 0].numpy(), A.T(y[1, 0].numpy()), rtol=1e-4, atol=1e-4)


def test_per_sample_geometry_from_update_parameters() -> None:
    physics = _physics("parallel")
    x = torch.rand(3, 1, 20, 20)
    shifts = torch.tensor([-0.4, 0.0, 0.7])
    physics.update_parameters(det_shift_u=shifts)  # one shift per sample of the batch axis
    y = physics.A(x)
    for b in range(3):
        single = _physics("parallel", geometry={"det_shift_u": float(shifts[b])})
        torch.testing.assert_close(y[b], single.A(x[b]), rtol=1e-5, atol=1e-5)


def test_non_finite_images_are_refused() -> None:
    physics = _physics("parallel")
    x = torch.rand(1, 1, 20, 20)
    x[0, 0, 3, 4] = float("nan")
    with pytest.raises(NonFiniteError, match="x \\(volume\\)"):
        physics.A(x)


def test_unknown_keywords_are_refused_not_ignored() -> None:
    physics = _physics("parallel")
    with pytest.raises(ValueError, match="det_shift"):
        physics.A(torch.rand(1, 1, 20, 20), det_shift=0.3)  # a typo of det_shift_u


# ---- geometry gradients ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["parallel", "fan"])
def test_geometry_gradient_matches_finite_differences(kind: str) -> None:
    physics = _physics(kind, "bspline2", "float64")
    vg = GEOMETRIES[kind][0]
    x = torch.as_tensor(ct.phantoms.shepp_logan(vg), dtype=torch.float64)[None, None]
    target = physics.A(x, det_shift_u=torch.tensor(0.25, dtype=torch.float64)).detach()

    def loss(shift: torch.Tensor) -> torch.Tensor:
        return (physics.A(x, det_shift_u=shift) - target).square().sum()

    s0 = torch.tensor(-0.3, dtype=torch.float64, requires_grad=True)
    loss(s0).backward()
    assert s0.grad is not None
    h = 1e-4
    fd = (loss(torch.tensor(-0.3 + h, dtype=torch.float64)) - loss(torch.tensor(-0.3 - h, dtype=torch.float64))) / (
        2 * h
    )
    assert abs(float(s0.grad) - float(fd)) <= 1e-5 * abs(float(fd)), (float(s0.grad), float(fd))
    assert abs(float(fd)) > 1e-3  # the test can fail: the loss does depend on the shift


def test_learnable_geometry_trains_with_an_optimiser() -> None:
    physics = _physics("parallel", "bspline2", geometry={"cor_offset": 0.0}, learnable=True)
    assert [n for n, _ in physics.named_parameters()] == ["projection.cor_offset"]
    x = torch.as_tensor(ct.phantoms.shepp_logan(GEOMETRIES["parallel"][0]))[None, None]
    with torch.no_grad():
        target = physics.A(x)  # the reference, at cor_offset = 0
    with torch.no_grad():
        physics.projection.cor_offset.fill_(0.4)
    opt = torch.optim.Adam(physics.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        (physics.A(x) - target).square().sum().backward()
        opt.step()
    assert abs(float(physics.projection.cor_offset.detach())) < 0.05
    with pytest.raises(ValueError, match="learnable"):
        physics.update_parameters(cor_offset=torch.tensor(0.1))


# ---- FBP and noise --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("normalize", [False, True])
def test_fbp_is_drcts_fbp(normalize: bool) -> None:
    physics = _physics("parallel", "voxel", normalize=normalize)
    A = physics.op
    x = torch.as_tensor(ct.phantoms.shepp_logan(A.vg))[None, None]
    y = physics.A(x)
    reference = ct.fbp(A, A(x[0, 0].numpy()))
    np.testing.assert_allclose(physics.A_dagger(y, fbp=True)[0, 0].numpy(), reference, atol=1e-5)


def test_detector_noise_is_drcts_model() -> None:
    dinv = _drct_deepinv()
    det = ct.physics.Detector(i0=2e3, sigma=0.0, bits=None)
    noise = dinv.DetectorNoise(det, det_ndim=1, rng=torch.Generator().manual_seed(0))
    p = torch.full((64, 1, 30, 40), 1.5)
    y = noise(p)
    # -log of Poisson(i0 e^-p) / i0: mean p, variance 1 / (i0 e^-p) to first order
    assert abs(float(y.mean()) - 1.5) < 0.01
    assert abs(float(y.var()) * det.i0 * np.exp(-1.5) - 1.0) < 0.05
    torch.testing.assert_close(noise(p, seed=3), noise(p, seed=3))
    assert not torch.equal(noise(p, seed=3), noise(p, seed=4))
    with pytest.raises(NonFiniteError):
        noise(torch.full((2, 3), float("inf")))


def test_quantisation_and_saturation_reach_the_measurements() -> None:
    """8-bit readings: the noise-free line integrals come back on the digitiser's grid, −log(k/255)."""
    physics = _physics("parallel", detector=ct.physics.Detector(i0=255.0, sigma=0.0, bits=8))
    physics.noise_model.rng = torch.Generator().manual_seed(0)
    x = torch.as_tensor(ct.phantoms.shepp_logan(physics.op.vg))[None, None] * 0.1
    y = physics(x)
    counts = 255.0 * torch.exp(-y.double())
    torch.testing.assert_close(counts, counts.round(), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="not both"):
        _physics("parallel", detector=ct.physics.Detector(), noise_model=_deepinv().physics.GaussianNoise(0.1))


# ---- drct in place of deepinv's Tomography --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fan", "tolerance"),
    [(None, 0.01), ({}, 0.09), ({"pixel_spacing": 1.0, "source_radius": 80.0, "detector_radius": 60.0}, 0.09)],
)
def test_deepinv_geometry_scans_like_deepinvs_tomography(fan: dict | None, tolerance: float) -> None:
    """Same sinograms up to deepinv's sampling: 0.5% parallel; fan 5-7% (deepinv's fan sums miss 1/cos γ)."""
    dinv = _deepinv()
    from deepinv.utils.phantoms import generate_shepp_logan

    size = 32
    degrees = torch.linspace(0, 180 if fan is None else 360, 25)[:-1]
    kw = {} if fan is None else {"fan_beam": True, "fan_parameters": dict(fan)}
    theirs = dinv.physics.Tomography(angles=degrees, img_width=size, circle=False, normalize=False, **kw)
    vg, pg = _drct_deepinv().deepinv_geometry(size, degrees, fan)
    x = torch.nn.functional.avg_pool2d(generate_shepp_logan(4 * size)[None, None], 4)  # pixel averages
    ours = torch.as_tensor(ct.Projector(vg, pg, basis="linear")(x[0, 0].numpy()))
    reference = theirs.A(x)[0, 0].T  # deepinv's layout is (bins, views)
    assert ours.shape == reference.shape
    assert float((ours - reference).norm() / reference.norm()) < tolerance


@pytest.mark.slow
def test_primal_dual_example_runs_quick(tmp_path: Any) -> None:
    """Smoke test of examples/learned/primal_dual.py --quick (one beam): a table, a PNG and finite PSNRs."""
    _deepinv()
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "learned" / "primal_dual.py"
    spec = importlib.util.spec_from_file_location("primal_dual_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--quick", "--beams", "parallel", "-o", str(tmp_path)])
    assert (tmp_path / "primal_dual.png").stat().st_size > 0
    assert [(r["beam"], r["operator"]) for r in result["rows"]] == [("parallel", "drct"), ("parallel", "deepinv")]
    assert all(np.isfinite(r["psnr_lpd_shepp_logan"]) and r["psnr_fbp_shepp_logan"] > 10 for r in result["rows"])
