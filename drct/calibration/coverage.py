"""Do the reported uncertainties cover the truth? Random small calibration problems with a known misalignment, and
the fraction of them whose error is within the reported 2σ, per parameter (the benchmark
``benchmarks/bench_calibration_coverage.py`` prints the table; a test runs a few).

A problem (:func:`random_problem`) draws its misalignment uniformly from :data:`RANGES` (in detector pixels and
degrees) and its noise from its own seed:

* ``"fan"``: a 2D fan beam, ``size``² volume, ``1.5 size`` detector pixels, ``2 size`` views over 360°, magnification
  2; ``det_shift_u`` and ``det_yaw``.
* ``"cone"``: a circular cone beam, ``size``³ volume, ``size``² detector, ``2 size`` views, magnification 2;
  ``det_shift_u``, ``det_roll`` and ``det_yaw``.

The data are either made by the calibration's own model (``"model"``: bspline2 projections of the Shepp–Logan
phantom sampled on the grid, plus Gaussian noise of 1% of the peak, calibrated without the low-pass) or exact line
integrals of the analytic phantom with Poisson noise (``"analytic"``: a model error the basis cannot reproduce,
calibrated with the default low-pass).

Example:
    >>> import numpy as np
    >>> from drct.calibration.coverage import random_problem
    >>> p = random_problem("fan", 16, np.random.default_rng(0))
    >>> sorted(p.truth), p.y.shape
    (['det_shift_u', 'det_yaw'], (32, 24))
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..geometry.factories import cone, fan
from ..geometry.projection import ProjectionGeometry
from ..geometry.volume import VolumeGeometry
from ..phantoms import shepp_logan, shepp_logan_projections
from ..projector import Projector

# half-widths of the uniform draws: lengths in detector pixels, angles in degrees
RANGES = {"det_shift_u": 1.5, "det_roll": 1.5, "det_yaw": 3.0}
ANGLES = ("det_roll", "det_yaw")
PARAMETERS = {"fan": ("det_shift_u", "det_yaw"), "cone": ("det_shift_u", "det_roll", "det_yaw")}


@dataclass
class Problem:
    """One calibration problem with its truth (mm, radians) and the options to calibrate it with."""

    vg: VolumeGeometry
    pg: ProjectionGeometry
    y: np.ndarray
    truth: dict[str, float]
    pixel: float
    lowpass: float


@dataclass
class Outcome:
    """One parameter of one solved problem: the error, the reported σ (both in the parameter's unit) and whether
    the calibration warned about it (not determined, not converged)."""

    error: float
    std: float
    warned: bool

    @property
    def covered(self) -> bool:
        """The truth is within the reported 2σ."""
        return abs(self.error) <= 2 * self.std


def random_problem(kind: str, size: int, rng: np.random.Generator, data: str = "model") -> Problem:
    """A problem of ``kind`` ``"fan"`` or ``"cone"`` with a misalignment drawn from :data:`RANGES` (see the module
    docstring); ``data`` is ``"model"`` or ``"analytic"``."""
    if kind not in PARAMETERS:
        raise ValueError(f"kind must be one of {tuple(PARAMETERS)}, got {kind!r}")
    if data not in ("model", "analytic"):
        raise ValueError(f"data must be 'model' or 'analytic', got {data!r}")
    angles = np.linspace(0, 2 * np.pi, 2 * size, endpoint=False)
    if kind == "fan":
        vg = VolumeGeometry((size, size), voxel_size=64.0 / size)
        pg = fan(angles, size + size // 2, 128.0 / size, 200.0, 400.0)
    else:
        vg = VolumeGeometry((size, size, size), voxel_size=64.0 / size)
        pg = cone(angles, (size, size), 160.0 / size, 256.0, 512.0)
    pixel = float(np.linalg.norm(pg.det_u[0]))
    truth = {
        name: float(np.deg2rad(draw) if name in ANGLES else draw * pixel)
        for name in PARAMETERS[kind]
        for draw in [rng.uniform(-RANGES[name], RANGES[name])]
    }
    moved = pg.perturb(**truth)
    if data == "model":
        y = Projector(vg, moved, basis="bspline2")(shepp_logan(vg))
        y = y + rng.normal(scale=0.01 * float(y.max()), size=y.shape)
        lowpass = 0.0
    else:
        exact = shepp_logan_projections(moved, vg=vg).astype(np.float64)
        k = 3.0 / max(float(exact.max()), 1e-12)  # the largest line integral attenuates to e^-3
        counts = rng.poisson(1e5 * np.exp(-k * exact))
        y = -np.log(np.maximum(counts, 1) / 1e5) / k
        lowpass = 2.0
    return Problem(vg, pg, np.asarray(y, np.float32), truth, pixel, lowpass)


def solve(problem: Problem, **options: Any) -> dict[str, Outcome]:
    """Calibrate ``problem`` from its nominal geometry (one level; ``options`` go to :func:`calibrate`) and score
    every parameter."""
    from .diagnostics import CalibrationWarning
    from .solver import calibrate

    settings: dict[str, Any] = {"levels": [1], "iterations": 6, "lowpass": problem.lowpass, "progress": False}
    settings.update(options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = calibrate(problem.y, problem.pg, list(problem.truth), vg=problem.vg, **settings)
    flagged = " ".join(str(w.message) for w in caught if issubclass(w.category, CalibrationWarning))
    return {
        name: Outcome(float(res.params[name] - true), float(res.std[name]), f"{name}:" in flagged)
        for name, true in problem.truth.items()
    }


def table(rows: list[dict[str, Outcome]]) -> list[str]:
    """A Markdown table: per parameter, how many problems the 2σ covers, how many more were warned about, how many
    neither, and the median and RMS of |error| / σ (0.67 and 1 for an exact Gaussian σ)."""
    out = [
        "| parameter | covered by 2σ | not covered, warned | neither | median abs(error)/σ | RMS error/σ |",
        "|---|---|---|---|---|---|",
    ]
    for name in rows[0]:
        cases = [r[name] for r in rows]
        ratio = np.array([abs(c.error) / max(c.std, 1e-300) for c in cases])
        covered = np.array([c.covered for c in cases])
        warned = np.array([c.warned for c in cases]) & ~covered
        out.append(
            f"| {name} | {covered.sum()}/{len(cases)} ({100 * covered.mean():.0f}%) | {warned.sum()} "
            f"| {(~covered & ~warned).sum()} | {np.median(ratio):.2f} | {np.sqrt(np.mean(ratio**2)):.2f} |"
        )
    return out
