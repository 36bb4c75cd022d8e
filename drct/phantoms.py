"""Ellipsoid phantoms (Shepp-Logan) as voxel arrays and as their exact analytic projections.

A phantom is a list of :class:`Ellipsoid`; its value at a point is the sum of ``mu`` over the ellipsoids that
contain it. :func:`rasterize` turns it into voxel averages on a :class:`~drct.VolumeGeometry`;
:func:`project_ellipsoids` gives its exact line integrals on any projection geometry, so ``A x`` can be
checked against the continuous truth. 2D volumes and geometries see the ``z = 0`` slice of the same model.

Example:
    >>> import numpy as np, drct as ct
    >>> vg = ct.VolumeGeometry((128, 128), voxel_size=2.0)
    >>> pg = ct.parallel(np.linspace(0, np.pi, 90, endpoint=False), 192, 2.0)
    >>> x = ct.phantoms.shepp_logan(vg)
    >>> y = ct.phantoms.shepp_logan_projections(pg, vg=vg)
    >>> x.shape, y.shape
    ((128, 128), (90, 192))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import drjit as dr
import numpy as np
from numpy.typing import ArrayLike

from .backend import lanes, types
from .geometry._checks import as_positive, finite_scalar, finite_vector, positive_scalar
from .geometry.projection import ProjectionGeometry, RayGeometry
from .geometry.ray_arrays import geometry_vectors, make_rays
from .geometry.volume import VolumeGeometry

# Modified (Toft) Shepp-Logan in [-1, 1]^3: Kak & Slaney's 3D extension as tabulated by most toolboxes
# (ODL, phantom3d) with every centre at z = 0, so its z = 0 slice is the 2D phantom. Columns: mu, semi-axes
# (a, b, c), centre (x, y), rotation about z in degrees.
_SHEPP_LOGAN = (
    (1.0, 0.6900, 0.920, 0.810, 0.00, 0.0000, 0.0),
    (-0.8, 0.6624, 0.874, 0.780, 0.00, -0.0184, 0.0),
    (-0.2, 0.1100, 0.310, 0.220, 0.22, 0.0000, -18.0),
    (-0.2, 0.1600, 0.410, 0.280, -0.22, 0.0000, 18.0),
    (0.1, 0.2100, 0.250, 0.410, 0.00, 0.3500, 0.0),
    (0.1, 0.0460, 0.046, 0.050, 0.00, 0.1000, 0.0),
    (0.1, 0.0460, 0.046, 0.050, 0.00, -0.1000, 0.0),
    (0.1, 0.0460, 0.023, 0.050, -0.08, -0.6050, 0.0),
    (0.1, 0.0230, 0.023, 0.020, 0.00, -0.6060, 0.0),
    (0.1, 0.0230, 0.046, 0.020, 0.06, -0.6050, 0.0),
)


@dataclass(frozen=True, init=False)
class Ellipsoid:
    """An ellipsoid (3D) or ellipse (2D) of constant value ``mu``, added to whatever else is there.

    A point ``p = (x, y[, z])`` (mm) is inside when ``|diag(1/axes) R^T (p - center)| <= 1`` with
    ``R = Rz(phi) Rx(theta) Rz(psi)`` (ZXZ Euler angles, radians): unrotated, the semi-axis ``a`` lies along
    x, and ``angles=phi`` turns it counter-clockwise in the x-y plane. An ellipse (2 entries in ``center`` and
    ``axes``, one angle) is only usable in 2D; a 3D ellipsoid used in 2D is sliced at ``z = 0``.

    Args:
        center: ``(x, y, z)`` or ``(x, y)`` in mm.
        axes: semi-axes ``(a, b, c)`` or ``(a, b)`` in mm, all > 0.
        mu: value added inside (1/mm for attenuation).
        angles: ``phi`` (rotation about z), or ``(phi, theta, psi)`` for a 3D ellipsoid.

    Example:
        >>> import numpy as np, drct as ct
        >>> e = ct.phantoms.Ellipsoid((10.0, 0.0), (20.0, 5.0), mu=0.5, angles=np.pi / 6)
        >>> e.ndim, e.angles
        (2, (0.5235987755982988, 0.0, 0.0))
    """

    center: tuple[float, ...]
    axes: tuple[float, ...]
    mu: float
    angles: tuple[float, ...]

    def __init__(self, center: ArrayLike, axes: ArrayLike, mu: float = 1.0, angles: ArrayLike = 0.0) -> None:
        ndim = int(np.size(center))
        if ndim not in (2, 3):
            raise ValueError(f"center must be (x, y) or (x, y, z), got {center!r}")
        if np.size(axes) != ndim:
            raise ValueError(f"axes must have {ndim} entries like center {center!r}, got {axes!r}")
        turn = finite_vector(angles, np.size(angles), "angles")
        if turn.size != 1 and (turn.size != 3 or ndim == 2):
            raise ValueError(f"angles must be phi (or (phi, theta, psi) for a 3D ellipsoid), got {angles!r}")
        object.__setattr__(self, "center", tuple(finite_vector(center, ndim, "center").tolist()))
        object.__setattr__(self, "axes", tuple(as_positive(axes, ndim, "axes").tolist()))
        object.__setattr__(self, "mu", finite_scalar(mu, "mu"))
        object.__setattr__(self, "angles", tuple(np.concatenate([turn, [0.0, 0.0]])[:3].tolist()))

    @property
    def ndim(self) -> int:
        """2 for an ellipse, 3 for an ellipsoid."""
        return len(self.center)

    def rotation(self) -> np.ndarray:
        """The 3x3 rotation ``R``; its columns are the directions of the semi-axes."""
        (cp, sp), (ct, st), (cs, ss) = ((np.cos(a), np.sin(a)) for a in self.angles)
        rz = np.array([[cp, -sp, 0.0], [sp, cp, 0.0], [0.0, 0.0, 1.0]])
        rx = np.array([[1.0, 0.0, 0.0], [0.0, ct, -st], [0.0, st, ct]])
        return rz @ rx @ np.array([[cs, -ss, 0.0], [ss, cs, 0.0], [0.0, 0.0, 1.0]])

    def _parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centre (3,), ``S = diag(1/axes) R^T`` (inside: ``|S (p - c)| <= 1``), bounding half-widths (3,)."""
        axes, rot = np.array(self.axes + (1.0,) * (3 - self.ndim)), self.rotation()
        center = np.array(self.center + (0.0,) * (3 - self.ndim))
        return center, rot.T / axes[:, None], np.sqrt((rot**2) @ axes**2)


