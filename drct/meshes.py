"""Closed triangle meshes (OBJ/PLY) projected exactly through Mitsuba's ray tracer.

A :class:`Mesh` is a closed, consistently oriented triangle surface with a uniform attenuation: ``mu`` (1/mm) for
monochromatic line integrals and/or a ``material`` for the polychromatic model of :mod:`drct.physics`. Files are
read with Mitsuba's OBJ/PLY loaders; Mitsuba is imported only when a mesh is loaded or projected, with the variant
``<backend>_ad_mono`` of drct's backend (an already active ``<backend>_ad_*`` variant is kept).

Chord lengths are exact up to float32 ray tracing: each ray of the geometry (built by
:func:`drct.geometry.ray_arrays.make_rays`, so cone rays run from the source to the pixel centre) is traced as a
whole line across each mesh's bounding box with ``scene.ray_intersect_preliminary`` (Embree/OptiX), called again
from just past each crossing; the sign of the face normal against the ray direction tells entries from exits.
All of it runs in one Dr.Jit symbolic loop per chunk of rays (no host round trip per crossing): every mesh keeps
its next crossing, the nearest one is taken, the segment before it is credited to the mesh that owns it (see
Composition), and only that mesh is searched again. The state after a crossing is "inside" exactly when it is
an entry, which makes double hits on shared edges harmless; a line whose crossings do not alternate (a hit lost
between two triangles in float32) is traced again in a second pass, backwards, then shifted sideways by 1e-7,
1e-6, 1e-5 of the mesh size, and a line that stays inconsistent (a self-intersecting or open surface) raises
:class:`MeshError`. Segments are clipped to the ray's own range, so sources inside a mesh work. Chord errors are
~1e-7 of the mesh size (2e-5 relative for lines that graze a vertex of a 96-gon tube, tests/test_meshes.py).
Embree (as Mitsuba sets it up) is not watertight: a line passing exactly through two edges or vertices can lose
both crossings, which no alternation check sees. Speed: about 4.4 million rays per CPU-second (the kernel uses
every core) through the three meshes of ``scenes/industrial_meshes.toml``, 8x the tracer with numpy bookkeeping
between crossings that this loop replaced (``benchmarks/bench_meshes.py``).

Composition:

- ``compose="replace"`` (default): where meshes overlap, the mesh later in the list replaces the earlier ones —
  list the housing first and its inserts after it, and each insert's material takes the place of the housing's.
- ``compose="add"``: attenuations add (each mesh gets its full chord).
- Meshes and voxel/B-spline volumes always add: a mesh inside a volume adds its μ to the volume's (store the
  difference μ_mesh − μ_volume as the mesh's ``mu`` to replace instead).

Example:
    >>> import numpy as np, drct as ct
    >>> from drct.meshes import Mesh, project_meshes
    >>> v = np.array([[x, y, z] for z in (-1, 1) for y in (-1, 1) for x in (-1, 1)], float)
    >>> f = np.array([[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4],
    ...               [2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]])
    >>> cube = Mesh(v, f, mu=0.5, name="cube")
    >>> pg = ct.parallel([0.3], det_shape=(1, 1), det_spacing=1.0)  # one ray along a tilted line, z = 0
    >>> round(float(project_meshes([cube], pg)[0, 0, 0]), 5)  # 0.5 * 2 / cos(0.3)
    1.04675
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import drjit as dr
import numpy as np
from tqdm.auto import tqdm

from .backend import drjit_module, get_backend, types, upload
from .concurrency import launches
from .extras import require
from .geometry.projection import AnyGeometry
from .geometry.ray_arrays import geometry_vectors, make_rays
from .memory import require_memory
from .physics.materials import Material, get_material

COMPOSE_MODES = ("replace", "add")
MESH_SUFFIXES = (".obj", ".ply")


class MeshError(ValueError):
    """A mesh that cannot be used (unreadable, not closed, inconsistently oriented, degenerate).

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.meshes import Mesh
        >>> corners = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], float) - 2.5  # a tetrahedron, mm
        >>> faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
        >>> from drct.meshes import MeshError
        >>> try:
        ...     Mesh(corners, np.vstack([faces[:3], faces[:1]]), mu=0.02)  # a face repeated, one missing: not closed
        ... except MeshError as error:
        ...     print("refused")
        refused
    """


@dataclass(frozen=True, eq=False)
class Mesh:
    """A closed triangle mesh with a uniform attenuation.

    Attributes:
        vertices: ``(n, 3)`` positions in mm (x, y, z).
        faces: ``(m, 3)`` vertex indices of a closed, consistently oriented surface. Inward-oriented surfaces
            are flipped on construction so that the normals point outwards.
        mu: Linear attenuation coefficient in 1/mm (monochromatic model), or None.
        material: Material (or its name) for the polychromatic model, or None.
        name: Label used in errors (default ``"mesh"``; :func:`load_mesh` uses the file name).
        path: File it was read from, if any.
        check: Verify closedness and orientation on construction (:func:`check_closed`).

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.meshes import Mesh
        >>> corners = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], float) - 2.5  # a tetrahedron, mm
        >>> faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
        >>> tet = Mesh(corners, faces, mu=0.02, name="tet")
        >>> round(tet.volume, 3), tet.bounds[1].tolist()
        (166.667, [7.5, 7.5, 7.5])
    """

    vertices: np.ndarray = field(repr=False)
    faces: np.ndarray = field(repr=False)
    mu: float | None = None
    material: str | Material | None = None
    name: str = "mesh"
    path: Path | None = None
    check: bool = field(default=True, repr=False)

    def __post_init__(self) -> None:
        where = f"mesh {self.name!r}" + (f" ({self.path})" if self.path else "")
        v = np.asarray(self.vertices, dtype=np.float64)
        f = np.asarray(self.faces)
        if v.ndim != 2 or v.shape[1] != 3 or len(v) < 4 or not np.all(np.isfinite(v)):
            raise MeshError(f"{where}: vertices must be a finite (n >= 4, 3) array, got shape {v.shape}")
        if f.ndim != 2 or f.shape[1] != 3 or len(f) < 4 or not np.issubdtype(f.dtype, np.integer):
            raise MeshError(f"{where}: faces must be an integer (m >= 4, 3) array, got {f.dtype} {f.shape}")
        if f.min() < 0 or f.max() >= len(v):
            raise MeshError(f"{where}: face indices must lie in [0, {len(v) - 1}]")
        if self.mu is not None and not (np.isfinite(self.mu) and self.mu >= 0):
            raise MeshError(f"{where}: mu must be a non-negative attenuation in 1/mm, got {self.mu!r}")
        if self.material is not None:
            object.__setattr__(self, "material", get_material(self.material))
        v, f = _merge_vertices(v, f.astype(np.int64))
        if self.check:
            check_closed(v, f, where)
        if _signed_volume(v, f) < 0:
            f = f[:, ::-1].copy()
        v.flags.writeable = False
        f.flags.writeable = False
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", f)

    @property
    def volume(self) -> float:
        """Enclosed volume in mm³."""
        return abs(_signed_volume(self.vertices, self.faces))

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box ``(lo, hi)`` in mm."""
        return self.vertices.min(axis=0), self.vertices.max(axis=0)


