"""Geometry derivatives of the SPECT operator (view angle, radius of rotation, centre-of-rotation offset) against
central finite differences in float64, in Dr.Jit (both modes) and through torch."""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np
import pytest

import drct as ct
from drct.backend import drjit_module
from drct.emission import Collimator, SPECTProjector

VIEWS = 5


def operator(method: str = "direct", collimator: Any = None, mu: bool = True) -> SPECTProjector:
    rng = np.random.default_rng(4)
    vg = ct.VolumeGeometry((4, 9, 8), voxel_size=(4.0, 4.0, 3.5))
    g = ct.spect(np.linspace(0.3, 2 * np.pi + 0.3, VIEWS, endpoint=False), 40.0, (4, 11), (4.0, 3.0))
    # a generic geometry: no sample sits on a knot of the bilinear read, where it is not differentiable
    g = g.perturb(offset=0.37, radius=np.linspace(0.0, 3.0, VIEWS))
    m = rng.random(vg.shape) * 0.03 if mu else None
    return SPECTProjector(vg, g, mu=m, collimator=collimator or Collimator.lehr(), dtype="float64", psf_method=method)


def data(A: SPECTProjector) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    return rng.random(A.domain_shape), rng.random(A.range_shape)


def value(A: SPECTProjector, f: np.ndarray, w: np.ndarray, **move: Any) -> float:
    return float(np.vdot(A.perturbed(**move).forward_tensor(A.types.Tensor(f)).numpy(), w))


def central(A: SPECTProjector, f: np.ndarray, w: np.ndarray, name: str, d: np.ndarray, h: float) -> float:
    return (value(A, f, w, **{name: h * d}) - value(A, f, w, **{name: -h * d})) / (2 * h)


@pytest.mark.parametrize(
    ("name", "method"), [("angle", "direct"), ("radius", "direct"), ("offset", "direct"), ("offset", "incremental")]
)
def test_geometry_gradient_matches_finite_differences(name: str, method: str) -> None:
    A = operator(method)
    f, w = data(A)
    move = drjit_module().Float64(np.zeros(VIEWS))
    dr.enable_grad(move)
    y = A.perturbed(**{name: move}).forward_tensor(A.types.Tensor(f))
    dr.backward(dr.sum(y.array * A.types.Float(w.reshape(-1))))
    grad = dr.grad(move).numpy()
    d = np.random.default_rng(6).standard_normal(VIEWS)
    fd = central(A, f, w, name, d, 1e-6)
    assert abs(fd) > 1e-3
    assert float(np.vdot(grad, d)) == pytest.approx(fd, rel=1e-6)

    # forward mode along the same direction
    move = drjit_module().Float64(np.zeros(VIEWS))
    dr.enable_grad(move)
    dr.set_grad(move, d)
    y = A.perturbed(**{name: move}).forward_tensor(A.types.Tensor(f))
    assert float(np.vdot(dr.forward_to(y).numpy(), w)) == pytest.approx(fd, rel=1e-6)


def test_one_offset_for_all_views_and_the_adjoint() -> None:
    """A width-1 array moves every view (its gradient sums them); A.T of the moved geometry is differentiable too
    (``<A.T w, f>`` has the same derivative as ``<w, A f>``)."""
    A = operator()
    f, w = data(A)
    move = drjit_module().Float64(0.0)
    dr.enable_grad(move)
    back = A.perturbed(offset=move).adjoint_tensor(A.types.Tensor(w))
    dr.backward(dr.sum(back.array * A.types.Float(f.reshape(-1))))
    fd = central(A, f, w, "offset", np.ones(1), 1e-6)
    assert dr.grad(move)[0] == pytest.approx(fd, rel=1e-6)


