"""How drct's kernel launches share the process: one at a time, and a deterministic mode.

**Threads.** Dr.Jit's fastest CPU scatter-add (``ReduceMode.Expand``) keeps one copy of the target per pool
worker; while it runs, any Dr.Jit work of another Python thread — a second ``A.T``, or an unrelated
``dr.eval`` — corrupted its sums (up to 13% off at 32³, Dr.Jit 1.5: a thread waiting on the pool runs blocks
of other launches). drct therefore uses ``Expand`` only while the calling thread is the process's only Python
thread (:func:`only_thread`), ``Direct`` or ``Local`` (atomics; see :func:`drct.kernels.scatter.scatter_mode`)
otherwise, and runs every operator's launches under one
process-wide re-entrant lock: operators are safe to call from several threads (they take turns; each launch
still uses every core).

**Determinism.** A multi-threaded scatter adds each thread's partial sums in an order that depends on which
thread took which block of rays, so ``A.T y`` can differ between identical calls in the last bits (≤ 1e-6
relative in float32). In deterministic mode the scatter kernels (``A.T`` and the gradients) run on one
thread, in a fixed order, and give bit-identical results every call; they then use one core instead of all,
the forward projection is unchanged (every ray is one lane: it is always reproducible). Turn it on for one
operator (``ct.Projector(..., deterministic=True)``), for a block of code (``with ct.deterministic():``) or
for the process (``ct.set_deterministic(True)``). It is a CPU (LLVM) mode: CUDA's hardware atomics have no
fixed order, and asking for it there raises an error. Bit-reproducibility holds while no other thread runs
Dr.Jit kernels at the same time (a waiting thread may run blocks of the scatter).

**Your own Dr.Jit AD across threads.** Dr.Jit 1.5's ``dr.backward`` is not safe to run in several threads at
once; wrap such blocks in ``with drct.concurrency.exclusive():`` (drct's torch front end does so itself).

Example:
    >>> import numpy as np, drct as ct
    >>> A = ct.Projector(ct.VolumeGeometry((32, 32)), ct.parallel(np.linspace(0, np.pi, 30), 48))
    >>> y = np.random.default_rng(0).random(A.range_shape, dtype=np.float32)
    >>> with ct.deterministic():
    ...     same = A.T(y).tobytes() == A.T(y).tobytes()
    >>> same
    True
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import drjit as dr

_LOCK = threading.RLock()
_state = {"deterministic": False}
_local = threading.local()


IDLE_THREADS = frozenset(
    {
        "tqdm._monitor.TMonitor",
        "ipykernel.heartbeat.Heartbeat",
        "ipykernel.control.ControlThread",
        "ipykernel.shellchannel.ShellChannelThread",
        "ipykernel.parentpoller.ParentPollerUnix",
        "ipykernel.parentpoller.ParentPollerWindows",
        "IPython.core.history.HistorySavingThread",
        "ipykernel.iostream.IOPubThread._thread_main",
        "ipykernel.iostream.OutStream._watch_pipe_fd",
    }
)
"""Threads that never run Dr.Jit code, by class (``module.Class``) or, for plain ``threading.Thread`` objects, by target
(``module.Class.method``): tqdm's monitor and a Jupyter kernel's own (ipykernel 7.4's heartbeat, control, shell
channel, parent poller, history saver, I/O publisher and pipe watchers; a kernel's subshells are not among them:
their user code counts as another thread)."""


def _idle(thread: threading.Thread) -> bool:
    kind = type(thread)
    target = getattr(thread, "_target", None)
    name = f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', '')}"
    return f"{kind.__module__}.{kind.__qualname__}" in IDLE_THREADS or name in IDLE_THREADS


def _zarr_threads() -> set[threading.Thread]:
    """The threads zarr 3 runs its own I/O and codecs on, once a store has been opened: its event loop's thread
    (``zarr.core.sync.iothread``, named ``zarr_io``) and the workers of that loop's executors (the loop's default
    executor, ``asyncio_N``, which ``asyncio.to_thread`` in zarr's codecs starts, and zarr's own
    ``zarr.core.sync._executor``, ``zarr_pool_N``, where ``threading.max_workers`` is configured). They are found
    by their objects, not their names: a user's own asyncio executor threads, also named ``asyncio_N``, belong to
    another loop and still count. They run zarr's work only (unless user code hands zarr's loop Dr.Jit work of
    its own, e.g. in a custom codec). Empty while zarr is not imported (it is not imported to check)."""
    sync = sys.modules.get("zarr.core.sync")
    if sync is None:
        return set()
    io, loop = (_first(getattr(sync, name, None)) for name in ("iothread", "loop"))
    found = {io} if isinstance(io, threading.Thread) else set()
    for executor in (getattr(loop, "_default_executor", None), getattr(sync, "_executor", None)):
        workers = getattr(executor, "_threads", None)  # concurrent.futures.ThreadPoolExecutor's worker threads
        if isinstance(workers, set):
            found.update(t for t in list(workers) if isinstance(t, threading.Thread))
    return found


def _first(holder: object) -> object:
    """``holder[0]`` of zarr's one-entry lists (``iothread``, ``loop``), None for anything else."""
    return holder[0] if isinstance(holder, list) and holder else None


