"""Scatter estimates from projections: the triple-energy-window (TEW) method.

Photons scattered in the patient lose energy, and some still land in the photopeak window. The TEW method
(Ogawa et al., IEEE TMI 1991) reads two narrow windows on either side of the photopeak and takes the scatter
in the photopeak as the area of the trapezoid under the straight line joining their count densities:

    S_peak = (C_lower / W_lower + C_upper / W_upper) · W_peak / 2

per detector pixel (``C`` counts, ``W`` window widths in keV). The estimate is the additive term ``s`` of
``y ~ Poisson(A f + s)``: pass it as ``additive=`` to :func:`drct.recon.mlem` / :func:`drct.recon.osem`.
Narrow windows hold few counts, so the estimate is usually smoothed in-plane first (``smooth_sigma``).

Example:
    >>> import numpy as np
    >>> from drct.emission import tew_scatter
    >>> lower, upper = np.full((2, 4, 4), 6.0), np.full((2, 4, 4), 2.0)
    >>> s = tew_scatter(lower, upper, lower_width=6.0, upper_width=6.0, peak_width=28.0)
    >>> float(s[0, 0, 0])  # (6/6 + 2/6) * 28 / 2
    18.666666666666664
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import require_finite


def _width(value: Any, name: str, zero_ok: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"tew_scatter: {name} must be a number (keV), got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not zero_ok):
        raise ValueError(
            f"tew_scatter: {name} must be a finite number {'>= 0' if zero_ok else '> 0'} keV, got {value!r}"
        )
    return v


def _counts(value: Any, name: str) -> np.ndarray:
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value, dtype=np.float64)
    require_finite(arr, name)
    if arr.ndim < 2:
        raise ValueError(f"tew_scatter: {name} must be projections (..., rows, cols), got shape {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"tew_scatter: {name} must be non-negative counts, got a minimum of {arr.min():g}")
    return arr


def tew_scatter(
    lower: Any,
    upper: Any,
    lower_width: float,
    upper_width: float,
    peak_width: float,
    smooth_sigma: float = 0.0,
) -> np.ndarray:
    """The TEW estimate of the scatter counts in the photopeak window (formula in the module docstring).

    Args:
        lower: counts in the window just below the photopeak, shape ``(views, rows, cols)`` (any leading axes).
        upper: counts in the window just above, same shape; ``None`` for a dual-window estimate (``C_upper = 0``,
            usual for Tc-99m, whose upper window sees almost nothing).
        lower_width, upper_width, peak_width: window widths in keV (``upper_width`` unused when ``upper`` is
            ``None``).
        smooth_sigma: standard deviation (detector pixels) of a Gaussian applied to each view before the
            formula (rows and columns only, mirrored at the detector edges, which keeps each view's total;
            0 for none).

    Returns:
        The estimate (numpy, float64), shaped like ``lower``, non-negative.

    Raises:
        ValueError: negative or non-finite counts or widths, or shapes that differ.

    Example:
        >>> import numpy as np
        >>> from drct.emission import tew_scatter
        >>> lower, upper = np.full((2, 3, 4), 30.0), np.full((2, 3, 4), 6.0)
        >>> float(tew_scatter(lower, upper, 6.0, 6.0, 28.0)[0, 0, 0])  # (30/6 + 6/6) * 28 / 2
        84.0
        >>> float(tew_scatter(lower, None, 6.0, 0.0, 28.0)[0, 0, 0])  # dual window: no upper counts
        70.0
    """
    lo = _counts(lower, "lower")
    density = lo / _width(lower_width, "lower_width")
    if upper is not None:
        up = _counts(upper, "upper")
        if up.shape != lo.shape:
            raise ValueError(f"tew_scatter: upper has shape {up.shape}, lower {lo.shape}; they must match")
        density = density + up / _width(upper_width, "upper_width")
    estimate = density * _width(peak_width, "peak_width") / 2.0
    sigma = _width(smooth_sigma, "smooth_sigma", zero_ok=True)
    if sigma > 0:
        from scipy.ndimage import gaussian_filter

        axes = (estimate.ndim - 2, estimate.ndim - 1)
        estimate = gaussian_filter(estimate, sigma=sigma, axes=axes, mode="reflect")
        estimate = np.maximum(estimate, 0.0)
    return estimate
