"""Detector-frame maths in one place: where a pixel is, which way the detector faces, where a point lands.

Every function here is *array-generic*: a vector is a sequence of per-axis components ``(x, y[, z])``, and a
component may be a Python float, a numpy array (any broadcastable shape: per view, per view and pixel, ...) or a
Dr.Jit array (lazy, AD kept). The ray kernels call these with per-ray Dr.Jit float64 arrays, FBP's weights with
numpy arrays over views and pixels, the FDK backprojection with numpy rows per view (frame) and Dr.Jit
per-voxel arrays (mapping), so flat and cylindrical detectors are described once.

Conventions (those of :class:`drct.ProjectionGeometry`): ``src`` is the source position (parallel beams: the
ray direction), ``det`` the detector centre, ``det_u``/``det_v`` the vectors from one pixel to the next along a
row/column (``det_v`` absent in 2D). Pixel ``(u, v)`` offsets count from the detector centre in pixels,
``u = col - (cols - 1)/2``, ``v = row - (rows - 1)/2``. A *curved* detector is a cylinder around the axis
through the source along ``det_v`` (2D: a circle around the source) through ``det``; ``det_u`` is tangent to
it at ``det`` and its length is the arc length of one column.

Example:
    >>> import numpy as np
    >>> from drct.geometry.detector import detector_frame
    >>> frame = detector_frame([0.0, -100.0], [0.0, 50.0], [1.0, 0.0], None, curved=True)
    >>> pos, normal = frame.pixel(np.array([0.0, 150 * np.pi / 2]), 0.0)  # centre, and a quarter turn
    >>> np.round(np.stack(pos, axis=-1), 9).tolist(), float(frame.radius)  # (x, y) of each pixel
    ([[0.0, 50.0], [150.0, -100.0]], 150.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import drjit as dr
import numpy as np

Vec = Sequence[Any]  # per-axis components (x, y[, z]): floats, numpy arrays or Dr.Jit arrays


def _drjit(x: Any) -> bool:
    return bool(dr.is_array_v(x))


def sqrt(x: Any) -> Any:
    """``√x`` for floats, numpy and Dr.Jit arrays."""
    return dr.sqrt(x) if _drjit(x) else np.sqrt(x)


def sincos(x: Any) -> tuple[Any, Any]:
    """``(sin x, cos x)`` for floats, numpy and Dr.Jit arrays."""
    return dr.sincos(x) if _drjit(x) else (np.sin(x), np.cos(x))


def atan2(y: Any, x: Any) -> Any:
    """``atan2(y, x)`` for floats, numpy and Dr.Jit arrays."""
    return dr.atan2(y, x) if _drjit(y) or _drjit(x) else np.arctan2(y, x)


def dot(a: Vec, b: Vec) -> Any:
    """``a · b``."""
    return sum((x * y for x, y in zip(a, b, strict=True)), start=0.0)


def add(a: Vec, b: Vec, scale: Any = 1.0) -> list[Any]:
    """``a + scale * b``."""
    return [x + scale * y for x, y in zip(a, b, strict=True)]


def sub(a: Vec, b: Vec) -> list[Any]:
    """``a - b``."""
    return [x - y for x, y in zip(a, b, strict=True)]


def scaled(a: Vec, s: Any) -> list[Any]:
    """``s * a``."""
    return [s * x for x in a]


def normalize(a: Vec) -> tuple[list[Any], Any]:
    """``(a / |a|, |a|)``."""
    length = sqrt(dot(a, a))
    inv = 1.0 / length
    return [x * inv for x in a], length


def cross(a: Vec, b: Vec) -> list[Any]:
    """``a × b`` (3D)."""
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


@dataclass(frozen=True)
class DetectorFrame:
    """The frame of a flat or cylindrical detector (see the module docstring); build it with
    :func:`detector_frame`.

    Attributes:
        det, det_u, det_v: the detector centre and pixel steps (``det_v`` is None in 2D).
        curved: a cylindrical detector.
        normal: flat detectors: the unit normal ``det_u × det_v`` (2D: ``det_u`` turned by +90°).
        foot: curved: the point of the cylinder's axis level with ``det`` (2D: the source).
        axis: curved 3D: the unit cylinder axis (along ``det_v``); None in 2D.
        w_hat: curved: the unit vector from ``foot`` to ``det``.
        u_hat: curved: the unit tangent at ``det`` (``det_u`` without its ``w_hat`` part).
        radius: curved: the cylinder's radius ``|det - foot|``.
        height: curved: ``(det - src) · axis`` (0 in 2D).
    """

    det: Vec
    det_u: Vec
    det_v: Vec | None
    curved: bool
    normal: Vec | None = None
    foot: Vec | None = None
    axis: Vec | None = None
    w_hat: Vec | None = None
    u_hat: Vec | None = None
    radius: Any = None
    height: Any = 0.0

    def pixel(self, u: Any, v: Any) -> tuple[list[Any], list[Any]]:
        """Position and unit outward normal (flat: :attr:`normal`; curved: away from the axis) of the point
        ``u`` columns and ``v`` rows from the detector centre (fractional offsets are fine)."""
        along_v = scaled(self.det_v, v) if self.det_v is not None else None
        if not self.curved:
            pos = add(self.det, self.det_u, u)
            assert self.normal is not None
            normal = list(self.normal)
        else:
            assert self.foot is not None and self.w_hat is not None and self.u_hat is not None
            s, c = sincos(u * sqrt(dot(self.det_u, self.det_u)) / self.radius)
            normal = [c * w + s * t for w, t in zip(self.w_hat, self.u_hat, strict=True)]
            pos = add(self.foot, normal, self.radius)
        return (pos if along_v is None else add(pos, along_v)), normal

    def cylinder_coordinates(self, src: Vec, point: Vec) -> tuple[Any, Any, Any]:
        """Curved detectors: where the ray from ``src`` through ``point`` meets the cylinder, as pixel offsets
        ``(u, v)`` from the centre, and ``r⊥²``, the squared distance of ``point`` from the axis (the inverse
        of :meth:`pixel`: ``pixel(*cylinder_coordinates(src, p)[:2])`` lies on the ray from ``src`` to ``p``)."""
        assert self.curved and self.w_hat is not None and self.u_hat is not None
        rel = sub(point, src)
        h = dot(rel, self.axis) if self.axis is not None else 0.0
        perp = add(rel, self.axis, -h) if self.axis is not None else rel
        along_w, along_u = dot(perp, self.w_hat), dot(perp, self.u_hat)
        r2 = along_w * along_w + along_u * along_u
        u = atan2(along_u, along_w) * self.radius / sqrt(dot(self.det_u, self.det_u))
        if self.det_v is None:
            return u, 0.0 * u, r2
        v = (h * self.radius / sqrt(r2) - self.height) / sqrt(dot(self.det_v, self.det_v))
        return u, v, r2

    def plane_duals(self) -> tuple[list[Any], list[Any]]:
        """Flat 3D detectors: the dual vectors ``(u*, v*)`` with ``u*·det_u = v*·det_v = 1`` and
        ``u*·det_v = v*·det_u = u*·n = v*·n = 0``, so that a point ``p`` of the plane lies at
        ``((p - det)·u*, (p - det)·v*)`` pixels from the centre (skewed pixel axes included)."""
        assert self.det_v is not None
        n = cross(self.det_u, self.det_v)
        nn = dot(n, n)
        return scaled(cross(self.det_v, n), 1.0 / nn), scaled(cross(n, self.det_u), 1.0 / nn)


def detector_frame(src: Vec, det: Vec, det_u: Vec, det_v: Vec | None, curved: bool) -> DetectorFrame:
    """The :class:`DetectorFrame` of one detector (components may be per view or per ray arrays).

    Example:
        >>> f = detector_frame([0.0, -10.0, 0.0], [0.0, 5.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0], False)
        >>> [float(c) for c in f.normal], [float(c) for c in f.pixel(3.0, -1.0)[0]]
        ([0.0, -1.0, 0.0], [3.0, 5.0, -2.0])
    """
    if not curved:
        if det_v is not None:
            normal, _ = normalize(cross(det_u, det_v))
        else:
            normal, _ = normalize([-det_u[1], det_u[0]])
        return DetectorFrame(det, det_u, det_v, False, normal=normal)
    to_det = sub(det, src)
    if det_v is not None:
        axis, _ = normalize(det_v)
        height = dot(to_det, axis)
        foot = add(src, axis, height)
    else:
        axis, height, foot = None, 0.0, list(src)
    w_hat, radius = normalize(sub(det, foot))
    u_hat, _ = normalize(add(det_u, w_hat, -dot(det_u, w_hat)))
    return DetectorFrame(det, det_u, det_v, True, None, foot, axis, w_hat, u_hat, radius, height)


def ray_through(src: Vec, pixel: Vec, beam: str) -> tuple[list[Any], Any]:
    """The unit direction of the ray that reaches ``pixel``, and the source–pixel distance (None for parallel
    beams, whose ``src`` is the ray direction).

    Example:
        >>> d, length = ray_through([0.0, -3.0], [4.0, 0.0], "fan")
        >>> [round(float(c), 12) for c in d], float(length)
        ([0.8, 0.6], 5.0)
    """
    if beam == "parallel":
        return normalize(src)[0], None
    return normalize(sub(pixel, src))
