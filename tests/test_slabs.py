"""The adjoint of a volume too large for ``Expand``'s copies, scattered slab by slab (``drct.kernels.slabs``): the
same transpose as the whole-volume scatter, with every coefficient the rays touch inside the slab they write."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import numpy as np
import pytest
from conftest import transpose_rows

import drct as ct
from drct import transform
from drct.kernels import march, slabs
from drct.kernels.grid import KnotGrid

BASES = ["voxel", "linear", "bspline2", "bspline3"]
SHRINK = slabs.SHRINK


def tall_cone(views: int = 5, det: tuple[int, int] = (14, 9)) -> tuple[ct.VolumeGeometry, ct.ProjectionGeometry]:
    """A volume with many planes along z (the slabs' axis) under a cone beam whose rows see a few planes each."""
    vg = ct.VolumeGeometry((24, 7, 8), voxel_size=(1.0, 1.2, 0.9))
    pg = ct.cone(np.linspace(0.1, 2 * np.pi, views, endpoint=False), det, (2.0, 1.6), 30.0, 60.0)
    return vg, pg


def tall_parallel() -> tuple[ct.VolumeGeometry, ct.ProjectionGeometry]:
    vg = ct.VolumeGeometry((20, 6, 7))
    return vg, ct.parallel(np.linspace(0.0, np.pi, 4, endpoint=False), (22, 9), (1.0, 1.1))


class Slabs:
    """The budget test of :meth:`drct.transform.Transform._slabbed` cut to two thirds of the volume's scatter
    target (or to ``limit`` entries), and the slabs written (first plane, planes)."""

    def __init__(self) -> None:
        self.written: list[tuple[int, int]] = []
        self.limit: int | None = None

    def force(self, A: ct.Projector) -> ct.Projector:
        engine = A._engine
        self.limit = 2 * engine._scatter_entries(engine.grid) // 3
        return A

    def fits(self, entries: int, item: int = 4) -> bool:
        assert self.limit is not None, "call force() first"
        return entries <= self.limit


@pytest.fixture
def small_budget(monkeypatch: pytest.MonkeyPatch) -> Slabs:
    """Slabs wherever a test calls ``force``, halving launches down to 16 rays."""
    state = Slabs()
    add_into = slabs.Slab.add_into

    def spy(self: slabs.Slab, t: Any, target: Any, values: Any) -> None:
        state.written.append((self.first, self.planes))
        add_into(self, t, target, values)

    monkeypatch.setattr(transform, "expand_fits", state.fits)
    # threads that earlier tests left alive (CI once had one) do not count; a thread started by the test does
    before = {*threading.enumerate()}
    alone = transform.only_thread
    monkeypatch.setattr(transform, "only_thread", lambda: alone() or {*threading.enumerate()} <= before)
    monkeypatch.setattr(slabs, "MIN_LANES", 16)
    monkeypatch.setattr(slabs, "SHRINK", 1.0)  # halve while a slab does not grow (tiny volumes)
    monkeypatch.setattr(slabs.Slab, "add_into", spy)
    return state


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_a_slab_holds_every_coefficient_its_cells_touch(degree: int) -> None:
    grid = KnotGrid.of(ct.VolumeGeometry((30, 4, 5)), degree)
    size, cells = grid.shape[-1], grid.cells[-1]
    for low in range(cells):
        for high in range(low, cells):
            touched = {k - grid.pad + j for k in range(low, high + 1) for j in range(degree + 1)}
            inside = {c for c in touched if 0 <= c < size}
            slab = slabs.Slab.of(grid, low, high)
            if not inside:
                assert slab is None
                continue
            assert slab is not None
            assert inside <= set(range(slab.first, slab.first + slab.planes)), (low, high, slab)
            assert slab.planes == size or slab.planes % slabs.PLANES_STEP == 0
            assert 0 <= slab.first and slab.first + slab.planes <= size
            assert slab.grid.shape == (*grid.shape[:-1], slab.planes)


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("scan", ["cone", "parallel3d"])
def test_slabbed_adjoint_is_the_whole_volume_adjoint(scan: str, basis: str, small_budget: Slabs) -> None:
    vg, pg = tall_cone() if scan == "cone" else tall_parallel()
    A = small_budget.force(ct.Projector(vg, pg, basis=basis, dtype="float64"))
    y = np.random.default_rng(4).uniform(size=A.range_shape)
    sliced = A.T(y)
    assert A._engine._slabbed(1)
    written = small_budget.written
    assert len({first for first, _ in written}) > 1, written
    assert max(planes for _, planes in written) < vg.shape[0]
    small_budget.limit = 2**40  # the whole volume's copies fit: no slabs
    assert not A._engine._slabbed(1)
    reference = A.T(y)
    assert float(np.abs(reference).max()) > 1e-3
    np.testing.assert_allclose(sliced, reference, rtol=0, atol=1e-12 * float(np.abs(reference).max()))


@pytest.mark.parametrize("basis", ["voxel", "bspline2"])
def test_slabbed_adjoint_is_the_dense_transpose_float64(basis: str, small_budget: Slabs) -> None:
    vg, pg = tall_cone(views=2, det=(20, 8))
    A = small_budget.force(ct.Projector(vg, pg, basis=basis, dtype="float64"))
    n = int(np.prod(vg.shape))
    columns = np.stack([A(np.eye(1, n, c).reshape(vg.shape)).reshape(-1) for c in range(n)], axis=1)
    assert np.mean(np.any(columns != 0, axis=0)) > 0.3, "the rays must see much of the volume"
    rows = transpose_rows(A)
    assert small_budget.written, "the slabs must have been used"
    np.testing.assert_allclose(rows, columns, rtol=0, atol=1e-12 * np.abs(columns).max())


def test_slabbed_adjoint_test_float32(small_budget: Slabs) -> None:
    vg, pg = tall_cone()
    A = small_budget.force(ct.Projector(vg, pg, basis="bspline2"))
    rng = np.random.default_rng(7)
    x, y = rng.uniform(size=vg.shape).astype(np.float32), rng.uniform(size=pg.shape).astype(np.float32)
    lhs, rhs = float(np.sum(A(x).astype(np.float64) * y)), float(np.sum(x.astype(np.float64) * A.T(y)))
    assert small_budget.written
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs), (lhs, rhs)


