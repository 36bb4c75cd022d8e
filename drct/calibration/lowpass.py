"""The calibration's data-term weighting: a Gaussian low-pass across the detector, applied to data and model alike
(``|L (A x - y)|^2``), and the weighted operator ``L A`` with its adjoint ``A^T L``."""

from __future__ import annotations

import numpy as np

from ..projector import Projector


class DetectorLowPass:
    """A Gaussian blur of projections across the detector (``sigma`` pixels; views are left alone).

    With zero padding at the detector's edges the blur is a symmetric matrix, so it is its own transpose.

    Example:
        >>> import numpy as np
        >>> from drct.calibration.lowpass import DetectorLowPass
        >>> blur = DetectorLowPass(1.0, ndim=1)
        >>> y = np.zeros((2, 9))
        >>> y[:, 4] = 1.0  # one bright pixel in each of 2 views
        >>> bool(np.allclose(blur(y).sum(axis=1), 1.0))  # spread across the detector, never across views
        True
        >>> a, b = np.random.default_rng(0).normal(size=(2, 3, 9))
        >>> bool(np.isclose(np.vdot(blur(a), b), np.vdot(a, blur(b))))  # symmetric
        True
    """

    def __init__(self, sigma: float, ndim: int) -> None:
        self.sigma = float(sigma)
        self.ndim = ndim

    def noise_gain(self, ndim: int) -> float:
        """The factor by which the blur scales the variance of white noise in data of ``ndim`` axes (1 without a
        blur): the sum of the squared kernel weights, measured on an impulse."""
        if self.sigma <= 0:
            return 1.0
        size = 2 * int(np.ceil(3 * self.sigma)) + 3
        shape = (1,) * (ndim - self.ndim) + (size,) * self.ndim
        impulse = np.zeros(shape)
        impulse[(0,) * (ndim - self.ndim) + (size // 2,) * self.ndim] = 1.0
        return float(np.sum(self(impulse) ** 2))

    def __call__(self, a: np.ndarray) -> np.ndarray:
        if self.sigma <= 0:
            return a
        from scipy.ndimage import gaussian_filter

        sigmas = (0.0,) * (a.ndim - self.ndim) + (self.sigma,) * self.ndim
        return gaussian_filter(a, sigmas, mode="constant", truncate=3.0).astype(a.dtype, copy=False)


class WeightedOperator:
    """``L A`` for a projector ``A`` and a detector low-pass ``L``; ``.T`` is ``A^T L`` (``L`` is symmetric)."""

    def __init__(self, A: Projector, lowpass: DetectorLowPass) -> None:
        self.A = A
        self.lowpass = lowpass
        self.domain_shape = A.domain_shape

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.lowpass(self.A(x))

    def T(self, r: np.ndarray) -> np.ndarray:
        return self.A.T(self.lowpass(r))
