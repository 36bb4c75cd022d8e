"""The ``[geometry]`` block: any drct geometry factory, a geometry file, ASTRA dicts or explicit vectors, and a
``[geometry.misalignment]`` table of :mod:`drct.geometry.perturb` parameters (differentiable).

Example:
    >>> from drct.scene.geometry import read_geometry
    >>> from drct.scene.schema import Table
    >>> spec = read_geometry(Table({"type": "parallel", "det_shape": 64,
    ...                             "angles": {"count": 90, "stop": "180 deg"}}, None, "geometry"))
    >>> spec.build()[0].shape
    (90, 64)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..geometry import factories, parameters
from ..geometry.astra import from_astra
from ..geometry.files import load_geometry
from ..geometry.parameters import TABLE
from ..geometry.projection import ProjectionGeometry
from ..geometry.volume import VolumeGeometry
from .registry import lookup, register
from .schema import Table, relative_path

# the scene schema's quantity kinds (a scale is a plain number) and nominal values, from the one table
UNITS = {p.name: "number" if p.unit == "scale" else p.unit for p in TABLE.values()}
NOMINAL = {p.name: p.nominal for p in TABLE.values()}


class Geometry:
    """Base class of geometry kinds: ``from_table``, ``build() -> (pg, vg | None)``, ``to_table``, ``scaled``."""

    type_name: ClassVar[str] = "geometry"

    def build(self) -> tuple[ProjectionGeometry, VolumeGeometry | None]:  # pragma: no cover - interface
        raise NotImplementedError

    def to_table(self, folder: Path) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def scaled(self, factor: float) -> Geometry:
        """A copy with about ``factor`` times the views and detector pixels, same field of view."""
        return self


def det_arg(shape: Any) -> Any:
    """A detector shape tuple as the factories take it: ``cols`` (one entry) or ``(rows, cols)``."""
    shape = tuple(shape)
    return shape[0] if len(shape) == 1 else shape


def _scaled_count(n: int, factor: float, minimum: int = 1) -> int:
    return max(minimum, min(n, round(n * factor)))


class Angles:
    """Angles given as a list, or as ``{start, stop, count, endpoint}``, or ``{count, scan = "short"}``."""

    def __init__(self, spec: dict[str, Any] | list[float]) -> None:
        self.spec = spec

    @classmethod
    def read(cls, t: Table, key: str = "angles") -> Angles:
        value = t.get(key)
        if isinstance(value, list):
            arr = t.array(key, "angle")
            if arr.ndim != 1:
                t.fail(key, "expected a list of angles")
            return cls(arr.tolist())
        a = t.table(key)
        spec: dict[str, Any] = {"count": a.integer("count"), "start": a.quantity("start", "angle", 0.0)}
        scan = a.string("scan", "full", choices=("full", "half", "short"))
        if a.has("stop"):
            if scan != "full":
                a.fail("stop", "give either stop or scan, not both")
            spec["stop"] = a.quantity("stop", "angle")
        else:
            spec["scan"] = scan
        spec["endpoint"] = a.boolean("endpoint", False)
        a.finish()
        return cls(spec)

    def values(self, fan_angle: float = 0.0) -> np.ndarray:
        if isinstance(self.spec, list):
            return np.array(self.spec, dtype=np.float64)
        s = self.spec
        span = {"full": 2 * math.pi, "half": math.pi, "short": math.pi + fan_angle}
        stop = s["stop"] if "stop" in s else s["start"] + span[s.get("scan", "full")]
        return np.linspace(s["start"], stop, s["count"], endpoint=s["endpoint"])

    def to_table(self) -> Any:
        return list(self.spec) if isinstance(self.spec, list) else dict(self.spec)

    def scaled(self, factor: float) -> Angles:
        if isinstance(self.spec, list):
            step = max(1, round(1 / factor)) if factor < 1 else 1
            return Angles(self.spec[::step])
        return Angles(self.spec | {"count": _scaled_count(self.spec["count"], factor, 2)})


class Factory(Geometry):
    """A geometry from one of drct's factories; ``args`` are the factory's keyword arguments."""

    BEAM: ClassVar[str] = "cone"
    KEYS: ClassVar[tuple[str, ...]] = ()
    LENGTHS: ClassVar[tuple[str, ...]] = ("src_orig_dist", "src_det_dist", "pitch")

    def __init__(self, angles: Angles, args: dict[str, Any]) -> None:
        self.angles = angles
        self.args = args

    @classmethod
    def from_table(cls, t: Table) -> Factory:
        angles = Angles.read(t)
        args: dict[str, Any] = {}
        for key in cls.KEYS:
            if key == "det_shape":
                args[key] = t.ints(key, cls.det_ranks())
            elif key == "det_count":
                args[key] = t.integer(key)
            elif key == "det_spacing":
                args[key] = t.quantities(key, "length", (1, 2), (1.0,), positive=True)
            elif key == "curved":
                args[key] = t.boolean(key, False)
            elif key in ("tilt",):
                args[key] = t.quantity(key, "angle")
            elif key in ("src_orig_dist", "src_det_dist") and cls.BEAM == "either":
                args[key] = t.quantity(key, "length", None, positive=True)
            elif key == "pitch":
                args[key] = t.quantity(key, "length")
            else:
                args[key] = t.quantity(key, "length", positive=True)
        return cls(angles, args)

    @classmethod
    def det_ranks(cls) -> tuple[int, ...]:
        return (2,)

    def spacing(self) -> Any:
        s = self.args.get("det_spacing", (1.0,))
        return s[0] if len(s) == 1 else tuple(s)

    def fan_angle(self) -> float:
        """The full fan angle of the detector seen from the source (0 for parallel beams)."""
        so, sd = self.args.get("src_orig_dist"), self.args.get("src_det_dist")
        if so is None or sd is None:
            return 0.0
        cols = self.args["det_shape"][-1] if "det_shape" in self.args else self.args["det_count"]
        pitch = self.args.get("det_spacing", (1.0,))[-1]
        half = cols * pitch / 2
        return 2 * (half / sd if self.args.get("curved") else math.atan(half / sd))

    def to_table(self, folder: Path) -> dict[str, Any]:
        table: dict[str, Any] = {"type": self.type_name, "angles": self.angles.to_table()}
        for key, value in self.args.items():
            if value is not None:
                table[key] = list(value) if isinstance(value, tuple) else value
        return table

    def scaled(self, factor: float) -> Factory:
        args = dict(self.args)
        for key in ("det_shape", "det_count"):
            if key not in args:
                continue
            old = args[key] if isinstance(args[key], tuple) else (args[key],)
            new = tuple(_scaled_count(n, factor) for n in old)
            spacing = args.get("det_spacing", (1.0,))
            spacing = spacing * len(old) if len(spacing) == 1 else spacing
            args["det_spacing"] = tuple(s * o / n for s, o, n in zip(spacing, old, new, strict=True))
            args[key] = new if isinstance(args[key], tuple) else new[0]
        return type(self)(self.angles.scaled(factor), args)


@register("geometry", "parallel")
class Parallel(Factory):
    """``ct.parallel``: ``angles``, ``det_shape`` (cols, or [rows, cols]), ``det_spacing``."""

    BEAM = "parallel"
    KEYS = ("det_shape", "det_spacing")

    @classmethod
    def det_ranks(cls) -> tuple[int, ...]:
        return (1, 2)

    def build(self) -> tuple[ProjectionGeometry, VolumeGeometry | None]:
        shape = self.args["det_shape"]
        shape = shape[0] if len(shape) == 1 else shape
        return factories.parallel(self.angles.values(), shape, self.spacing()), None


@register("geometry", "fan")
class Fan(Factory):
    """``ct.fan``: ``angles``, ``det_count``, ``det_spacing``, ``src_orig_dist``, ``src_det_dist``, ``curved``."""

    KEYS = ("det_count", "det_spacing", "src_orig_dist", "src_det_dist", "curved")

    def build(self) -> tuple[ProjectionGeometry, VolumeGeometry | None]:
        a = self.args
        return factories.fan(
            self.angles.values(self.fan_angle()),
            a["det_count"],
            self.spacing(),
            a["src_orig_dist"],
            a["src_det_dist"],
            a["curved"],
        ), None


@register("geometry", "cone")
class Cone(Factory):
    """``ct.cone``: ``angles``, ``det_shape``, ``det_spacing``, ``src_orig_dist``, ``src_det_dist``, ``curved``.

    ``angles = {count = N, scan = "short"}`` is a short scan: 180° plus the fan angle.
    """

    KEYS = ("det_shape", "det_spacing", "src_orig_dist", "src_det_dist", "curved")

    def build(self) -> tuple[ProjectionGeometry, VolumeGeometry | None]:
        a = self.args
        return factories.cone(
            self.angles.values(self.fan_angle()),
            a["det_shape"],
            self.spacing(),
            a["src_orig_dist"],
            a["src_det_dist"],
            a["curved"],
        ), None


@register("geometry", "helix")
class Helix(Factory):
    """``ct.helix``: as ``cone`` plus ``pitch`` (mm per turn); give the angles of the whole helix."""

    KEYS = ("pitch", "det_shape", "det_spacing", "src_orig_dist", "src_det_dist", "curved")

    def build(self) -> tuple[ProjectionGeometry, VolumeGeometry | None]:
        a = self.args
        return factories.helix(
            self.angles.values(),
            a["pitch"],
            a["det_shape"],
            self.spacing(),
            a["src_orig_dist"],
            a["src_det_dist"],
            a["curved"],
        ), None


@register("geometry", "laminography")
class Laminography(Factory):
    """Laminography: a circular cone (or, without distances, parallel) beam scan whose rotation axis is tilted
    by ``tilt`` towards the source (0 = ordinary CT; the beam meets the object plane at ``90° - tilt``)."""

    BEAM = "either"
    KEYS = ("tilt", "det_shape", "det_spacing", "src_orig_dist", "src_det_dist", "curved")

    def build(self) -> tuple[ProjectionGeometry, VolumeGeometry | None]:
        a = self.args
        if (a["src_orig_dist"] is None) != (a["src_det_dist"] is None):
            raise ValueError("give both src_orig_dist and src_det_dist (cone beam) or neither (parallel beam)")
        if a["src_orig_dist"] is None:
            nominal = factories.parallel(self.angles.values(), a["det_shape"], self.spacing())
        else:
            nominal = factories.cone(
                self.angles.values(), a["det_shape"], self.spacing(), a["src_orig_dist"], a["src_det_dist"], a["curved"]
            )
        if not abs(a["tilt"]) < math.pi / 2:
            raise ValueError(f"tilt must be between -90 and 90 degrees, got {math.degrees(a['tilt'])} deg")
        tilted = nominal.perturb(axis_tilt_beam=a["tilt"]).to_vectors()
        return factories.from_vectors(tilted, a["det_shape"], nominal.beam, nominal.curved), None


@register("geometry", "vectors")
class Vectors(Geometry):
    """ASTRA-style vector rows given inline: ``vectors`` (rows of 6 or 12), ``det_shape``, ``beam``, ``curved``."""

    def __init__(self, rows: np.ndarray, det_shape: tuple[int, ...], beam: str, curved: bool) -> None:
        self.rows, self.det_shape, self.beam, self.curved = rows, det_shape, beam, curved

    @classmethod
    def from_table(cls, t: Table) -> Vectors:
        det_shape = t.ints("det_shape", (1, 2))
        rows = t.array("vectors", "number", 6 if len(det_shape) == 1 else 12)
        if rows.ndim != 2:
            t.fail("vectors", "expected a list of rows, one per view")
        return cls(rows, det_shape, t.string("beam", "cone", ("parallel", "cone")), t.boolean("curved", False))

    def build(self) -> tuple[ProjectionGeometry, VolumeGeometry | None]:
        return factories.from_vectors(self.rows, det_arg(self.det_shape), self.beam, self.curved), None

    def to_table(self, folder: Path) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "beam": self.beam,
            "curved": self.curved,
            "det_shape": list(self.det_shape),
            "vectors": self.rows.tolist(),
        }

    def scaled(self, factor: float) -> Vectors:
        step = max(1, round(1 / factor)) if factor < 1 else 1
        return Vectors(self.rows[::step], self.det_shape, self.beam, self.curved)


@register("geometry", "file")
class File(Geometry):
    """A geometry file (:func:`drct.geometry.files.load_geometry`: drct JSON, or vector rows with ``beam`` and
    ``det_shape``); a JSON file's volume grid becomes the scene's default ``[volume]``."""

    def __init__(
        self, path: Path, beam: str | None, det_shape: tuple[int, ...] | None, curved: bool, step: int = 1
    ) -> None:
        self.path, self.beam, self.det_shape, self.curved, self.step = path, beam, det_shape, curved, step

    @classmethod
    def from_table(cls, t: Table) -> File:
        path = t.file_path("file")
        beam = t.string("beam", None, ("parallel", "cone"))
        shape = t.ints("det_shape", (1, 2), None)
        return cls(path, beam, shape, t.boolean("curved", False))

    def build(self) -> tuple[ProjectionGeometry, VolumeGeometry | None]:
        shape = None if self.det_shape is None else det_arg(self.det_shape)
        pg, vg = load_geometry(self.path, self.beam, shape, self.curved)
        if self.step > 1:
            pg = factories.from_vectors(pg.to_vectors()[:: self.step], det_arg(pg.det_shape), pg.beam, pg.curved)
        return pg, vg

    def to_table(self, folder: Path) -> dict[str, Any]:
        table: dict[str, Any] = {"type": self.type_name, "file": relative_path(self.path, folder)}
        if self.beam is not None:
            table["beam"] = self.beam
        if self.det_shape is not None:
            table["det_shape"] = list(self.det_shape)
        if self.curved:
            table["curved"] = True
        return table

    def scaled(self, factor: float) -> File:
        step = max(1, round(1 / factor)) if factor < 1 else 1
        return File(self.path, self.beam, self.det_shape, self.curved, self.step * step)


@register("geometry", "astra")
class Astra(Geometry):
    """ASTRA's dicts: ``[geometry.vol_geom]`` and ``[geometry.proj_geom]`` as ``astra.create_*_geom`` makes
    them (``ct.from_astra``); the volume grid becomes the scene's default ``[volume]``."""

    def __init__(self, vol_geom: dict[str, Any], proj_geom: dict[str, Any]) -> None:
        self.vol_geom, self.proj_geom = vol_geom, proj_geom

    @classmethod
    def from_table(cls, t: Table) -> Astra:
        vol, proj = t.table("vol_geom"), t.table("proj_geom")
        return cls(_plain_dict(vol.data), _plain_dict(proj.data))

    def build(self) -> tuple[ProjectionGeometry, VolumeGeometry | None]:
        proj = {
            k: np.asarray(v, dtype=np.float64) if k in ("ProjectionAngles", "Vectors") else v
            for k, v in self.proj_geom.items()
        }
        vg, pg = from_astra(self.vol_geom, proj)
        return pg, vg

    def to_table(self, folder: Path) -> dict[str, Any]:
        return {"type": self.type_name, "vol_geom": self.vol_geom, "proj_geom": self.proj_geom}