@pytest.mark.parametrize("basis", ["voxel", "linear"])
def test_launches_no_slab_fits_scatter_into_the_whole_volume(basis: str, small_budget: Slabs) -> None:
    """Where even the smallest launch's slab is too large, the launch scatters into the whole volume."""
    vg, pg = tall_cone()
    A = small_budget.force(ct.Projector(vg, pg, basis=basis, dtype="float64"))
    y = np.random.default_rng(5).uniform(size=A.range_shape)
    expected = A.T(y)
    small_budget.written.clear()
    small_budget.limit = 1  # not even one plane
    assert A._engine._slabbed(1)
    got = A.T(y)
    written = [s for s in small_budget.written if s != (0, vg.shape[0])]  # the box's whole copy, added as one slab
    assert not written
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * float(np.abs(expected).max()))


def test_slabs_only_for_one_volume_on_one_thread(small_budget: Slabs) -> None:
    vg, pg = tall_cone()
    engine = small_budget.force(ct.Projector(vg, pg, basis="linear"))._engine
    assert engine._slabbed(1)
    assert not engine._slabbed(2), "a batch of volumes scatters into the whole target"
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not engine._slabbed(1), "with another thread the atomics are used whatever the size"
    finally:
        stop.set()
        other.join()


def test_rays_that_miss_launch_nothing(small_budget: Slabs, monkeypatch: pytest.MonkeyPatch) -> None:
    vg = ct.VolumeGeometry((24, 7, 8))
    pg = ct.cone([0.0, 1.0], (4, 4), 1.0, 30.0, 60.0).perturb(det_shift_v=500.0)  # the detector far above
    A = small_budget.force(ct.Projector(vg, pg, basis="bspline2"))
    launched = []
    monkeypatch.setattr(march, "backproject", lambda *args: launched.append(args))
    out = A.T(np.ones(pg.shape, np.float32))
    assert A._engine._slabbed(1) and not launched and not small_budget.written and not np.any(out)


