"""Circular orbits, the one kind of scan the file formats describe: build one, or read one back from a geometry.

A format stores a scan as angles, pixel pitches and (cone beam) two distances; drct stores vectors.
:func:`circular_geometry` goes one way (through :func:`drct.cone`/:func:`drct.parallel`, so the angle convention
is drct's), :func:`circular_orbit` the other, refusing a geometry that is no circular orbit rather than writing
a file that would describe another scan.

Example:
    >>> import numpy as np, drct as ct
    >>> from drct.formats.orbit import circular_orbit
    >>> orbit = circular_orbit(ct.cone(np.linspace(0, np.pi, 3), (2, 4), (0.5, 0.25), 100.0, 300.0))
    >>> np.round(np.degrees(orbit.angles), 6).tolist(), orbit.det_spacing, orbit.src_orig_dist, orbit.src_det_dist
    ([0.0, 90.0, 180.0], (0.5, 0.25), 100.0, 300.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry.factories import cone, parallel
from ..geometry.projection import ProjectionGeometry


@dataclass(frozen=True)
class Orbit:
    """A circular scan: angles (radians, drct's convention), detector ``(rows, cols)``, pitches
    ``(row, col)`` in mm, and for a cone beam the source-axis and source-detector distances in mm."""

    angles: np.ndarray
    det_shape: tuple[int, int]
    det_spacing: tuple[float, float]
    src_orig_dist: float | None = None
    src_det_dist: float | None = None


def circular_geometry(orbit: Orbit) -> ProjectionGeometry:
    """The drct geometry of ``orbit``: :func:`drct.cone` if it has distances, else :func:`drct.parallel`."""
    if orbit.src_orig_dist is None or orbit.src_det_dist is None:
        return parallel(orbit.angles, orbit.det_shape, orbit.det_spacing)
    return cone(orbit.angles, orbit.det_shape, orbit.det_spacing, orbit.src_orig_dist, orbit.src_det_dist)


def circular_orbit(pg: ProjectionGeometry) -> Orbit:
    """The circular orbit ``pg`` describes; ValueError if it is none (a helix, a shifted or tilted detector,
    a curved detector, a 2D geometry), since the formats could not store it."""
    if pg.ndim != 3 or pg.curved:
        raise ValueError(f"only flat-detector 3D circular scans can be written, got {pg!r} (curved={pg.curved})")
    src, det_u, det_v = np.asarray(pg.src), np.asarray(pg.det_u), np.asarray(pg.det_v)
    angles = np.unwrap(np.arctan2(src[:, 0], -src[:, 1]))
    spacing = (float(np.linalg.norm(det_v[0])), float(np.linalg.norm(det_u[0])))
    rows, cols = pg.det_shape
    if pg.beam == "cone":
        so = float(np.linalg.norm(src[0, :2]))
        sd = float(np.linalg.norm(np.asarray(pg.det)[0] - src[0]))
        orbit = Orbit(angles, (rows, cols), spacing, so, sd)
    else:
        orbit = Orbit(angles, (rows, cols), spacing)
    rebuilt = circular_geometry(orbit).to_vectors()
    given = pg.to_vectors()
    scale = max(1.0, float(np.abs(given).max()))
    if not np.allclose(rebuilt, given, rtol=0, atol=1e-6 * scale):
        worst = float(np.abs(rebuilt - given).max())
        raise ValueError(
            f"the geometry is not a centred circular orbit (it differs from the nearest one by {worst:.3g} mm): "
            "the file formats store angles, pitches and distances only"
        )
    return orbit
