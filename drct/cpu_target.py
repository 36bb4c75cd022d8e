"""How Dr.Jit's LLVM backend compiles for this CPU: hardware gathers where LLVM's tuning would split them.

LLVM emits a hardware gather (AVX2's ``vgatherdps``) for a vector gather only where its tuning for the CPU calls
gathers fast: every AVX-512 CPU, and Intel's AVX2 cores that LLVM marks ``fast-gather``. For AMD Zen 3 it splits
every 8-lane gather into 8 scalar loads, inserts and mask tests. drct's marches gather their coefficients cell by
cell (9 per cell and ray for bspline2), so on such a CPU the split gathers took most of a B-spline projection's
time. :func:`tune_llvm_target` adds LLVM's ``fast-gather`` tuning flag to the target Dr.Jit compiles for: the
instruction set is the same, only the instructions chosen for a gather change, and the results are the same bits
(``tests/test_cpu_target.py``).

``DRCT_FAST_GATHER``: ``1`` adds the flag on any x86 CPU with AVX2 and without AVX-512, ``0`` never; unset or
``auto``, only on AMD Zen 3 (LLVM's ``znver3``), the CPU it was measured on (README, Benchmarks). The setting is
Dr.Jit's, so it is process-wide: every LLVM kernel compiled afterwards gets it, drct's or another library's.

Example:
    >>> from drct.cpu_target import wants_fast_gather
    >>> wants_fast_gather("znver3", "+avx2,-avx512f,+fma", "auto")
    True
    >>> wants_fast_gather("skylake-avx512", "+avx2,+avx512f", "1")  # AVX-512: LLVM already uses hardware gathers
    False
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
import warnings
from typing import Any

import drjit as dr

SETTINGS = ("auto", "0", "1")
MEASURED_CPUS = ("znver3",)  # where hardware gathers were measured faster (README, Benchmarks)
FLAG = "+fast-gather"
_lock = threading.Lock()
_result: list[bool] = []  # tune_llvm_target's answer, once made


@functools.cache
def _core() -> Any | None:
    """Dr.Jit's core library with the three target functions typed (their C++ names in Dr.Jit 1.5), or None."""
    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(dr.__file__), "libdrjit-core.so"))
        cpu, features = lib._Z19jit_llvm_target_cpuv, lib._Z24jit_llvm_target_featuresv
        width, set_target = lib._Z21jit_llvm_vector_widthv, lib._Z19jit_llvm_set_targetPKcS0_j
    except (OSError, AttributeError):  # another Dr.Jit build or platform: keep Dr.Jit's own target
        return None
    cpu.restype = features.restype = ctypes.c_char_p
    width.restype = ctypes.c_uint32
    set_target.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint32]
    set_target.restype = None
    return lib


def llvm_target() -> tuple[str, str, int] | None:
    """Dr.Jit's LLVM target: CPU name, feature string and vector width (None where it cannot be read, or before
    the LLVM backend is initialised)."""
    lib = _core()
    if lib is None or not dr.has_backend(dr.JitBackend.LLVM):
        return None
    cpu, features = lib._Z19jit_llvm_target_cpuv(), lib._Z24jit_llvm_target_featuresv()
    if not cpu:
        return None
    return cpu.decode(), (features or b"").decode(), int(lib._Z21jit_llvm_vector_widthv())


def set_llvm_target(cpu: str, features: str, width: int) -> None:
    """Re-target Dr.Jit's LLVM backend (initialised): kernels compiled afterwards are for ``cpu`` with ``features``
    (LLVM's comma-separated ``+name`` / ``-name`` list) in packets of ``width`` lanes. Raises where this Dr.Jit
    build does not export the function (``benchmarks/bench_vector_width.py`` compares settings with it).

    Example:
        >>> from drct.cpu_target import llvm_target, set_llvm_target
        >>> cpu, features, width = llvm_target()
        >>> set_llvm_target(cpu, features, width)  # the same target again
        >>> llvm_target() == (cpu, features, width)
        True
    """
    lib = _core()
    if lib is None:
        raise RuntimeError("this Dr.Jit build does not export jit_llvm_set_target (libdrjit-core.so)")
    lib._Z19jit_llvm_set_targetPKcS0_j(cpu.encode(), features.encode(), int(width))


def setting() -> str:
    """``DRCT_FAST_GATHER`` (``auto`` when unset); any other value than ``auto``, ``0`` or ``1`` raises."""
    value = os.environ.get("DRCT_FAST_GATHER", "auto").strip().lower() or "auto"
    if value not in SETTINGS:
        raise ValueError(f"DRCT_FAST_GATHER must be one of {', '.join(SETTINGS)}, got {value!r}")
    return value


def wants_fast_gather(cpu: str, features: str, choice: str) -> bool:
    """Whether to add ``fast-gather`` for an LLVM target (``cpu``, comma-separated ``features``) under ``choice``
    (``auto``, ``0`` or ``1``): only AVX2 without AVX-512, where LLVM's tuning decides; ``auto`` only on the
    measured CPUs."""
    flags = set(features.split(","))
    if choice == "0" or "+avx2" not in flags or "+avx512f" in flags or FLAG in flags:
        return False
    return choice == "1" or cpu in MEASURED_CPUS


def tune_llvm_target() -> bool:
    """Add ``fast-gather`` to Dr.Jit's LLVM target where :func:`wants_fast_gather` says so (once per process;
    kernels compiled before keep their code). Returns whether the target now has it.

    Example:
        >>> from drct.cpu_target import tune_llvm_target, llvm_target, FLAG
        >>> tune_llvm_target() == (FLAG in llvm_target()[1].split(","))
        True
    """
    choice = setting()
    with _lock:
        if _result:
            return _result[0]
        target = llvm_target()
        if target is None:
            if choice == "1":
                warnings.warn("DRCT_FAST_GATHER=1, but Dr.Jit's LLVM target cannot be read or set", stacklevel=2)
            _result.append(False)
            return False
        cpu, features, width = target
        if wants_fast_gather(cpu, features, choice):
            set_llvm_target(cpu, f"{features},{FLAG}", width)
            target = llvm_target()
        _result.append(target is not None and FLAG in target[1].split(","))
        return _result[0]
