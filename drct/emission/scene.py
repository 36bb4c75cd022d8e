"""Emission scenes: a SPECT scanner, activity and attenuation objects, and Poisson counts, from a TOML file.

A scene file is an emission scene when it has a ``[scanner]`` table (CT scenes have ``[geometry]``); ``drct
simulate`` reads either. Tables (units as in ``scenes/README.md``):

* ``[scene]``: ``name``, ``description``.
* ``[volume]``: ``shape = [nz, ny, nx]``, ``voxel_size`` (one or per axis): the grid the objects are voxelised on
  (anti-aliased, :func:`drct.phantoms.rasterize`) and the reconstruction grid; the detector rows are its slices.
* ``[scanner]``: ``type = "spect"``; ``angles`` (list or ``{count, start, stop}``, default a full turn),
  ``radius`` (mm from the axis to the collimator face: one, or one per view for a body-contour orbit),
  ``det_cols`` and ``det_spacing`` (column pitch; rows are the volume's slices), ``collimator``
  (``"lehr"``, ``"none"`` or a table ``{hole_diameter, hole_length, intrinsic_fwhm, gap}``).
* ``[[objects]]``: ``type = "ellipsoid"`` (``center``, ``axes``, ``angles``) or ``"volume"`` (``file``: an
  ``.npy`` on the grid), each with ``activity`` (per mm³, default 0) and ``mu`` (1/mm, e.g.
  ``"0.154 /cm"``, default 0); overlapping objects add up (a lung inside the body: a negative activity and
  μ relative to the body's), and the sums must be >= 0.
* ``[counts]``: ``total`` (expected photopeak counts over all views: sets the sensitivity), ``noise``
  (``"poisson"`` or ``"none"``).

Example:
    >>> from drct.emission.scene import load_emission_scene
    >>> scene = load_emission_scene("scenes/emission/spect_torso.toml", scale=0.25)
    >>> sim = scene.simulate(seed=0)
    >>> sim.counts.shape == scene.geometry.shape, bool(abs(sim.expected.sum() / scene.total - 1) < 1e-4)
    (True, True)
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..geometry.volume import VolumeGeometry
from ..phantoms import Ellipsoid, rasterize
from ..scene.files import guard
from ..scene.schema import Table
from .collimator import Collimator
from .geometry import SpectGeometry, spect

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

OBJECT_TYPES = ("ellipsoid", "volume")


@dataclass
class EmissionObject:
    """One object: an ellipsoid (``shape``) or voxel values (``values``), with its activity and μ."""

    name: str
    activity: float
    mu: float
    shape: Ellipsoid | None = None
    values: np.ndarray | None = None

    def voxels(self, vg: VolumeGeometry) -> np.ndarray:
        """The object's indicator (or values) on the grid, float64."""
        if self.values is not None:
            return self.values.astype(np.float64)
        assert self.shape is not None
        return rasterize([self.shape], vg).astype(np.float64)


@dataclass
class EmissionSimulation:
    """What :meth:`EmissionScene.simulate` returns: ``counts`` (Poisson draws, or ``expected`` without noise),
    ``expected`` (``sensitivity · A f``), the true ``activity`` and ``mu`` maps, and the ``seed``."""

    counts: np.ndarray
    expected: np.ndarray
    activity: np.ndarray
    mu: np.ndarray
    sensitivity: float
    seed: int | None


@dataclass
class EmissionScene:
    """A SPECT scan to simulate (see the module docstring for the file)."""

    volume: VolumeGeometry
    geometry: SpectGeometry
    collimator: Collimator | None
    objects: list[EmissionObject]
    total: float = 1e6
    noise: str = "poisson"
    name: str = "spect"
    description: str = ""
    file: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def activity(self) -> np.ndarray:
        """The activity map (float32, on ``volume``)."""
        return self._sum("activity")

    def mu(self) -> np.ndarray:
        """The attenuation map (1/mm, float32, on ``volume``)."""
        return self._sum("mu")

    def _sum(self, what: str) -> np.ndarray:
        out = np.zeros(self.volume.shape)
        for obj in self.objects:
            weight = getattr(obj, what)
            if weight != 0:
                out += weight * obj.voxels(self.volume)
        return out.astype(np.float32)

    def projector(self, mu: np.ndarray | None = None, dtype: str = "float32") -> Any:
        from .projector import SPECTProjector

        m = self.mu() if mu is None else mu
        return SPECTProjector(
            self.volume, self.geometry, mu=m if m.any() else None, collimator=self.collimator, dtype=dtype
        )

    def simulate(self, seed: int | None = 0) -> EmissionSimulation:
        """Expected counts ``sensitivity · A f`` scaled to ``total`` and their Poisson draw (same seed, same
        counts)."""
        f, mu = self.activity(), self.mu()
        for what, values in (("activity", f), ("mu", mu)):
            if values.min() < 0:
                raise ValueError(
                    f"scene {self.name!r}: the objects' {what} values add up to a minimum of {values.min():g}; "
                    "it must be >= 0 everywhere"
                )
        if not f.any():
            raise ValueError(f"scene {self.name!r}: no object has activity; nothing to image")
        primary = np.asarray(self.projector(mu)(f), dtype=np.float64)
        sensitivity = self.total / primary.sum()
        expected = sensitivity * primary
        rng = np.random.default_rng(seed)
        counts = rng.poisson(expected).astype(np.float32) if self.noise == "poisson" else expected.astype(np.float32)
        return EmissionSimulation(counts, expected.astype(np.float32), f, mu, float(sensitivity), seed)

    def scaled(self, factor: float) -> EmissionScene:
        """The same scan with about ``factor`` times the views and the voxels per axis (same field of view)."""
        if not (isinstance(factor, (int, float)) and 0 < factor <= 1):
            raise ValueError(f"scale must be in (0, 1], got {factor!r}")
        vg = self.volume
        shape = tuple(max(2, round(n * factor)) for n in vg.shape)
        size = tuple(h * n / m for h, n, m in zip(vg.voxel_size, vg.shape, shape, strict=True))
        volume = VolumeGeometry(shape, size, vg.center)
        g = self.geometry
        views = np.round(np.linspace(0, g.num_views - 1, max(2, round(g.num_views * factor)))).astype(int)
        cols = max(2, round(g.det_shape[1] * factor))
        pitch = g.det_spacing[1] * g.det_shape[1] / cols
        geometry = spect(g.angles[views], g.radius[views], (shape[0], cols), (size[0], pitch))
        objects = []
        for obj in self.objects:
            if obj.values is not None:
                raise ValueError(f"object {obj.name!r}: a voxel volume cannot be rescaled; use scale = 1")
            objects.append(obj)
        return EmissionScene(
            volume,
            geometry,
            self.collimator,
            objects,
            self.total,
            self.noise,
            self.name,
            self.description,
            self.file,
            self.data,
        )


