"""``[detector]`` kinds.

* ``ideal`` (the default): no noise and no blur; the projections are the exact line integrals (or, with a
  polychromatic source, ``-log`` of the expected transmission: beam hardening without noise).
* ``flat_panel``: the detector model of :class:`drct.physics.Detector` — ``gain`` (photons per digital unit),
  ``electronic_noise`` (σ in photons), ``bits`` (0 = no quantisation), ``blur`` (σ in pixels), ``dark``
  (digital units), ``gain_variation`` (relative spread of a fixed per-pixel gain pattern, 0 = uniform) and
  ``flat_frames`` (0: the flat field is exact; N: the mean of N noisy flat frames, as a scanner records it,
  whose noise leaves rings in reconstructions) — with Poisson shot noise; projections are the log transform of
  the readings, corrected with the flat and dark fields.

Example:
    >>> from drct.scene.detectors import FlatPanel, Ideal
    >>> Ideal({}).physics(1e4)
    Detector(i0=10000.0, gain=1.0, sigma=0.0, bits=None, blur=0.0, dark=0.0, response='counting')
    >>> panel = FlatPanel({"gain": 2.0, "electronic_noise": 3.0, "blur": 0.0, "dark": 0.0}, bits=12, gain_variation=0.1)
    >>> panel.gain_map((4, 5)).shape  # a fixed per-pixel gain pattern around 2 photons per unit
    (4, 5)
    >>> panel.physics(1e4, (4, 5)).bits
    12
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..physics import Detector
from .objects import plain
from .registry import register
from .schema import Table


class DetectorModel:
    """Base class of detector kinds."""

    type_name: ClassVar[str] = "detector"
    noisy: ClassVar[bool] = False

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def physics(self, photons: Any, pixels: tuple[int, ...] = ()) -> Any:
        """The :class:`drct.physics.Detector` of this model for ``photons`` per pixel, ``pixels`` its shape."""
        return Detector(i0=float(plain(photons)), bits=None)

    def to_table(self, folder: Path) -> dict[str, Any]:
        return {"type": self.type_name} | {k: plain(v) for k, v in self.params.items()}


@register("detector", "ideal")
class Ideal(DetectorModel):
    @classmethod
    def from_table(cls, t: Table) -> Ideal:
        return cls({})


@register("detector", "flat_panel")
class FlatPanel(DetectorModel):
    noisy = True

    def __init__(self, params: dict[str, Any], bits: int, gain_variation: float = 0.0, flat_frames: int = 0) -> None:
        super().__init__(params)
        self.bits, self.gain_variation, self.flat_frames = bits, gain_variation, flat_frames

    @classmethod
    def from_table(cls, t: Table) -> FlatPanel:
        params = {
            "gain": t.quantity("gain", "number", 1.0, positive=True),
            "electronic_noise": t.quantity("electronic_noise", "number", 0.0),
            "blur": t.quantity("blur", "number", 0.0),
            "dark": t.quantity("dark", "number", 0.0),
        }
        for key in ("electronic_noise", "blur", "dark"):
            if params[key] < 0:
                t.fail(key, f"expected a number >= 0, got {params[key]}")
        bits = t.integer("bits", 16, minimum=0)
        if bits > 32:
            t.fail("bits", f"expected 0 (no quantisation) to 32 bits, got {bits}")
        variation = t.quantity("gain_variation", "number", 0.0)
        if not 0 <= variation <= 0.5:
            t.fail("gain_variation", f"expected a relative standard deviation in [0, 0.5], got {variation}")
        return cls(params, bits, variation, t.integer("flat_frames", 0, minimum=0))

    def gain_map(self, pixels: tuple[int, ...]) -> Any:
        """The per-pixel gain: ``gain`` times a fixed random pattern of relative spread ``gain_variation``
        (the same for every run of the scene: it belongs to the detector, not to the noise)."""
        gain = float(plain(self.params["gain"]))
        if self.gain_variation == 0:
            return gain
        pattern = np.random.default_rng(20240601).normal(1.0, self.gain_variation, pixels)
        return gain * np.clip(pattern, 0.25, None)

    def physics(self, photons: Any, pixels: tuple[int, ...] = ()) -> Any:
        p = {k: float(plain(v)) for k, v in self.params.items()}
        return Detector(
            i0=float(plain(photons)),
            gain=self.gain_map(pixels),
            sigma=p["electronic_noise"],
            bits=self.bits or None,
            blur=p["blur"],
            dark=p["dark"],
        )

    def to_table(self, folder: Path) -> dict[str, Any]:
        extra = {"gain_variation": self.gain_variation} if self.gain_variation else {}
        extra |= {"flat_frames": self.flat_frames} if self.flat_frames else {}
        return super().to_table(folder) | {"bits": self.bits} | extra
