"""The padded copy of a coefficient array that the marches read and write without masks.

A volume of degree ``n`` is surrounded by ``grid.pad`` zero coefficients on every side that are never stored
(:mod:`drct.kernels.march`): the general march masks each gather and scatter that falls outside the array. A
copy with :func:`layers` zero layers on each side holds that border and :data:`GUARD` more, so every index a march
reaches lies inside the copy and reads a zero there (what the mask gave) or writes into a layer that
:func:`crop_add` drops: :mod:`drct.kernels.box` for the box basis, the :class:`~drct.kernels.march.Window` of the
B-spline bases (``padded=True``). The marches still clamp each index to the copy, so that no rounding can read or
write outside it.

The guard: a march's cell may run one cell past the knot grid (a face crossing rounded before the ray's end), and a
B-spline window also reads the far face of the cell it would step into next (``n + 1`` coefficients past the
cell's first, or one before it where the ray runs backwards): from ``-pad - 2`` to ``N + pad + 1`` along an
axis of ``N`` coefficients, hence two layers beyond the border.

Example:
    >>> import drct as ct
    >>> from drct.kernels.grid import KnotGrid
    >>> grid = KnotGrid.of(ct.VolumeGeometry((4, 4)), degree=2)  # 4² coefficients, 2 zeros of border per side
    >>> layers(grid), padded_shape(grid), padded_size(grid)
    (4, (12, 12), 144)
"""

from __future__ import annotations

from typing import Any

import drjit as dr

from ..backend import Types
from . import scatter
from .grid import KnotGrid

GUARD = 2
"""Zero layers of the copy beyond the knot grid's own border, on each side."""


def layers(grid: KnotGrid) -> int:
    """Zero layers on each side of the copy: the grid's border and the guard."""
    return grid.pad + GUARD


def padded_shape(grid: KnotGrid) -> tuple[int, ...]:
    """Entries per axis of the padded copy (point axis order x, y[, z])."""
    return tuple(n + 2 * layers(grid) for n in grid.shape)


def padded_strides(grid: KnotGrid) -> tuple[int, ...]:
    """Flat-index step per axis of the padded copy (C order, first axis fastest)."""
    out, step = [], 1
    for n in padded_shape(grid):
        out.append(step)
        step *= n
    return tuple(out)


def padded_size(grid: KnotGrid) -> int:
    """Entries in one padded copy."""
    size = 1
    for n in padded_shape(grid):
        size *= n
    return size


def padded_offset(grid: KnotGrid, offset: Any) -> Any:
    """The start of a ray's volume in a batch of padded copies, from its start ``offset`` in the unpadded batch
    (``0`` for a single volume)."""
    return offset if isinstance(offset, int) and offset == 0 else (offset // grid.size) * padded_size(grid)


def interior(grid: KnotGrid, t: Types, batch: int) -> Any:
    """Flat index in the padded copies of every coefficient of ``batch`` volumes, in their flat order."""
    index = dr.arange(t.UInt, grid.size * batch)
    sample = index // grid.size
    rest = index - sample * grid.size
    out = sample * padded_size(grid)
    for n, stride in zip(grid.shape, padded_strides(grid), strict=True):
        k = rest % n
        rest = rest // n
        out = out + (k + layers(grid)) * stride
    return out


def pad(grid: KnotGrid, t: Types, coeffs: Any, batch: int = 1) -> Any:
    """The padded copy of ``batch`` flat coefficient arrays (zeros around each)."""
    padded = zeros(grid, t, batch)
    dr.scatter(padded, coeffs, interior(grid, t, batch))
    return padded


def zeros(grid: KnotGrid, t: Types, batch: int = 1) -> Any:
    """A zero padded copy of ``batch`` volumes (an even number of entries: see :func:`~drct.kernels.scatter.add`)."""
    return scatter.even_zeros(t.Float, padded_size(grid) * batch)


def crop_add(grid: KnotGrid, t: Types, padded: Any, target: Any, batch: int = 1) -> Any:
    """``target`` plus the interior of the padded copies (what a march scattered into the border is dropped)."""
    return target + dr.gather(t.Float, padded, interior(grid, t, batch))
