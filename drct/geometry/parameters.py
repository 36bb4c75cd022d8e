"""The misalignment parameters, tabled once: name, unit, nominal value, shape, which geometries they apply to and the
size of a typical effect that calibration uses to condition its steps.

Every other room reads this table: :func:`drct.geometry.perturb.perturb` (which names exist and where),
:class:`drct.calibration.PerturbModel` (widths, starting values, scales), the calibration's result files (units),
the scene files' ``[geometry.misalignment]`` (units, nominal values) and :mod:`drct.torch` (accepted names).

Example:
    >>> import numpy as np, drct as ct
    >>> from drct.geometry.parameters import TABLE, applicable, check
    >>> TABLE["det_roll"].unit, TABLE["pixel_scale"].nominal
    ('angle', 1.0)
    >>> fan = ct.fan(np.linspace(0, np.pi, 4), 16, 1.0, 100.0, 200.0)
    >>> applicable(fan)[:4]
    ('det_shift_u', 'det_yaw', 'pixel_scale', 'src_shift_u')
    >>> check("det_roll", fan)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ValueError: 'det_roll' only exists for 3D geometries (...); for this 2D cone (fan) beam geometry the ...: ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Unit = Literal["length", "angle", "scale"]
# how big one detector pixel's worth of effect is, per kind (see Parameter.typical_scale)
ScaleKind = Literal["detector", "object", "distance", "angle", "scale"]

SYMBOLS = {"length": "mm", "angle": "rad", "scale": "1"}


@dataclass(frozen=True)
class Parameter:
    """One misalignment parameter of :func:`drct.geometry.perturb.perturb`.

    Attributes:
        name: the keyword of ``perturb``.
        unit: ``"length"`` (mm), ``"angle"`` (radians) or ``"scale"`` (a dimensionless factor).
        nominal: the value that leaves the geometry unchanged.
        scale_kind: what one detector pixel's worth of effect is (see :meth:`typical_scale`).
        only_3d: needs a 2D detector (a v axis) or a 3D rotation.
        needs_source: needs a source point (cone or fan beam, not parallel).
        per_view: may be given one value per view (else one value).
        vector: ``"shift"`` (``ndim`` components), ``"rotation"`` (3 in 3D, 1 in 2D) or ``""`` (a scalar).

    Example:
        >>> from drct.geometry.parameters import TABLE
        >>> roll = TABLE["det_roll"]  # a Parameter
        >>> roll.unit, roll.symbol, roll.nominal, TABLE["pixel_scale"].nominal
        ('angle', 'rad', 0.0, 1.0)
    """

    name: str
    unit: Unit
    nominal: float
    scale_kind: ScaleKind
    only_3d: bool = False
    needs_source: bool = False
    per_view: bool = True
    vector: Literal["", "shift", "rotation"] = ""

    @property
    def symbol(self) -> str:
        """The unit's symbol: ``"mm"``, ``"rad"`` or ``"1"``."""
        return SYMBOLS[self.unit]

    def width(self, ndim: int) -> int:
        """Components per value in an ``ndim``-dimensional geometry."""
        return _width(self.vector, ndim)

    def applies(self, ndim: int, beam: str) -> bool:
        """True if the parameter exists for an ``ndim``-D geometry with this ``beam`` (``"parallel"``/``"cone"``)."""
        return not (self.only_3d and ndim == 2) and not (self.needs_source and beam == "parallel")

    def typical_scale(self, pixel: float, cols: int, magnification: float) -> float:
        """About one detector pixel's worth of effect, in the parameter's unit (conditions calibration's steps)."""
        return typical_scale(self.scale_kind, pixel, cols, magnification)


def _width(vector: str, ndim: int) -> int:
    if vector == "shift":
        return ndim
    if vector == "rotation":
        return 3 if ndim == 3 else 1
    return 1


def typical_scale(kind: ScaleKind, pixel: float, cols: int, magnification: float) -> float:
    """One pixel's worth of effect for a detector of ``cols`` columns of ``pixel`` mm at ``magnification``:
    a detector length moves by a pixel, an object length by a pixel at the isocentre, a distance along the beam
    by ten pixels (it acts through the magnification only), an angle turns the detector edge by a pixel, and a
    scale stretches the detector by a pixel.

    Example:
        >>> from drct.geometry.parameters import typical_scale
        >>> typical_scale("length", pixel=0.2, cols=100, magnification=2.0)  # a detector shift of one pixel
        0.2
        >>> round(typical_scale("angle", pixel=0.2, cols=100, magnification=2.0), 4)  # the edge moves a pixel
        0.02
    """
    if kind == "angle":
        return pixel / (0.5 * pixel * cols)
    if kind == "scale":
        return 1.0 / cols
    if kind == "object":
        return pixel / magnification
    if kind == "distance":
        return 10.0 * pixel
    return pixel


