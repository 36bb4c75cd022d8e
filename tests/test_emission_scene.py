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
        ({"scanner": {"type": "xray"}}, "scanner.type"),
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
    assert "mlem, osem or bsrem" in capsys.readouterr().err


def test_the_ct_loader_points_to_the_emission_one() -> None:
    with pytest.raises(ct.SceneError, match="emission_scene"):
        ct.load_scene(SCENE)


# -- PET ---------------------------------------------------------------------------------------------------------
PET_SCENE = SCENE.parent / "pet_iq.toml"


def minimal_pet(**extra: object) -> dict:
    scanner = {"type": "pet", "rings": 2, "crystals_per_ring": 24, "radius": "5 cm", "crystal_size": "4 mm"}
    data: dict = {
        "volume": {"shape": [2, 10, 10], "voxel_size": "4 mm"},
        "scanner": scanner,
        "objects": [{"type": "ellipsoid", "axes": ["1.4 cm", "1.4 cm", "1 cm"], "activity": 2.0, "mu": "0.096 /cm"}],
        "counts": {"total": 1e4, "randoms": 0.25},
    }
    data.update(extra)
    return data


def test_pet_scene_maps_counts_and_randoms() -> None:
    scene = parse_emission_scene(minimal_pet())
    assert scene.kind == "pet" and scene.collimator is None
    sim = scene.simulate(seed=1)
    assert sim.randoms is not None
    assert sim.counts.shape == scene.geometry.shape == sim.randoms.shape == (12, 4, 23)
    assert sim.randoms.sum() == pytest.approx(0.25 * 1e4, rel=1e-5)
    np.testing.assert_allclose(sim.randoms, sim.randoms.flat[0])  # evenly spread over the bins
    A = scene.projector()
    np.testing.assert_allclose(sim.expected, sim.sensitivity * A(scene.activity()) + sim.randoms, rtol=1e-5)
    assert (sim.expected - sim.randoms).sum() == pytest.approx(1e4, rel=1e-5)
    assert A.mu_vg is scene.volume and scene.mu().max() == pytest.approx(0.0096, rel=1e-6)
    tof = parse_emission_scene(
        minimal_pet(scanner={**minimal_pet()["scanner"], "tof": {"bins": 5, "bin_width": "2 cm", "fwhm": "5 cm"}})
    )
    assert tof.simulate(seed=1).counts.shape == (12, 4, 23, 5)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (
            {"scanner": {"type": "pet", "rings": 2, "crystals_per_ring": 24, "radius": "2.5 cm", "crystal_size": 1}},
            "volume",
        ),
        ({"scanner": {"type": "pet", "rings": 2, "crystals_per_ring": 23, "radius": "5 cm"}}, "scanner"),
        ({"scanner": {"type": "pet", "rings": 2, "crystals_per_ring": 24, "radius": "5 cm", "span": 2}}, "scanner"),
        ({"counts": {"randoms": -0.1}}, "counts.randoms"),
        ({"scanner": {"type": "pet", "rings": 2, "crystals_per_ring": 24, "radius": "5 cm", "dets": 1}}, "dets"),
    ],
)
def test_pet_scene_errors_name_the_key(change: dict, key: str) -> None:
    with pytest.raises(ct.SceneError, match=key):
        parse_emission_scene(minimal_pet(**change))


def test_pet_file_round_trip(tmp_path: Path) -> None:
    from drct.pet.files import is_pet_file, load_pet, save_pet

    scene = parse_emission_scene(minimal_pet())
    sim = scene.simulate(seed=0)
    path = save_pet(tmp_path / "pet.json", scene.geometry, scene.volume, sim.mu, 3.0, sim.randoms)
    assert is_pet_file(path) and not is_spect_file(path)
    acq = load_pet(path)
    assert acq.setup == scene.geometry and acq.sensitivity == 3.0
    assert acq.randoms is not None and acq.mu is not None
    np.testing.assert_array_equal(acq.randoms, sim.randoms)
    np.testing.assert_allclose(acq.projector()(sim.activity), scene.projector()(sim.activity), rtol=1e-6)
    with pytest.raises(ValueError, match="randoms"):
        save_pet(tmp_path / "bad.json", scene.geometry, scene.volume, None, 1.0, np.ones(3))


