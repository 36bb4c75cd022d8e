"""The gather adjoint of the box basis for 2D fan beams (drct.kernels.fan_footprints) is the forward's transpose.

The ray-driven scatter adjoint (``Transform.backproject(..., scatter=True)``) is the reference twin: both must give
the forward's dense matrix, transposed, to float64 rounding — on odd and even grids, anisotropic voxels, shifted
detectors and pitches, at angles where rays run exactly along pixel edges (0, π/4, π/2, π), and with the source
close to the volume (many candidate columns, views with different numbers of them)."""

from __future__ import annotations

import numpy as np
import pytest
from test_footprint_adjoint import _dense, assert_transposes

import drct as ct
from drct.geometry.projection import host_rows
from drct.kernels.fan_footprints import FanFootprints, column_map, covers, reach

EDGES = np.array([0.0, np.pi / 4, np.pi / 2, np.pi, 3 * np.pi / 2, 1e-7, np.pi / 2 + 1e-6, 2.0])


def _shifted(pg: ct.ProjectionGeometry, offset: float) -> ct.ProjectionGeometry:
    """``pg`` with the detector moved ``offset`` columns along its rows (a detector offset)."""
    vectors = pg.to_vectors()
    vectors[:, 2:4] += offset * vectors[:, 4:6]
    return ct.from_vectors(vectors, pg.det_shape[-1], beam="cone")


