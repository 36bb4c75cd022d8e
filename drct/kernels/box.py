"""The box (voxel) basis's forward projection and its exact transpose, on a padded copy of the volume.

The general :func:`drct.kernels.march.march` pays, per cell, for what every basis needs (integer cell
coordinates converted to floats for the face crossings, a mask per coefficient for the zero border, the
:class:`~drct.kernels.grid.Cell` fields). The box has one coefficient per cell, so its march carries less:

- the volume is copied once per call into an array with zero layers on every side
  (:func:`drct.kernels.padding.pad`): the knot grid's zero border and guard layers that a cell index pushed
  past the border by rounding lands in. No gather or scatter needs a mask, and the flat index is clamped to the
  array so that no rounding can read or write outside it;
- the cell is carried as float coordinates (exact integers) and a flat index, stepped together, so the face
  crossings ``(k + face) / d`` cost no conversion and the index no multiply;
- every axis whose face is reached steps at once (a ray through an edge or corner moves diagonally instead of
  spending an iteration on a zero-length segment; the box's weight there would be zero anyway).

Each ray's cells and lengths are those of :func:`~drct.kernels.march.march` (the forward gives the same bits),
and the adjoint walks the same cells with the same lengths, so it is the exact transpose of the forward. The
old degree-0 path stays in ``tests/march_reference.py`` as the reference twin (``tests/test_march.py``).

In 2D the forward steps one column of the ray's major axis per iteration (:func:`_columns`): with the slope at
most 1 the ray meets at most two cells of a column, so each step reads both (the second with a zero length where
the ray stays in one) and the loop runs once per column instead of once per cell (~1.44 cells per column over
uniform angles). The breakpoints and the order of the multiply-adds are the cell walk's, so the projections are
the same bits but where rounding puts two faces of the minor axis into one column (a slope within ulps of 1
through a corner): there an ulp-sized length goes to a neighbouring cell (``tests/test_box_columns.py``, the cell
walk as the reference twin). In float32 a step reads its two cells with one 64-bit gather from a copy that
holds every entry beside its neighbour across each face (:func:`pairs`; the same bits as two reads).
:class:`drct.transform.Transform` uses this module for ``A`` and ``A.T`` of the voxel basis; the derivative
passes keep the general march (they need the faces each ray crosses).

Example:
    >>> import drjit as dr, numpy as np, drct as ct
    >>> A = ct.Projector(ct.VolumeGeometry((4, 4)), ct.parallel([0.0], 3), basis="voxel")
    >>> A(np.ones((4, 4), np.float32)).tolist()  # three rays along x, each through four unit voxels
    [[4.0, 4.0, 4.0]]
"""

from __future__ import annotations

from typing import Any

import drjit as dr

from ..backend import Types
from . import scatter
from .grid import KnotGrid, Segments, first_cell, larger, smaller
from .padding import GUARD, padded_offset, padded_strides

PAIR_KINDS = 4
"""Pair copies the 2D column walk reads (:func:`pairs`): its minor axis 0 or 1, stepped forwards or backwards."""


def _walk(grid: KnotGrid, t: Types, segs: Segments, visit: Any, acc: Any, size: int) -> Any:
    """Walk every ray through its cells, calling ``acc = visit(acc, index, length)`` with the flat index of the
    cell in the padded copy and the segment length (mm)."""
    length = segs.length
    inv, face, step, jump = _axes(grid, t, segs)
    cell0, index0 = _start(grid, t, segs)
    width = dr.width(length)

    def cond(pos: Any, acc: Any, cell: list[Any], index: Any) -> Any:
        return pos < length

    def body(pos: Any, acc: Any, cell: list[Any], index: Any) -> tuple[Any, ...]:
        crossing = [(k + f) * i for k, f, i in zip(cell, face, inv, strict=True)]
        end = length
        for c in crossing:
            end = smaller(end, c)
        acc = visit(acc, dr.clip(index, 0, size - 1), larger(end - pos, 0.0))
        crossed = [c <= end for c in crossing]
        cell = [dr.select(x, k + s, k) for x, k, s in zip(crossed, cell, step, strict=True)]
        for x, j in zip(crossed, jump, strict=True):
            index = dr.select(x, index + j, index)
        return end, acc, cell, index

    state = (dr.zeros(t.Float, width), acc, [t.Float(k) for k in cell0], index0)
    return dr.while_loop(state, cond, body, label="drct_box")[1]