def _check_list(ellipsoids: Any, ndim: int) -> list[Ellipsoid]:
    items = list(ellipsoids)
    for e in items:
        if not isinstance(e, Ellipsoid):
            raise TypeError(f"phantoms are lists of drct.phantoms.Ellipsoid, got {type(e).__name__}: {e!r}")
        if e.ndim < ndim:
            raise ValueError(f"{e!r} is a 2D ellipse but the geometry is 3D; give it 3 axes and a z centre")
    return items


def _geometry(pg: Any) -> ProjectionGeometry | RayGeometry:
    if not isinstance(pg, (ProjectionGeometry, RayGeometry)):
        raise TypeError(f"pg must be a drct geometry (ct.parallel, ct.cone, ...), got {type(pg).__name__}")
    return pg


def _volume(vg: Any) -> VolumeGeometry:
    if not isinstance(vg, VolumeGeometry):
        raise TypeError(f"vg must be a drct.VolumeGeometry, got {type(vg).__name__}")
    return vg


def shepp_logan_ellipses(ndim: int = 2, radius: float = 1.0, center: Sequence[float] | None = None) -> list[Ellipsoid]:
    """The modified (high-contrast, Toft) Shepp-Logan phantom as 10 ellipses (2D) or ellipsoids (3D).

    The table lives in ``[-1, 1]^ndim`` (the skull spans ±0.69 in x, ±0.92 in y, ±0.81 in z) and is scaled by
    ``radius`` mm; ``mu`` (1 in the skull, 0.2 in the brain) is not scaled. Arrays show it upright with
    ``origin="lower"`` (y increases with the row index).

    Args:
        ndim: 2 or 3.
        radius: mm per unit of the normalised table.
        center: where the phantom's centre goes, ``(x, y[, z])`` in mm; default the origin.

    Example:
        >>> import drct as ct
        >>> e = ct.phantoms.shepp_logan_ellipses(3, radius=100.0)
        >>> len(e), e[0].axes
        (10, (69.0, 92.0, 81.0))
    """
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    scale = positive_scalar(radius, "radius")
    mid = np.zeros(ndim) if center is None else finite_vector(center, ndim, "center")
    out = []
    for mu, a, b, c, x, y, phi in _SHEPP_LOGAN:
        pos, axes = np.array([x, y, 0.0][:ndim]), np.array([a, b, c][:ndim])
        out.append(Ellipsoid(mid + scale * pos, scale * axes, mu, np.deg2rad(phi)))
    return out


