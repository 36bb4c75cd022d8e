"""Operators called from several threads at once give the single-threaded results; deterministic mode is
bit-reproducible.

Before the fix (Dr.Jit's ``ReduceMode.Expand`` scatter on the CPU), two threads calling ``A.T`` at once at 32³
gave sums up to 13% off, and torch gradients were wrong in most calls."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import drjit as dr
import numpy as np
import pytest
import torch

import drct as ct
import drct.torch
from drct.backend import types
from drct.concurrency import exclusive

RTOL = 2e-5  # float32 sums in another order; the defect was 1e-2 .. 1e-1


def _problem(basis: str) -> tuple[ct.Projector, np.ndarray, np.ndarray]:
    vg = ct.VolumeGeometry((32, 32, 32))
    pg = ct.cone(np.linspace(0, 2 * np.pi, 24, endpoint=False), (36, 36), 1.5, 100.0, 200.0)
    A = ct.Projector(vg, pg, basis=basis)
    rng = np.random.default_rng(7)
    return A, rng.random(vg.shape, dtype=np.float32), rng.random(pg.shape, dtype=np.float32)


def _volume_gradient(A: ct.Projector, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """d/dx of <A x, y> through Dr.Jit's reverse mode (the adjoint run by the custom op). Dr.Jit's own AD
    traversal is not thread-safe, so user code holds drct's lock around it (see drct.concurrency.exclusive)."""
    t = types("float32")
    with exclusive():
        xt = t.Tensor(x)
        dr.enable_grad(xt)
        out = A.forward_tensor(xt)
        dr.backward(dr.sum(out.array * t.Tensor(y).array))
        return dr.grad(xt).numpy()