def _merge_vertices(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices at identical positions (OBJ/PLY loaders split them at normal/texture seams)."""
    unique, inverse = np.unique(v, axis=0, return_inverse=True)
    return unique, inverse.reshape(-1)[f]


def _signed_volume(v: np.ndarray, f: np.ndarray) -> float:
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float(np.sum(a * np.cross(b, c)) / 6.0)


def check_closed(vertices: np.ndarray, faces: np.ndarray, name: str = "mesh") -> None:
    """Raise :class:`MeshError` unless the surface is closed and consistently oriented: every edge is shared by
    exactly two faces that traverse it in opposite directions, and no face is degenerate.

    Args:
        vertices: ``(n, 3)`` positions (duplicates already merged).
        faces: ``(m, 3)`` vertex indices.
        name: How to name the mesh in the error (e.g. its file).

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.meshes import Mesh
        >>> corners = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], float) - 2.5  # a tetrahedron, mm
        >>> faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
        >>> from drct.meshes import MeshError, check_closed
        >>> check_closed(corners, faces)  # closed and consistently oriented: no error
        >>> check_closed(corners, faces[:3])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        drct.meshes.MeshError: mesh: is not closed: 3 edge(s) belong to one face only, ...
    """
    f = np.asarray(faces, dtype=np.int64)
    v = np.asarray(vertices, dtype=np.float64)
    degenerate = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])
    if degenerate.any():
        raise MeshError(
            f"{name}: {int(degenerate.sum())} degenerate face(s) repeat a vertex, e.g. face "
            f"{int(np.argmax(degenerate))}"
        )
    n = np.int64(len(v))
    a = f.reshape(-1)
    b = np.roll(f, -1, axis=1).reshape(-1)
    codes = a * n + b
    unique, counts = np.unique(codes, return_counts=True)
    if np.any(counts > 1):
        code = unique[np.argmax(counts > 1)]
        i, j = divmod(int(code), int(n))
        raise MeshError(
            f"{name}: is not consistently oriented or not manifold: edge {v[i].tolist()} -> {v[j].tolist()} is "
            f"traversed {int(counts.max())} times in the same direction"
        )
    reverse = b * n + a
    open_edges = ~np.isin(reverse, unique)
    if open_edges.any():
        k = int(np.argmax(open_edges))
        raise MeshError(
            f"{name}: is not closed: {int(open_edges.sum())} edge(s) belong to one face only, e.g. "
            f"{v[a[k]].tolist()} -> {v[b[k]].tolist()}; X-ray path lengths need a watertight surface"
        )


def _mitsuba() -> Any:
    """Mitsuba, with a variant on drct's backend (``<backend>_ad_mono`` unless one of that backend is active)."""
    mi = require("mitsuba", "tracing or reading triangle meshes")
    backend = get_backend()
    current = mi.variant()
    if current is None or not current.startswith(f"{backend}_ad_"):
        mi.set_variant(f"{backend}_ad_mono")
    return mi