def _axes(grid: KnotGrid, t: Types, segs: Segments) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """Per axis, how a ray steps through the faces: ``1 / d`` (1 where ``d`` is 0), the offset ``face`` of the
    next face from the entry (its crossing is at ``(k + face) / d``; inf where ``d`` is 0), the cell step and the
    flat-index jump in the padded copy (both signed by the direction)."""
    forward = [d > 0 for d in segs.direction]
    still = [d == 0 for d in segs.direction]
    inv = [dr.select(z, 1.0, dr.rcp(d)) for z, d in zip(still, segs.direction, strict=True)]
    face = [
        dr.select(z, dr.inf, dr.select(f, 1.0, 0.0) - e) for z, f, e in zip(still, forward, segs.entry, strict=True)
    ]
    step = [dr.select(f, t.Float(1.0), t.Float(-1.0)) for f in forward]
    jump = [dr.select(f, t.Int(s), t.Int(-s)) for f, s in zip(forward, padded_strides(grid), strict=True)]
    return inv, face, step, jump


def _start(grid: KnotGrid, t: Types, segs: Segments) -> tuple[list[Any], Any]:
    """The cell each ray starts in (knot-grid coordinates) and its flat index in the padded copy (its sample's)."""
    cell0 = first_cell(grid, t, segs)
    index0 = t.Int(0)
    for k, s in zip(cell0, padded_strides(grid), strict=True):
        index0 = index0 + (k + GUARD) * s
    return cell0, index0 + padded_offset(grid, segs.offset)


def pairs(grid: KnotGrid, t: Types, padded: Any) -> Any:
    """Every entry of the 2D padded copies ``padded`` (float32) beside its neighbour across each face, one 64-bit
    word per pair, for :func:`_columns` to read both cells of a column with one gather instead of two.

    :data:`PAIR_KINDS` arrays of ``dr.width(padded)`` words, one after the other: kind ``2 a + b`` holds
    ``(v[i], v[i + s])`` in its low and high 32 bits, with ``s`` axis ``a``'s stride, negated where ``b`` is 1,
    and zero past the ends of ``padded`` (where the padded copies hold zeros too: their guard layers).

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.backend import types
        >>> from drct.kernels import padding
        >>> grid, t = KnotGrid.of(ct.VolumeGeometry((2, 2)), degree=0), types("float32")
        >>> padded = padding.pad(grid, t, t.Float([1.0, 2.0, 3.0, 4.0]))  # 8 x 8: 3 zero layers on every side
        >>> words = pairs(grid, t, padded).numpy().view(np.float32).reshape(PAIR_KINDS, -1, 2)
        >>> words[:, 3 * 8 + 3].tolist()  # the first coefficient beside its neighbours: +x, -x, +y, -y
        [[1.0, 2.0], [1.0, 0.0], [1.0, 3.0], [1.0, 0.0]]
    """
    size = dr.width(padded)
    words: Any = dr.uint64_array_t(t.UInt)
    k = dr.arange(t.UInt, PAIR_KINDS * size)
    kind = k // size
    i = k - kind * size
    strides = padded_strides(grid)
    s = dr.select(kind >= 2, t.Int(strides[1]), t.Int(strides[0]))
    j = t.Int(i) + dr.select((kind & 1) == 1, -s, s)
    low = dr.reinterpret_array(t.UInt, dr.gather(t.Float, padded, i))
    high = dr.reinterpret_array(t.UInt, dr.gather(t.Float, padded, t.UInt(j), (j >= 0) & (j < size)))
    out = words(low) | (words(high) << 32)
    dr.eval(out)
    return out