def random_ellipses(rng: np.random.Generator, radius: float, mu: float = 0.02) -> list[Ellipsoid]:
    """A random 2D training phantom: a body ellipse of attenuation ``mu`` (1/mm) with 3 to 6 inclusions that add
    or remove 25-75% of it, inside a disc of ``radius`` mm.

    Example:
        >>> import numpy as np, drct as ct
        >>> items = ct.phantoms.random_ellipses(np.random.default_rng(0), 20.0)
        >>> 4 <= len(items) <= 7
        True
    """
    items = [Ellipsoid((0.0, 0.0), (0.9 * radius, 0.75 * radius), mu, rng.uniform(0, np.pi))]
    for _ in range(rng.integers(3, 7)):
        center, axes = rng.uniform(-0.45, 0.45, 2) * radius, rng.uniform(0.08, 0.3, 2) * radius
        contrast = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.25, 0.75) * mu)
        items.append(Ellipsoid(tuple(center), tuple(axes), contrast, rng.uniform(0, np.pi)))
    return items


def random_body(rng: np.random.Generator, radius: float, ndim: int = 2, mu: float = 0.02) -> list[Ellipsoid]:
    """A random CT-like training phantom (2D, or 3D ellipsoids) inside a disc/sphere of ``radius`` mm.

    Attenuation in 1/mm relative to soft tissue ``mu`` (0.02/mm: water near 60 keV): a body ellipse of ``mu``
    (semi-axes 0.75-0.95 and 0.55-0.8 of ``radius``, turned by up to ±0.3 rad; in 3D 0.6-0.95 along z); with
    probability 1/2 two lungs (``-0.7 mu``, left and right); 1-3 bones (``+0.9 mu``) and 2-5 lesions
    (``+(0.05-0.3) mu`` or ``-(0.02-0.06) mu``) within 0.65 of the body's semi-axes. The values stay >= 0
    (lungs leave ``0.3 mu``, at most 5 darker lesions take ``0.06 mu`` each). The training set of
    ``examples/learned/end_to_end.py``.

    Example:
        >>> import numpy as np, drct as ct
        >>> items = ct.phantoms.random_body(np.random.default_rng(0), 100.0)
        >>> x = ct.phantoms.rasterize(items, ct.VolumeGeometry((64, 64), voxel_size=200.0 / 64))
        >>> bool(x.min() >= 0.0 and 0.015 < np.median(x[x > 0]) < 0.025)
        True
    """
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    radius = positive_scalar(radius, "radius")
    turn = rng.uniform(-0.3, 0.3)
    ax, ay, az = rng.uniform(0.75, 0.95) * radius, rng.uniform(0.55, 0.8) * radius, rng.uniform(0.6, 0.95) * radius
    c, s = np.cos(turn), np.sin(turn)

    def add(u: float, v: float, w: float, axes: Any, value: float, angle: float) -> None:
        """An ellipse at body coordinates (fractions of the body's semi-axes) ``u, v, w``, turned with it."""
        x, y = u * ax, v * ay
        items.append(Ellipsoid((c * x - s * y, s * x + c * y, w * az)[:ndim], tuple(axes)[:ndim], value, angle))

    def inner() -> tuple[float, float, float]:  # a point within 0.65 of the body's semi-axes
        r, phi = 0.65 * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        return r * np.cos(phi), r * np.sin(phi), rng.uniform(-0.5, 0.5)

    items: list[Ellipsoid] = []
    add(0.0, 0.0, 0.0, (ax, ay, az), mu, turn)
    if rng.random() < 0.5:  # lungs: mirror images, apart and inside the body
        u, v = rng.uniform(0.4, 0.45), rng.uniform(-0.1, 0.15)
        axes = (rng.uniform(0.18, 0.25) * ax, rng.uniform(0.4, 0.55) * ay, 0.6 * az)
        for side in (-1.0, 1.0):
            add(side * u, v, 0.0, axes, -0.7 * mu, turn + side * rng.uniform(0.0, 0.15))
    for _ in range(rng.integers(1, 4)):  # bones
        add(*inner(), rng.uniform(0.03, 0.08, 3) * radius, 0.9 * mu, rng.uniform(0, np.pi))
    for _ in range(rng.integers(2, 6)):  # lesions, mostly brighter
        value = rng.uniform(0.05, 0.3) * mu if rng.random() < 0.6 else -rng.uniform(0.02, 0.06) * mu
        add(*inner(), rng.uniform(0.03, 0.1, 3) * radius, float(value), rng.uniform(0, np.pi))
    return items