def load_mesh(
    path: str | os.PathLike[str],
    mu: float | None = None,
    material: str | Material | None = None,
    name: str | None = None,
    scale: float = 1.0,
    translate: Sequence[float] = (0.0, 0.0, 0.0),
    check: bool = True,
) -> Mesh:
    """Read a closed triangle mesh from an OBJ or PLY file (through Mitsuba's loaders).

    Args:
        path: ``.obj`` or ``.ply`` file; coordinates in mm (after ``scale`` and ``translate``).
        mu: Attenuation in 1/mm for monochromatic projections.
        material: Material name or :class:`~drct.physics.Material` for polychromatic projections.
        name: Label (default: the file name).
        scale: Factor applied to the file's coordinates.
        translate: Offset (x, y, z) in mm added after scaling.
        check: Verify the surface is closed and consistently oriented.

    Raises:
        FileNotFoundError: the file does not exist.
        MeshError: unknown suffix, unreadable file, or a surface that is not closed.

    Example:
        >>> import os, tempfile
        >>> from drct.meshes import load_mesh
        >>> path = os.path.join(tempfile.mkdtemp(), "tet.obj")
        >>> corners = ["v 0 0 0", "v 10 0 0", "v 0 10 0", "v 0 0 10"]
        >>> _ = open(path, "w").write("\\n".join([*corners, "f 1 3 2", "f 1 2 4", "f 1 4 3", "f 2 3 4"]))
        >>> tet = load_mesh(path, mu=0.02)
        >>> tet.name, round(tet.volume, 3)
        ('tet.obj', 166.667)
    """
    p = Path(path)
    label = name or p.name
    if p.suffix.lower() not in MESH_SUFFIXES:
        raise MeshError(f"{p}: mesh files must end in {' or '.join(MESH_SUFFIXES)}, got {p.suffix!r}")
    if not p.is_file():
        raise FileNotFoundError(f"mesh file {str(p)!r} does not exist")
    shift = np.asarray(translate, dtype=np.float64)
    if shift.shape != (3,) or not np.all(np.isfinite(shift)):
        raise MeshError(f"{p}: translate must be three finite numbers (x, y, z) in mm, got {translate!r}")
    if not (np.isfinite(scale) and scale > 0):
        raise MeshError(f"{p}: scale must be a positive number, got {scale!r}")
    mi = _mitsuba()
    try:
        shape = mi.load_dict({"type": p.suffix.lower()[1:], "filename": str(p.resolve()), "face_normals": True})
    except Exception as err:
        message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise MeshError(f"{p}: cannot read mesh ({message})") from None
    v = np.asarray(shape.vertex_positions_buffer(), dtype=np.float64).reshape(-1, 3)
    f = np.asarray(shape.faces_buffer(), dtype=np.int64).reshape(-1, 3)
    try:
        return Mesh(v * float(scale) + shift, f, mu=mu, material=material, name=label, path=p, check=check)
    except MeshError as err:
        raise MeshError(str(err).replace(f"mesh {label!r} ({p})", str(p), 1)) from None


