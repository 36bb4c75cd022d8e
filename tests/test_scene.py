"""Scene files: analytic cross-checks of every object kind, geometry kinds and misalignment, units, the
parameter registry and its gradients, round trips of every bundled scene, and one clear error per bad input."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import drjit as dr
import numpy as np
import pytest
import tifffile

import drct as ct
from drct.scene import SceneError, load_scene, parse_scene, traverse
from drct.scene.volfile import read_vol, write_vol

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SCENES = sorted(Path(__file__).resolve().parent.parent.joinpath("scenes").glob("*.toml"))
Float64 = dr.llvm.ad.Float64


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def cube_obj(path: Path, half: float = 5.0, drop_face: bool = False) -> Path:
    """An axis-aligned cube of side ``2 half`` (mm) as a closed OBJ with outward (counter-clockwise) faces."""
    v = [(x, y, z) for x in (-half, half) for y in (-half, half) for z in (-half, half)]
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = [f for a, b, c, d in quads for f in ((a, b, c), (a, c, d))]
    if drop_face:
        faces = faces[:-1]
    lines = [f"v {x} {y} {z}" for x, y, z in v] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")
    return path


SL2D = """
[geometry]
type = "parallel"
angles = { count = 12, stop = "180 deg" }
det_shape = 40
det_spacing = "0.6 cm"

[[objects]]
type = "shepp_logan"
name = "p"
radius = "10 cm"
mu = "0.2 /cm"
"""


# ---------------------------------------------------------------------------------------------- objects
def test_shepp_logan_2d_matches_the_analytic_projections(tmp_path: Path) -> None:
    scene = load_scene(write(tmp_path / "s.toml", SL2D))
    pg = scene.projection_geometry()
    assert pg.shape == (12, 40) and np.allclose(pg.det_u[:, 0] ** 2 + pg.det_u[:, 1] ** 2, 36.0)
    sim = scene.simulate(seed=0)
    exact = ct.phantoms.shepp_logan_projections(pg, radius=100.0) * 0.02
    np.testing.assert_allclose(sim.line_integrals, exact, rtol=1e-5, atol=1e-6)
    # ideal detector, monochromatic source: the projections are the line integrals
    np.testing.assert_array_equal(sim.projections, sim.line_integrals)
    assert sim.readings is None


def test_shepp_logan_3d_and_rotated_ellipsoid_match_project_ellipsoids(tmp_path: Path) -> None:
    text = """
[geometry]
type = "cone"
angles = { count = 5 }
det_shape = [9, 11]
det_spacing = 4.0
src_orig_dist = 150.0
src_det_dist = 300.0

[[objects]]
type = "shepp_logan"
radius = 30.0
center = [1.0, -2.0, 3.0]
mu = 0.5

[[objects]]
type = "ellipsoid"
center = ["1 cm", "0 mm", "-5 mm"]
axes = [8.0, 4.0, 6.0]
angles = ["30 deg", "20 deg", "10 deg"]
mu = "0.3 /mm"
"""
    scene = load_scene(write(tmp_path / "s.toml", text))
    pg = scene.projection_geometry()
    sl = [
        ct.phantoms.Ellipsoid(e.center, e.axes, 0.5 * e.mu, e.angles)
        for e in ct.phantoms.shepp_logan_ellipses(3, 30.0, (1.0, -2.0, 3.0))
    ]
    e = ct.phantoms.Ellipsoid((10.0, 0.0, -5.0), (8.0, 4.0, 6.0), 0.3, np.deg2rad([30.0, 20.0, 10.0]))
    exact = ct.phantoms.project_ellipsoids([*sl, e], pg)
    assert exact.max() > 1.0
    np.testing.assert_allclose(scene.simulate().line_integrals, exact, rtol=1e-5, atol=1e-5)
    assert [o.name for o in scene.objects] == ["shepp_logan_0", "ellipsoid_1"]


@pytest.mark.parametrize("fmt", ["npy", "tif", "tif_folder", "vol"])
def test_volume_files_project_like_the_projector(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 1, (6, 7, 8)).astype(np.float32)
    if fmt == "npy":
        np.save(tmp_path / "v.npy", data)
        name, extra = "v.npy", "voxel_size = [1.0, 1.5, 2.0]\ncenter = [0.5, 0.0, -1.0]"
    elif fmt == "tif":
        tifffile.imwrite(tmp_path / "v.tif", data)
        name, extra = "v.tif", "voxel_size = [1.0, 1.5, 2.0]\ncenter = [0.5, 0.0, -1.0]"
    elif fmt == "tif_folder":
        (tmp_path / "slices").mkdir()
        for k, page in enumerate(data):
            tifffile.imwrite(tmp_path / "slices" / f"s{k:03d}.tif", page)
        name, extra = "slices", "voxel_size = [1.0, 1.5, 2.0]\ncenter = [0.5, 0.0, -1.0]"
    else:  # the .vol bounding box gives the voxel size and the centre
        write_vol(tmp_path / "v.vol", data, bbox=((-7.5, -5.25, -4.0), (8.5, 5.25, 2.0)))
        name, extra = "v.vol", ""
    text = f"""
