"""``drct.kernels.scatter.add``: the scatter-add of the ray-driven adjoints, checked against numpy's ``add.at``."""

from __future__ import annotations

import threading

import drjit as dr
import numpy as np
import pytest

from drct.backend import types
from drct.kernels import scatter

MODES = [dr.ReduceMode.Expand, dr.ReduceMode.Direct, dr.ReduceMode.Local]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("size", [1, 2, 37, 4096])
def test_add_matches_numpy_with_collisions_and_masks(mode: dr.ReduceMode, dtype: str, size: int) -> None:
    """Lanes of one packet that hit one address (every lane the same index, runs of neighbours, both parities)
    must all count; masked lanes must not; odd-sized targets take the scalar path."""
    t = types(dtype)
    rng = np.random.default_rng(size)
    n = 5000
    index = np.concatenate([np.zeros(64, np.uint32), rng.integers(0, size, n - 64).astype(np.uint32)])
    index[100:140] = size - 1  # the last entry, odd or even
    value = rng.uniform(-1, 1, n)
    active = rng.random(n) < 0.8
    target = dr.zeros(t.Float, size)
    scatter.add(target, t.Float(value), t.UInt(index), t.Bool(active), mode)
    expected = np.zeros(size)
    np.add.at(expected, index[active], value[active])
    tol = 1e-4 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(target.numpy(), expected, rtol=0, atol=tol * max(1.0, np.abs(expected).max()))


def test_even_zeros_and_trimmed_round_trip() -> None:
    t = types("float32")
    for size in (1, 6, 7):
        target = scatter.even_zeros(t.Float, size)
        assert dr.width(target) % 2 == 0 and dr.width(target) >= size
        scatter.add(target, t.Float(np.arange(size, dtype=np.float32)), dr.arange(t.UInt, size))
        assert scatter.trimmed(target, size).numpy().tolist() == list(range(size))


def test_expand_only_while_no_other_thread_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``Expand``'s copies per pool worker are mixed by another thread's Dr.Jit work (tests/test_concurrency.py):
    with a second Python thread alive the mode is an atomic one."""
    t = types("float32")
    target = dr.zeros(t.Float, 1024)
    monkeypatch.setattr(scatter, "only_thread", lambda: True)
    assert scatter.scatter_mode(target) == dr.ReduceMode.Expand
    monkeypatch.undo()
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert scatter.scatter_mode(target) == dr.ReduceMode.Local
        assert scatter.scatter_mode(target, spread=True) == dr.ReduceMode.Direct
    finally:
        release.set()
        other.join()


def test_expand_stays_within_its_memory_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    t = types("float64")
    target = dr.zeros(t.Float, 1024)
    monkeypatch.setattr(scatter, "only_thread", lambda: True)
    assert scatter.scatter_mode(target, spread=True) == dr.ReduceMode.Expand
    monkeypatch.setattr(scatter, "EXPAND_BUDGET", 1024 * 8 * max(dr.thread_count(), 1) - 1)
    assert scatter.scatter_mode(target, spread=True) == dr.ReduceMode.Direct


def test_a_jupyter_kernels_own_threads_do_not_count_a_users_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Jupyter kernel runs its own threads (ipykernel 7.4: heartbeat, control, I/O publisher, ...), which never
    run Dr.Jit code: they must not cost the adjoint its fast mode. Stand-ins with the same class or target names;
    any other thread still counts."""
    from drct.concurrency import only_thread

    release = threading.Event()

    class Heartbeat(threading.Thread):
        def run(self) -> None:
            release.wait()

    Heartbeat.__module__, Heartbeat.__qualname__ = "ipykernel.heartbeat", "Heartbeat"

    def _thread_main() -> None:
        release.wait()

    _thread_main.__module__, _thread_main.__qualname__ = "ipykernel.iostream", "IOPubThread._thread_main"
    threads = [Heartbeat(), threading.Thread(target=_thread_main)]
    for thread in threads:
        thread.start()
    alive = [threading.current_thread(), *threads]  # not the threads earlier tests left (zarr's, for one)
    monkeypatch.setattr(threading, "enumerate", lambda: list(alive))
    try:
        assert only_thread()
        user = threading.Thread(target=release.wait)
        user.start()
        threads.append(user)
        alive.append(user)
        assert not only_thread()
    finally:
        release.set()
        for thread in threads:
            thread.join()


@pytest.mark.slow
def test_inside_a_real_jupyter_kernel_the_caller_counts_as_alone() -> None:
    """The same in a kernel started by jupyter_client (skipped where ipykernel is not installed)."""
    pytest.importorskip("ipykernel")
    manager = pytest.importorskip("jupyter_client.manager")
    km, kc = manager.start_new_kernel(kernel_name="python3")
    try:
        msg_id = kc.execute("from drct.concurrency import only_thread; print('alone', only_thread())")
        out = ""
        while True:
            msg = kc.get_iopub_msg(timeout=60)
            if msg["msg_type"] == "stream":
                out += msg["content"]["text"]
            state = msg["content"].get("execution_state")
            if state == "idle" and msg["parent_header"].get("msg_id") == msg_id:
                break
        assert "alone True" in out, out
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