def test_pet_iq_scene_file() -> None:
    scene = load_emission_scene(PET_SCENE, scale=0.25)
    assert scene.kind == "pet" and scene.randoms == pytest.approx(0.1)
    assert scene.geometry.tof is not None and scene.geometry.scanner.crystals_per_ring == 32
    full = load_emission_scene(PET_SCENE)
    assert full.geometry.shape == (32, 47, 85, 9) and full.volume.shape == (16, 48, 48)


@pytest.mark.slow
def test_cli_simulate_pet_then_osem_and_bsrem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene = tmp_path / "pet.toml"
    from tomli_w import dumps

    scene.write_text(dumps(minimal_pet(counts={"total": 2e5, "randoms": 0.2})), encoding="utf-8")
    out = tmp_path / "sim"
    assert main(["simulate", str(scene), "-o", str(out), "--quiet"]) == 0
    files = {p.name for p in out.iterdir()}
    assert files == {"counts.npy", "expected.npy", "activity.npy", "mu.npy", "randoms.npy", "pet.json"} | {
        "scene.toml",
        "preview.png",
    }
    args = ["reconstruct", str(out / "counts.npy"), "--geometry", str(out / "pet.json")]
    truth = np.load(out / "activity.npy")
    results = {}
    for method, extra in (("osem", []), ("bsrem", ["--beta", "50"]), ("mlem", [])):
        rec = tmp_path / f"{method}.tif"
        assert main([*args, "--method", method, *extra, "--iterations", "6", "-o", str(rec), "--no-progress"]) == 0
        results[method] = volume = tifffile.imread(rec)
        assert volume.shape == truth.shape
        # counts / sensitivity with the randoms (20 % of the counts) as the additive term: activity units
        assert volume.sum() / truth.sum() == pytest.approx(1.0, abs=0.06), method
        assert np.corrcoef(volume.ravel(), truth.ravel())[0, 1] > 0.9, method
    inside = truth > 1.99
    assert results["bsrem"][inside].std() < 0.9 * results["osem"][inside].std()  # the prior smooths the noise
    capsys.readouterr()
    assert main([*args, "--method", "osem", "--beta", "1", "-o", str(tmp_path / "x.tif")]) == 2
    assert "--beta applies to bsrem" in capsys.readouterr().err
    assert main([*args, "--method", "sirt", "-o", str(tmp_path / "x.tif")]) == 2
    assert "mlem, osem or bsrem" in capsys.readouterr().err


def test_ct_data_refuse_bsrem_and_beta(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pg = ct.parallel(np.linspace(0, np.pi, 4, endpoint=False), 8, 1.0)
    np.save(tmp_path / "y.npy", np.ones(pg.shape, np.float32))
    ct.save_geometry(tmp_path / "g.json", pg, ct.VolumeGeometry((8, 8)))
    base = [
        "reconstruct",
        str(tmp_path / "y.npy"),
        "--geometry",
        str(tmp_path / "g.json"),
        "-o",
        str(tmp_path / "r.tif"),
    ]
    assert main([*base, "--method", "bsrem"]) == 2
    assert "emission data" in capsys.readouterr().err
    assert main([*base, "--method", "sirt", "--beta", "1"]) == 2
    assert "emission data" in capsys.readouterr().err


def test_cli_bsrem_on_spect_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene = parse_emission_scene(minimal(counts={"total": 1e5, "noise": "none"}))
    sim = scene.simulate()
    save_spect(tmp_path / "spect.json", scene.geometry, scene.volume, scene.collimator, sim.mu, sim.sensitivity)
    np.save(tmp_path / "counts.npy", sim.counts)
    args = ["reconstruct", str(tmp_path / "counts.npy"), "--geometry", str(tmp_path / "spect.json"), "--no-progress"]
    out = {}
    for beta in ("0", "3"):
        rec = tmp_path / f"b{beta}.tif"
        assert main([*args, "--method", "bsrem", "--beta", beta, "--iterations", "4", "-o", str(rec)]) == 0
        out[beta] = tifffile.imread(rec)
    assert out["0"].sum() / sim.activity.sum() == pytest.approx(1.0, abs=0.05)
    assert out["3"].sum() / sim.activity.sum() == pytest.approx(1.0, abs=0.1)
    assert np.abs(out["3"] - out["0"]).max() > 1e-3 * out["0"].max()  # --beta reaches the prior
    capsys.readouterr()
    assert main([*args, "--method", "bsrem", "--beta", "1000", "-o", str(tmp_path / "x.tif")]) == 2
    assert "--beta 1000" in capsys.readouterr().err