def _scene(mi: Any, mesh: Mesh) -> Any:
    """A Mitsuba scene holding ``mesh`` (vertices rounded to float32 as Mitsuba stores them)."""
    shape = mi.Mesh(mesh.name, len(mesh.vertices), len(mesh.faces), has_vertex_normals=False)
    params = mi.traverse(shape)
    params["vertex_positions"] = mi.Float(mesh.vertices.astype(np.float32).reshape(-1))
    params["faces"] = mi.UInt32(mesh.faces.astype(np.uint32).reshape(-1))
    params.update()
    return mi.load_dict({"type": "scene", "mesh": shape})


@dataclass(frozen=True, eq=False)
class _Surface:
    """One mesh ready for tracing: its Mitsuba scene, its bounding box enlarged by 1e-3 of its size, the step
    past a crossing before the next search (1e-6 of its size and position), and its outward face normals.
    Numbers that differ between meshes are opaque Dr.Jit scalars, so one compiled kernel serves every mesh."""

    scene: Any
    lo: Any
    hi: Any
    eps: Any
    normals: Any
    size: float
    faces: int


def _surface(mi: Any, mesh: Mesh) -> _Surface:
    mod = drjit_module()
    lo, hi = mesh.bounds
    size = float(np.linalg.norm(hi - lo))
    margin = 1e-3 * size + 1e-6
    eps = 1e-6 * (size + float(np.abs(np.concatenate([lo, hi])).max()))
    v, f = mesh.vertices, mesh.faces
    normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # outward (Mesh orients faces)
    return _Surface(
        scene=_scene(mi, mesh),
        lo=mod.Array3f64(*[dr.opaque(mod.Float64, x) for x in lo - margin]),
        hi=mod.Array3f64(*[dr.opaque(mod.Float64, x) for x in hi + margin]),
        eps=dr.opaque(mod.Float64, eps),
        normals=mod.Array3f64(*[upload(mod.Float64, np.ascontiguousarray(normals[:, k])) for k in range(3)]),
        size=size,
        faces=len(f),
    )


