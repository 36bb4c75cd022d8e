"""``drct simulate`` and ``drct info SCENE``: outputs, their agreement, refusal to overwrite, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import drct as ct
from drct.cli import main
from drct.scene import load_scene

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "scenes" / "shepp_logan_2d.toml"


def test_simulate_writes_every_output_consistently(tmp_path: Path) -> None:
    out = tmp_path / "sl"
    argv = ["simulate", str(DEFAULT), "-o", str(out), "--scale", "0.2", "--seed", "5", "--quiet"]
    assert main(argv) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {
        "flat.npy",
        "dark.npy",
        "projections.npy",
        "projections.tif",
        "line_integrals.npy",
        "readings.npy",
        "geometry.json",
        "scene.toml",
        "preview.png",
    }
    y = np.load(out / "projections.npy")
    clean = np.load(out / "line_integrals.npy")
    np.testing.assert_array_equal(tifffile.imread(out / "projections.tif"), y)
    pg, vg = ct.load_geometry(out / "geometry.json")
    assert y.shape == clean.shape == pg.shape and vg is not None and vg.ndim == 2
    # the copy of the scene reproduces the run: same geometry, same noise
    copy = load_scene(out / "scene.toml")
    sim = copy.simulate(seed=5)
    np.testing.assert_array_equal(sim.projections, y)
    np.testing.assert_allclose(copy.projection_geometry().to_vectors(), pg.to_vectors(), atol=1e-12)
    # the clean line integrals are the analytic Shepp-Logan projections (radius 100 mm, mu 0.2 /cm)
    np.testing.assert_allclose(clean, ct.phantoms.shepp_logan_projections(pg, radius=100.0) * 0.02, atol=1e-6)
    # the raw data and the flat/dark fields give the projections back (the scanner's log transform)
    raw, flat, dark = (np.load(out / f"{n}.npy").astype(np.float64) for n in ("readings", "flat", "dark"))
    assert flat.shape == dark.shape == y.shape[1:] and np.all(flat > 0)
    again = -np.log(np.maximum(raw - dark, 0.5) / (flat - dark))
    np.testing.assert_allclose(again, y, rtol=1e-5, atol=1e-5)
    assert (out / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_never_overwrites_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    argv = ["simulate", str(DEFAULT), "-o", str(out), "--scale", "0.1", "--quiet"]
    assert main(argv) == 0
    before = (out / "projections.npy").read_bytes()
    assert main([*argv, "--seed", "9"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (out / "projections.npy").read_bytes() == before
    assert main([*argv, "--seed", "9", "--force"]) == 0
    assert (out / "projections.npy").read_bytes() != before


def test_simulate_misaligned_3d_scene_writes_the_exact_geometry(tmp_path: Path) -> None:
    scene = ROOT / "scenes" / "micro_ct_misaligned.toml"
    out = tmp_path / "m"
    assert (
        main(
            [
                "simulate",
                str(scene),
                "-o",
                str(out),
                "--scale",
                "0.1",
                "--quiet",
                "--set",
                "geometry.misalignment.det_shift_u=2.0",
            ]
        )
        == 0
    )
    pg, _ = ct.load_geometry(out / "geometry.json")
    nominal = load_scene(scene, scale=0.1)
    nominal.misalignment.clear()
    expected = load_scene(scene, overrides={"geometry.misalignment.det_shift_u": 2.0}, scale=0.1)
    np.testing.assert_allclose(pg.to_vectors(), expected.projection_geometry().to_vectors(), atol=1e-12)
    assert not np.allclose(pg.to_vectors(), nominal.projection_geometry().to_vectors())
    assert tifffile.imread(out / "projections.tif").shape == pg.shape


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "missing.toml", "-o", "x"], "missing.toml: scene file not found"),
        (["simulate", str(DEFAULT), "-o", "x", "--scale", "2"], "scale must be in"),
        (["simulate", str(DEFAULT), "-o", "x", "--set", "geometry.type=fann"], "geometry.type: unknown geometry"),
        (["simulate", str(DEFAULT), "-o", "x", "--set", "nonsense"], "--set expects KEY=VALUE"),
        (["info", "missing.toml"], "missing.toml: scene file not found"),
    ],
)
def test_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0
    assert not (tmp_path / "x").exists()


def test_info_prints_the_scene_and_plain_info_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(ROOT / "scenes" / "helical.toml")]) == 0
    text = capsys.readouterr().out
    assert "scene 'helical'" in text and "object.bone.density" in text and "geometry.det_shift_u" in text
    assert main(["info"]) == 0
    assert "drjit" in capsys.readouterr().out


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    out = tmp_path / "m"
    run = subprocess.run(
        [sys.executable, "-m", "drct.cli", "simulate", str(DEFAULT), "-o", str(out), "--scale", "0.1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    assert (out / "projections.npy").is_file() and "written to" in run.stderr


def test_simulate_a_ray_list_writes_the_rays(tmp_path: Path) -> None:
    scene = tmp_path / "rays.toml"
    scene.write_text(
        '[geometry]\ntype = "rays"\norigins = [[0.0, -50.0], [2.0, -50.0]]\ndirections = [[0.0, 1.0], [0.0, 1.0]]\n'
        '\n[[objects]]\ntype = "ellipsoid"\ncenter = [0.0, 0.0]\naxes = [4.0, 4.0]\nmu = 0.5\n'
        '\n[detector]\ntype = "flat_panel"\n'
    )
    out = tmp_path / "o"
    assert main(["simulate", str(scene), "-o", str(out), "--quiet"]) == 0
    np.testing.assert_allclose(np.load(out / "rays.npy"), [[0, -50, 0, 1], [2, -50, 0, 1]])
    np.testing.assert_allclose(np.load(out / "line_integrals.npy"), [0.5 * 8.0, 0.5 * 2 * np.sqrt(12.0)], rtol=1e-6)
    assert not (out / "geometry.json").exists() and (out / "preview.png").is_file()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_run_that_fails_midway_leaves_the_old_folder_intact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder is one unit: a run killed after writing projections.npy must not leave it beside the old
    geometry.json (it did: every file was renamed into place on its own)."""
    import drct.cli.simulate as simulate

    out = tmp_path / "o"
    argv = ["simulate", str(DEFAULT), "-o", str(out), "--scale", "0.1", "--quiet"]
    assert main(argv) == 0
    old = _snapshot(out)

    def killed(*args: object) -> None:  # after the .npy files, before the TIFF, geometry and preview
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(simulate, "write_tiff", killed)
    assert main([*argv, "--seed", "3", "--force"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert _snapshot(out) == old
    assert [p.name for p in tmp_path.iterdir()] == ["o"]  # no staging folder left behind


def test_force_replaces_the_whole_folder_so_no_stale_file_survives(tmp_path: Path) -> None:
    out = tmp_path / "o"
    argv = ["simulate", str(DEFAULT), "-o", str(out), "--scale", "0.1", "--quiet"]
    assert main(argv) == 0 and (out / "readings.npy").is_file()
    # an ideal detector writes no raw readings: the old ones must not stay beside the new projections
    assert main([*argv, "--force", "--set", "detector={}"]) == 0
    assert not (out / "readings.npy").exists() and (out / "projections.npy").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["o"]


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_output_folder_replaces_atomically_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    from drct import io

    if not exchange:
        monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    out = tmp_path / "run"
    with io.output_folder(out) as staging:
        (staging / "a.txt").write_text("old")
        assert not out.exists()  # nothing at the destination until the end
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        io.check_output_folder(out, force=False)
    with pytest.raises(RuntimeError), io.output_folder(out, force=True, expected=["a.txt"]) as staging:
        (staging / "a.txt").write_text("new")
        raise RuntimeError("killed")
    assert (out / "a.txt").read_text() == "old"
    with io.output_folder(out, force=True, expected=["a.txt"]) as staging:
        (staging / "a.txt").write_text("new")
    assert (out / "a.txt").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["run"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="did not write"), io.output_folder(out, True, ["a.txt"]):
        pass
    assert (out / "notes.txt").read_text() == "mine"


def test_write_together_never_mixes_two_sets(tmp_path: Path) -> None:
    from drct.io import write_together

    a, b = tmp_path / "r.tif", tmp_path / "r.png"
    write_together({a: lambda t: Path(t).write_text("A1"), b: lambda t: Path(t).write_text("B1")})

    def fails(tmp: str) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_together({a: lambda t: Path(t).write_text("A2"), b: fails}, overwrite=True)
    assert (a.read_text(), b.read_text()) == ("A1", "B1")
    write_together({a: lambda t: Path(t).write_text("A3"), b: None}, overwrite=True)  # no companion this time
    assert a.read_text() == "A3" and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.tif"]