@pytest.mark.parametrize("basis", ["voxel", "linear", "bspline2"])
def test_slabbed_geometry_vjp_is_the_whole_volume_one(basis: str, small_budget: Slabs) -> None:
    """The gradient march scatters its ``A.T w`` through the slabs too; the geometry gradients do not move."""
    vg, pg = tall_cone()
    A = small_budget.force(ct.Projector(vg, pg, basis=basis, dtype="float64"))
    engine, t = A._engine, A.types
    rng = np.random.default_rng(8)
    coeffs, weights = t.Float(rng.uniform(size=vg.size)), t.Float(rng.uniform(size=pg.num_rays))
    volume, grads = engine.geometry_vjp(coeffs, engine.vectors(), weights, want_volume=True)
    assert len({first for first, _ in small_budget.written}) > 1, small_budget.written
    small_budget.limit = 2**40
    written = len(small_budget.written)
    volume_ref, grads_ref = engine.geometry_vjp(coeffs, engine.vectors(), weights, want_volume=True)
    assert len(small_budget.written) == written, "no slabs when the volume's copies fit"
    ref = volume_ref.numpy()
    np.testing.assert_allclose(volume.numpy(), ref, rtol=0, atol=1e-12 * float(np.abs(ref).max()))
    for name, comps in grads_ref.items():
        for got, expected in zip(grads[name], comps, strict=True):
            e = expected.numpy()
            np.testing.assert_allclose(got.numpy(), e, rtol=0, atol=1e-11 * max(float(np.abs(e).max()), 1e-300))


def rays_along_z(vg: ct.VolumeGeometry) -> ct.RayGeometry:
    """16² rays along z (the slabs' axis) through the volume: each touches every plane."""
    xy = np.stack(np.meshgrid(np.linspace(-2.5, 2.5, 16), np.linspace(-2.3, 2.4, 16)), -1).reshape(-1, 2)
    origins = np.concatenate([xy, np.full((len(xy), 1), -40.0)], axis=1)
    directions = np.tile([0.03, -0.02, 1.0], (len(xy), 1))
    return ct.rays(origins, directions)


