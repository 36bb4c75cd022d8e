"""Backend selection (Dr.Jit LLVM on the CPU or CUDA on a GPU) and conversion of user arrays.

Dr.Jit reads ``DRJIT_LIBLLVM_PATH`` once, when it is imported. Older LLVM releases (15, 16) abort the whole
process on some float instructions, so before importing Dr.Jit this module points it at a libLLVM of version
19 or newer when one is installed and the user has not chosen one. If only an older one is found, using the
LLVM backend raises :class:`BackendError` instead of crashing the interpreter.

Example:
    >>> import drct as ct
    >>> ct.set_backend("llvm")
    >>> ct.get_backend()
    'llvm'
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

MIN_LLVM = (19, 0, 0)


class BackendError(RuntimeError):
    """The requested Dr.Jit backend cannot run on this machine.

    Example:
        >>> import drct as ct
        >>> try:
        ...     ct.set_backend("tpu")  # unknown: ValueError; known but unusable here: BackendError
        ... except (ValueError, ct.BackendError) as error:
        ...     print(type(error).__name__)
        ValueError
        >>> issubclass(ct.BackendError, RuntimeError)
        True
    """


def _llvm_major(path: str) -> int:
    found = re.findall(r"(?:llvm-|LLVM-|libLLVM\.so\.|llvm_core.*?/)(\d+)", path)
    return int(found[-1]) if found else 0


def _find_libllvm() -> str | None:
    """Newest libLLVM >= 19 on this machine (system packages or the pip wheel ``karellen-llvm-core``)."""
    candidates: list[str] = []
    for pattern in (
        "/usr/lib/llvm-*/lib/libLLVM.so*",
        "/usr/lib/x86_64-linux-gnu/libLLVM*.so*",
        "/usr/lib/aarch64-linux-gnu/libLLVM*.so*",
        "/usr/lib64/libLLVM*.so*",
        "/opt/homebrew/opt/llvm/lib/libLLVM.dylib",
        "/usr/local/opt/llvm/lib/libLLVM.dylib",
    ):
        candidates += glob.glob(pattern)
    spec = importlib.util.find_spec("karellen_llvm_core") if "karellen_llvm_core" not in sys.modules else None
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates += glob.glob(os.path.join(location, "**", "libLLVM*.so*"), recursive=True)
    usable = [c for c in candidates if _llvm_major(c) >= MIN_LLVM[0] or "karellen" in c]
    usable.sort(key=_llvm_major, reverse=True)
    return usable[0] if usable else None


if "drjit" not in sys.modules and not os.environ.get("DRJIT_LIBLLVM_PATH"):
    _lib = _find_libllvm()
    if _lib is not None:
        os.environ["DRJIT_LIBLLVM_PATH"] = _lib

import drjit as dr  # noqa: E402  (must follow the LLVM discovery above)

from .cpu_target import tune_llvm_target  # noqa: E402  (imports Dr.Jit too)

_BACKENDS = ("llvm", "cuda")
_state: dict[str, str | None] = {"backend": None}


def llvm_version() -> tuple[int, int, int] | None:
    """Version of the libLLVM that Dr.Jit loaded, or None when the LLVM backend is unavailable."""
    if not dr.has_backend(dr.JitBackend.LLVM):
        return None
    return tuple(dr.detail.llvm_version())  # type: ignore[return-value]


def _check_llvm() -> None:
    version = llvm_version()
    hint = (
        "install LLVM >= 19 (Debian/Ubuntu: `apt-get install libllvm19`) or `pip install karellen-llvm-core` "
        "and point DRJIT_LIBLLVM_PATH at its libLLVM.so before importing drct"
    )
    if version is None:
        raise BackendError(f"Dr.Jit's LLVM backend is unavailable (no usable libLLVM found): {hint}.")
    if version < MIN_LLVM:
        raise BackendError(
            f"Dr.Jit loaded LLVM {'.'.join(map(str, version))}, but drct needs LLVM >= 19 (older releases "
            f"abort the process on float min/max): {hint}."
        )
    tune_llvm_target()  # hardware gathers where LLVM's tuning would split them (drct.cpu_target)


def cuda_available() -> bool:
    """True when Dr.Jit's CUDA backend found a GPU."""
    try:
        return bool(dr.has_backend(dr.JitBackend.CUDA))
    except Exception:  # pragma: no cover - depends on the driver
        return False


def check_backend(name: str) -> str:
    """Return ``name`` if that backend can run here, else raise (see :func:`set_backend`)."""
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {name!r}")
    if name == "cuda" and not cuda_available():
        raise BackendError("backend 'cuda' requested, but Dr.Jit found no usable CUDA GPU/driver")
    if name == "llvm":
        _check_llvm()
    return name