[geometry]
type = "cone"
angles = {{ count = 4 }}
det_shape = [8, 10]
det_spacing = 3.0
src_orig_dist = 60.0
src_det_dist = 120.0

[[objects]]
type = "volume"
name = "vol"
file = "{name}"
basis = "bspline2"
mu = 0.25
{extra}
"""
    scene = load_scene(write(tmp_path / "s.toml", text))
    vg = ct.VolumeGeometry((6, 7, 8), voxel_size=(1.0, 1.5, 2.0), center=(0.5, 0.0, -1.0))
    pg = scene.projection_geometry()
    expected = ct.Projector(vg, pg, basis="bspline2")(data) * 0.25
    np.testing.assert_allclose(scene.simulate().line_integrals, expected, rtol=1e-5, atol=1e-6)


def test_vol_file_round_trip_and_layout(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    write_vol(tmp_path / "a.vol", data, bbox=((0, 0, 0), (4, 3, 2)))
    raw = (tmp_path / "a.vol").read_bytes()
    assert raw[:4] == b"VOL\x03" and len(raw) == 48 + 4 * data.size
    # x varies fastest in the file: the second value is data[0, 0, 1]
    assert np.frombuffer(raw[48:56], "<f4").tolist() == [0.0, 1.0]
    back, bbox = read_vol(tmp_path / "a.vol")
    np.testing.assert_array_equal(back, data)
    assert bbox == ((0.0, 0.0, 0.0), (4.0, 3.0, 2.0))
    (tmp_path / "bad.vol").write_bytes(raw[:60])
    with pytest.raises(ValueError, match="truncated"):
        read_vol(tmp_path / "bad.vol")


def test_vol_files_are_mitsubas_own_both_ways(tmp_path: Path) -> None:
    """drct's .vol reader/writer agree with Mitsuba's VolumeGrid (layout and values, both directions). drct keeps its
    own 40 lines because Mitsuba 3's Python API cannot give the bounding box it reads nor write one (a grid made
    from an array is written with the unit cube), and drct's scenes take voxel size and centre from it."""
    pytest.importorskip("mitsuba")
    from drct.meshes import _mitsuba

    mi = _mitsuba()
    data = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    write_vol(tmp_path / "drct.vol", data, bbox=((-1.0, -2.0, -3.0), (1.0, 2.0, 3.0)))
    np.testing.assert_array_equal(np.array(mi.VolumeGrid(str(tmp_path / "drct.vol"))).reshape(data.shape), data)
    mi.VolumeGrid(data[..., None]).write(str(tmp_path / "mitsuba.vol"))
    back, bbox = read_vol(tmp_path / "mitsuba.vol")
    np.testing.assert_array_equal(back, data)
    assert bbox == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # Mitsuba writes the unit cube
    mi.VolumeGrid(str(tmp_path / "drct.vol")).write(str(tmp_path / "copy.vol"))  # a box read is written back
    assert (tmp_path / "copy.vol").read_bytes() == (tmp_path / "drct.vol").read_bytes()


