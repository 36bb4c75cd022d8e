"""The :class:`Scene`: geometry, objects, source and detector of one simulated scan, and its TOML file.

A scene file has the tables ``[scene]`` (``name``, ``description``, ``dtype``, ``compose``), ``[volume]`` (the
reconstruction grid written with the geometry: ``shape``, ``voxel_size``, ``center``), ``[geometry]`` (with an
optional ``[geometry.misalignment]``), ``[[objects]]``, ``[source]`` and ``[detector]``; see ``scenes/README.md``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import drjit as dr
import numpy as np
from tqdm.auto import tqdm

from ..backend import types
from ..geometry.projection import ProjectionGeometry
from ..geometry.volume import VolumeGeometry
from ..physics import get_material
from ..physics.forward import line_integrals as physics_line_integrals
from .detectors import DetectorModel, Ideal
from .errors import SceneError
from .geometry import Geometry, applicable, default_value
from .mesh_objects import MeshObject, trace_meshes
from .objects import SceneObject, is_drjit, plain
from .parameters import SceneParameters
from .simulate import Simulation, simulate
from .sources import Monochromatic, Source
from .writer import save_scene

COMPOSE = ("replace", "add")


class Scene:
    """A scan to simulate: build one with :func:`drct.load_scene` (or from its parts).

    Attributes:
        geometry: the nominal geometry (a registered geometry kind).
        objects: the scene objects, in file order.
        source, detector: the physics (``[source]``, ``[detector]``).
        misalignment: ``[geometry.misalignment]`` values (mm, radians; one or one per view; Dr.Jit values allowed).
        name, description, dtype, compose, file: from ``[scene]``; ``file`` is where the scene was read.

    Example:
        >>> import drct as ct
        >>> scene = ct.load_scene("scenes/shepp_logan_2d.toml", scale=0.25)
        >>> sim = scene.simulate(seed=0)
        >>> sim.projections.shape == scene.projection_geometry().shape
        True
    """

    def __init__(
        self,
        geometry: Geometry,
        objects: Sequence[SceneObject],
        source: Source | None = None,
        detector: DetectorModel | None = None,
        volume: VolumeGeometry | None = None,
        misalignment: dict[str, Any] | None = None,
        name: str = "scene",
        description: str = "",
        dtype: str = "float32",
        compose: str = "replace",
        file: str | None = None,
    ) -> None:
        self.geometry = geometry
        self.objects = list(objects)
        self.source = source if source is not None else Monochromatic()
        self.detector = detector if detector is not None else Ideal({})
        self._volume = volume
        self.misalignment = dict(misalignment or {})
        self.name, self.description, self.dtype, self.compose, self.file = name, description, dtype, compose, file
        self._nominal: tuple[ProjectionGeometry, VolumeGeometry | None] | None = None

    # ------------------------------------------------------------------ geometry
    def nominal_geometry(self) -> ProjectionGeometry:
        """The geometry without misalignment (numpy vectors)."""
        if self._nominal is None:
            self._nominal = self.geometry.build()
        return self._nominal[0]

    @property
    def volume(self) -> VolumeGeometry | None:
        """The reconstruction grid: ``[volume]``, else the one a geometry file or ASTRA dict carries, else None."""
        if self._volume is not None:
            return self._volume
        self.nominal_geometry()
        assert self._nominal is not None
        return self._nominal[1]

    def projection_geometry(self) -> ProjectionGeometry:
        """The exact geometry of the scan: the nominal one moved by the misalignment (Dr.Jit vectors, carrying
        gradients, when a misalignment value is a Dr.Jit array)."""
        pg = self.nominal_geometry()
        given = {k: v for k, v in self.misalignment.items() if is_drjit(v) or not _is_nominal(k, v, pg)}
        if given and not isinstance(pg, ProjectionGeometry):
            raise ValueError("a ray list has no detector or source to misalign")
        return pg.perturb(**given) if given else pg

    # ------------------------------------------------------------------ projection
    def _paths(self, pg: ProjectionGeometry, backend: str | None, progress: bool) -> dict[str | None, Any]:
        """Per-material path lengths (``∫ density/material density dl``, mm) and, under ``None``, the
        energy-independent line integrals ``∫ mu dl``; flat Dr.Jit float64 arrays."""
        t = types("float64", backend)
        scene_t = types(self.dtype, backend)
        meshes = [o for o in self.objects if isinstance(o, MeshObject)]
        if meshes:
            trace_meshes(meshes, pg, self.compose)
        out: dict[str | None, Any] = {}
        for obj in tqdm(self.objects, desc="projecting objects", disable=not progress, leave=False):
            value = obj.project(pg, scene_t if obj.type_name == "volume" else t)
            key = obj.material
            if key is not None:
                value = value / get_material(key).density
            out[key] = value if key not in out else out[key] + value
        return out

    def line_integrals(self, backend: str | None = None, progress: bool = False) -> Any:
        """Clean line integrals ``Σ μ L`` as a Dr.Jit float64 tensor of shape ``pg.shape``, differentiable w.r.t.
        every Dr.Jit parameter (see :func:`drct.scene.traverse`). Material objects use μ at the source's
        ``reference_energy``."""
        pg = self.projection_geometry()
        t = types("float64", backend)
        energy = self.source.reference_energy if any(o.material for o in self.objects) else 0.0
        paths = self._paths(pg, backend, progress)
        total = physics_line_integrals(paths, energy) if paths else dr.zeros(t.Float64, pg.num_rays)
        return t.Tensor(total, pg.shape)

    def simulate(self, seed: int | None = 0, backend: str | None = None, progress: bool = False) -> Simulation:
        """Simulate the scan: clean line integrals, detector readings and the noisy projections.

        Args:
            seed: seed of the noise (same seed, same result); None draws a fresh one.
            backend: ``"llvm"`` or ``"cuda"``; default the active backend.
            progress: show tqdm progress bars.
        """
        return simulate(self, seed, backend, progress)

    # ------------------------------------------------------------------ variants and files
    def scaled(self, factor: float) -> Scene:
        """A copy with about ``factor`` times the views, detector pixels and volume samples per axis (same
        field of view): the same scan at reduced size, for tests and previews."""
        if not (isinstance(factor, (int, float)) and 0 < factor <= 1):
            raise ValueError(f"scale must be in (0, 1], got {factor!r}")
        out = self.copy()
        old = self.nominal_geometry()
        out.geometry = self.geometry.scaled(factor)
        out._nominal = None
        vg = self._volume
        if vg is not None:
            shape = tuple(max(1, round(n * factor)) for n in vg.shape)
            size = tuple(h * n / m for h, n, m in zip(vg.voxel_size, vg.shape, shape, strict=True))
            out._volume = VolumeGeometry(shape, size, vg.center)
        views = out.nominal_geometry().num_views
        out.misalignment = {k: _resample(v, old.num_views, views) for k, v in self.misalignment.items()}
        return out

    def copy(self) -> Scene:
        """A copy whose parameters (:func:`drct.scene.traverse`) can be changed without touching this scene
        (arrays are shared until replaced)."""
        out = copy.copy(self)
        out.objects = []
        for obj in self.objects:
            clone = copy.copy(obj)
            clone.params = dict(obj.params)
            out.objects.append(clone)
        out.source, out.detector = copy.copy(self.source), copy.copy(self.detector)
        out.source.params, out.detector.params = dict(self.source.params), dict(self.detector.params)
        out.misalignment = dict(self.misalignment)
        return out

    def to_dict(self, folder: str | Path = ".") -> dict[str, Any]:
        """The scene as the TOML tables of :meth:`save` (files referred to relative to ``folder``)."""
        folder = Path(folder)
        data: dict[str, Any] = {"scene": {"name": self.name, "dtype": self.dtype, "compose": self.compose}}
        if self.description:
            data["scene"]["description"] = self.description
        if self._volume is not None:
            vg = self._volume
            data["volume"] = {"shape": list(vg.shape), "voxel_size": list(vg.voxel_size), "center": list(vg.center)}
        geometry = self.geometry.to_table(folder)
        if self.misalignment:
            geometry["misalignment"] = {k: plain(v) for k, v in self.misalignment.items()}
        data["geometry"] = geometry
        data["objects"] = [o.to_table(folder) for o in self.objects]
        data["source"] = self.source.to_table(folder)
        data["detector"] = self.detector.to_table(folder)
        return data

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the scene as a TOML file (atomically; never over an existing file unless ``overwrite``).

        Volume data changed in Python is written beside it as ``<object name>.npy`` (same overwrite rule).
        """
        return save_scene(self, path, overwrite)

    def describe(self) -> str:
        """A readable summary: geometry, objects, physics and the differentiable parameters."""
        pg = self.projection_geometry()
        lines = [f"scene {self.name!r}" + (f": {self.description}" if self.description else "")]
        if self.file:
            lines.append(f"  file        {self.file}")
        lines.append(f"  geometry    {self.geometry.type_name}: {pg!r}")
        lines.append(f"  sinogram    {pg.shape} ({pg.num_rays} rays)")
        if self.volume is not None:
            vg = self.volume
            lines.append(f"  volume      shape {vg.shape}, voxel size {vg.voxel_size} mm, center {vg.center}")
        for o in self.objects:
            weight = f"mu {_short(o.weight)} /mm" if o.material is None else f"{o.material} {_short(o.weight)} g/cm3"
            lines.append(f"  object      {o.name} ({o.type_name}, {weight})")
        lines.append(f"  source      {self.source.type_name}, {plain(self.source.params['photons']):g} photons/pixel")
        lines.append(f"  detector    {self.detector.type_name}")
        lines.append("  parameters")
        for key, value in SceneParameters(self).items():
            lines.append(f"    {key:40s} {_short(value)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Scene({self.name!r}, geometry={self.geometry.type_name!r}, objects={[o.name for o in self.objects]})"


def _is_nominal(name: str, value: Any, pg: ProjectionGeometry) -> bool:
    arr = np.asarray(value, dtype=np.float64)
    return bool(np.all(arr == np.asarray(default_value(name, pg), dtype=np.float64).reshape(-1)[0]))


def _resample(value: Any, old: int, new: int) -> Any:
    """Per-view values of ``old`` views at the nearest of ``new`` views (single values unchanged)."""
    if is_drjit(value) or np.ndim(value) == 0 or old == new:
        return value
    arr = np.asarray(value)
    if arr.shape[0] != old:
        return value
    return arr[np.round(np.linspace(0, old - 1, new)).astype(int)]


def _short(value: Any) -> str:
    if is_drjit(value):
        return f"{type(value).__name__} (Dr.Jit, width {dr.width(value)})"
    arr = np.asarray(value)
    if arr.size == 1:
        return f"{float(arr.reshape(-1)[0]):.6g}"
    if arr.size <= 4:
        return "[" + ", ".join(f"{float(v):.6g}" for v in arr.reshape(-1)) + "]"
    return f"array {arr.shape} {arr.dtype}, range [{arr.min():.4g}, {arr.max():.4g}]"


_ = (applicable, SceneError, math)
