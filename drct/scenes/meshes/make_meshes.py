"""Write the small closed triangle meshes that drct's scenes and tests use (numpy only).

Files (coordinates in mm, outward-oriented, watertight):

- ``unit_sphere.obj``: an icosphere of radius 1 (icosahedron subdivided 4 times: 5120 triangles), vertices on
  the sphere, so the polyhedron lies inside it (largest radial gap 1.1e-3, see ``sphere_gap``; each further
  subdivision divides it by 4).
- ``unit_cube.obj``: the cube ``[-0.5, 0.5]^3`` (12 triangles).
- ``flange_body.ply``: an aluminium flange (plate of radius 30 mm, 8 mm thick, with a hub of radius 15 mm up to
  z = 25 mm and a bore of radius 8 mm), a surface of revolution around the z axis.
- ``flange_sleeve.ply``: a steel sleeve (radii 5 and 8.5 mm, z from -1 to 26 mm) pressed into the bore; it
  overlaps the body by 0.5 mm, which ``compose="replace"`` resolves in the sleeve's favour.
- ``flange_holes.ply``: six bolt holes (cylinders of radius 3 mm on a 22 mm circle through the plate), listed
  last so that, with ``compose="replace"`` and the material ``air``, they cut through the body.

Run ``python scenes/meshes/make_meshes.py [--force]`` to regenerate them beside this script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def icosphere(subdivisions: int, radius: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Vertices on a sphere and outward faces of a subdivided icosahedron (20 * 4**subdivisions triangles)."""
    g = (1 + 5**0.5) / 2
    v = [[-1, g, 0], [1, g, 0], [-1, -g, 0], [1, -g, 0], [0, -1, g], [0, 1, g], [0, -1, -g], [0, 1, -g]]
    v += [[g, 0, -1], [g, 0, 1], [-g, 0, -1], [-g, 0, 1]]
    f = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2]]
    f += [[10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11]]
    f += [[6, 2, 10], [8, 6, 7], [9, 8, 1]]
    verts = [np.array(p, dtype=np.float64) / np.linalg.norm(p) for p in v]
    faces = np.array(f, dtype=np.int64)
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def midpoint(a: int, b: int, cache: dict[tuple[int, int], int] = cache) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = verts[a] + verts[b]
                verts.append(m / np.linalg.norm(m))
                cache[key] = len(verts) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
            new += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        faces = np.array(new, dtype=np.int64)
    return np.array(verts) * radius, faces