CASES = {
    "even grid, odd detector (central rays on pixel edges)": (
        ct.VolumeGeometry((6, 6)),
        ct.fan(EDGES, 9, 1.5, 30.0, 60.0),
    ),
    "odd x even grid, even detector": (ct.VolumeGeometry((6, 5)), ct.fan(EDGES, 12, 1.0, 25.0, 45.0)),
    "anisotropic, off-centre, det 0.65": (
        ct.VolumeGeometry((7, 4), voxel_size=(1.3, 0.7), center=(0.4, -0.3)),
        ct.fan(EDGES, 17, 0.65, 20.0, 35.0),
    ),
    "detector offset, det 2.1, random directions": (
        ct.VolumeGeometry((5, 7)),
        _shifted(ct.fan(np.random.default_rng(1).uniform(0, 2 * np.pi, 12), 8, 2.1, 30.0, 50.0), 0.5),
    ),
    "source close to the volume (9 candidates)": (
        ct.VolumeGeometry((6, 6)),
        ct.fan(np.array([0.0, np.pi / 4, np.pi / 2, np.pi, 0.3, 1.0]), 15, 1.0, 6.2, 16.0),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_dense_gather_adjoint_is_the_forward_transpose(case: str) -> None:
    vg, pg = CASES[case]
    A = ct.Projector(vg, pg, basis="voxel", dtype="float64")
    assert isinstance(A._engine.footprints, FanFootprints), "this operator must take the fan gather adjoint"
    assert_transposes(A)


def test_views_in_classes_and_near_axis_rays() -> None:
    """The off-centre volume gives views with different numbers of candidate columns (3, 5 or 6 here): the views
    with fewer than the most are looped apart with one candidate less; the edge angles give near-axis rays,
    walked by the forward's DDA."""
    vg, pg = CASES["anisotropic, off-centre, det 0.65"]
    engine = ct.Projector(vg, pg, basis="voxel", dtype="float64")._engine
    fp = engine.footprints
    assert isinstance(fp, FanFootprints)
    plan = fp.plan(engine.vectors(), 0, pg.num_views)
    assert sorted(set(fp.view_taps.tolist())) == [3, 5, 6]
    assert [taps for taps, _ in plan.classes] == [5, 6]
    assert plan.near is not None and 0 < len(fp.near_rays) < pg.num_rays // 4


def test_near_axis_rays_need_the_dda() -> None:
    """Rays that run nearly along pixel edges: the closed-form chord is steep there (``|D| / |D_x D_y|`` large),
    so the DDA's rounding and the trapezoid's disagree far beyond float64 rounding — the reason those rays are
    walked by the forward's DDA (and exactly axis-aligned rays would have an infinite weight)."""
    vg = ct.VolumeGeometry((6, 6))
    pg = ct.fan(np.array([1e-9, np.pi / 2 + 1e-9]), 9, 1.5, 30.0, 60.0)  # central rays along the middle edge
    A = ct.Projector(vg, pg, basis="voxel", dtype="float64")
    fp = A._engine.footprints
    assert isinstance(fp, FanFootprints) and len(fp.near_rays)
    forward, gather, _ = _dense(A)
    scale = float(np.abs(forward).max())
    np.testing.assert_allclose(gather, forward, rtol=0, atol=1e-12 * scale)
    # the same rays through the trapezoid (their weight as for any other ray, no DDA walk)
    src, det, det_u = (np.asarray(host_rows(v), dtype=np.float64) for v in (pg.src, pg.det, pg.det_u))
    u = np.arange(9) - 4.0
    d = det[:, None, :] + u[None, :, None] * det_u[:, None, :] - src[:, None, :]
    d = d / np.linalg.norm(det - src, axis=1)[:, None, None]  # the kernel's scale: |D| = 1 on the middle column
    weight = np.hypot(d[..., 0], d[..., 1]) / np.abs(2 * d[..., 0] * d[..., 1])
    near = fp.near_rays
    fp.weights = A.types.Float(weight.ravel())
    fp.near_rays = near[:0]
    fp._plans.clear()
    _, trapezoid, _ = _dense(A)
    others = np.setdiff1d(np.arange(pg.num_rays), near)
    np.testing.assert_allclose(trapezoid[others], forward[others], rtol=0, atol=1e-12 * scale)
    assert float(np.abs(trapezoid[near] - forward[near]).max()) > 1e-8 * scale


def test_reach_bounds_every_pixel() -> None:
    """Every pixel's corners land within the view's reach of its centre's column (the host bound, checked here
    against all pixels of a close-source geometry with anisotropic voxels)."""
    vg = ct.VolumeGeometry((23, 17), voxel_size=(0.8, 1.2))
    pg = ct.fan(np.linspace(0, 2 * np.pi, 37, endpoint=False), 40, 0.9, 24.0, 50.0)
    assert covers(vg, pg, 0)
    m = column_map(vg, pg)
    bound = reach(vg, pg, m)
    nx, ny = vg.shape_xyz
    x, y = np.meshgrid(np.arange(nx) - (nx - 1) / 2, np.arange(ny) - (ny - 1) / 2, indexing="ij")
    x, y = x.ravel(), y.ravel()

    def columns(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        a, b, c, p, q = (m[:, i, None] for i in range(5))
        return (a * px + b * py + c) / (p * px + q * py + 1)

    centre = columns(x, y)
    spread = np.max([np.abs(columns(x + dx, y + dy) - centre) for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)], axis=0)
    worst = spread.max(axis=1)
    assert np.all(worst <= bound) and np.all(bound <= 1.002 * worst)
    # the map itself: the column of the middle pixel is where the forward's central-column ray lands
    middle = columns(np.zeros(1), np.zeros(1))[:, 0]
    assert np.allclose(middle, (pg.det_shape[-1] - 1) / 2, atol=1e-9)


def test_gather_equals_scatter_float32_and_float64() -> None:
    vg = ct.VolumeGeometry((33, 40), voxel_size=(0.9, 1.1))
    pg = ct.fan(np.linspace(0, 2 * np.pi, 45, endpoint=False), 57, 1.2, 60.0, 110.0)
    y = np.random.default_rng(3).random(pg.shape)
    # float32: the forward's DDA rounds crossings in float32 (errors of 1e-5 of a chord, DESIGN.md)
    for dtype, tol in (("float64", 1e-12), ("float32", 3e-5)):
        A = ct.Projector(vg, pg, basis="voxel", dtype=dtype)
        assert isinstance(A._engine.footprints, FanFootprints)
        engine = A._engine
        gather = A.T(y.astype(dtype))
        scatter = engine.backproject(A.types.Float(y.ravel().astype(dtype)), engine.vectors(), scatter=True)
        want = scatter.numpy().reshape(vg.shape)
        np.testing.assert_allclose(gather, want, rtol=0, atol=tol * float(np.abs(want).max()))


@pytest.mark.parametrize(
    ("basis", "geometry"),
    [
        ("linear", ct.fan(np.linspace(0, 2 * np.pi, 6, endpoint=False), 12, 1.0, 30.0, 60.0)),
        ("voxel", ct.fan(np.linspace(0, 2 * np.pi, 6, endpoint=False), 12, 0.02, 30.0, 60.0, curved=True)),
        ("voxel", ct.fan(np.linspace(0, 2 * np.pi, 6, endpoint=False), 12, 1.0, 5.0, 60.0)),  # source in the box
        ("voxel", ct.fan(np.linspace(0, 2 * np.pi, 6, endpoint=False), 12, 1.0, 30.0, 33.0)),  # detector in it
        ("voxel", ct.fan(np.linspace(0, 2 * np.pi, 6, endpoint=False), 200, 0.1, 30.0, 60.0)),  # 20 candidates
    ],
)
def test_other_fan_operators_keep_the_scatter(basis: str, geometry: ct.ProjectionGeometry) -> None:
    """Only the box basis, flat detectors, the volume's knot box between every source and detector line, and at
    most MAX_TAPS candidate columns per pixel (finer detectors: the scatter is faster)."""
    A = ct.Projector(ct.VolumeGeometry((8, 8)), geometry, basis=basis)
    assert A._engine.footprints is None


def test_partial_view_ranges_match_the_whole() -> None:
    """Views ``first .. first + count`` (the batches' per-sample calls): the classes and near-axis rays of a
    range are its own; the parts add up to the whole."""
    vg, pg = CASES["source close to the volume (9 candidates)"]
    A = ct.Projector(vg, pg, basis="voxel", dtype="float64")
    fp = A._engine.footprints
    assert isinstance(fp, FanFootprints)
    y = np.random.default_rng(12).random(pg.shape).ravel()
    vectors = A._engine.vectors()
    whole = fp.backproject(A.types.Float(y), vectors).numpy()
    parts = sum(
        fp.backproject(A.types.Float(y[first * 15 :]), vectors, 0, first, count).numpy()
        for first, count in ((0, 2), (2, 3), (5, 1))
    )
    np.testing.assert_allclose(parts, whole, rtol=0, atol=1e-12 * float(np.abs(whole).max()))
