"""The TOF projector: one march per LOR through the voxels it crosses, weighting each chord by the exact
integral of every TOF bin's kernel over it (:func:`drct.pet.tof.chord_weights`).

The march is :func:`drct.kernels.march.march` on the voxel (box) knot grid, the one drct's X-ray transform
uses, with another weight per chord. The forward projection gathers each voxel once and adds ``value · w_k`` to
bin ``k``'s sum; the adjoint scatters ``Σ_k w_k y_k`` into the same voxel — the same ray program with the
same weights, so ``Aᵀ`` is the exact transpose of ``A``. Each chord's end tails are carried to the next chord
(one set of ``erf``/``exp`` per chord and edge).
"""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np

from ..backend import Types, upload
from ..geometry.ray_arrays import Rays
from ..geometry.volume import VolumeGeometry
from ..kernels import grid, march, scatter
from .tof import TOF, chord_weights, edge_tails


class TofEngine:
    """TOF line integrals of a voxel volume along LORs ``p1 → p2`` (``(M, 3)`` float64 mm).

    ``bins`` None: every LOR is binned into all of ``tof``'s bins (sinogram); else one bin per LOR (listmode).

    Example:
        >>> import numpy as np, drjit as dr, drct as ct
        >>> from drct.backend import types
        >>> from drct.pet.kernel import TofEngine
        >>> vg, t = ct.VolumeGeometry((1, 4, 4), voxel_size=10.0), types("float64")
        >>> tof = ct.pet.TOF(bins=6, bin_width=8.0, fwhm=1e-3)  # nearly no blur: the chord's share of each bin
        >>> engine = TofEngine(vg, np.array([[-80.0, 5.0, 0.0]]), np.array([[80.0, 5.0, 0.0]]), tof, t)
        >>> [round(float(v[0]), 6) for v in engine.project(dr.ones(t.Float, 16))]
        [4.0, 8.0, 8.0, 8.0, 8.0, 4.0]
    """

    def __init__(
        self, vg: VolumeGeometry, p1: np.ndarray, p2: np.ndarray, tof: TOF, t: Types, bins: np.ndarray | None = None
    ) -> None:
        self.t, self.tof, self.vg = t, tof, vg
        self.grid = grid.KnotGrid.of(vg, 0)
        self.count = int(p1.shape[0])
        mid, ab = 0.5 * (p1 + p2), p2 - p1
        unit = ab / np.linalg.norm(ab, axis=1, keepdims=True)
        self.origin = [upload(t.Float64, mid[:, k]) for k in range(3)]
        self.direction = [upload(t.Float64, unit[:, k]) for k in range(3)]
        self.first_center = [dr.opaque(t.Float64, c) for c in vg.first_center]
        self.spacing = [dr.opaque(t.Float64, h) for h in vg.spacing_xyz]
        self.listmode = bins is not None
        if bins is not None:
            low = (bins.astype(np.float64) - tof.bins / 2) * tof.bin_width
            self.lm_edges = [upload(t.Float, low), upload(t.Float, low + tof.bin_width)]

    @property
    def outputs(self) -> int:
        """Values per LOR: the TOF bins (sinogram) or 1 (listmode)."""
        return 1 if self.listmode else self.tof.bins

    def _edges(self) -> list[Any]:
        if self.listmode:
            return self.lm_edges
        return [dr.opaque(self.t.Float, float(e)) for e in self.tof.edges()]

    def _segments(self) -> grid.Segments:
        inf = dr.full(self.t.Float64, dr.inf, self.count)
        rays = Rays(self.origin, self.direction, -inf, inf)
        return grid.clip_rays(rays, self.grid, self.first_center, self.spacing, self.t)

    def _run(self, visit: Any, extra: Any) -> Any:
        """March every LOR, calling ``extra = visit(extra, cell, weights)`` per chord (one weight per bin)."""
        t, sigma = self.t, self.tof.sigma
        segs = self._segments()
        edges = self._edges()
        inv = 1.0 / sigma
        start = t.Float(dr.detach(segs.t_enter))

        def body(acc: tuple[Any, Any, list[Any]], cell: grid.Cell) -> tuple[Any, Any, list[Any]]:
            extra, t0, tails0 = acc
            length = cell.length
            t1 = t0 + length
            tails1 = edge_tails(edges, t1, inv)
            weights = chord_weights(edges, t0, length, tails0, tails1, sigma)
            return visit(extra, cell, weights), t1, tails1

        state = (extra, start, edge_tails(edges, start, inv))
        out, _, _ = march.march(self.grid, t, segs, body, state)
        return out

    def project(self, coeffs: Any) -> list[Any]:
        """Per TOF output, the weighted line integral of every LOR (``outputs`` arrays of ``count`` values)."""
        t = self.t

        def visit(totals: list[Any], cell: grid.Cell, weights: list[Any]) -> list[Any]:
            value = dr.gather(t.Float, coeffs, t.UInt(cell.base), cell.inside[0])
            return [dr.fma(value, w, s) for s, w in zip(totals, weights, strict=True)]

        totals = self._run(visit, [dr.zeros(t.Float, self.count) for _ in range(self.outputs)])
        dr.eval(totals)
        return totals

    def backproject(self, values: list[Any], target: Any) -> None:
        """Add the transpose of :meth:`project` applied to ``values`` (one array per TOF output) into ``target``
        (in place). An odd-sized ``target`` is scattered into an even-sized copy first and added from there, so
        that :func:`~drct.kernels.scatter.add` writes pairs whatever the volume's size."""
        t = self.t
        size = dr.width(target)
        into = target if size % 2 == 0 else scatter.even_zeros(t.Float, size)
        mode = scatter.scatter_mode(into)

        def visit(extra: Any, cell: grid.Cell, weights: list[Any]) -> Any:
            total = values[0] * weights[0]
            for v, w in zip(values[1:], weights[1:], strict=True):
                total = dr.fma(v, w, total)
            scatter.add(into, total, t.UInt(cell.base), cell.inside[0], mode)
            return extra

        self._run(visit, dr.zeros(t.Float, self.count))
        if into is not target:
            target += scatter.trimmed(into, size)
        dr.eval(target)


class TofOp(dr.CustomOp):
    """``A x`` of the TOF engine for Dr.Jit AD (linear in ``x``: the adjoint is the derivative)."""

    def eval(self, engine: TofEngine, x: Any) -> Any:
        self.engine = engine
        return engine.project(x)

    def forward(self) -> None:
        self.set_grad_out(self.engine.project(self.grad_in("x")))

    def backward(self) -> None:
        target = dr.zeros(self.engine.t.Float, self.engine.grid.size)
        grad: list[Any] = self.grad_out()  # type: ignore[assignment]
        self.engine.backproject(grad, target)
        self.set_grad_in("x", target)

    def name(self) -> str:
        return "drct.pet.tof.A"