def set_backend(name: str) -> None:
    """Choose where drct's kernels run: ``"llvm"`` (CPU) or ``"cuda"`` (GPU).

    Args:
        name: ``"llvm"`` or ``"cuda"``.

    Raises:
        ValueError: for any other name.
        BackendError: when the backend cannot run here (no GPU, or a libLLVM older than 19).

    Example:
        >>> import drct as ct
        >>> previous = ct.get_backend()
        >>> ct.set_backend("llvm")  # the CPU backend, always there (with a libLLVM >= 19)
        >>> ct.get_backend()
        'llvm'
        >>> ct.set_backend(previous)
    """
    _state["backend"] = check_backend(name)


def get_backend() -> str:
    """The active backend; on first use, CUDA when a GPU is usable, else LLVM.

    Example:
        >>> import drct as ct
        >>> ct.get_backend() in ("llvm", "cuda")
        True
    """
    if _state["backend"] is None:
        set_backend("cuda" if cuda_available() else "llvm")
    backend = _state["backend"]
    assert backend is not None
    return backend


def drjit_module(name: str | None = None) -> ModuleType:
    """The differentiable Dr.Jit array namespace (``drjit.llvm.ad`` or ``drjit.cuda.ad``) of a backend."""
    if (name or get_backend()) == "cuda":
        import drjit.cuda.ad as mod
    else:
        import drjit.llvm.ad as mod
    return mod


DTYPES = {"float32": np.float32, "float64": np.float64}


def canonical_dtype(dtype: Any) -> str:
    """``"float32"`` or ``"float64"`` for any spelling of those dtypes (numpy, torch, string)."""
    name = str(dtype).replace("torch.", "")
    try:
        name = np.dtype(name).name
    except TypeError:
        pass
    if name not in DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}")
    return name


@dataclass(frozen=True)
class Types:
    """The Dr.Jit array types of one backend and precision."""

    backend: str
    dtype: str
    Float: Any
    Float64: Any
    Int: Any
    UInt: Any
    Bool: Any
    Tensor: Any

    @property
    def np_dtype(self) -> type:
        return DTYPES[self.dtype]

    @property
    def itemsize(self) -> int:
        """Bytes per value of ``Float`` (4 for float32, 8 for float64)."""
        return np.dtype(self.np_dtype).itemsize


def types(dtype: str = "float32", backend: str | None = None) -> Types:
    """Array types for computing in ``dtype`` on ``backend`` (default: the active backend)."""
    backend = get_backend() if backend is None else check_backend(backend)
    mod = drjit_module(backend)
    dtype = canonical_dtype(dtype)
    f32 = dtype == "float32"
    return Types(
        backend=backend,
        dtype=dtype,
        Float=mod.Float if f32 else mod.Float64,
        Float64=mod.Float64,
        Int=mod.Int,
        UInt=mod.UInt,
        Bool=mod.Bool,
        Tensor=mod.TensorXf if f32 else mod.TensorXf64,
    )


def upload(cls: Any, values: Any) -> Any:
    """``values`` (numpy) as an evaluated Dr.Jit array in Dr.Jit-owned memory.

    Arrays imported from numpy are marked unaligned, and kernels mixing them with Dr.Jit's own arrays are
    compiled once per mix; copying them in keeps one kernel per operator and a warm kernel cache.
    """
    out = cls(np.ascontiguousarray(values)) * dr.opaque(cls, 1)
    dr.eval(out)
    return out


def upload_tensor(t: Types, values: Any, shape: tuple[int, ...] | None = None) -> Any:
    """``values`` (numpy, converted to ``t``'s precision) as an evaluated ``t.Tensor`` of ``shape`` (default: the
    array's own), through :func:`upload`.

    Example:
        >>> import numpy as np
        >>> from drct.backend import types, upload_tensor
        >>> upload_tensor(types("float32"), np.arange(6.0).reshape(2, 3)).shape
        (2, 3)
    """
    values = np.asarray(values, dtype=t.np_dtype)
    return t.Tensor(upload(t.Float, values.reshape(-1)), values.shape if shape is None else tuple(shape))


def lanes(t: Types, start: int, count: int) -> Any:
    """``start .. start + count`` as ``t.UInt`` with ``start`` a run-time value: ``dr.arange(start, stop)`` compiles
    ``start`` into the kernel, so every chunk of a chunked launch compiled its own copy of the kernel.

    Example:
        >>> from drct.backend import lanes, types
        >>> lanes(types(backend="llvm"), 5, 3).numpy().tolist()
        [5, 6, 7]
    """
    return dr.arange(t.UInt, count) + dr.opaque(t.UInt, start)
