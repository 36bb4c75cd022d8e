"""Raw readings to line integrals, in one place, and the check that refuses readings that never were.

:func:`normalize` is the strict front of :func:`drct.physics.log_transform` (the one formula,
``-log((I - D) / (F - D))``): instead of clamping photon-starved pixels it refuses them, naming how many and
where, because a measured scan with ``I <= D`` or ``F <= D`` has a fault (wrong dark, saturated or dead pixel)
that a clamp would hide. :func:`require_line_integrals` refuses projections that look like raw counts.

Example:
    >>> import numpy as np
    >>> from drct.formats import normalize
    >>> [round(float(v), 4) for v in normalize(np.array([500.0, 250.0]), flat=1100.0, dark=100.0)]
    [0.9163, 1.8971]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import require_finite
from ..physics.forward import log_transform

PLAUSIBLE_MEDIAN = 20.0  # a line integral of 20 is a transmission of 2e-9: no CT scan has a median like that


def _first_bad(mask: np.ndarray) -> str:
    index = tuple(int(i) for i in np.argwhere(mask)[0])
    return f"{int(mask.sum())} pixel(s), the first at index {index}"


def normalize(readings: Any, flat: Any, dark: Any = 0.0) -> np.ndarray:
    """Line integrals ``-log((I - D) / (F - D))`` of raw readings ``I``, as float32.

    Args:
        readings: ``(views, [rows,] cols)`` raw detector readings (any numeric dtype).
        flat: flat field ``F`` (source on, no object): a number, one detector image, or the readings' shape.
        dark: dark field ``D`` (source off), likewise.

    Raises:
        NonFiniteError: a NaN/Inf in any input.
        ValueError: ``F - D <= 0`` or ``I - D <= 0`` anywhere (named: how many, the first index), or shapes
            that do not broadcast.

    Example:
        >>> import numpy as np
        >>> from drct.formats import normalize
        >>> np.round(normalize([[35.0, 60.0]], flat=110.0, dark=10.0), 4)  # -log((I - D) / (F - D))
        array([[1.3863, 0.6931]], dtype=float32)
    """
    r = np.asarray(readings, dtype=np.float64)
    f = np.asarray(flat, dtype=np.float64)
    d = np.asarray(dark, dtype=np.float64)
    for value, name in ((r, "readings"), (f, "flat field"), (d, "dark field")):
        require_finite(value, name)
    try:
        open_beam = f - d
        fits = np.broadcast_shapes(open_beam.shape, r.shape) == r.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"flat field {f.shape} and dark field {d.shape} must be numbers or detector images matching the "
            f"readings {r.shape}"
        )
    signal = r - d
    if np.any(open_beam <= 0):
        raise ValueError(
            f"flat - dark must be positive, but is <= 0 at {_first_bad(np.asarray(open_beam <= 0))}: "
            "check that flat and dark fields are not swapped and that no pixel is dead"
        )
    if np.any(signal <= 0):
        raise ValueError(
            f"readings - dark must be positive, but are <= 0 at {_first_bad(signal <= 0)} "
            "(photon starvation, or a dark field brighter than the readings)"
        )
    return np.asarray(log_transform(r, f, d), dtype=np.float32)


def require_line_integrals(projections: np.ndarray, what: str) -> None:
    """ValueError if ``projections`` look like raw detector counts rather than line integrals: an integer dtype,
    or a median absolute value above :data:`PLAUSIBLE_MEDIAN` (NonFiniteError first for a NaN/Inf).

    Example:
        >>> import numpy as np
        >>> from drct.formats import require_line_integrals
        >>> require_line_integrals(np.full((2, 3), 0.7, dtype=np.float32), "y")   # passes
        >>> require_line_integrals(np.full((2, 3), 4000, dtype=np.uint16), "y")
        Traceback (most recent call last):
        ...
        ValueError: y: integer values (uint16) are raw detector counts, not line integrals: pass flat ...
    """
    hint = (
        "pass flat and dark fields (--flat/--dark) to normalise them, or --raw-is-line-integrals if they really "
        "are line integrals"
    )
    require_finite(projections, what)
    if np.issubdtype(projections.dtype, np.integer) or projections.dtype == np.bool_:
        raise ValueError(
            f"{what}: integer values ({projections.dtype}) are raw detector counts, not line integrals: {hint}"
        )
    median = float(np.median(np.abs(projections))) if projections.size else 0.0
    if median > PLAUSIBLE_MEDIAN:
        raise ValueError(
            f"{what}: median |value| {median:.4g} is far above any plausible line integral (<= {PLAUSIBLE_MEDIAN:g}); "
            f"these look like raw detector readings: {hint}"
        )
