"""Which adjoint ``A.T`` of a 2D fan beam takes by size: the box basis's gather only from
:data:`drct.kernels.fan_hat.MIN_WORK` pixels x views on (below, the packet-pair scatter is cheaper: 1.2-1.5x less
CPU time, measured in its docstring), the linear basis's at every size; forcing the scatter works as before."""

from __future__ import annotations

import numpy as np
import pytest

import drct as ct
from drct.kernels import fan_hat
from drct.kernels.fan_footprints import FanFootprints
from drct.kernels.fan_hat import FanHatFootprints


def _fan(n: int, views: int, basis: str, dtype: str = "float32") -> ct.Projector:
    """``n²`` pixels, ``views`` views, ``2 n`` columns, magnification 2 (bench_gather_adjoint's fan family)."""
    pg = ct.fan(np.linspace(0, 2 * np.pi, views, endpoint=False), 2 * n, 1.5, 500.0 * n / 256, 1000.0 * n / 256)
    return ct.Projector(ct.VolumeGeometry((n, n)), pg, basis=basis, dtype=dtype)


def test_box_gather_from_min_work_on_linear_at_every_size() -> None:
    assert fan_hat.MIN_WORK[0] == 128 * 128 * 128  # the sizes below sit on either side of it
    assert type(_fan(128, 128, "voxel")._engine.footprints) is FanFootprints
    assert _fan(128, 127, "voxel")._engine.footprints is None
    assert _fan(32, 45, "voxel")._engine.footprints is None
    assert type(_fan(32, 45, "linear")._engine.footprints) is FanHatFootprints


def test_forcing_the_scatter_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _fan(128, 128, "voxel")._engine
    assert engine._gather() is not None
    assert engine._gather(scatter=True) is None
    monkeypatch.setenv("DRCT_ADJOINT", "scatter")
    assert engine._gather() is None


def test_a_small_box_operator_gives_the_gathers_result_by_the_scatter() -> None:
    """Below the threshold ``A.T`` is the scatter's, equal to the gather's (which ran there before) to rounding."""
    A = _fan(24, 30, "voxel", "float64")
    assert A._engine.footprints is None
    y = np.random.default_rng(3).random(A.range_shape)
    gather = FanFootprints(A._engine.grid, A.vg, A.pg, A._engine.t)
    want = gather.backproject(A.types.Float(y.ravel()), A._engine.vectors()).numpy().reshape(A.domain_shape)
    got = A.T(y)
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * float(np.abs(want).max()))