def test_mesh_cube_gives_analytic_chords_and_open_mesh_is_rejected(tmp_path: Path) -> None:
    cube_obj(tmp_path / "cube.obj")
    text = """
[geometry]
type = "parallel"
angles = [0.0, "90 deg"]
det_shape = [3, 5]
det_spacing = 3.0

[[objects]]
type = "mesh"
name = "cube"
file = "cube.obj"
mu = 0.1
"""
    scene = load_scene(write(tmp_path / "s.toml", text))
    y = scene.simulate().line_integrals
    # rays along the cube's axes: pixels within |u|, |v| < 5 cross 10 mm, the outer columns (6 mm) miss it
    expected = np.zeros((2, 3, 5), dtype=np.float32)
    expected[:, :, 1:4] = 1.0
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    cube_obj(tmp_path / "open.obj", drop_face=True)
    with pytest.raises(SceneError, match=r"objects\[0\]\.file.*open\.obj"):
        load_scene(write(tmp_path / "o.toml", text.replace("cube.obj", "open.obj")))


def test_material_objects_use_the_material_attenuation(tmp_path: Path) -> None:
    text = SL2D.replace('mu = "0.2 /cm"', 'material = "water"\ndensity = "0.5 g/cm3"') + (
        '\n[source]\ntype = "monochromatic"\nenergy = "60 keV"\n'
    )
    scene = load_scene(write(tmp_path / "s.toml", text))
    mu = float(ct_material("water").mu(60.0)[0]) * 0.5
    exact = ct.phantoms.shepp_logan_projections(scene.projection_geometry(), radius=100.0) * mu
    sim = scene.simulate()
    np.testing.assert_allclose(sim.line_integrals, exact, rtol=1e-5, atol=1e-6)
    # a monochromatic source and an ideal detector: -log(transmission) is the same line integral
    np.testing.assert_allclose(sim.projections, exact, rtol=1e-4, atol=1e-5)


def ct_material(name: str) -> ct.physics.Material:  # type: ignore[name-defined]
    from drct.physics import get_material

    return get_material(name)


# ---------------------------------------------------------------------------------------------- geometry
def test_units_and_misalignment_apply_like_perturb(tmp_path: Path) -> None:
    text = """
[geometry]
type = "cone"
angles = { count = 6, start = "10 deg" }
det_shape = [4, 6]
det_spacing = [1.0, "0.15 cm"]
src_orig_dist = "0.1 m"
src_det_dist = "20 cm"

[geometry.misalignment]
det_shift_u = "0.5 mm"
det_roll = "2 deg"
cor_offset = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
motion_shift = [1.0, 0.0, "1 mm"]
"""
    scene = load_scene(write(tmp_path / "s.toml", text))
    angles = np.linspace(0, 2 * np.pi, 6, endpoint=False) + math.radians(10)
    nominal = ct.cone(angles, (4, 6), (1.0, 1.5), 100.0, 200.0)
    expected = nominal.perturb(
        det_shift_u=0.5, det_roll=math.radians(2), cor_offset=np.arange(6) / 10, motion_shift=[1.0, 0.0, 1.0]
    )
    np.testing.assert_allclose(scene.projection_geometry().to_vectors(), expected.to_vectors(), atol=1e-12)
    np.testing.assert_allclose(scene.simulate().geometry.to_vectors(), expected.to_vectors(), atol=1e-12)


def test_short_scan_laminography_helix_and_vectors(tmp_path: Path) -> None:
    base = """
[geometry]
type = "{type}"
angles = {angles}
det_shape = [4, 10]
det_spacing = 2.0
src_orig_dist = 100.0
src_det_dist = 300.0
{extra}
"""
    short = load_scene(
        write(
            tmp_path / "a.toml",
            base.format(type="cone", angles='{ count = 11, scan = "short", endpoint = true }', extra=""),
        )
    )
    fan = 2 * math.atan(10.0 / 300.0)
    src = short.projection_geometry().src
    assert math.isclose(
        math.atan2(src[-1, 0], -src[-1, 1]), math.pi + fan - 2 * math.pi, abs_tol=1e-12
    ) or math.isclose(math.atan2(src[-1, 0], -src[-1, 1]) % (2 * math.pi), math.pi + fan, abs_tol=1e-12)
    lam = load_scene(
        write(tmp_path / "b.toml", base.format(type="laminography", angles="{ count = 8 }", extra='tilt = "30 deg"'))
    )
    pg = lam.projection_geometry()
    # the source circles the tilted axis: all at the same height |z| = 100 sin 30°, 100 mm from the origin
    np.testing.assert_allclose(np.abs(pg.src[:, 2]), 50.0, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(pg.src, axis=1), 100.0, atol=1e-9)
    helix = load_scene(
        write(tmp_path / "c.toml", base.format(type="helix", angles="[0.0, 3.141592653589793]", extra="pitch = 10.0"))
    )
    np.testing.assert_allclose(helix.projection_geometry().src[:, 2], [0.0, 5.0], atol=1e-12)
    rows = helix.projection_geometry().to_vectors().tolist()
    vec = load_scene(
        write(tmp_path / "d.toml", f'[geometry]\ntype = "vectors"\ndet_shape = [4, 10]\nvectors = {rows}\n')
    )
    np.testing.assert_array_equal(vec.projection_geometry().to_vectors(), np.array(rows))