def is_emission_scene(path: str | os.PathLike[str]) -> bool:
    """True when the TOML file at ``path`` has a ``[scanner]`` table (an emission scene)."""
    from ..scene.files import MAX_FILE_BYTES

    p = Path(path)
    try:
        if not p.is_file() or p.stat().st_size > MAX_FILE_BYTES:  # a FIFO would block; the CT loader says why
            return False
        return isinstance(tomllib.loads(p.read_text(encoding="utf-8")).get("scanner"), dict)
    except (OSError, ValueError, RecursionError):  # the CT loader reports what is wrong with the file
        return False


def load_emission_scene(
    path: str | os.PathLike[str],
    overrides: dict[str, Any] | None = None,
    scale: float = 1.0,
    allow_outside: bool = False,
) -> EmissionScene:
    """Read an emission scene file (module docstring); errors are :class:`drct.SceneError` naming the key."""
    from ..scene.files import _override

    file = str(path)
    with guard(file, ""):
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    for key, value in (overrides or {}).items():
        _override(data, str(key), value, file)
    scene = parse_emission_scene(data, file, Path(path).parent, allow_outside)
    if scale != 1.0:
        with guard(file, ""):
            scene = scene.scaled(scale)
    return scene


def _collimator(t: Table) -> Collimator | None:
    value = t.get("collimator", "lehr")
    if isinstance(value, str):
        if value not in ("lehr", "none"):
            t.fail("collimator", f"expected 'lehr', 'none' or a table of hole sizes, got {value!r}")
        return Collimator.lehr() if value == "lehr" else None
    c = t.table("collimator")
    out = Collimator(
        hole_diameter=c.quantity("hole_diameter", "length", positive=True),
        hole_length=c.quantity("hole_length", "length", positive=True),
        intrinsic_fwhm=c.quantity("intrinsic_fwhm", "length", 0.0),
        gap=c.quantity("gap", "length", 0.0),
    )
    c.finish()
    return out


def parse_emission_scene(data: Any, file: str | None = None, base: Path | None = None, allow_outside: bool = False):
    """An :class:`EmissionScene` from parsed TOML tables."""
    root = Table(data, file, "", base, allow_outside)
    meta = root.table("scene", None) or Table({}, file, "scene")
    name = meta.string("name", Path(file).stem if file else "spect")
    description = meta.string("description", "")
    meta.finish()
    v = root.table("volume")
    shape = v.ints("shape", (3,))
    size = v.quantities("voxel_size", "length", (1, 3), positive=True)
    v.finish()
    with guard(file, "volume"):
        vg = VolumeGeometry(shape, size if len(size) > 1 else size[0])
    s = root.table("scanner")
    s.string("type", choices=("spect",))
    angles = s.angles("angles") if s.has("angles") else np.linspace(0, 2 * np.pi, 60, endpoint=False)
    radius = s.array("radius", "length")
    cols = s.integer("det_cols")
    pitch = s.quantity("det_spacing", "length", positive=True)
    collimator = _collimator(s)
    s.finish()
    with guard(file, "scanner"):
        geometry = spect(angles, radius, (shape[0], cols), (vg.voxel_size[0], pitch))
    objects: list[EmissionObject] = []
    for i, t in enumerate(root.tables("objects")):
        kind = t.string("type", choices=OBJECT_TYPES)
        obj_name = t.string("name", f"{kind}_{i}")
        activity = t.quantity("activity", "number", 0.0)
        mu = t.quantity("mu", "attenuation", 0.0)
        with guard(file, t.key):
            if kind == "ellipsoid":
                center = t.quantities("center", "length", (3,), (0.0, 0.0, 0.0))
                axes = t.quantities("axes", "length", (3,), positive=True)
                turn = t.quantities("angles", "angle", (1, 3), (0.0,))
                obj = EmissionObject(obj_name, activity, mu, shape=Ellipsoid(center, axes, angles=turn))
            else:
                from ..io import read_array

                values = np.asarray(read_array(t.file_path("file", (".npy",)), "object volume"), dtype=np.float64)
                if values.shape != vg.shape:
                    t.fail("file", f"the volume has shape {values.shape}, the grid {vg.shape}")
                obj = EmissionObject(obj_name, activity, mu, values=values)
        t.finish()
        objects.append(obj)
    if not objects:
        root.fail("objects", "an emission scene needs at least one object")
    c = root.table("counts", None) or Table({}, file, "counts")
    total = c.quantity("total", "number", 1e6, positive=True)
    noise = c.string("noise", "poisson", ("poisson", "none"))
    c.finish()
    root.finish()
    return EmissionScene(vg, geometry, collimator, objects, total, noise, name, description, file, dict(data))
