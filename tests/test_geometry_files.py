"""Geometry files: JSON round trips, ASTRA vector files, refusal to overwrite, clear errors; select_views."""

from __future__ import annotations

import json
from typing import Any

import drjit as dr
import numpy as np
import pytest

import drct as ct
from drct.backend import drjit_module
from drct.geometry.files import load_geometry, save_geometry


def _geometries() -> list[ct.ProjectionGeometry]:
    a = np.linspace(0, 2 * np.pi, 7, endpoint=False)
    return [
        ct.parallel(a, 9, 0.7),
        ct.fan(a, 11, 1.3, 50.0, 90.0, curved=True),
        ct.cone(a, (5, 6), (0.9, 1.1), 80.0, 150.0),
        ct.helix(a, 12.0, (4, 8), 1.0, 80.0, 150.0, curved=True),
        ct.parallel(a, (3, 5), 0.5).perturb(det_roll=0.01, det_shift_u=0.3),
    ]


@pytest.mark.parametrize("index", range(5))
def test_json_round_trip_is_exact(tmp_path, index):
    pg = _geometries()[index]
    vg = ct.VolumeGeometry((4,) * pg.ndim, voxel_size=[0.5 + 0.1 * i for i in range(pg.ndim)], center=[0.1] * pg.ndim)
    path = save_geometry(tmp_path / "g.json", pg, vg)
    pg2, vg2 = load_geometry(path)
    assert pg2.beam == pg.beam and pg2.det_shape == pg.det_shape and pg2.curved == pg.curved
    np.testing.assert_array_equal(pg2.to_vectors(), pg.to_vectors())
    assert vg2 == vg
    data = json.loads(path.read_text())
    assert data["format"] == "drct-geometry" and data["version"] == 1
    assert len(data["projection"]["src"]) == pg.num_views


def test_json_without_volume_and_drjit_vectors(tmp_path):
    pg = _geometries()[2].with_drjit_vectors()
    save_geometry(tmp_path / "g.json", pg)
    pg2, vg2 = load_geometry(tmp_path / "g.json")
    assert vg2 is None
    np.testing.assert_array_equal(pg2.to_vectors(), pg.to_vectors())


def test_refuses_to_overwrite(tmp_path):
    pg = _geometries()[0]
    save_geometry(tmp_path / "g.json", pg)
    with pytest.raises(FileExistsError, match=r"g.json"):
        save_geometry(tmp_path / "g.json", pg)
    save_geometry(tmp_path / "g.json", _geometries()[1], overwrite=True)
    assert load_geometry(tmp_path / "g.json")[0].beam == "cone"


@pytest.mark.parametrize("suffix", [".txt", ".npy", ".csv"])
def test_astra_vector_files(tmp_path, suffix):
    pg = _geometries()[2]
    path = tmp_path / f"vec{suffix}"
    if suffix == ".csv":
        np.savetxt(path, pg.to_vectors(), delimiter=",", fmt="%.17g")
    else:
        save_geometry(path, pg)
    pg2, vg2 = load_geometry(path, beam="cone", det_shape=(5, 6))
    assert vg2 is None
    np.testing.assert_array_equal(pg2.to_vectors(), pg.to_vectors())
    assert pg2.shape == pg.shape


def test_errors_name_file_and_field(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing.json"):
        load_geometry(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"bad.json"):
        load_geometry(bad)
    pg = _geometries()[2]
    save_geometry(tmp_path / "g.json", pg)
    data = json.loads((tmp_path / "g.json").read_text())
    for key, value, pattern in [
        ("format", "other", "format"),
        ("version", 99, "version"),
    ]:
        broken = dict(data, **{key: value})
        (tmp_path / "b.json").write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=pattern):
            load_geometry(tmp_path / "b.json")
    for key in ("det_u", "beam", "det_shape"):
        proj = dict(data["projection"])
        del proj[key]
        (tmp_path / "b.json").write_text(json.dumps(dict(data, projection=proj)))
        with pytest.raises(ValueError, match=f"b.json.*projection.{key}"):
            load_geometry(tmp_path / "b.json")
    proj = dict(data["projection"], det=data["projection"]["det"][:3])
    (tmp_path / "b.json").write_text(json.dumps(dict(data, projection=proj)))
    with pytest.raises(ValueError, match="det must have 7 rows"):
        load_geometry(tmp_path / "b.json")
    proj = dict(data["projection"], beam="pencil")
    (tmp_path / "b.json").write_text(json.dumps(dict(data, projection=proj)))
    with pytest.raises(ValueError, match="beam"):
        load_geometry(tmp_path / "b.json")
    (tmp_path / "b.json").write_text(json.dumps(dict(data, volume={"shape": [4, 4]})))
    with pytest.raises(ValueError, match="volume"):
        load_geometry(tmp_path / "b.json")
    np.savetxt(tmp_path / "v.txt", pg.to_vectors())
    with pytest.raises(ValueError, match=r"v.txt.*beam"):
        load_geometry(tmp_path / "v.txt")
    with pytest.raises(ValueError, match=r"v.txt.*needs 6 columns.*has 12"):
        load_geometry(tmp_path / "v.txt", beam="cone", det_shape=6)
    np.savetxt(tmp_path / "w.txt", np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"w.txt.*\(views, 6\)"):
        load_geometry(tmp_path / "w.txt", beam="cone", det_shape=6)
    with pytest.raises(ValueError, match="volume geometry"):
        save_geometry(tmp_path / "x.txt", pg, ct.VolumeGeometry((2, 2, 2)))


def test_select_views_numpy_and_drjit():
    pg = _geometries()[2]
    sub = pg.select_views([5, 1, 3])
    np.testing.assert_array_equal(sub.to_vectors(), pg.to_vectors()[[5, 1, 3]])
    assert sub.select_views(slice(None, None, 2)).num_views == 2
    mask = np.zeros(7, bool)
    mask[[0, 6]] = True
    np.testing.assert_array_equal(pg.select_views(mask).to_vectors(), pg.to_vectors()[[0, 6]])
    with pytest.raises(ValueError, match="out of range"):
        pg.select_views([7])
    with pytest.raises(ValueError, match="at least one"):
        pg.select_views([])
    # Dr.Jit vectors: gathered, gradients reach the parent geometry
    shift = drjit_module().Float64(0.0)
    dr.enable_grad(shift)
    moved = pg.perturb(det_shift_u=shift)
    sub = moved.select_views([2, 4])
    np.testing.assert_allclose(sub.to_vectors(), moved.to_vectors()[[2, 4]])
    det: Any = sub.det
    loss = dr.sum(det.x + det.y)
    dr.backward(loss)
    u = pg.det_u[[2, 4]] / np.linalg.norm(pg.det_u[[2, 4]], axis=1, keepdims=True)
    assert dr.grad(shift)[0] == pytest.approx(float(np.sum(u[:, 0] + u[:, 1])), abs=1e-9)
