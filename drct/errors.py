"""The exceptions drct raises for inputs it refuses, in one place (lowest layer: imports nothing of drct).

The rule for non-finite values (one rule, everywhere): drct **refuses** NaN and ±Inf in the arrays it is given —
volumes, projections, initial guesses, geometry vectors, option values — with a :class:`NonFiniteError` that
names the input, how many entries are bad and where the first one is. It never propagates them silently (a NaN
that enters ``A.T`` would otherwise vanish or smear into unrelated voxels depending on the basis) and never
drops them silently. Clean the data first, e.g. ``np.nan_to_num(y)`` or a mask.

Example:
    >>> import numpy as np
    >>> from drct.errors import NonFiniteError, require_finite
    >>> require_finite(np.array([1.0, np.nan, np.inf]), "y (projections)")
    Traceback (most recent call last):
        ...
    drct.errors.NonFiniteError: y (projections) has 2 non-finite entries (NaN or ±Inf; first at index (1,));
    drct refuses non-finite input: clean it first (e.g. np.nan_to_num, or mask the bad pixels)
"""

from __future__ import annotations

from typing import Any

import numpy as np


class NonFiniteError(ValueError):
    """An input holds NaN or ±Inf (drct refuses non-finite input everywhere; see :mod:`drct.errors`).

    Example:
        >>> import numpy as np, drct as ct
        >>> A = ct.Projector(ct.VolumeGeometry((8, 8)), ct.parallel(np.linspace(0, np.pi, 6), 12))
        >>> x = np.zeros((8, 8), np.float32)
        >>> x[2, 3] = np.nan
        >>> try:
        ...     A(x)
        ... except ct.NonFiniteError as error:
        ...     print("refused:", "NaN or ±Inf" in str(error))
        refused: True
    """


class MemoryBudgetError(MemoryError):
    """An operation would need more memory than is available; the message says how much of each.

    Example:
        >>> import drct as ct
        >>> from drct.memory import require_memory
        >>> try:
        ...     require_memory(2**80, "a huge volume")
        ... except ct.MemoryBudgetError as error:
        ...     print(str(error).split(" of memory")[0])
        a huge volume needs about 1.0 YiB
    """


def _message(name: str, bad: int, first: tuple[int, ...]) -> str:
    return (
        f"{name} has {bad} non-finite entr{'y' if bad == 1 else 'ies'} (NaN or ±Inf; first at index {first}); "
        "drct refuses non-finite input: clean it first (e.g. np.nan_to_num, or mask the bad pixels)"
    )


def require_finite(x: Any, name: str) -> None:
    """Raise :class:`NonFiniteError` if the numpy array (or array-like) ``x`` holds NaN or ±Inf."""
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.inexact):
        return
    finite = np.isfinite(a)
    if finite.all():
        return
    bad = np.argwhere(~finite)
    raise NonFiniteError(_message(name, int(bad.shape[0]), tuple(int(i) for i in bad[0])))
