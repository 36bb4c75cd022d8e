"""``[detector]`` kinds.

* ``ideal`` (the default): no noise and no blur; the projections are the exact line integrals (or, with a
  polychromatic source, ``-log`` of the expected transmission: beam hardening without noise).
* ``flat_panel``: the detector model of :class:`drct.physics.Detector` — ``gain`` (photons per digital unit),
  ``electronic_noise`` (σ in photons), ``bits`` (0 = no quantisation), ``blur`` (σ in pixels), ``dark``
  (digital units) — with Poisson shot noise; projections are the log transform of the readings, corrected
  with the flat and dark fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from .objects import plain
from .registry import register
from .schema import Table


class DetectorModel:
    """Base class of detector kinds."""

    type_name: ClassVar[str] = "detector"
    noisy: ClassVar[bool] = False

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def physics(self, photons: Any) -> Any:
        """The :class:`drct.physics.Detector` of this model for ``photons`` per pixel."""
        from ..physics import Detector

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

    def __init__(self, params: dict[str, Any], bits: int) -> None:
        super().__init__(params)
        self.bits = bits

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
        return cls(params, bits)

    def physics(self, photons: Any) -> Any:
        from ..physics import Detector

        p = {k: float(plain(v)) for k, v in self.params.items()}
        return Detector(
            i0=float(plain(photons)),
            gain=p["gain"],
            sigma=p["electronic_noise"],
            bits=self.bits or None,
            blur=p["blur"],
            dark=p["dark"],
        )

    def to_table(self, folder: Path) -> dict[str, Any]:
        return super().to_table(folder) | {"bits": self.bits}
