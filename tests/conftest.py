"""Shared fixtures: one small instance of every geometry kind drct supports."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Container, Iterable, Iterator
from typing import Any

import numpy as np
import pytest

import drct as ct
from drct.concurrency import other_threads


@pytest.fixture(autouse=True)
def _name_threads_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Warn (in the warnings summary) about a test that leaves a thread alive which costs later tests the
    single-thread fast paths (:func:`drct.concurrency.only_thread`): CI once lost them for tests/test_slabs.py
    to a thread this machine never showed."""
    before = {*threading.enumerate()}
    yield
    left = [t for t in other_threads() if t not in before and t.is_alive()]
    if left:
        warnings.warn(f"{request.node.nodeid} left threads alive: {_described(left)}", stacklevel=1)


def _described(threads: list[threading.Thread]) -> str:
    return ", ".join(f"{t.name} ({type(t).__module__}.{type(t).__qualname__})" for t in threads)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Name the threads still alive at the end that cost the single-thread fast paths (started outside any test,
    e.g. by a module-scoped fixture, they escape :func:`_name_threads_left_behind`)."""
    left = other_threads()
    if left:
        terminalreporter.write_line(f"threads alive at the end that cost drct's fast paths: {_described(left)}")


def _random_rays(ndim: int, n: int, rng: np.random.Generator, radius: float) -> ct.RayGeometry:
    """Lines through random points near the volume in random directions (PET-like)."""
    origins = rng.uniform(-radius, radius, size=(n, ndim))
    directions = rng.normal(size=(n, ndim))
    return ct.rays(origins, directions)


def _tilted_cone_vectors(views: int, rng: np.random.Generator) -> np.ndarray:
    """cone_vec rows with a shifted, rolled and tilted detector: a genuinely general vector geometry."""
    base = ct.cone(np.linspace(0, 2 * np.pi, views, endpoint=False), (10, 12), 1.5, 40.0, 80.0).to_vectors()
    return base + rng.normal(scale=0.2, size=base.shape)


def geometry_cases() -> dict[str, ct.ProjectionGeometry | ct.RayGeometry]:
    """Every geometry kind, small enough for fast tests on a ~16-voxel volume of unit voxels."""
    rng = np.random.default_rng(7)
    angles = np.linspace(0, np.pi, 7, endpoint=False) + 0.1
    full = np.linspace(0, 2 * np.pi, 7, endpoint=False) + 0.1
    fan_vec = ct.fan(full, 20, 1.5, 40.0, 80.0).to_vectors() + rng.normal(scale=0.2, size=(7, 6))
    par_vec = ct.parallel(angles, 20, 1.3).to_vectors() + rng.normal(scale=0.05, size=(7, 6))
    return {
        "parallel2d": ct.parallel(angles, 25, 0.9),
        "parallel3d": ct.parallel(angles, (14, 17), (1.1, 0.9)),
        "fan_flat": ct.fan(full, 20, 1.5, 40.0, 80.0),
        "fan_curved": ct.fan(full, 20, 1.5, 40.0, 80.0, curved=True),
        "cone_flat": ct.cone(full, (10, 12), 1.5, 40.0, 80.0),
        "cone_curved": ct.cone(full, (10, 12), 1.5, 40.0, 80.0, curved=True),
        "helix": ct.helix(np.linspace(-2 * np.pi, 2 * np.pi, 9), 6.0, (8, 12), 1.5, 40.0, 80.0),
        "vectors2d_parallel": ct.from_vectors(par_vec, 20, beam="parallel"),
        "vectors2d_fan": ct.from_vectors(fan_vec, 20, beam="cone"),
        "vectors3d_cone": ct.from_vectors(_tilted_cone_vectors(6, rng), (10, 12), beam="cone"),
        "rays2d": _random_rays(2, 150, rng, 8.0),
        "rays3d": _random_rays(3, 300, rng, 8.0),
    }


GEOMETRIES = geometry_cases()


def volume_for(pg: ct.ProjectionGeometry | ct.RayGeometry) -> ct.VolumeGeometry:
    """A small, slightly anisotropic, off-centre volume matching the geometry's dimension."""
    if pg.ndim == 2:
        return ct.VolumeGeometry((13, 16), voxel_size=(1.1, 0.9), center=(0.3, -0.2))
    return ct.VolumeGeometry((9, 11, 10), voxel_size=(1.2, 0.9, 1.0), center=(0.2, -0.1, 0.3))


@pytest.fixture(params=sorted(GEOMETRIES), ids=sorted(GEOMETRIES))
def geometry(request: pytest.FixtureRequest) -> ct.ProjectionGeometry | ct.RayGeometry:
    return GEOMETRIES[request.param]


BASES = ("voxel", "linear", "bspline2", "bspline3")


@pytest.fixture(params=BASES)
def basis(request: pytest.FixtureRequest) -> str:
    return request.param


def cuda_available() -> bool:
    from drct.backend import cuda_available as available

    return available()


requires_cuda = pytest.mark.skipif(not cuda_available(), reason="no CUDA GPU: Dr.Jit's CUDA backend is unavailable")


def slow_cases(values: Iterable[Any], slow: Container[Any]) -> list[Any]:
    """``values`` for ``pytest.mark.parametrize`` with the cases in ``slow`` marked ``slow`` (``-m "not slow"``)."""
    return [pytest.param(value, marks=pytest.mark.slow) if value in slow else value for value in values]


def assert_adjoint_float32(A: Any, trials: int = 3, seed: int = 0, rtol: float = 1e-5) -> None:
    """``<A x, y> = <x, A.T y>`` to ``rtol`` for ``trials`` pairs of random float32 ``x``, ``y`` (sums in
    float64): the adjoint test for operators that take numpy arrays."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        x = rng.random(A.domain_shape).astype(np.float32)
        y = rng.random(A.range_shape).astype(np.float32)
        lhs = float(np.vdot(A(x).astype(np.float64), y))
        rhs = float(np.vdot(x.astype(np.float64), A.T(y)))
        assert abs(lhs - rhs) <= rtol * abs(lhs), (lhs, rhs)


def transpose_rows(A: Any) -> np.ndarray:
    """The matrix of ``A.T`` applied to every unit sinogram, one row per sinogram entry (dense, tiny problems)."""
    m = int(np.prod(A.range_shape))
    return np.stack([A.T(np.eye(1, m, r).reshape(A.range_shape)).reshape(-1) for r in range(m)])


def adjoints_from_threads(A: Any, ys: list[np.ndarray], repeats: int = 3) -> list[np.ndarray]:
    """``A.T(y)`` of each ``y`` computed by its own thread, ``repeats`` times over while the others run (the
    last result of each)."""
    import threading

    got: list[np.ndarray | None] = [None] * len(ys)

    def run(i: int) -> None:
        for _ in range(repeats):
            got[i] = A.T(ys[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(ys))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(g is not None for g in got), "a thread failed"
    return [g for g in got if g is not None]