def _columns(grid: KnotGrid, t: Types, segs: Segments, padded: Any, paired: Any = None) -> Any:
    """:func:`project` in 2D, one column of each ray's major axis (the larger ``|direction|``) per iteration.

    A column ends where the ray reaches the major axis's next face or its end; the minor axis's next face, where
    it lies before that, splits the column between the current cell and its neighbour across the face, both read
    each step. Where the ray stays in one cell the neighbour's length is zero, and ``fma(g, 0, acc)`` is ``acc``:
    the sums are :func:`_walk`'s, term for term, with the same breakpoints (a face a ray's start was rounded
    across gives its cell a zero length, as there). A second minor face within one column needs a slope above 1,
    except at a corner, which the next step meets at its start and takes with a zero first length; where rounding
    still puts one there (a slope within ulps of 1, within ulps of a corner), the cell walk's ulp-sized third
    segment is added to the neighbour instead: ~1e-6 relative in float32 on such rays, 2e-14 in float64.

    ``paired``: :func:`pairs` of ``padded``, whose words each step reads instead of two entries of ``padded`` (the
    same values: the same bits)."""
    d, length = segs.direction, segs.length
    inv, face, step, jump = _axes(grid, t, segs)  # the cell walk's own: the same crossings, so the same bits
    cell0, index0 = _start(grid, t, segs)
    first = dr.abs(d[0]) >= dr.abs(d[1])  # axis 0 is the major one

    def major(v: list[Any]) -> Any:
        return dr.select(first, v[0], v[1])

    def minor(v: list[Any]) -> Any:
        return dr.select(first, v[1], v[0])

    k_major, k_minor = t.Float(major(cell0)), t.Float(minor(cell0))
    inv_major, inv_minor, face_major, face_minor = major(inv), minor(inv), major(face), minor(face)
    step_major, step_minor, jump_major, jump_minor = major(step), minor(step), major(jump), minor(jump)
    read, low, high = _column_reader(t, padded, paired, first, jump_minor)
    index0 = index0 + low

    def cond(pos: Any, acc: Any, k_major: Any, k_minor: Any, index: Any) -> Any:
        return pos < length

    def body(pos: Any, acc: Any, k_major: Any, k_minor: Any, index: Any) -> tuple[Any, ...]:
        t_major = (k_major + face_major) * inv_major
        t_minor = (k_minor + face_minor) * inv_minor
        end = smaller(length, t_major)
        mid = smaller(t_minor, end)
        crossed = t_minor <= end
        here, across = read(dr.clip(index, low, high))
        # zero where the ray spends no length there (no NaN from a cell it never enters, nor from one whose corner
        # it only touches, which the cell walk steps past diagonally); a select after an unmasked gather, which
        # can issue before the compare: as a gather mask it cost ~6% (CPU ms, minima of 15, 2D parallel 256²)
        across = dr.select(mid < end, across, 0.0)
        acc = dr.fma(across, end - mid, dr.fma(here, larger(mid - pos, 0.0), acc))
        index = dr.select(crossed, index + jump_minor, index) + jump_major
        k_minor = dr.select(crossed, k_minor + step_minor, k_minor)
        return end, acc, k_major + step_major, k_minor, index

    width = dr.width(length)
    state = (dr.zeros(t.Float, width), dr.zeros(t.Float, width), k_major, k_minor, index0)
    return dr.while_loop(state, cond, body, label="drct_box_columns")[1]


def _column_reader(t: Types, padded: Any, paired: Any, first: Any, jump_minor: Any) -> tuple[Any, Any, Any]:
    """How a column step reads its cell and the neighbour across the minor face: ``read(index)`` for the cell's
    index clamped to ``[low, high]``, and the per-ray ``low`` that the walk's index starts at (:func:`_columns`).
    Without ``paired`` two gathers from ``padded`` (the neighbour's index clamped as well); with it one word of
    the ray's pair kind (its minor axis and direction), whose array starts at ``low``."""
    last = dr.width(padded) - 1
    if paired is None:

        def read(index: Any) -> tuple[Any, Any]:
            here = dr.gather(t.Float, padded, t.UInt(index))
            return here, dr.gather(t.Float, padded, t.UInt(dr.clip(index + jump_minor, 0, last)))

        return read, t.Int(0), t.Int(last)
    words: Any = dr.uint64_array_t(t.UInt)
    kind = dr.select(first, t.Int(2), t.Int(0)) + dr.select(jump_minor < 0, t.Int(1), t.Int(0))  # minor axis 1 or 0
    low = kind * (last + 1)

    def read_word(index: Any) -> tuple[Any, Any]:
        word = dr.gather(words, paired, t.UInt(index))
        return dr.reinterpret_array(t.Float, t.UInt(word)), dr.reinterpret_array(t.Float, t.UInt(word >> 32))

    return read_word, low, low + last


def project(grid: KnotGrid, t: Types, segs: Segments, padded: Any, paired: Any = None) -> Any:
    """Line integrals along ``segs`` of the box-basis volume whose padded copy
    (:func:`drct.kernels.padding.pad`) is ``padded`` (2D: :func:`_columns`, reading :func:`pairs` ``paired`` of
    it where given; 3D: the cell walk)."""
    if grid.ndim == 2:
        return _columns(grid, t, segs, padded, paired)
    return project_cells(grid, t, segs, padded)


def project_cells(grid: KnotGrid, t: Types, segs: Segments, padded: Any) -> Any:
    """:func:`project` by the cell walk in any dimension (one cell per iteration): the 2D reference twin."""

    def visit(acc: Any, index: Any, length: Any) -> Any:
        return dr.fma(dr.gather(t.Float, padded, t.UInt(index)), length, acc)

    return _walk(grid, t, segs, visit, dr.zeros(t.Float, dr.width(segs.length)), dr.width(padded))


def backproject(grid: KnotGrid, t: Types, segs: Segments, values: Any, padded: Any, spread: bool = False) -> None:
    """Add the transpose of :func:`project` applied to ``values`` (one per ray) into the padded ``padded``."""
    mode = scatter.scatter_mode(padded, spread)

    def visit(acc: Any, index: Any, length: Any) -> Any:
        scatter.add(padded, values * length, t.UInt(index), True, mode)
        return acc

    _walk(grid, t, segs, visit, dr.zeros(t.Float, dr.width(segs.length)), dr.width(padded))
