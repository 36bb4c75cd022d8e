"""The 2D box forward steps one column of each ray's major axis per iteration (``drct.kernels.box._columns``);
the cell walk it replaced (``box.project_cells``, one cell per iteration) is its reference twin. Both add the same
products in the same order, so the projections must be the same bits: on every 2D geometry kind, along pixel
faces and through corners, at 45° exactly, from sources inside the volume, over a batch and in both dtypes. The
exception, rays within ulps of a corner at a slope within ulps of 1, is held to rounding. In float32 the column
walk reads both cells of a column from a pair copy (``box.pairs``): the same bits as two reads, everywhere."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import GEOMETRIES, volume_for

import drct as ct
from drct.kernels import box
from drct.transform import Transform

TWO_D = sorted(name for name, pg in GEOMETRIES.items() if pg.ndim == 2)


def projections(
    vg: ct.VolumeGeometry, pg: Any, ran: str, instead: tuple[Any, str, Any], dtype: str, batch: int | None, seed: int
) -> Any:
    """``A x`` for a random positive volume (or batch) as it is (checking that ``box.<ran>`` was called), and
    with the attribute ``instead = (owner, name, value)`` patched in."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 2.0, size=vg.shape if batch is None else (batch, *vg.shape)).astype(dtype)
    A = ct.Projector(vg, pg, basis="voxel", dtype=dtype)
    calls = []
    with pytest.MonkeyPatch.context() as patch:
        real = getattr(box, ran)
        patch.setattr(box, ran, lambda *args: calls.append(1) or real(*args))
        got = np.asarray(A(x))
    assert calls, f"box.{ran} was not called"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(*instead)
        want = np.asarray(A(x))
    return got, want


def both(vg: ct.VolumeGeometry, pg: Any, dtype: str = "float32", batch: int | None = None, seed: int = 0) -> Any:
    """``A x`` by the column walk (checked to have run) and by the cell walk (patched in)."""
    cells = box.project_cells
    walk = (box, "project", lambda grid, t, segs, padded, paired=None: cells(grid, t, segs, padded))
    return projections(vg, pg, "_columns", walk, dtype, batch, seed)


def paired_and_plain(vg: ct.VolumeGeometry, pg: Any, batch: int | None = None, seed: int = 0) -> Any:
    """``A x`` (float32) with the column walk reading the pair copy (checked to have been made) and reading the
    padded copy twice per column (the pairs turned off)."""
    plain = (Transform, "reads_pairs", lambda self, batch: False)
    return projections(vg, pg, "pairs", plain, "float32", batch, seed)


def assert_same(vg: ct.VolumeGeometry, pg: Any, **options: Any) -> None:
    got, want = both(vg, pg, **options)
    assert np.abs(want).max() > 0, "the test's rays must cross the volume"
    differ = np.flatnonzero(got != want)
    assert differ.size == 0, (
        f"{differ.size} of {got.size} rays differ from the cell walk, e.g. {got.flat[differ[0]]!r} against "
        f"{want.flat[differ[0]]!r}"
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", TWO_D)
def test_every_2d_geometry_kind(name: str, dtype: str) -> None:
    pg = GEOMETRIES[name]
    assert_same(volume_for(pg), pg, dtype=dtype)


def test_axis_aligned_and_diagonal_views_along_faces_and_through_corners() -> None:
    """Unit pixels with their faces on integers and detector columns 1 apart, shifted by 0, ¼ and ½: rays along
    pixel faces at 0° and 90°, and at 45° (the slope exactly 1) through pixel corners."""
    vg = ct.VolumeGeometry((12, 12))
    angles = np.array([0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4, np.pi, 1e-7, np.pi / 2 - 1e-7])
    for shift in (0.0, 0.25, 0.5):
        assert_same(vg, ct.parallel(angles, 25, det_spacing=1.0).perturb(det_shift_u=shift))
    corners = np.array([[-6.0, -6.0], [-6.0, -5.0], [-3.0, 0.0], [0.0, 0.0], [-6.0, 6.0], [0.5, -6.0]])
    diagonal = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [0.0, 1.0]])
    assert_same(vg, ct.rays(corners, diagonal), dtype="float64")


