"""PyTomography's SPECT system matrix on drct's SPECT geometry (for tests/test_spect_peers.py and
benchmarks/bench_spect_peers.py), and the analytic helpers the SPECT tests share.

Axis conventions (found by matching projections of an asymmetric phantom without physics over every flip,
transpose and angle offset, then fixed here): PyTomography's object is ``(x, y, z)`` in cm with drct's ``x``
reversed; its view angle is ``180° + θ`` (degrees); its projections are ``(views, r, z)``, drct's
``(views, z, u)`` = the transpose, times the voxel size in mm (PyTomography sums voxels, drct integrates in mm).
Its attenuation is ``exp(-Σ μ Δx)`` with the same midpoint rule as drct; its collimator response is a separable
Gaussian per depth plane with ``σ(d)`` given as a function, here drct's :class:`~drct.emission.Collimator`.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class PyTomographySPECT:
    """PyTomography's SPECT system matrix for drct's volume grid ``vg`` (cubic voxels, square in-plane), geometry
    ``g``, μ-map (1/mm, drct layout or None) and collimator (or None): :meth:`forward` and :meth:`back` take and
    return numpy arrays in drct's layouts (``back`` is the transpose of the layout changes around
    PyTomography's back projection)."""

    def __init__(self, vg: Any, g: Any, mu: np.ndarray | None, collimator: Any, min_sigmas: float = 4.0) -> None:
        from pytomography.metadata.SPECT import SPECTObjectMeta, SPECTProjMeta, SPECTPSFMeta
        from pytomography.projectors.SPECT import SPECTSystemMatrix
        from pytomography.transforms.SPECT import SPECTAttenuationTransform, SPECTPSFTransform

        h = float(vg.voxel_size[2])
        if not np.allclose(vg.voxel_size, h) or vg.shape[1] != vg.shape[2]:
            raise ValueError("PyTomography's rotate-and-sum needs cubic voxels and a square x-y grid")
        nz, n, _ = vg.shape
        self.h, cm = h, h / 10.0
        om = SPECTObjectMeta([cm, cm, cm], (n, n, nz))
        radii = np.asarray(g.radius, dtype=np.float64) / 10.0
        pm = SPECTProjMeta((n, nz), [cm, cm], 180.0 + np.degrees(g.angles), radii=radii)
        transforms: list[Any] = []
        if mu is not None:
            transforms.append(SPECTAttenuationTransform(attenuation_map=self.to_object(np.asarray(mu) * 10.0)))
        if collimator is not None:
            sigma = lambda r: collimator.sigma(np.asarray(r) * 10.0) / 10.0  # noqa: E731  (cm -> mm -> cm)
            transforms.append(SPECTPSFTransform(SPECTPSFMeta((), sigma_fit=sigma, min_sigmas=min_sigmas)))
        self.H = SPECTSystemMatrix(transforms, [], om, pm)

    @staticmethod
    def to_object(volume: np.ndarray) -> Any:
        """A drct volume ``(z, y, x)`` as PyTomography's object ``(x, y, z)`` with ``x`` reversed."""
        import torch

        return torch.tensor(np.ascontiguousarray(np.transpose(volume, (2, 1, 0))[::-1]), dtype=torch.float32)

    def forward(self, volume: np.ndarray) -> np.ndarray:
        return np.transpose(self.H.forward(self.to_object(volume)).numpy(), (0, 2, 1)) * self.h

    def back(self, projections: np.ndarray) -> np.ndarray:
        import torch

        p = torch.tensor(np.ascontiguousarray(np.transpose(projections, (0, 2, 1)) * self.h), dtype=torch.float32)
        return np.ascontiguousarray(np.transpose(self.H.backward(p).numpy()[::-1], (2, 1, 0)))


def chord(p: np.ndarray, e: np.ndarray, r: float) -> float:
    """Distance from ``p`` (inside a circle of radius ``r`` about the origin) to the circle along ``e``."""
    b = float(p @ e)
    return -b + float(np.sqrt(b * b - (p @ p - r * r)))


