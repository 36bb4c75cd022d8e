"""CUDA backend: the same operators agree with the LLVM backend (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_cuda, volume_for

import drct as ct

pytestmark = [pytest.mark.cuda, requires_cuda]


def test_cuda_matches_llvm(geometry: ct.ProjectionGeometry | ct.RayGeometry, basis: str) -> None:
    vg = volume_for(geometry)
    rng = np.random.default_rng(3)
    x = rng.uniform(size=vg.shape).astype(np.float32)
    y = rng.uniform(size=geometry.shape).astype(np.float32)
    cpu = ct.Projector(vg, geometry, basis=basis, backend="llvm")
    gpu = ct.Projector(vg, geometry, basis=basis, backend="cuda")
    for a, b in ((cpu(x), gpu(x)), (cpu.T(y), gpu.T(y))):
        assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(a)


def test_cuda_adjoint(geometry: ct.ProjectionGeometry | ct.RayGeometry, basis: str) -> None:
    A = ct.Projector(volume_for(geometry), geometry, basis=basis, backend="cuda")
    rng = np.random.default_rng(4)
    x = rng.uniform(size=A.domain_shape).astype(np.float32)
    y = rng.uniform(size=A.range_shape).astype(np.float32)
    lhs = float(np.sum(A(x).astype(np.float64) * y))
    rhs = float(np.sum(x.astype(np.float64) * A.T(y)))
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)


def test_torch_cuda_tensor_round_trip() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    vg = ct.VolumeGeometry((16, 16))
    A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 8, endpoint=False), 24), backend="cuda")
    y = A(torch.ones(16, 16, device="cuda"))
    assert y.device.type == "cuda"
    np.testing.assert_allclose(y.cpu().numpy(), A(np.ones((16, 16), np.float32)), rtol=1e-6)
    with pytest.raises(ValueError, match="is on torch device 'cpu'"):
        A(torch.ones(16, 16))
