"""How the ray-driven kernels add into a shared array: the scatter-add mode, and pairs written as packets.

Dr.Jit 1.5's LLVM backend lowers a scalar ``scatter_add`` to a loop over the lanes of a SIMD packet with a
horizontal reduction or an atomic per lane (about 300 instructions a packet), whatever the ``ReduceMode``. A
*packet* scatter-add of ``n`` adjacent values with ``ReduceMode.Expand`` takes another path: one copy of the target
per pool worker, and per lane one vector load, add and store of the ``n`` values, lane after lane
(so lanes of one packet that hit the same address still add up). :func:`add` writes every value as such a pair —
the value at its even or odd slot, zero in the other — which cost 0.35-0.65x the scalar ``Direct``, ``Local``
or ``Expand`` scatter per value (2^24 adds at random addresses among 2^21, 2 cores; the primitives table of
``python benchmarks/bench_scatter_modes.py``) and brought the ray-driven adjoints from 2.3-3.0x the forward to
1.4-2.1x (CPU seconds, cone 40³, ``python benchmarks/bench_adjoint_ratio.py``), from 3.2-4.3x to 1.7-1.8x at cone
128³ (wall, ``bench_projector.py``).

``Expand`` is only safe while no other Python thread runs Dr.Jit work (:mod:`drct.concurrency`): otherwise, and
where the copies would not fit the memory budget, :func:`scatter_mode` answers an atomic mode and :func:`add`
scatters one value per lane as before.

Example:
    >>> import drjit as dr, numpy as np
    >>> from drjit.llvm.ad import Float, UInt
    >>> target = dr.zeros(Float, 6)
    >>> add(target, Float(1.0, 2.0, 3.0, 4.0), UInt(1, 1, 4, 5))
    >>> target.numpy().tolist()
    [0.0, 3.0, 0.0, 0.0, 3.0, 4.0]
"""

from __future__ import annotations

import sys
from typing import Any

import drjit as dr

from ..concurrency import only_thread
from ..memory import available_bytes

EXPAND_BUDGET = 512 * 2**20
"""Bytes that ``Expand``'s copies of a target (one per pool worker) may take, and at most a quarter of the memory
available; above it the atomics are used (Dr.Jit allocates the copies inside its thread pool, where a failed
allocation is a crash, not an exception)."""


def scatter_mode(target: Any, spread: bool = False) -> dr.ReduceMode:
    """How to scatter-add into ``target``.

    On the CPU: ``Expand`` (one copy of the target per pool worker, no atomics; :func:`add` writes pairs as
    packets there) while the calling thread is the process's only Python thread and the copies stay within
    :data:`EXPAND_BUDGET`. Otherwise atomics: ``Direct`` (one atomic add per lane) where ``spread`` says the
    packet's lanes rarely hit one address (neighbouring rays at least half a voxel apart where they cross the
    volume), else ``Local`` (a reduction within each packet first). Before the pairs, ``Direct`` was the choice
    for spread rays even on one thread (10-25% less CPU time than the scalar ``Expand``). ``Expand`` is not safe
    while another thread runs Dr.Jit work: a thread waiting on the pool runs blocks of other launches under a
    worker's index and mixes the copies (sums up to 13% off, Dr.Jit 1.5; ``tests/test_concurrency.py``). On
    CUDA: Dr.Jit's default (hardware atomics)."""
    if dr.backend_v(target) == dr.JitBackend.CUDA:
        return dr.ReduceMode.Auto
    item = 8 if dr.type_v(target) == dr.VarType.Float64 else 4
    if expand_fits(dr.width(target), item) and only_thread():
        return dr.ReduceMode.Expand
    return dr.ReduceMode.Direct if spread else dr.ReduceMode.Local


def expand_fits(entries: int, item: int = 4) -> bool:
    """Whether ``Expand``'s copies of a target of ``entries`` values of ``item`` bytes (one per pool worker) fit
    :data:`EXPAND_BUDGET` and a quarter of the available memory (:mod:`drct.kernels.slabs` cuts larger adjoint
    targets to slabs that do)."""
    copies = entries * item * max(dr.thread_count(), 1)
    return copies <= EXPAND_BUDGET and copies <= available_bytes() // 4


def add(target: Any, value: Any, index: Any, active: Any = True, mode: dr.ReduceMode | None = None) -> None:
    """``target[index] += value`` where ``active`` (lanes that share an index add up), by ``mode`` (default
    :func:`scatter_mode`). With ``Expand`` on the CPU and an even-sized ``target``, each value goes out as the
    pair of entries ``2 (index // 2)`` and ``2 (index // 2) + 1`` (itself and a zero): a packet scatter."""
    mode = scatter_mode(target) if mode is None else mode
    if mode != dr.ReduceMode.Expand or dr.width(target) % 2 or dr.backend_v(target) != dr.JitBackend.LLVM:
        dr.scatter_add(target, value, index, active, mode=mode)
        return
    name = "Array2f64" if dr.type_v(value) == dr.VarType.Float64 else "Array2f"
    pair = getattr(sys.modules[type(value).__module__], name)
    odd = (index & 1) == 1
    dr.scatter_add(target, pair(dr.select(odd, 0.0, value), dr.select(odd, value, 0.0)), index >> 1, active, mode=mode)


def even_zeros(cls: Any, size: int) -> Any:
    """A zero target of ``size`` entries, one more when ``size`` is odd (so that :func:`add` can write pairs);
    :func:`trimmed` takes the extra entry off."""
    return dr.zeros(cls, size + (size & 1))


def trimmed(target: Any, size: int) -> Any:
    """The first ``size`` entries of ``target`` (``target`` itself when that is all of it)."""
    if dr.width(target) == size:
        return target
    return dr.gather(type(target), target, dr.arange(dr.uint32_array_t(type(target)), size))