def disk_fraction(vg: Any, radius: float, sub: int = 8) -> np.ndarray:
    """Area fraction of each voxel column inside the disk of ``radius`` (anti-aliased cylinder along z)."""
    _nz, ny, nx = vg.shape
    _, dy, dx = vg.voxel_size
    off = (np.arange(sub) + 0.5) / sub - 0.5
    xs = ((np.arange(nx) - (nx - 1) / 2)[:, None] + off).reshape(-1) * dx
    ys = ((np.arange(ny) - (ny - 1) / 2)[:, None] + off).reshape(-1) * dy
    inside = (xs[None, :] ** 2 + ys[:, None] ** 2 <= radius**2).astype(np.float64)
    frac = inside.reshape(ny, sub, nx, sub).mean(axis=(1, 3))
    return np.broadcast_to(frac, vg.shape).copy()


def fwhm_from_second_moment(profile: np.ndarray, pitch: float) -> float:
    """FWHM of a Gaussian with the profile's standard deviation (mm)."""
    pos = np.arange(profile.size) * pitch
    centre = (profile * pos).sum() / profile.sum()
    sigma = np.sqrt((profile * (pos - centre) ** 2).sum() / profile.sum())
    return float(sigma * 2.0 * np.sqrt(2.0 * np.log(2.0)))


Forward = Any  # a function volume (numpy, drct layout) -> projections (numpy, drct layout)


def point_source_attenuation(make: Any, mu_water: float = 0.0154) -> tuple[np.ndarray, np.ndarray]:
    """A point source 6 mm and 4 mm off the axis in a water cylinder (radius 26 mm, anti-aliased), 16 views:
    ``(measured, expected)`` per view, measured = counts with attenuation / counts without, expected =
    ``exp(-μ L)`` with ``L`` the chord from the point to the cylinder's surface towards the camera.
    ``make(vg, g, mu, collimator)`` returns the forward projection to test."""
    import drct as ct
    from drct.emission import Collimator

    vg = ct.VolumeGeometry((8, 32, 32), voxel_size=2.0)
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    g = ct.spect(angles, 80.0, (8, 32), 2.0)
    cyl = 26.0
    mu = (mu_water * disk_fraction(vg, cyl)).astype(np.float32)
    f = np.zeros(vg.shape, np.float32)
    f[4, 16 + 2, 16 + 3] = 1.0  # voxel centres sit at (i - 15.5) * 2 mm: this point is at (x, y) = (7, 5) mm
    lehr = Collimator.lehr()
    counts = make(vg, g, mu, lehr)(f).sum(axis=(1, 2))
    free = make(vg, g, None, lehr)(f).sum(axis=(1, 2))
    p = np.array([7.0, 5.0])
    expected = np.array([np.exp(-mu_water * chord(p, np.array([-np.sin(a), np.cos(a)]), cyl)) for a in angles])
    return counts / free, expected


def line_source_fwhm(make: Any, radius: float = 150.0) -> list[tuple[float, float, float]]:
    """A line source along ``z`` 40 mm off the axis seen at 3 distances from the collimator (views at 90°,
    0° and 270°: ``radius - 40``, ``radius``... ): ``(distance, measured FWHM, model FWHM)`` in mm, measured
    from the second moment of the profile across the columns (rows summed)."""
    import drct as ct
    from drct.emission import Collimator

    vg = ct.VolumeGeometry((8, 64, 64), voxel_size=2.0)
    lehr = Collimator.lehr()
    f = np.zeros(vg.shape, np.float32)
    f[:, 32, 52] = 1.0  # x = (52 - 31.5) * 2 = 41 mm, y = 1 mm
    out = []
    for angle in (np.pi / 2, 0.0, 3 * np.pi / 2):
        g = ct.spect([angle], radius, (8, 64), 2.0)
        y = make(vg, g, None, lehr)(f)[0]
        # the camera looks back from e_d = (-sin θ, cos θ): the source's depth towards it is p · e_d
        depth = float(np.array([41.0, 1.0]) @ np.array([-np.sin(angle), np.cos(angle)]))
        distance = radius - depth
        out.append((distance, fwhm_from_second_moment(y.sum(axis=0), 2.0), float(lehr.fwhm(distance))))
    return out
