"""The options of :func:`drct.calibration.calibrate`, grouped and checked in one place: a bad value raises a
ValueError (or TypeError) naming the option, the value and what is expected — it never runs and returns zeros.

Example:
    >>> from drct.calibration.options import CalibrationOptions
    >>> CalibrationOptions(iterations=[4, 2]).iterations
    [4, 2]
    >>> CalibrationOptions(regularization=-1)
    Traceback (most recent call last):
        ...
    ValueError: regularization must be a finite number >= 0, got -1
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any

from ..volume import BASES

OPTIMIZERS = ("lm", "adam")
GAUGES = ("fix", "report", "off")
DIAGNOSTICS = ("warn", "raise", "off")


def _integer(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _real(name: str, value: Any, minimum: float, strict: bool = False, maximum: float | None = None) -> float:
    bound = f"{'>' if strict else '>='} {minimum:g}" + ("" if maximum is None else f" and < {maximum:g}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number {bound}, got {value!r} ({type(value).__name__})")
    v = float(value)
    if not math.isfinite(v) or v < minimum or (strict and v == minimum) or (maximum is not None and v >= maximum):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def _integers(name: str, value: Any, minimum: int) -> list[int]:
    """One integer or a non-empty list of them."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "ndim") and getattr(value, "ndim", 0) == 1):
        items = list(value)
        if not items:
            raise ValueError(f"{name} must be one integer >= {minimum} or a non-empty list of them, got {value!r}")
        return [_integer(f"{name}[{i}]", v, minimum) for i, v in enumerate(items)]
    return [_integer(name, value.item() if hasattr(value, "item") else value, minimum)]


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


@dataclass
class CalibrationOptions:
    """Every numeric and named option of :func:`~drct.calibration.calibrate` (see there for their meaning),
    validated on construction. ``levels`` and ``view_strides`` of None are chosen from the volume and geometry;
    ``iterations`` becomes a list (one entry per level once the levels are known).

    Example:
        >>> from drct.calibration import CalibrationOptions
        >>> CalibrationOptions(iterations=4, lowpass=0.0).iterations  # one entry per level once the levels are known
        [4]
        >>> CalibrationOptions(basis="cubic")
        Traceback (most recent call last):
            ...
        ValueError: basis must be one of ('voxel', 'linear', 'bspline2', 'bspline3'), got 'cubic'
    """

    basis: str = "bspline2"
    levels: list[int] | None = None
    optimizer: str = "lm"
    iterations: int | list[int] = 8
    recon_iterations: int = 20
    initial_recon_iterations: int = 30
    final_recon_iterations: int = 10
    regularization: float = 1e-5
    lowpass: float = 2.0
    gauge: str = "fix"
    gauge_tol: float = 1e-4
    view_strides: list[int] | None = None
    adam_steps: int = 5
    adam_lr: float = 0.2
    tol: float = 1e-3
    fine_tol: float = 5e-3
    accelerate: bool = True
    pose: bool = True
    progress: bool = True
    diagnostics: str = "warn"
    diagnostic_iterations: int = 20
    identifiability_tol: float = 1e-2
    diagnostic_size: int = 48**3
    model_check: bool = True

    def __post_init__(self) -> None:
        self.basis = _choice("basis", self.basis, tuple(BASES))
        self.optimizer = _choice("optimizer", self.optimizer, OPTIMIZERS)
        self.gauge = _choice("gauge", self.gauge, GAUGES)
        if self.levels is not None:
            self.levels = _integers("levels (coarsening factors, coarse to fine)", self.levels, 1)
        self.iterations = _integers("iterations", self.iterations, 0)
        for name in ("recon_iterations", "initial_recon_iterations", "final_recon_iterations"):
            setattr(self, name, _integer(name, getattr(self, name), 0))
        self.adam_steps = _integer("adam_steps", self.adam_steps, 1)
        self.regularization = _real("regularization", self.regularization, 0.0)
        self.lowpass = _real("lowpass (σ in detector pixels)", self.lowpass, 0.0)
        self.gauge_tol = _real("gauge_tol", self.gauge_tol, 0.0, strict=True, maximum=1.0)
        self.adam_lr = _real("adam_lr", self.adam_lr, 0.0, strict=True)
        self.tol = _real("tol", self.tol, 0.0)
        self.fine_tol = _real("fine_tol", self.fine_tol, 0.0)
        if self.view_strides is not None:
            self.view_strides = _integers("view_strides", self.view_strides, 1)
        self.diagnostics = _choice("diagnostics", self.diagnostics, DIAGNOSTICS)
        self.diagnostic_iterations = _integer("diagnostic_iterations", self.diagnostic_iterations, 1)
        self.identifiability_tol = _real("identifiability_tol", self.identifiability_tol, 0.0, maximum=1.0)
        self.diagnostic_size = _integer("diagnostic_size", self.diagnostic_size, 1)
        for name in ("accelerate", "pose", "progress", "model_check"):
            setattr(self, name, _flag(name, getattr(self, name)))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def per_level(self, factors: list[int]) -> list[int]:
        """``iterations`` as one entry per level."""
        its = list(self.iterations) if isinstance(self.iterations, list) else [self.iterations]
        its = its * len(factors) if len(its) == 1 else its
        if len(its) != len(factors):
            raise ValueError(f"iterations must be one integer or one per level ({len(factors)}), got {its}")
        return its