def _box_range(o: Any, d: Any, lo: Any, hi: Any) -> tuple[Any, Any]:
    """Line parameters where ``o + t d`` enters and leaves the box (enter >= leave: missed)."""
    near, far = dr.full(type(o[0]), -dr.inf, 1), dr.full(type(o[0]), dr.inf, 1)
    for k in range(3):
        inv = dr.rcp(d[k])
        t0, t1 = (lo[k] - o[k]) * inv, (hi[k] - o[k]) * inv
        level = d[k] == 0  # parallel to the slab: all of the line or none of it
        within = (o[k] >= lo[k]) & (o[k] <= hi[k])
        near = dr.maximum(near, dr.select(level, dr.select(within, -dr.inf, dr.inf), dr.minimum(t0, t1)))
        far = dr.minimum(far, dr.select(level, dr.select(within, dr.inf, -dr.inf), dr.maximum(t0, t1)))
    return near, far


def _crossing(mi: Any, s: _Surface, o: Any, d: Any, t_from: Any, t_to: Any, active: Any) -> tuple[Any, Any]:
    """The first crossing of ``o + t d`` with the surface for ``t`` in ``[t_from, t_to]``: ``t`` (inf if none)
    and whether it enters. The ray starts at ``o + t_from d`` (float64, then float32 for Embree/OptiX)."""
    ray = mi.Ray3f(mi.Point3f(o + t_from * d), mi.Vector3f(d))
    ray.maxt = mi.Float(t_to - t_from)
    hit = s.scene.ray_intersect_preliminary(ray, active=active)
    found = active & dr.isfinite(hit.t)
    normal = dr.gather(type(d), s.normals, hit.prim_index, found)
    return dr.select(found, t_from + type(t_from)(hit.t), dr.inf), found & (dr.dot(normal, d) < 0)


def _trace(mi: Any, surfaces: Sequence[_Surface], o: Any, d: Any, t_min: Any, t_max: Any) -> tuple[list[Any], Any]:
    """Path lengths inside ``[t_min, t_max]`` per surface along the lines ``o + t d``, composed by "replace" (a
    later surface owns the segments it shares with earlier ones), and which lines crossed a surface
    inconsistently (entries and exits that do not alternate, or a line that ends inside).

    One symbolic loop visits the crossings of every line in order: each surface keeps its next crossing, the
    nearest one is taken, the segment before it is credited to the last surface the line is inside, and only
    that surface is searched again, from just past the crossing to the end of its (enlarged) bounding box.
    """
    mod = drjit_module()
    count, meshes = dr.width(o), len(surfaces)
    ends, nexts, entering = [], [], []
    for s in surfaces:
        near, far = _box_range(o, d, s.lo, s.hi)
        t, enters = _crossing(mi, s, o, d, near, far, near < far)
        ends.append(far)
        nexts.append(t)
        entering.append(enters)
    cap = dr.opaque(mod.UInt32, sum(16 * s.faces + 16 for s in surfaces))  # a closed mesh has fewer crossings
    state = (
        nexts,
        entering,
        [dr.zeros(mod.Bool, count) for _ in surfaces],  # inside each surface
        [dr.zeros(mod.Float64, count) for _ in surfaces],  # lengths
        dr.zeros(mod.Float64, count),  # the previous crossing
        dr.zeros(mod.Bool, count),  # inconsistent
        dr.zeros(mod.UInt32, count),  # crossings visited
    )

    def pending(nexts: list[Any], *rest: Any) -> Any:
        left = nexts[0] < dr.inf
        for t in nexts[1:]:
            left |= t < dr.inf
        return left & (rest[-1] < cap)

    def step(nexts: list[Any], entering: list[Any], inside: list[Any], lengths: list[Any], *rest: Any) -> tuple:
        previous, bad, steps = rest
        best, which = nexts[0], dr.zeros(mod.UInt32, count)
        for k in range(1, meshes):
            closer = nexts[k] < best
            best, which = dr.select(closer, nexts[k], best), dr.select(closer, k, which)
        segment = dr.maximum(dr.minimum(best, t_max) - dr.maximum(previous, t_min), 0.0)
        owned = dr.zeros(mod.Bool, count)
        for k in reversed(range(meshes)):
            lengths[k] = dr.select(inside[k] & ~owned, lengths[k] + segment, lengths[k])
            owned |= inside[k]
        for k, s in enumerate(surfaces):
            here = which == k
            bad |= here & (entering[k] == inside[k])  # "inside" after a crossing exactly when it is an entry
            inside[k] = dr.select(here, entering[k], inside[k])
            t, enters = _crossing(mi, s, o, d, best + s.eps, ends[k], here)
            nexts[k], entering[k] = dr.select(here, t, nexts[k]), dr.select(here, enters, entering[k])
        return nexts, entering, inside, lengths, best, bad, steps + 1

    nexts, entering, inside, lengths, _, bad, _ = dr.while_loop(state, pending, step)
    unfinished = dr.zeros(mod.Bool, count)
    for k in range(meshes):
        bad |= inside[k]
        unfinished |= nexts[k] < dr.inf
    dr.eval(lengths, bad, unfinished)
    if dr.any(unfinished):  # pragma: no cover - a closed mesh cannot have more crossings than the cap
        raise MeshError("ray tracing did not terminate")
    return lengths, bad