def test_geometry_file_and_astra_dicts(tmp_path: Path) -> None:
    pg = ct.fan(np.linspace(0, np.pi, 5), 16, 1.0, 50.0, 100.0)
    ct.geometry.files.save_geometry(tmp_path / "g.json", pg, ct.VolumeGeometry((8, 8)))
    scene = load_scene(write(tmp_path / "a.toml", '[geometry]\ntype = "file"\nfile = "g.json"\n'))
    np.testing.assert_array_equal(scene.projection_geometry().to_vectors(), pg.to_vectors())
    assert scene.volume is not None and scene.volume.shape == (8, 8)
    text = """
[geometry]
type = "astra"
vol_geom = { GridRowCount = 8, GridColCount = 8, option = {} }
proj_geom = { type = "parallel", DetectorWidth = 1.0, DetectorCount = 12, ProjectionAngles = [0.0, 0.5, 1.0] }
"""
    astra = load_scene(write(tmp_path / "b.toml", text))
    vg, expected = ct.from_astra(
        {"GridRowCount": 8, "GridColCount": 8, "option": {}},
        {"type": "parallel", "DetectorWidth": 1.0, "DetectorCount": 12, "ProjectionAngles": np.array([0.0, 0.5, 1.0])},
    )
    np.testing.assert_array_equal(astra.projection_geometry().to_vectors(), expected.to_vectors())
    assert astra.volume == vg
    astra.save(tmp_path / "c.toml")
    np.testing.assert_array_equal(
        load_scene(tmp_path / "c.toml").projection_geometry().to_vectors(), expected.to_vectors()
    )


# ---------------------------------------------------------------------------------------------- parameters
def test_traverse_lists_and_sets_parameters(tmp_path: Path) -> None:
    scene = load_scene(write(tmp_path / "s.toml", SL2D))
    params = traverse(scene)
    assert {"geometry.det_shift_u", "geometry.cor_offset", "object.p.mu", "object.p.center", "source.photons"} <= set(
        params
    )
    assert "geometry.det_shift_v" not in params  # 3D only
    assert params["object.p.mu"] == pytest.approx(0.02)
    before = scene.simulate().line_integrals
    params["object.p.mu"] = 0.04
    np.testing.assert_allclose(scene.simulate().line_integrals, 2 * before, rtol=1e-6)
    params["geometry.det_shift_u"] = 3.0
    assert np.allclose(
        scene.projection_geometry().det[:, 0],
        3.0 * np.cos(scene.nominal_geometry().src[:, 1] * 0 + np.linspace(0, np.pi, 12, endpoint=False)),
    )
    with pytest.raises(SceneError, match=r"object\.q\.mu: no such parameter"):
        params["object.q.mu"] = 1.0


