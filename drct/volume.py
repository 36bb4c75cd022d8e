"""Volume models: the continuous function ``f(p) = Σ_k c_k β_n((p - p_k) / h)`` behind every coefficient array.

``β_n`` is the centred tensor-product B-spline of degree ``n``: ``voxel`` (n = 0, the box of one voxel),
``linear`` (n = 1, tri/bilinear interpolation of the values at voxel centres), ``bspline2`` and ``bspline3``
(quadratic and cubic B-splines whose coefficients are the array). Between knots ``f`` is a polynomial, which is
what lets drct integrate it exactly along a ray.

Example:
    >>> import numpy as np
    >>> from drct.volume import bspline_segments
    >>> [round(float(w), 4) for w in bspline_segments(3, 0.0)]   # cubic weights at a knot
    [0.1667, 0.6667, 0.1667, 0.0]
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np

BASES = {"voxel": 0, "linear": 1, "bspline2": 2, "bspline3": 3}

T = TypeVar("T")


def basis_degree(basis: str) -> int:
    """The B-spline degree of a basis name."""
    if basis not in BASES:
        raise ValueError(f"basis must be one of {tuple(BASES)}, got {basis!r}")
    return BASES[basis]


def bspline_segments(degree: int, s: T) -> list[T]:
    """Weights of the ``degree + 1`` coefficients that touch one knot cell, at local position ``s`` in [0, 1].

    Works on floats, numpy arrays and Dr.Jit arrays alike. For cell ``k`` of the knot grid the coefficients are
    ``k - degree // 2 ... k - degree // 2 + degree``.
    """
    x: Any = s
    if degree == 0:
        return [x * 0 + 1]
    r = 1 - x
    if degree == 1:
        return [r, x]
    if degree == 2:
        return [0.5 * r * r, 0.5 + x * r, 0.5 * x * x]
    if degree == 3:
        x2 = x * x
        x3 = x2 * x
        r3 = r * r * r
        return [r3 / 6, (3 * x3 - 6 * x2 + 4) / 6, (-3 * x3 + 3 * x2 + 3 * x + 1) / 6, x3 / 6]
    raise ValueError(f"B-spline degree must be 0..3, got {degree}")


def bspline_scaled_segments(degree: int, s: T) -> list[T]:
    """``degree!`` times :func:`bspline_segments`: the same polynomials without their common denominator, in
    fewer operations (the kernels fold ``1 / degree!`` per axis into their quadrature weights). The middle
    values come from the partition of unity (the ``degree + 1`` values sum to ``degree!``), which cancels
    nothing: on ``[0, 1]`` each is at least 1 and the others at most ``degree!``.

    Example:
        >>> [float(w) for w in bspline_scaled_segments(3, 0.5)]   # 6 x (1/48, 23/48, 23/48, 1/48)
        [0.125, 2.875, 2.875, 0.125]
    """
    x: Any = s
    if degree <= 1:
        return bspline_segments(degree, s)
    r = 1 - x
    x2, r2 = x * x, r * r
    if degree == 2:
        return [r2, 2 - r2 - x2, x2]
    if degree == 3:
        x3, r3 = x2 * x, r2 * r
        inner = x2 * (3 * x - 6) + 4
        return [r3, inner, 6 - r3 - inner - x3, x3]
    raise ValueError(f"B-spline degree must be 0..3, got {degree}")


def bspline_segment_slopes(degree: int, s: T) -> list[T]:
    """Derivatives w.r.t. ``s`` of :func:`bspline_segments` (same order, same array types)."""
    x: Any = s
    if degree == 0:
        return [x * 0]
    if degree == 1:
        return [x * 0 - 1, x * 0 + 1]
    if degree == 2:
        return [x - 1, 1 - 2 * x, x]
    if degree == 3:
        x2 = x * x
        r = 1 - x
        return [-0.5 * r * r, 1.5 * x2 - 2 * x, -1.5 * x2 + x + 0.5, 0.5 * x2]
    raise ValueError(f"B-spline degree must be 0..3, got {degree}")


def quadrature_order(degree: int, ndim: int) -> int:
    """Gauss–Legendre nodes that integrate a product of ``ndim`` degree-``degree`` polynomials exactly."""
    return max(1, math.ceil((degree * ndim + 1) / 2))


def gauss_legendre_01(order: int) -> tuple[list[float], list[float]]:
    """Gauss–Legendre nodes and weights on [0, 1]."""
    x, w = np.polynomial.legendre.leggauss(order)
    return [float(v) for v in (x + 1) / 2], [float(v) for v in w / 2]
