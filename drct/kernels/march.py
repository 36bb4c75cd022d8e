"""The exact line integral of a B-spline volume: a DDA over the knot grid with Gauss–Legendre quadrature.

Coordinates: a volume of degree ``n`` is treated as surrounded by ``P = max(n, 1)`` zeros on every side (masked
on the volume itself, or stored in a padded copy: :mod:`drct.kernels.padding`). A point ``p`` (mm) has knot
coordinates ``w = (p - first_center) / h + shift`` with ``shift = (n + 1) / 2`` (``1.5`` for the box). In ``w``
the cells ``k = floor(w)`` of the knot grid fill the box ``[0, cells]`` (``cells = N + n``, or ``N + 2`` for the
box, whose outer cells are the zero border) and cell ``k`` is touched by the coefficients ``k - P .. k - P + n``,
those outside the array being zero. Inside a cell the volume is a polynomial of degree ``n`` per axis, so
``ceil((ndim * n + 1) / 2)`` Gauss–Legendre nodes integrate it — and ``t`` times its gradient — exactly.

One march serves every operator: the forward projection gathers each cell's ``(n + 1)^ndim`` coefficients once
and weights them; the adjoint scatters the same weights times the ray's value (so it is the exact transpose);
the ray derivatives (:mod:`drct.kernels.derivatives`) integrate the gradient of the volume along the ray to
give ``dy/do`` and ``dy/dd`` for the ray origin ``o`` and direction ``d``. The knot grid, the rays clipped to it
and the cell a march visits live in :mod:`drct.kernels.grid`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from itertools import product
from typing import Any

import drjit as dr

from ..backend import Types
from ..geometry.ray_arrays import Vec
from ..volume import bspline_scaled_segments
from . import padding, scatter
from .grid import Cell, KnotGrid, Segments, first_cell, larger, smaller


def oriented(cell: Cell, flip: list[Any] | None) -> tuple[Vec, Vec]:
    """The segment's start and direction in the cell, with the axes where ``flip`` is true taken at ``1 - x``:
    uniform B-splines are symmetric (segment ``n - j`` at ``x`` is segment ``j`` at ``1 - x``), so evaluating
    there reverses that axis's coefficient order without selecting each weight."""
    if flip is None:
        return cell.local, cell.direction
    starts = [dr.select(f, 1.0 - s, s) for f, s in zip(flip, cell.local, strict=True)]
    slopes = [dr.select(f, -d, d) for f, d in zip(flip, cell.direction, strict=True)]
    return starts, slopes


def add_node_weights(total: list[Any] | None, per_axis: list[list[Any]], scale: Any) -> list[Any]:
    """``total + scale * Π_a per_axis[a][j_a]`` for every coefficient, in the order of ``grid.offsets`` (the
    first axis slowest); ``scale`` rides on the first axis's values (one product per coefficient)."""
    products = [scale * v for v in per_axis[0]]
    for values in per_axis[1:-1]:
        products = [p * v for p in products for v in values]
    pairs = [(p, v) for p in products for v in per_axis[-1]]
    if total is None:
        return [p * v for p, v in pairs]
    return [dr.fma(p, v, a) for (p, v), a in zip(pairs, total, strict=True)]


def node_bases(grid: KnotGrid, cell: Cell, flip: list[Any] | None) -> Iterator[tuple[float, Any, Vec, list[list[Any]]]]:
    """Per Gauss–Legendre node of the segment: its weight divided by ``(n!)^ndim`` (a constant), its distance
    from the segment start (mm), its in-cell position (oriented: see :func:`oriented`) and per axis the basis
    values there times ``n!`` (:func:`~drct.volume.bspline_scaled_segments`: the kernels multiply the weight
    back in once per node)."""
    n = grid.degree
    starts, slopes = oriented(cell, flip)
    unscale = 1.0 / math.factorial(n) ** grid.ndim
    for xi, omega in zip(grid.nodes, grid.weights, strict=True):
        along = cell.length * xi
        x = [dr.fma(along, d, s) for s, d in zip(starts, slopes, strict=True)]
        yield omega * unscale, along, x, [bspline_scaled_segments(n, v) for v in x]


