"""The gather adjoints of the box, linear and quadratic B-spline bases for 2D fan beams (drct.kernels.fan_footprints,
fan_hat) are the forward's transpose.

The quadratic's gather is not dispatched (measured no faster than the scatter): the tests of bspline2 dispatch it
for their duration (:func:`_dispatch`).

The ray-driven scatter adjoint (``Transform.backproject(..., scatter=True)``) is the reference twin: both must give
the forward's dense matrix, transposed, to float64 rounding — on odd and even grids, anisotropic voxels, shifted
detectors and pitches, at angles where rays run exactly along pixel edges (0, π/4, π/2, π), and with the source
close to the volume (many candidate columns, views with different numbers of them)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import adjoints_from_threads, assert_adjoint_float32
from test_footprint_adjoint import _dense, assert_transposes, small_fans_take_the_gather  # noqa: F401 (autouse)

import drct as ct
from drct.geometry.projection import host_rows
from drct.kernels import fan_hat
from drct.kernels.fan_footprints import FanFootprints, column_map, depth, knot_box, reach
from drct.kernels.fan_hat import FanHatFootprints, FanQuadraticFootprints

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
    "source close to the volume, det 1.5 (9-10 candidates for the hat)": (
        ct.VolumeGeometry((6, 6)),
        ct.fan(np.array([0.0, np.pi / 4, np.pi / 2, np.pi, 0.3, 1.0]), 11, 1.5, 7.0, 16.0),
    ),
    "anisotropic, off-centre, det 0.9, source 25": (
        ct.VolumeGeometry((7, 4), voxel_size=(1.3, 0.7), center=(0.4, -0.3)),
        ct.fan(EDGES, 17, 0.9, 25.0, 45.0),
    ),
    "source close to the volume, det 1.8 (9-10 candidates for bspline2)": (
        ct.VolumeGeometry((6, 6)),
        ct.fan(np.array([0.0, np.pi / 4, np.pi / 2, np.pi, 0.3, 1.0]), 11, 1.8, 8.5, 18.0),
    ),
}
TOO_CLOSE = {  # the bases whose supports reach too close to the source (or need too many candidates): the scatter
    "anisotropic, off-centre, det 0.65": {"bspline2"},
    "source close to the volume (9 candidates)": {"linear", "bspline2"},
    "source close to the volume, det 1.5 (9-10 candidates for the hat)": {"bspline2"},
}


BASES = {"voxel": FanFootprints, "linear": FanHatFootprints, "bspline2": FanQuadraticFootprints}


def _dispatch(basis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """For ``bspline2``: let the transform take the quadratic's gather (not dispatched by default)."""
    if basis == "bspline2":
        monkeypatch.setitem(fan_hat.FAN_FOOTPRINTS, 2, FanQuadraticFootprints)


