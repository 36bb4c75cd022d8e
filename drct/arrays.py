"""Conversion of user arrays (numpy, torch, Dr.Jit) to Dr.Jit tensors and back, with clear errors.

Example:
    >>> import numpy as np
    >>> from drct.arrays import from_tensor, to_tensor
    >>> from drct.backend import types
    >>> x, kind = to_tensor(np.ones((2, 3)), (2, 3), types("float32"))
    >>> kind, from_tensor(x, kind).dtype
    ('numpy', dtype('float32'))
    >>> to_tensor(np.ones(4), (2, 3), types("float32"), name="volume")
    Traceback (most recent call last):
        ...
    ValueError: volume must have shape (2, 3), got (4,)
"""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np

from .backend import Types, upload_tensor
from .errors import NonFiniteError, require_finite

KINDS = ("numpy", "torch", "drjit")


def array_kind(x: Any) -> str:
    """``"numpy"``, ``"torch"`` or ``"drjit"``; raises TypeError for anything else."""
    if isinstance(x, np.ndarray):
        return "numpy"
    if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
        return "torch"
    if dr.is_tensor_v(x) or dr.is_array_v(x):
        return "drjit"
    raise TypeError(f"expected a numpy array, a torch tensor or a Dr.Jit tensor, got {type(x).__name__}")


def _dtype_name(x: Any, kind: str) -> str:
    if kind == "numpy":
        return x.dtype.name
    if kind == "torch":
        return str(x.dtype).replace("torch.", "")
    vt = dr.type_v(x)
    return {dr.VarType.Float32: "float32", dr.VarType.Float64: "float64", dr.VarType.Float16: "float16"}.get(
        vt, str(vt).split(".")[-1].lower()
    )


def to_tensor(x: Any, shape: tuple[int, ...], t: Types, name: str = "x", leading: bool = False) -> tuple[Any, str]:
    """``x`` as a ``t.Tensor`` of ``shape`` (after any leading batch dimensions if ``leading``), and the kind of
    array it came as (Dr.Jit inputs keep their AD).

    numpy arrays of any float dtype are converted to the operator's precision; torch and Dr.Jit tensors must
    already have it (no silent copies of device data) and live on the operator's backend. NaN and ±Inf are
    refused (:class:`~drct.errors.NonFiniteError`, drct's one rule for non-finite input). A torch tensor that
    requires gradients is refused while torch records gradients (the conversion would drop them): the torch
    front end (:mod:`drct.torch`) carries them.
    """
    kind = array_kind(x)
    if kind == "drjit" and not dr.is_tensor_v(x):
        raise TypeError(f"{name} must be a Dr.Jit tensor (e.g. TensorXf), got the flat array {type(x).__name__}")
    dtype = _dtype_name(x, kind)
    got = tuple(int(n) for n in x.shape)
    shape = tuple(shape)
    if got[len(got) - len(shape) :] != shape or (len(got) != len(shape) and not leading):
        expected = f"(..., {', '.join(map(str, shape))})" if leading else str(shape)
        raise ValueError(f"{name} must have shape {expected}, got {got}")
    if kind == "numpy":
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"{name} must be a floating-point array (float32 or float64), got dtype {x.dtype}")
        require_finite(x, name)
        return upload_tensor(t, x, got), kind
    if dtype != t.dtype:
        raise TypeError(f"{name} has dtype {dtype}, but this operator computes in {t.dtype}; convert it first")
    if kind == "torch":
        device = x.device.type
        if (device == "cuda") != (t.backend == "cuda"):
            raise ValueError(
                f"{name} is on torch device {device!r} but the operator runs on Dr.Jit's {t.backend!r} backend; "
                f"move the tensor or use ct.set_backend({'cuda' if device == 'cuda' else 'llvm'!r})"
            )
        if x.requires_grad:
            import torch

            if torch.is_grad_enabled():
                raise TypeError(
                    f"{name} is a torch tensor that requires grad, and this call would silently drop its "
                    "gradient: use ct.torch.project(x, A) / ct.torch.backproject(y, A) or the ct.torch layers, "
                    "which carry gradients through torch autograd (or pass x.detach())"
                )
        tensor = t.Tensor(x.detach().contiguous())
        require_finite_tensor(tensor, name)
        return tensor, kind
    if dr.backend_v(x) != (dr.JitBackend.CUDA if t.backend == "cuda" else dr.JitBackend.LLVM):
        raise ValueError(f"{name} lives on Dr.Jit backend {dr.backend_v(x)}, but the operator uses {t.backend!r}")
    tensor = x if type(x) is t.Tensor else t.Tensor(x)
    require_finite_tensor(tensor, name)
    return tensor, kind


def from_tensor(y: Any, kind: str) -> Any:
    """A Dr.Jit tensor as the given kind of array."""
    if kind == "numpy":
        return y.numpy()
    if kind == "torch":
        return y.torch()
    return y


def require_finite_tensor(x: Any, name: str) -> None:
    """Raise :class:`~drct.errors.NonFiniteError` if the Dr.Jit tensor ``x`` holds NaN or ±Inf (one reduction
    on the device; the host copy is made only to name the first bad entry)."""
    flat = dr.detach(x.array)
    if dr.width(flat) == 0 or bool(dr.all(dr.isfinite(flat), axis=None)):
        return
    require_finite(np.asarray(x.numpy()), name)
    raise NonFiniteError(f"{name} has non-finite entries (NaN or ±Inf)")  # pragma: no cover - numpy found them
