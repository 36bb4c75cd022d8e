"""Geometry derivatives of the PET operator (ring radius, object rotation and shift) and its activity derivative
against central finite differences in float64, in Dr.Jit (both modes) and through torch."""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np
import pytest

import drct as ct
from drct.backend import drjit_module
from drct.pet import TOF, PETProjector

MOD = drjit_module()


def operator(mu: bool = True, **kw: Any) -> PETProjector:
    rng = np.random.default_rng(13)
    sc = ct.pet.scanner(rings=3, crystals_per_ring=20, radius=50.0, crystal_size=4.0)
    vg = ct.VolumeGeometry((3, 9, 8), voxel_size=(4.0, 5.0, 6.0), center=(1.5, -2.0, 0.5))
    m = 0.01 + 0.01 * rng.random(vg.shape) if mu else None
    g = ct.pet.sinogram(sc, span=3, mash=2)
    return PETProjector(vg, g, mu=m, normalisation=0.5 + rng.random(g.shape), dtype="float64", **kw)


def data(A: PETProjector) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(14)
    return rng.random(A.domain_shape), rng.random(A.range_shape)


def value(A: PETProjector, x: np.ndarray, w: np.ndarray, **move: Any) -> float:
    return float(np.vdot(A.perturbed(**move).forward_tensor(A.types.Tensor(x)).numpy(), w))


BASE = {"radius": np.array([0.3]), "rotation": np.array([0.01]), "shift": np.array([0.3, -0.2, 0.1])}


def drjit_value(name: str, v: np.ndarray) -> Any:
    return MOD.Array3f64(*(float(c) for c in v)) if name == "shift" else MOD.Float64(v)


@pytest.mark.parametrize("name", ["radius", "rotation", "shift"])
def test_geometry_gradient_matches_finite_differences(name: str) -> None:
    A = operator()
    x, w = data(A)
    base = BASE[name]
    move = drjit_value(name, base)
    dr.enable_grad(move)
    y = A.perturbed(**{name: move}).forward_tensor(A.types.Tensor(x))
    dr.backward(dr.sum(y.array * A.types.Float(w.reshape(-1))))
    grad = np.asarray(dr.grad(move)).reshape(-1)
    d = np.random.default_rng(15).standard_normal(base.size)
    h = 1e-6
    fd = (value(A, x, w, **{name: base + h * d}) - value(A, x, w, **{name: base - h * d})) / (2 * h)
    assert abs(fd) > 1e-2
    assert float(np.vdot(grad, d)) == pytest.approx(fd, rel=1e-6)

    move = drjit_value(name, base)
    dr.enable_grad(move)
    dr.set_grad(move, drjit_value(name, d))
    y = A.perturbed(**{name: move}).forward_tensor(A.types.Tensor(x))
    assert float(np.vdot(dr.forward_to(y).numpy(), w)) == pytest.approx(fd, rel=1e-6)


def test_activity_gradient_matches_finite_differences() -> None:
    A = operator()
    t = A.types
    x, w = data(A)
    d = np.random.default_rng(16).standard_normal(A.domain_shape)
    xt = t.Tensor(x)
    dr.enable_grad(xt)
    dr.backward(dr.sum(A.forward_tensor(xt).array * t.Float(w.reshape(-1))))
    h = 1e-3  # A is linear in x: the central difference is exact up to rounding
    fd = (float(np.vdot(A(x + h * d), w)) - float(np.vdot(A(x - h * d), w))) / (2 * h)
    assert float(np.vdot(xt.grad.numpy(), d)) == pytest.approx(fd, rel=1e-9)


def test_a_shift_of_one_voxel_moves_the_activity_by_one_voxel() -> None:
    """The pose's meaning: the object moved by one voxel pitch along x projects like the voxel values moved by one
    index (support inside the grid, no attenuation)."""
    A = operator(mu=False)
    x = np.zeros(A.domain_shape)
    x[:, 2:7, 2:6] = np.random.default_rng(17).random((3, 5, 4))
    moved = np.roll(x, 1, axis=2)
    np.testing.assert_allclose(A.perturbed(shift=(6.0, 0.0, 0.0))(x), A(moved), rtol=1e-10, atol=1e-10)
    turned = A.perturbed(rotation=2 * np.pi)(x)
    np.testing.assert_allclose(turned, A(x), rtol=1e-9, atol=1e-9)
    assert np.abs(A.perturbed(radius=5.0)(x) - A(x)).max() > 1e-3


@pytest.mark.slow
def test_torch_geometry_gradient_equals_drjit() -> None:
    torch = pytest.importorskip("torch")
    A = operator()
    x, w = data(A)
    shift = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64, requires_grad=True)
    radius = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    y = ct.emission.project(torch.tensor(x), A, shift=shift, radius=radius)
    (y * torch.tensor(w)).sum().backward()
    assert shift.grad is not None and radius.grad is not None
    for name, tensor in (("shift", shift), ("radius", radius)):
        move = drjit_value(name, BASE[name])
        dr.enable_grad(move)
        other = {"radius": 0.3} if name == "shift" else {"shift": BASE["shift"]}
        y_dr = A.perturbed(**{name: move}, **other).forward_tensor(A.types.Tensor(x))
        dr.backward(dr.sum(y_dr.array * A.types.Float(w.reshape(-1))))
        assert tensor.grad is not None
        np.testing.assert_allclose(tensor.grad.numpy().reshape(-1), np.asarray(dr.grad(move)).reshape(-1), rtol=1e-9)


def test_refusals() -> None:
    tof = operator(tof=TOF(bins=5, bin_width=12.0, fwhm=25.0))
    with pytest.raises(ValueError, match="non-TOF"):
        tof.perturbed(shift=MOD.Array3f64(0.0, 0.0, 0.0))
    x = np.random.default_rng(18).random(tof.domain_shape)
    assert tof.perturbed(shift=(1.0, 0.0, 0.0))(x).shape == tof.range_shape  # numbers are fine with TOF
    sc = ct.pet.scanner(rings=2, crystals_per_ring=16, radius=50.0)
    lm = PETProjector(ct.VolumeGeometry((2, 8, 8), voxel_size=4.0), ct.pet.listmode(sc, [0, 1], [8, 9]))
    with pytest.raises(ValueError, match="sinogram"):
        lm.perturbed(radius=1.0)
    with pytest.raises(ValueError, match="shift"):
        operator().perturbed(shift=(1.0, 2.0))
    with pytest.raises(ValueError, match="> 0"):
        operator().perturbed(radius=-60.0)
    with pytest.raises(ValueError, match="inside the ring"):
        operator().perturbed(shift=(20.0, 0.0, 0.0))  # the grid's corner would reach past the crystals
