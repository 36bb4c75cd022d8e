"""Emission scenes (drct.emission.scene), the SPECT file (drct.emission.files), and the SPECT paths of
``drct simulate`` / ``drct reconstruct``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

import drct as ct
from drct.cli import main
from drct.emission.files import is_spect_file, load_spect, save_spect
from drct.emission.scene import is_emission_scene, load_emission_scene, parse_emission_scene

SCENE = Path(__file__).resolve().parents[1] / "scenes" / "emission" / "spect_torso.toml"


def minimal(**extra: object) -> dict:
    data: dict = {
        "volume": {"shape": [6, 12, 12], "voxel_size": "4 mm"},
        "scanner": {"type": "spect", "angles": {"count": 8}, "radius": "6 cm", "det_cols": 12, "det_spacing": 4.0},
        "objects": [{"type": "ellipsoid", "axes": ["1.6 cm", "1.6 cm", "1 cm"], "activity": 2.0, "mu": "0.154 /cm"}],
        "counts": {"total": 5e4},
    }
    data.update(extra)
    return data


def test_scene_maps_counts_and_seed() -> None:
    scene = parse_emission_scene(minimal())
    sim = scene.simulate(seed=3)
    f, mu = scene.activity(), scene.mu()
    inside = f > 1.99
    assert inside.sum() > 10 and np.allclose(mu[inside], 0.0154) and np.allclose(f[inside], 2.0)
    assert sim.counts.shape == scene.geometry.shape == (8, 6, 12)
    assert sim.expected.sum() == pytest.approx(5e4, rel=1e-5)
    # the expected counts are the attenuated, blurred projection times the sensitivity
    np.testing.assert_allclose(sim.expected, sim.sensitivity * scene.projector()(f), rtol=1e-5, atol=1e-6)
    assert np.array_equal(sim.counts, np.round(sim.counts)) and abs(sim.counts.sum() / 5e4 - 1) < 0.02
    assert np.array_equal(scene.simulate(seed=3).counts, sim.counts)
    assert not np.array_equal(scene.simulate(seed=4).counts, sim.counts)
    clean = parse_emission_scene(minimal(counts={"total": 5e4, "noise": "none"})).simulate()
    np.testing.assert_array_equal(clean.counts, clean.expected)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"scanner": {"type": "pet"}}, "scanner.type"),
        ({"objects": [{"type": "ellipsoid", "axes": [1.0, 1.0]}]}, "objects[0].axes"),
        ({"objects": [{"type": "cube", "axes": [1.0, 1.0, 1.0]}]}, "objects[0].type"),
        ({"objects": [{"type": "ellipsoid", "axes": [9.0, 9.0, 9.0], "activity": 1, "typo": 1}]}, "objects[0].typo"),
        ({"objects": []}, "objects"),
        ({"counts": {"total": -1.0}}, "counts.total"),
    ],
)
def test_scene_errors_name_the_key(change: dict, key: str) -> None:
    data = minimal()
    for table, value in change.items():
        data[table] = {**data[table], **value} if table == "scanner" else value
    with pytest.raises(ct.SceneError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_emission_scene(data, "x.toml")


def test_negative_sums_are_refused() -> None:
    data = minimal(objects=[{"type": "ellipsoid", "axes": [8.0, 8.0, 8.0], "activity": -1.0}])
    with pytest.raises(ValueError, match="activity values add up"):
        parse_emission_scene(data).simulate()


def test_spect_file_round_trip(tmp_path: Path) -> None:
    scene = parse_emission_scene(minimal())
    mu = scene.mu()
    path = save_spect(tmp_path / "a.json", scene.geometry, scene.volume, scene.collimator, mu, 7.5)
    assert is_spect_file(path) and not is_spect_file(SCENE)
    acq = load_spect(path)
    assert acq.sensitivity == 7.5 and acq.collimator == scene.collimator
    np.testing.assert_array_equal(acq.mu, mu)
    np.testing.assert_array_equal(acq.geometry.angles, scene.geometry.angles)
    f = scene.activity()
    np.testing.assert_allclose(acq.projector()(f), scene.projector()(f), rtol=1e-6)
    (tmp_path / "b.json").write_text('{"format": "drct.spect/1", "angles": [0]}')
    with pytest.raises(ValueError, match="malformed"):
        load_spect(tmp_path / "b.json")


def test_torso_scene_file() -> None:
    assert is_emission_scene(SCENE) and not is_emission_scene(SCENE.parents[1] / "shepp_logan_2d.toml")
    scene = load_emission_scene(SCENE, scale=0.25)
    assert scene.geometry.shape == (15, 10, 16) and scene.volume.shape == (10, 16, 16)
    full = load_emission_scene(SCENE)
    f, mu = full.activity(), full.mu()
    assert f.max() == pytest.approx(12.2, rel=1e-3) and mu.max() == pytest.approx(0.025, rel=1e-3)
    assert f.min() >= 0 and mu.min() >= 0


@pytest.mark.slow
def test_cli_simulate_then_osem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim"
    assert main(["simulate", str(SCENE), "-o", str(out), "--scale", "0.25", "--quiet"]) == 0
    files = {p.name for p in out.iterdir()}
    assert files == {"counts.npy", "expected.npy", "activity.npy", "mu.npy", "spect.json", "scene.toml", "preview.png"}
    counts, mu = np.load(out / "counts.npy"), np.load(out / "mu.npy")
    acq = load_spect(out / "spect.json")
    assert counts.shape == acq.geometry.shape and np.array_equal(acq.mu, mu) and mu.max() > 0.01
    assert load_emission_scene(out / "scene.toml", scale=0.25).geometry.shape == acq.geometry.shape
    rec = tmp_path / "osem.tif"
    args = ["reconstruct", str(out / "counts.npy"), "--geometry", str(out / "spect.json"), "--method", "osem"]
    assert main([*args, "--niter", "4", "-o", str(rec), "--no-progress"]) == 0
    volume, truth = tifffile.imread(rec), np.load(out / "activity.npy")
    assert volume.shape == truth.shape and (rec.with_suffix(".png")).is_file()
    body = truth > 0.5
    assert abs(volume[body].sum() / truth[body].sum() - 1) < 0.15  # counts / sensitivity: activity units
    assert np.corrcoef(volume.ravel(), truth.ravel())[0, 1] > 0.8
    # a scatter term that explains half the counts halves the activity
    np.save(tmp_path / "s.npy", np.load(out / "expected.npy") * 0.5)
    half = tmp_path / "half.tif"
    extra = ["--scatter", str(tmp_path / "s.npy"), "--niter", "4", "--no-progress", "-o", str(half)]
    assert main([*args, *extra]) == 0
    assert tifffile.imread(half)[body].sum() == pytest.approx(0.5 * volume[body].sum(), rel=0.1)
    capsys.readouterr()
    assert main([*args[:-1], "fbp", "-o", str(tmp_path / "x.tif")]) == 2
    assert "mlem or osem" in capsys.readouterr().err


def test_the_ct_loader_points_to_the_emission_one() -> None:
    with pytest.raises(ct.SceneError, match="emission_scene"):
        ct.load_scene(SCENE)
