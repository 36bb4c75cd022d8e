"""The slow, obviously-right reference twin of :func:`drct.meshes.mesh_path_lengths`: drct's first mesh tracer,
kept to test the Dr.Jit loop against (tests/test_meshes.py) and to time it (benchmarks/bench_meshes.py).

Every mesh is traced alone with repeated ``scene.ray_intersect_preliminary`` calls, one per crossing and all
rays at once, with the bookkeeping in numpy between the calls: the crossings ``t`` and entering flags are
stacked per ray, lines whose crossings do not alternate are traced again (backwards, then shifted sideways by
1e-7 and 1e-6 of the mesh's size), and the crossings of all meshes are merged and sorted per ray to compose
"replace" (the highest bit of a cumulative sum of per-mesh state changes names the mesh that owns a segment).
"""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np

from drct.backend import types
from drct.geometry.projection import AnyGeometry
from drct.geometry.ray_arrays import geometry_vectors, make_rays
from drct.meshes import Mesh, MeshError, _mitsuba, _scene


def _box_range(o: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Line parameters where ``o + t d`` enters and leaves the box (enter > leave: missed)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t0 = (lo - o) * inv
        t1 = (hi - o) * inv
    near = np.where(np.isnan(t0), -np.inf, np.minimum(t0, t1))
    far = np.where(np.isnan(t1), np.inf, np.maximum(t0, t1))
    return near.max(axis=1), far.min(axis=1)


def _trace(mi: Any, scene: Any, normals: np.ndarray, o: np.ndarray, d: np.ndarray, box: tuple, eps: float) -> tuple:
    """Crossings of the lines ``o + t d`` with the surface in ``scene``: ``t`` (NaN-padded, increasing) and
    entering flags, both ``(n, k)``; each line is traced across the (enlarged) bounding box ``box``."""
    enter, leave = _box_range(o, d, *box)
    active = np.flatnonzero(enter < leave)
    t_now, t_end = enter[active], leave[active]
    ts: list[np.ndarray] = []
    signs: list[np.ndarray] = []
    for _ in range(16 * len(normals) + 16):
        if active.size == 0:
            break
        start = o[active] + t_now[:, None] * d[active]
        direction = d[active].astype(np.float32)
        ray = mi.Ray3f(mi.Point3f(*start.astype(np.float32).T), mi.Vector3f(*direction.T))
        ray.maxt = mi.Float((t_end - t_now).astype(np.float32))
        hit = scene.ray_intersect_preliminary(ray)
        dr.eval(hit.t, hit.prim_index)  # one kernel for both
        t_local = np.asarray(hit.t, dtype=np.float64)
        valid = np.isfinite(t_local)
        prim = np.asarray(hit.prim_index, dtype=np.int64)[valid]
        t_hit = t_now[valid] + t_local[valid]
        hit_rays = active[valid]
        t_col = np.full(len(o), np.nan)
        s_col = np.zeros(len(o), dtype=bool)
        t_col[hit_rays] = t_hit
        s_col[hit_rays] = np.sum(normals[prim] * d[hit_rays], axis=1) < 0
        ts.append(t_col)
        signs.append(s_col)
        active, t_now, t_end = hit_rays, t_hit + eps, t_end[valid]
    else:  # pragma: no cover - a closed mesh cannot have more crossings than this
        raise MeshError("ray tracing did not terminate")
    if not ts:
        return np.full((len(o), 0), np.nan), np.zeros((len(o), 0), dtype=bool)
    return np.stack(ts, axis=1), np.stack(signs, axis=1)


def _inconsistent(t: np.ndarray, entering: np.ndarray) -> np.ndarray:
    """Rays whose crossings do not alternate entry, exit, ..., exit (a hit lost on an edge or vertex)."""
    found = ~np.isnan(t)
    count = found.sum(axis=1)
    expected = (np.arange(t.shape[1]) % 2 == 0)[None, :]  # entries at even positions
    wrong = found & (entering != expected)
    return wrong.any(axis=1) | (count % 2 == 1)


def _pad(a: np.ndarray, width: int, value: Any) -> np.ndarray:
    return np.concatenate([a, np.full((len(a), width - a.shape[1]), value, dtype=a.dtype)], axis=1)


def _hits(mi: Any, scene: Any, mesh: Mesh, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All surface crossings of the lines ``o + t d``: ``t`` (NaN-padded, sorted) and entering flags, (n, k).

    A line through an edge or a vertex can lose a crossing in float32 ray tracing; such lines (their crossings
    do not alternate entry/exit) are traced again backwards, and if still inconsistent, shifted sideways by
    1e-7, then 1e-6 of the mesh size.
    """
    lo, hi = mesh.bounds
    size = float(np.linalg.norm(hi - lo))
    margin = 1e-3 * size + 1e-6
    box = (lo - margin, hi + margin)
    eps = 1e-6 * (size + float(np.abs(np.concatenate([lo, hi])).max()))
    v, f = mesh.vertices, mesh.faces
    normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # outward (Mesh orients faces)
    t, entering = _trace(mi, scene, normals, o, d, box, eps)
    for attempt in range(3):
        bad = np.flatnonzero(_inconsistent(t, entering))
        if bad.size == 0:
            break
        if attempt == 0:  # the same line traced backwards meets the edges from the other side
            t2, e2 = _trace(mi, scene, normals, o[bad], -d[bad], box, eps)
            t2, e2 = -t2, ~e2
            order = np.argsort(np.where(np.isnan(t2), np.inf, t2), axis=1)
            t2, e2 = np.take_along_axis(t2, order, axis=1), np.take_along_axis(e2, order, axis=1) & ~np.isnan(t2)
        else:  # last resorts: the line shifted sideways by 1e-7, then 1e-6 of the mesh size
            side = np.cross(d[bad], np.array([0.5377, 0.8622, -0.3192]))
            side /= np.maximum(np.linalg.norm(side, axis=1, keepdims=True), 1e-300)
            t2, e2 = _trace(mi, scene, normals, o[bad] + 10.0 ** (attempt - 8) * size * side, d[bad], box, eps)
        width = max(t.shape[1], t2.shape[1])
        t, entering, t2, e2 = (
            _pad(t, width, np.nan),
            _pad(entering, width, False),
            _pad(t2, width, np.nan),
            _pad(e2, width, False),
        )
        t[bad], entering[bad] = t2, e2
    return t, entering


def _segments(t: np.ndarray, t_min: np.ndarray, t_max: np.ndarray) -> np.ndarray:
    """Length inside ``[t_min, t_max]`` of the segment after each crossing (0 after the last one and for
    NaN padding: a ray is outside every closed mesh after its last crossing)."""
    t_next = np.concatenate([t[:, 1:], np.full((len(t), 1), np.nan)], axis=1)
    seg = np.minimum(t_next, t_max[:, None]) - np.maximum(t, t_min[:, None])
    return np.where(seg > 0, seg, 0.0)


def _lengths(
    hits: list[tuple[np.ndarray, np.ndarray]], t_min: np.ndarray, t_max: np.ndarray, compose: str
) -> np.ndarray:
    """Per-mesh path lengths (n, meshes) inside ``[t_min, t_max]`` from the crossings of every mesh."""
    n, count = len(t_min), len(hits)
    if compose == "add" or count == 1:
        return np.stack([np.sum(_segments(t, t_min, t_max) * entering, axis=1) for t, entering in hits], axis=1)
    # replace: the inside/outside state of mesh i is bit i of a code; each crossing changes the code by
    # (new state - previous state) * 2^i, so a cumulative sum over all crossings in ray order gives every
    # segment's set of enclosing meshes, and its highest bit the mesh that owns the segment.
    times, deltas = [], []
    for i, (t, entering) in enumerate(hits):
        state = entering.astype(np.int64)
        previous = np.concatenate([np.zeros((n, 1), dtype=np.int64), state[:, :-1]], axis=1)
        deltas.append(np.where(np.isnan(t), 0, (state - previous) << i))
        times.append(t)
    t = np.concatenate(times, axis=1)
    order = np.argsort(np.where(np.isnan(t), np.inf, t), axis=1)
    t = np.take_along_axis(t, order, axis=1)
    code = np.cumsum(np.take_along_axis(np.concatenate(deltas, axis=1), order, axis=1), axis=1)
    seg = _segments(t, t_min, t_max)
    top = np.where(code > 0, np.frexp(code.astype(np.float64))[1] - 1, -1)
    return np.stack([np.sum(np.where(top == i, seg, 0.0), axis=1) for i in range(count)], axis=1)


def reference_path_lengths(
    meshes: list[Mesh], pg: AnyGeometry, compose: str = "replace", chunk: int = 1 << 18
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-mesh path lengths (mm) along every ray of ``pg`` (drct.meshes.mesh_path_lengths before issue 15), and
    which rays its re-traces left crossing a mesh inconsistently (their lengths it returned regardless)."""
    mi = _mitsuba()
    scenes = [_scene(mi, m) for m in meshes]
    t = types("float64")
    vectors = geometry_vectors(pg, t)
    out = np.zeros((pg.num_rays, len(meshes)))
    unresolved = np.zeros(pg.num_rays, dtype=bool)
    for start in range(0, pg.num_rays, chunk):
        count = min(chunk, pg.num_rays - start)
        rays = make_rays(pg, t, vectors, dr.arange(t.UInt, start, start + count))
        o = np.stack([dr.detach(c).numpy() for c in rays.origin], axis=1)
        d = np.stack([dr.detach(c).numpy() for c in rays.direction], axis=1)
        if o.shape[1] == 2:
            o = np.concatenate([o, np.zeros((count, 1))], axis=1)
            d = np.concatenate([d, np.zeros((count, 1))], axis=1)
        t_min = np.broadcast_to(dr.detach(rays.t_min).numpy(), (count,)).astype(np.float64)
        t_max = np.broadcast_to(dr.detach(rays.t_max).numpy(), (count,)).astype(np.float64)
        hits = [_hits(mi, scene, mesh, o, d) for scene, mesh in zip(scenes, meshes, strict=True)]
        unresolved[start : start + count] = np.any([_inconsistent(t, e) for t, e in hits], axis=0)
        hit = np.flatnonzero(np.any([np.any(~np.isnan(t), axis=1) for t, _ in hits], axis=0))
        if hit.size:
            some = [(t[hit], entering[hit]) for t, entering in hits]
            out[start + hit] = _lengths(some, t_min[hit], t_max[hit], compose)
    return [out[:, i].reshape(pg.shape) for i in range(len(meshes))], unresolved.reshape(pg.shape)