_ROWS = (
    Parameter("det_shift_u", "length", 0.0, "detector"),
    Parameter("det_shift_v", "length", 0.0, "detector", only_3d=True),
    Parameter("det_roll", "angle", 0.0, "angle", only_3d=True),
    Parameter("det_pitch", "angle", 0.0, "angle", only_3d=True),
    Parameter("det_yaw", "angle", 0.0, "angle"),
    Parameter("pixel_scale", "scale", 1.0, "scale"),
    Parameter("src_shift_u", "length", 0.0, "detector", needs_source=True),
    Parameter("src_shift_v", "length", 0.0, "detector", only_3d=True, needs_source=True),
    Parameter("src_orig_delta", "length", 0.0, "distance", needs_source=True),
    Parameter("src_det_delta", "length", 0.0, "distance"),
    Parameter("cor_offset", "length", 0.0, "object"),
    Parameter("axis_tilt", "angle", 0.0, "angle", only_3d=True),
    Parameter("axis_tilt_beam", "angle", 0.0, "angle", only_3d=True),
    Parameter("motion_rotation", "angle", 0.0, "angle", vector="rotation"),
    Parameter("motion_shift", "length", 0.0, "object", vector="shift"),
)

TABLE: dict[str, Parameter] = {p.name: p for p in _ROWS}
"""Every misalignment parameter by name, in ``perturb``'s order."""

PARAMETERS: tuple[str, ...] = tuple(TABLE)
"""The names, in the order :func:`~drct.geometry.perturb.perturb` applies them."""


def _describe(ndim: int, beam: str) -> str:
    return f"{ndim}D {beam}{' (fan)' if beam == 'cone' and ndim == 2 else ''} beam"


def _shape(pg: Any) -> tuple[int, str]:
    ndim, beam = getattr(pg, "ndim", None), getattr(pg, "beam", None)
    if ndim not in (2, 3) or beam not in ("parallel", "cone"):
        raise TypeError(
            f"misalignment parameters need a detector geometry (ct.parallel, ct.cone, ...), got {type(pg).__name__}"
        )
    return int(ndim), str(beam)


def applicable(pg: Any) -> tuple[str, ...]:
    """The names that apply to the detector geometry ``pg`` (by its dimension and beam), in table order.

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.geometry.parameters import applicable
        >>> applicable(ct.parallel(np.linspace(0, np.pi, 4), 8))[:3]  # 2D parallel beam: no source parameters
        ('det_shift_u', 'det_yaw', 'pixel_scale')
    """
    ndim, beam = _shape(pg)
    return tuple(p.name for p in _ROWS if p.applies(ndim, beam))


def check_all(names: Any, pg: Any, what: str = "misalignment parameter") -> list[Parameter]:
    """The table rows of ``names`` if all apply to ``pg``; else a ValueError naming the offending ones (as a
    list, or quoted when ``names`` is one string) and what is allowed for ``pg``.

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.geometry.parameters import check_all
        >>> pg = ct.parallel(np.linspace(0, np.pi, 4), 16)
        >>> [p.name for p in check_all(["det_shift_u", "cor_offset"], pg)]
        ['det_shift_u', 'cor_offset']
        >>> check_all(["src_orig_delta", "det_roll"], pg)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: ['det_roll'] only exist for 3D geometries (...); for this 2D parallel beam geometry the ...
    """
    single = isinstance(names, str)
    given = [names] if single else [str(n) if not isinstance(n, str) else n for n in names]
    ndim, beam = _shape(pg)

    def fail(bad: list[str], problem: str) -> ValueError:
        label = repr(bad[0]) if single else str(bad)
        allowed = ", ".join(applicable(pg))
        return ValueError(f"{label} {problem}; for this {_describe(ndim, beam)} geometry the parameters are: {allowed}")

    if unknown := [n for n in given if n not in TABLE]:
        label = repr(unknown[0]) if single else str(unknown)
        raise ValueError(
            f"unknown {what}{'' if single else '(s)'} {label}; expected one of {list(PARAMETERS)} "
            f"(for this {_describe(ndim, beam)} geometry: {', '.join(applicable(pg))})"
        )
    if ndim == 2 and (bad := [n for n in given if TABLE[n].only_3d]):
        verb = "only exists" if single else "only exist"
        raise fail(bad, f"{verb} for 3D geometries (a 2D geometry has no v axis and turns about z only)")
    if beam == "parallel" and (bad := [n for n in given if TABLE[n].needs_source]):
        verb = "needs" if single else "need"
        raise fail(bad, f"{verb} a source (cone or fan beam): not for a parallel beam")
    return [TABLE[n] for n in given]


def check(name: str, pg: Any, what: str = "misalignment parameter") -> Parameter:
    """The table row of ``name`` if it applies to ``pg``; else a ValueError naming it and what is allowed.

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.geometry.parameters import check
        >>> pg = ct.parallel(np.linspace(0, np.pi, 4), 8)
        >>> check("det_shift_u", pg).unit
        'length'
        >>> check("src_shift_u", pg)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: ...src_shift_u...
    """
    return check_all(name, pg, what)[0]
