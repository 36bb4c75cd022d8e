"""Many geometry tangents from one derivative march equal one forward-mode pass per tangent (the reference)."""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np
import pytest
from drjit.llvm.ad import Float64, TensorXf

import drct as ct
from drct.calibration import linalg
from drct.calibration.model import PerturbModel


def _seeded(value: float = 0.0) -> Float64:
    s = Float64(value)
    dr.enable_grad(s)
    dr.set_grad(s, 1.0)
    return s


def _one_pass(A: ct.Projector, pg: ct.ProjectionGeometry, x: TensorXf) -> np.ndarray:
    B = ct.Projector(A.vg, pg, basis=A.basis)
    y = B.forward_tensor(x)
    dr.forward_to(y)
    return dr.grad(y).numpy()


@pytest.mark.parametrize(
    ("make", "names"),
    [
        (
            lambda: ct.fan(np.linspace(0, 2 * np.pi, 24, endpoint=False), 40, 1.0, 80.0, 160.0),
            ["det_shift_u", "cor_offset", "det_yaw"],
        ),
        (
            lambda: ct.cone(np.linspace(0, 2 * np.pi, 12, endpoint=False), (20, 24), 1.2, 60.0, 120.0),
            ["det_shift_v", "det_roll", "src_orig_delta", "axis_tilt"],
        ),
        (lambda: ct.parallel(np.linspace(0, np.pi, 16, endpoint=False), (10, 30), 1.0), ["det_shift_u", "det_pitch"]),
    ],
)
@pytest.mark.parametrize("basis", ["linear", "bspline2"])
def test_geometry_jvps_equal_one_pass_per_tangent(make, names, basis: str) -> None:
    pg = make()
    vg = ct.VolumeGeometry((16, 24, 24) if pg.ndim == 3 else (28, 28))
    x = TensorXf(ct.phantoms.shepp_logan(vg))
    A = ct.Projector(vg, pg, basis=basis)
    many = A.geometry_jvps(x, [pg.perturb(**{n: _seeded()}) for n in names])
    for name, got in zip(names, many, strict=True):
        want = _one_pass(A, pg.perturb(**{name: _seeded()}), x)
        assert got.shape == A.range_shape
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4 * np.abs(want).max(), err_msg=name)


def test_geometry_jvps_refuse_a_different_point() -> None:
    pg = ct.fan(np.linspace(0, np.pi, 8), 16, 1.0, 50.0, 100.0)
    A = ct.Projector(ct.VolumeGeometry((12, 12)), pg)
    x = TensorXf(np.ones((12, 12), np.float32))
    with pytest.raises(ValueError, match="differs from the operator's"):
        A.geometry_jvps(x, [pg.perturb(det_shift_u=_seeded(0.5))])


def _assert_jacobian_equals_one_column_at_a_time(
    model: Any, theta: np.ndarray, vg: ct.VolumeGeometry, basis: str
) -> None:
    """The calibration Jacobian (one march) against one forward-mode pass per column, on Shepp-Logan."""
    x = TensorXf(ct.phantoms.shepp_logan(vg))
    cols = linalg.jacobian(model, theta, vg, basis, x, linalg.seed_groups(model))
    for idx, data in zip(cols.seeds, cols.data, strict=True):
        seed = np.zeros(model.size)
        seed[idx] = 1.0
        want = linalg.jvp(vg, basis, model.geometry(theta, seed), x).reshape(data.shape)
        np.testing.assert_allclose(data, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_calibration_jacobian_equals_one_column_at_a_time() -> None:
    vg = ct.VolumeGeometry((12, 16, 16))
    pg = ct.cone(np.linspace(0, 2 * np.pi, 10, endpoint=False), (14, 18), 1.3, 50.0, 100.0)
    model = PerturbModel(pg, ["det_shift_u", "det_roll", "det_shift_v:view"])
    theta = model.theta0 + 0.01
    _assert_jacobian_equals_one_column_at_a_time(model, theta, vg, "bspline2")


def test_tangents_survive_when_one_vector_feeds_another() -> None:
    """Ray lists from endpoints: the origin ``a`` also feeds the direction ``b - a``; Dr.Jit's default traversal
    cleared the origin's tangent as an interior node (the Jacobian was 2x off before)."""
    from drct.calibration.model import EndpointModel

    vg = ct.VolumeGeometry((16, 16), voxel_size=2.0)
    phi = 2 * np.pi * (np.arange(24) + 0.5) / 24
    ring = 20.0 * np.stack([np.cos(phi), np.sin(phi)], axis=1)
    module = np.arange(24) // 6
    i, j = np.triu_indices(24, 1)
    keep = module[i] != module[j]
    model = EndpointModel(ring[i[keep]], ring[j[keep]], module[i[keep]], module[j[keep]], 4)
    theta = model.theta0.copy()
    _assert_jacobian_equals_one_column_at_a_time(model, theta, vg, "linear")
