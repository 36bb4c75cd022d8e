"""Fuzzing the ``drct`` command line: every bad input ends in ONE line on stderr and exit status 2 — no
traceback, no hang, no allocation of what a file or an option merely claims — and a failed run leaves no output.

Run in-process (``drct.cli.main``; a SIGALRM watchdog turns a hang into a failure), plus one subprocess case.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

import drct as ct
import drct.memory
from drct.cli import main

ROOT = Path(__file__).resolve().parent.parent
SCENE = """[scene]
name = "tiny"
[geometry]
type = "parallel"
angles = [0.0, 0.5, 1.0, 1.5]
det_shape = 8
[[objects]]
type = "ellipsoid"
center = [0.0, 0.0]
axes = [2.0, 3.0]
mu = 0.1
"""


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A folder with a tiny consistent scan (geometry.json, y.npy, y.tif), a scene file and a regular file."""
    pg = ct.parallel(np.linspace(0, np.pi, 6, endpoint=False), 8)
    ct.save_geometry(tmp_path / "geometry.json", pg, ct.VolumeGeometry((8, 8)))
    y = np.ones(pg.shape, np.float32)
    np.save(tmp_path / "y.npy", y)
    tifffile.imwrite(tmp_path / "y.tif", y)
    (tmp_path / "scene.toml").write_text(SCENE)
    (tmp_path / "file").write_text("a regular file")
    return tmp_path


@pytest.fixture(autouse=True)
def watchdog() -> Iterator[None]:
    """Fail (instead of hanging forever) a case that takes over 30 s."""

    def hang(signum: int, frame: object) -> None:
        raise TimeoutError("the CLI hung")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _npy_header(path: Path, shape: tuple[int, ...], descr: str = "<f4") -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})


def _zip_as_npy(d: Path) -> None:
    np.savez(d / "z.npz", a=np.zeros(3))
    os.replace(d / "z.npz", d / "bad.npy")


def _truncated_tiff(d: Path) -> None:
    (d / "bad.tif").write_bytes((d / "y.tif").read_bytes()[:200])


def _fifo_slices(d: Path) -> None:
    (d / "slices").mkdir()
    tifffile.imwrite(d / "slices" / "s0.tif", np.ones((4, 4), np.float32))
    os.mkfifo(d / "slices" / "s1.tif")
    (d / "vol.toml").write_text(SCENE + '[[objects]]\ntype = "volume"\nfile = "slices"\n')


def _scene_with(d: Path, text: str) -> None:
    (d / "bad.toml").write_text(text)


