"""``[source]`` kinds: the X-ray spectrum and the photon count per pixel (``photons``, the detector's I0).

* ``monochromatic``: ``energy`` (keV, default 60).
* ``tube``: ``kvp`` (kV), ``filtration`` (``{aluminium = "2 mm"}``), ``energy_bin`` (keV), ``model``
  (``kramers`` or ``spekpy``).
* ``spectrum``: ``energies`` and ``weights`` (a tabulated spectrum) or ``file`` (two-column CSV).

Every kind takes ``photons`` (mean photons per pixel per view without object; default 1e4). The clean line
integrals of material objects are taken at the ``reference_energy``: the energy of a monochromatic source,
the mean energy of a spectrum.

Example:
    >>> from drct.scene.sources import Monochromatic, Tube
    >>> Monochromatic(photons=1e4, energy=80.0).reference_energy
    80.0
    >>> tube = Tube(1e4, kvp=100.0, filtration={"aluminium": 2.0}, energy_bin=1.0, model="kramers")
    >>> 30.0 < tube.reference_energy < 100.0  # the spectrum's mean energy (keV), below the peak voltage
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from ..physics import Spectrum
from .objects import plain
from .registry import register
from .schema import Table


class Source:
    """Base class of source kinds: ``spectrum()``, ``params`` (``photons``), ``to_table``."""

    type_name: ClassVar[str] = "source"

    def __init__(self, photons: Any) -> None:
        self.params: dict[str, Any] = {"photons": photons}

    @staticmethod
    def read_photons(t: Table) -> float:
        return t.quantity("photons", "number", 1e4, positive=True)

    def spectrum(self) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    @property
    def reference_energy(self) -> float:
        return float(self.spectrum().mean_energy)

    def _table(self) -> dict[str, Any]:
        return {"type": self.type_name, "photons": plain(self.params["photons"])}

    def to_table(self, folder: Path) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError


@register("source", "monochromatic")
class Monochromatic(Source):
    def __init__(self, photons: Any = 1e4, energy: float = 60.0) -> None:
        super().__init__(photons)
        self.energy = energy

    @classmethod
    def from_table(cls, t: Table) -> Monochromatic:
        return cls(cls.read_photons(t), t.quantity("energy", "energy", 60.0, positive=True))

    def spectrum(self) -> Any:
        return Spectrum.monochromatic(self.energy)

    def to_table(self, folder: Path) -> dict[str, Any]:
        return self._table() | {"energy": self.energy}


@register("source", "tube")
class Tube(Source):
    def __init__(self, photons: Any, kvp: float, filtration: dict[str, float], energy_bin: float, model: str) -> None:
        super().__init__(photons)
        self.kvp, self.filtration, self.energy_bin, self.model = kvp, filtration, energy_bin, model
        self._spectrum: Any = None

    @classmethod
    def from_table(cls, t: Table) -> Tube:
        photons = cls.read_photons(t)
        kvp = t.quantity("kvp", "number", positive=True)
        f = t.table("filtration", None)
        filtration: dict[str, float] = {}
        if f is not None:
            for key in f.data:
                filtration[str(key)] = f.quantity(str(key), "length")
        tube = cls(
            photons,
            kvp,
            filtration,
            t.quantity("energy_bin", "energy", 1.0, positive=True),
            t.string("model", "kramers", ("kramers", "spekpy")),
        )
        try:
            tube.spectrum()
        except (ValueError, KeyError, ImportError) as err:
            t.fail("", f"invalid tube spectrum: {err}")
        return tube

    def spectrum(self) -> Any:
        if self._spectrum is None:
            self._spectrum = Spectrum.tube(self.kvp, self.filtration, self.energy_bin, self.model)
        return self._spectrum

    def to_table(self, folder: Path) -> dict[str, Any]:
        return self._table() | {
            "kvp": self.kvp,
            "filtration": dict(self.filtration),
            "energy_bin": self.energy_bin,
            "model": self.model,
        }


@register("source", "spectrum")
class Tabulated(Source):
    def __init__(self, photons: Any, energies: list[float], weights: list[float]) -> None:
        super().__init__(photons)
        self._spectrum = Spectrum(energies, weights)  # type: ignore[arg-type]

    @classmethod
    def from_table(cls, t: Table) -> Tabulated:
        photons = cls.read_photons(t)
        try:
            if t.has("file"):
                s = Spectrum.from_csv(t.file_path("file"))
                return cls(photons, s.energies.tolist(), s.weights.tolist())
            energies = t.array("energies", "energy")
            weights = t.array("weights", "number")
            return cls(photons, energies.reshape(-1).tolist(), weights.reshape(-1).tolist())
        except (ValueError, KeyError, FileNotFoundError) as err:
            t.fail("file" if t.has("file") else "energies", str(err))

    def spectrum(self) -> Any:
        return self._spectrum

    def to_table(self, folder: Path) -> dict[str, Any]:
        s = self._spectrum
        return self._table() | {"energies": s.energies.tolist(), "weights": s.weights.tolist()}