def test_gradients_match_finite_differences(tmp_path: Path) -> None:
    text = """
[geometry]
type = "fan"
angles = { count = 8 }
det_count = 24
det_spacing = 1.5
src_orig_dist = 60.0
src_det_dist = 120.0

[[objects]]
type = "ellipsoid"
name = "e"
center = [1.0, -2.0]
axes = [6.0, 4.0]
angles = 0.4
mu = 0.3
"""
    scene = load_scene(write(tmp_path / "s.toml", text))
    params = traverse(scene)
    weights = np.random.default_rng(1).uniform(0.5, 1.5, scene.projection_geometry().shape)

    def loss(values: dict[str, float], grad: bool = False) -> tuple[float, dict[str, float]]:
        leaves = {}
        for key, value in values.items():
            leaves[key] = Float64(value)
            if grad:
                dr.enable_grad(leaves[key])
        params["geometry.det_shift_u"] = leaves["shift"]
        params["object.e.mu"] = leaves["mu"]
        params["object.e.center"] = dr.llvm.ad.Array2f64(leaves["cx"], Float64(-2.0))
        y = scene.line_integrals()
        total = dr.sum(y.array * dr.llvm.ad.Float64(weights.reshape(-1)))
        if grad:
            dr.backward(total)
        return float(total[0]), {k: float(dr.grad(v)[0]) for k, v in leaves.items()} if grad else {}

    x0 = {"shift": 0.3, "mu": 0.3, "cx": 1.0}
    _, grads = loss(x0, grad=True)
    for key in x0:
        h = 1e-5
        plus, _ = loss(x0 | {key: x0[key] + h})
        minus, _ = loss(x0 | {key: x0[key] - h})
        fd = (plus - minus) / (2 * h)
        assert grads[key] == pytest.approx(fd, rel=1e-5, abs=1e-6), key
    assert abs(grads["shift"]) > 1e-3 and abs(grads["cx"]) > 1e-3


def test_noise_is_reproducible_and_flat_panel_statistics(tmp_path: Path) -> None:
    text = SL2D + '\n[source]\nphotons = 1e4\n\n[detector]\ntype = "flat_panel"\ngain = 1.0\nbits = 16\n'
    scene = load_scene(write(tmp_path / "s.toml", text))
    a, b, c = scene.simulate(seed=3), scene.simulate(seed=3), scene.simulate(seed=4)
    np.testing.assert_array_equal(a.projections, b.projections)
    assert not np.array_equal(a.projections, c.projections)
    assert a.readings is not None and a.readings.dtype.kind == "u"
    # Poisson: readings ~ 1e4 exp(-p); the log transform is unbiased to O(1/N) and has variance ~ 1/(1e4 e^-p)
    z = (a.projections - a.line_integrals) / np.sqrt(np.exp(a.line_integrals) / 1e4)
    assert abs(z.mean()) < 0.1 and 0.85 < z.std() < 1.15


def test_overrides_scale_and_registry(tmp_path: Path) -> None:
    path = write(tmp_path / "s.toml", SL2D)
    scene = load_scene(path, overrides={"geometry.det_shape": 20, "objects[0].mu": 0.5, "detector.type": "ideal"})
    assert scene.projection_geometry().shape == (12, 20) and traverse(scene)["object.p.mu"] == 0.5
    small = load_scene(path, scale=0.5)
    pg = small.projection_geometry()
    assert pg.shape == (6, 20) and np.isclose(np.linalg.norm(pg.det_u[0]), 12.0)  # same field of view
    with pytest.raises(SceneError, match=r"objects\[3\]"):
        load_scene(path, overrides={"objects[3].mu": 1.0})

    @ct.scene.register("object", "half_sl")
    class HalfSL(ct.scene.objects.SheppLogan):  # type: ignore[attr-defined]
        def project(self, pg, t):  # type: ignore[no-untyped-def]
            return super().project(pg, t) * 0.5

    half = load_scene(write(tmp_path / "h.toml", SL2D.replace('"shepp_logan"', '"half_sl"')))
    np.testing.assert_allclose(
        half.simulate().line_integrals, 0.5 * load_scene(path).simulate().line_integrals, rtol=1e-6
    )