# (id, prepare(folder), argv with {d} for the folder, a fragment of the one-line message)
CASES: list[tuple[str, Callable[[Path], object] | None, str, str]] = [
    # projection files
    ("empty-npy", lambda d: (d / "bad.npy").write_bytes(b""), "reconstruct {d}/bad.npy", "not a .npy file (empty)"),
    ("npz-renamed-npy", _zip_as_npy, "reconstruct {d}/bad.npy", "zip archive"),
    ("text-as-npy", lambda d: (d / "bad.npy").write_text("1 2 3"), "reconstruct {d}/bad.npy", "not a .npy file"),
    ("petabyte-header", lambda d: _npy_header(d / "bad.npy", (10**8, 10**8)), "reconstruct {d}/bad.npy", "truncated"),
    ("negative-shape", lambda d: _npy_header(d / "bad.npy", (-5, 3)), "reconstruct {d}/bad.npy", "invalid .npy header"),
    ("object-dtype", lambda d: _npy_header(d / "bad.npy", (2,), "|O"), "reconstruct {d}/bad.npy", "must hold numbers"),
    ("string-dtype", lambda d: np.save(d / "bad.npy", np.array(["a"])), "reconstruct {d}/bad.npy", "must hold numbers"),
    ("truncated-tiff", _truncated_tiff, "reconstruct {d}/bad.tif", "not a readable TIFF"),
    ("text-as-tiff", lambda d: (d / "bad.tif").write_text("II*"), "reconstruct {d}/bad.tif", "not a readable TIFF"),
    ("fifo-projections", lambda d: os.mkfifo(d / "bad.npy"), "reconstruct {d}/bad.npy", "is a FIFO"),
    ("folder-projections", lambda d: (d / "bad.npy").mkdir(), "reconstruct {d}/bad.npy", "is a folder"),
    ("missing-projections", None, "reconstruct {d}/none.npy", "does not exist"),
    ("projections-suffix", None, "reconstruct {d}/file", "must be a .npy file or a .tif"),
    ("nan-projections", lambda d: np.save(d / "bad.npy", np.full((6, 8), np.nan)), "reconstruct {d}/bad.npy", "NaN"),
    ("inf-projections", lambda d: np.save(d / "bad.npy", np.full((6, 8), np.inf)), "reconstruct {d}/bad.npy", "NaN"),
    ("wrong-shape", lambda d: np.save(d / "bad.npy", np.ones((5, 8))), "reconstruct {d}/bad.npy", "have shape"),
    # geometry files
    ("deep-json", lambda d: (d / "g.json").write_text("[" * 100_000 + "]" * 100_000), "geometry {d}/g.json", "deep"),
    ("empty-json", lambda d: (d / "g.json").write_text(""), "geometry {d}/g.json", "not a drct geometry JSON"),
    ("json-list", lambda d: (d / "g.json").write_text("[1]"), "geometry {d}/g.json", "expected a JSON object"),
    ("fifo-geometry", lambda d: os.mkfifo(d / "g.json"), "geometry {d}/g.json", "is a FIFO"),
    ("npz-vectors", lambda d: np.savez(d / "g.npz", a=1), "geometry {d}/g.npz", "not a drct geometry JSON"),
    # outputs
    ("output-under-file", None, "reconstruct {d}/y.npy -o {d}/file/r.tif", "is a file, not a folder"),
    ("output-is-folder", lambda d: (d / "r.tif").mkdir(), "reconstruct {d}/y.npy -o {d}/r.tif --force", "is a folder"),
    ("output-suffix", None, "reconstruct {d}/y.npy -o {d}/r.png", "must end in .tif"),
    ("sim-output-under-file", None, "simulate {d}/scene.toml -o {d}/file/out", "is a file, not a folder"),
    ("sim-output-is-file", None, "simulate {d}/scene.toml -o {d}/file --force", "exists and is not a folder"),
    (
        "sim-output-foreign",
        lambda d: (d / "o").mkdir() or (d / "o" / "mine.txt").write_text("x"),
        "simulate {d}/scene.toml -o {d}/o --force",
        "holds files drct did not write",
    ),
    # sizes
    ("huge-shape", None, "reconstruct {d}/y.npy --shape 46000 46000", "of memory, but only"),
    ("huge-shape-beyond-int32", None, "reconstruct {d}/y.npy --shape 1000000 1000000", "of memory, but only"),
    ("zero-shape", None, "reconstruct {d}/y.npy --shape 0 8", "shape"),
    ("negative-shape-arg", None, "reconstruct {d}/y.npy --shape -8 8", "shape"),
    (
        "scene-over-uint32",
        None,
        "simulate {d}/scene.toml -o {d}/o --set geometry.det_shape=1048576 --set geometry.angles={count=1048576}",
        "rays one simulation can index",
    ),
    (
        "scene-over-memory",
        None,
        "simulate {d}/scene.toml -o {d}/o --set geometry.det_shape=60000 --set geometry.angles={count=60000}",
        "of memory, but only",
    ),
    (
        "calibrate-huge-volume",
        None,
        "calibrate {d}/y.npy --geometry {d}/geometry.json --params det_shift_u -o {d}/c --volume-shape 90000,90000",
        "of memory, but only",
    ),
    (
        "calibrate-nan",
        lambda d: np.save(d / "bad.npy", np.full((6, 8), np.nan)),
        "calibrate {d}/bad.npy --geometry {d}/geometry.json --params det_shift_u -o {d}/c",
        "NaN",
    ),
    (
        "calibrate-volume-text",
        None,
        "calibrate {d}/y.npy --geometry {d}/geometry.json --params det_shift_u -o {d}/c --volume-shape a,b",
        "comma-separated integers",
    ),
    # scene files
    ("folder-scene", lambda d: (d / "bad.toml").mkdir(), "simulate {d}/bad.toml", "not a regular file"),
    ("missing-scene", None, "simulate {d}/none.toml", "scene file not found"),
    ("deep-toml", lambda d: _scene_with(d, "a = " + "[" * 100_000 + "]" * 100_000), "simulate {d}/bad.toml", "bad"),
    ("deep-set", None, "simulate {d}/scene.toml --set scene.name=" + "[" * 20_000 + "]" * 20_000, "nested too deeply"),
    (
        "huge-scene-name",
        lambda d: _scene_with(d, SCENE.replace('"tiny"', '"' + "n" * 10_000_000 + '"')),
        "simulate {d}/bad.toml",
        "at most 200 characters",
    ),
    (
        "long-object-name",
        lambda d: _scene_with(d, SCENE + 'name = "' + "o" * 5000 + '"\n'),
        "simulate {d}/bad.toml",
        "at most 200 characters",
    ),
    ("fifo-among-slices", _fifo_slices, "simulate {d}/vol.toml", "is a FIFO"),
    ("fifo-scene", lambda d: os.mkfifo(d / "bad.toml"), "simulate {d}/bad.toml", "not a regular file"),
    (
        "scene-file-outside",
        lambda d: _scene_with(d, SCENE + '[[objects]]\ntype = "volume"\nfile = "/etc/hostname"\n'),
        "simulate {d}/bad.toml",
        "outside the scene's folder",
    ),
    (
        "info-deep-toml",
        lambda d: _scene_with(d, "[a]\nb = " + "{c = " * 5000 + "1" + "}" * 5000),
        "info {d}/bad.toml",
        "bad.toml",
    ),
    # the command line itself
    ("argument-too-long", None, "simulate {d}/scene.toml --set scene.name=" + "x" * 200_000, "characters (limit"),
    ("unknown-method", None, "reconstruct {d}/y.npy --method magic", "invalid choice"),
    ("niter-not-int", None, "reconstruct {d}/y.npy --iterations many", "invalid int value"),
    ("no-command", None, "", "required: command"),
]


