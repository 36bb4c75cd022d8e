"""drct's detector model (:mod:`drct.physics`) as a ``deepinv.physics.NoiseModel`` on line integrals."""

# pyright: reportMissingImports=false
# (deepinv is the optional ``learn`` extra: the type check runs with and without it)

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from deepinv.physics import NoiseModel

from ..errors import require_finite
from ..physics import Detector, dark_field, expected_counts, flat_field, log_transform, sample_counts


class DetectorNoise(NoiseModel):
    """Noisy line integrals as a scanner measures them: drct's :class:`~drct.physics.Detector` chain.

    For clean line integrals ``p`` (the output of ``A``), in drct's own functions and in this order:
    mean photons ``I = i0 · exp(-p)`` blurred along the detector (:func:`drct.physics.expected_counts`), readings
    ``clamp(round((Poisson(I) + Normal(0, σ²)) / k + d), 0, 2^b − 1)`` (:func:`drct.physics.sample_counts`:
    shot and electronic noise, gain, dark offset, b-bit quantisation), and back to line integrals with the
    noise-free flat and dark fields (:func:`drct.physics.log_transform`; readings at or below dark give the
    finite value of ``floor``). The quantisation is part of this noise model, not a deepinv ``sensor_model``:
    the digitiser works on readings, before the log, where its steps are uniform.

    Not differentiable (the samples are drawn with numpy's generator, seeded from ``rng`` or, without one,
    from torch's global generator, so ``torch.manual_seed`` makes it reproducible). Monochromatic: ``p`` is
    energy independent (polychromatic data come from :func:`drct.physics.simulate_counts` with materials).

    Args:
        detector: photons per pixel ``i0``, ``gain``, electronic noise ``sigma``, ``bits``, ``blur``, ``dark``.
        det_ndim: detector axes at the end of ``p`` for the blur: 1 (``(..., views, cols)``) or 2 (``(...,
            views, rows, cols)``). :class:`drct.deepinv.Tomography` sets it from its geometry.
        floor: smallest signal above dark in digital units, for the log (see :func:`drct.physics.log_transform`).
        rng: a ``torch.Generator`` for reproducible noise (deepinv's convention; ``seed=`` re-seeds it).

    Example:
        >>> import torch
        >>> from drct.physics import Detector
        >>> from drct.deepinv import DetectorNoise
        >>> noise = DetectorNoise(Detector(i0=1e4, sigma=5.0, bits=12), rng=torch.Generator().manual_seed(0))
        >>> p = torch.full((2, 1, 30, 64), 1.0)
        >>> y = noise(p)
        >>> bool(abs(float(y.mean()) - 1.0) < 0.01), bool(0.005 < float(y.std()) < 0.05)
        (True, True)
    """

    def __init__(
        self, detector: Detector, det_ndim: int | None = None, floor: float = 0.5, rng: torch.Generator | None = None
    ) -> None:
        super().__init__(rng=rng)  # pyright: ignore[reportArgumentType]  (deepinv: rng=None is its default)
        if not isinstance(detector, Detector):
            raise TypeError(f"detector must be a drct.physics.Detector, got {type(detector).__name__}")
        if det_ndim not in (None, 1, 2):
            raise ValueError(f"det_ndim must be 1, 2 or None, got {det_ndim!r}")
        if not (np.isfinite(floor) and floor > 0):
            raise ValueError(f"floor must be a positive number of digital units, got {floor!r}")
        self.detector, self.det_ndim, self.floor = detector, det_ndim, float(floor)

    def _seed(self) -> int:
        """A numpy seed drawn from ``rng`` (or torch's global generator)."""
        return int(torch.randint(0, 2**62, (1,), generator=self.rng))

    def forward(self, x: torch.Tensor, seed: int | None = None, **kwargs: Any) -> torch.Tensor:
        """Noisy line integrals of the clean line integrals ``x`` (same shape, dtype and device)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x (line integrals) must be a torch.Tensor, got {type(x).__name__}")
        if seed is not None:
            self.rng_manual_seed(seed)
        p = x.detach().to("cpu", torch.float64).numpy()
        require_finite(p, "x (line integrals)")
        det = self.detector
        readings = sample_counts(expected_counts(p, None, det, self.det_ndim), det, self._seed())
        noisy = log_transform(readings, flat_field(det), dark_field(det), self.floor)
        return torch.as_tensor(noisy, dtype=x.dtype, device=x.device)

    def extra_repr(self) -> str:
        return f"detector={self.detector!r}, det_ndim={self.det_ndim}, floor={self.floor}"