def sphere_gap(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Largest radial gap between a unit sphere and the inscribed polyhedron (1 - closest face distance)."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    return float(1.0 - np.min(np.abs(np.sum(n * a, axis=1))))


def box(lo: tuple[float, float, float], hi: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """An axis-aligned box as 8 vertices and 12 outward triangles."""
    v = np.array([[x, y, z] for z in (lo[2], hi[2]) for y in (lo[1], hi[1]) for x in (lo[0], hi[0])], float)
    f = [[0, 2, 1], [1, 2, 3], [4, 5, 6], [5, 7, 6], [0, 1, 4], [1, 5, 4]]
    f += [[2, 6, 3], [3, 6, 7], [0, 4, 2], [2, 4, 6], [1, 3, 5], [3, 7, 5]]
    return v, np.array(f, dtype=np.int64)


def revolve(profile: list[tuple[float, float]], segments: int) -> tuple[np.ndarray, np.ndarray]:
    """The surface swept by a closed polygon ``[(r, z), ...]`` (all r > 0) around the z axis."""
    rz = np.asarray(profile, dtype=np.float64)
    if np.any(rz[:, 0] <= 0):
        raise ValueError("revolve needs a profile off the axis (r > 0)")
    k = len(rz)
    phi = 2 * np.pi * np.arange(segments) / segments
    v = np.stack(
        [np.outer(np.cos(phi), rz[:, 0]), np.outer(np.sin(phi), rz[:, 0]), np.broadcast_to(rz[:, 1], (segments, k))],
        axis=-1,
    ).reshape(-1, 3)
    faces = []
    for s in range(segments):
        t = (s + 1) % segments
        for i in range(k):
            j = (i + 1) % k
            a, b, c, d = s * k + i, s * k + j, t * k + j, t * k + i
            faces += [[a, b, c], [a, c, d]]
    return v, orient_outward(v, np.array(faces, dtype=np.int64))


def cylinder(radius: float, z0: float, z1: float, center: tuple[float, float], segments: int) -> tuple:
    """A closed cylinder along z (caps fanned from their centres)."""
    phi = 2 * np.pi * np.arange(segments) / segments
    ring = np.stack([center[0] + radius * np.cos(phi), center[1] + radius * np.sin(phi)], axis=1)
    v = np.concatenate(
        [np.c_[ring, np.full(segments, z0)], np.c_[ring, np.full(segments, z1)], [[*center, z0], [*center, z1]]]
    )
    bottom, top = 2 * segments, 2 * segments + 1
    faces = []
    for s in range(segments):
        t = (s + 1) % segments
        faces += [[s, t, segments + t], [s, segments + t, segments + s]]
        faces += [[bottom, t, s], [top, segments + s, segments + t]]
    return v, orient_outward(v, np.array(faces, dtype=np.int64))


def orient_outward(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Faces reversed if the surface's signed volume is negative."""
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return f if np.sum(a * np.cross(b, c)) > 0 else f[:, ::-1].copy()


def merge(*parts: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Several closed surfaces as one mesh (disjoint shells)."""
    vs, fs, offset = [], [], 0
    for v, f in parts:
        vs.append(v)
        fs.append(f + offset)
        offset += len(v)
    return np.concatenate(vs), np.concatenate(fs)


def flange_parts(segments: int = 96) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The three closed meshes of the industrial part (mm)."""
    body = revolve([(8.0, 0.0), (30.0, 0.0), (30.0, 8.0), (15.0, 8.0), (15.0, 25.0), (8.0, 25.0)], segments)
    sleeve = revolve([(5.0, -1.0), (8.5, -1.0), (8.5, 26.0), (5.0, 26.0)], segments)
    holes = [
        cylinder(3.0, -1.0, 9.0, (22.0 * np.cos(a), 22.0 * np.sin(a)), 32) for a in np.pi / 6 + np.arange(6) * np.pi / 3
    ]
    return {"flange_body": body, "flange_sleeve": sleeve, "flange_holes": merge(*holes)}


def write_obj(path: Path, v: np.ndarray, f: np.ndarray) -> None:
    """An ASCII OBJ file (1-based indices)."""
    lines = [f"# {len(v)} vertices, {len(f)} triangles, written by scenes/meshes/make_meshes.py"]
    lines += [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in v]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f]
    path.write_text("\n".join(lines) + "\n")


def write_ply(path: Path, v: np.ndarray, f: np.ndarray) -> None:
    """A binary little-endian PLY file (float32 vertices, uint8-count int32 faces)."""
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment written by scenes/meshes/make_meshes.py\n"
        f"element vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n"
        f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    faces = np.zeros(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    faces["n"] = 3
    faces["i"] = f
    path.write_bytes(header.encode("ascii") + v.astype("<f4").tobytes() + faces.tobytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-o", "--out", default=str(HERE), help="output folder (default: beside this script)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args(argv)
    out = Path(args.out)
    meshes: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "unit_sphere.obj": icosphere(4),
        "unit_cube.obj": box((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5)),
    }
    meshes.update({f"{name}.ply": mesh for name, mesh in flange_parts().items()})
    targets = [out / name for name in meshes]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not args.force:
        print(f"refusing to overwrite {', '.join(existing)}: pass --force", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for target, (v, f) in zip(targets, meshes.values(), strict=True):
        tmp = target.with_name(f".{target.name}.tmp")
        (write_obj if target.suffix == ".obj" else write_ply)(tmp, v, f)
        tmp.replace(target)
        print(f"wrote {target} ({len(f)} triangles, {target.stat().st_size / 1024:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
