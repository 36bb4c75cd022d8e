"""Reading and writing scene files (TOML), with overrides and reduced-size variants."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..geometry.projection import ProjectionGeometry
from ..geometry.volume import VolumeGeometry
from ..physics import get_material, material_names
from . import bundled
from .errors import SceneError
from .geometry import read_geometry, read_misalignment
from .registry import lookup
from .scene import COMPOSE, Scene
from .schema import Table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
MAX_NAME = 200  # characters of a scene or object name (a 10 MB name made the preview's title hang)
MAX_FILE_BYTES = 64 * 2**20  # a scene file is text: larger ones are refused before they are read
_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    ZeroDivisionError,
    OSError,
    RuntimeError,
    NotImplementedError,
    AttributeError,
    MemoryError,
    RecursionError,
)


@contextlib.contextmanager
def guard(file: str | None, key: str) -> Iterator[None]:
    """Turn any error raised inside into a :class:`SceneError` naming ``file`` and ``key``."""
    try:
        yield
    except SceneError:
        raise
    except ERRORS as err:
        text = str(err) or type(err).__name__
        raise SceneError(file, key, text) from err


def load_scene(
    path: str | os.PathLike[str],
    overrides: Mapping[str, Any] | None = None,
    scale: float = 1.0,
    allow_outside: bool = False,
) -> Scene:
    """Read a TOML scene file.

    Args:
        path: the scene file; relative file names inside it are relative to its folder. A bare name that is no
            file here, e.g. ``"shepp_logan_2d"``, names a scene bundled with drct (:mod:`drct.scenes`).
        overrides: values replacing (or adding) keys before the scene is built, by dotted key:
            ``{"geometry.det_shape": [32, 32], "objects[0].mu": 0.01}``.
        scale: in ``(0, 1]``: the same scan with about ``scale`` times the views, detector pixels and volume
            samples per axis (see :meth:`Scene.scaled`).
        allow_outside: let the scene read data files outside its folder. By default every file it names
            (volumes, meshes, spectra, geometry files) must, with symlinks resolved, lie in the scene file's
            folder or below: a scene file from elsewhere cannot make drct read arbitrary files.

    Raises:
        SceneError: for anything wrong with the file, naming the file, the key and the problem.

    Example:
        >>> import drct as ct
        >>> scene = ct.load_scene("scenes/shepp_logan_2d.toml")
        >>> scene.projection_geometry().ndim
        2
    """
    file, source = str(path), Path(path)
    with guard(file, ""):
        if not source.is_file() and bundled.is_name(file):  # a bundled scene by name
            source = bundled.path(file)
            file = str(source)
        if not source.is_file():  # regular files only: a FIFO would block
            problem = "not a regular file (a folder, FIFO or device)" if source.exists() else "scene file not found"
            if not source.exists() and not source.suffix and len(source.parts) == 1:
                problem += f" (nor a bundled scene: {', '.join(bundled.names())})"
            raise SceneError(file, "", problem)
        if source.stat().st_size > MAX_FILE_BYTES:
            raise SceneError(file, "", f"{source.stat().st_size} bytes: a scene file has at most {MAX_FILE_BYTES}")
        text = source.read_bytes().decode("utf-8")
    with guard(file, ""):
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise SceneError(file, "", f"invalid TOML: {err}") from None
    for key, value in (overrides or {}).items():
        _override(data, str(key), value, file)
    scene = parse_scene(data, file, source.parent, allow_outside)
    if scale != 1.0:
        with guard(file, ""):
            scene = scene.scaled(scale)
            scene.nominal_geometry()
    return scene


def _override(data: dict[str, Any], key: str, value: Any, file: str) -> None:
    tokens = [(m.group(1), m.group(2)) for m in _TOKEN.finditer(key)]
    if not tokens or _TOKEN.sub("", key).replace(".", "") or key.startswith(".") or ".." in key:
        raise SceneError(file, key, "invalid override key")
    node: Any = data
    for i, (name, index) in enumerate(tokens):
        last = i == len(tokens) - 1
        try:
            if index is not None:
                if last:
                    node[int(index)] = value
                else:
                    node = node[int(index)]
            elif last:
                node[name] = value
            else:
                node = node.setdefault(name, {})
        except (TypeError, IndexError, KeyError, AttributeError):
            raise SceneError(file, key, "cannot override: no such table or array entry") from None


def parse_scene(data: Any, file: str | None = None, base: Path | None = None, allow_outside: bool = False) -> Scene:
    """A :class:`Scene` from the parsed TOML tables ``data`` (as :func:`load_scene` reads them); files named in
    it must lie in ``base`` (default: the folder of ``file``) unless ``allow_outside``.

    Example:
        >>> import tomllib, drct as ct
        >>> with open("scenes/shepp_logan_2d.toml", "rb") as f:
        ...     tables = tomllib.load(f)
        >>> tables["scene"]["name"] = "edited"
        >>> ct.scene.parse_scene(tables, "scenes/shepp_logan_2d.toml").name
        'edited'
    """
    root = Table(data, file, "", base, allow_outside)
    if root.has("scanner") and not root.has("geometry"):
        root.fail("scanner", "an emission (SPECT) scene: read it with ct.emission.load_emission_scene or drct simulate")
    meta = root.table("scene", None) or Table({}, file, "scene", base, allow_outside)
    name = meta.string("name", Path(file).stem if file else "scene")
    if len(name) > MAX_NAME:
        meta.fail("name", f"at most {MAX_NAME} characters (it titles plots and files), got {len(name)}")
    description = meta.string("description", "")
    dtype = meta.string("dtype", "float32", ("float32", "float64"))
    compose = meta.string("compose", "replace", COMPOSE)
    meta.finish()

    volume = None
    v = root.table("volume", None)
    if v is not None:
        shape = v.ints("shape", (2, 3))
        size = v.quantities("voxel_size", "length", (1, len(shape)), (1.0,), positive=True)
        center = v.quantities("center", "length", (len(shape),), (0.0,) * len(shape))
        v.finish()
        with guard(file, "volume"):
            volume = VolumeGeometry(shape, size if len(size) > 1 else size[0], center)

    g = root.table("geometry")
    geometry = read_geometry(g)
    with guard(file, "geometry"):
        pg, file_vg = geometry.build()
    misalignment = read_misalignment(g.table("misalignment", None), pg)
    if volume is not None and volume.ndim != pg.ndim:
        v_key = "volume.shape"
        raise SceneError(file, v_key, f"the volume is {volume.ndim}D but the geometry is {pg.ndim}D")

    objects = []
    names: set[str] = set()
    for i, t in enumerate(root.tables("objects")):
        cls = lookup("object", t)
        obj_name = t.string("name", f"{cls.type_name}_{i}")
        if not NAME.match(obj_name) or len(obj_name) > MAX_NAME:
            t.fail(
                "name",
                f"object names are letters, digits, '_' and '-' (used in parameter keys and file names), "
                f"at most {MAX_NAME} characters, got {obj_name[:40]!r}{'...' if len(obj_name) > 40 else ''}",
            )
        if obj_name in names:
            t.fail("name", f"duplicate object name {obj_name!r}")
        names.add(obj_name)
        with guard(file, t.key):
            obj = cls.from_table(t, obj_name)
        t.finish()
        if obj.ndim is not None and obj.ndim != pg.ndim:
            t.fail("type", f"a {obj.ndim}D {cls.type_name} cannot be used with a {pg.ndim}D geometry")
        if obj.material is not None:
            with guard(file, f"{t.key}.material"):
                try:
                    get_material(obj.material)
                except (KeyError, ValueError):
                    raise ValueError(f"unknown material {obj.material!r}; expected one of {material_names()}") from None
        objects.append(obj)

    s = root.table("source", None) or Table({}, file, "source", base, allow_outside)
    source = lookup("source", s, "monochromatic").from_table(s)
    s.finish()
    d = root.table("detector", None) or Table({}, file, "detector", base, allow_outside)
    detector = lookup("detector", d, "ideal").from_table(d)
    d.finish()
    if not isinstance(pg, ProjectionGeometry) and float(detector.params.get("blur", 0.0)) > 0:
        d.fail("blur", "a ray list has no detector pixels to blur; set blur = 0")
    root.finish()
    scene = Scene(geometry, objects, source, detector, volume, misalignment, name, description, dtype, compose, file)
    scene._nominal = (pg, file_vg)
    with guard(file, "geometry.misalignment"):
        scene.projection_geometry()
    return scene