@register("geometry", "rays")
class Rays(Geometry):
    """``ct.rays``: arbitrary lines, each integrated over its whole length — ``origins`` and ``directions``
    (rows of 2 or 3 numbers, one per ray). The sinogram is ``(rays,)``; no misalignment, no detector blur."""

    def __init__(self, origins: np.ndarray, directions: np.ndarray) -> None:
        self.origins, self.directions = origins, directions

    @classmethod
    def from_table(cls, t: Table) -> Rays:
        origins = t.array("origins", "length")
        if origins.ndim != 2 or origins.shape[1] not in (2, 3):
            t.fail("origins", "expected rows of 2 or 3 numbers (x, y[, z]), one per ray")
        directions = t.array("directions", "number", origins.shape[1])
        if directions.shape != origins.shape:
            t.fail("directions", f"expected {origins.shape[0]} rows of {origins.shape[1]} numbers like origins")
        return cls(origins, directions)

    def build(self) -> tuple[Any, VolumeGeometry | None]:
        return factories.rays(self.origins, self.directions), None

    def to_table(self, folder: Path) -> dict[str, Any]:
        return {"type": self.type_name, "origins": self.origins.tolist(), "directions": self.directions.tolist()}

    def scaled(self, factor: float) -> Rays:
        step = max(1, round(1 / factor)) if factor < 1 else 1
        return Rays(self.origins[::step], self.directions[::step])