def cell_weights(
    grid: KnotGrid, cell: Cell, flip: list[Any] | None = None, total: list[Any] | None = None
) -> list[Any]:
    """Exact integrals over the segment of each cell coefficient's basis function (order of ``grid.offsets``;
    along axes where ``flip`` is true, the coefficient order of that axis is reversed: see :func:`oriented`),
    added to ``total`` if given."""
    if grid.degree == 0:
        return [cell.length] if total is None else [total[0] + cell.length]
    for omega, _, _, per_axis in node_bases(grid, cell, flip):
        total = add_node_weights(total, per_axis, omega * cell.length)
    assert total is not None
    return total


def contract_cell(grid: KnotGrid, cell: Cell, window: list[Any], flip: list[Any]) -> Any:
    """``Σ_c window[c] · ∫ β_c`` over the segment: the forward projection's share of one cell, sum-factorised.

    The same exact Gauss–Legendre integral as ``Σ window · cell_weights(...)``, contracted one axis at a time at
    each node (``(n + 1)^d + ... + (n + 1)`` multiply-adds instead of ``2 (n + 1)^d``); a reversed axis is
    evaluated at ``1 - x`` (uniform B-splines are symmetric: segment ``n - j`` at ``x`` is segment ``j`` at
    ``1 - x``) instead of selecting each weight.
    """
    m = grid.degree + 1
    total: Any = 0.0
    for omega, _, _, per_axis in node_bases(grid, cell, flip):
        values = window
        for b in reversed(per_axis):  # the window's last axis varies fastest
            values = [dot_fma([values[i * m + j] for j in range(m)], b) for i in range(len(values) // m)]
        total = dr.fma(omega, values[0], total)
    return total * cell.length


def dot_fma(a: list[Any], b: list[Any]) -> Any:
    """``Σ a_i b_i`` as a chain of multiply-adds."""
    out = a[0] * b[0]
    for x, y in zip(a[1:], b[1:], strict=True):
        out = dr.fma(x, y, out)
    return out


def march(
    grid: KnotGrid,
    t: Types,
    segs: Segments,
    visit: Callable[[Any, Cell], Any],
    acc: Any,
    track_faces: bool = False,
    return_cell: bool = False,
) -> Any:
    """Walk every ray through the knot cells it crosses, calling ``acc = visit(acc, cell)`` per cell.

    ``acc`` is any Dr.Jit PyTree carried through the loop; ``track_faces`` fills :attr:`Cell.entered` (else it
    holds ``False``); ``return_cell`` also returns the final cell coordinates. The loop is symbolic: one kernel,
    no per-step graph.
    """
    entry, direction, length = segs.entry, segs.direction, segs.length
    forward = [d > 0 for d in direction]
    still = [d == 0 for d in direction]
    # the face a ray leaves cell k through, relative to its entry point: k + (1 if d > 0 else 0) - entry, crossed
    # at t = (k + face) * inv; an axis the ray runs parallel to is never crossed (face = inf, inv = 1)
    inv = [dr.select(z, 1.0, dr.rcp(d)) for z, d in zip(still, direction, strict=True)]
    face = [dr.select(z, dr.inf, dr.select(f, 1.0, 0.0) - e) for z, f, e in zip(still, forward, entry, strict=True)]
    cell0 = first_cell(grid, t, segs)
    step = [dr.select(f, t.Int(1), t.Int(-1)) for f in forward]
    width = dr.width(length)
    never = [False] * grid.ndim

    def cond(pos: Any, acc: Any, cell: list[Any], entered: list[Any]) -> Any:
        # the clipped segment ends where the ray leaves the box; a cell index that rounding pushes past the
        # border only gathers masked zeros until ``pos`` reaches ``length``
        return pos < length

    def body(pos: Any, acc: Any, cell: list[Any], entered: list[Any]) -> tuple[Any, ...]:
        cell_f = [t.Float(k) for k in cell]
        crossing = [(kf + off) * i for kf, off, i in zip(cell_f, face, inv, strict=True)]
        end = length
        for c in crossing:
            end = smaller(end, c)
        base, inside = grid.access(t, cell)
        if not isinstance(segs.offset, int):
            base = base + segs.offset
        # step one axis per iteration (the first that reaches a face): a tie at an edge or corner becomes a
        # zero-length segment in the next iteration, so each step leaves through exactly one face
        crossed = [crossing[0] <= end]
        taken = crossed[0]
        for c in crossing[1:]:
            crossed.append((c <= end) & ~taken)
            taken = taken | crossed[-1]
        current = Cell(
            base=base,
            inside=inside,
            local=[e - kf + pos * d for e, kf, d in zip(entry, cell_f, direction, strict=True)],
            direction=direction,
            length=larger(end - pos, 0.0),
            start=pos,
            entered=entered if track_faces else never,
            coords=cell,
            leaving=crossed,
        )
        acc = visit(acc, current)
        moved = [k + dr.select(x, s, 0) for k, x, s in zip(cell, crossed, step, strict=True)]
        return end, acc, moved, (crossed if track_faces else entered)

    faces = [dr.zeros(t.Bool, width) for _ in cell0] if track_faces else []
    state = (dr.zeros(t.Float, width), acc, cell0, faces)
    _, acc, cell, _ = dr.while_loop(state, cond, body, label="drct_march")
    return (acc, cell) if return_cell else acc


def gather_cell(grid: KnotGrid, t: Types, coeffs: Any, cell: Cell) -> list[Any]:
    return [
        dr.gather(t.Float, coeffs, t.UInt(cell.base + off), m) for off, m in zip(grid.offsets, cell.inside, strict=True)
    ]


def scatter_cell(
    grid: KnotGrid, t: Types, target: Any, values: Any, cell: Cell, mode: dr.ReduceMode | None = None
) -> None:
    """Add ``values * weight`` of each cell coefficient into ``target`` (the transpose of the weighted gather)."""
    for off, m, w in zip(grid.offsets, cell.inside, cell_weights(grid, cell), strict=True):
        scatter.add(target, values * w, t.UInt(cell.base + off), m, mode)


def project(grid: KnotGrid, t: Types, segs: Segments, coeffs: Any, padded: bool = False) -> Any:
    """Line integrals of the coefficient array ``coeffs`` (flat, ``t.Float``) along ``segs``.

    For degree ``n >= 1`` the cell's coefficients travel with the ray in a :class:`Window`: each step gathers
    only the ``(n + 1)^(ndim - 1)`` coefficients of the face the ray enters. ``padded``: ``coeffs`` is a padded
    copy (:func:`drct.kernels.padding.pad`; degree >= 1), read without masks; the same bits.
    """
    width = dr.width(segs.length)
    if grid.degree == 0:
        if padded:
            raise ValueError("the box basis marches its padded copy in drct.kernels.box")

        def gather_weighted(acc: Any, cell: Cell) -> Any:
            for c, w in zip(gather_cell(grid, t, coeffs, cell), cell_weights(grid, cell), strict=True):
                acc = dr.fma(c, w, acc)
            return acc

        return march(grid, t, segs, gather_weighted, dr.zeros(t.Float, width))

    win = Window(grid, t, segs, padded)
    window0 = win.first(coeffs, segs)

    def visit(acc: tuple[Any, list[Any]], cell: Cell) -> tuple[Any, list[Any]]:
        total, window = acc
        total = total + contract_cell(grid, cell, window, win.flip)
        return total, win.advance(coeffs, window, cell)

    total, _ = march(grid, t, segs, visit, (dr.zeros(t.Float, width), window0))
    return total


class Window:
    """The ``(n + 1)^ndim`` coefficients of a ray's current cell, oriented along the ray (entry ``j'`` of axis
    ``a`` is the natural index ``j'``, or ``n - j'`` where the ray runs backwards), so that a step always drops
    the near face ``j'_a = 0`` and takes in the far face ``j'_a = n``.

    In oriented indices a cell's entries sit at ``corner + Σ_a j'_a · stride_a`` (``stride_a`` negated on reversed
    axes), and a step along ``a`` moves ``corner`` by ``stride_a``: each step finds its face with a few integer
    adds. On the coefficient array itself whether each entry lies inside it takes ``n + 2`` compares per axis and
    a mask per gather or scatter; ``padded``: the arrays are padded copies (:mod:`drct.kernels.padding`), whose
    zero layers hold every entry outside the volume, so nothing is masked (the indices are clamped to the copy;
    the gathered values, and so the sums, are the same bits; forward and adjoint 3-21% faster, the derivative
    march about the same: see the README's Benchmarks).
    """

    def __init__(self, grid: KnotGrid, t: Types, segs: Segments, padded: bool = False) -> None:
        self.grid, self.t, self.n, self.padded = grid, t, grid.degree, padded
        n, ndim = grid.degree, grid.ndim
        strides = padding.padded_strides(grid) if padded else grid.strides
        self.strides = strides
        self.origin = padding.layers(grid) if padded else 0  # where coefficient 0 sits along each axis
        self.offset = padding.padded_offset(grid, segs.offset) if padded else segs.offset
        self.flip = [d < 0 for d in segs.direction]
        self.span = list(product(range(n + 1), repeat=ndim))  # same order as the weights
        self.near = [[i for i, js in enumerate(self.span) if js[a] == 0] for a in range(ndim)]
        self.far = [[i for i, js in enumerate(self.span) if js[a] == n] for a in range(ndim)]
        self.stride = [dr.select(f, t.Int(-s), t.Int(s)) for f, s in zip(self.flip, strides, strict=True)]
        # oriented entry j' of axis a lies at natural position k_a + first_a + sign_a * j' (k: the cell)
        self.first_pos = [dr.select(f, t.Int(n - grid.pad), t.Int(-grid.pad)) for f in self.flip]
        self.sign = [dr.select(f, t.Int(-1), t.Int(1)) for f in self.flip]
        flipped = [dr.select(f, t.Int(n * s), t.Int(0)) for f, s in zip(self.flip, strides, strict=True)]
        self.corner_shift = sum(flipped[1:], start=flipped[0])  # from the cell's natural first entry

    def corner(self, coords: list[Any]) -> Any:
        """Flat index of oriented entry ``(0, ..., 0)`` of the cell at ``coords`` (possibly outside the array)."""
        shift = self.origin - self.grid.pad
        base = (coords[0] + shift) * self.strides[0]
        for k, stride in zip(coords[1:], self.strides[1:], strict=True):
            base = base + (k + shift) * stride
        if not isinstance(self.offset, int):
            base = base + self.offset
        return base + self.corner_shift

    def axis_inside(self, coords: list[Any], count: int) -> list[list[Any]]:
        """Per axis, for oriented entries ``j' = 0 .. count - 1`` of the cell at ``coords``: inside the array?
        (Always, in a padded copy.)"""
        if self.padded:
            return [[True] * count for _ in coords]
        out = []
        for k, first, sign, size in zip(coords, self.first_pos, self.sign, self.grid.shape, strict=True):
            pos = k + first
            out.append([self.t.UInt(pos + sign * j) < size for j in range(count)])  # negatives wrap: one compare
        return out

    def index(self, flat: Any, array: Any) -> Any:
        """``flat`` as a gather or scatter index into ``array`` (clamped to it, in a padded copy)."""
        return self.t.UInt(dr.clip(flat, 0, dr.width(array) - 1) if self.padded else flat)

    def entries(self, coords: list[Any]) -> tuple[list[Any], list[Any]]:
        """Flat index of every entry of the cell at ``coords`` and whether it lies inside the array."""
        corner, inside = self.corner(coords), self.axis_inside(coords, self.n + 1)
        index, masks = [corner], [True]
        for stride, valid in zip(self.stride, inside, strict=True):
            index = [i + stride * j if j else i for i in index for j in range(self.n + 1)]
            masks = [m & v for m in masks for v in valid]
        return index, masks

    def face(self, cell: Cell, far: bool) -> tuple[Any, Any, list[Any], list[list[Any]]]:
        """The face of ``cell`` that its step crosses, seen from the cell: its corner's flat index, whether the
        step axis's layer lies inside the array, and for the face's own axes (the others, in order) their oriented
        strides and per-entry inside masks. ``far``: the next cell's far face (layer ``n + 1`` of this cell's
        oriented grid), else this cell's near face (layer 0). Lanes that do not step get an all-outside face."""
        n, ndim, leaving = self.n, self.grid.ndim, cell.leaving
        inside = self.axis_inside(cell.coords, n + 2)
        layer = n + 1 if far else 0
        step_stride = self.stride[-1]
        # padded: the far face is read unmasked (lanes that do not step read values nobody uses), the near one
        # is scattered where the ray leaves the cell
        step_inside = (True if far else cell.leaves) if self.padded else leaving[-1] & inside[-1][layer]
        for a in reversed(range(ndim - 1)):
            step_stride = dr.select(leaving[a], self.stride[a], step_stride)
            if not self.padded:
                step_inside = dr.select(leaving[a], inside[a][layer], step_inside)
        corner = self.corner(cell.coords)
        if far:
            corner = corner + (n + 1) * step_stride
        strides, masks = [], []
        for i in range(ndim - 1):  # the face's i-th axis is i below the step axis, i + 1 from it on
            later = leaving[i + 1]
            for leave in leaving[i + 2 :]:
                later = later | leave
            strides.append(dr.select(later, self.stride[i], self.stride[i + 1]))
            if self.padded:
                masks.append([True] * (n + 1))
                continue
            masks.append(
                [dr.select(later, x, y) for x, y in zip(inside[i][: n + 1], inside[i + 1][: n + 1], strict=True)]
            )
        return corner, step_inside, strides, masks

    def face_entries(self, cell: Cell, far: bool) -> tuple[list[Any], list[Any]]:
        """Flat index and inside mask of each slot of the crossed face (see :meth:`face`), in slot order."""
        corner, step_inside, strides, inside = self.face(cell, far)
        index, masks = [corner], [step_inside]
        for stride, valid in zip(strides, inside, strict=True):
            offsets = [stride * j if j else None for j in range(self.n + 1)]
            index = [i if o is None else i + o for i in index for o in offsets]
            masks = [m & v for m in masks for v in valid]
        return index, masks

    def first(self, coeffs: Any, segs: Segments) -> list[Any]:
        """The coefficients of the cell each ray starts in (zero for rays that miss)."""
        return self.gather(coeffs, first_cell(self.grid, self.t, segs), segs.length > 0)

    def gather(self, coeffs: Any, coords: list[Any], valid: Any) -> list[Any]:
        """The (oriented) coefficients of the cell at ``coords``, zero where ``valid`` is false."""
        index, inside = self.entries(coords)
        return [
            dr.gather(self.t.Float, coeffs, self.index(i, coeffs), m & valid)
            for i, m in zip(index, inside, strict=True)
        ]

    def advance(self, coeffs: Any, window: list[Any], cell: Cell) -> list[Any]:
        """The window of the next cell: gather only the far face of the cell the ray steps into, slide the rest.
        (Lanes whose ray ends here get a window nobody reads.)"""
        index, inside = self.face_entries(cell, far=True)
        entering = [
            dr.gather(self.t.Float, coeffs, self.index(i, coeffs), m) for i, m in zip(index, inside, strict=True)
        ]
        return self.slid(window, cell, entering)

    def flush(self, weights: list[Any], cell: Cell, values: Any, target: Any, mode: dr.ReduceMode) -> list[Any]:
        """Scatter ``values`` times the weights of the face the ray leaves (coefficients it never sees again)
        into ``target``; return the weight window slid into the next cell (unchanged where the ray ends)."""
        index, inside = self.face_entries(cell, far=False)
        leaving = cell.leaving
        for slot, (i, m) in enumerate(zip(index, inside, strict=True)):
            value = weights[self.near[-1][slot]]
            for a in reversed(range(self.grid.ndim - 1)):
                value = dr.select(leaving[a], weights[self.near[a][slot]], value)
            scatter.add(target, value * values, self.index(i, target), m, mode)
        return self.slid(weights, cell, None)

    def flush_all(
        self, weights: list[Any], coords: list[Any], values: Any, target: Any, hit: Any, mode: dr.ReduceMode
    ) -> None:
        """Scatter what a ray's weight window still holds when it stops."""
        index, inside = self.entries(coords)
        for w, i, m in zip(weights, index, inside, strict=True):
            scatter.add(target, w * values, self.index(i, target), m & hit, mode)

    def slid(self, window: list[Any], cell: Cell, fill: list[Any] | None) -> list[Any]:
        """The window after the cell's step, one select chain per entry: along the step axis ``a`` entry ``j'``
        takes ``j' + 1`` and the far face takes ``fill``. With ``fill`` (the forward) lanes that do not step
        get the last axis's slide; without it (weights) they keep ``window`` and the far face takes 0."""
        n, ndim, leaving = self.n, self.grid.ndim, cell.leaving
        position = {js: i for i, js in enumerate(self.span)}

        def source(js: tuple[int, ...], a: int) -> Any:
            if js[a] == n:
                return 0.0 if fill is None else fill[self.far[a].index(position[js])]
            return window[position[(*js[:a], js[a] + 1, *js[a + 1 :])]]

        out = []
        for js, w in zip(self.span, window, strict=True):
            value = source(js, ndim - 1) if fill is not None else dr.select(leaving[-1], source(js, ndim - 1), w)
            for a in reversed(range(ndim - 1)):
                value = dr.select(leaving[a], source(js, a), value)
            out.append(value)
        return out


def backproject(
    grid: KnotGrid, t: Types, segs: Segments, values: Any, target: Any, spread: bool = False, padded: bool = False
) -> None:
    """Add the transpose of :func:`project` applied to ``values`` (one per ray) into ``target`` (flat; with
    ``padded``, a padded copy from :func:`drct.kernels.padding.zeros`, degree >= 1, scattered without masks).

    The weights of a cell's coefficients are accumulated in a window that slides with the ray (oriented along
    its direction): when the ray leaves a cell through a face, only the coefficients it will never touch again
    (that face's ``(n + 1)^(ndim - 1)``) are scattered, and the rest once at the end. The sums are the same as
    scattering every cell's weights, with ``n + 1`` times fewer scatters. ``spread``: see
    :func:`~drct.kernels.scatter.scatter_mode`.
    """
    n = grid.degree
    mode = scatter.scatter_mode(target, spread)
    if n == 0:  # one coefficient per cell: nothing to slide
        if padded:
            raise ValueError("the box basis marches its padded copy in drct.kernels.box")

        def scatter_weighted(acc: Any, cell: Cell) -> Any:
            scatter_cell(grid, t, target, values, cell, mode)
            return acc

        march(grid, t, segs, scatter_weighted, dr.zeros(t.Float, dr.width(segs.length)))
        return
    win = Window(grid, t, segs, padded)

    def visit(window: list[Any], cell: Cell) -> list[Any]:
        return win.flush(cell_weights(grid, cell, win.flip, window), cell, values, target, mode)

    width = dr.width(segs.length)
    window, coords = march(grid, t, segs, visit, [dr.zeros(t.Float, width)] * len(win.span), return_cell=True)
    win.flush_all(window, coords, values, target, segs.length > 0, mode)
