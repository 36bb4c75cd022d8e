"""Cylindrical multi-ring PET scanners: where the crystals are.

Crystal ``c`` of ring ``r`` (flat index ``r * crystals_per_ring + c``) has its face centre at
``(R cos θ_c, R sin θ_c, z_r)`` with ``θ_c = 2π c / N + phase`` and ``z_r = (r - (rings - 1) / 2) · ring_spacing``
(mm, the volume's axes: ``z`` along the scanner axis, centred on the origin). A line of response (LOR) joins the
face centres of two crystals (use a ``radius`` that includes the mean depth of interaction if you want it).

Example:
    >>> import drct as ct
    >>> sc = ct.pet.scanner(rings=4, crystals_per_ring=64, radius=150.0, crystal_size=(4.0, 4.0))
    >>> sc.num_crystals, sc.positions().shape, sc.axial_length
    (256, (256, 3), 16.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import require_finite


@dataclass(frozen=True)
class Scanner:
    """A cylindrical scanner of ``rings`` rings of ``crystals_per_ring`` crystals (see the module docstring).

    Attributes:
        rings: number of crystal rings.
        crystals_per_ring: crystals per ring (even: the sinogram pairs opposite halves of the ring).
        radius: distance (mm) from the axis to the crystal faces.
        crystal_size: ``(axial, transaxial)`` crystal face size in mm.
        ring_spacing: axial distance between ring centres (mm), at least the axial crystal size.
        phase: angle (radians) of crystal 0.

    Example:
        >>> import drct as ct
        >>> ct.pet.scanner(rings=2, crystals_per_ring=16, radius=40.0)  # a Scanner
        Scanner(2 rings x 16 crystals, radius 40 mm, crystal 4 x 4 mm, ring spacing 4 mm)
    """

    rings: int
    crystals_per_ring: int
    radius: float
    crystal_size: tuple[float, float]
    ring_spacing: float
    phase: float = 0.0

    @property
    def num_crystals(self) -> int:
        return self.rings * self.crystals_per_ring

    @property
    def axial_length(self) -> float:
        """Axial extent of the crystal faces (mm)."""
        return (self.rings - 1) * self.ring_spacing + self.crystal_size[0]

    def positions(self) -> np.ndarray:
        """``(num_crystals, 3)`` float64 face centres ``(x, y, z)`` in mm, flat crystal index order."""
        n = self.crystals_per_ring
        theta = 2.0 * np.pi * np.arange(n) / n + self.phase
        z = (np.arange(self.rings) - (self.rings - 1) / 2) * self.ring_spacing
        xy = self.radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)
        out = np.empty((self.rings, n, 3))
        out[:, :, :2] = xy[None]
        out[:, :, 2] = z[:, None]
        return out.reshape(-1, 3)

    def ring_and_crystal(self, crystal: Any) -> tuple[np.ndarray, np.ndarray]:
        """Ring and in-ring index of flat crystal indices (checked)."""
        c = np.asarray(crystal)
        if not np.issubdtype(c.dtype, np.integer):
            raise TypeError(f"crystal indices must be integers, got dtype {c.dtype}")
        if c.size and (c.min() < 0 or c.max() >= self.num_crystals):
            raise ValueError(
                f"crystal indices must lie in [0, {self.num_crystals}) for {self!r}, got range [{c.min()}, {c.max()}]"
            )
        c = c.astype(np.int64)
        return c // self.crystals_per_ring, c % self.crystals_per_ring

    def __repr__(self) -> str:
        return (
            f"Scanner({self.rings} rings x {self.crystals_per_ring} crystals, radius {self.radius:g} mm, "
            f"crystal {self.crystal_size[0]:g} x {self.crystal_size[1]:g} mm, ring spacing {self.ring_spacing:g} mm)"
        )


def _count(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"pet.scanner: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def scanner(
    rings: int,
    crystals_per_ring: int,
    radius: float,
    crystal_size: Any = (4.0, 4.0),
    ring_spacing: float | None = None,
    phase: float = 0.0,
) -> Scanner:
    """A cylindrical multi-ring PET scanner.

    Args:
        rings: number of rings (>= 1).
        crystals_per_ring: crystals per ring (even, >= 4).
        radius: axis-to-crystal-face distance in mm.
        crystal_size: ``(axial, transaxial)`` face size in mm, or one number for both; the transaxial size must
            fit the ring (``crystals_per_ring · size <= 2π radius``).
        ring_spacing: axial pitch of the rings in mm (default: the axial crystal size, no gap).
        phase: angle of crystal 0 in radians.

    Example:
        >>> import drct as ct
        >>> sc = ct.pet.scanner(rings=2, crystals_per_ring=8, radius=50.0, crystal_size=10.0)
        >>> sc.positions()[2].round(6).tolist()  # ring 0, crystal 2: a quarter turn
        [0.0, 50.0, -5.0]
    """
    rings = _count(rings, "rings", 1)
    n = _count(crystals_per_ring, "crystals_per_ring", 4)
    if n % 2:
        raise ValueError(f"pet.scanner: crystals_per_ring must be even (got {n}): sinograms pair opposite crystals")
    size = np.broadcast_to(np.asarray(crystal_size, dtype=np.float64), (2,))
    numbers = np.array([radius, *size, phase if ring_spacing is None else ring_spacing, phase], dtype=np.float64)
    require_finite(numbers, "pet.scanner radius / crystal_size / ring_spacing / phase")
    if not radius > 0 or np.any(size <= 0):
        raise ValueError(f"pet.scanner: radius and crystal_size must be > 0 mm, got {radius!r} and {crystal_size!r}")
    if n * size[1] > 2 * math.pi * radius * (1 + 1e-9):
        raise ValueError(
            f"pet.scanner: {n} crystals of {size[1]:g} mm do not fit a ring of radius {radius:g} mm "
            f"(circumference {2 * math.pi * radius:.6g} mm)"
        )
    spacing = float(size[0]) if ring_spacing is None else float(ring_spacing)
    if spacing < size[0] * (1 - 1e-9):
        raise ValueError(
            f"pet.scanner: ring_spacing ({spacing:g} mm) is smaller than the axial crystal size {size[0]:g}"
        )
    return Scanner(rings, n, float(radius), (float(size[0]), float(size[1])), spacing, float(phase))
