"""Kernels compile once per operator shape: new angles, distances, spacings or data reuse the compiled kernels."""

from __future__ import annotations

import drjit as dr
import numpy as np
import pytest

import drct as ct


def _jit_launches(run) -> list[dict]:
    dr.kernel_history()  # drop what came before
    dr.set_flag(dr.JitFlag.KernelHistory, True)
    try:
        run()
        dr.sync_thread()
        return [k for k in dr.kernel_history() if k["type"] == dr.KernelType.JIT]
    finally:
        dr.set_flag(dr.JitFlag.KernelHistory, False)


@pytest.mark.parametrize("basis", ["voxel", "bspline2"])
def test_same_shapes_reuse_compiled_kernels(basis: str) -> None:
    def operator(seed: int) -> tuple[ct.Projector, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        vg = ct.VolumeGeometry((6, 10, 12), voxel_size=rng.uniform(0.5, 1.5), center=rng.uniform(-1, 1, 3))
        angles = np.sort(rng.uniform(0, 2 * np.pi, 5))
        pg = ct.cone(angles, (7, 9), rng.uniform(1, 2), rng.uniform(30, 40), rng.uniform(60, 80))
        A = ct.Projector(vg, pg, basis=basis)
        return A, rng.random(vg.shape, dtype=np.float32), rng.random(pg.shape, dtype=np.float32)

    def both(seed: int) -> None:
        A, x, y = operator(seed)
        A(x)
        A.T(y)

    first = _jit_launches(lambda: both(0))
    assert first, "the first operator must launch kernels"
    again = _jit_launches(lambda: both(1))
    assert len(again) == len(first)
    assert all(k["cache_hit"] for k in again), [k for k in again if not k["cache_hit"]]


@pytest.mark.parametrize("basis", ["voxel", "bspline2"])
def test_the_chunks_of_a_call_share_their_kernels(basis: str) -> None:
    """A call in several chunks compiles each kernel once: where a chunk starts is a run-time value (it was
    compiled into the kernel, so every chunk of a large scan's first call compiled the march afresh)."""
    vg = ct.VolumeGeometry((6, 10, 12))
    pg = ct.cone(np.linspace(0, 2 * np.pi, 8, endpoint=False), (7, 9), 1.5, 30.0, 60.0)
    rng = np.random.default_rng(0)
    x, y = rng.random(vg.shape, dtype=np.float32), rng.random(pg.shape, dtype=np.float32)
    A = ct.Projector(vg, pg, basis=basis, chunk_rays=8)  # 128-ray chunks: 4 of them
    assert len(A._engine.chunks(1, linear=True)) == 4
    for op, data in ((A, x), (A.T, y)):
        launches = _jit_launches(lambda op=op, data=data: op(data))
        compiled = [k for k in launches if not k["cache_hit"]]
        assert len(launches) >= 4 and len({k["hash"] for k in launches}) <= len(launches) - 3, launches
        assert len(compiled) <= len({k["hash"] for k in launches})