def _argv(template: str, d: Path) -> list[str]:
    argv = [a.replace("{d}", str(d)) for a in template.split(" ") if a]
    if argv[:1] == ["reconstruct"] and "-o" not in argv:
        argv += ["-o", str(d / "r.tif")]
    if argv[:1] == ["reconstruct"] and "--geometry" not in argv:
        argv += ["--geometry", str(d / "geometry.json")]
    if argv[:1] == ["geometry"]:  # a reconstruction whose geometry file is the bad input
        argv = ["reconstruct", str(d / "y.npy"), "--geometry", argv[1], "-o", str(d / "r.tif")]
    if argv[:1] == ["simulate"] and "-o" not in argv:
        argv += ["-o", str(d / "o")]
    return [*argv, "--no-progress"] if argv[:1] in (["reconstruct"], ["calibrate"]) else argv


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize(("prepare", "template", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(
    prepare: Callable[[Path], object] | None,
    template: str,
    message: str,
    data: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(drct.memory, "available_bytes", lambda: 2**33)  # 8 GiB, whatever this machine has
    if prepare is not None:
        prepare(data)
    before = sorted(p.name for p in data.iterdir())
    assert main(_argv(template, data)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err[:2000]
    assert message in err, err[:2000]
    assert len(err) < 2000
    after = sorted(p.name for p in data.iterdir())
    assert after == before  # no output, no staging folder left behind


def test_disk_full_is_one_line_and_keeps_the_old_outputs(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["reconstruct", str(data / "y.npy"), "--geometry", str(data / "geometry.json"), "-o", str(data / "r.tif")]
    assert main([*argv, "--no-progress"]) == 0
    old = {n: (data / n).read_bytes() for n in ("r.tif", "r.png")}

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tifffile, "imwrite", full)
    capsys.readouterr()
    assert main([*argv, "--no-progress", "--force"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "free disk space" in err
    assert {n: (data / n).read_bytes() for n in old} == old
    assert not [p for p in data.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_fifo_among_slices_does_not_hang_a_real_process(data: Path) -> None:
    _fifo_slices(data)
    run = subprocess.run(
        [sys.executable, "-m", "drct.cli", "simulate", str(data / "vol.toml"), "-o", str(data / "o")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1 and "is a FIFO" in run.stderr


def test_allow_outside_files_lets_a_scene_read_elsewhere(data: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    np.save(elsewhere / "v.npy", np.ones((4, 4), np.float32))
    _scene_with(data, SCENE + f'[[objects]]\ntype = "volume"\nfile = "{elsewhere / "v.npy"}"\n')
    argv = ["simulate", str(data / "bad.toml"), "-o", str(data / "o"), "--no-progress"]
    assert main(argv) == 2
    assert main([*argv, "--allow-outside-files"]) == 0
    # the copy of the scene in the output is self-contained: the data file was copied beside it
    assert (data / "o" / "v.npy").is_file()
    assert json.dumps(ct.load_scene(data / "o" / "scene.toml").to_dict(data / "o")).count('"v.npy"') == 1


def test_calibrate_that_fails_while_writing_leaves_the_old_folder_intact(
    data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import drct.calibration.report as report

    out = data / "c"
    argv = ["calibrate", str(data / "y.npy"), "--geometry", str(data / "geometry.json"), "--params", "det_shift_u"]
    argv += ["--iterations", "1", "--recon-iterations", "2", "--final-recon-iterations", "2", "--no-progress"]
    assert main([*argv, "-o", str(out)]) == 0
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(old) == {"geometry.json", "reconstruction.tif", "calibration.json", "report.png"}

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(report, "write_report", full)  # the last file of the set
    capsys.readouterr()
    assert main([*argv, "-o", str(out), "--force"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old
    assert not [p for p in data.iterdir() if p.name.startswith(".")]  # no staging folder left behind
