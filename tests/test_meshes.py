"""Closed triangle meshes through Mitsuba: exact chords, clipping, composition, file errors."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mesh_reference import reference_path_lengths  # the slow numpy-bookkeeping twin (tests/mesh_reference.py)

import drct as ct
from drct.meshes import Mesh, MeshError, check_closed, load_mesh, material_paths, mesh_path_lengths, project_meshes

MESHES = Path(__file__).resolve().parents[1] / "scenes" / "meshes"


def _generator():
    spec = importlib.util.spec_from_file_location("make_meshes", MESHES / "make_meshes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _generator()


def _cone_vectors(rng: np.random.Generator, views: int, src_dist: tuple[float, float]) -> np.ndarray:
    """Random cone-beam vector rows (src, det, u, v) looking roughly through the origin."""
    rows = []
    for _ in range(views):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        src = -axis * rng.uniform(*src_dist)
        det = axis * rng.uniform(0.1, 2.0) + rng.normal(scale=0.05, size=3)
        u = np.cross(axis, rng.normal(size=3))
        u /= np.linalg.norm(u)
        v = np.cross(axis, u)
        rows.append(np.concatenate([src, det, 0.45 * u, 0.4 * v]))
    return np.array(rows)


def _cone_rays(vectors: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source, unit direction and length of every ray (README pixel convention), independent of drct."""
    src, det, u, v = vectors[:, 0:3], vectors[:, 3:6], vectors[:, 6:9], vectors[:, 9:12]
    r, c = np.meshgrid(np.arange(rows) - (rows - 1) / 2, np.arange(cols) - (cols - 1) / 2, indexing="ij")
    pix = det[:, None, None] + c[None, ..., None] * u[:, None, None] + r[None, ..., None] * v[:, None, None]
    seg = pix - src[:, None, None]
    length = np.linalg.norm(seg, axis=-1)
    o = np.broadcast_to(src[:, None, None], seg.shape)
    return o.reshape(-1, 3), (seg / length[..., None]).reshape(-1, 3), length.reshape(-1)


def _box_chords(o, d, lo, hi, t_min, t_max):
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (lo - o) / d, (hi - o) / d
    near = np.nanmax(np.minimum(t0, t1), axis=1)
    far = np.nanmin(np.maximum(t0, t1), axis=1)
    return np.maximum(np.minimum(far, t_max) - np.maximum(near, t_min), 0.0)


def _polyhedron_chords(v, f, o, d, t_min, t_max):
    """Exact chords through a convex polyhedron, float64 Moller-Trumbore over all triangles."""
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    e1, e2 = b - a, c - a
    out = np.zeros(len(o))
    for i in range(len(o)):
        p = np.cross(d[i], e2)
        det = np.sum(e1 * p, axis=1)
        inv = 1.0 / det
        s = o[i] - a
        uu = np.sum(s * p, axis=1) * inv
        q = np.cross(s, e1)
        vv = (q @ d[i]) * inv
        t = np.sum(e2 * q, axis=1) * inv
        ok = (uu >= 0) & (vv >= 0) & (uu + vv <= 1) & (np.abs(det) > 1e-14)
        if ok.sum() >= 2:
            out[i] = max(min(t[ok].max(), t_max[i]) - max(t[ok].min(), t_min[i]), 0.0)
    return out


def test_unit_cube_cone_chords_exact_with_sources_and_pixels_inside():
    cube = load_mesh(MESHES / "unit_cube.obj", mu=1.0)
    rng = np.random.default_rng(3)
    # half the sources inside the cube; detectors partly inside too (rays end at the pixel)
    vectors = np.concatenate([_cone_vectors(rng, 6, (0.05, 0.45)), _cone_vectors(rng, 6, (1.0, 3.0))])
    assert np.all(np.abs(vectors[:6, :3]) < 0.5)
    pg = ct.from_vectors(vectors, (5, 6))
    got = mesh_path_lengths([cube], pg)[0]
    o, d, length = _cone_rays(vectors, 5, 6)
    ref = _box_chords(o, d, -0.5, 0.5, np.zeros(len(o)), length).reshape(pg.shape)
    inf = np.full(len(o), np.inf)
    whole = _box_chords(o, d, -0.5, 0.5, -inf, inf).reshape(pg.shape)
    assert got.shape == pg.shape
    assert (ref > 0).mean() > 0.5 and (ref == 0).any() and np.sum(whole - ref > 0.1) > 50
    assert np.abs(got - ref).max() <= 1e-4 * max(ref.max(), 1.0)
    big = ref > 0.05
    assert np.all(np.abs(got[big] - ref[big]) <= 1e-4 * ref[big])