def rasterize(ellipsoids: Sequence[Ellipsoid], vg: VolumeGeometry, supersample: int = 4) -> np.ndarray:
    """Voxel averages of an ellipsoid phantom on ``vg``, as a float32 array of shape ``vg.shape``.

    The average over each voxel is exact along x (each sample line's chord is intersected with the voxel) and
    a ``supersample``-point midpoint rule along y and z, so edges are anti-aliased. Works block by block.

    Args:
        ellipsoids: the phantom.
        vg: the volume grid; a 2D grid gets the ``z = 0`` slice.
        supersample: sample lines per voxel along y and along z (>= 1).

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((100, 100), voxel_size=0.1)
        >>> x = ct.phantoms.rasterize([ct.phantoms.Ellipsoid((0.0, 0.0), (2.0, 2.0))], vg)
        >>> bool(abs(x.sum() * 0.1 * 0.1 - np.pi * 2.0**2) < 1e-3 * np.pi * 2.0**2)
        True
    """
    vg = _volume(vg)
    if isinstance(supersample, bool) or not isinstance(supersample, (int, np.integer)) or supersample < 1:
        raise ValueError(f"supersample must be an integer >= 1, got {supersample!r}")
    items, s, pad = _check_list(ellipsoids, vg.ndim), int(supersample), 3 - vg.ndim
    nz, ny, nx = (1,) * pad + vg.shape
    first, step = tuple(vg.first_center) + (0.0,) * pad, tuple(vg.spacing_xyz) + (1.0,) * pad
    x_edges = vg.extent_min[0] + step[0] * np.arange(nx + 1)
    sub = (np.arange(s) + 0.5) / s - 0.5
    y_lines = first[1] + step[1] * (np.arange(ny)[:, None] + sub)  # (ny, s)
    z_lines = first[2] + step[2] * (np.arange(nz)[:, None] + sub) if pad == 0 else np.zeros((1, 1))
    line = nx * s * z_lines.shape[1]  # work per y row of one z layer; blocks hold about 4M samples
    slab = max(1, (1 << 22) // (ny * line))
    block = max(1, (1 << 22) // (slab * line))
    out = np.zeros((nz, ny, nx))

    def rows(lines: np.ndarray, lo: float, hi: float) -> slice:
        keep = np.flatnonzero((lines.max(axis=1) >= lo) & (lines.min(axis=1) <= hi))
        return slice(int(keep[0]), int(keep[-1]) + 1) if keep.size else slice(0, 0)

    for k0, j0 in [(k, j) for k in range(0, nz, slab) for j in range(0, ny, block)]:
        for e in items:
            c, sm, half = e._parts()
            zs = rows(z_lines[k0 : k0 + slab], c[2] - half[2], c[2] + half[2])
            ys = rows(y_lines[j0 : j0 + block], c[1] - half[1], c[1] + half[1])
            i0 = max(0, int(np.searchsorted(x_edges, c[0] - half[0], side="right")) - 1)
            i1 = min(nx, int(np.searchsorted(x_edges, c[0] + half[0], side="left")))
            if zs.stop <= zs.start or ys.stop <= ys.start or i1 <= i0:
                continue
            dz = z_lines[k0 : k0 + slab][zs][:, :, None, None] - c[2]  # (z rows, s, 1, 1)
            dy = y_lines[j0 : j0 + block][ys][None, None] - c[1]  # (1, 1, y rows, s)
            # |S (p - c)|^2 = |S_x dx + w|^2 with w = S_y dy + S_z dz: a quadratic in dx on each sample line
            w = [sm[r, 1] * dy + sm[r, 2] * dz for r in range(3)]
            qa = float(sm[:, 0] @ sm[:, 0])
            mid = c[0] - sum(sm[r, 0] * w[r] for r in range(3)) / qa
            root = np.sqrt(np.maximum((mid - c[0]) ** 2 - (sum(wr * wr for wr in w) - 1.0) / qa, 0.0))
            lo, hi = x_edges[i0:i1], x_edges[i0 + 1 : i1 + 1]
            cover = np.clip((mid + root)[..., None], lo, hi) - np.clip((mid - root)[..., None], lo, hi)
            scale = e.mu / (step[0] * s * dz.shape[1])
            out[k0 + zs.start : k0 + zs.stop, j0 + ys.start : j0 + ys.stop, i0:i1] += cover.sum((1, 3)) * scale
    return out.reshape(vg.shape).astype(np.float32)


def ellipsoid_chords(rays: Any, center: Sequence[Any], axes: Sequence[Any], rotation: np.ndarray) -> Any:
    """Length of each ray's chord through one ellipsoid, clipped to the ray's range (Dr.Jit float64 rays).

    ``center`` and ``axes`` may be floats or Dr.Jit float64 values with gradients: the chord is differentiable in
    them and in the rays. 2D rays lie in the plane ``z = 0`` (a 2D ellipse is the slice of its ellipsoid).

    Example:
        >>> import drjit as dr, numpy as np
        >>> from drct.backend import types
        >>> from drct.geometry.ray_arrays import Rays
        >>> t = types("float64")
        >>> line = [t.Float64(3.0), t.Float64(-50.0)], [t.Float64(0.0), t.Float64(1.0)]
        >>> ray = Rays(*line, t.Float64(-dr.inf), t.Float64(dr.inf))
        >>> ellipsoid_chords(ray, (0.0, 0.0), (5.0, 5.0), np.eye(3))
        [8]
    """
    pad = [0.0] * (3 - len(rays.origin))
    o, d = list(rays.origin) + pad, list(rays.direction) + pad
    center = list(center) + [0.0] * (3 - len(center))
    axes = list(axes) + [1.0] * (3 - len(axes))
    # inside: |u + s w|^2 <= 1 with u = diag(1/axes) R^T (o - c), w = diag(1/axes) R^T d, s along the ray
    rel = [o[k] - center[k] for k in range(3)]
    u = [sum(float(rotation[k, r]) * rel[k] for k in range(3)) / axes[r] for r in range(3)]
    w = [sum(float(rotation[k, r]) * d[k] for k in range(3)) / axes[r] for r in range(3)]
    qa = w[0] * w[0] + w[1] * w[1] + w[2] * w[2]  # > 0: the axes are positive and |d| = 1
    cross = [u[1] * w[2] - u[2] * w[1], u[2] * w[0] - u[0] * w[2], u[0] * w[1] - u[1] * w[0]]
    disc = qa - (cross[0] * cross[0] + cross[1] * cross[1] + cross[2] * cross[2])  # Lagrange's identity
    mid = -(u[0] * w[0] + u[1] * w[1] + u[2] * w[2]) / qa
    half = dr.sqrt(dr.maximum(disc, 1e-300)) / qa  # (no infinite derivative of sqrt at 0 for grazing rays)
    length = dr.minimum(mid + half, rays.t_max) - dr.maximum(mid - half, rays.t_min)
    return dr.select(disc > 0, dr.maximum(length, 0.0), 0.0)


def _chords(items: list[Ellipsoid], rays: Any, t: Any) -> Any:
    """Sum of ``mu *`` chord length over the ellipsoids, for Dr.Jit float64 rays (clipped to their range)."""
    total = dr.zeros(t.Float64, dr.width(rays.t_min))
    for e in items:
        total += e.mu * ellipsoid_chords(rays, e.center, e.axes, e.rotation())
    return total


def project_ellipsoids(
    ellipsoids: Sequence[Ellipsoid], pg: ProjectionGeometry | RayGeometry, backend: str | None = None
) -> np.ndarray:
    """Exact line integrals of ellipsoids: ``sum mu * chord`` per ray, float32 of shape ``pg.shape``.

    Each ray is clipped to its own range (the source-to-pixel segment for cone/fan beams). Computed in float64
    with Dr.Jit, a few million rays per launch.

    Args:
        ellipsoids: the phantom (3D ellipsoids are sliced at ``z = 0`` by 2D geometries).
        pg: any projection geometry.
        backend: ``"llvm"`` or ``"cuda"``; default the active backend.

    Example:
        >>> import drct as ct
        >>> pg = ct.rays([[3.0, -50.0]], [[0.0, 1.0]])
        >>> ct.phantoms.project_ellipsoids([ct.phantoms.Ellipsoid((0.0, 0.0), (5.0, 5.0))], pg)
        array([8.], dtype=float32)
    """
    pg = _geometry(pg)
    items, t = _check_list(ellipsoids, pg.ndim), types("float64", backend)
    vectors, out, chunk = geometry_vectors(pg, t), np.empty(pg.num_rays), 1 << 22
    for start in range(0, pg.num_rays, chunk):
        count = min(chunk, pg.num_rays - start)
        values = _chords(items, make_rays(pg, t, vectors, lanes(t, start, count)), t)
        dr.eval(values)
        out[start : start + count] = values.numpy()
    return out.reshape(pg.shape).astype(np.float32)


def _radius(radius: float | None, vg: VolumeGeometry | None) -> float:
    if radius is not None:
        return positive_scalar(radius, "radius")
    if vg is None:
        raise ValueError(
            "the phantom size must be given: pass radius= (mm per unit of the [-1, 1] table) or vg= (the "
            "phantom then fills that volume, as in shepp_logan(vg))"
        )
    return min(n * h for n, h in zip(vg.shape, vg.voxel_size, strict=True)) / 2


def shepp_logan(vg: VolumeGeometry, radius: float | None = None, supersample: int = 4) -> np.ndarray:
    """The modified Shepp-Logan phantom rasterised on ``vg`` (voxel averages), float32 of shape ``vg.shape``.

    Centred on ``vg.center``; by default scaled by half the smallest extent of the volume, so it fills it.

    Args:
        vg: the volume grid (2D or 3D).
        radius: mm per unit of the normalised ``[-1, 1]`` table; default ``min(shape * voxel_size) / 2``.
        supersample: see :func:`rasterize`.

    Example:
        >>> import drct as ct
        >>> x = ct.phantoms.shepp_logan(ct.VolumeGeometry((64, 64, 64)))
        >>> x.shape, round(float(x.max()), 2)
        ((64, 64, 64), 1.0)
    """
    vg = _volume(vg)
    return rasterize(shepp_logan_ellipses(vg.ndim, _radius(radius, vg), vg.center), vg, supersample)


def shepp_logan_projections(
    pg: ProjectionGeometry | RayGeometry, radius: float | None = None, vg: VolumeGeometry | None = None
) -> np.ndarray:
    """Exact line integrals of the modified Shepp-Logan phantom on ``pg``, float32 of shape ``pg.shape``.

    Args:
        pg: any projection geometry.
        radius: mm per unit of the normalised table; default taken from ``vg`` as in :func:`shepp_logan`.
        vg: the volume the phantom fills (sets the default ``radius`` and the centre ``vg.center``).

    Raises:
        ValueError: when neither ``radius`` nor ``vg`` is given.

    Example:
        >>> import drct as ct
        >>> pg = ct.parallel([0.0], 5)
        >>> round(float(ct.phantoms.shepp_logan_projections(pg, radius=100.0)[0, 2]), 2)  # the central ray
        51.46
    """
    pg = _geometry(pg)
    vg = None if vg is None else _volume(vg)
    if vg is not None and vg.ndim != pg.ndim:
        raise ValueError(f"vg is {vg.ndim}D (shape {vg.shape}) but pg is {pg.ndim}D ({pg!r})")
    center = None if vg is None else vg.center
    return project_ellipsoids(shepp_logan_ellipses(pg.ndim, _radius(radius, vg), center), pg)