@pytest.mark.parametrize("path", SCENES, ids=[p.stem for p in SCENES])
def test_every_bundled_scene_simulates_and_round_trips(path: Path, tmp_path: Path) -> None:
    scene = load_scene(path, scale=0.08)
    sim = scene.simulate(seed=1)
    pg = scene.projection_geometry()
    assert sim.projections.shape == pg.shape == sim.line_integrals.shape
    assert np.all(np.isfinite(sim.projections)) and sim.line_integrals.max() > 0.01
    assert scene.describe().startswith(f"scene {scene.name!r}")
    scene.save(tmp_path / "copy.toml")
    again = load_scene(tmp_path / "copy.toml")
    expected = scene.to_dict(tmp_path)  # the copy is self-contained: data files read from scenes/ are copied beside it
    ct.scene.writer._outside_files(expected, tmp_path)
    assert again.to_dict(tmp_path) == expected
    np.testing.assert_array_equal(again.simulate(seed=1).projections, sim.projections)
    with pytest.raises(FileExistsError):
        scene.save(tmp_path / "copy.toml")
    full = load_scene(path)  # the full-size file loads and describes itself (not simulated here: too slow)
    assert full.projection_geometry().num_rays >= pg.num_rays


def test_saved_scene_text_is_toml_that_reads_back_exactly(tmp_path: Path) -> None:
    """Scene files are written by tomli-w and read by tomllib: awkward strings survive the round trip."""
    scene = load_scene("shepp_logan_2d", scale=0.1)
    scene.description = 'a "quoted" µ-CT\\scan\nover two lines\t[with] = signs # not a comment'
    scene.save(tmp_path / "s.toml")
    text = (tmp_path / "s.toml").read_text(encoding="utf-8")
    assert tomllib.loads(text) == scene.to_dict(tmp_path)
    assert load_scene(tmp_path / "s.toml").description == scene.description


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[geometry\ntype = 1", "", "invalid TOML"),
        ('[geometry]\ntype = "fann"', "geometry.type", "unknown geometry type 'fann'"),
        (SL2D.replace('type = "shepp_logan"', 'type = "blob"'), r"objects\[0\]\.type", "unknown object type"),
        (SL2D.replace('radius = "10 cm"', 'radius = "10 deg"'), r"objects\[0\]\.radius", "wrong units"),
        (SL2D.replace('det_spacing = "0.6 cm"', 'det_spacing = "0.6 kg"'), "geometry.det_spacing", "wrong units"),
        (SL2D.replace("det_spacing =", "det_spacng ="), "geometry.det_spacng", "unknown key"),
        (SL2D + '\n[[objects]]\ntype = "volume"\nfile = "missing.npy"', r"objects\[1\]\.file", "file not found"),
        (
            SL2D + '\n[[objects]]\ntype = "ellipsoid"\nname = "p"\ncenter = [0, 0]\naxes = [1, 1]\nmu = 1',
            r"objects\[1\]\.name",
            "duplicate",
        ),
        (SL2D + "\n[geometry.misalignment]\ndet_shift_v = 1.0", "geometry.misalignment.det_shift_v", "3D"),
        (SL2D + "\n[geometry.misalignment]\ncor_offset = [1.0, 2.0]", "geometry.misalignment.cor_offset", "per view"),
        (
            SL2D.replace('mu = "0.2 /cm"', 'material = "unobtainium"\ndensity = 1.0'),
            r"objects\[0\]\.material",
            "unknown material",
        ),
        (SL2D + '\n[detector]\ntype = "flat_panel"\nbits = 40', "detector.bits", "32"),
        ('[geometry]\ntype = "parallel"\nangles = { count = 0 }\ndet_shape = 4', "geometry.angles.count", "integer"),
    ],
    ids=[
        "toml",
        "geometry-type",
        "object-type",
        "units",
        "units-kg",
        "typo",
        "missing-file",
        "duplicate",
        "3d-only",
        "per-view",
        "material",
        "bits",
        "count",
    ],
)
def test_bad_scenes_give_one_clear_error(tmp_path: Path, text: str, key: str, problem: str) -> None:
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(SceneError, match=rf"bad\.toml: {key}.*{problem}" if key else rf"bad\.toml: {problem}") as err:
        load_scene(path)
    assert err.value.file == str(path) and isinstance(err.value, ValueError)


def test_missing_scene_file_and_bad_data(tmp_path: Path) -> None:
    with pytest.raises(SceneError, match=r"nope\.toml: scene file not found"):
        load_scene(tmp_path / "nope.toml")
    with pytest.raises(SceneError, match="expected a table"):
        parse_scene({"geometry": 3}, "x.toml")
    np.save(tmp_path / "v.npy", np.array(["a", "b"]))
    text = SL2D + '\n[[objects]]\ntype = "volume"\nfile = "v.npy"'
    with pytest.raises(SceneError, match=r"objects\[1\]\.file"):
        load_scene(write(tmp_path / "s.toml", text))


