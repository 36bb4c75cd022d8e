"""The source/detector model of a scanner: photon count, gain, electronic noise, bit depth, blur, dark offset.

The measurement model (after Sec. 2 and App. A of "End-to-end sinogram reconstruction", plus blur, per-pixel gain
and a dark offset as real flat-panel detectors have them):

    I   = i0 · Σ_E s(E) · exp(−Σ_m μ_m(E) L_m − p)          mean photons reaching a pixel
    Ī   = G_σb * I                                          Gaussian detector blur (σb in pixels), mean photons
    z   ~ Poisson(Ī) + Normal(0, σ²)                        shot and electronic noise, in photons
    r   = clamp(round(z / k + d), 0, 2^b − 1)               b-bit reading; k = ``gain`` (photons per unit), d = ``dark``

``p`` collects energy-independent line integrals (monochromatic μ). An energy-integrating detector
(``response="integrating"``) weighs each photon by E/Ē and replaces Poisson(Ī) by f · Poisson(Ī/f), with f the
variance/mean ratio of its compound Poisson signal (same mean and variance). The flat field (no object) is
``i0/k + d``, the dark field ``d``, and :func:`~drct.physics.log_transform` recovers line integrals from readings.

Example:
    >>> from drct.physics import Detector
    >>> Detector(i0=1e4, gain=2.0, sigma=5.0, bits=12).max_reading
    4095
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

RESPONSES = ("counting", "integrating")


def _check_number(name: str, value: Any, minimum: float, strict: bool) -> None:
    arr = np.asarray(value, dtype=np.float64) if not isinstance(value, str) else None
    ok = arr is not None and np.all(np.isfinite(arr)) and (np.all(arr > minimum) if strict else np.all(arr >= minimum))
    if not ok:
        rel = ">" if strict else ">="
        raise ValueError(
            f"detector {name} must be a finite number (or per-pixel array) {rel} {minimum:g}, got {value!r}"
        )


@dataclass(frozen=True, eq=False)
class Detector:
    """Source intensity and detector response.

    Attributes:
        i0: Mean number of photons per pixel per view with no object (whole spectrum), > 0.
        gain: k, photons per digital unit (``r = z / k``): a number or a per-pixel map broadcastable to the
            detector's ``(rows, cols)`` (a non-uniform gain is what flat-field correction removes).
        sigma: Standard deviation of the Gaussian electronic noise, in photons, >= 0.
        bits: Bit depth b of the digitiser (readings clamp to ``[0, 2^b - 1]``), 1..32, or None for no
            quantisation and no clamping (real-valued readings).
        blur: Standard deviation of the Gaussian detector blur in pixels (0: none), applied along the detector
            axes of each view before the noise.
        dark: Dark offset d in digital units (a number or a per-pixel map), >= 0.
        response: ``"counting"`` (photon counting: every photon counts 1) or ``"integrating"`` (flat panels:
            the signal is the deposited energy, in photon equivalents at the spectrum's mean energy, so
            hard photons weigh more and the shot noise has variance Σ s E² / Σ s E times the mean, relative to Ē).

    Example:
        >>> from drct import physics
        >>> det = physics.Detector(i0=1e4, gain=2.0, dark=100.0, bits=16)  # 2 photons per digital unit
        >>> float(physics.flat_field(det)), float(physics.dark_field(det))  # i0 / gain + dark, dark
        (5100.0, 100.0)
    """

    i0: float = 1e4
    gain: Any = 1.0
    sigma: float = 0.0
    bits: int | None = 16
    blur: float = 0.0
    dark: Any = 0.0
    response: str = "counting"

    def __post_init__(self) -> None:
        _check_number("i0", self.i0, 0.0, strict=True)
        _check_number("gain", self.gain, 0.0, strict=True)
        _check_number("sigma", self.sigma, 0.0, strict=False)
        _check_number("blur", self.blur, 0.0, strict=False)
        _check_number("dark", self.dark, 0.0, strict=False)
        if self.bits is not None and (
            isinstance(self.bits, bool) or not isinstance(self.bits, (int, np.integer)) or not 1 <= self.bits <= 32
        ):
            raise ValueError(f"detector bits must be an integer from 1 to 32 or None, got {self.bits!r}")
        if self.response not in RESPONSES:
            raise ValueError(f"detector response must be one of {RESPONSES}, got {self.response!r}")
        for name in ("i0", "sigma", "blur"):
            if np.ndim(getattr(self, name)) != 0:
                raise ValueError(
                    f"detector {name} must be a single number, got an array of shape {np.shape(getattr(self, name))}"
                )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Detector):
            return NotImplemented
        return all(
            np.array_equal(np.asarray(getattr(self, n)), np.asarray(getattr(other, n)))
            for n in ("i0", "gain", "sigma", "bits", "blur", "dark", "response")
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def max_reading(self) -> int | None:
        """``2^bits - 1``, or None without quantisation."""
        return None if self.bits is None else (1 << int(self.bits)) - 1

    def gain_array(self) -> np.ndarray:
        """``gain`` as a float64 array (0-d or a per-pixel map)."""
        return np.asarray(self.gain, dtype=np.float64)

    def dark_array(self) -> np.ndarray:
        """``dark`` as a float64 array (0-d or a per-pixel map)."""
        return np.asarray(self.dark, dtype=np.float64)
