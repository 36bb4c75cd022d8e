"""Zero padding of a coefficient array by ``width`` on every side, and its transpose (cropping)."""

from __future__ import annotations

from typing import Any

import drjit as dr

from ..backend import Types


def _padded_index(shape_xyz: tuple[int, ...], width: int, t: Types) -> Any:
    """Flat index, in the padded array, of every entry of the unpadded one (C order, x fastest)."""
    index = dr.arange(t.UInt, 0, int(dr.prod(shape_xyz)))
    flat = dr.zeros(t.UInt, dr.width(index))
    stride_out = 1
    for n in shape_xyz:
        coord = index % n
        index = index // n
        flat += (coord + width) * stride_out
        stride_out *= n + 2 * width
    return flat


def pad(values: Any, shape_xyz: tuple[int, ...], width: int, t: Types) -> Any:
    """Flat ``values`` (x fastest) surrounded by ``width`` zeros on each side of each axis."""
    if width == 0:
        return values
    size = 1
    for n in shape_xyz:
        size *= n + 2 * width
    out = dr.zeros(t.Float, size)
    dr.scatter(out, values, _padded_index(shape_xyz, width, t))
    return out


def crop(padded: Any, shape_xyz: tuple[int, ...], width: int, t: Types) -> Any:
    """The inverse of :func:`pad` on the interior (the transpose of ``pad``)."""
    if width == 0:
        return padded
    return dr.gather(t.Float, padded, _padded_index(shape_xyz, width, t))