@pytest.mark.parametrize("basis", list(BASES))
@pytest.mark.parametrize("case", list(CASES))
def test_dense_gather_adjoint_is_the_forward_transpose(case: str, basis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _dispatch(basis, monkeypatch)
    vg, pg = CASES[case]
    A = ct.Projector(vg, pg, basis=basis, dtype="float64")
    if basis in TOO_CLOSE.get(case, ()):
        assert A._engine.footprints is None
        return
    assert type(A._engine.footprints) is BASES[basis], "this operator must take the fan gather adjoint"
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


@pytest.mark.parametrize("degree", [0, 1, 2])
def test_reach_bounds_every_pixel(degree: int) -> None:
    """Every pixel's support corners (``(degree + 1) / 2`` pixels from the centre along each axis) land within the
    view's reach of its centre's column (the host bound, checked here against all pixels of a close-source
    geometry with anisotropic voxels)."""
    vg = ct.VolumeGeometry((23, 17), voxel_size=(0.8, 1.2))
    pg = ct.fan(np.linspace(0, 2 * np.pi, 37, endpoint=False), 40, 0.9, 24.0, 50.0)
    assert np.all(depth(pg, knot_box(vg, degree)) > 0.1)  # the supports in front of every source
    m = column_map(vg, pg)
    bound = reach(vg, pg, m, degree)
    half = (degree + 1) / 2
    nx, ny = vg.shape_xyz
    x, y = np.meshgrid(np.arange(nx) - (nx - 1) / 2, np.arange(ny) - (ny - 1) / 2, indexing="ij")
    x, y = x.ravel(), y.ravel()

    def columns(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        a, b, c, p, q = (m[:, i, None] for i in range(5))
        return (a * px + b * py + c) / (p * px + q * py + 1)

    centre = columns(x, y)
    spread = np.max([np.abs(columns(x + dx, y + dy) - centre) for dx in (-half, half) for dy in (-half, half)], axis=0)
    worst = spread.max(axis=1)
    assert np.all(worst <= bound) and np.all(bound <= 1.002 * worst)
    # the map itself: the column of the middle pixel is where the forward's central-column ray lands
    middle = columns(np.zeros(1), np.zeros(1))[:, 0]
    assert np.allclose(middle, (pg.det_shape[-1] - 1) / 2, atol=1e-9)


@pytest.mark.parametrize("basis", list(BASES))
def test_gather_equals_scatter_float32_and_float64(basis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _dispatch(basis, monkeypatch)
    vg = ct.VolumeGeometry((33, 40), voxel_size=(0.9, 1.1))
    pg = ct.fan(np.linspace(0, 2 * np.pi, 45, endpoint=False), 57, 1.2, 60.0, 110.0)
    y = np.random.default_rng(3).random(pg.shape)
    # float32: the forward's DDA rounds crossings in float32 (errors of 1e-5 of a chord, DESIGN.md)
    for dtype, tol in (("float64", 1e-12), ("float32", 3e-5)):
        A = ct.Projector(vg, pg, basis=basis, dtype=dtype)
        assert type(A._engine.footprints) is BASES[basis]
        engine = A._engine
        gather = A.T(y.astype(dtype))
        scatter = engine.backproject(A.types.Float(y.ravel().astype(dtype)), engine.vectors(), scatter=True)
        want = scatter.numpy().reshape(vg.shape)
        np.testing.assert_allclose(gather, want, rtol=0, atol=tol * float(np.abs(want).max()))


@pytest.mark.parametrize(
    ("basis", "geometry"),
    [
        ("bspline2", ct.fan(np.linspace(0, 2 * np.pi, 6, endpoint=False), 12, 1.0, 30.0, 60.0)),  # not dispatched
        ("bspline3", ct.fan(np.linspace(0, 2 * np.pi, 6, endpoint=False), 12, 1.0, 30.0, 60.0)),
        ("linear", ct.fan(np.linspace(0, 2 * np.pi, 6, endpoint=False), 12, 0.02, 30.0, 60.0, curved=True)),
        ("linear", ct.fan(np.linspace(0, 2 * np.pi, 6, endpoint=False), 12, 1.0, 7.0, 60.0)),  # hats reach the source
        ("voxel", ct.fan(np.linspace(0, 2 * np.pi, 6, endpoint=False), 12, 0.02, 30.0, 60.0, curved=True)),
        ("voxel", ct.fan(np.linspace(0, 2 * np.pi, 6, endpoint=False), 12, 1.0, 5.0, 60.0)),  # source in the box
        ("voxel", ct.fan(np.linspace(0, 2 * np.pi, 6, endpoint=False), 12, 1.0, 30.0, 33.0)),  # detector in it
        ("voxel", ct.fan(np.linspace(0, 2 * np.pi, 6, endpoint=False), 200, 0.1, 30.0, 60.0)),  # 20 candidates
    ],
)
def test_other_fan_operators_keep_the_scatter(basis: str, geometry: ct.ProjectionGeometry) -> None:
    """Only the box and linear bases, flat detectors, the volume's knot box between every source and detector
    line, and at most MAX_TAPS candidate columns per pixel (finer detectors: the scatter is faster)."""
    A = ct.Projector(ct.VolumeGeometry((8, 8)), geometry, basis=basis)
    assert A._engine.footprints is None


@pytest.mark.parametrize("basis", list(BASES))
def test_partial_view_ranges_match_the_whole(basis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Views ``first .. first + count`` (the batches' per-sample calls): the classes and near-axis rays of a
    range are its own; the parts add up to the whole."""
    _dispatch(basis, monkeypatch)
    det = "1.8 (9-10 candidates for bspline2)" if basis == "bspline2" else "1.5 (9-10 candidates for the hat)"
    vg, pg = CASES[f"source close to the volume, det {det}"]
    A = ct.Projector(vg, pg, basis=basis, dtype="float64")
    fp = A._engine.footprints
    assert isinstance(fp, FanFootprints)
    y = np.random.default_rng(12).random(pg.shape).ravel()
    vectors = A._engine.vectors()
    whole = fp.backproject(A.types.Float(y), vectors).numpy()
    parts = sum(
        fp.backproject(A.types.Float(y[first * 11 :]), vectors, 0, first, count).numpy()
        for first, count in ((0, 2), (2, 3), (5, 1))
    )
    np.testing.assert_allclose(parts, whole, rtol=0, atol=1e-12 * float(np.abs(whole).max()))


def _fan(views: int, cols: int, n: int) -> ct.ProjectionGeometry:
    """A full-orbit flat fan scan of an ``n``-pixel-wide volume (magnification 2, every pixel seen)."""
    return ct.fan(np.linspace(0, 2 * np.pi, views, endpoint=False), cols, 2.9 * n / cols, 1.6 * n, 3.2 * n)


@pytest.mark.parametrize("basis", ["linear", "bspline2"])
def test_smooth_bases_rays_exactly_along_an_axis(basis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rays exactly along a grid axis (``b = 0``: angle 0 and the middle column of an odd detector, whose
    direction has an exact zero) and nearly so (1e-9, 1e-7 rad) take the closed form like every other ray: its
    limit (the narrow factor's terms vanish), finite, the forward's transpose — in float64 and in float32
    (against float64)."""
    _dispatch(basis, monkeypatch)
    vg = ct.VolumeGeometry((6, 7))
    pg = ct.fan(np.array([0.0, 1e-9, np.pi / 2 + 1e-7, np.pi, 3 * np.pi / 2, 1e-4]), 9, 1.5, 30.0, 60.0)
    A = ct.Projector(vg, pg, basis=basis, dtype="float64")
    fp = A._engine.footprints
    assert isinstance(fp, FanHatFootprints) and len(fp.near_rays) == 0
    assert np.any(np.abs(pg.to_vectors()[:, :2] - pg.to_vectors()[:, 2:4]).min(axis=1) == 0)  # an exact zero
    assert_transposes(A)
    y = np.random.default_rng(13).random(pg.shape)
    single = ct.Projector(vg, pg, basis=basis, dtype="float32").T(y.astype(np.float32))
    want = A.T(y)
    assert np.all(np.isfinite(single))
    np.testing.assert_allclose(single, want, rtol=0, atol=2e-6 * float(np.abs(want).max()))


@pytest.mark.parametrize("basis", list(BASES))
def test_float32_adjoint_test(basis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _dispatch(basis, monkeypatch)
    A = ct.Projector(ct.VolumeGeometry((64, 64)), _fan(90, 100, 64), basis=basis)
    assert type(A._engine.footprints) is BASES[basis]
    assert_adjoint_float32(A, seed=4)


def _shifted_stack(pg: ct.ProjectionGeometry, offsets: tuple[float, ...]) -> list[ct.ProjectionGeometry]:
    return [_shifted(pg, s) for s in offsets]


@pytest.mark.parametrize("basis", ["linear", "bspline2"])
def test_smooth_bases_batches_shared_and_stacked_geometry(basis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _dispatch(basis, monkeypatch)
    vg = ct.VolumeGeometry((11, 9))
    pg = _fan(10, 16, 11)
    ys = np.random.default_rng(5).random((3, *pg.shape))
    A = ct.Projector(vg, pg, basis=basis, dtype="float64")
    assert isinstance(A._engine.footprints, FanHatFootprints)
    np.testing.assert_allclose(A.T(ys), np.stack([A.T(y) for y in ys]), rtol=0, atol=1e-12)
    singles = _shifted_stack(pg, (0.0, 0.3, -1.2))  # one geometry per sample, each shifted differently
    stacked = ct.from_vectors(np.concatenate([g.to_vectors() for g in singles]), pg.det_shape[-1], beam="cone")
    B = ct.Projector(vg, stacked, basis=basis, dtype="float64", batch=3)
    assert isinstance(B._engine.footprints, FanHatFootprints)
    want = [ct.Projector(vg, g, basis=basis, dtype="float64").T(y) for g, y in zip(singles, ys, strict=True)]
    np.testing.assert_allclose(B.T(ys), np.stack(want), rtol=0, atol=1e-12 * float(np.abs(want).max()))


@pytest.mark.parametrize("basis", ["linear", "bspline2"])
def test_smooth_bases_threads_get_the_single_threaded_bits(basis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No scatters (no near-axis rays for the smooth bases): the same bits whatever the threads do,
    deterministic or not."""
    _dispatch(basis, monkeypatch)
    pg = _fan(40, 70, 48)
    A = ct.Projector(ct.VolumeGeometry((48, 48)), pg, basis=basis)
    assert isinstance(A._engine.footprints, FanHatFootprints)
    rng = np.random.default_rng(8)
    ys = [rng.random(pg.shape, dtype=np.float32) for _ in range(4)]
    want = [A.T(y) for y in ys]
    for got, w in zip(adjoints_from_threads(A, ys), want, strict=True):
        np.testing.assert_array_equal(got, w)
    with ct.deterministic():
        np.testing.assert_array_equal(A.T(ys[0]), want[0])
