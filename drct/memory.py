"""Host memory: how much is available, and a check that refuses an allocation that cannot fit.

Call :func:`require_memory` with an estimate *before* allocating arrays whose size comes from the user (a scene's
detector and views, a volume shape), so that a too-large request ends in a clear
:class:`~drct.errors.MemoryBudgetError` naming what was needed and what is available, instead of a segfault inside
Dr.Jit, minutes of swapping, or an out-of-memory kill.

Example:
    >>> from drct.memory import available_bytes, format_bytes, require_memory
    >>> available_bytes() > 0
    True
    >>> require_memory(1024, "a small array")
    >>> format_bytes(3 * 2**30)
    '3.0 GiB'
    >>> require_memory(2**80, "2^78 voxels")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    drct.errors.MemoryBudgetError: 2^78 voxels needs about 1.0 YiB of memory, but only ... is available; ...
"""

from __future__ import annotations

import functools
import os
import resource
from pathlib import Path
from typing import Any

from .errors import MemoryBudgetError

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units with one decimal, e.g. ``'1.5 GiB'``."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _meminfo_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (Linux: free memory plus reclaimable caches), or None."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """What a cgroup v2 memory limit (a container's) still allows, or None when there is no limit."""
    try:
        with open("/sys/fs/cgroup/memory.max", "rb") as f:
            limit = f.read().strip()
        if limit == b"max":
            return None
        with open("/sys/fs/cgroup/memory.current", "rb") as f:
            used = int(f.read().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def _address_space_available() -> int | None:
    """What an address-space limit (``ulimit -v``) still allows: the limit less the process's current size."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(soft - int(line.split()[1]) * 1024, 0)
    except (OSError, ValueError, IndexError):
        pass
    return soft


@functools.cache
def _psutil() -> Any:
    """psutil when installed, else None; asked once (a failed import searches ``sys.path`` again at every try:
    0.3 ms, three times per projection, a few percent of a 256² forward projection)."""
    try:
        import psutil  # type: ignore[import-not-found]
    except ImportError:
        return None
    return psutil


def available_bytes() -> int:
    """Host memory available to this process now, in bytes.

    From ``psutil.virtual_memory().available`` when psutil is installed, else ``/proc/meminfo``'s
    ``MemAvailable``, else ``os.sysconf`` (available physical pages, or all physical pages); capped by a cgroup
    (container) limit and by an address-space limit (``ulimit -v``) where one is set.
    """
    found: int | None = None
    psutil = _psutil()
    found = _meminfo_available() if psutil is None else int(psutil.virtual_memory().available)
    if found is None:
        page = os.sysconf("SC_PAGE_SIZE")
        for name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
            try:
                found = int(os.sysconf(name)) * int(page)
                break
            except (ValueError, OSError):
                continue
    if found is None:  # pragma: no cover - no way to ask this system
        found = 1 << 62
    limits = [v for v in (_cgroup_available(), _address_space_available()) if v is not None]
    return min([found, *limits])


def require_memory(nbytes: float, what: str) -> None:
    """Raise :class:`~drct.errors.MemoryBudgetError` if ``nbytes`` exceeds :func:`available_bytes`.

    Args:
        nbytes: the estimated peak need (a Python int or float: no overflow for any size).
        what: what needs it, for the message, e.g. ``"simulating 1048576 views x 1048576 pixels"``.
    """
    available = available_bytes()
    if nbytes > available:
        raise MemoryBudgetError(
            f"{what} needs about {format_bytes(nbytes)} of memory, but only {format_bytes(available)} is available; "
            "reduce the size (fewer views, pixels or voxels) or free memory"
        )