def test_activity_and_mu_gradients_of_the_moved_operator_match_finite_differences() -> None:
    A = operator()
    t = A.types
    f, w = data(A)
    rng = np.random.default_rng(7)
    mu = rng.random(A.domain_shape) * 0.03
    df, dmu = rng.standard_normal(A.domain_shape), rng.standard_normal(A.domain_shape) * 0.01
    move = drjit_module().Float64(np.zeros(VIEWS))
    dr.enable_grad(move)
    B = A.perturbed(angle=move)
    ft, mt = t.Tensor(f), t.Tensor(mu)
    dr.enable_grad(ft, mt)
    dr.backward(dr.sum(B.forward_tensor(ft, mu=mt).array * t.Float(w.reshape(-1))))

    def loss(ff: np.ndarray, mm: np.ndarray) -> float:
        return float(np.vdot(A.forward_tensor(t.Tensor(ff), mu=t.Tensor(mm)).numpy(), w))

    h = 1e-5
    fd_f = (loss(f + h * df, mu) - loss(f - h * df, mu)) / (2 * h)
    fd_mu = (loss(f, mu + h * dmu) - loss(f, mu - h * dmu)) / (2 * h)
    assert float(np.vdot(ft.grad.numpy(), df)) == pytest.approx(fd_f, rel=1e-8)
    assert float(np.vdot(mt.grad.numpy(), dmu)) == pytest.approx(fd_mu, rel=1e-6)


def test_offset_of_one_column_shifts_the_projections_by_one_column() -> None:
    vg = ct.VolumeGeometry((3, 8, 8), voxel_size=4.0)
    g = ct.spect(np.linspace(0, 2 * np.pi, 4, endpoint=False), 50.0, (3, 12), 4.0)
    f = np.random.default_rng(8).random(vg.shape)
    y = SPECTProjector(vg, g, dtype="float64")(f)
    moved = SPECTProjector(vg, g, dtype="float64").perturbed(offset=4.0)(f)
    np.testing.assert_allclose(moved[:, :, :-1], y[:, :, 1:], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(SPECTProjector(vg, g.perturb(offset=4.0), dtype="float64")(f), moved)


@pytest.mark.slow
def test_torch_geometry_gradient_equals_drjit() -> None:
    torch = pytest.importorskip("torch")
    A = operator()
    f, w = data(A)
    radius = torch.zeros(VIEWS, dtype=torch.float64, requires_grad=True)
    cor = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    x = torch.tensor(f, requires_grad=True)
    y = ct.emission.project(x, A, radius=radius, offset=cor)
    (y * torch.tensor(w)).sum().backward()
    assert radius.grad is not None and cor.grad is not None and x.grad is not None
    d = np.random.default_rng(9).standard_normal(VIEWS)
    assert float(radius.grad.numpy() @ d) == pytest.approx(central(A, f, w, "radius", d, 1e-6), rel=1e-6)
    assert float(cor.grad[0]) == pytest.approx(central(A, f, w, "offset", np.ones(1), 1e-6), rel=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), A.T(w), rtol=1e-10)


def test_refusals() -> None:
    move = drjit_module().Float64(np.zeros(VIEWS))
    with pytest.raises(TypeError, match="Collimator"):
        operator(collimator=lambda d: 1.0 + 0.01 * d).perturbed(radius=move)
    with pytest.raises(ValueError, match="direct"):
        operator("incremental").perturbed(radius=move)
    with pytest.raises(ValueError, match="one per view"):
        operator().perturbed(angle=np.zeros(VIEWS + 1))
    with pytest.raises(ct.NonFiniteError):
        operator().perturbed(offset=np.nan)
    with pytest.raises(ValueError, match="offset"):
        ct.spect([0.0, 1.0], 50.0, (4, 8), 4.0, offset=[0.0, 1.0, 2.0])


def test_the_offset_is_saved_with_the_acquisition(tmp_path: Any) -> None:
    from drct.emission.files import load_spect, save_spect

    A = operator()
    path = save_spect(tmp_path / "spect.json", A.pg, A.vg, Collimator.lehr(), None)
    g = load_spect(path).geometry
    np.testing.assert_array_equal(g.offset, A.pg.offset)
    np.testing.assert_array_equal(g.radius, A.pg.radius)