def other_threads() -> list[threading.Thread]:
    """The process's Python threads besides the calling one that may launch Dr.Jit work: all but the threads
    known to run no Dr.Jit code (:data:`IDLE_THREADS`: tqdm's monitor, a Jupyter kernel's own; zarr 3's I/O
    loop and the workers of its executors, found by their objects). Any of them costs :func:`only_thread`.

    Example:
        >>> import threading
        >>> stop = threading.Event()
        >>> mine = threading.Thread(target=stop.wait, name="mine")
        >>> mine.start()
        >>> mine in other_threads()
        True
        >>> stop.set(); mine.join()
    """
    me = threading.current_thread()
    others = [t for t in threading.enumerate() if t is not me and not _idle(t)]
    if not others:
        return others
    zarr = _zarr_threads()
    return [t for t in others if t not in zarr]


def only_thread() -> bool:
    """True when the calling thread is the process's only Python thread, apart from threads known to run no
    Dr.Jit code (see :func:`other_threads`): then no other thread can launch Dr.Jit work while this one's
    kernels run.

    Example:
        >>> from concurrent.futures import ThreadPoolExecutor
        >>> with ThreadPoolExecutor(1) as pool:  # a worker of your own may run Dr.Jit work: it counts
        ...     pool.submit(int).result()
        ...     only_thread()
        0
        False
    """
    return not other_threads()


def set_deterministic(flag: bool) -> None:
    """Make bit-reproducible scatter kernels the process default (see :mod:`drct.concurrency`).

    Example:
        >>> import drct as ct
        >>> ct.set_deterministic(True)
        >>> ct.get_deterministic()
        True
        >>> ct.set_deterministic(False)  # back to the default: all cores for the scatter kernels
    """
    if not isinstance(flag, bool):
        raise TypeError(f"set_deterministic takes True or False, got {flag!r}")
    _state["deterministic"] = flag


def get_deterministic() -> bool:
    """Whether scatter kernels run in deterministic mode by default in this thread (a ``with
    ct.deterministic()`` block in this thread, else the process default).

    Example:
        >>> import drct as ct
        >>> ct.get_deterministic()
        False
        >>> with ct.deterministic():
        ...     ct.get_deterministic()
        True
    """
    override = getattr(_local, "deterministic", None)
    return _state["deterministic"] if override is None else bool(override)


@contextmanager
def deterministic(flag: bool = True) -> Iterator[None]:
    """Within the block (this thread only), scatter kernels are bit-reproducible (``flag=True``) or not.

    Example:
        >>> import numpy as np, drct as ct
        >>> A = ct.Projector(ct.VolumeGeometry((16, 16)), ct.parallel(np.linspace(0, np.pi, 12), 24))
        >>> y = np.ones(A.range_shape, np.float32)
        >>> with ct.deterministic():  # bit-identical adjoints within the block
        ...     a, b = A.T(y), A.T(y)
        >>> bool(np.array_equal(a, b))
        True
    """
    if not isinstance(flag, bool):
        raise TypeError(f"deterministic takes True or False, got {flag!r}")
    previous = getattr(_local, "deterministic", None)
    _local.deterministic = flag
    try:
        yield
    finally:
        _local.deterministic = previous


@contextmanager
def exclusive() -> Iterator[None]:
    """Hold drct's launch lock for a block of Dr.Jit work of your own, e.g. a ``dr.backward`` through drct
    operators. Dr.Jit 1.5's AD traversal is not safe to run from several threads at once (two concurrent
    ``dr.backward`` calls through custom operations crashed the interpreter about one run in five here):
    drct's own traversals (the torch front end) hold this lock, and so should yours when threads share the
    work. Re-entrant: drct's operators inside the block take it again without waiting."""
    with _LOCK:
        yield


@contextmanager
def launches(backend: str, reproducible: bool = False) -> Iterator[None]:
    """Hold the process-wide launch lock for the block; with ``reproducible`` (CPU only), run the block's
    kernels on one worker thread so that scatter-adds accumulate in a fixed order."""
    if reproducible and backend == "cuda":
        raise NotImplementedError(
            "deterministic mode is a CPU (LLVM) mode: CUDA's atomic scatter-adds have no fixed order; "
            "use deterministic=False on CUDA or run on the CPU backend"
        )
    with _LOCK:
        threads = dr.thread_count()
        single = reproducible and threads > 1
        if single:
            dr.sync_thread()
            dr.set_thread_count(1)
        try:
            yield
        finally:
            dr.sync_thread()  # CPU launches are asynchronous: the kernels must finish before the next thread's start
            if single:
                dr.set_thread_count(threads)
