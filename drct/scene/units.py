"""Quantities with units in scene files: ``"2.5 mm"``, ``"30 deg"``, ``"0.2 /cm"``, ``"60 keV"``.

A bare number is taken in drct's units (mm, radians, 1/mm, keV). A string is ``"<number> <unit>"``; a unit of
the wrong kind (``"3 deg"`` for a length) is an error naming the key.
"""

from __future__ import annotations

import math
import re
from typing import Any

LENGTH = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "um": 1e-3, "µm": 1e-3, "μm": 1e-3, "nm": 1e-6, "in": 25.4}
ANGLE = {"rad": 1.0, "deg": math.pi / 180, "°": math.pi / 180, "mrad": 1e-3}
ATTENUATION = {"1/mm": 1.0, "/mm": 1.0, "1/cm": 0.1, "/cm": 0.1, "1/m": 1e-3, "/m": 1e-3, "1/um": 1e3, "/um": 1e3}
ENERGY = {"kev": 1.0, "ev": 1e-3, "mev": 1e3}
DENSITY = {"g/cm3": 1.0, "g/cm^3": 1.0, "g/ml": 1.0, "kg/m3": 1e-3, "kg/m^3": 1e-3}
NONE: dict[str, float] = {"": 1.0}

KINDS: dict[str, dict[str, float]] = {
    "length": LENGTH,
    "angle": ANGLE,
    "attenuation": ATTENUATION,
    "energy": ENERGY,
    "density": DENSITY,
    "number": NONE,
}
DEFAULT_UNIT = {
    "length": "mm",
    "angle": "rad",
    "attenuation": "1/mm",
    "energy": "keV",
    "density": "g/cm3",
    "number": "",
}

_QUANTITY = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S*)\s*$")


def parse_quantity(value: Any, kind: str) -> float:
    """``value`` (a number, or ``"<number> <unit>"``) in drct's unit of ``kind``; raises ValueError.

    Example:
        >>> from drct.scene.units import parse_quantity
        >>> parse_quantity("2 cm", "length"), round(parse_quantity("90 deg", "angle"), 6)
        (20.0, 1.570796)
    """
    table = KINDS[kind]
    if isinstance(value, bool):
        raise ValueError(f"expected a {kind} (a number or a string like {_example(kind)!r}), got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        match = _QUANTITY.match(value)
        if not match:
            raise ValueError(f"expected a {kind} like {_example(kind)!r}, got {value!r}")
        number, unit = float(match.group(1)), match.group(2)
        key = unit.lower() if kind in ("energy", "density") else unit
        if key not in table:
            units = ", ".join(u for u in table if u) or "none"
            raise ValueError(f"wrong units in {value!r}: a {kind} takes {units}")
        number *= table[key]
    else:
        raise ValueError(f"expected a {kind} (a number or a string like {_example(kind)!r}), got {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"expected a finite {kind}, got {value!r}")
    return number


def _example(kind: str) -> str:
    return {
        "length": "2.5 mm",
        "angle": "30 deg",
        "attenuation": "0.02 /mm",
        "energy": "60 keV",
        "density": "2.7 g/cm3",
        "number": "1.0",
    }[kind]
