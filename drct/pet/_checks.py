"""Checks of the non-negative arrays PET takes (normalisation factors, counts, backgrounds)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import require_finite


def nonnegative(values: Any, shape: tuple[int, ...], name: str, what: str) -> np.ndarray:
    """``values`` as a float64 array of ``shape``, finite and ``>= 0`` (else an error naming ``name`` and ``what``
    it must hold).

    Example:
        >>> nonnegative([1.0, 0.5], (2,), "normalisation", "factors").tolist()
        [1.0, 0.5]
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} ({what}), got {arr.shape}")
    require_finite(arr, name)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must be non-negative ({what}), got a minimum of {arr.min():g}")
    return arr
