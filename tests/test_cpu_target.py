"""drct.cpu_target: LLVM's fast-gather tuning changes how fast the kernels run, never what they return."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from drct.cpu_target import FLAG, llvm_target, setting, wants_fast_gather

# the same projections, adjoints (deterministic: a fixed order of the scatter-adds), gradients and geometry
# derivatives, written by a fresh process for each setting
SCRIPT = textwrap.dedent(
    """
    import sys
    import drjit as dr
    import numpy as np
    import drct as ct
    from drjit.llvm.ad import Float64, TensorXf
    from drct.cpu_target import llvm_target

    rng = np.random.default_rng(0)
    out = {}
    vg3 = ct.VolumeGeometry((12, 11, 10))
    cone = ct.cone(np.linspace(0, 2 * np.pi, 5, endpoint=False), (9, 13), 1.7, 40.0, 80.0)
    vg2 = ct.VolumeGeometry((14, 13))
    scans = {
        "cone": (vg3, cone),
        "parallel": (vg2, ct.parallel(np.linspace(0, np.pi, 7, endpoint=False), 19)),
        "fan": (vg2, ct.fan(np.linspace(0, 2 * np.pi, 6, endpoint=False), 21, 1.3, 30.0, 60.0)),
    }
    with ct.deterministic():
        for name, (vg, pg) in scans.items():
            x = rng.random(vg.shape).astype(np.float32)
            for basis in ("voxel", "linear", "bspline2", "bspline3"):
                A = ct.Projector(vg, pg, basis=basis)
                y = A(x)
                out[f"{name}-{basis}-forward"] = y
                out[f"{name}-{basis}-adjoint"] = A.T(np.cos(y))
                if basis == "voxel":
                    continue
                # the derivative march (a calibration's Jacobian) and the reverse-mode gradient w.r.t. the volume
                # and a detector shift
                xt = TensorXf(x)
                s = Float64(0.0)
                dr.enable_grad(s)
                dr.set_grad(s, 1.0)
                out[f"{name}-{basis}-jvp"] = A.geometry_jvps(xt, [pg.perturb(det_shift_u=s)])[0].numpy()
                s, xg = Float64(0.0), TensorXf(x)
                dr.enable_grad(s, xg)
                r = ct.Projector(vg, pg.perturb(det_shift_u=s), basis=basis).forward_tensor(xg) - TensorXf(y)
                dr.backward(0.5 * dr.sum(dr.square(r.array)))
                out[f"{name}-{basis}-grad-volume"] = dr.grad(xg).numpy()
                out[f"{name}-{basis}-grad-shift"] = dr.grad(s).numpy()
    out["features"] = np.array(llvm_target()[1])  # after drct chose its backend (and tuned the target)
    np.savez(sys.argv[1], **out)
    """
)


def run(tmp_path, choice: str) -> dict[str, np.ndarray]:
    path = tmp_path / f"out{choice}.npz"
    env = {**os.environ, "DRCT_FAST_GATHER": choice}
    subprocess.run([sys.executable, "-c", SCRIPT, str(path)], check=True, env=env, timeout=600)
    with np.load(path) as f:
        return dict(f)


def test_fast_gather_gives_the_same_bits(tmp_path):
    """With and without the flag every projection and adjoint is bit for bit the same. On an AVX2 CPU without
    AVX-512 the flag changes the machine code (the test checks it was set); elsewhere both runs compile alike."""
    off, on = run(tmp_path, "0"), run(tmp_path, "1")
    assert FLAG not in str(off.pop("features")).split(",")
    features = str(on.pop("features")).split(",")
    if "+avx2" in features and "+avx512f" not in features:
        assert FLAG in features
    assert off.keys() == on.keys()
    for key in off:
        assert off[key].tobytes() == on[key].tobytes(), key


def test_policy():
    zen3 = "+avx,+avx2,+fma,-avx512f"
    assert wants_fast_gather("znver3", zen3, "auto")
    assert not wants_fast_gather("znver2", zen3, "auto")  # not measured there
    assert wants_fast_gather("znver2", zen3, "1")
    assert not wants_fast_gather("znver3", zen3, "0")
    assert not wants_fast_gather("znver3", "+avx,+avx2,+avx512f", "1")  # LLVM gathers in hardware already
    assert not wants_fast_gather("znver3", "+avx,+sse4.2", "1")  # no AVX2 gathers at all
    assert not wants_fast_gather("znver3", zen3 + "," + FLAG, "1")  # already there


def test_setting_names_a_bad_value(monkeypatch):
    monkeypatch.setenv("DRCT_FAST_GATHER", "yes")
    with pytest.raises(ValueError, match="DRCT_FAST_GATHER must be one of auto, 0, 1, got 'yes'"):
        setting()
    monkeypatch.setenv("DRCT_FAST_GATHER", " 1 ")
    assert setting() == "1"


def test_this_process_follows_the_policy():
    import drct as ct

    if ct.get_backend() != "llvm":
        pytest.skip("the LLVM backend is not the active one")
    cpu, features, _ = llvm_target()  # type: ignore[misc]
    flags = features.split(",")
    if setting() == "auto" and "+avx2" in flags and "+avx512f" not in flags:
        assert (FLAG in flags) == (cpu == "znver3")
