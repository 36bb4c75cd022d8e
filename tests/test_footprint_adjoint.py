"""The gather adjoints of the box and linear bases (drct.kernels.footprints) are the forward's transposes.

The ray-driven scatter adjoint (``Transform.backproject(..., scatter=True)``, the kernel every other operator
uses) is the reference twin: both must give the forward's dense matrix, transposed, to float64 rounding — also
for rays that run exactly along pixel edges (angles 0, π/2, π on grids whose pixel edges meet the rays), where
the forward's DDA puts a ray in one of two pixels by its own convention."""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np
import pytest
from conftest import adjoints_from_threads, assert_adjoint_float32

import drct as ct
from drct.geometry.projection import host_rows
from drct.kernels import fan_hat, footprints
from drct.kernels.fan_footprints import FanFootprints


@pytest.fixture(autouse=True)
def small_fans_take_the_gather(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check the fan gathers on small problems, where ``A.T`` takes the scatter by default (the box
    basis below :data:`drct.kernels.fan_hat.MIN_WORK`): every size takes the gather for their duration
    (tests/test_fan_footprints.py imports this fixture too)."""
    monkeypatch.setattr(fan_hat, "MIN_WORK", {})


def _dense(A: ct.Projector) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The forward's matrix (rays x pixels) and the two adjoints' transposes, float64, from unit vectors."""
    n, m = int(np.prod(A.domain_shape)), int(np.prod(A.range_shape))
    forward = A(np.eye(n).reshape(n, *A.domain_shape)).reshape(n, m).T
    gather = A.T(np.eye(m).reshape(m, *A.range_shape)).reshape(m, n)
    engine = A._engine
    scatter = np.stack(
        [engine.backproject(A.types.Float(row), engine.vectors(), scatter=True).numpy() for row in np.eye(m)]
    )
    return forward, gather, scatter


def _shifted(pg: ct.ProjectionGeometry, offset: float) -> ct.ProjectionGeometry:
    """``pg`` with the detector moved ``offset`` columns along its rows (a detector offset)."""
    vectors = pg.to_vectors()
    vectors[:, 2:4] += offset * vectors[:, 4:6]
    return ct.from_vectors(vectors, pg.det_shape[-1], beam="parallel" if pg.beam == "parallel" else "cone")


def _geometry(beam: str, views: int, cols: int, n: int) -> ct.ProjectionGeometry:
    """A 2D parallel or flat fan-beam scan of an ``n``-pixel-wide volume (the fan: magnification 2, every pixel
    seen, the source and detector outside the volume's box)."""
    if beam == "parallel":
        return ct.parallel(np.linspace(0, np.pi, views, endpoint=False), cols)
    return ct.fan(np.linspace(0, 2 * np.pi, views, endpoint=False), cols, 2.9 * n / cols, 1.6 * n, 3.2 * n)


EDGES = np.array([0.0, np.pi / 4, np.pi / 2, np.pi, 3 * np.pi / 4, 1e-7, np.pi / 2 + 1e-6])
CASES = {
    "even grid, odd detector (rays on pixel edges)": (ct.VolumeGeometry((6, 6)), ct.parallel(EDGES, 7)),
    "odd x even grid": (ct.VolumeGeometry((6, 5)), ct.parallel(EDGES, 9)),
    "anisotropic, off-centre, det 0.65": (
        ct.VolumeGeometry((7, 4), voxel_size=(1.3, 0.7), center=(0.4, -0.3)),
        ct.parallel(EDGES, 11, 0.65),
    ),
    "detector offset, det 1.7, all directions": (
        ct.VolumeGeometry((5, 7)),
        _shifted(ct.parallel(np.random.default_rng(1).uniform(0, 2 * np.pi, 12), 6, 1.7), 0.5),
    ),
    "det 0.45 (four candidate columns)": (
        ct.VolumeGeometry((9, 8)),
        ct.parallel(np.random.default_rng(2).uniform(0, 2 * np.pi, 16), 15, 0.45),
    ),
}


def assert_transposes(A: ct.Projector) -> None:
    """The dense gather and scatter adjoints both equal the forward's transpose (float64, to 1e-12)."""
    forward, gather, scatter = _dense(A)
    scale = float(np.abs(forward).max())
    assert np.count_nonzero(forward) > forward.shape[0], "the test rays must see the volume"
    np.testing.assert_allclose(gather, forward, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(scatter, forward, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("basis", ["voxel", "linear"])
@pytest.mark.parametrize("case", list(CASES))
def test_dense_gather_adjoint_is_the_forward_transpose(case: str, basis: str) -> None:
    vg, pg = CASES[case]
    A = ct.Projector(vg, pg, basis=basis, dtype="float64")
    assert A._engine.footprints is not None, "this operator must take the gather adjoint"
    assert_transposes(A)


def test_exact_path_reproduces_edge_conventions() -> None:
    """Near-axis views take the DDA's own ray records; the trapezoid alone (a footprint sampled at the ray)
    disagrees with the forward there by whole chords — the reason the exact path exists."""
    vg, pg = CASES["even grid, odd detector (rays on pixel edges)"]
    A = ct.Projector(vg, pg, basis="voxel", dtype="float64")
    fp = A._engine.footprints
    assert isinstance(fp, footprints.BoxFootprints)
    assert fp.exact.tolist() == [True, False, True, True, False, True, True]
    forward, gather, _ = _dense(A)
    np.testing.assert_allclose(gather, forward, rtol=0, atol=1e-12)
    # the same views forced through the trapezoid are off by up to a whole chord
    fp.exact[:] = False
    fp.slope = np.where(fp.slope == 0, 1e30, fp.slope)
    fp.peak = fp.slope * fp.outer
    fp._plans.clear()  # the per-view parameters are kept between calls
    _, trapezoid, _ = _dense(A)
    assert float(np.abs(trapezoid - forward).max()) > 0.5


@pytest.mark.parametrize("basis", ["voxel", "linear"])
def test_gather_equals_scatter_float32_and_float64(basis: str) -> None:
    vg = ct.VolumeGeometry((33, 40), voxel_size=(0.9, 1.1))
    pg = ct.parallel(np.linspace(0, np.pi, 45, endpoint=False), 57, 1.2)
    y = np.random.default_rng(3).random(pg.shape)
    # float32: the forward's DDA rounds crossings in float32 (errors of 1e-5 of a chord, DESIGN.md)
    for dtype, tol in (("float64", 1e-12), ("float32", 3e-5)):
        A = ct.Projector(vg, pg, basis=basis, dtype=dtype)
        engine = A._engine
        gather = A.T(y.astype(dtype))
        scatter = engine.backproject(A.types.Float(y.ravel().astype(dtype)), engine.vectors(), scatter=True)
        want = scatter.numpy().reshape(vg.shape)
        np.testing.assert_allclose(gather, want, rtol=0, atol=tol * float(np.abs(want).max()))


@pytest.mark.parametrize(("beam", "basis"), [("parallel", "voxel"), ("parallel", "linear"), ("fan", "voxel")])
def test_float32_adjoint_test(beam: str, basis: str) -> None:
    A = ct.Projector(ct.VolumeGeometry((64, 64)), _geometry(beam, 90, 100, 64), basis=basis)
    assert A._engine.footprints is not None
    assert_adjoint_float32(A, seed=4)


@pytest.mark.parametrize("beam", ["parallel", "fan"])
def test_batches_shared_and_stacked_geometry(beam: str) -> None:
    vg = ct.VolumeGeometry((11, 9))
    pg = _geometry(beam, 10, 16, 11)
    rng = np.random.default_rng(5)
    ys = rng.random((3, *pg.shape))
    A = ct.Projector(vg, pg, basis="voxel", dtype="float64")
    np.testing.assert_allclose(A.T(ys), np.stack([A.T(y) for y in ys]), rtol=0, atol=1e-12)
    # one geometry per sample: each sample's views shifted differently
    singles = [_shifted(pg, s) for s in (0.0, 0.3, -1.2)]
    vectors = np.concatenate([g.to_vectors() for g in singles])
    stacked = ct.from_vectors(vectors, pg.det_shape[-1], beam="parallel" if beam == "parallel" else "cone")
    B = ct.Projector(vg, stacked, basis="voxel", dtype="float64", batch=3)
    assert B._engine.footprints is not None
    want = np.stack(
        [ct.Projector(vg, g, basis="voxel", dtype="float64").T(y) for g, y in zip(singles, ys, strict=True)]
    )
    np.testing.assert_allclose(B.T(ys), want, rtol=0, atol=1e-12)


GATHERED = [("parallel", "voxel"), ("parallel", "linear"), ("fan", "voxel"), ("fan", "linear")]
"""The (beam, basis) pairs with a gather adjoint."""


@pytest.mark.parametrize(("beam", "basis"), GATHERED)
def test_scatter_forced_by_keyword_and_environment(beam: str, basis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    vg = ct.VolumeGeometry((8, 8))
    pg = _geometry(beam, 6, 12, 8)
    A = ct.Projector(vg, pg, basis=basis, dtype="float64")
    y = np.random.default_rng(6).random(pg.shape)
    gathered = A.T(y)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the gather adjoint ran although the scatter was asked for")

    monkeypatch.setattr(type(A._engine.footprints), "backproject", refuse)
    with pytest.raises(AssertionError, match="gather adjoint ran"):
        A.T(y)
    engine = A._engine
    forced = engine.backproject(A.types.Float(y.ravel()), engine.vectors(), scatter=True).numpy()
    np.testing.assert_allclose(forced.reshape(vg.shape), gathered, rtol=0, atol=1e-12)
    monkeypatch.setenv("DRCT_ADJOINT", "scatter")
    np.testing.assert_allclose(A.T(y), gathered, rtol=0, atol=1e-12)


@pytest.mark.parametrize("basis", ["voxel", "linear", "bspline2"])
def test_other_operators_keep_the_scatter(basis: str) -> None:
    """Only the box and linear bases of 2D parallel beams are covered here (those of flat fan beams by
    drct.kernels.fan_footprints and fan_hat, tests/test_fan_footprints.py)."""
    vg = ct.VolumeGeometry((8, 8))
    fan = ct.fan(np.linspace(0, 2 * np.pi, 6, endpoint=False), 12, 1.0, 30.0, 60.0)
    par = ct.parallel(np.linspace(0, np.pi, 6, endpoint=False), 12)
    assert (ct.Projector(vg, fan, basis=basis)._engine.footprints is None) == (basis == "bspline2")
    assert (ct.Projector(vg, par, basis=basis)._engine.footprints is None) == (basis == "bspline2")


@pytest.mark.parametrize("beam", ["parallel", "fan"])
def test_threads_get_the_single_threaded_result(beam: str) -> None:
    vg = ct.VolumeGeometry((48, 48))
    pg = _geometry(beam, 40, 70, 48)
    A = ct.Projector(vg, pg, basis="voxel")
    rng = np.random.default_rng(8)
    ys = [rng.random(pg.shape, dtype=np.float32) for _ in range(4)]
    want = [A.T(y) for y in ys]
    for g, w in zip(adjoints_from_threads(A, ys), want, strict=True):
        if beam == "parallel":
            np.testing.assert_array_equal(g, w)  # no scatters: the same bits whatever the threads do
        else:  # the fan's near-axis rays are scattered: float32 sums in another order, nothing more
            np.testing.assert_allclose(g, w, rtol=0, atol=2e-6 * float(np.abs(w).max()))
    if beam == "fan":
        assert len(getattr(A._engine.footprints, "near_rays", [])) > 0
        with ct.deterministic():
            assert len({A.T(ys[0]).tobytes() for _ in range(3)}) == 1


@pytest.mark.parametrize("beam", ["parallel", "fan"])
def test_differentiable_geometry_changed_in_place_is_seen(beam: str) -> None:
    """A geometry of Dr.Jit arrays may change between calls (an optimiser's step): the gather adjoint's
    per-view footprints must follow it, not the values of the first call."""
    vg = ct.VolumeGeometry((12, 10))
    if beam == "parallel":
        pg = ct.parallel(np.linspace(0, np.pi, 9, endpoint=False), 16).with_drjit_vectors()
    else:
        pg = ct.fan(np.linspace(0, 2 * np.pi, 9, endpoint=False), 16, 1.3, 40.0, 70.0).with_drjit_vectors()
    A = ct.Projector(vg, pg, basis="voxel", dtype="float64")
    assert A._engine.footprints is not None
    y = np.random.default_rng(9).random(pg.shape)
    A.T(y)
    det: Any = pg.det
    before = det.numpy().copy()
    det += pg.det_u * 2.5  # the detector moves by 2.5 columns, in place
    assert np.abs(det.numpy() - before).max() > 2
    rows = np.concatenate([np.asarray(host_rows(v)) for v in (pg.src, pg.det, pg.det_u)], axis=1)
    moved = ct.from_vectors(rows, 16, beam="parallel" if beam == "parallel" else "cone")
    want = ct.Projector(vg, moved, basis="voxel", dtype="float64").T(y)
    np.testing.assert_allclose(A.T(y), want, rtol=0, atol=1e-12 * float(np.abs(want).max()))


@pytest.mark.parametrize("basis", ["voxel", "linear"])
def test_drjit_derivatives_through_the_gather_adjoint(basis: str) -> None:
    """``A.T`` inside Dr.Jit's AD: reverse mode gives ``A w`` for ``d<w, A.T y>/dy``, forward mode ``A.T dy``;
    the gather kernel never records an AD graph of its own."""
    vg = ct.VolumeGeometry((10, 12))
    pg = ct.parallel(np.linspace(0, np.pi, 8, endpoint=False), 17)
    A = ct.Projector(vg, pg, basis=basis, dtype="float64")
    rng = np.random.default_rng(10)
    y0, w, dy = rng.random(pg.shape), rng.random(vg.shape), rng.random(pg.shape)
    t = A.types
    y = t.Tensor(y0)
    dr.enable_grad(y)
    out = A.adjoint_tensor(y)
    dr.backward(dr.sum(out.array * t.Tensor(w).array))
    np.testing.assert_allclose(dr.grad(y).numpy(), A(w), rtol=0, atol=1e-12 * float(np.abs(A(w)).max()))
    y = t.Tensor(y0)
    dr.enable_grad(y)
    dr.set_grad(y, t.Tensor(dy))
    out = A.adjoint_tensor(y)
    dr.forward_to(out)
    np.testing.assert_allclose(dr.grad(out).numpy(), A.T(dy), rtol=0, atol=1e-12 * float(np.abs(A.T(dy)).max()))


@pytest.mark.parametrize("basis", ["voxel", "linear"])
def test_later_calls_see_new_inputs(basis: str) -> None:
    """The launches keep per-operator inputs (view tables and parameters) between calls: later calls with other
    sinograms, other batch sizes and after other operators' calls must use their own inputs."""
    vg = ct.VolumeGeometry((14, 11))
    pg = ct.parallel(np.linspace(0, np.pi, 40, endpoint=False), 19)  # 40 views: a full and a partial launch
    A = ct.Projector(vg, pg, basis=basis, dtype="float64")
    other = ct.Projector(ct.VolumeGeometry((9, 9)), ct.parallel(np.linspace(0, 2, 33), 13), basis=basis)
    rng = np.random.default_rng(11)
    engine = A._engine
    for shape in [pg.shape, pg.shape, (2, *pg.shape), pg.shape]:
        y = rng.random(shape)
        got = A.T(y)
        other.T(rng.random(other.range_shape, dtype=np.float32))
        want = [
            engine.backproject(A.types.Float(row.ravel()), engine.vectors(), scatter=True).numpy().reshape(vg.shape)
            for row in y.reshape(-1, *pg.shape)
        ]
        np.testing.assert_allclose(got, np.reshape(want, got.shape), rtol=0, atol=1e-12 * float(np.abs(want).max()))


@pytest.mark.parametrize(("beam", "basis"), GATHERED)
def test_volume_and_geometry_gradient_take_the_gather(beam: str, basis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One reverse pass w.r.t. the volume and the detector: the volume's part comes from the gather adjoint
    (the derivative march then scatters nothing) and equals the scatter path's, as do the detector's."""
    vg = ct.VolumeGeometry((10, 9))
    rng = np.random.default_rng(11)
    x0, w = rng.random(vg.shape), rng.random((7, 15))

    def gradients() -> tuple[np.ndarray, np.ndarray]:
        if beam == "parallel":
            pg = ct.parallel(np.linspace(0.1, np.pi, 7, endpoint=False), 15).with_drjit_vectors()
        else:
            pg = ct.fan(np.linspace(0.1, 2 * np.pi, 7, endpoint=False), 15, 1.2, 40.0, 70.0).with_drjit_vectors()
        A = ct.Projector(vg, pg, basis=basis, dtype="float64")
        x = A.types.Tensor(x0)
        dr.enable_grad(x, pg.det)
        dr.backward(dr.sum(A.forward_tensor(x).array * A.types.Tensor(w).array))
        return dr.grad(x).numpy(), dr.grad(pg.det).numpy()

    calls = []
    kind = footprints.ParallelFootprints if beam == "parallel" else FanFootprints
    original = kind.backproject

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(kind, "backproject", spy)
    gathered = gradients()
    assert calls, "the volume gradient did not come from the gather adjoint"
    monkeypatch.setenv("DRCT_ADJOINT", "scatter")
    calls.clear()
    scattered = gradients()
    assert not calls
    for g, s in zip(gathered, scattered, strict=True):
        assert np.abs(s).max() > 0
        np.testing.assert_allclose(g, s, rtol=0, atol=1e-12 * float(np.abs(s).max()))


@pytest.mark.parametrize(
    ("angles", "looped", "exact"),
    [
        (np.array([0.0, np.pi / 2, np.pi, 1e-7, 3 * np.pi / 2]), 0, 5),  # only the exact views' loop
        (np.array([0.3, 1.1, 2.0, np.pi / 2, 2.9]), 4, 1),  # both loops
        (np.linspace(0.2, 3.0, 5), 5, 0),  # an odd count: the last group padded with a zero row
    ],
)
def test_dense_transpose_exact_only_padded_groups_tall_grid(angles: np.ndarray, looped: int, exact: int) -> None:
    """The loops' edge cases against the dense forward: no looped views, a group padded with a row that reads
    zeros, and a grid whose rows are not a whole number of pixel blocks (the last block clamped to the grid)."""
    vg = ct.VolumeGeometry((3, 19), voxel_size=(1.0, 0.6))
    A = ct.Projector(vg, ct.parallel(angles, 15, 0.8), basis="voxel", dtype="float64")
    fp = A._engine.footprints
    assert isinstance(fp, footprints.BoxFootprints)
    assert (int(np.count_nonzero(~fp.exact)), int(np.count_nonzero(fp.exact))) == (looped, exact)
    assert vg.shape[1] % fp.block != 0 and vg.shape[1] > fp.block
    forward, gather, _ = _dense(A)
    assert np.count_nonzero(forward) > forward.shape[0]
    np.testing.assert_allclose(gather, forward, rtol=0, atol=1e-12 * float(np.abs(forward).max()))


@pytest.mark.parametrize("basis", ["voxel", "linear"])
def test_one_kernel_whatever_the_number_of_views(basis: str) -> None:
    """The views are a symbolic loop, not unrolled code: the call's biggest kernel has the same operations for
    20 views and for 200 (the unrolled form traced ~20 operations more per view at every call)."""
    vg = ct.VolumeGeometry((16, 12))
    sizes = []
    for views in (20, 200):
        A = ct.Projector(vg, ct.parallel(np.linspace(0.05, np.pi, views, endpoint=False), 20), basis=basis)
        y = np.random.default_rng(12).random(A.range_shape, dtype=np.float32)
        A.T(y)  # builds the plan
        flag = dr.flag(dr.JitFlag.KernelHistory)
        dr.set_flag(dr.JitFlag.KernelHistory, True)
        try:
            dr.kernel_history()
            A.T(y)
            history = [k for k in dr.kernel_history() if "operation_count" in k]
        finally:
            dr.set_flag(dr.JitFlag.KernelHistory, flag)
        sizes.append((len(history), max(k["operation_count"] for k in history)))
    assert sizes[0] == sizes[1], sizes
