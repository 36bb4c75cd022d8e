"""Model error the local analysis cannot see: does an estimate move when the data's fine detail is weighted
differently?

The uncertainties of :mod:`drct.calibration.diagnostics` come from the curvature and the residual *around* the
estimate. A systematic misfit (a volume basis that cannot reproduce the data's edges, physics the model leaves
out, a coarse grid) shifts the minimum of the loss itself, and at that shifted minimum nothing local is amiss: the
issue's case ``examples/calibration/cone_beam.py --size 32`` settled with the roll 1.2° off at σ = 0.05°, and
started at the true geometry it walked 0.46° away from it, to a lower loss.

The check is a specification test in the manner of Hausman's: where the model is right, the loss weighted by the
calibration's detector low-pass ``L1`` and the same loss weighted by another ``L2`` have their minima at the same
geometry up to noise; where a misfit pulls the geometry, the two weightings weigh it differently and their minima
part. At the estimate, with the volume re-fitted under ``L2`` and the reduced (volume- and pose-adapted)
Gauss–Newton step taken under each weighting, the difference ``Δ = step_2 - step_1`` estimates how far the two
minima lie apart. Its noise is at most ``sqrt(σ1² + σ2²)`` (the two estimates are positively correlated), so

* the reported σ becomes ``sqrt(σ1² + max(Δ² - σ1² - σ2², 0))``: a model-error term that is zero on average where
  the model is right;
* a parameter whose ``|Δ|`` exceeds ``2 sqrt(σ1² + σ2²)`` is *not determined*: its estimate depends on how the
  misfit is weighted by more than its noise, so neither estimate can be trusted to its σ.

The alternative weighting is twice the calibration's low-pass, or 2 pixels when it used none.

Example:
    >>> from drct.calibration.misfit import alternative_lowpass
    >>> alternative_lowpass(2.0), alternative_lowpass(0.0)
    (4.0, 2.0)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .diagnostics import Diagnostics, analyse
from .gauge import Gauge
from .problem import LevelProblem, ridge_cgls

THRESHOLD = 2.0  # |Δ| beyond this many standard deviations of the difference: the weighting moves the estimate


@dataclass
class WeightingCheck:
    """What the model-error check found, one entry per analysed parameter.

    Attributes:
        lowpass: the calibration's low-pass and the alternative one (pixels of the finest detector).
        shift: ``Δ``, the alternative weighting's estimate minus the calibration's (theta units, one step each).
        std_alternative: σ under the alternative weighting.
        ratio: ``|Δ| / sqrt(σ1² + σ2²)``.
        bias: ``sqrt(max(Δ² - σ1² - σ2², 0))``, the model-error term added to σ.
        seconds: the check's run time.
    """

    lowpass: tuple[float, float]
    shift: np.ndarray
    std_alternative: np.ndarray
    ratio: np.ndarray
    bias: np.ndarray
    seconds: float

    def to_dict(self, names: list[str]) -> dict[str, Any]:
        """JSON-ready, per parameter name."""
        return {
            "lowpass_px": list(self.lowpass),
            "parameters": {
                n: {
                    "shift": float(self.shift[k]),
                    "std_alternative": float(self.std_alternative[k]),
                    "ratio": float(self.ratio[k]),
                    "bias": float(self.bias[k]),
                }
                for k, n in enumerate(names)
            },
            "seconds": self.seconds,
        }


def alternative_lowpass(lowpass: float) -> float:
    """The check's other weighting: twice the calibration's low-pass σ, or 2 pixels when it used none."""
    return 2.0 * lowpass if lowpass > 0 else 2.0


def check_weighting(
    prob: LevelProblem,
    theta: np.ndarray,
    x: np.ndarray,
    free: np.ndarray,
    gauge: Gauge | None,
    found: Diagnostics,
    lowpass: float,
    recon_iterations: int,
    iterations: int = 20,
) -> WeightingCheck | None:
    """Compare the reduced Gauss–Newton steps at ``theta`` under the calibration's weighting (``found``, made on
    ``prob``) and under :func:`alternative_lowpass` (``lowpass`` in pixels of the finest detector; the volume
    re-fitted from ``x`` with ``recon_iterations`` CGLS iterations)."""
    start = time.perf_counter()
    other_sigma = alternative_lowpass(lowpass)
    other = prob.weighted(other_sigma / prob.level.factor)
    x2 = ridge_cgls(other.operator(theta), other.y, x, recon_iterations, other.ridge)
    second = analyse(other, theta, x2, free, gauge, iterations)
    if second is None or second.names != found.names:
        return None
    shift = second.step - found.step
    scale = np.sqrt(found.std**2 + second.std**2)
    ratio = np.abs(shift) / np.maximum(scale, 1e-300)
    bias = np.sqrt(np.maximum(shift**2 - scale**2, 0.0))
    return WeightingCheck((lowpass, other_sigma), shift, second.std, ratio, bias, time.perf_counter() - start)


def apply_check(found: Diagnostics, check: WeightingCheck) -> None:
    """Widen ``found``'s σ by the model-error term and mark the parameters the weighting moves as not determined
    (also those whose widened 2σ now exceeds one pixel's worth of their effect)."""
    found.model_check = check
    found.std_statistical = found.std.copy()
    found.std = np.sqrt(found.std**2 + check.bias**2)
    low, high = check.lowpass
    for k, name in enumerate(found.names):
        if name in found.undetermined:
            continue
        if check.ratio[k] > THRESHOLD:
            found.undetermined[name] = (
                f"model error: the estimate moves {check.ratio[k]:.1f}σ when the data's fine detail is weighted "
                f"differently (detector low-pass {low:g} → {high:g} px); the model does not reproduce the data "
                "(volume basis, physics, grid) and that misfit pulls it"
            )
        elif 2 * found.std[k] > found.scale[k]:
            found.undetermined[name] = (
                f"2σ = {2 * found.std[k] / found.scale[k]:.2f} × one detector pixel's worth of its effect "
                "(σ includes the model-error term)"
            )
    found.unconverged = [n for n in found.unconverged if n not in found.undetermined]
