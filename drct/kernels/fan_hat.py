"""Voxel-driven (gather) adjoints of the linear and quadratic B-spline bases for 2D fan beams on a flat detector.

The smooth siblings of :class:`drct.kernels.fan_footprints.FanFootprints` (the box basis), whose column map,
classes of views, loops and value tables they take: per coefficient (lane) and view, the candidate detector
columns whose ray crosses the support of the coefficient's basis function (2 x 2 pixels for the bilinear hat
``Λ(x / h_x) Λ(y / h_y)``, 3 x 3 for the quadratic B-spline ``β₂(x / h_x) β₂(y / h_y)``: the column map's reach
covers the support's corners), and per candidate the exact line integral of the function along the ray, in
closed form, in registers.

**The hat** (:class:`FanHatFootprints`). A line of unit direction ``d`` at distance ``q`` (mm) from the
coefficient's centre sees ``h_x h_y (T_a * T_b)(q)``: the convolution of two unit-area triangles of half-widths
``h_x |d_y|`` and ``h_y |d_x|`` (``a`` the wider, ``b`` the narrower; the projection of a tensor product is the
convolution of its factors' projections), that is

    ``(T_a * T_b)(q) = ((a - |q|)+ + (φ(|q| - a) - 2 φ(|q|))) / a²``,  ``φ(z) = (b - |z|)+³ / (6 b²)``

(:class:`drct.kernels.footprints.HatFootprints` writes the same for parallel beams). The convolution is
homogeneous of degree -1, so with the ray's unnormalised direction ``D(k) = D0 + k e`` (``k``: the column less the
middle one) every length may be taken times ``|D|``: ``a, b`` become ``max`` and ``min`` of ``|X|, |Y|``, ``X = h_y
D_x``, ``Y = h_x D_y``, and ``q`` becomes ``Q = cross(D, pixel - source) = X y - Y x + cross(D, centre - source)``
(``x, y``: the pixel's offsets from the grid's middle, in pixels) — all three affine in ``k``, stepped by adds
from candidate to candidate. The per-ray factor ``h_x h_y |D| / a²`` multiplies ``y`` once per call, in the value
table (:attr:`~drct.kernels.fan_footprints.FanFootprints.weights`: ``a`` of the host and of the kernel differ by
rounding, relatively); ``1 / (6 b²)`` is the kernel's, per candidate, from its own ``b``, so that the cubic part
stays bounded by ``b / 6`` however small ``b`` and however ``b`` was rounded (a host ``b`` beside a kernel one
would not: ``(b' - |z|)³ / b²`` grows without bound when ``b ≪ b'``).

**The quadratic B-spline** (:class:`FanQuadraticFootprints`). With ``B_a(z) = β₂(z / a) / a`` (unit area) the
line sees ``h_x h_y (B_a * B_b)(q)``, homogeneous of degree -1 likewise: in ``u = |Q| / a`` and ``β = b / a <= 1``,
``(B_a * B_b)(q) = p(u, β) / a`` (the per-ray factor ``h_x h_y |D| / a`` in the value table). ``p`` is ``β₂``
smoothed by ``B_β``: a piecewise quadratic ``f`` smoothed by a kernel of variance ``β² / 4`` is ``f + f'' β² / 8``
away from ``f``'s knots, and each jump ``J`` of ``f''`` at a knot ``c`` adds ``J β² k((u - c) / β)``, ``k``
supported near 0. Folding the ``f''`` term into the knots' terms keeps every piece continuous (no two tests of
differently rounded numbers decide a jump): with ``M(s) = (1.5 - s)+⁵ - 3 (0.5 - s)+⁵``, ``K(t) = 15 - M(t)`` for
``t >= 0`` and ``M(-t)`` below (continuous at 0),

    ``p(u, β) = β₂(u) + β² (3 (1.5 - t₂)+⁵ + 3 K(t₁) - K(t₃) - 30) / 120``,  ``t_i = (u - c_i) / β``,

for ``u >= 0`` and the knots ``c = 0.5, -0.5, 1.5`` of ``β₂`` that a ``u >= 0`` can be within ``1.5 β`` of (the jumps
``3, -3, -1``; the fourth, at ``-1.5``, adds its constant ``1/8``). The ``t_i`` are computed as ``(|Q| - c_i a) /
b``, so ``b`` appears in no denominator but its own (floored like the hat's); nothing cancels as ``β -> 0``: the
terms are ``β²`` times bounded functions. Float32 against float64 (of the largest entry): 512² x 48 x 725
(source 1000) linear gather 4.6e-6 (mean 4.8e-7), scatter 7.1e-6 (1.1e-6); bspline2 gather 3.6e-6 (3.6e-7),
scatter 5.2e-6 (8.0e-7); rays along and near the axes 2e-7.

**No near-axis path.** Both integrals are continuous in the ray's position and direction (unlike the box's
chord, whose trapezoid steepens without bound as a ray turns along a pixel edge), so the DDA's rounding moves
nothing discontinuously: every ray takes the closed form, and rays exactly along an axis (``b = 0``) are the
limits (the narrow factor's terms vanish; ``1 / b`` is taken of ``b`` floored at the smallest normal float, so
that ``0 · inf`` never happens). No scatters: bit-reproducible whatever the threads.

**Which one runs.** :class:`FanHatFootprints` serves ``A.T`` of the linear basis (see
:attr:`drct.transform.Transform.footprints`); :class:`FanQuadraticFootprints` is not dispatched
(:data:`FAN_FOOTPRINTS`): exact, but no faster than the ray-driven scatter since that became
packet pairs (:mod:`drct.kernels.scatter`). It is kept, tested against the forward, for the day its knot
corrections get cheaper.

Float32, 2 shared cores, medians of 5 after a first call, the forward, the scatter adjoint and the gather taking
turns in one process (``python benchmarks/bench_gather_adjoint.py --workloads fan``), CPU / wall as multiples of
the forward's. Against the packet-pair scatter (load 3.2-3.9): 256² x 360 x 512 (source 500, detector 1000)
linear forward 0.295 GVU/s, scatter 1.75x / 1.80x, gather 1.13x / 1.13x; 512² x 720 x 725 (``bench_projector.py``'s
fan2d) linear forward 0.427, scatter 2.01x / 2.03x, gather 1.16x / 1.16x; bspline2 (the quadratic's gather set
by hand) 256²: scatter 1.73-1.79x, gather 1.76-1.82x; 512²: scatter 1.64-1.82x, gather 1.63-1.86x (blocks 16, 8,
4 alike). Against the scatter before it (per-lane reductions; two runs, load 3.2-3.8): 256² linear scatter
3.04-3.29x, gather 1.12-1.14x; bspline2 scatter 2.90-3.00x, gather 1.82-1.89x; 512² linear scatter 3.42-3.73x,
gather 0.95-1.05x; bspline2 scatter 3.45-3.50x, gather 1.81-2.03x. Per pixel and view the hat tests 4-6
candidates, the quadratic 6-9.

Variants measured on the way (the same kind of runs, load 3-4.8; ``x`` = the forward's wall): the hat's
``1 / (6 b²)`` is 12-15% of its time (replaced by a product: 0.96-1.02x instead of 1.11x), ``dr.rcp`` in place
of the division the same; layouts (views per loop iteration x pixels per lane) 1x16 (kept), 1x8, 2x16, 2x8
within +-10% and not consistently ordered. The quadratic's time by parts: the loop, candidates and value
gathers 0.57-0.59x, plus ``1 / a`` and ``β₂(u)`` 0.67-0.76x, plus ``1 / b`` and the ``t_i`` 1.05-1.10x, plus
the knots' fifth powers 1.74-1.98x; one division ``1 / (a b)`` for both 1.82-1.89x (no gain); layouts 1x8 and
1x4 within +-8%. A quadratic gather clearly below the scatter would need a cheaper form of its knot corrections
(five fifth powers per candidate, ~68 operations and two divisions in all), not found here.

Example:
    >>> import numpy as np, drct as ct
    >>> pg = ct.fan(np.linspace(0, 2 * np.pi, 8, endpoint=False), 12, 1.5, 40.0, 80.0)
    >>> A = ct.Projector(ct.VolumeGeometry((7, 6)), pg, basis="linear", dtype="float64")
    >>> type(A._engine.footprints).__name__
    'FanHatFootprints'
    >>> y = np.random.default_rng(0).random(A.range_shape)
    >>> scatter = A._engine.backproject(A.types.Float(y.ravel()), A._engine.vectors(), scatter=True)
    >>> bool(np.allclose(A.T(y), scatter.numpy().reshape(A.domain_shape), rtol=0, atol=1e-12))
    True
    >>> ct.Projector(ct.VolumeGeometry((7, 6)), pg, basis="bspline2")._engine.footprints is None  # the scatter
    True
"""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np

