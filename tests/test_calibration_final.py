"""The calibration's returned reconstruction: 10 CGLS iterations (by default) from the finest level's volume, moved
into the scanner's frame by the estimated object pose (:func:`drct.calibration.pose.in_scanner_frame`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import drct as ct
from drct.calibration import pose, problem, solver

VG = ct.VolumeGeometry((12, 12, 12), voxel_size=4.0)
PG = ct.cone(np.linspace(0, 2 * np.pi, 12, endpoint=False), (12, 12), 10.0, 150.0, 300.0)
KW: dict[str, Any] = {"vg": VG, "levels": [2, 1], "iterations": 2, "lowpass": 0, "progress": False}


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return ct.Projector(VG, PG.perturb(det_shift_u=3.0), basis="bspline2")(ct.phantoms.shepp_logan(VG))


def calibrate_and_spy(data: np.ndarray, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> tuple[Any, list[Any]]:
    """Calibrate, recording every CGLS call's start volume (a copy) and iteration count."""
    calls: list[tuple[np.ndarray, int]] = []

    def spy(A: Any, y: Any, x0: np.ndarray, iterations: int, *args: Any, **kwargs: Any) -> Any:
        calls.append((np.array(x0, copy=True), iterations))
        return problem.ridge_cgls(A, y, x0, iterations, *args, **kwargs)

    monkeypatch.setattr(solver, "ridge_cgls", spy)
    return ct.calibrate(data, PG, ["det_shift_u"], **(KW | kw)), calls


def test_the_returned_reconstruction_starts_from_the_finest_volume(
    data: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    moves: list[tuple[np.ndarray, np.ndarray]] = []

    def move(x: np.ndarray, vg: ct.VolumeGeometry, motion: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        moves.append((np.array(motion[0], copy=True), np.array(motion[1], copy=True)))  # as passed, not later
        return pose.in_scanner_frame(x, vg, motion)

    monkeypatch.setattr(solver, "in_scanner_frame", move)
    res, calls = calibrate_and_spy(data, monkeypatch, diagnostics="off")
    start, iterations = calls[-1]
    assert iterations == 10 and start.shape == VG.shape
    # moved by the pose the calibration reports (not by zeros: the solver zeroes theta's pose entries after)
    assert res.pose is not None and len(moves) == 1 and np.any(np.asarray(res.pose["shift"]) != 0)
    np.testing.assert_array_equal(moves[0][0], res.pose["shift"])
    np.testing.assert_array_equal(moves[0][1], res.pose["rotation"])
    # the start fits the data at the returned (scanner-frame) geometry: the finest volume, moved by the pose
    A = ct.Projector(VG, res.geometry, basis="bspline2")
    assert np.linalg.norm(A(start) - data) < 0.5 * np.linalg.norm(data)
    assert np.linalg.norm(A(res.reconstruction) - data) <= np.linalg.norm(A(start) - data) * (1 + 1e-4)


def test_an_explicit_count_is_used_as_given(data: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    _, calls = calibrate_and_spy(data, monkeypatch, diagnostics="off", final_recon_iterations=7)
    assert calls[-1][1] == 7 and np.abs(calls[-1][0]).max() > 0


def blob(vg: ct.VolumeGeometry) -> np.ndarray:
    """A smooth, off-centre, anisotropic volume (interpolation errors small, every motion visible)."""
    axes = np.meshgrid(*[np.arange(n) - (n - 1) / 2 for n in vg.shape], indexing="ij")
    widths = [3.0, 4.0, 2.5][: len(axes)]
    offsets = [1.5, -2.0, 1.0][: len(axes)]
    return np.exp(-sum(((a - o) / w) ** 2 for a, o, w in zip(axes, offsets, widths, strict=True))).astype(np.float32)


@pytest.mark.parametrize("ndim", [2, 3])
def test_the_moved_volume_projects_without_the_pose_as_the_volume_with_it(ndim: int) -> None:
    if ndim == 3:
        vg = ct.VolumeGeometry((20, 22, 24), voxel_size=(1.0, 0.9, 1.1), center=(0.5, -0.4, 0.3))
        pg = ct.cone(np.linspace(0, 2 * np.pi, 10, endpoint=False), (32, 32), 1.5, 60.0, 120.0)
        shift, rotation = np.array([1.3, -0.8, 1.7]), np.array([0.04, -0.03, 0.12])
    else:
        vg = ct.VolumeGeometry((22, 24), voxel_size=(0.9, 1.1), center=(0.5, -0.4))
        pg = ct.fan(np.linspace(0, 2 * np.pi, 10, endpoint=False), 40, 1.5, 60.0, 120.0)
        shift, rotation = np.array([1.3, -0.8]), np.array(0.12)
    x = blob(vg)
    with_pose = ct.Projector(vg, pg.perturb(motion_shift=shift, motion_rotation=rotation), basis="linear")(x)
    A = ct.Projector(vg, pg, basis="linear")
    moved = A(pose.in_scanner_frame(x, vg, (shift, rotation)))
    backwards = A(pose.in_scanner_frame(x, vg, (-shift, -rotation)))  # the motion reversed, to compare
    error = np.linalg.norm(moved - with_pose) / np.linalg.norm(with_pose)
    assert error < 0.02, error
    assert np.linalg.norm(backwards - with_pose) / np.linalg.norm(with_pose) > 10 * error
