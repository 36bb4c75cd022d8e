"""The calibration's data-term weighting: a Gaussian low-pass across the detector, applied to data and model alike
(``|L (A x - y)|^2``), and the weighted operator ``L A`` with its adjoint ``A^T L``.

The blur runs where its input lives: numpy projections on the host (``scipy.ndimage.correlate1d``), Dr.Jit tensors
on their device (``drjit.convolve``), with the same taps (:meth:`DetectorLowPass.taps`), so that the calibration's
inner CGLS (:func:`drct.calibration.problem.ridge_cgls`) never leaves the device.
"""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np

from ..backend import Types
from ..projector import Projector

TRUNCATE = 3.0
"""Taps reach ``int(TRUNCATE * sigma + 0.5)`` pixels each way (scipy's ``gaussian_filter(..., truncate=3.0)``)."""


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
        >>> from drjit.llvm.ad import TensorXf  # on a Dr.Jit tensor: the same blur, on its device
        >>> bool(np.allclose(blur.tensor(TensorXf(a.astype(np.float32))).numpy(), blur(a), atol=1e-6))
        True
    """

    def __init__(self, sigma: float, ndim: int) -> None:
        self.sigma = float(sigma)
        self.ndim = ndim

    def taps(self) -> np.ndarray:
        """The normalised Gaussian taps (float64, odd length, symmetric): scipy's ``gaussian_filter`` kernel."""
        radius = int(TRUNCATE * self.sigma + 0.5)
        offsets = np.arange(-radius, radius + 1, dtype=np.float64)
        weights = np.exp(-0.5 / (self.sigma * self.sigma) * offsets**2)
        return weights / weights.sum()

    def noise_gain(self, ndim: int) -> float:
        """The factor by which the blur scales the variance of white noise in data of ``ndim`` axes (1 without a
        blur): the sum of the squared kernel weights, measured on an impulse."""
        if self.sigma <= 0:
            return 1.0
        size = 2 * int(np.ceil(TRUNCATE * self.sigma)) + 3
        shape = (1,) * (ndim - self.ndim) + (size,) * self.ndim
        impulse = np.zeros(shape)
        impulse[(0,) * (ndim - self.ndim) + (size // 2,) * self.ndim] = 1.0
        return float(np.sum(self(impulse) ** 2))

    def __call__(self, a: np.ndarray) -> np.ndarray:
        """The blur of numpy projections (the detector's axes last), in their dtype."""
        if self.sigma <= 0:
            return a
        from scipy.ndimage import correlate1d

        taps, out = self.taps(), a
        for axis in range(a.ndim - self.ndim, a.ndim):
            out = correlate1d(out, taps, axis=axis, mode="constant")
        return out.astype(a.dtype, copy=False)

    def tensor(self, a: Any) -> Any:
        """The blur of a Dr.Jit tensor of projections (the detector's axes last), on its device."""
        if self.sigma <= 0:
            return a
        taps = self.taps().tolist()  # symmetric: convolution and correlation agree
        ndim = len(a.shape)
        for axis in range(ndim - self.ndim, ndim):
            a = dr.convolve(a, taps, axis=axis)
        return a


class WeightedOperator:
    """``L A`` for a projector ``A`` and a detector low-pass ``L``; ``.T`` is ``A^T L`` (``L`` is symmetric), on
    numpy arrays (``op(x)``, ``op.T(r)``) and on Dr.Jit tensors (``forward_tensor``, ``adjoint_tensor``)."""

    def __init__(self, A: Projector, lowpass: DetectorLowPass) -> None:
        self.A = A
        self.lowpass = lowpass
        self.domain_shape = A.domain_shape
        self.types: Types = A.types

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.lowpass(self.A(x))

    def T(self, r: np.ndarray) -> np.ndarray:
        return self.A.T(self.lowpass(r))

    def forward_tensor(self, x: Any) -> Any:
        return self.lowpass.tensor(self.A.forward_tensor(x))

    def adjoint_tensor(self, r: Any) -> Any:
        return self.A.adjoint_tensor(self.lowpass.tensor(r))