def _plain_dict(data: Any) -> dict[str, Any]:
    return {str(k): _plain_dict(v) if isinstance(v, dict) else v for k, v in data.items()}


def read_geometry(t: Table) -> Geometry:
    """The geometry kind named by ``t["type"]``, read from ``t`` (misalignment excluded)."""
    cls = lookup("geometry", t)
    spec = cls.from_table(t)
    t.get("misalignment", None)  # read by read_misalignment
    t.finish()
    return spec


def read_misalignment(t: Table | None, pg: ProjectionGeometry) -> dict[str, Any]:
    """The ``[geometry.misalignment]`` values (mm, radians; one value or one per view), checked against ``pg``."""
    if t is None:
        return {}
    if not isinstance(pg, ProjectionGeometry):
        t.fail("", 'a ray list (type = "rays") has no detector or source to misalign')
    out: dict[str, Any] = {}
    for name in sorted(str(k) for k in t.data):
        try:
            width = parameters.check(name, pg).width(pg.ndim)
        except ValueError as err:
            t.fail(name, str(err))
        value = t.array(name, UNITS[name], width if width > 1 else None)
        per = f"{width} numbers ([x, y{', z' if width == 3 else ''}] or one row per view)" if width > 1 else "value"
        if value.size % width or value.size // width not in (1, pg.num_views):
            t.fail(name, f"expected one {per} or one per view ({pg.num_views} views), got {value.size} number(s)")
        out[name] = float(value) if value.ndim == 0 else value
    return out


def applicable(pg: ProjectionGeometry) -> list[str]:
    """The misalignment parameters that apply to ``pg`` (dimension and beam; none for ray lists)."""
    if not isinstance(pg, ProjectionGeometry):
        return []
    return list(parameters.applicable(pg))


def default_value(name: str, pg: ProjectionGeometry) -> Any:
    """The nominal value of a misalignment parameter (0, or 1 for ``pixel_scale``; zero vectors for motion)."""
    param = TABLE[name]
    width = param.width(pg.ndim)
    return np.full(width, param.nominal) if param.vector and width > 1 else param.nominal
