"""The box basis's own march (drct.kernels.box) and the general march against their reference twin
(tests/march_reference.py: the march as it was, with ``dr.minimum``, a mask per coefficient and one axis per
step), on random rays and on the rays where a march can go wrong: along faces, through edges and corners,
parallel to axes, missing the volume, starting or ending inside it.
"""

from __future__ import annotations

import drjit as dr
import march_reference as reference
import numpy as np
import pytest
from conftest import transpose_rows

import drct as ct
from drct import transform
from drct.geometry.projection import AnyGeometry
from drct.kernels import derivatives, march, padding


def awkward_rays(vg: ct.VolumeGeometry, count: int, seed: int) -> ct.RayGeometry:
    """Random lines, plus lines on voxel faces, through grid vertices (diagonals), parallel to the axes, from
    origins 1e4-1e8 mm away, and lines that miss the volume."""
    rng = np.random.default_rng(seed)
    ndim, lo, h = vg.ndim, np.array(vg.extent_min), np.array(vg.spacing_xyz)
    n = np.array(vg.shape_xyz)
    origins: list[np.ndarray] = [rng.uniform(lo - h, lo + (n + 1) * h, size=(count, ndim))]
    directions: list[np.ndarray] = [rng.normal(size=(count, ndim))]
    for axis in range(ndim):  # along an axis, on a face (or an edge) of the voxel grid, and between faces
        k = rng.integers(0, n + 1, size=(count, ndim))
        o = lo + k * h
        o[: count // 2, (axis + 1) % ndim] += 0.5 * h[(axis + 1) % ndim]  # half of them on one face only
        d = np.zeros((count, ndim))
        d[:, axis] = rng.choice([-1.0, 1.0], size=count)
        origins.append(o)
        directions.append(d)
    vertex = lo + rng.integers(0, n + 1, size=(count, ndim)) * h  # diagonals through grid vertices
    diagonal = rng.choice([-1.0, 1.0], size=(count, ndim)) * h
    diagonal[: count // 3, -1] = 0.0  # some along a face diagonal
    origins.append(vertex)
    directions.append(diagonal)
    toward = rng.normal(size=(count // 4, ndim))  # from far away (re-based near the volume by the clipping)
    toward /= np.linalg.norm(toward, axis=1, keepdims=True)
    inside = lo + rng.uniform(0, 1, size=(count // 4, ndim)) * n * h
    origins.append(inside - 10.0 ** rng.uniform(4, 8, size=(count // 4, 1)) * toward)
    directions.append(toward)
    miss = lo + (n + 3) * h  # parallel to an axis, beyond the volume
    origins.append(np.tile(miss, (4, 1)))
    directions.append(np.eye(ndim)[np.arange(4) % ndim])
    return ct.rays(np.concatenate(origins), np.concatenate(directions))


CASES = {
    "2d": ct.VolumeGeometry((9, 8), voxel_size=(2.0, 0.5), center=(0.25, -0.5)),
    "3d": ct.VolumeGeometry((6, 7, 5), voxel_size=(0.5, 1.0, 2.0), center=(0.5, 0.25, -1.0)),
}


def geometries(vg: ct.VolumeGeometry) -> list[AnyGeometry]:
    out: list[AnyGeometry] = [awkward_rays(vg, 60, seed=vg.ndim)]
    angles = np.array([0.0, np.pi / 4, np.pi / 2, 0.3, np.pi])
    if vg.ndim == 2:
        out.append(ct.fan(angles, 13, 0.9, 2.0, 9.0))  # the source inside the volume: rays start there
    else:
        out.append(ct.cone(angles, (5, 6), 1.1, 2.0, 9.0))
    return out


def reference_pair(A: ct.Projector, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A x`` and ``A.T y`` by the reference twin, on the projector's own clipped rays."""
    engine = A._engine
    t, grid = engine.t, engine.grid
    segs = engine._ray_segments(engine.vectors(), 0, engine.num_rays(1), 1)  # in sinogram order
    forward = reference.project(grid, t, segs, t.Float(x.ravel()))
    target = dr.zeros(t.Float, grid.size)
    reference.backproject(grid, t, segs, t.Float(y.ravel()), target)
    return forward.numpy().reshape(A.pg.shape), target.numpy().reshape(A.vg.shape)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_box_march_matches_reference(case: str, dtype: str) -> None:
    vg = CASES[case]
    rng = np.random.default_rng(1)
    for pg in geometries(vg):
        A = ct.Projector(vg, pg, basis="voxel", dtype=dtype)
        assert A._engine.pads(1)
        x = rng.random(vg.shape).astype(dtype)
        y = rng.random(pg.shape).astype(dtype)
        want_forward, want_adjoint = reference_pair(A, x, y)
        assert np.count_nonzero(want_forward) > 0.4 * want_forward.size
        # the same cells with the same lengths in the same order: the same bits (zero-length cells add 0)
        np.testing.assert_array_equal(A(x), want_forward)
        tol = 1e-12 if dtype == "float64" else 1e-5  # the scatters' summation order may differ
        np.testing.assert_allclose(A.T(y), want_adjoint, rtol=tol, atol=tol * np.abs(want_adjoint).max())


def test_general_march_matches_reference() -> None:
    """The general march (still the box's derivative march, and PET's) keeps the reference's cells and lengths."""
    vg = CASES["3d"]
    pg = geometries(vg)[0]
    A = ct.Projector(vg, pg, basis="voxel", dtype="float64")
    engine = A._engine
    x = np.random.default_rng(2).random(vg.shape)
    segs = engine._ray_segments(engine.vectors(), 0, engine.num_rays(1), 1)
    got = march.project(engine.grid, engine.t, segs, engine.t.Float(x.ravel())).numpy()
    np.testing.assert_array_equal(got, reference_pair(A, x, np.zeros(pg.shape))[0].ravel())


@pytest.mark.parametrize("basis", ["voxel", "linear", "bspline2"])
@pytest.mark.parametrize("case", list(CASES))
def test_batches_use_their_own_volume(case: str, basis: str) -> None:
    """Leading batch dimensions: each sample's rays read and write its own (padded) copy, also when a cone
    beam's rays are marched detector row by row."""
    vg = CASES[case]
    pg = geometries(vg)[1]
    A = ct.Projector(vg, pg, basis=basis, dtype="float64")
    rng = np.random.default_rng(3)
    x, y = rng.random((3, *vg.shape)), rng.random((3, *pg.shape))
    np.testing.assert_array_equal(A(x), np.stack([A(s) for s in x]))
    np.testing.assert_allclose(A.T(y), np.stack([A.T(s) for s in y]), rtol=1e-12, atol=1e-12)


def test_padded_copy_round_trip() -> None:
    """The padded copy holds the volume inside zero layers, and cropping takes back exactly the volume."""
    vg = CASES["3d"]
    A = ct.Projector(vg, geometries(vg)[1], basis="voxel", dtype="float64")
    t, grid = A._engine.t, A._engine.grid
    x = np.random.default_rng(4).random((2, *vg.shape))
    padded = padding.pad(grid, t, t.Float(x.ravel()), batch=2)
    assert dr.width(padded) == 2 * padding.padded_size(grid)
    assert np.isclose(dr.sum(padded)[0], x.sum())
    shape = padding.padded_shape(grid)[::-1]
    inner = padded.numpy().reshape(2, *shape)
    margin = padding.layers(grid)
    np.testing.assert_array_equal(inner[(slice(None), *(slice(margin, -margin),) * vg.ndim)], x)
    back = padding.crop_add(grid, t, padded, dr.zeros(t.Float, grid.size * 2), batch=2)
    np.testing.assert_array_equal(back.numpy(), x.ravel())


@pytest.mark.parametrize("batch", [1, 3])
def test_cone_rays_march_row_by_row(batch: int) -> None:
    """3D projection geometries march detector rows across all views (cache locality); every ray once, and
    a lane's output position is its ray's place in the sinogram."""
    vg = CASES["3d"]
    pg = geometries(vg)[1]
    assert isinstance(pg, ct.ProjectionGeometry)
    engine = ct.Projector(vg, pg, basis="linear")._engine
    assert engine.rows_first
    rows, cols = pg.det_shape
    views = pg.num_rays // (rows * cols)
    position = engine._launch_order(0, engine.num_rays(batch), batch).numpy()
    np.testing.assert_array_equal(np.sort(position), np.arange(engine.num_rays(batch)))
    sample, rest = np.divmod(position, engine.rays_per_sample)
    view, pixel = np.divmod(rest, rows * cols)
    row, col = np.divmod(pixel, cols)
    lane = np.arange(engine.num_rays(batch))
    np.testing.assert_array_equal(sample, lane // engine.rays_per_sample)
    np.testing.assert_array_equal(col, lane % cols)
    np.testing.assert_array_equal(view, (lane // cols) % views)
    np.testing.assert_array_equal(row, (lane % engine.rays_per_sample) // (cols * views))
    assert not ct.Projector(CASES["2d"], geometries(CASES["2d"])[1])._engine.rows_first


def test_box_march_needs_free_memory_for_its_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the padded copy would take more than a quarter of the free memory, the voxel basis runs the
    general march (no copy), with the same result."""
    vg = CASES["3d"]
    pg = geometries(vg)[1]
    A = ct.Projector(vg, pg, basis="voxel", dtype="float64")
    x, y = np.random.default_rng(5).random(vg.shape), np.random.default_rng(6).random(pg.shape)
    forward, adjoint = A(x), A.T(y)
    copy = 8 * padding.padded_size(A._engine.grid)
    assert A._engine.pads(1) and A._engine.scratch_bytes(1, 8) == copy
    estimate = A.memory_estimate()
    monkeypatch.setattr(transform, "available_bytes", lambda: 4 * copy - 1)
    assert A._engine.pads(1)  # a small copy is made without asking (the call's memory check counts it)
    monkeypatch.setattr(transform, "SMALL_COPY", copy - 1)
    assert not A._engine.pads(1)
    assert estimate - A.memory_estimate() == copy
    np.testing.assert_array_equal(A(x), forward)
    np.testing.assert_allclose(A.T(y), adjoint, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["2d", "3d"])
def test_box_march_dense_transpose_float64(case: str) -> None:
    """The box march's ``A.T`` is the transpose of its ``A`` (float64, dense, small; cone rays row by row)."""
    vg = ct.VolumeGeometry((5, 4), voxel_size=(1.0, 0.5)) if case == "2d" else ct.VolumeGeometry((3, 4, 3))
    pg = ct.fan(np.array([0.0, np.pi / 4, 1.0]), 7, 0.9, 2.0, 9.0) if case == "2d" else geometries(CASES["3d"])[1]
    A = ct.Projector(vg, pg, basis="voxel", dtype="float64")
    assert A._engine.pads(1)
    n = int(np.prod(vg.shape))
    columns = np.stack([A(np.eye(1, n, c).reshape(vg.shape)).reshape(-1) for c in range(n)], axis=1)
    assert np.mean(np.any(columns != 0, axis=0)) > 0.5, "most voxels must be seen by some ray"
    np.testing.assert_allclose(transpose_rows(A), columns, rtol=0, atol=1e-12 * np.abs(columns).max())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("basis", ["linear", "bspline2", "bspline3"])
@pytest.mark.parametrize("case", list(CASES))
def test_padded_window_matches_the_masked_one(case: str, basis: str, dtype: str) -> None:
    """The B-spline window on a padded copy (no masks) against the window's masked gathers and scatters on the
    volume itself, the reference twin: on the awkward rays and a beam whose source lies inside the volume, for
    two volumes at once, the forward and the derivatives are the same bits and the adjoint the same sums (the
    scatters may add in another order)."""
    vg = CASES[case]
    rng = np.random.default_rng(7)
    for pg in geometries(vg):
        engine = ct.Projector(vg, pg, basis=basis, dtype=dtype)._engine
        assert engine.pads(2)
        t, grid = engine.t, engine.grid
        segs = engine._ray_segments(engine.vectors(), 0, engine.num_rays(2), 2)
        x = t.Float(rng.random(2 * grid.size).astype(dtype))
        y = t.Float(rng.random(engine.num_rays(2)).astype(dtype))
        padded = padding.pad(grid, t, x, batch=2)
        forward = march.project(grid, t, segs, x).numpy()
        assert np.count_nonzero(forward) > 0.3 * forward.size
        np.testing.assert_array_equal(march.project(grid, t, segs, padded, padded=True).numpy(), forward)

        want = dr.zeros(t.Float, 2 * grid.size)
        march.backproject(grid, t, segs, y, want)
        got = padding.zeros(grid, t, batch=2)
        march.backproject(grid, t, segs, y, got, padded=True)
        got = padding.crop_add(grid, t, got, 0.0, batch=2).numpy()
        tol = 1e-12 if dtype == "float64" else 1e-5
        np.testing.assert_allclose(got, want.numpy(), rtol=tol, atol=tol * float(np.abs(want.numpy()).max()))

        masked = derivatives.ray_derivatives(grid, t, segs, x, with_value=True)
        target = padding.zeros(grid, t, batch=2)
        unmasked = derivatives.ray_derivatives(grid, t, segs, padded, y, target, with_value=True, padded=True)
        for a, b in zip(
            (*masked.grad, *masked.moment, masked.f_start, masked.f_end, masked.value),
            (*unmasked.grad, *unmasked.moment, unmasked.f_start, unmasked.f_end, unmasked.value),
            strict=True,
        ):
            np.testing.assert_array_equal(b.numpy(), a.numpy())
        np.testing.assert_allclose(padding.crop_add(grid, t, target, 0.0, batch=2).numpy(), got, rtol=tol, atol=tol)


def test_padded_copies_are_asked_for_only_where_they_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the padded copy would take more than a quarter of the free memory, the B-spline bases march the
    volume itself with masks: the same projection, and the memory estimate drops by the copy."""
    vg = CASES["3d"]
    pg = geometries(vg)[1]
    A = ct.Projector(vg, pg, basis="bspline2", dtype="float64")
    x = np.random.default_rng(8).random(vg.shape)
    forward = A(x)
    copy = 8 * padding.padded_size(A._engine.grid)
    estimate = A.memory_estimate()
    monkeypatch.setattr(transform, "available_bytes", lambda: 4 * copy - 1)
    monkeypatch.setattr(transform, "SMALL_COPY", copy - 1)
    assert not A._engine.pads(1)
    np.testing.assert_array_equal(A(x), forward)
    assert estimate - A.memory_estimate() == copy


@pytest.mark.parametrize("basis", ["linear", "bspline2", "bspline3"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_guard_layers_weigh_in_only_by_rounding(case: str, basis: str) -> None:
    """The padded copy's guard layers (beyond the knot grid's zero border) are read only where the march gives
    them a weight of rounding size (a cell a rounded crossing stepped into, the far face of a cell the ray ends
    in): filled with 1e6 instead of zeros, the forward is still the masked window's bits and the derivatives
    move by at most 1e6 times a few ulps of their scale (the linear basis's slopes over an ulp-long segment).
    Their zeros are what make the padded march the masked one's bits."""
    vg = CASES[case]
    for pg in geometries(vg):
        engine = ct.Projector(vg, pg, basis=basis, dtype="float64")._engine
        t, grid = engine.t, engine.grid
        segs = engine._ray_segments(engine.vectors(), 0, engine.num_rays(1), 1)
        x = np.random.default_rng(10).random(grid.size)
        shape, layers, guard = padding.padded_shape(grid)[::-1], padding.layers(grid), padding.GUARD
        copy = np.full(shape, 1e6)
        copy[tuple(slice(guard, n - guard) for n in shape)] = 0.0  # the knot grid's border: zeros
        copy[tuple(slice(layers, n - layers) for n in shape)] = x.reshape(grid.shape[::-1])
        padded = t.Float(copy.ravel())
        want = derivatives.ray_derivatives(grid, t, segs, t.Float(x), with_value=True)
        got = derivatives.ray_derivatives(grid, t, segs, padded, with_value=True, padded=True)
        assert np.count_nonzero(want.value.numpy()) > 0.3 * dr.width(want.value)
        np.testing.assert_array_equal(march.project(grid, t, segs, padded, padded=True).numpy(), want.value.numpy())
        np.testing.assert_array_equal(got.value.numpy(), want.value.numpy())
        for a, b in zip(
            (*want.grad, *want.moment, want.f_start, want.f_end),
            (*got.grad, *got.moment, got.f_start, got.f_end),
            strict=True,
        ):
            scale = max(1.0, float(np.abs(a.numpy()).max()))  # a moment's weights grow with the ray's length
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=0, atol=1e6 * 1e-14 * scale)
