"""The seed-paper examples in ``examples/learned`` (end-to-end network, PYRO-NN's learned FDK weights and filter):
each runs with ``--quick`` and must show what it claims (the loss falls, the learned weights move towards Parker's,
the learned filter beats the ramp), plus the parts they are built from (the training phantoms, the
redundancy bookkeeping)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import drct as ct
from drct.recon.weights import fbp_weights

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "learned"


def _run(script: str, out: Path, *extra: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's drct, not another installed one
    cmd = [sys.executable, str(EXAMPLES / script), "--quick", "-o", str(out), *extra]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _example(name: str) -> Any:
    sys.path.insert(0, str(EXAMPLES))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(EXAMPLES))


# ---- the training phantoms ------------------------------------------------------------------------------------
@pytest.mark.parametrize("ndim", [2, 3])
def test_random_body_is_non_negative_and_inside_its_disc(ndim: int) -> None:
    rng = np.random.default_rng(5)
    shape = (32,) * ndim
    vg = ct.VolumeGeometry(shape, voxel_size=200.0 / 32)
    centres = np.meshgrid(*[np.arange(32) - 15.5] * ndim, indexing="ij")
    outside = sum(c**2 for c in centres) > 16.0**2  # voxels whose centre lies outside the 100 mm disc
    for _ in range(20 if ndim == 2 else 4):
        items = ct.phantoms.random_body(rng, 100.0, ndim=ndim)
        assert all(e.ndim == ndim for e in items)
        x = ct.phantoms.rasterize(items, vg, supersample=2)
        assert x.min() >= 0.0
        assert np.abs(x[outside]).max() == 0.0
        assert 0.015 < np.median(x[x > 0]) < 0.025  # mostly soft tissue


def test_random_body_is_reproducible_and_checks_ndim() -> None:
    a = ct.phantoms.random_body(np.random.default_rng(3), 50.0)
    b = ct.phantoms.random_body(np.random.default_rng(3), 50.0)
    assert [(e.center, e.axes, e.mu) for e in a] == [(e.center, e.axes, e.mu) for e in b]
    with pytest.raises(ValueError, match="ndim"):
        ct.phantoms.random_body(np.random.default_rng(3), 50.0, ndim=4)


# ---- the redundancy bookkeeping of fdk_weights.py -------------------------------------------------------------
def test_redundancy_residual_is_zero_for_parker_only() -> None:
    """Parker's weights meet w(β, γ) + w(conjugate) = 1; ones (the overlap counted twice) and halves do not."""
    fdk = _example("fdk_weights")
    vg, pg, du, step = fdk.geometry("fan", 48, 72)
    parker = fbp_weights(pg, vg).redundancy
    gamma = fdk.fan_angles(pg.det_shape[-1], du)
    mask = fdk.SOD * np.sin(np.abs(gamma)) < fdk.RADIUS
    assert fdk.redundancy_residual(parker, gamma, step, mask) < 0.01
    assert fdk.redundancy_residual(np.ones_like(parker), gamma, step, mask) > 0.5
    assert fdk.redundancy_residual(np.full_like(parker, 0.5), gamma, step, mask) > 0.3
    assert fdk.redundancy_residual(parker, -gamma, step, mask) > 0.2  # the wrong sign of γ is caught


# ---- the examples, CI size ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_fdk_weights_move_towards_parker(tmp_path: Path) -> None:
    _run("fdk_weights.py", tmp_path)
    for beam in ("fan", "cone"):
        r = json.loads((tmp_path / f"fdk_weights_{beam}.json").read_text())
        assert (tmp_path / f"fdk_weights_{beam}.png").stat().st_size > 10_000
        assert r["loss_last"] < r["loss_first"]
        assert r["distance_to_parker_learned"] < r["distance_to_parker_initial"]
        assert r["residual_learned"] < r["residual_initial"]
        assert r["residual_parker"] < 0.02
        assert r["error_learned"] < r["error_ones"]


@pytest.mark.slow
def test_learned_filter_beats_the_ramp(tmp_path: Path) -> None:
    _run("filter_learning.py", tmp_path)
    for beam in ("fan", "cone"):
        r = json.loads((tmp_path / f"filter_learning_{beam}.json").read_text())
        assert (tmp_path / f"filter_learning_{beam}.png").stat().st_size > 10_000
        assert r["loss_last"] < r["loss_first"]
        assert r["psnr_learned"] > r["psnr_ramp"]


@pytest.mark.slow
def test_end_to_end_trains_at_matched_parameters(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    _run("end_to_end.py", tmp_path)
    r = json.loads((tmp_path / "end_to_end.json").read_text())
    assert (tmp_path / "end_to_end.png").stat().st_size > 10_000
    for model in ("end-to-end", "post"):
        assert r["loss_last"][model] < r["loss_first"][model]
    e2e, post = r["end-to-end"]["params"], r["FBP + U-Net"]["params"]
    assert abs(e2e - post) <= 0.1 * e2e
    assert r["FBP (ramp)"]["params"] == 0
    for name in ("FBP (ramp)", "FBP (Hann)", "FBP + U-Net", "end-to-end"):
        assert np.isfinite(r[name]["psnr"]) and 0 < r[name]["ssim"] <= 1 and r[name]["ms_per_image"] > 0


@pytest.mark.slow
def test_examples_refuse_to_overwrite(tmp_path: Path) -> None:
    """Outputs are kept unless --force: a second run stops before any work with a message naming the file."""
    (tmp_path / "fdk_weights_fan.png").write_bytes(b"")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(EXAMPLES / "fdk_weights.py"), "--quick", "--beam", "fan", "-o", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "refusing to overwrite" in done.stderr