def test_unit_cube_parallel_and_ray_list():
    cube = load_mesh(MESHES / "unit_cube.obj", mu=2.0)
    angles = np.linspace(0.05, np.pi, 7)
    pg = ct.parallel(angles, (4, 9), det_spacing=0.17)
    got = project_meshes([cube], pg)
    ray_dir = np.stack([np.sin(angles), -np.cos(angles), np.zeros_like(angles)], axis=1)
    u = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=1) * 0.17
    r, c = np.meshgrid((np.arange(4) - 1.5) * 0.17, np.arange(9) - 4, indexing="ij")
    pts = c[None, ..., None] * u[:, None, None] + r[None, ..., None] * np.array([0, 0, 1.0])
    o = pts.reshape(-1, 3)
    d = np.repeat(ray_dir, 36, axis=0)
    inf = np.full(len(o), np.inf)
    ref = 2.0 * _box_chords(o, d, -0.5, 0.5, -inf, inf).reshape(pg.shape)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    lines = ct.rays(o[::5] - 7 * d[::5], d[::5])  # origins far outside: whole lines
    np.testing.assert_allclose(project_meshes([cube], lines), ref.reshape(-1)[::5], rtol=1e-4, atol=1e-6)


def test_sphere_file_matches_polyhedron_and_converges_to_sphere():
    sphere = load_mesh(MESHES / "unit_sphere.obj", mu=1.0)
    assert len(sphere.faces) == 5120
    rng = np.random.default_rng(0)
    vectors = _cone_vectors(rng, 3, (0.5, 2.5))
    pg = ct.from_vectors(vectors, (4, 5))
    o, d, length = _cone_rays(vectors, 4, 5)
    got = mesh_path_lengths([sphere], pg)[0].reshape(-1)
    ref = _polyhedron_chords(sphere.vertices, sphere.faces, o, d, np.zeros(len(o)), length)
    assert (ref > 0.1).sum() > 20
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=2e-5)

    # convergence to the true sphere: whole lines at impact parameters b <= 0.8
    b = np.linspace(0.0, 0.8, 9)
    lines = ct.rays(np.stack([b, np.full_like(b, -3.0), 0.3 * b], axis=1), np.tile([0.0, 1.0, 0.0], (9, 1)))
    exact = 2 * np.sqrt(1 - b**2 - (0.3 * b) ** 2)
    errors = []
    for level in (3, 4, 5):
        v, f = gen.icosphere(level)
        chords = mesh_path_lengths([Mesh(v, f, mu=1.0)], lines)[0]
        assert np.all(chords <= exact + 1e-6)  # inscribed polyhedron
        errors.append(np.max(np.abs(chords - exact) / exact))
    assert errors[0] > 2.5 * errors[1] > 6 * errors[2]
    assert errors[2] <= 1e-3


def test_fan_2d_through_sphere_plane():
    sphere = load_mesh(MESHES / "unit_sphere.obj", mu=1.0)
    pg = ct.fan([0.0], 5, det_spacing=0.3, src_orig_dist=4.0, src_det_dist=8.0)
    got = project_meshes([sphere], pg)[0]
    # ray from (0, -4) to pixel (x, 4): distance of the line to the origin
    x = (np.arange(5) - 2) * 0.3
    dist = 4.0 * np.abs(x) / np.hypot(x, 8.0)
    np.testing.assert_allclose(got, 2 * np.sqrt(1 - dist**2), rtol=2.5e-3)