from ..backend import upload
from ..geometry.projection import AnyGeometry, ProjectionGeometry
from ..geometry.volume import VolumeGeometry
from .fan_footprints import FanFootprints, _cross, _views, fits
from .grid import larger, smaller


class FanHatFootprints(FanFootprints):
    """The gather adjoint of the linear basis for 2D flat fan beams (see the module docstring)."""

    degree = 1
    wide_power = 2
    """The power of ``a`` in the per-ray weight ``h_x h_y |D| / a^wide_power`` (:meth:`_rays`)."""

    def _rays(self, vg: VolumeGeometry, pg: ProjectionGeometry) -> None:
        """Per view, ``X, Y`` at the middle column and their steps per column, and ``Q = sx x + sy y + s0 + k (tx
        x + ty y + ts)`` (see the module docstring) as :attr:`lines`; per ray, the weight ``h_x h_y |D| / a²``."""
        src, det, det_u = _views(pg)
        hx, hy = vg.spacing_xyz
        scale = 1.0 / np.linalg.norm(det - src, axis=1, keepdims=True)
        d0, e = (det - src) * scale, det_u * scale  # the middle column's ray (|D| = 1), and the step per column
        rel = np.asarray(vg.center, dtype=np.float64)[None, :] - src
        x0, y0, ex, ey = hy * d0[:, 0], hx * d0[:, 1], hy * e[:, 0], hx * e[:, 1]
        self.lines = np.column_stack([x0, y0, ex, ey, -y0, x0, _cross(d0, rel), -ey, ex, _cross(e, rel)])
        k = np.arange(self.cols) - (self.cols - 1) / 2
        dx = d0[:, 0, None] + k[None, :] * e[:, 0, None]
        dy = d0[:, 1, None] + k[None, :] * e[:, 1, None]
        wide = np.maximum(hy * np.abs(dx), hx * np.abs(dy))
        weight = hx * hy * np.hypot(dx, dy) / wide**self.wide_power
        self.weights = upload(self.t.Float, weight.ravel().astype(self.t.dtype))
        self.near_rays = np.zeros(0, dtype=np.int64)

    def _first_ray(self, table: Any, x: Any, y: Any, p: list[Any]) -> tuple[list[Any], tuple[Any, ...], Any]:
        """The candidates' values (``table``: the value table and the view's ``taps``; ``p``: the table offset and
        :meth:`_parameters`), ``X, Y, Q`` of the first candidate's ray and their steps per candidate."""
        table, _ = table
        base, a, b, c, pp, q, big_x, big_y, dx, dy, sx, sy, s0, tx, ty, ts = p
        first = dr.ceil(dr.fma(b, y, dr.fma(a, x, c)) / dr.fma(q, y, dr.fma(pp, x, 1.0)))
        values = self._values(table, self.t.Int(first) + base)
        k = first - dr.opaque(self.t.Float, (self.cols - 1) / 2)
        step = dr.fma(ty, y, dr.fma(tx, x, ts))
        s = dr.fma(k, step, dr.fma(sy, y, dr.fma(sx, x, s0)))
        return values, (dr.fma(k, dx, big_x), dr.fma(k, dy, big_y), s), (dx, dy, step)

    def _add_view(self, acc: Any, table: Any, x: Any, y: Any, p: list[Any]) -> Any:
        """``acc`` plus one view's hats (``table``: the value table and the view's ``taps``; ``p``: the table
        offset and :meth:`_parameters`): per candidate ``((a - |Q|)+ + ((b - |a - |Q||)+³ - 2 (b - |Q|)+³) / (6
        b²))`` times its value."""
        values, (big_x, big_y, s), (dx, dy, step) = self._first_ray(table, x, y, p)
        tiny = float(np.finfo(self.t.dtype).tiny)
        for j in range(table[1]):
            if j:
                big_x, big_y, s = big_x + dx, big_y + dy, s + step
            ax, ay, aq = dr.abs(big_x), dr.abs(big_y), dr.abs(s)
            wide, narrow = larger(ax, ay), smaller(ax, ay)
            ramp = wide - aq
            centre = larger(narrow - aq, 0.0)
            edge = larger(narrow - dr.abs(ramp), 0.0)
            cubic = dr.fma(edge * edge, edge, -2.0 * centre * centre * centre)
            inv = 1.0 / larger(6.0 * narrow * narrow, tiny)
            hat = dr.fma(cubic, inv, larger(ramp, 0.0))
            acc = dr.fma(hat, values[j], acc)
        return acc


