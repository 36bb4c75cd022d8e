"""Where the volume array sits in space."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..units import length
from ._checks import as_positive, finite_vector


@dataclass(frozen=True, init=False)
class VolumeGeometry:
    """A regular grid of coefficients (voxels or B-spline coefficients) in millimetres.

    Arrays are indexed (z, y, x) in 3D and (y, x) in 2D; every index increases along its axis. Points are
    written (x, y, z). Coefficient ``[k_z, k_y, k_x]`` sits at
    ``center + (k - (shape - 1) / 2) * voxel_size`` (per axis); for the ``voxel`` basis it is the centre of a
    box of side ``voxel_size``.

    Args:
        shape: ``(nz, ny, nx)`` or ``(ny, nx)``.
        voxel_size: one size for all axes, or one per array axis, in array order ``(z, y, x)``/``(y, x)`` (mm,
            or a pint length: :mod:`drct.units`).
        center: the point at the middle of the grid, ``(x, y, z)`` or ``(x, y)`` (mm or a pint length); default
            the origin.

    Example:
        >>> import drct as ct
        >>> vg = ct.VolumeGeometry((64, 128, 128), voxel_size=0.5)
        >>> vg.extent_min, vg.extent_max
        ((-32.0, -32.0, -16.0), (32.0, 32.0, 16.0))
    """

    shape: tuple[int, ...]
    voxel_size: tuple[float, ...]
    center: tuple[float, ...]

    def __init__(
        self,
        shape: Sequence[int],
        voxel_size: float | Sequence[float] = 1.0,
        center: Sequence[float] | None = None,
    ) -> None:
        try:
            if isinstance(shape, (str, bytes)) or any(isinstance(n, (bool, np.bool_)) for n in shape):
                raise TypeError
            dims = tuple(int(n) for n in shape)
        except (TypeError, ValueError, OverflowError):
            raise TypeError(f"shape must be a sequence of 2 or 3 integers, got {shape!r}") from None
        if len(dims) not in (2, 3) or any(n != s for n, s in zip(dims, shape, strict=True)):
            raise ValueError(f"shape must be (nz, ny, nx) or (ny, nx) integers, got {tuple(shape)!r}")
        if any(n < 1 for n in dims):
            raise ValueError(f"shape entries must be >= 1, got {dims}")
        sizes = as_positive(length(voxel_size, "voxel_size"), len(dims), "voxel_size")
        if center is None:
            center = (0.0,) * len(dims)
        mid = finite_vector(length(center, "center"), len(dims), "center")
        object.__setattr__(self, "shape", dims)
        object.__setattr__(self, "voxel_size", tuple(float(s) for s in sizes))
        object.__setattr__(self, "center", tuple(float(c) for c in mid))

    @property
    def ndim(self) -> int:
        """2 or 3."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of coefficients."""
        return int(np.prod(self.shape))

    @property
    def spacing_xyz(self) -> tuple[float, ...]:
        """Voxel size in point order (x, y[, z])."""
        return self.voxel_size[::-1]

    @property
    def shape_xyz(self) -> tuple[int, ...]:
        """Number of coefficients along x, y[, z]."""
        return self.shape[::-1]

    @property
    def first_center(self) -> tuple[float, ...]:
        """Point (x, y[, z]) of coefficient index 0."""
        return tuple(c - (n - 1) / 2 * h for c, n, h in zip(self.center, self.shape_xyz, self.spacing_xyz, strict=True))

    @property
    def extent_min(self) -> tuple[float, ...]:
        """Lower corner (x, y[, z]) of the voxel boxes."""
        return tuple(c - n / 2 * h for c, n, h in zip(self.center, self.shape_xyz, self.spacing_xyz, strict=True))

    @property
    def extent_max(self) -> tuple[float, ...]:
        """Upper corner (x, y[, z]) of the voxel boxes."""
        return tuple(c + n / 2 * h for c, n, h in zip(self.center, self.shape_xyz, self.spacing_xyz, strict=True))

    def coordinates(self) -> list[np.ndarray]:
        """Coordinates of the coefficient centres along each point axis (x, y[, z]), 1D arrays."""
        return [
            c0 + h * np.arange(n) for c0, h, n in zip(self.first_center, self.spacing_xyz, self.shape_xyz, strict=True)
        ]
