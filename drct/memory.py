"""How much memory an operation may take, and a refusal naming both numbers before it tries.

A failed allocation inside Dr.Jit's worker threads is a segfault, not an exception, so drct estimates what a
launch needs and compares it with what the process may still allocate: the smallest of the machine's available
memory (``MemAvailable``), the cgroup's limit less its usage (containers) and the address-space limit
(``ulimit -v``) less the process's current size.

Example:
    >>> from drct.memory import available_bytes, require_memory
    >>> available_bytes() > 0
    True
    >>> require_memory(2**70, "a 1-zebibyte array")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    drct.errors.MemoryBudgetError: a 1-zebibyte array needs 1099511627776.0 GiB, but only ... GiB can be ...
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from .errors import MemoryBudgetError

_GIB = 2**30


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> int | None:
    limit, usage = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is None:  # cgroup v1
        limit, usage = (
            _read_int("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
            _read_int("/sys/fs/cgroup/memory/memory.usage_in_bytes"),
        )
    if limit is None or usage is None or limit >= 2**60:
        return None
    return max(limit - usage, 0)


def _address_space_headroom() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    size = _meminfo_self("VmSize")
    return max(soft - (size or 0), 0)


def _meminfo_self(key: str) -> int | None:
    try:
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_bytes() -> int:
    """Bytes this process may still allocate (the tightest of the limits above; the physical memory size where
    none can be read)."""
    found = [v for v in (_meminfo("MemAvailable"), _cgroup_headroom(), _address_space_headroom()) if v is not None]
    if not found:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return int(pages * size)
    return int(min(found))


def require_memory(nbytes: float, what: str, fraction: float = 0.9) -> None:
    """Raise :class:`~drct.errors.MemoryBudgetError` when ``what`` needs more than ``fraction`` of the memory
    still available (the rest is left for Python, the compiler and the operating system)."""
    have = available_bytes()
    if nbytes > fraction * have:
        raise MemoryBudgetError(
            f"{what} needs {nbytes / _GIB:.1f} GiB, but only {have / _GIB:.1f} GiB can be allocated "
            f"(free memory, container and ulimit limits); use a smaller problem, process the views or the batch "
            "in parts, or free memory"
        )
