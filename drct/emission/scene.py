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
  Or ``type = "pet"``: ``rings``, ``crystals_per_ring``, ``radius`` (axis to crystal faces), ``crystal_size``
  (one, or ``[axial, transaxial]``), ``ring_spacing`` (default the axial crystal size); the sinogram's ``span``,
  ``max_ring_difference``, ``mash``, ``radial_bins`` (:func:`drct.pet.sinogram`); ``tof = {bins, bin_width,
  fwhm}`` for time of flight (lengths along the LOR).
* ``[[objects]]``: ``type = "ellipsoid"`` (``center``, ``axes``, ``angles``) or ``"volume"`` (``file``: an
  ``.npy`` on the grid), each with ``activity`` (per mm³, default 0) and ``mu`` (1/mm, e.g.
  ``"0.154 /cm"``, default 0); overlapping objects add up (a lung inside the body: a negative activity and
  μ relative to the body's), and the sums must be >= 0.
* ``[counts]``: ``total`` (expected photopeak / true coincidence counts over all views: sets the
  sensitivity), ``noise`` (``"poisson"`` or ``"none"``), and for PET ``randoms`` (expected random coincidences
  as a fraction of ``total``, spread evenly over the sinogram bins: the additive term of ``y ~ Poisson(A f + r)``).

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..geometry.volume import VolumeGeometry
from ..pet.files import PetSetup
from ..pet.projector import check_inside_ring
from ..pet.scanner import scanner
from ..pet.tof import TOF
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
    ``expected`` (``sensitivity · A f + randoms``), the true ``activity`` and ``mu`` maps, the ``seed``, and
    the expected ``randoms`` per bin (PET; ``None`` without)."""

    counts: np.ndarray
    expected: np.ndarray
    activity: np.ndarray
    mu: np.ndarray
    sensitivity: float
    seed: int | None
    randoms: np.ndarray | None = None


@dataclass
class EmissionScene:
    """A SPECT or PET scan to simulate (see the module docstring for the file): ``geometry`` is the SPECT camera's
    views or the PET scanner and its sinogram layout (:class:`drct.pet.files.PetSetup`)."""

    volume: VolumeGeometry
    geometry: SpectGeometry | PetSetup
    collimator: Collimator | None
    objects: list[EmissionObject]
    total: float = 1e6
    noise: str = "poisson"
    name: str = "spect"
    description: str = ""
    file: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    randoms: float = 0.0

    @property
    def kind(self) -> str:
        """``"spect"`` or ``"pet"``."""
        return "pet" if isinstance(self.geometry, PetSetup) else "spect"

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
        if isinstance(self.geometry, PetSetup):
            return self.geometry.projector(self.volume, m if m.any() else None, dtype)
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
        randoms = None
        if self.randoms > 0:
            randoms = np.full(primary.shape, self.randoms * self.total / primary.size)
            expected = expected + randoms
        rng = np.random.default_rng(seed)
        counts = rng.poisson(expected).astype(np.float32) if self.noise == "poisson" else expected.astype(np.float32)
        return EmissionSimulation(
            counts,
            expected.astype(np.float32),
            f,
            mu,
            float(sensitivity),
            seed,
            None if randoms is None else randoms.astype(np.float32),
        )

    def scaled(self, factor: float) -> EmissionScene:
        """The same scan with about ``factor`` times the views and the voxels per axis (same field of view)."""
        if not (isinstance(factor, (int, float)) and 0 < factor <= 1):
            raise ValueError(f"scale must be in (0, 1], got {factor!r}")
        vg = self.volume
        shape = tuple(max(2, round(n * factor)) for n in vg.shape)
        size = tuple(h * n / m for h, n, m in zip(vg.voxel_size, vg.shape, shape, strict=True))
        volume = VolumeGeometry(shape, size, vg.center)
        g = self.geometry
        if isinstance(g, PetSetup):
            geometry: SpectGeometry | PetSetup = _scaled_pet(g, factor)
        else:
            geometry = _scaled_spect(g, factor, shape, size)
        objects = []
        for obj in self.objects:
            if obj.values is not None:
                raise ValueError(f"object {obj.name!r}: a voxel volume cannot be rescaled; use scale = 1")
            objects.append(obj)
        return replace(self, volume=volume, geometry=geometry, objects=objects)


def _scaled_spect(g: SpectGeometry, factor: float, shape: tuple[int, ...], size: tuple[float, ...]) -> SpectGeometry:
    views = np.round(np.linspace(0, g.num_views - 1, max(2, round(g.num_views * factor)))).astype(int)
    cols = max(2, round(g.det_shape[1] * factor))
    pitch = g.det_spacing[1] * g.det_shape[1] / cols
    return spect(g.angles[views], g.radius[views], (shape[0], cols), (size[0], pitch), g.offset[views])


def _scaled_pet(g: PetSetup, factor: float) -> PetSetup:
    """About ``factor`` times the crystals per ring (even) and the rings, larger crystals over the same ring."""
    sc = g.scanner
    n = max(4, 2 * round(sc.crystals_per_ring * factor / 2))
    rings = max(1, round(sc.rings * factor))
    grow = sc.crystals_per_ring / n
    spacing = sc.ring_spacing * sc.rings / rings
    size = (sc.crystal_size[0] * spacing / sc.ring_spacing, min(sc.crystal_size[1] * grow, 2 * np.pi * sc.radius / n))
    mrd = None if g.max_ring_difference is None else min(rings - 1, round(g.max_ring_difference * factor))
    span = min(g.span, 2 * ((rings - 1) // 2) + 1)
    mash = max(d for d in range(1, g.mash + 1) if (n // 2) % d == 0)
    radial = None if g.radial_bins is None else min(n - 1, max(1, round(g.radial_bins * factor)))
    return replace(
        g,
        scanner=scanner(rings, n, sc.radius, size, spacing, sc.phase),
        span=span,
        max_ring_difference=mrd,
        mash=mash,
        radial_bins=radial,
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
    modality = s.string("type", choices=("spect", "pet"))
    collimator = None
    if modality == "pet":
        geometry: SpectGeometry | PetSetup = _pet_setup(s, file)
    else:
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
    randoms = c.quantity("randoms", "number", 0.0) if modality == "pet" else 0.0
    if randoms < 0:
        c.fail("randoms", f"expected a fraction of the counts >= 0, got {randoms!r}")
    c.finish()
    root.finish()
    if modality == "pet":
        assert isinstance(geometry, PetSetup)
        with guard(file, "volume"):
            check_inside_ring(vg, geometry.scanner.radius, "volume")
    return EmissionScene(
        vg, geometry, collimator, objects, total, noise, name, description, file, dict(data), float(randoms)
    )


def _pet_setup(s: Table, file: str | None) -> PetSetup:
    """The ``[scanner]`` table of a PET scene (module docstring)."""
    rings = s.integer("rings")
    crystals = s.integer("crystals_per_ring", minimum=4)
    radius = s.quantity("radius", "length", positive=True)
    size = s.quantities("crystal_size", "length", (1, 2), (4.0,), positive=True)
    spacing = s.quantity("ring_spacing", "length", None, positive=True)
    span = s.integer("span", 1)
    mrd = s.integer("max_ring_difference", None, minimum=0)
    mash = s.integer("mash", 1)
    radial = s.integer("radial_bins", None)
    tof = None
    if s.has("tof"):
        t = s.table("tof")
        values = (t.integer("bins"), t.quantity("bin_width", "length", positive=True))
        fwhm = t.quantity("fwhm", "length", positive=True)
        t.finish()
        tof = TOF(values[0], values[1], fwhm)
    s.finish()
    with guard(file, "scanner"):
        sc = scanner(rings, crystals, radius, size if len(size) > 1 else size[0], spacing)
        setup = PetSetup(sc, span, mrd, mash, radial, tof)
        setup.sinogram()  # checks span, ring difference, mashing and radial bins
    return setup
