"""Lengths and angles with units: pint quantities where drct takes millimetres and radians.

drct's numbers are millimetres and radians (README, "Conventions"). The geometry constructors
(:class:`drct.VolumeGeometry`, :func:`drct.parallel`, :func:`drct.fan`, :func:`drct.cone`, :func:`drct.helix`)
also take `pint <https://pint.readthedocs.io>`_ quantities (``pip install "drct[units]"``): ``0.1 * ureg.mm``,
``50 * ureg.um``, ``np.linspace(0, 360, 90) * ureg.deg``, converted here; a quantity of another kind (a length
given as an angle, a time) is refused with the unit expected. Plain numbers pass through unchanged, and
pint is never imported by drct: a quantity brings its own registry.

Example:
    >>> import numpy as np, drct as ct
    >>> from drct.units import angle, length
    >>> length(2.5, "voxel_size")  # a plain number is already in mm
    2.5
    >>> import pint
    >>> ureg = pint.UnitRegistry()
    >>> length(50 * ureg.um, "det_spacing")
    0.05
    >>> ct.VolumeGeometry((64, 64), voxel_size=0.1 * ureg.mm).voxel_size
    (0.1, 0.1)
    >>> degrees = np.linspace(0, 360, 90, endpoint=False) * ureg.deg
    >>> pg = ct.cone(degrees, (64, 64), 0.2 * ureg.mm, 0.5 * ureg.m, 1 * ureg.m)
    >>> round(float(pg.src[1, 0]), 3)  # 500 mm from the axis, 4 degrees on
    34.878
    >>> length(3 * ureg.s, "src_orig_dist")
    Traceback (most recent call last):
        ...
    ValueError: src_orig_dist must be a length (converted to mm), got 3 second (dimension [time])
"""

from __future__ import annotations

from typing import Any


def is_quantity(value: Any) -> bool:
    """Whether ``value`` is a pint quantity (checked without importing pint).

    Example:
        >>> import pint
        >>> from drct.units import is_quantity
        >>> is_quantity(2.0 * pint.UnitRegistry().mm), is_quantity(2.0)
        (True, False)
    """
    return type(value).__module__.partition(".")[0] == "pint" and hasattr(value, "to") and hasattr(value, "magnitude")


def _convert(value: Any, unit: str, kind: str, name: str) -> Any:
    if is_quantity(value):
        try:
            return value.to(unit).magnitude
        except Exception as error:  # pint's DimensionalityError: the quantity is of another kind
            raise ValueError(
                f"{name} must be {kind} (converted to {unit}), got {value} (dimension {value.dimensionality})"
            ) from error
    if isinstance(value, (list, tuple)) and any(is_quantity(v) for v in value):
        return type(value)(_convert(v, unit, kind, f"{name}[{i}]") for i, v in enumerate(value))
    return value


def length(value: Any, name: str) -> Any:
    """``value`` in millimetres: a pint quantity converted (its magnitude: a number or an array), a list or tuple
    of quantities converted entry by entry, anything else returned unchanged (drct's numbers are mm).

    Raises:
        ValueError: a quantity that is not a length, naming ``name`` and the unit expected.

    Example:
        >>> import pint
        >>> from drct.units import length
        >>> ureg = pint.UnitRegistry()
        >>> round(length(0.25 * ureg.cm, "voxel_size"), 6), length([1.0, 2.0], "voxel_size")
        (2.5, [1.0, 2.0])
    """
    return _convert(value, "mm", "a length", name)


def angle(value: Any, name: str) -> Any:
    """``value`` in radians (as :func:`length`; a dimensionless quantity counts as radians).

    Raises:
        ValueError: a quantity that is not an angle, naming ``name`` and the unit expected.

    Example:
        >>> import pint
        >>> from drct.units import angle
        >>> round(float(angle(180 * pint.UnitRegistry().deg, "angles")), 6)
        3.141593
    """
    return _convert(value, "rad", "an angle", name)


__all__ = ["angle", "is_quantity", "length"]
