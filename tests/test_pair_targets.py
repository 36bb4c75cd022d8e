"""The scatter targets that the SPECT rotation, the PET TOF kernel and the FBP transpose allocate themselves get
an even size (``drct.kernels.scatter.even_zeros`` / ``trimmed``), so that their adds go out as packet pairs on
odd-sized problems too (before: the scalar scatter there, about twice the cost), with the same results as the
atomic scatter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import drjit as dr
import numpy as np
import pytest

import drct as ct
from drct.backend import types
from drct.emission import Collimator, SPECTProjector
from drct.kernels import scatter
from drct.pet import TOF, PETProjector
from drct.recon.backproject import make_backprojector


def _spect(method: str) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, ...]]:
    vg = ct.VolumeGeometry((3, 5, 5), voxel_size=(4.0, 4.0, 3.5))  # 75 voxels
    g = ct.spect(np.linspace(0.3, 2 * np.pi + 0.3, 3, endpoint=False), 40.0, (3, 7), (4.0, 3.0))
    mu = (np.random.default_rng(1).random(vg.shape) * 0.03).astype(np.float64)
    A = SPECTProjector(vg, g, mu=mu, collimator=Collimator.lehr(), dtype="float64", psf_method=method)
    return A.T, A.range_shape


def _pet() -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, ...]]:
    sc = ct.pet.scanner(rings=3, crystals_per_ring=16, radius=50.0, crystal_size=(4.0, 4.0))
    vg = ct.VolumeGeometry((3, 7, 5), voxel_size=(4.0, 5.0, 6.0), center=(1.5, -2.0, 0.5))  # 105 voxels
    tof = TOF(bins=7, bin_width=9.0, fwhm=25.0)
    A = PETProjector(vg, ct.pet.sinogram(sc, span=3, mash=2), tof=tof, dtype="float64")
    return A.T, A.range_shape


def _fbp() -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, ...]]:
    pg = ct.fan(np.linspace(0.3, 0.3 + 2 * np.pi, 37, endpoint=False), 41, 1.2, 50.0, 90.0)  # 1517 rays
    vg = ct.VolumeGeometry((13, 18), voxel_size=(1.3, 1.2), center=(0.7, -1.1))
    t = types("float64")
    engine = make_backprojector(pg, vg, t)
    return lambda g: engine.transpose(t.Float(g.ravel())).numpy(), vg.shape


CASES: dict[str, Callable[[], tuple[Callable[[np.ndarray], np.ndarray], tuple[int, ...]]]] = {
    "spect direct": lambda: _spect("direct"),
    "spect incremental": lambda: _spect("incremental"),
    "pet tof": _pet,
    "fbp transpose": _fbp,
}


@pytest.mark.parametrize("case", list(CASES))
def test_odd_sized_targets_scatter_pairs_with_the_atomics_result(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    transpose, shape = CASES[case]()
    y = np.random.default_rng(5).random(shape)
    monkeypatch.setattr(scatter, "only_thread", lambda: False)  # atomics: one value per lane, the reference
    want = np.asarray(transpose(y))
    sent: list[str] = []
    original = dr.scatter_add

    def spy(target: Any, value: Any, *args: Any, **kwargs: Any) -> None:
        sent.append(f"{type(value).__name__} into {dr.width(target)}")
        original(target, value, *args, **kwargs)

    monkeypatch.setattr(scatter, "only_thread", lambda: True)  # Expand: pairs
    monkeypatch.setattr(dr, "scatter_add", spy)
    got = np.asarray(transpose(y))
    monkeypatch.undo()
    assert sent and all(s.startswith("Array2f64") for s in sent), sorted(set(sent))
    assert np.count_nonzero(want) > 0.3 * want.size
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * float(np.abs(want).max()))
