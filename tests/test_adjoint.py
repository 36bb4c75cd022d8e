"""The backprojector is the exact adjoint: <A x, y> = <x, A^T y> for every geometry kind and basis."""

from __future__ import annotations

import drjit as dr
import numpy as np
import pytest
from conftest import volume_for

import drct as ct


def inner_products(A: ct.Projector, seed: int, dtype: type) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=A.domain_shape).astype(dtype)
    y = rng.uniform(0, 1, size=A.range_shape).astype(dtype)
    Ax, ATy = A(x), A.T(y)
    assert Ax.shape == A.range_shape and ATy.shape == A.domain_shape
    assert Ax.dtype == dtype and ATy.dtype == dtype
    lhs = float(np.sum(Ax.astype(np.float64) * y))
    rhs = float(np.sum(x.astype(np.float64) * ATy))
    return lhs, rhs


def test_adjoint_float32(geometry: ct.ProjectionGeometry | ct.RayGeometry, basis: str) -> None:
    A = ct.Projector(volume_for(geometry), geometry, basis=basis)
    lhs, rhs = inner_products(A, 1, np.float32)
    assert abs(lhs) > 1e-3, "the test geometry must actually see the volume"
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs), (lhs, rhs)


@pytest.mark.parametrize("basis", ["linear", "bspline3"])
def test_adjoint_float64(geometry: ct.ProjectionGeometry | ct.RayGeometry, basis: str) -> None:
    A = ct.Projector(volume_for(geometry), geometry, basis=basis, dtype="float64")
    lhs, rhs = inner_products(A, 2, np.float64)
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs), (lhs, rhs)


def test_adjoint_is_not_trivially_satisfied() -> None:
    """A wrong 'adjoint' (e.g. a forward of a shifted volume) must fail the same check."""
    vg = ct.VolumeGeometry((16, 16))
    A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 9, endpoint=False), 24), basis="linear")
    rng = np.random.default_rng(0)
    x = rng.uniform(size=vg.shape).astype(np.float32)
    y = rng.uniform(size=A.range_shape).astype(np.float32)
    rhs_wrong = float(np.sum(np.roll(x, 1, axis=0) * A.T(y)))
    lhs = float(np.sum(A(x) * y))
    assert abs(lhs - rhs_wrong) > 1e-3 * abs(lhs)


@pytest.mark.parametrize("basis", ["voxel", "bspline2"])
def test_adjoint_same_whichever_scatter_mode(
    geometry: ct.ProjectionGeometry | ct.RayGeometry, basis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the CPU the adjoint adds colliding lanes one of three ways (``drct.kernels.scatter``: pairs written as
    packets into a copy per pool worker, per-lane atomics, or a reduction within each SIMD packet first); all
    three are the same transpose, to float64 rounding. The gather adjoints are left out (scatter=True)."""
    from drct.kernels import scatter

    A = ct.Projector(volume_for(geometry), geometry, basis=basis, dtype="float64")
    y = np.random.default_rng(3).uniform(size=A.range_shape)
    engine = A._engine
    results = []
    for mode in (dr.ReduceMode.Expand, dr.ReduceMode.Direct, dr.ReduceMode.Local):
        monkeypatch.setattr(scatter, "scatter_mode", lambda target, spread=False, mode=mode: mode)
        flat = engine.backproject(A.types.Float(y.ravel()), engine.vectors(), scatter=True)
        results.append(flat.numpy())
    assert float(np.abs(results[0]).max()) > 1e-3
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=0, atol=1e-12 * float(np.abs(results[0]).max()))