@pytest.mark.parametrize("basis", BASES)
def test_rays_longer_than_a_slab_go_in_pieces(basis: str, small_budget: Slabs, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rays that each cross more planes than a slab holds: halving stops at once (it cannot shrink their slab;
    halving down to tiny launches made 512³ ten times slower) and each ray is marched piece by piece along z, each
    piece into its own slab; the pieces add up to the whole ray's adjoint."""
    monkeypatch.setattr(slabs, "SHRINK", SHRINK)  # the module's own rule, not the fixture's
    vg = ct.VolumeGeometry((40, 6, 6))
    pg = rays_along_z(vg)
    A = small_budget.force(ct.Projector(vg, pg, basis=basis, dtype="float64"))
    engine = A._engine
    # a budget that holds slabs of 16 of the 40 planes (in the padded copies the marches scatter into)
    small_budget.limit = engine._scatter_entries(dataclasses.replace(engine.grid, shape=(*engine.grid.shape[:2], 16)))
    plan = list(engine._slab_launches(engine.vectors(), 0, pg.num_rays))
    assert all(rays >= pg.num_rays // 2 for _, rays, *_ in plan), "no halving past the first"
    cuts = [cut for *_, cut in plan]
    assert all(cut is not None for cut in cuts) and len(set(cuts)) > 2, cuts
    y = np.random.default_rng(9).uniform(size=A.range_shape)
    sliced = A.T(y)
    small_budget.limit = 2**40
    whole = A.T(y)
    assert float(np.abs(whole).max()) > 1e-3
    np.testing.assert_allclose(sliced, whole, rtol=0, atol=1e-12 * float(np.abs(whole).max()))


@pytest.mark.parametrize("degree", [0, 2, 3])
def test_pieces_cover_the_span_with_their_margins(degree: int) -> None:
    grid = KnotGrid.of(ct.VolumeGeometry((60, 4, 5)), degree)
    for planes in (8, 16, 24, 64):
        for span in ((0, grid.cells[-1] - 1), (7, 30), (20, 21)):
            cut = slabs.pieces(grid, span, planes)
            if planes - degree - 2 * slabs.MARGIN < 1:
                assert not cut
                continue
            owned = [c for _, low, high in cut for c in range(low, high)]
            assert owned == list(range(span[0], span[1] + 1))
            for slab, low, high in cut:
                assert slab.planes <= max(planes, 0) or slab.planes == grid.shape[-1]
                cells = range(max(low - slabs.MARGIN, 0), min(high - 1 + slabs.MARGIN, grid.cells[-1] - 1) + 1)
                need = {k - grid.pad + j for k in cells for j in range(degree + 1)} & set(range(grid.shape[-1]))
                assert need <= set(range(slab.first, slab.first + slab.planes)), (planes, span, low, high, slab)


def test_clipped_pieces_add_up_to_the_ray() -> None:
    from drct.backend import types

    t = types("float64", "llvm")
    rng = np.random.default_rng(3)
    n = 200
    entry = [t.Float(rng.uniform(0, 30, n)) for _ in range(3)]
    direction = [t.Float(rng.normal(size=n)) for _ in range(3)]
    direction[2] = t.Float(np.where(np.arange(n) % 10 == 0, 0.0, direction[2].numpy()))  # some parallel to the cuts
    length = t.Float(rng.uniform(0, 20, n))
    yes = t.Bool(np.ones(n, bool))
    segs = slabs.Segments(entry, direction, length, t.Float(rng.uniform(-5, 5, n)), yes, yes)
    pieces = [slabs.clip(segs, low, low + 7) for low in range(-70, 70, 7)]
    total = sum(p.length.numpy() for p in pieces)
    np.testing.assert_allclose(total, length.numpy(), rtol=1e-12, atol=1e-12)
    starts = sum(p.starts_at_t_min.numpy().astype(int) for p in pieces)
    ends = sum(p.ends_at_t_max.numpy().astype(int) for p in pieces)
    hit = length.numpy() > 0
    assert np.all(starts[hit] == 1) and np.all(ends[hit] == 1), "exactly one piece holds the ray's start and end"
    for p in pieces:
        inside = p.length.numpy() > 0
        z0 = p.entry[2].numpy()[inside]
        z1 = z0 + p.length.numpy()[inside] * p.direction[2].numpy()[inside]
        assert np.all(np.minimum(z0, z1) >= -70 - 1e-9) and np.all(np.maximum(z0, z1) <= 70 + 1e-9)


@pytest.mark.parametrize("basis", ["voxel", "bspline2"])
def test_geometry_vjp_in_pieces_is_the_whole_volume_one(
    basis: str, small_budget: Slabs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gradient march in pieces: moments re-based at each piece's start, the rays' own start and end in one
    piece each; the same volume and geometry gradients as the whole rays'. The box basis's derivative counts the
    jumps at the faces a ray crosses, which a cut would drop: its rays are not cut (the whole volume instead)."""
    monkeypatch.setattr(slabs, "SHRINK", SHRINK)
    vg = ct.VolumeGeometry((40, 6, 6))
    pg = rays_along_z(vg)
    A = small_budget.force(ct.Projector(vg, pg, basis=basis, dtype="float64"))
    small_budget.limit //= 2
    engine, t = A._engine, A.types
    rng = np.random.default_rng(10)
    coeffs, weights = t.Float(rng.uniform(size=vg.size)), t.Float(rng.uniform(size=pg.num_rays))
    volume, grads = engine.geometry_vjp(coeffs, engine.vectors(), weights, want_volume=True)
    if basis == "voxel":
        assert not small_budget.written
    else:
        assert any(first > 0 for first, _ in small_budget.written)
    small_budget.limit = 2**40
    volume_ref, grads_ref = engine.geometry_vjp(coeffs, engine.vectors(), weights, want_volume=True)
    ref = volume_ref.numpy()
    np.testing.assert_allclose(volume.numpy(), ref, rtol=0, atol=1e-12 * float(np.abs(ref).max()))
    for name, comps in grads_ref.items():
        for got, expected in zip(grads[name], comps, strict=True):
            e = expected.numpy()
            assert float(np.abs(e).max()) > 0
            np.testing.assert_allclose(got.numpy(), e, rtol=0, atol=1e-10 * float(np.abs(e).max()))
