"""Materials with energy-dependent X-ray attenuation.

A :class:`Material` holds a density (g/cm³) and its total mass attenuation coefficient μ/ρ(E) (cm²/g, coherent
scattering included) on an energy grid in keV; :meth:`Material.mu` gives the linear attenuation coefficient in
**1/mm** (drct's unit), interpolated log-log between grid points.

Built-ins (``material_names()``): air, water, pmma, bone (ICRU-44 cortical bone), hydroxyapatite, aluminium,
titanium, iron, steel (AISI 304), copper, lead — tabulated from 1 to 200 keV in 1 keV steps in ``_tables.py``,
generated from the ``xraydb`` database (Elam, Ravel & Sieber 2002; compositions from NIST SRD 126). See
``drct/physics/make_tables.py`` for sources. Absorption edges are resolved to the 1 keV grid. Other compounds:
:meth:`Material.from_formula` (needs ``pip install xraydb``).

Example:
    >>> from drct.physics import get_material
    >>> water = get_material("water")
    >>> round(float(water.mu(60.0)[0]), 4)  # 1/mm at 60 keV (NIST XCOM: 0.02059)
    0.0206
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..extras import require
from . import _tables


@dataclass(frozen=True, eq=False)
class Material:
    """An attenuating material.

    Attributes:
        name: Identifier (used as the key of per-material path lengths).
        density: Mass density in g/cm³ (> 0).
        energies: Energy grid in keV, strictly increasing, shape ``(n,)``.
        mass_attenuation: μ/ρ in cm²/g at ``energies``, positive, shape ``(n,)``.

    Example:
        >>> from drct import physics
        >>> foam = physics.Material("doc_foam", 0.1, energies=[10.0, 100.0], mass_attenuation=[5.0, 0.2])
        >>> foam.mu([10.0]).round(4)  # 1/mm: μ/ρ (cm²/g) x ρ (g/cm³) / 10
        array([0.05])
    """

    name: str
    density: float
    energies: np.ndarray = field(repr=False)
    mass_attenuation: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        energies = np.asarray(self.energies, dtype=np.float64)
        mass = np.asarray(self.mass_attenuation, dtype=np.float64)
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"material name must be a non-empty string, got {self.name!r}")
        if not (np.isfinite(self.density) and self.density > 0):
            raise ValueError(
                f"material {self.name!r}: density must be a positive number (g/cm^3), got {self.density!r}"
            )
        if energies.ndim != 1 or energies.shape != mass.shape or len(energies) < 2:
            raise ValueError(
                f"material {self.name!r}: energies and mass_attenuation must be 1-D arrays of the same length >= 2, "
                f"got shapes {energies.shape} and {mass.shape}"
            )
        if not (np.all(np.diff(energies) > 0) and energies[0] > 0):
            raise ValueError(f"material {self.name!r}: energies must be positive and strictly increasing (keV)")
        if not np.all(np.isfinite(mass) & (mass > 0)):
            raise ValueError(f"material {self.name!r}: mass_attenuation must be positive and finite (cm^2/g)")
        object.__setattr__(self, "energies", energies)
        object.__setattr__(self, "mass_attenuation", mass)
        object.__setattr__(self, "density", float(self.density))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Material):
            return NotImplemented
        return (
            self.name == other.name
            and self.density == other.density
            and np.array_equal(self.energies, other.energies)
            and np.array_equal(self.mass_attenuation, other.mass_attenuation)
        )

    def __hash__(self) -> int:  # usable as a key of per-material path lengths
        return hash((self.name, self.density, len(self.energies)))

    def mass_mu(self, energy_kev: Any) -> np.ndarray:
        """μ/ρ in cm²/g at ``energy_kev`` (log-log interpolation; raises outside the tabulated range)."""
        e = np.atleast_1d(np.asarray(energy_kev, dtype=np.float64))
        lo, hi = self.energies[0], self.energies[-1]
        if np.any(~np.isfinite(e)) or np.any(e < lo * (1 - 1e-12)) or np.any(e > hi * (1 + 1e-12)):
            raise ValueError(
                f"material {self.name!r}: energies must lie in [{lo:g}, {hi:g}] keV, got [{np.min(e):g}, {np.max(e):g}]"
            )
        return np.exp(np.interp(np.log(e), np.log(self.energies), np.log(self.mass_attenuation)))

    def mu(self, energy_kev: Any) -> np.ndarray:
        """Linear attenuation coefficient in 1/mm at ``energy_kev`` (keV)."""
        return self.mass_mu(energy_kev) * self.density / 10.0

    def with_density(self, density: float) -> Material:
        """The same composition at another density (g/cm³)."""
        return Material(self.name, density, self.energies, self.mass_attenuation)

    @classmethod
    def from_formula(
        cls, name: str, formula: str, density: float, energies_kev: Any = _tables.ENERGIES_KEV
    ) -> Material:
        """A compound from its chemical formula, tabulated with ``xraydb`` (``pip install xraydb``).

        Args:
            name: Identifier of the new material.
            formula: Chemical formula by atom count, e.g. ``"CaCO3"`` or ``"SiO2"``.
            density: g/cm³.
            energies_kev: Grid to tabulate on (keV); default 1..200 keV.
        """
        xraydb = require("xraydb", "Material.from_formula")
        grid = _grid(energies_kev)
        try:
            mu_cm = np.asarray(xraydb.material_mu(formula, grid * 1e3, density=float(density)))
        except Exception as err:
            raise ValueError(f"material {name!r}: cannot parse chemical formula {formula!r} ({err})") from err
        return cls(name, density, grid, mu_cm / float(density))


def _grid(spec: Any) -> np.ndarray:
    if isinstance(spec, str):
        start, stop, count = spec.split()
        return np.linspace(float(start), float(stop), int(count))
    return np.asarray(spec, dtype=np.float64)


def _builtin(name: str) -> Material:
    density, chunks = _tables.TABLES[name]
    values = np.array("".join(chunks).split(), dtype=np.float64)
    return Material(name, density, _grid(_tables.ENERGIES_KEV), values)


_REGISTRY: dict[str, Material] = {}
_ALIASES = {"aluminum": "aluminium", "al": "aluminium", "fe": "iron", "cu": "copper", "pb": "lead", "ti": "titanium"}


def material_names() -> list[str]:
    """Names accepted by :func:`get_material` (built-ins and registered materials).

    Example:
        >>> from drct import physics
        >>> {"water", "aluminium", "bone"} <= set(physics.material_names())
        True
    """
    return sorted(set(_tables.TABLES) | set(_REGISTRY))


def register_material(material: Material, overwrite: bool = False) -> None:
    """Make ``material`` available to :func:`get_material` (and scene files) under ``material.name``.

    Example:
        >>> from drct import physics
        >>> foam = physics.Material("doc_foam", 0.1, energies=[10.0, 100.0], mass_attenuation=[5.0, 0.2])
        >>> physics.register_material(foam, overwrite=True)
        >>> physics.get_material("doc_foam").density
        0.1
    """
    key = material.name.lower()
    if not overwrite and (key in _REGISTRY or key in _tables.TABLES):
        raise ValueError(f"material {material.name!r} is already defined; pass overwrite=True to replace it")
    _REGISTRY[key] = material


def get_material(material: str | Material, density: float | None = None) -> Material:
    """A material by name (case-insensitive; ``"aluminum"`` works too), optionally at another density.

    Raises:
        KeyError: for an unknown name (the message lists the known ones).

    Example:
        >>> from drct import physics
        >>> water = physics.get_material("water")
        >>> water.mu(60.0).round(4), physics.get_material("Aluminum").name  # 1/mm at 60 keV
        (array([0.0206]), 'aluminium')
    """
    if isinstance(material, Material):
        found = material
    elif isinstance(material, str):
        key = _ALIASES.get(material.lower(), material.lower())
        if key in _REGISTRY:
            found = _REGISTRY[key]
        elif key in _tables.TABLES:
            found = _builtin(key)
            _REGISTRY.setdefault(key, found)
        else:
            raise KeyError(f"unknown material {material!r}; known materials: {', '.join(material_names())}")
    else:
        raise TypeError(f"material must be a name or a Material, got {type(material).__name__}")
    return found if density is None else found.with_density(density)
