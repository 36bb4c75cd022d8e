"""What every reader returns: :class:`Scan`, projections with what is known about how they were taken.

Example:
    >>> import numpy as np, drct as ct
    >>> from drct.formats import Scan
    >>> pg = ct.parallel(np.linspace(0, np.pi, 4, endpoint=False), (2, 3))
    >>> scan = Scan(np.full((4, 2, 3), 100.0), pg, flat=np.full((2, 3), 1000.0), dark=0.0)
    >>> round(float(scan.line_integrals()[0, 0, 0]), 4)
    2.3026
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import require_finite
from ..geometry.projection import ProjectionGeometry
from ..scene.units import ANGLE, LENGTH
from .normalization import normalize

# the unit tables are drct.scene.units' (one place); NeXus files also spell units out ("degree", "micrometre")
_SPELLED = {
    "millimetre": "mm",
    "millimeter": "mm",
    "metre": "m",
    "meter": "m",
    "micron": "um",
    "micrometre": "um",
    "micrometer": "um",
    "degree": "deg",
    "degrees": "deg",
    "radian": "rad",
    "radians": "rad",
}


def _factor(unit: str | None, default: str, table: dict[str, float], kind: str, what: str) -> float:
    key = (unit or default).strip()
    key = _SPELLED.get(key.lower(), key if key in table else key.lower())
    if key not in table:
        raise ValueError(f"{what}: unknown {kind} unit {unit!r}; expected one of {sorted(table)} or {sorted(_SPELLED)}")
    return table[key]


def to_mm(value: Any, unit: str | None, what: str, default: str = "mm") -> float:
    """``value`` (one number) in millimetres; ``unit`` as a file states it (None: ``default``)."""
    factor = _factor(unit, default, LENGTH, "length", what)
    try:
        numbers = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if numbers.size != 1:
        raise ValueError(f"{what} must be one number, got {numbers.size}")
    require_finite(numbers, what)
    return float(numbers[0]) * factor


def to_radians(values: Any, unit: str | None, what: str, default: str = "degree") -> np.ndarray:
    """``values`` as float64 radians; ``unit`` as a file states it (None: ``default``)."""
    factor = _factor(unit, default, ANGLE, "angle", what)
    try:
        angles = np.asarray(values, dtype=np.float64) * factor
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numbers") from None
    require_finite(angles, what)
    return angles


@dataclass
class Scan:
    """Projections as a file holds them, with their geometry and the fields to normalise them.

    Attributes:
        projections: ``(views, rows, cols)`` (or ``(views, cols)``) as stored: raw detector readings, or line
            integrals where the file holds those (then without flat field).
        geometry: the scan's drct geometry, or None where the format stores none (a plain TIFF stack): then
            the caller supplies one (``drct reconstruct --geometry``).
        flat: flat field (source on, no object): one number, one image, or None if the file has none.
        dark: dark field (source off), likewise.
        notes: how the file's quantities were converted (a line per fact), for logs and reports.

    Example:
        >>> import numpy as np
        >>> from drct.formats import Scan
        >>> scan = Scan(np.full((2, 3), 250.0), None, flat=1000.0)  # raw readings, no geometry stored
        >>> round(float(scan.line_integrals()[0, 0]), 4)  # -log(250 / 1000)
        1.3863
    """

    projections: np.ndarray
    geometry: ProjectionGeometry | None
    flat: np.ndarray | float | None = None
    dark: np.ndarray | float | None = None
    notes: list[str] = field(default_factory=list)

    def line_integrals(self) -> np.ndarray:
        """The projections normalised with the scan's flat and dark fields (:func:`drct.formats.normalize`), as
        float32 line integrals; ValueError if the scan has no flat field."""
        if self.flat is None:
            raise ValueError(
                "the scan holds raw readings but no flat field: pass flat (and dark) fields to normalise them"
            )
        return normalize(self.projections, self.flat, 0.0 if self.dark is None else self.dark)
