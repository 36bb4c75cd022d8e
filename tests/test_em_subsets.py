"""OSEM with subsets that do not see every coefficient (one view of a coarse PET ring leaves voxels between its
LORs unseen): those coefficients keep their value instead of being zeroed for good."""

from __future__ import annotations

import numpy as np
import pytest

import drct as ct


def coarse_pet() -> tuple[ct.pet.PETProjector, np.ndarray]:
    sc = ct.pet.scanner(rings=2, crystals_per_ring=24, radius=50.0, crystal_size=4.0)
    vg = ct.VolumeGeometry((2, 10, 10), voxel_size=4.0)
    A = ct.pet.PETProjector(vg, ct.pet.sinogram(sc))
    _, yy, xx = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in vg.shape), indexing="ij")
    return A, (1.0 + (xx**2 + yy**2 < 9)).astype(np.float32)


def test_one_view_subsets_leave_every_voxel_seen_by_the_data() -> None:
    A, x = coarse_pet()
    views = A.range_shape[0]
    one = A.select_views([0])
    assert (one.T(np.ones(one.range_shape, np.float32)) == 0).any()  # the case: a view misses some voxels
    y = A(x)
    rec = ct.recon.osem(A, y, niter=3, subsets=views, progress=False)
    assert rec.sum() == pytest.approx(x.sum(), rel=0.05)  # zeroed for good before: rec.sum() == 0
    assert np.linalg.norm(A(rec) - y) < 0.05 * np.linalg.norm(y)
    assert rec.min() >= 0 and (rec > 0).all()


def test_unseen_voxels_keep_their_value_in_a_subset_update() -> None:
    A, x = coarse_pet()
    one = A.select_views([0])
    unseen = one.T(np.ones(one.range_shape, np.float32)) == 0
    start = np.random.default_rng(0).random(x.shape).astype(np.float32) + 0.5
    step = ct.recon.osem(one, one(x), x0=start, niter=1, subsets=1, progress=False)
    np.testing.assert_array_equal(step[unseen], start[unseen])
    assert not np.allclose(step[~unseen], start[~unseen])
    # MLEM is OSEM with one subset: the same rule
    mlem = ct.recon.mlem(one, one(x), x0=start, niter=1, progress=False)
    np.testing.assert_allclose(mlem, step, rtol=1e-6)