class FanQuadraticFootprints(FanHatFootprints):
    """The gather adjoint of the quadratic B-spline basis for 2D flat fan beams, not dispatched (see the module
    docstring): build it by hand, ``FanQuadraticFootprints(KnotGrid.of(vg, 2), vg, pg, types(dtype))``."""

    degree = 2
    wide_power = 1
    block = 4
    """Pixels per lane (see :func:`~drct.kernels.fan_footprints.block_for`): 4 for the quadratic's larger closed
    form. Wall ms, float32, medians of 5, blocks 16 / 8 / 4 / 2: 256² x 360 x 512 276 / 253 / 251 / 252 (load
    3.0); 512² x 720 x 725 1521 / 1504 / 1522 / 1620 (load 2.8-3.6; forward 927)."""

    def _add_view(self, acc: Any, table: Any, x: Any, y: Any, p: list[Any]) -> Any:
        """``acc`` plus one view's quadratic B-splines: per candidate ``p(u, β)`` (the module docstring) times
        its value (``y`` times ``h_x h_y |D| / a``)."""
        values, (big_x, big_y, s), (dx, dy, step) = self._first_ray(table, x, y, p)
        tiny = float(np.finfo(self.t.dtype).tiny)

        def fifth(v: Any) -> Any:
            v = larger(v, 0.0)
            v2 = v * v
            return v2 * v2 * v

        def knot(w: Any) -> Any:  # 120 k~(w): continuous, 15 - M for w >= 0, M below
            m = dr.fma(-3.0, fifth(0.5 - dr.abs(w)), fifth(1.5 - dr.abs(w)))
            return dr.select(w >= 0.0, 15.0 - m, m)

        for j in range(table[1]):
            if j:
                big_x, big_y, s = big_x + dx, big_y + dy, s + step
            ax, ay, aq = dr.abs(big_x), dr.abs(big_y), dr.abs(s)
            wide, narrow = larger(ax, ay), smaller(ax, ay)
            ia = 1.0 / wide
            ib = 1.0 / larger(narrow, tiny)
            u = aq * ia
            beta = narrow * ia
            outer = larger(1.5 - u, 0.0)
            spline = dr.select(u < 0.5, dr.fma(-u, u, 0.75), 0.5 * outer * outer)
            t1 = dr.fma(-0.5, wide, aq) * ib
            t2 = dr.fma(0.5, wide, aq) * ib
            t3 = dr.fma(-1.5, wide, aq) * ib
            corr = dr.fma(3.0, fifth(1.5 - t2) + knot(t1), -30.0) - knot(t3)
            value = dr.fma(beta * beta * (1.0 / 120.0), corr, spline)
            acc = dr.fma(value, values[j], acc)
        return acc