def _lines(pg: AnyGeometry, index: np.ndarray) -> tuple[Any, ...]:
    """Origins, directions (3D, float64) and parameter ranges of the rays of ``pg`` with flat indices ``index``."""
    mod, t = drjit_module(), types("float64")
    rays = make_rays(pg, t, geometry_vectors(pg, t), upload(t.UInt, index.astype(np.uint32)))
    zero = dr.zeros(mod.Float64, len(index))
    flat = [zero] * (3 - len(rays.origin))  # 2D geometries: the z = 0 plane
    o = mod.Array3f64(*[dr.detach(c) for c in rays.origin], *flat)
    d = mod.Array3f64(*[dr.detach(c) for c in rays.direction], *flat)
    return o, d, dr.detach(rays.t_min) + zero, dr.detach(rays.t_max) + zero


def _download(a: Any) -> np.ndarray:
    return np.stack([a[k].numpy() for k in range(3)], axis=1)


def _sideways(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to the unit directions ``d`` and to each other."""
    a = np.cross(d, np.array([0.5377, 0.8622, -0.3192]))
    along = np.linalg.norm(a, axis=1) < 1e-3  # d (nearly) along that axis: take another
    a[along] = np.cross(d[along], np.array([0.8, -0.2, 0.5657]))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    return a, np.cross(d, a)


RETRACE_SHIFTS = (1e-7, 1e-6, 1e-5)  # sideways shifts of an inconsistent line, in units of the largest mesh's size


def _retrace(
    mi: Any, surfaces: Sequence[_Surface], o: np.ndarray, d: np.ndarray, t_min: np.ndarray, t_max: np.ndarray
) -> np.ndarray:
    """Lengths ``(n, meshes)`` along lines whose first trace crossed a surface inconsistently (a crossing lost or
    doubled between triangles in float32): traced again backwards, and where still inconsistent, shifted sideways
    by :data:`RETRACE_SHIFTS` of the size of the largest mesh, in four perpendicular directions each.

    Raises:
        MeshError: a line still crosses inconsistently (a self-intersecting or open surface).
    """
    mod = drjit_module()
    size = max(s.size for s in surfaces)
    sides = _sideways(d)
    turns = (*sides, -sides[0], -sides[1])
    attempts = [(-1.0, 0.0, sides[0])] + [(1.0, shift, side) for shift in RETRACE_SHIFTS for side in turns]
    out = np.zeros((len(o), len(surfaces)))
    todo = np.arange(len(o))
    for sign, shift, side in attempts:
        i = todo
        start = o[i] + shift * size * side[i]
        low, high = (-t_max[i], -t_min[i]) if sign < 0 else (t_min[i], t_max[i])
        lengths, bad = _trace(
            mi,
            surfaces,
            mod.Array3f64(*[upload(mod.Float64, np.ascontiguousarray(start[:, k])) for k in range(3)]),
            mod.Array3f64(*[upload(mod.Float64, np.ascontiguousarray(sign * d[i, k])) for k in range(3)]),
            upload(mod.Float64, low),
            upload(mod.Float64, high),
        )
        out[i] = np.stack([x.numpy() for x in lengths], axis=1)
        todo = i[bad.numpy()]
        if todo.size == 0:
            return out
    k = int(todo[0])
    raise MeshError(
        f"{todo.size} line(s) cross the mesh surfaces inconsistently (entries and exits do not alternate) even "
        f"traced backwards and shifted, e.g. o + t d with o = {o[k].tolist()}, d = {d[k].tolist()}: is a mesh "
        "self-intersecting, or open (loaded with check=False)?"
    )


def _chunk(mi: Any, surfaces: Sequence[_Surface], pg: AnyGeometry, index: np.ndarray) -> np.ndarray:
    """Lengths ``(meshes, n)`` along the rays ``index`` of ``pg``; lines crossed inconsistently are re-traced."""
    o, d, t_min, t_max = _lines(pg, index)
    lengths, bad = _trace(mi, surfaces, o, d, t_min, t_max)
    out = np.stack([x.numpy() for x in lengths])
    wrong = np.flatnonzero(bad.numpy())
    if wrong.size:
        o, d, t_min, t_max = _lines(pg, index[wrong])
        out[:, wrong] = _retrace(mi, surfaces, _download(o), _download(d), t_min.numpy(), t_max.numpy()).T
    return out


MAX_REPLACE = 52  # one loop traces all meshes together under "replace": its kernel grows with their number


def mesh_path_lengths(
    meshes: Sequence[Mesh], pg: AnyGeometry, compose: str = "replace", chunk: int = 1 << 20
) -> list[np.ndarray]:
    """Per-mesh path lengths (mm) along every ray of ``pg``.

    Args:
        meshes: The meshes; under ``compose="replace"`` later ones replace earlier ones where they overlap.
        pg: Any drct geometry (2D geometries are the ``z = 0`` plane).
        compose: ``"replace"`` or ``"add"`` (see the module docs).
        chunk: Rays traced per batch.

    Returns:
        One float64 array of shape ``pg.shape`` per mesh.

    Raises:
        MeshError: a line crosses a surface inconsistently even after re-tracing (see :func:`_retrace`).
        MemoryBudgetError: the result does not fit in memory.

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.meshes import Mesh, mesh_path_lengths
        >>> rays = ct.parallel([0.0, np.pi / 2], det_shape=(1, 1), det_spacing=0.1)  # two rays through (0, 0, 0)
        >>> tet = Mesh(np.vstack([np.zeros(3), 10 * np.eye(3)]) - 2.5, [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
        >>> np.round(mesh_path_lengths([tet], rays)[0].ravel(), 6).tolist()  # mm inside the tetrahedron
        [5.0, 5.0]
    """
    if compose not in COMPOSE_MODES:
        raise ValueError(f"compose must be one of {COMPOSE_MODES}, got {compose!r}")
    meshes = list(meshes)
    if not meshes or not all(isinstance(m, Mesh) for m in meshes):
        raise TypeError("meshes must be a non-empty sequence of drct.meshes.Mesh (see load_mesh)")
    if compose == "replace" and len(meshes) > MAX_REPLACE:
        raise ValueError(
            f"compose='replace' handles at most {MAX_REPLACE} meshes, got {len(meshes)}: merge meshes of one "
            "material into one file, or use compose='add'"
        )
    if not (isinstance(chunk, int) and chunk > 0):
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    require_memory(
        8.0 * pg.num_rays * (len(meshes) + 1), f"path lengths of {len(meshes)} mesh(es) x {pg.num_rays} rays"
    )
    mi = _mitsuba()
    surfaces = [_surface(mi, m) for m in meshes]
    # "add": every mesh alone (its own loop, one kernel for all); "replace": all together in one loop
    groups = [[s] for s in surfaces] if compose == "add" else [surfaces]
    out = np.zeros((len(meshes), pg.num_rays))
    starts = range(0, pg.num_rays, chunk)
    with launches(get_backend()):
        for start in tqdm(
            starts, desc="drct meshes", unit="chunk", leave=False, disable=None if len(starts) > 1 else True
        ):
            stop = min(start + chunk, pg.num_rays)
            index = np.arange(start, stop, dtype=np.int64)
            first = 0
            for group in groups:
                out[first : first + len(group), start:stop] = _chunk(mi, group, pg, index)
                first += len(group)
    return [out[i].reshape(pg.shape) for i in range(len(meshes))]


def material_paths(meshes: Sequence[Mesh], pg: AnyGeometry, compose: str = "replace") -> dict[Any, np.ndarray]:
    """Path lengths per material for :func:`drct.physics.simulate_counts`.

    Meshes with a ``material`` contribute their path lengths (mm) under that :class:`~drct.physics.Material`
    (meshes of one material and density are summed; ``key.name`` is its name); meshes with only ``mu``
    contribute ``mu * L`` under the key ``None``.

    Example:
        >>> import drct as ct
        >>> from drct.meshes import Mesh, material_paths
        >>> corners = [[-2.5, -2.5, -2.5], [7.5, -2.5, -2.5], [-2.5, 7.5, -2.5], [-2.5, -2.5, 7.5]]
        >>> water = Mesh(corners, [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], material="water")
        >>> paths = material_paths([water], ct.parallel([0.0], det_shape=(1, 1), det_spacing=0.1))
        >>> [(key.name, round(float(value[0, 0, 0]), 6)) for key, value in paths.items()]  # for simulate_counts
        [('water', 5.0)]
    """
    out: dict[Any, np.ndarray] = {}
    for mesh, length in zip(meshes, mesh_path_lengths(meshes, pg, compose), strict=True):
        if isinstance(mesh.material, Material):
            key, value = mesh.material, length
        elif mesh.mu is not None:
            key, value = None, mesh.mu * length
        else:
            raise MeshError(f"mesh {mesh.name!r} has neither a material nor mu")
        out[key] = out[key] + value if key in out else value
    return out


def project_meshes(
    meshes: Sequence[Mesh], pg: AnyGeometry, compose: str = "replace", energy_kev: float | None = None
) -> np.ndarray:
    """Line integrals Σ μ_i L_i (dimensionless), shape ``pg.shape``.

    Args:
        meshes: Meshes with ``mu`` set (or a ``material`` when ``energy_kev`` is given).
        pg: Any drct geometry.
        compose: ``"replace"`` or ``"add"``.
        energy_kev: If given, meshes with a material use its μ at this energy (overriding ``mu``).

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.meshes import Mesh, project_meshes
        >>> faces = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]  # a tetrahedron, 5 mm along the ray
        >>> bone = Mesh(np.vstack([np.zeros(3), 10 * np.eye(3)]) - 2.5, faces, mu=0.02, material="bone")
        >>> y = project_meshes([bone], ct.parallel([0.0], det_shape=(1, 1), det_spacing=0.1))
        >>> round(float(y[0, 0, 0]), 6)  # 0.02/mm x 5 mm (with energy_kev=..., bone's μ at that energy)
        0.1
    """
    mus = []
    for mesh in meshes:
        if energy_kev is not None and isinstance(mesh.material, Material):
            mus.append(float(mesh.material.mu(energy_kev)[0]))
        elif mesh.mu is not None:
            mus.append(float(mesh.mu))
        else:
            raise MeshError(f"mesh {mesh.name!r} has no mu (1/mm); set mu or pass energy_kev for its material")
    lengths = mesh_path_lengths(meshes, pg, compose)
    return sum((mu * length for mu, length in zip(mus, lengths, strict=True)), start=np.zeros(pg.shape))