def test_sources_inside_the_volume_and_random_lines() -> None:
    """Fan rays that start inside the volume (the first column is partial) and random lines, some missing it."""
    vg = ct.VolumeGeometry((16, 14), voxel_size=(0.7, 1.3), center=(0.4, -0.3))
    angles = np.linspace(0, 2 * np.pi, 11, endpoint=False)
    assert_same(vg, ct.fan(angles, 31, 1.0, 3.0, 20.0))
    rng = np.random.default_rng(4)
    origins = rng.uniform(-12, 12, size=(500, 2))
    directions = rng.normal(size=(500, 2))
    assert_same(vg, ct.rays(origins, directions), dtype="float64")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_batch_of_volumes(dtype: str) -> None:
    pg = GEOMETRIES["parallel2d"]
    assert_same(volume_for(pg), pg, dtype=dtype, batch=3, seed=2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_near_diagonal_rays_within_ulps_of_corners(dtype: str) -> None:
    """Slopes within a few ulps of ±1 through points within ulps of pixel corners: rounding can put two minor faces
    into one column, where the cell walk gives an ulp-sized length to a third cell and the column walk to its
    neighbour. Nearly every ray is the same bits, the rest within rounding."""
    rng = np.random.default_rng(1)
    n, eps = 512, float(np.finfo(np.float32).eps)
    corners = rng.integers(-n // 2, n // 2, size=(1800, 2)).astype(np.float64)
    nudges = rng.integers(-3, 4, size=(1800, 2)) * eps * np.maximum(1.0, np.abs(corners).max(axis=1, keepdims=True))
    slopes = 1.0 + rng.integers(-4, 5, size=1800) * eps * rng.choice([0.5, 1.0, 2.0], size=1800)
    origins = np.concatenate([corners + nudges, corners - nudges])
    directions = np.concatenate([np.stack([np.ones(1800), slopes], 1), np.stack([slopes, -np.ones(1800)], 1)])
    got, want = both(ct.VolumeGeometry((n, n)), ct.rays(origins, directions), dtype=dtype, seed=1)
    differ = int(np.count_nonzero(got != want))
    error = float(np.max(np.abs(got - want) / np.abs(want).max()))
    assert differ <= 0.01 * got.size, f"{differ} of {got.size} rays differ from the cell walk"
    assert error <= (4e-6 if dtype == "float32" else 1e-13), f"rays differ from the cell walk by {error:.3g}"


@pytest.mark.parametrize("name", TWO_D)
def test_the_pair_copy_gives_the_two_reads_bits(name: str) -> None:
    pg = GEOMETRIES[name]
    got, want = paired_and_plain(volume_for(pg), pg)
    assert np.abs(want).max() > 0
    assert np.array_equal(got, want), f"{np.count_nonzero(got != want)} rays differ between the pairs and two reads"


def test_the_pair_copy_on_awkward_rays_and_a_batch() -> None:
    """Fan rays from a source inside the volume in all eight octants, along faces and through corners; diagonal
    lines in all four directions within ulps of pixel corners (every pair kind, forwards and backwards); and a
    batch (where the pairs of neighbouring copies meet)."""
    vg = ct.VolumeGeometry((12, 12))
    angles = np.array([0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4, np.pi, 5 * np.pi / 4, 3 * np.pi / 2, 7 * np.pi / 4])
    for shift in (0.0, 0.25, 0.5):
        got, want = paired_and_plain(vg, ct.fan(angles, 25, 1.0, 4.0, 20.0).perturb(det_shift_u=shift))
        assert np.array_equal(got, want)
    rng = np.random.default_rng(5)
    n, eps = 64, float(np.finfo(np.float32).eps)
    corners = rng.integers(-n // 2, n // 2, size=(600, 2)).astype(np.float64)
    origins = corners + rng.integers(-3, 4, size=(600, 2)) * eps * n
    directions = rng.choice([-1.0, 1.0], size=(600, 2)) * (1.0 + rng.integers(-4, 5, size=(600, 2)) * eps)
    got, want = paired_and_plain(ct.VolumeGeometry((n, n)), ct.rays(origins, directions), seed=1)
    assert np.abs(want).max() > 0 and np.array_equal(got, want)
    pg = GEOMETRIES["parallel2d"]
    got, want = paired_and_plain(volume_for(pg), pg, batch=3, seed=2)
    assert np.array_equal(got, want)


def test_the_pair_copy_is_made_where_it_fits_and_counted() -> None:
    """float32 only, within a quarter of the free memory (else two reads: the same projection), and in the
    forward's memory estimate."""
    vg, pg = ct.VolumeGeometry((40, 40)), ct.parallel(np.linspace(0, np.pi, 8, endpoint=False), 57)
    A = ct.Projector(vg, pg, basis="voxel")
    engine = A._engine
    assert engine.reads_pairs(1)
    assert not ct.Projector(vg, pg, basis="voxel", dtype="float64")._engine.reads_pairs(1)
    assert not ct.Projector(vg, pg, basis="linear")._engine.reads_pairs(1)
    words = box.PAIR_KINDS * 46 * 46  # padded: 1 border and 2 guard layers per side
    assert engine.pair_bytes(1) == 8 * words
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Transform, "reads_pairs", lambda self, batch: False)
        without = A.memory_estimate()
    assert A.memory_estimate() - without == 8 * words
    x = np.random.default_rng(0).uniform(size=vg.shape).astype(np.float32)
    want = np.asarray(A(x))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("drct.transform.SMALL_COPY", 0)
        patch.setattr("drct.transform.available_bytes", lambda: 4 * 8 * words - 1)
        assert engine.pads(1) and not engine.reads_pairs(1) and engine.pair_bytes(1) == 0
        assert np.array_equal(np.asarray(A(x)), want)