FAN_FOOTPRINTS: dict[int, type[FanFootprints]] = {0: FanFootprints, 1: FanHatFootprints}
"""The fan-beam gather adjoint of each dispatched basis degree (:func:`covers`). The quadratic B-spline's,
:class:`FanQuadraticFootprints`, is exact but measured no faster than the packet-pair scatter adjoint
(:mod:`drct.kernels.scatter`): it is not dispatched (see the module docstring)."""


MIN_WORK: dict[int, int] = {0: 2**21}
"""Pixels x views below which the fan gather of a basis degree is not dispatched (the scatter is cheaper there);
a degree not listed has none. The box basis's: 2^21, where :func:`~drct.kernels.fan_footprints.block_for` goes
from one pixel per lane to two. CPU ms per call on one Dr.Jit thread, medians of 21 (15 for the 2nd group), the
pair scatter and the gather taking turns in one process; fan ``n² x views x 2n`` columns, magnification 2; box
scatter / gather (its block): 32² x 45 0.49 / 0.69 (1.41x), 64² x 45 0.86 / 1.12 (1.30x), 64² x 90 1.49 / 2.18
(1.46x), 128² x 90 4.75 / 6.46 (1.36x), 256² x 45 = 2^21.5 7.38 / 7.57 (block 2, 1.03x); 96² x 135 3.64 / 4.48
(1.23x), 128² x 180 7.76 / 7.69 (0.99x), 192² x 90 8.58 / 8.42 (0.98x), 192² x 270 24.4 / 16.2 (0.67x), 256² x
360 53.8 / 35.7 (0.66x). Load 2.0-2.5: another process held one of the 2 cores, so two Dr.Jit threads ran no
faster (they gave the same order, noisier). Blocks of 2-8 pixels move the crossover little: 64² x 90 1.29-1.32x,
128² x 90 0.93-1.05x. The linear basis's gather is the cheaper at every size measured (0.62-0.87x from 32² x 45
on): no threshold. Run: ``python benchmarks/bench_gather_adjoint.py --workloads fan --fan-sizes 32,64,128,256``
(two threads)."""