def test_expected_readings_are_differentiable_through_the_polychromatic_physics(tmp_path: Path) -> None:
    text = SL2D.replace('mu = "0.2 /cm"', 'material = "aluminium"\ndensity = 0.2') + (
        '\n[source]\ntype = "tube"\nkvp = 80\nphotons = 1e4\n\n[detector]\ntype = "flat_panel"\ngain = 2.0\n'
    )
    scene = load_scene(write(tmp_path / "s.toml", text))
    params = traverse(scene)

    def total(density: float, grad: bool = False) -> tuple[float, float]:
        rho = Float64(density)
        if grad:
            dr.enable_grad(rho)
        params["object.p.density"] = rho
        value = dr.sum(ct.scene.expected_readings(scene).array)
        if grad:
            dr.backward(value)
        return float(value[0]), float(dr.grad(rho)[0]) if grad else 0.0

    _, g = total(0.2, grad=True)
    fd = (total(0.2 + 1e-6)[0] - total(0.2 - 1e-6)[0]) / 2e-6
    assert g < 0 and g == pytest.approx(fd, rel=1e-5)
    # beam hardening without noise (ideal detector): the effective attenuation falls as the path grows
    ideal = load_scene(tmp_path / "s.toml", overrides={"detector": {"type": "ideal"}})
    sim = ideal.simulate()
    clean, poly = sim.line_integrals.ravel(), sim.projections.ravel()
    inside = clean > 1e-3
    low, high = np.quantile(clean[inside], [0.1, 0.9])
    thin, thick = inside & (clean <= low), clean >= high
    assert (poly[thick] / clean[thick]).max() < 0.8 * (poly[thin] / clean[thin]).min()


def test_volume_data_gradient_is_the_adjoint_and_changed_data_is_saved_beside(tmp_path: Path) -> None:
    data = np.random.default_rng(2).uniform(0, 1, (5, 6)).astype(np.float32)
    np.save(tmp_path / "v.npy", data)
    text = """
[geometry]
type = "parallel"
angles = { count = 7, stop = "180 deg" }
det_shape = 9

[[objects]]
type = "volume"
name = "vol"
file = "v.npy"
basis = "linear"
mu = 0.5
"""
    scene = load_scene(write(tmp_path / "s.toml", text))
    params = traverse(scene)
    x = dr.llvm.ad.TensorXf(data)
    dr.enable_grad(x)
    params["object.vol.data"] = x
    w = np.random.default_rng(3).uniform(-1, 1, scene.projection_geometry().shape)
    dr.backward(dr.sum(scene.line_integrals().array * Float64(w.reshape(-1))))
    A = ct.Projector(ct.VolumeGeometry((5, 6)), scene.projection_geometry(), basis="linear")
    np.testing.assert_allclose(dr.grad(x).numpy(), 0.5 * A.T(w.astype(np.float32)), rtol=1e-4, atol=1e-5)
    # saving writes the changed data beside the scene (never over an existing file without overwrite)
    params["object.vol.data"] = 2 * data
    out = tmp_path / "saved"
    out.mkdir()
    (out / "vol.npy").write_bytes(b"keep")
    with pytest.raises(FileExistsError, match=r"vol\.npy"):
        scene.save(out / "s.toml")
    assert (out / "vol.npy").read_bytes() == b"keep" and not (out / "s.toml").exists()
    scene.save(out / "s.toml", overwrite=True)
    again = load_scene(out / "s.toml")
    np.testing.assert_array_equal(traverse(again)["object.vol.data"], 2 * data)
    np.testing.assert_allclose(
        again.simulate().line_integrals, 2 * load_scene(tmp_path / "s.toml").simulate().line_integrals, rtol=1e-5
    )


