"""Batches in one launch: a shared geometry for every sample, or one geometry per sample (``batch=B``)."""

from __future__ import annotations

import drjit as dr
import numpy as np
import pytest
from conftest import GEOMETRIES, volume_for

import drct as ct
from drct.backend import types

BATCH_CASES = ["parallel2d", "fan_curved", "cone_flat", "helix", "rays3d"]


@pytest.mark.parametrize("name", BATCH_CASES)
@pytest.mark.parametrize("basis", ["voxel", "bspline2"])
def test_shared_geometry_batch_equals_per_sample(name: str, basis: str) -> None:
    pg = GEOMETRIES[name]
    A = ct.Projector(volume_for(pg), pg, basis=basis, dtype="float64")
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(2, 3, *A.domain_shape))
    y = rng.uniform(size=(2, 3, *A.range_shape))
    Ax, ATy = A(x), A.T(y)
    assert Ax.shape == (2, 3, *A.range_shape) and ATy.shape == (2, 3, *A.domain_shape)
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(Ax[i, j], A(x[i, j]), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(ATy[i, j], A.T(y[i, j]), rtol=1e-12, atol=1e-12)
    assert abs(np.sum(Ax * y) - np.sum(x * ATy)) <= 1e-12 * abs(np.sum(Ax * y))


def _per_sample(pg: ct.ProjectionGeometry, shifts: list[float]) -> list[ct.ProjectionGeometry]:
    return [pg.perturb(det_shift_u=s) for s in shifts]


@pytest.mark.parametrize("name", ["fan_flat", "cone_curved"])
def test_stacked_geometries_match_each_sample(name: str) -> None:
    pg = GEOMETRIES[name]
    assert isinstance(pg, ct.ProjectionGeometry)
    singles = _per_sample(pg, [0.0, 0.7, -1.3])
    stacked = ct.from_vectors(
        np.concatenate([g.to_vectors() for g in singles]), pg.det_shape, beam=pg.beam, curved=pg.curved
    )
    vg = volume_for(pg)
    A = ct.Projector(vg, stacked, basis="linear", dtype="float64", batch=3)
    assert A.domain_shape == (3, *vg.shape) and A.range_shape == (3, *pg.shape)
    rng = np.random.default_rng(4)
    x = rng.uniform(size=A.domain_shape)
    y = rng.uniform(size=A.range_shape)
    Ax, ATy = A(x), A.T(y)
    for b, g in enumerate(singles):
        single = ct.Projector(vg, g, basis="linear", dtype="float64")
        np.testing.assert_allclose(Ax[b], single(x[b]), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ATy[b], single.T(y[b]), rtol=1e-12, atol=1e-12)
    assert np.abs(Ax[1] - Ax[0]).max() > 1e-3, "the samples' geometries must differ"


def test_stacked_geometry_gradients_per_sample() -> None:
    """d/d(shift_b) of sum(A x) for per-sample detector shifts equals finite differences, sample by sample."""
    pg = GEOMETRIES["fan_flat"]
    assert isinstance(pg, ct.ProjectionGeometry)
    vg = volume_for(pg)
    t = types("float64", "llvm")
    stacked = ct.from_vectors(np.tile(pg.to_vectors(), (2, 1)), pg.det_shape, beam="cone")
    views = pg.num_views
    rng = np.random.default_rng(5)
    x = rng.uniform(size=(2, *vg.shape))
    w = rng.uniform(size=(2, *pg.shape))

    def loss(shifts: np.ndarray, grad: bool) -> tuple[float, np.ndarray | None]:
        s = t.Float64(np.repeat(shifts, views))
        if grad:
            dr.enable_grad(s)
        A = ct.Projector(vg, stacked.perturb(det_shift_u=s), basis="bspline2", dtype="float64", batch=2)
        value = dr.sum(A.forward_tensor(t.Tensor(x)) * t.Tensor(w), axis=None)
        if not grad:
            return float(value.array[0]), None
        dr.backward(value)
        g = np.asarray(dr.grad(s)).reshape(2, views).sum(axis=1)
        return float(value.array[0]), g

    shifts = np.array([0.4, -0.9])
    _, g = loss(shifts, True)
    assert g is not None
    h = 1e-5
    for b in range(2):
        e = np.eye(2)[b] * h
        fd = (loss(shifts + e, False)[0] - loss(shifts - e, False)[0]) / (2 * h)
        assert abs(g[b] - fd) <= 1e-5 * max(1.0, abs(fd)), (b, g[b], fd)


def test_batch_errors() -> None:
    pg = GEOMETRIES["parallel2d"]
    vg = volume_for(pg)
    with pytest.raises(ValueError, match="batch"):
        ct.Projector(vg, pg, batch=2)  # 7 views do not split in 2
    with pytest.raises(ValueError, match="positive integer"):
        ct.Projector(vg, pg, batch=0)
    A = ct.Projector(vg, pg)
    with pytest.raises(ValueError, match=r"\(\.\.\., 13, 16\)"):
        A(np.zeros((2, 13, 15), np.float32))
    B = ct.Projector(vg, ct.from_vectors(np.tile(pg.to_vectors(), (7, 1)), 25, beam="parallel"), batch=7)
    with pytest.raises(ValueError, match=r"\(7, 13, 16\)"):
        B(np.zeros((2, 13, 16), np.float32))
