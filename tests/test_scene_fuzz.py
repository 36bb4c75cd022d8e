"""Fuzzing the scene loader: whatever the file holds, loading it either works or raises one SceneError that
names the file (never another exception type, never a crash)."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drct.scene import SceneError, load_scene, parse_scene
from drct.scene.volumes import Volume

VALID = {
    "scene": {"name": "fuzz", "dtype": "float32"},
    "volume": {"shape": [8, 8], "voxel_size": "1 mm"},
    "geometry": {
        "type": "fan",
        "angles": {"count": 4, "stop": "180 deg"},
        "det_count": 8,
        "det_spacing": "2 mm",
        "src_orig_dist": "50 mm",
        "src_det_dist": "100 mm",
        "misalignment": {"det_shift_u": "0.1 mm", "cor_offset": 0.2},
    },
    "objects": [
        {"type": "ellipsoid", "name": "e", "center": [0.0, 1.0], "axes": [3.0, 2.0], "mu": "0.1 /mm"},
        {"type": "shepp_logan", "radius": "5 mm", "material": "water", "density": 1.0},
    ],
    "source": {"type": "tube", "kvp": 80, "filtration": {"aluminium": "1 mm"}, "photons": 1e4},
    "detector": {"type": "flat_panel", "gain": 3.0, "bits": 12},
}

leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "1 mm",
            "-3 cm",
            "30 deg",
            "0.2 /cm",
            "60 keV",
            "2 kg",
            "1e999 mm",
            "nan mm",
            "water",
            "cone",
            "parallel",
            "volume",
            "mesh",
            "short",
            "../x.npy",
        ]
    ),
)
value = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += paths(v, (*prefix, i))
    return out


PATHS = paths(VALID)[1:]


def mutate(data: dict[str, Any], path: tuple[Any, ...], new: Any, delete: bool) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = new
    return out


def test_the_unmutated_scene_is_valid() -> None:
    scene = parse_scene(VALID, "fuzz.toml")
    assert scene.simulate(seed=0).projections.shape == (4, 8)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*saturate")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), value, st.booleans(), st.booleans())
def test_mutated_scenes_raise_only_scene_errors(path: tuple[Any, ...], new: Any, delete: bool, run: bool) -> None:
    data = mutate(VALID, path, new, delete)
    try:
        scene = parse_scene(data, "fuzz.toml")
    except SceneError as err:
        assert err.file == "fuzz.toml" and str(err).startswith("fuzz.toml")
        return
    if run and scene.projection_geometry().num_rays <= 4096:  # a scene that loads also simulates
        sim = scene.simulate(seed=0)
        assert sim.projections.shape == scene.projection_geometry().shape


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=100).map(lambda b: b.decode("latin-1")))
def test_arbitrary_text_raises_only_scene_errors(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scene.toml"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            load_scene(path)
        except SceneError as err:
            assert err.file == str(path)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(max_size=20), value, max_size=3))
def test_arbitrary_overrides_raise_only_scene_errors(overrides: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scene.toml"
        path.write_text('[geometry]\ntype = "parallel"\nangles = [0.0, 1.0]\ndet_shape = 4\n')
        try:
            load_scene(path, overrides=overrides)
        except SceneError:
            pass


DATA = Path(tempfile.mkdtemp(prefix="drct-fuzz-"))
np.save(DATA / "v.npy", np.ones((4, 5, 6), dtype=np.float32))
(DATA / "cube.obj").write_text(
    "\n".join(f"v {x} {y} {z}" for x in (-2, 2) for y in (-2, 2) for z in (-2, 2))
    + "\nf 1 2 4\nf 1 4 3\nf 5 7 8\nf 5 8 6\nf 1 5 6\nf 1 6 2\nf 3 4 8\nf 3 8 7\nf 1 3 7\nf 1 7 5\nf 2 6 8\nf 2 8 4\n"
)
VALID3D = {
    "geometry": {
        "type": "cone",
        "angles": {"count": 3},
        "det_shape": [6, 8],
        "det_spacing": 2.0,
        "src_orig_dist": 50.0,
        "src_det_dist": 100.0,
        "misalignment": {"det_roll": "1 deg", "motion_shift": [0.5, 0.0, 0.0]},
    },
    "objects": [
        {"type": "volume", "name": "v", "file": "v.npy", "voxel_size": [1.0, 1.0, 1.0], "basis": "bspline2"},
        {"type": "mesh", "name": "m", "file": "cube.obj", "material": "aluminium", "density": 2.7},
    ],
    "source": {"type": "spectrum", "energies": [40.0, 60.0], "weights": [1.0, 2.0]},
}
PATHS3D = paths(VALID3D)[1:]


def test_the_unmutated_3d_scene_is_valid() -> None:
    assert parse_scene(VALID3D, "fuzz3d.toml", DATA).simulate().line_integrals.max() > 1.0


@pytest.mark.filterwarnings("ignore:.*saturate")
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS3D), value, st.booleans())
def test_mutated_3d_scenes_with_files_raise_only_scene_errors(path: tuple[Any, ...], new: Any, delete: bool) -> None:
    try:
        scene = parse_scene(mutate(VALID3D, path, new, delete), "fuzz3d.toml", DATA)
    except SceneError as err:
        assert err.file == "fuzz3d.toml"
        return
    if scene.projection_geometry().num_rays <= 4096:
        assert scene.simulate(seed=0).projections.shape == scene.projection_geometry().shape


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0.0])
def test_non_finite_or_non_positive_distances(bad: float) -> None:
    with pytest.raises(SceneError, match=r"geometry\.src_orig_dist"):
        parse_scene(mutate(VALID, ("geometry", "src_orig_dist"), bad, False), "fuzz.toml")


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink", "symlinked-folder", "symlinked-slice"])
def test_scene_files_are_confined_to_the_scene_folder(where: str, tmp_path: Path) -> None:
    """A scene file may name data files only in its own folder (symlinks resolved) unless allow_outside."""
    outside, scenes = tmp_path / "outside", tmp_path / "scenes"
    outside.mkdir()
    scenes.mkdir()
    np.save(outside / "v.npy", np.ones((4, 5, 6), dtype=np.float32))
    name = {"absolute": str(outside / "v.npy"), "dotdot": "../outside/v.npy"}.get(where, "link/v.npy")
    if where == "symlinked-slice":  # a folder of TIFF slices inside, one of them a link to a file outside
        name = "slices"
        (scenes / "slices").mkdir()
        for k in range(4):
            tifffile.imwrite(outside / f"s{k}.tif", np.ones((5, 6), np.float32))
            target = scenes / "slices" / f"s{k}.tif"
            if k == 2:
                target.symlink_to(outside / f"s{k}.tif")
            else:
                target.write_bytes((outside / f"s{k}.tif").read_bytes())
    elif where == "symlink":
        (scenes / "link").mkdir()
        (scenes / "link" / "v.npy").symlink_to(outside / "v.npy")
    elif where == "symlinked-folder":
        (scenes / "link").symlink_to(outside)
    data = copy.deepcopy(VALID3D)
    data["objects"] = [{"type": "volume", "name": "v", "file": name}]
    with pytest.raises(SceneError, match=r"objects\[0\]\.file: .*outside the scene's folder"):
        parse_scene(data, str(scenes / "s.toml"))
    volume = parse_scene(data, str(scenes / "s.toml"), allow_outside=True).objects[0]
    assert isinstance(volume, Volume) and volume.vg.shape == (4, 5, 6)


def test_files_inside_the_scene_folder_may_be_symlinks(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "v.npy", np.ones((4, 5, 6), dtype=np.float32))
    (tmp_path / "v.npy").symlink_to(tmp_path / "data" / "v.npy")
    data = copy.deepcopy(VALID3D)
    data["objects"] = [{"type": "volume", "name": "v", "file": "v.npy"}]
    volume = parse_scene(data, str(tmp_path / "s.toml")).objects[0]
    assert isinstance(volume, Volume) and volume.vg.shape == (4, 5, 6)