def test_ray_lists_project_exactly_and_refuse_misalignment(tmp_path: Path) -> None:
    text = """
[geometry]
type = "rays"
origins = [[0.0, -50.0, 0.0], [3.0, 0.0, -40.0], [0.0, 0.0, 0.0]]
directions = [[0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [1.0, 1.0, 1.0]]

[[objects]]
type = "ellipsoid"
center = [0.0, 0.0, 0.0]
axes = [5.0, 5.0, 5.0]
mu = 0.1
"""
    scene = load_scene(write(tmp_path / "r.toml", text))
    y = scene.simulate().line_integrals
    np.testing.assert_allclose(y, [1.0, 0.2 * math.sqrt(25 - 9), 1.0], rtol=1e-6)
    assert not any(key.startswith("geometry.") for key in traverse(scene))
    with pytest.raises(SceneError, match=r"geometry\.misalignment: a ray list"):
        load_scene(write(tmp_path / "m.toml", text + "\n[geometry.misalignment]\ndet_shift_u = 1.0\n"))
    scene.save(tmp_path / "copy.toml")
    np.testing.assert_array_equal(load_scene(tmp_path / "copy.toml").simulate().line_integrals, y)


def test_copies_and_scaled_scenes_have_their_own_parameters(tmp_path: Path) -> None:
    scene = load_scene(write(tmp_path / "s.toml", SL2D))
    small, twin = scene.scaled(0.5), scene.copy()
    traverse(small)["object.p.mu"] = 1.0
    traverse(twin)["geometry.det_shift_u"] = 2.0
    assert traverse(scene)["object.p.mu"] == pytest.approx(0.02) and traverse(scene)["geometry.det_shift_u"] == 0.0
    assert "mu 0.02 /mm" in scene.describe()


@pytest.mark.slow
def test_misaligned_volume_scene_has_exact_geometry_gradients() -> None:
    path = next(p for p in SCENES if p.stem == "micro_ct_misaligned")
    scene = load_scene(path, scale=0.12, overrides={"scene.dtype": "float64"})
    params = traverse(scene)
    weights = Float64(np.random.default_rng(0).uniform(0, 1, scene.projection_geometry().num_rays))

    def loss(shift: float, grad: bool = False) -> float:
        value = Float64(shift)
        if grad:
            dr.enable_grad(value)
        params["geometry.det_shift_u"] = value
        total = dr.sum(scene.line_integrals().array * weights)
        if grad:
            dr.backward(total)
            return float(dr.grad(value)[0])
        return float(total[0])

    fd = (loss(1.2 + 1e-4) - loss(1.2 - 1e-4)) / 2e-4
    assert abs(fd) > 0.1 and loss(1.2, grad=True) == pytest.approx(fd, rel=1e-6)


def test_gain_pattern_is_removed_by_the_flat_field_and_noisy_flats_are_recorded(tmp_path: Path) -> None:
    text = (
        SL2D
        + '\n[source]\nphotons = 1e6\n\n[detector]\ntype = "flat_panel"\ngain = 40.0\ngain_variation = 0.1\nbits = 0\n'
    )
    scene = load_scene(write(tmp_path / "s.toml", text))
    sim = scene.simulate(seed=0)
    assert sim.readings is not None and np.ndim(sim.flat) == 1 and np.std(sim.flat) / np.mean(sim.flat) > 0.05
    # outside the object every view reads the flat field (up to shot noise): the pattern is the detector's
    outside = sim.line_integrals == 0
    ratio = sim.readings[outside] / np.broadcast_to(sim.flat, sim.readings.shape)[outside]
    assert abs(ratio.mean() - 1) < 2e-3 and ratio.std() < 5e-3
    # the exact flat removes the pattern: the projections are the line integrals up to shot noise
    assert np.abs(sim.projections - sim.line_integrals).mean() < 3e-3
    # a flat recorded as the mean of 4 noisy frames: noisy itself, and the same for the same seed
    frames = load_scene(tmp_path / "s.toml", overrides={"detector.flat_frames": 4})
    a, b = frames.simulate(seed=2), frames.simulate(seed=2)
    np.testing.assert_array_equal(a.flat, b.flat)
    assert 0 < np.abs(a.flat / sim.flat - 1).mean() < 3e-3
    frames.save(tmp_path / "copy.toml")
    np.testing.assert_array_equal(load_scene(tmp_path / "copy.toml").simulate(seed=2).flat, a.flat)
