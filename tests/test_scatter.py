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