def _nested(outer_mu: float = 1.0, inner_mu: float = 3.0) -> list[Mesh]:
    v, f = gen.box((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
    vi, fi = gen.box((-0.25, -0.4, -0.3), (0.35, 0.2, 0.3))
    return [Mesh(v, f, mu=outer_mu, material="aluminium", name="outer"), Mesh(vi, fi, mu=inner_mu, material="steel")]


def test_composition_replace_and_add():
    meshes = _nested()
    pg = ct.cone(np.linspace(0, 2 * np.pi, 5, endpoint=False), (3, 7), 0.4, 5.0, 9.0)
    outer, inner = mesh_path_lengths(meshes, pg, compose="add")
    rep_outer, rep_inner = mesh_path_lengths(meshes, pg, compose="replace")
    assert inner.max() > 0.3
    np.testing.assert_allclose(rep_inner, inner, atol=1e-6)
    np.testing.assert_allclose(rep_outer, outer - inner, atol=2e-6)
    np.testing.assert_allclose(project_meshes(meshes, pg, compose="add"), outer + 3 * inner, atol=1e-5)
    np.testing.assert_allclose(project_meshes(meshes, pg), outer + 2 * inner, atol=1e-5)
    paths = material_paths(meshes, pg)
    assert {m.name for m in paths} == {"aluminium", "steel"}
    np.testing.assert_allclose(paths[ct.physics.get_material("steel")], inner, atol=1e-6)
    # the order decides: the big box listed last replaces the small one entirely
    swapped = mesh_path_lengths(meshes[::-1], pg)
    np.testing.assert_allclose(swapped[0], 0.0, atol=1e-6)
    mono = project_meshes(meshes, pg, energy_kev=60.0)
    al, st = ct.physics.get_material("aluminium").mu(60.0)[0], ct.physics.get_material("steel").mu(60.0)[0]
    np.testing.assert_allclose(mono, al * (outer - inner) + st * inner, rtol=1e-6, atol=1e-8)
    # a denser aluminium is its own material: its density reaches the physics
    rho = 2 * ct.physics.get_material("aluminium").density
    dense = [Mesh(meshes[0].vertices, meshes[0].faces, material=ct.physics.get_material("aluminium", rho))]
    (key,) = material_paths(dense, pg)
    spectrum = ct.physics.Spectrum.monochromatic(60.0)
    np.testing.assert_allclose(
        ct.physics.transmitted(material_paths(dense, pg), spectrum), np.exp(-2 * al * outer), rtol=1e-12
    )
    assert key.density == rho


def test_flange_part_files():
    body = load_mesh(MESHES / "flange_body.ply", material="aluminium")
    sleeve = load_mesh(MESHES / "flange_sleeve.ply", material="steel")
    holes = load_mesh(MESHES / "flange_holes.ply", material="air")
    for mesh in (body, sleeve, holes):
        assert mesh.path is not None and mesh.path.stat().st_size < 200_000
    # volume of the revolved body (96-gon cross-sections), analytic within the polygon error
    annulus = np.pi * (30**2 - 8**2) * 8 + np.pi * (15**2 - 8**2) * 17
    assert abs(body.volume - annulus) / annulus < 2e-3
    a = np.pi / 6
    x = np.array([22 * np.cos(a), 12.0, 8.25, 0.0, 26.0])
    y = np.array([22 * np.sin(a), 0.0, 0.0, 0.0, 0.0])
    lines = ct.rays(np.stack([x, y, np.full(5, -10.0)], axis=1), np.tile([0, 0, 1.0], (5, 1)))
    b, s, h = mesh_path_lengths([body, sleeve, holes], lines)
    np.testing.assert_allclose(b, [0.0, 25.0, 0.0, 0.0, 8.0], atol=1e-5)
    np.testing.assert_allclose(s, [0.0, 0.0, 27.0, 0.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(h, [10.0, 0.0, 0.0, 0.0, 0.0], atol=1e-5)
    paths = material_paths([body, sleeve, holes], lines)
    assert [m.name for m in paths] == ["aluminium", "steel", "air"]


def test_regenerated_files_identical(tmp_path):
    assert gen.main(["-o", str(tmp_path)]) == 0
    for name in ("unit_sphere.obj", "unit_cube.obj", "flange_body.ply", "flange_sleeve.ply", "flange_holes.ply"):
        assert (tmp_path / name).read_bytes() == (MESHES / name).read_bytes(), name
    assert gen.main(["-o", str(tmp_path)]) == 2  # refuses to overwrite without --force


def _write_obj(path: Path, v: np.ndarray, f: np.ndarray) -> Path:
    gen.write_obj(path, v, f)
    return path


def test_errors_name_the_file(tmp_path):
    v, f = gen.box((0, 0, 0), (1, 1, 1))
    open_mesh = _write_obj(tmp_path / "open.obj", v, f[:-1])
    with pytest.raises(MeshError, match=r"open\.obj.*not closed"):
        load_mesh(open_mesh, mu=1.0)
    flipped = f.copy()
    flipped[3] = flipped[3, ::-1]
    with pytest.raises(MeshError, match=r"flipped\.obj.*not consistently oriented"):
        load_mesh(_write_obj(tmp_path / "flipped.obj", v, flipped), mu=1.0)
    with pytest.raises(FileNotFoundError, match=r"missing\.ply"):
        load_mesh(tmp_path / "missing.ply", mu=1.0)
    with pytest.raises(MeshError, match=r"\.stl"):
        load_mesh(tmp_path / "part.stl", mu=1.0)
    garbage = tmp_path / "garbage.ply"
    garbage.write_text("this is not a ply file\n")
    with pytest.raises(MeshError, match=r"garbage\.ply.*cannot read"):
        load_mesh(garbage, mu=1.0)
    inside_out = load_mesh(_write_obj(tmp_path / "inverted.obj", v, f[:, ::-1]), mu=1.0)
    assert inside_out.volume == pytest.approx(1.0)  # inward surfaces are flipped, not rejected
    with pytest.raises(MeshError, match="mu"):
        Mesh(v, f, mu=-1.0)
    with pytest.raises(KeyError, match="unobtainium"):
        Mesh(v, f, material="unobtainium")
    pg = ct.parallel([0.0], (1, 1))
    with pytest.raises(ValueError, match="compose"):
        mesh_path_lengths([Mesh(v, f, mu=1.0)], pg, compose="max")
    with pytest.raises(MeshError, match="no mu"):
        project_meshes([Mesh(v, f, material="water")], pg)
    with pytest.raises(TypeError, match="Mesh"):
        mesh_path_lengths([], pg)


def test_mitsuba_not_imported_by_drct():
    code = "import sys, drct, drct.physics; assert 'mitsuba' not in sys.modules, 'mitsuba imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_rays_through_edges_and_vertices():
    cube = load_mesh(MESHES / "unit_cube.obj", mu=1.0)
    s = np.linspace(-0.45, 0.45, 19)
    pts = np.concatenate([np.stack([s, s], 1), np.stack([s, -s], 1)])  # on the faces' triangle diagonals
    o = np.stack([np.full(len(pts), -3.0), pts[:, 0], pts[:, 1]], axis=1)
    d = np.tile([1.0, 0.0, 0.0], (len(pts), 1))
    np.testing.assert_allclose(mesh_path_lengths([cube], ct.rays(o, d))[0], 1.0, rtol=1e-6)
    edges = ct.rays([[-1.0, -1.0, z] for z in (-0.3, 0.0, 0.2)], [[1.0, 1.0, 0.0]] * 3)  # through two edges
    np.testing.assert_allclose(mesh_path_lengths([cube], edges)[0], np.sqrt(2), rtol=1e-5)
    corners = ct.rays([[-1.0, -1.0, -1.0], [1.0, -1.0, 1.0]], [[1.0, 1.0, 1.0], [-1.0, 1.0, -1.0]])
    np.testing.assert_allclose(mesh_path_lengths([cube], corners)[0], np.sqrt(3), rtol=1e-4)


def test_obj_with_quads_and_normals(tmp_path):
    v, _ = gen.box((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5))
    quads = [[0, 2, 3, 1], [4, 5, 7, 6], [0, 1, 5, 4], [2, 6, 7, 3], [0, 4, 6, 2], [1, 3, 7, 5]]
    lines = [f"v {x} {y} {z}" for x, y, z in v] + ["vn 0 0 1"]
    lines += ["f " + " ".join(f"{i + 1}//1" for i in q) for q in quads]
    (tmp_path / "quads.obj").write_text("\n".join(lines) + "\n")
    cube = load_mesh(tmp_path / "quads.obj", mu=1.0, scale=2.0, translate=(0.0, 0.0, 1.0))
    assert len(cube.faces) == 12 and cube.volume == pytest.approx(8.0)
    lines_z = ct.rays([[0.1, 0.2, -5.0], [0.1, 0.2, 5.0]], [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(project_meshes([cube], lines_z), [2.0, 0.0], atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    lo=st.tuples(*[st.floats(-5, 0, allow_nan=False)] * 3),
    size=st.tuples(*[st.floats(0.01, 5, allow_nan=False)] * 3),
    seed=st.integers(0, 2**16),
)
def test_random_boxes_match_slab_chords(lo, size, seed):
    low = np.array(lo)
    high = low + np.array(size)
    v, f = gen.box(tuple(low), tuple(high))
    rng = np.random.default_rng(seed)
    centre = (low + high) / 2
    o = centre + rng.normal(size=(16, 3)) * 3
    d = rng.normal(size=(16, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    got = mesh_path_lengths([Mesh(v, f, mu=1.0)], ct.rays(o, d))[0]
    inf = np.full(16, np.inf)
    ref = _box_chords(o, d, low, high, -inf, inf)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=2e-6 * max(size))


@settings(max_examples=20, deadline=None)
@given(level=st.integers(0, 2), face=st.integers(0, 10**6), flip=st.booleans())
def test_closedness_check_catches_any_damage(level, face, flip):
    v, f = gen.icosphere(level)
    check_closed(v, f)
    k = face % len(f)
    damaged = f.copy()
    if flip:
        damaged[k] = damaged[k, ::-1]
    else:
        damaged = np.delete(damaged, k, axis=0)
    with pytest.raises(MeshError, match="oriented" if flip else "not closed"):
        check_closed(v, damaged, "sphere")


def _prism_chords(radius, z0, z1, segments, o, d):
    """Exact chords of the lines o + t d through the prism over a regular polygon (vertices at ``radius`` and
    angles 2 pi k / segments) between z0 and z1: intersection of half-planes, float64."""
    mid = 2 * np.pi * (np.arange(segments) + 0.5) / segments
    normals = np.stack([np.cos(mid), np.sin(mid), np.zeros(segments)], axis=1)
    normals = np.concatenate([normals, [[0, 0, 1.0], [0, 0, -1.0]]])
    offsets = np.concatenate([np.full(segments, radius * np.cos(np.pi / segments)), [z1, -z0]])
    num = offsets[None, :] - o @ normals.T  # n . (o + t d) <= c  <=>  t (n . d) <= c - n . o
    den = d @ normals.T
    with np.errstate(divide="ignore", invalid="ignore"):
        t = num / den
    lower = np.where(den < 0, t, -np.inf).max(axis=1)
    upper = np.where(den > 0, t, np.inf).min(axis=1)
    outside = np.any((den == 0) & (num < 0), axis=1)
    return np.where(outside, 0.0, np.maximum(upper - lower, 0.0))


def test_sleeve_chords_exact_including_edge_retraces(monkeypatch):
    import drct.meshes as meshes_module

    sleeve = load_mesh(MESHES / "flange_sleeve.ply", mu=1.0)
    retraced = []
    original = meshes_module._retrace

    def counting(mi, surfaces, o, *rest):
        retraced.append(len(o))
        return original(mi, surfaces, o, *rest)

    monkeypatch.setattr(meshes_module, "_retrace", counting)
    pg = ct.cone(np.linspace(0, 2 * np.pi, 20, endpoint=False), (3, 192), 1.0, 200.0, 500.0)
    shifted = Mesh(sleeve.vertices - [0.0, 0.0, 12.5], sleeve.faces, mu=1.0)  # centre its height on the orbit
    got = mesh_path_lengths([shifted], pg)[0].reshape(-1)
    vectors = pg.to_vectors()
    o, d, _ = _cone_rays(vectors, 3, 192)  # the sleeve lies well inside each source-pixel segment
    ref = _prism_chords(8.5, -13.5, 13.5, 96, o, d) - _prism_chords(5.0, -13.5, 13.5, 96, o, d)
    assert retraced and retraced[0] > 0  # some lines lost a crossing on an edge and were traced again
    assert (ref > 1).sum() > 1000
    np.testing.assert_allclose(got, ref, atol=1e-4 * ref.max())


def _flange(shift: float = -12.5) -> list[Mesh]:
    """The industrial part's three meshes (body, sleeve, holes), their height centred on z = 0."""
    parts = gen.flange_parts()
    return [Mesh(v + np.array([0.0, 0.0, shift]), f, mu=1.0, name=name) for name, (v, f) in parts.items()]


def _assert_reference(meshes: list[Mesh], pg, compose: str) -> None:
    """The Dr.Jit loop agrees with the numpy twin: 1e-6 relative, or 1e-7 of the largest mesh's size, on every
    line the twin resolved (it returns lines its re-traces left inconsistent regardless; the loop refuses or
    re-traces those further)."""
    size = max(float(np.linalg.norm(m.bounds[1] - m.bounds[0])) for m in meshes)
    got = mesh_path_lengths(meshes, pg, compose)
    ref, unresolved = reference_path_lengths(meshes, pg, compose)
    assert sum(float(np.count_nonzero(r > 0)) for r in ref) > 0.2 * pg.num_rays  # the rays meet the meshes
    assert unresolved.mean() < 0.01
    for mesh, g, r in zip(meshes, got, ref, strict=True):
        assert g.shape == r.shape == pg.shape
        np.testing.assert_allclose(
            g[~unresolved], r[~unresolved], rtol=1e-6, atol=1e-7 * size, err_msg=f"{mesh.name} ({compose})"
        )


@pytest.mark.parametrize("compose", ["replace", "add"])
def test_flange_cone_matches_reference_twin_with_sources_inside(compose):
    rng = np.random.default_rng(5)
    outside = ct.cone(np.linspace(0, 2 * np.pi, 6, endpoint=False), (6, 40), 1.2, 200.0, 500.0).to_vectors()
    inside = _cone_vectors(rng, 6, (0.0, 1.0)) * [*[1.0] * 3, *[60.0] * 3, *[3.0] * 6]
    inside[:, :3] = [[22.0 * np.cos(a), 22.0 * np.sin(a), -9.0] for a in rng.uniform(0, 2 * np.pi, 6)]  # in metal
    inside[3:, 2] = rng.uniform(-14.0, 14.0, 3)  # sources anywhere in the part's height (in the body or a hole)
    _assert_reference(_flange(), ct.from_vectors(np.concatenate([outside, inside]), (6, 40)), compose)


@pytest.mark.parametrize("compose", ["replace", "add"])
def test_grazing_and_shared_edge_lines_match_reference_twin(compose):
    meshes = _flange()
    k = np.arange(0, 96, 7)
    phi = 2 * np.pi * k / 96
    a = np.stack([30 * np.cos(phi), 30 * np.sin(phi)], axis=1)  # vertices of the body's outer 96-gon
    b = np.stack([30 * np.cos(phi + 2 * np.pi / 96), 30 * np.sin(phi + 2 * np.pi / 96)], axis=1)
    chord = (b - a) / np.linalg.norm(b - a, axis=1, keepdims=True)
    outward = np.stack([chord[:, 1], -chord[:, 0]], axis=1)
    origins, directions = [], []
    rng = np.random.default_rng(11)
    for z in (-12.5, -4.5, 12.5):  # the body's bottom, step and top planes
        for dz in (-1e-4, 1e-4):  # just outside or inside the plane, tilted by 1e-5 rad: grazing the faces
            for side in (-1e-4, 1e-4):
                origins += [np.c_[a - 40 * chord + side * outward, np.full(len(k), z + dz)]]  # along an outer face
                directions += [np.c_[chord, np.full(len(k), 1e-5)]]
            turn = rng.uniform(-0.6, 0.6, len(k))  # through a vertical edge, inwards
            way = np.stack([-np.cos(phi + turn), -np.sin(phi + turn), np.full(len(k), 1e-5)], axis=1)
            origins += [np.c_[a, np.full(len(k), z + dz)] - 40 * way]
            directions += [way]
    vertex = meshes[1].vertices[rng.integers(0, len(meshes[1].vertices), 40)]  # through the sleeve's vertices
    way = rng.normal(size=(40, 3))
    origins += [vertex - 50 * way / np.linalg.norm(way, axis=1, keepdims=True)]
    directions += [way]
    centre = rng.uniform(-35.0, 35.0, size=(200, 3)) * [1.0, 1.0, 0.5]  # random lines through the part
    origins += [centre]
    directions += [rng.normal(size=(200, 3))]
    _assert_reference(meshes, ct.rays(np.concatenate(origins), np.concatenate(directions)), compose)


@pytest.mark.parametrize("compose", ["replace", "add"])
def test_nested_boxes_and_cube_edges_match_reference_twin(compose):
    cube = load_mesh(MESHES / "unit_cube.obj", mu=1.0)
    meshes = [*_nested(), Mesh(cube.vertices * 0.5 + 0.25, cube.faces, mu=1.0, name="corner")]
    s = np.linspace(-0.95, 0.95, 39)
    on_diagonals = np.stack([np.full(39, -3.0), s, s], axis=1)  # the outer box's faces' triangle diagonals
    edges = [[-2.0, -2.0, z] for z in (-1.0, -0.3, 0.0, 0.5, 1.0)]  # through vertical edges, along face planes
    corner = [[-2.0, -2.0, -1.9], [0.0, 0.01, 0.0], [0.5, 0.49, 0.5]]  # past the corners (not through 2 vertices)
    lines = ct.rays(
        np.concatenate([on_diagonals, edges, corner]),
        np.concatenate([np.tile([1.0, 0.0, 0.0], (39, 1)), np.tile([1.0, 1.0, 0.0], (5, 1)), np.ones((3, 3))]),
    )
    _assert_reference(meshes, lines, compose)
    pg = ct.cone(np.linspace(0, 2 * np.pi, 8, endpoint=False), (5, 9), 0.4, 0.6, 4.0)  # sources inside the box
    _assert_reference(meshes, pg, compose)


def test_line_through_an_open_mesh_is_refused_not_silently_wrong():
    v, f = gen.box((0, 0, 0), (1, 1, 1))
    open_box = Mesh(v, f[2:], mu=1.0, name="open", check=False)  # the bottom face (z = 0) is missing
    closed = Mesh(v, f, mu=1.0, name="closed")
    through_bottom = ct.rays([[0.3, 0.6, -1.0]], [[0.0, 0.0, 1.0]])  # enters where no triangle is
    beside = ct.rays([[0.3, 0.6, -1.0]], [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(mesh_path_lengths([open_box], beside)[0], 0.0)
    with pytest.raises(MeshError, match=r"1 line\(s\) cross .*inconsistently.*o = \[0\.3, 0\.6, -1\.0\]"):
        mesh_path_lengths([closed, open_box], through_bottom)


def test_line_through_a_vertex_resolved_by_sideways_retraces():
    """This line through a vertex of the sleeve stays inconsistent traced backwards and shifted 1e-7 and 1e-6 of
    the size along one direction (the old tracer stopped there and returned 2e-5 too much, silently); shifts
    in four directions find the chord within 1e-7 of the mesh size."""
    sleeve = _flange()[1]
    o = np.array([[15.917384229249635, 15.58998769151139, 29.074788459696393]])
    d = np.array([[-0.324887997508007, -0.41158564615408827, -0.8514957691939281]])
    exact = _prism_chords(8.5, -13.5, 13.5, 96, o, d) - _prism_chords(5.0, -13.5, 13.5, 96, o, d)
    size = float(np.linalg.norm(sleeve.bounds[1] - sleeve.bounds[0]))
    np.testing.assert_allclose(mesh_path_lengths([sleeve], ct.rays(o, d))[0], exact, atol=1e-7 * size, rtol=0)
