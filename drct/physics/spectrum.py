"""X-ray source spectra: photon weights per energy bin (keV).

A :class:`Spectrum` is a set of energy-bin centres (keV) and the fraction of the source's photons in each bin
(normalised to sum to 1). Build one from a table (a scene file), a two-column CSV file, a single energy, or an X-ray
tube model (:meth:`Spectrum.tube`):

- ``model="kramers"`` (default, always available, deterministic): Kramers' law for a thick target, photon fluence
  per keV ∝ (kVp − E)/E, times the transmission ``exp(−μ(E) t)`` of each filter (drct's material tables).
  Characteristic lines are ignored; good for beam-hardening studies, not for dosimetry.
- ``model="spekpy"``: the SpekPy toolkit (Poludniowski et al., Med. Phys. 48 (2021) 3630), which includes the
  tungsten characteristic lines, anode self-filtration and heel effect. Needs ``pip install spekpy`` (~200 MB).

Example:
    >>> from drct.physics import Spectrum
    >>> s = Spectrum.tube(80.0, filtration={"aluminium": 2.5})
    >>> bool(40 < s.mean_energy < 55), float(round(s.weights.sum(), 6))
    (True, 1.0)
    >>> Spectrum.monochromatic(60.0).mean_energy
    60.0
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..extras import require
from .materials import get_material

_SPEKPY_NAMES = {"aluminium": "Al", "aluminum": "Al", "copper": "Cu", "titanium": "Ti", "iron": "Fe", "lead": "Pb"}


@dataclass(frozen=True, eq=False)
class Spectrum:
    """Photon weights per energy bin.

    Attributes:
        energies: Bin centres in keV, positive and strictly increasing, shape ``(n,)``.
        weights: Fraction of the photons in each bin, non-negative; normalised to sum to 1 on construction.

    Example:
        >>> from drct import physics
        >>> physics.Spectrum.tube(80.0, {"aluminium": 2.0})  # an 80 kVp tube behind 2 mm of aluminium
        Spectrum(76 bins, 5-79.75 keV, mean 39 keV)
        >>> physics.Spectrum.monochromatic(60.0).mean_energy
        60.0
    """

    energies: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        e = np.atleast_1d(np.asarray(self.energies, dtype=np.float64))
        w = np.atleast_1d(np.asarray(self.weights, dtype=np.float64))
        if e.ndim != 1 or e.shape != w.shape or len(e) == 0:
            raise ValueError(
                f"spectrum energies and weights must be 1-D arrays of the same non-zero length, got shapes "
                f"{e.shape} and {w.shape}"
            )
        if not np.all(np.isfinite(e) & (e > 0)) or np.any(np.diff(e) <= 0):
            raise ValueError(f"spectrum energies must be positive, finite and strictly increasing (keV), got {e}")
        if not np.all(np.isfinite(w) & (w >= 0)) or w.sum() <= 0:
            raise ValueError("spectrum weights must be non-negative and finite with a positive sum")
        object.__setattr__(self, "energies", e)
        object.__setattr__(self, "weights", w / w.sum())

    def __repr__(self) -> str:
        return (
            f"Spectrum({len(self.energies)} bins, {self.energies[0]:g}-{self.energies[-1]:g} keV, "
            f"mean {self.mean_energy:.3g} keV)"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Spectrum):
            return NotImplemented
        return np.array_equal(self.energies, other.energies) and np.array_equal(self.weights, other.weights)

    __hash__ = None  # type: ignore[assignment]

    @property
    def mean_energy(self) -> float:
        """Photon-weighted mean energy in keV."""
        return float(np.sum(self.energies * self.weights))

    @property
    def is_monochromatic(self) -> bool:
        """True for a single energy."""
        return len(self.energies) == 1

    def as_table(self) -> dict[str, list[float]]:
        """``{"energies": [...], "weights": [...]}``, plain lists (for scene files)."""
        return {"energies": self.energies.tolist(), "weights": self.weights.tolist()}

    @classmethod
    def monochromatic(cls, energy_kev: float) -> Spectrum:
        """All photons at one energy (keV)."""
        return cls(np.array([float(energy_kev)]), np.array([1.0]))

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Spectrum:
        """From ``{"energies": [...], "weights": [...]}`` (keV, relative photon counts)."""
        missing = {"energies", "weights"} - set(table)
        if missing:
            raise KeyError(f"spectrum table needs keys 'energies' and 'weights'; missing {sorted(missing)}")
        return cls(np.asarray(table["energies"], dtype=np.float64), np.asarray(table["weights"], dtype=np.float64))

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> Spectrum:
        """From a CSV file of two columns, energy (keV) and relative photon count.

        Lines starting with ``#`` and a non-numeric header line are skipped; commas, semicolons or whitespace
        separate the columns.
        """
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"spectrum file {str(p)!r} does not exist")
        rows: list[tuple[float, float]] = []
        with p.open(newline="") as fh:
            for n, line in enumerate(fh, start=1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                fields = next(csv.reader([text.replace(";", ",")])) if "," in text or ";" in text else text.split()
                try:
                    values = [float(f) for f in fields if f.strip()]
                except ValueError:
                    if rows:
                        raise ValueError(f"{p}: line {n}: expected two numbers, got {text!r}") from None
                    continue  # header
                if len(values) != 2:
                    raise ValueError(f"{p}: line {n}: expected two columns (energy keV, weight), got {text!r}")
                rows.append((values[0], values[1]))
        if not rows:
            raise ValueError(f"{p}: no spectrum rows found (expected 'energy_keV, weight' lines)")
        table = np.array(rows)
        try:
            return cls(table[:, 0], table[:, 1])
        except ValueError as err:
            raise ValueError(f"{p}: {err}") from None

    @classmethod
    def tube(
        cls,
        kvp: float,
        filtration: Mapping[str, float] | None = None,
        energy_bin: float = 1.0,
        model: str = "kramers",
        anode_angle: float = 12.0,
        min_energy: float = 5.0,
    ) -> Spectrum:
        """A tungsten-anode X-ray tube spectrum.

        Args:
            kvp: Tube voltage in kV (the maximum photon energy in keV), 10 to 200.
            filtration: Filter thickness in mm per material name, e.g. ``{"aluminium": 2.5, "copper": 0.1}``.
            energy_bin: Bin width in keV.
            model: ``"kramers"`` (built in) or ``"spekpy"`` (needs ``pip install spekpy``).
            anode_angle: Anode angle in degrees (``spekpy`` only).
            min_energy: Lowest bin centre in keV (softer photons never reach a detector through any filter).
        """
        if not (np.isfinite(kvp) and 10.0 <= kvp <= 200.0):
            raise ValueError(f"tube voltage kvp must be between 10 and 200 kV, got {kvp!r}")
        if not (np.isfinite(energy_bin) and 0 < energy_bin <= kvp / 4):
            raise ValueError(f"energy_bin must be positive and at most kvp/4 keV, got {energy_bin!r}")
        filtration = dict(filtration or {})
        for name, mm in filtration.items():
            if not (np.isfinite(mm) and mm >= 0):
                raise ValueError(f"filter thickness for {name!r} must be >= 0 mm, got {mm!r}")
        edges = np.arange(max(1.0, min_energy - energy_bin / 2), kvp, energy_bin)
        edges = np.append(edges[edges < kvp - 1e-6 * energy_bin], kvp)  # the last bin ends at kVp
        centres, widths = 0.5 * (edges[:-1] + edges[1:]), np.diff(edges)
        if model == "kramers":
            weights = widths * np.maximum(kvp - centres, 0.0) / centres
            for name, mm in filtration.items():
                weights = weights * np.exp(-get_material(name).mu(centres) * mm)
        elif model == "spekpy":
            weights = widths * _spekpy(kvp, filtration, centres, energy_bin, anode_angle)
        else:
            raise ValueError(f"spectrum model must be 'kramers' or 'spekpy', got {model!r}")
        keep = weights > 0
        return cls(centres[keep], weights[keep])


def _spekpy(kvp: float, filtration: Mapping[str, float], centres: np.ndarray, dk: float, angle: float) -> np.ndarray:
    spekpy = require("spekpy", "Spectrum.tube(model='spekpy')")
    spek = spekpy.Spek(kvp=float(kvp), th=float(angle), dk=float(dk))
    for name, mm in filtration.items():
        spek.filter(_SPEKPY_NAMES.get(name.lower(), name), float(mm))
    energies, fluence = spek.get_spectrum()
    return np.interp(centres, np.asarray(energies), np.asarray(fluence), left=0.0, right=0.0)
