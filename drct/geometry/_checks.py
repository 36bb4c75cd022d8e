"""Validation of user-supplied geometry numbers: every failure names the value and what was expected."""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np

MAX_COORDINATE = 1e9
"""Largest coordinate (mm) of a geometry vector: float64 resolves positions there to ~1e-7 mm."""


def refuse_gradients(value: Any, name: str) -> None:
    """Converting a differentiable array to numpy would drop its gradient without a word: refuse instead."""
    if hasattr(value, "detach") and bool(getattr(value, "requires_grad", False)):
        raise TypeError(
            f"{name} is a torch tensor that requires grad; drct would store it as numpy and drop the gradient: "
            "use the geometry tensors of ct.torch (ct.torch.project(x, A, det_shift_u=..., vectors=...)) to "
            "differentiate w.r.t. the geometry, or pass .detach()"
        )
    if dr.is_array_v(value) and dr.grad_enabled(value):
        raise TypeError(
            f"{name} is a Dr.Jit array with gradients enabled; drct would store it as numpy and the geometry "
            "gradient would silently be zero: use pg.with_drjit_vectors() (then dr.enable_grad(pg.det), ...) or "
            "pg.perturb(name=Float64 with gradients) to differentiate w.r.t. the geometry, or pass dr.detach(...)"
        )


def _as_float_array(value: Any, name: str) -> np.ndarray:
    refuse_gradients(value, name)
    if hasattr(value, "detach"):  # torch tensors
        value = value.detach().cpu().numpy()
    elif hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # Dr.Jit arrays
        value = value.numpy()
    try:
        arr = np.asarray(value)
    except Exception as err:
        raise TypeError(f"{name} must be numeric, got {type(value).__name__}") from err
    if arr.dtype == bool:
        raise TypeError(f"{name} must be numbers, got booleans: {value!r}")
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be numeric, got {value!r} (dtype {arr.dtype})")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got complex values")
    return arr.astype(np.float64)


def finite_vector(value: Any, n: int, name: str) -> np.ndarray:
    """A finite float64 vector of length ``n``."""
    arr = _as_float_array(value, name).reshape(-1)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have {n} entries, got {arr.size}: {value!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def as_positive(value: Any, n: int, name: str) -> np.ndarray:
    """A scalar broadcast to, or a sequence of, ``n`` finite positive floats."""
    arr = _as_float_array(value, name).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, n)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be one number or {n} numbers, got {value!r}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {arr.tolist()}")
    return arr


def positive_scalar(value: Any, name: str) -> float:
    """One finite positive float."""
    return float(as_positive(value, 1, name)[0])


def finite_scalar(value: Any, name: str) -> float:
    """One finite float."""
    return float(finite_vector(value, 1, name)[0])


def finite_rows(value: Any, cols: int, name: str, rows: int | None = None) -> np.ndarray:
    """A finite float64 array of shape ``(rows, cols)`` (``rows`` free when None); one row may be given as 1D."""
    arr = _as_float_array(value, name)
    if arr.ndim == 1 and arr.size == cols:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != cols:
        raise ValueError(f"{name} must have shape (n, {cols}), got {arr.shape}")
    if rows is not None and arr.shape[0] != rows:
        raise ValueError(f"{name} must have {rows} rows, got {arr.shape[0]}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: at least one row is needed")
    bad = ~np.all(np.isfinite(arr), axis=1)
    if np.any(bad):
        raise ValueError(f"{name} must be finite, but row {int(np.argmax(bad))} is {arr[bad][0].tolist()}")
    far = np.any(np.abs(arr) > MAX_COORDINATE, axis=1)
    if np.any(far):
        raise ValueError(
            f"{name} must lie within ±{MAX_COORDINATE:.0e} mm, but row {int(np.argmax(far))} is "
            f"{arr[far][0].tolist()}: beyond that, float64 places a ray no better than 1e-7 mm and its chord "
            "through the volume comes out wrong; move the point along its ray towards the volume"
        )
    return arr


def angles_array(angles: Any) -> np.ndarray:
    """A non-empty, finite 1D float64 array of projection angles in radians."""
    arr = _as_float_array(angles, "angles")
    if arr.ndim == 0:
        raise TypeError(f"angles must be a 1D sequence of radians (e.g. np.linspace(0, np.pi, 180)), got {angles!r}")
    if arr.ndim != 1:
        raise ValueError(
            f"angles must be a 1D sequence of radians, got an array of shape {arr.shape} "
            "(flatten it yourself if its order is the view order)"
        )
    if arr.size == 0:
        raise ValueError("angles is empty: at least one projection angle is needed")
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"angles must be finite, got non-finite values at {np.flatnonzero(~np.isfinite(arr)).tolist()}"
        )
    return arr


def det_shape_tuple(det_shape: Any) -> tuple[int, ...]:
    """``(cols,)`` from an int, ``(rows, cols)`` from a pair; positive integers."""
    dims: tuple[Any, ...]
    if isinstance(det_shape, (int, np.integer)) and not isinstance(det_shape, bool):
        dims = (det_shape,)
    else:
        try:
            items: Any = det_shape
            dims = tuple(items)
        except TypeError:
            raise TypeError(f"det_shape must be an int (2D) or (rows, cols) (3D), got {det_shape!r}") from None
    if len(dims) not in (1, 2) or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in dims):
        raise TypeError(f"det_shape must be an int (2D) or a pair of ints (rows, cols) (3D), got {det_shape!r}")
    if any(n < 1 for n in dims):
        raise ValueError(f"det_shape entries must be >= 1, got {det_shape!r}")
    return tuple(int(n) for n in dims)