def _torch_gradient(A: ct.Projector, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xt = torch.tensor(x, requires_grad=True)
    (ct.torch.project(xt, A) * torch.tensor(y)).sum().backward()
    assert xt.grad is not None
    return xt.grad.numpy()


def _close(got: np.ndarray, want: np.ndarray) -> bool:
    return float(np.abs(got - want).max()) <= RTOL * float(np.abs(want).max())


def test_four_threads_mixed_calls_equal_single_threaded() -> None:
    ops = {b: _problem(b) for b in ("voxel", "linear")}
    calls: dict[str, Callable[[], np.ndarray]] = {}
    for basis, (A, x, y) in ops.items():
        calls[f"{basis} A"] = lambda A=A, x=x: A(x)
        calls[f"{basis} A.T"] = lambda A=A, y=y: A.T(y)
        calls[f"{basis} grad"] = lambda A=A, x=x, y=y: _volume_gradient(A, x, y)
        calls[f"{basis} torch grad"] = lambda A=A, x=x, y=y: _torch_gradient(A, x, y)
    want = {name: call() for name, call in calls.items()}  # single-threaded
    names = list(calls)
    failures: list[str] = []
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        order = np.random.default_rng(seed).integers(0, len(names), 50)
        try:
            for i in order:
                name = names[i]
                if not _close(calls[name](), want[name]):
                    failures.append(name)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert not failures, f"{len(failures)} of 200 concurrent calls differ from the single-threaded result: {failures}"


def test_adjoint_is_right_while_another_thread_runs_unrelated_drjit_work() -> None:
    """Dr.Jit's Expand scatter was corrupted by any Dr.Jit work of another thread (9 of 20 calls off by ~10%)."""
    from drjit.llvm import Float

    A, _, y = _problem("linear")
    want = A.T(y)
    stop = threading.Event()

    def other() -> None:
        while not stop.is_set():
            dr.eval(dr.arange(Float, 1_000_000) * dr.opaque(Float, 2.0))
            dr.sync_thread()

    th = threading.Thread(target=other)
    th.start()
    try:
        bad = [k for k in range(20) if not _close(A.T(y), want)]
    finally:
        stop.set()
        th.join()
    assert not bad, f"{len(bad)} of 20 adjoints were wrong while another thread used Dr.Jit"


@pytest.mark.parametrize("basis", ["voxel", "bspline2"])
def test_deterministic_mode_is_bit_reproducible(basis: str) -> None:
    A, x, y = _problem(basis)
    with ct.deterministic():
        adjoints = {A.T(y).tobytes() for _ in range(4)}
        grads = {_volume_gradient(A, x, y).tobytes() for _ in range(3)}
    assert len(adjoints) == 1 and len(grads) == 1
    assert _close(np.frombuffer(adjoints.pop(), np.float32).reshape(x.shape), A.T(y))
    B = ct.Projector(A.vg, A.pg, basis=basis, deterministic=True)
    assert len({B.T(y).tobytes() for _ in range(3)}) == 1


def test_deterministic_switches_are_checked_and_scoped() -> None:
    with pytest.raises(TypeError, match="True or False"):
        ct.set_deterministic(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="deterministic must be"):
        ct.Projector(ct.VolumeGeometry((4, 4)), ct.parallel([0.0], 4), deterministic="yes")  # type: ignore[arg-type]
    assert not ct.get_deterministic()
    with ct.deterministic():
        assert ct.get_deterministic()
        with ct.deterministic(False):
            assert not ct.get_deterministic()
    assert not ct.get_deterministic()


def test_cli_results_are_bit_reproducible_by_default(tmp_path: Path) -> None:
    """``drct reconstruct`` writes results files in deterministic mode unless --nondeterministic is given."""
    import tifffile

    from drct.cli import main

    vg = ct.VolumeGeometry((24, 24, 24))
    pg = ct.cone(np.linspace(0, 2 * np.pi, 30, endpoint=False), (28, 28), 1.5, 80.0, 160.0)
    y = ct.Projector(vg, pg)(ct.phantoms.shepp_logan(vg))
    np.save(tmp_path / "y.npy", y)
    ct.save_geometry(tmp_path / "g.json", pg, vg)
    outputs = []
    for run in range(3):
        out = tmp_path / f"rec{run}.tif"
        argv = ["reconstruct", str(tmp_path / "y.npy"), "--geometry", str(tmp_path / "g.json"), "-o", str(out)]
        assert main([*argv, "--method", "sirt", "--niter", "3", "--no-progress"]) == 0
        outputs.append(tifffile.imread(out).tobytes())
    assert outputs[0] == outputs[1] == outputs[2]
    assert not ct.get_deterministic()  # the CLI's mode does not leak into the process


ZARR_THEN_USER_THREADS = """
import asyncio, json, sys, tempfile, threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np
from drjit.llvm.ad import Float
from drct.concurrency import only_thread
from drct.kernels.scatter import scatter_mode
from drct.outofcore.store import create_array, open_array

out = {"alone": only_thread(), "zarr imported to check": "zarr" in sys.modules}
folder = Path(tempfile.mkdtemp())
create_array(folder / "a.zarr", (4, 2, 2), "float32", block=2).write(0, np.ones((4, 2, 2)))
out["read"] = float(open_array(folder / "a.zarr").read(0, 4).sum())
out["threads"] = sorted(t.name for t in threading.enumerate())
out["after zarr"] = only_thread()
out["mode"] = scatter_mode(Float(0.0, 0.0)).name
loop = asyncio.new_event_loop()  # a user's asyncio loop: its executor's workers are named asyncio_N like zarr's
loop.run_until_complete(loop.run_in_executor(None, int))
out["user asyncio"] = only_thread()
loop.run_until_complete(loop.shutdown_default_executor())
loop.close()
out["user asyncio gone"] = only_thread()
with ThreadPoolExecutor(1) as pool:
    pool.submit(int).result()
    out["user pool"] = only_thread()
print(json.dumps(out))
"""


def test_zarrs_own_threads_do_not_cost_the_fast_scatter_a_users_do() -> None:
    """Opening a zarr 3 store leaves zarr's I/O loop thread (``zarr_io``) and its executor's workers
    (``asyncio_N``) alive; they run zarr's I/O and codecs only, so the adjoints keep ``Expand`` (before: atomics
    in the whole process from then on, about half the speed). A user's own asyncio executor workers, with the
    same names, and pool threads still count. In a fresh interpreter: earlier tests leave threads of their own."""
    pytest.importorskip("zarr")
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, "-c", ZARR_THEN_USER_THREADS], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["alone"] is True and out["zarr imported to check"] is False, out
    assert out["read"] == 16.0
    assert "zarr_io" in out["threads"] and "asyncio_0" in out["threads"], out  # zarr's threads are alive
    assert out["after zarr"] is True and out["mode"] == "Expand", out
    assert out["user asyncio"] is False and out["user pool"] is False, out
    assert out["user asyncio gone"] is True, out