def covers(vg: VolumeGeometry, pg: AnyGeometry, degree: int) -> bool:
    """Whether a fan gather adjoint serves this operator: a basis of :data:`FAN_FOOTPRINTS` whose closed form
    :func:`~drct.kernels.fan_footprints.fits` it, on at least :data:`MIN_WORK` pixels x views.

    Example:
        >>> import numpy as np, drct as ct
        >>> fan = ct.fan(np.linspace(0, 2 * np.pi, 128, endpoint=False), 256, 1.5, 250.0, 500.0)
        >>> covers(ct.VolumeGeometry((128, 128)), fan, 0), covers(ct.VolumeGeometry((96, 96)), fan, 0)  # small
        (True, False)
        >>> covers(ct.VolumeGeometry((8, 8)), ct.fan(np.zeros(1), 16, 1.0, 40.0, 80.0), 1)
        True
        >>> covers(ct.VolumeGeometry((8, 8)), ct.fan(np.zeros(1), 16, 1.0, 4.0, 80.0), 1)  # source inside
        False
        >>> covers(ct.VolumeGeometry((8, 8)), ct.fan(np.zeros(1), 16, 1.0, 40.0, 80.0), 2)  # not dispatched
        False
    """
    if degree not in FAN_FOOTPRINTS or not isinstance(pg, ProjectionGeometry):
        return False
    return vg.size * pg.num_views >= MIN_WORK.get(degree, 0) and fits(vg, pg, degree)
