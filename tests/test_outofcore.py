"""Out-of-core data (drct.outofcore): chunked stores, streaming FDK/FBP equal to the in-memory one, resume after
an interruption (an exception and a SIGKILL), memory budgets, and `drct reconstruct --memory`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

import drct as ct
from drct.errors import MemoryBudgetError, NonFiniteError
from drct.outofcore import Plan, cgls, create_array, fbp, fdk, open_array, parse_memory, plan, plan_views, sirt
from drct.outofcore.work import MANIFEST

VG = ct.VolumeGeometry((10, 32, 32))
BUDGET = 200_000  # bytes: 1 view per chunk and 4 z-planes per slab here (3 slabs), see test_plan_of_the_budget


def _flat() -> ct.ProjectionGeometry:
    return ct.cone(np.linspace(0, 2 * np.pi, 20, endpoint=False), (12, 24), 2.5, 80.0, 120.0)


GEOMETRIES = {
    "cone-flat-full": _flat,
    "cone-curved-short": lambda: ct.cone(np.linspace(0, np.pi + 1.0, 24), (12, 24), 2.5, 80.0, 120.0, curved=True),
    "parallel": lambda: ct.parallel(np.linspace(0, np.pi, 20, endpoint=False), (12, 24), 1.5),
}


def _data(pg: ct.ProjectionGeometry, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(pg.shape).astype(np.float32)


def _save(tmp_path: Path, y: np.ndarray, name: str = "y.npy") -> Path:
    path = tmp_path / name
    np.save(path, y)
    return path


def _in_memory(pg: ct.ProjectionGeometry, y: np.ndarray) -> np.ndarray:
    return np.asarray(ct.fbp(ct.Projector(VG, pg), y, progress=False))


# ------------------------------------------------------------------------------------------------ stores
def test_npy_store_reads_and_writes_blocks_in_place(tmp_path):
    a = create_array(tmp_path / "a.npy", (5, 2, 3), "float32")
    a.write(1, np.full((2, 2, 3), 7.0))
    a.write(4, np.arange(6.0).reshape(1, 2, 3))
    a.flush()
    expected = np.zeros((5, 2, 3), np.float32)
    expected[1:3], expected[4] = 7.0, np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), expected)  # a valid .npy file
    b = open_array(tmp_path / "a.npy")
    np.testing.assert_array_equal(b.read(2, 5), expected[2:5])
    assert b.kind == "npy" and b.dtype == np.float32
    with pytest.raises(IndexError, match=r"block \[3, 6\)"):
        b.read(3, 6)
    with pytest.raises(ValueError, match="reading only"):
        b.write(0, expected[:1])
    with pytest.raises(ValueError, match="does not fit"):
        a.write(0, np.zeros((1, 3, 2)))


def test_npy_store_refuses_bad_files(tmp_path):
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((3, 4, 5), np.float32)))
    with pytest.raises(ValueError, match="Fortran-ordered"):
        open_array(tmp_path / "f.npy")
    np.save(tmp_path / "t.npy", np.ones((3, 4, 5), np.float32))
    raw = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(raw[:-8])
    with pytest.raises(ValueError, match=r"not a readable \.npy"):
        open_array(tmp_path / "t.npy")
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(ValueError, match="array of numbers"):
        open_array(tmp_path / "s.npy")
    with pytest.raises(ValueError, match=r"must be a \.npy file"):
        open_array(tmp_path / "x.h5")


def test_tiff_stores_read_blocks_of_pages_and_of_files(tmp_path):
    stack = np.arange(4 * 3 * 5, dtype=np.uint16).reshape(4, 3, 5)
    tifffile.imwrite(tmp_path / "s.tif", stack, photometric="minisblack")
    folder = tmp_path / "scan" / "projections"
    folder.mkdir(parents=True)
    for i, image in enumerate(stack):
        tifffile.imwrite(folder / f"{i:03d}.tif", image)
    for path in (tmp_path / "s.tif", tmp_path / "scan"):
        a = open_array(path)
        assert a.kind == "tiff" and a.shape == (4, 3, 5) and a.dtype == np.uint16
        np.testing.assert_array_equal(a.read(1, 3), stack[1:3])
    with pytest.raises(ValueError, match="read-only"):
        open_array(tmp_path / "s.tif", writable=True)
    tifffile.imwrite(tmp_path / "rgb.tif", stack[:, :, :3].transpose(1, 0, 2).copy(), photometric="rgb")
    with pytest.raises(ValueError, match="3 samples"):
        open_array(tmp_path / "rgb.tif")
    (tmp_path / "scan" / "flats").mkdir()
    with pytest.raises(ValueError, match="flat/dark fields"):
        open_array(tmp_path / "scan")


def test_zarr_store_round_trip(tmp_path):
    pytest.importorskip("zarr")
    a = create_array(tmp_path / "a.zarr", (6, 2, 3), "float32", block=4)
    a.write(2, np.ones((3, 2, 3)))
    b = open_array(tmp_path / "a.zarr")
    assert b.kind == "zarr"
    np.testing.assert_array_equal(b.read(0, 6)[:, 0, 0], [0, 0, 1, 1, 1, 0])


# ------------------------------------------------------------------------------------------------ memory
def test_parse_memory():
    assert parse_memory("4GiB") == 4 * 2**30
    assert parse_memory("512 MiB") == 512 * 2**20
    assert parse_memory("1.5g") == int(1.5 * 2**30)
    assert parse_memory("2GB") == 2 * 10**9
    assert parse_memory(4096) == 4096
    for bad in ("lots", "-1G", "0", True, "4 GiBs"):
        with pytest.raises(ValueError, match="memory must be"):
            parse_memory(bad)


def test_plan_of_the_budget():
    pg = _flat()
    assert plan(VG, pg, BUDGET) == Plan(views=1, slab=4)
    assert plan(VG, pg, "1GiB") == Plan(views=20, slab=10)  # everything at once
    with pytest.raises(MemoryBudgetError, match="needs at least"):
        plan(VG, pg, "100KiB")


# ------------------------------------------------------------------------------------------------ streaming FDK
@pytest.mark.parametrize("name", sorted(GEOMETRIES))
def test_streaming_equals_in_memory(tmp_path, name):
    pg = GEOMETRIES[name]()
    y = _data(pg)
    out = fbp(VG, pg, _save(tmp_path, y), tmp_path / "x.npy", memory=BUDGET, progress=False)
    got, expected = np.load(out), _in_memory(pg, y)
    assert got.shape == VG.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-6 * np.abs(expected).max()
    assert not (tmp_path / ".x.npy.ooc-partial").exists()  # the work folder is gone


def test_streaming_result_does_not_depend_on_the_budget_or_the_formats(tmp_path):
    pytest.importorskip("zarr")
    pg = _flat()
    y = _data(pg)
    np.save(tmp_path / "y.npy", y)
    tifffile.imwrite(tmp_path / "y.tif", y)
    small = np.load(fdk(VG, pg, tmp_path / "y.npy", tmp_path / "a.npy", memory=BUDGET, progress=False))
    large = fdk(VG, pg, tmp_path / "y.tif", tmp_path / "b.zarr", memory="1GiB", progress=False)
    np.testing.assert_array_equal(open_array(large).read(0, 10), small)
    tif = fdk(VG, pg, tmp_path / "y.npy", tmp_path / "c.tif", memory=BUDGET, progress=False)
    np.testing.assert_array_equal(tifffile.imread(tif), small)


class Interrupt(Exception):
    pass


def _stop_after(stage: str, count: int):
    def callback(done_stage: str, done: int) -> None:
        if done_stage == stage and done >= count:
            raise Interrupt(f"{stage} {done}")

    return callback


@pytest.mark.parametrize("stage, count", [("filtered", 7), ("planes", 4)])
def test_interrupted_run_resumes_and_gives_the_same_bytes(tmp_path, stage, count):
    pg = _flat()
    path = _save(tmp_path, _data(pg))
    whole = np.load(fdk(VG, pg, path, tmp_path / "whole.npy", memory=BUDGET, progress=False))
    with pytest.raises(Interrupt):
        fdk(VG, pg, path, tmp_path / "x.npy", memory=BUDGET, progress=False, callback=_stop_after(stage, count))
    assert not (tmp_path / "x.npy").exists()
    manifest = json.loads((tmp_path / ".x.npy.ooc-partial" / MANIFEST).read_text())
    assert manifest["done"][stage] == count
    steps: list[tuple[str, int]] = []
    out = fdk(VG, pg, path, tmp_path / "x.npy", memory=BUDGET, progress=False, callback=lambda *s: steps.append(s))
    assert steps[0] == ((stage, count + 1) if stage == "filtered" else ("planes", 8))  # no finished step redone
    assert np.load(out).tobytes() == whole.tobytes()


@pytest.mark.slow  # a second interpreter imports drct: 3-4 s on 2 loaded cores
def test_killed_process_resumes_and_gives_the_same_bytes(tmp_path):
    pg = _flat()
    path = _save(tmp_path, _data(pg))
    whole = np.load(fdk(VG, pg, path, tmp_path / "whole.npy", memory=BUDGET, progress=False))
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        import numpy as np
        sys.path.insert(0, {str(Path(ct.__file__).parents[1])!r})
        import drct as ct
        from drct.outofcore import fdk

        def kill(stage, done):
            if stage == "planes":
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: as a crash or an OOM kill

        pg = ct.cone(np.linspace(0, 2 * np.pi, 20, endpoint=False), (12, 24), 2.5, 80.0, 120.0)
        fdk(ct.VolumeGeometry({VG.shape}), pg, {str(path)!r}, {str(tmp_path / "x.npy")!r},
            memory={BUDGET}, progress=False, callback=kill)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    manifest = json.loads((tmp_path / ".x.npy.ooc-partial" / MANIFEST).read_text())
    assert manifest["done"] == {"filtered": 20, "planes": 4}
    out = fdk(VG, pg, path, tmp_path / "x.npy", memory=BUDGET, progress=False)
    assert np.load(out).tobytes() == whole.tobytes()


def test_an_interrupted_run_with_other_inputs_is_not_resumed(tmp_path):
    pg = _flat()
    path = _save(tmp_path, _data(pg))
    with pytest.raises(Interrupt):
        fdk(VG, pg, path, tmp_path / "x.npy", memory=BUDGET, progress=False, callback=_stop_after("planes", 4))
    with pytest.raises(ValueError, match="interrupted run with other filter"):
        fdk(VG, pg, path, tmp_path / "x.npy", memory=BUDGET, progress=False, filter="hann")
    np.save(path, _data(pg, seed=1))  # new data at the same path
    with pytest.raises(ValueError, match="other projections"):
        fdk(VG, pg, path, tmp_path / "x.npy", memory=BUDGET, progress=False)
    out = fdk(VG, pg, path, tmp_path / "x.npy", memory=BUDGET, progress=False, resume=False, filter="hann")
    expected = np.asarray(ct.fdk(ct.Projector(VG, pg), np.load(path), filter="hann", progress=False))
    assert np.abs(np.load(out) - expected).max() <= 1e-6 * np.abs(expected).max()


def test_streaming_refuses_bad_input(tmp_path):
    pg = _flat()
    y = _data(pg)
    y[13, 2, 5] = np.nan
    path = _save(tmp_path, y)
    with pytest.raises(NonFiniteError, match=r"projections 13\.\.13"):
        fdk(VG, pg, path, tmp_path / "x.npy", memory=BUDGET, progress=False)
    with pytest.raises(ValueError, match=r"geometry expects \(20, 12, 24\)"):
        fdk(VG, pg, _save(tmp_path, y[:10], "short.npy"), tmp_path / "x.npy", progress=False)
    with pytest.raises(ValueError, match="3D cone-beam"):
        fdk(VG, GEOMETRIES["parallel"](), path, tmp_path / "x.npy", progress=False)
    with pytest.raises(ValueError, match="3D VolumeGeometry"):
        fbp(ct.VolumeGeometry((32, 32)), pg, path, tmp_path / "x.npy", progress=False)
    with pytest.raises(ValueError, match="output must be"):
        fdk(VG, pg, path, tmp_path / "x.h5", progress=False)
    (tmp_path / "taken.npy").write_bytes(b"")
    with pytest.raises(FileExistsError, match=r"taken\.npy"):
        fdk(VG, pg, path, tmp_path / "taken.npy", progress=False)
    helix = ct.helix(np.linspace(-2 * np.pi, 2 * np.pi, 20), 10.0, (12, 24), 2.5, 80.0, 120.0)
    with pytest.raises(ValueError, match="helical"):
        fdk(VG, helix, path, tmp_path / "x.npy", progress=False)


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_reconstructs_a_store_within_a_memory_budget(tmp_path, capsys):
    from drct.cli import main

    pg = _flat()
    y = _data(pg)
    path = _save(tmp_path, y)
    ct.save_geometry(tmp_path / "g.json", pg, VG)
    code = main(
        ["reconstruct", str(path), "--geometry", str(tmp_path / "g.json"), "--method", "fdk", "--memory", "200000",
         "--no-progress", "-o", str(tmp_path / "x.npy")]
    )  # fmt: skip
    assert code == 0
    expected = _in_memory(pg, y)
    assert np.abs(np.load(tmp_path / "x.npy") - expected).max() <= 1e-6 * np.abs(expected).max()
    code = main(["reconstruct", str(path), "--geometry", str(tmp_path / "g.json"), "--method", "os_sart",
                 "--memory", "1GiB", "-o", str(tmp_path / "s.tif")])  # fmt: skip
    assert code == 2 and "--memory streams fbp/fdk/sirt/cgls, not os_sart" in capsys.readouterr().err


def test_cli_streams_sirt_into_a_tiff_stack(tmp_path):
    from drct.cli import main

    pg = _flat()
    y = _data(pg)
    ct.save_geometry(tmp_path / "g.json", pg, VG)
    code = main(
        ["reconstruct", str(_save(tmp_path, y)), "--geometry", str(tmp_path / "g.json"), "--method", "sirt",
         "--niter", "3", "--memory", str(_sirt_budget(pg, 6)), "--no-progress", "-o", str(tmp_path / "x.tif")]
    )  # fmt: skip
    assert code == 0 and not (tmp_path / ".x.tif.ooc-partial").exists()
    expected = np.asarray(ct.recon.sirt(ct.Projector(VG, pg), y, niter=3, progress=False))
    assert np.abs(tifffile.imread(tmp_path / "x.tif") - expected).max() <= 2e-6 * np.abs(expected).max()


# ------------------------------------------------------------------------------------------------ streaming SIRT
def _sirt_budget(pg: ct.ProjectionGeometry, views: int) -> int:
    from drct.outofcore.solvers import SOLVER_BYTES_PER_RAY, _volume_bytes

    return _volume_bytes(VG) + SOLVER_BYTES_PER_RAY * views * int(np.prod(pg.det_shape))


@pytest.mark.parametrize("nonneg", [False, True])
def test_streaming_sirt_equals_in_memory(tmp_path, nonneg):
    pg = _flat()
    A = ct.Projector(VG, pg)
    y = A(ct.phantoms.shepp_logan(VG)) + 0.05 * _data(pg)
    budget = _sirt_budget(pg, 6)
    assert plan_views(VG, pg, budget) == 6  # 4 chunks of views
    got = sirt(VG, pg, _save(tmp_path, y), niter=4, memory=budget, nonneg=nonneg, progress=False)
    expected = np.asarray(ct.recon.sirt(A, y, niter=4, nonneg=nonneg, progress=False))
    assert np.abs(got - expected).max() <= 2e-6 * np.abs(expected).max()  # measured 3e-7
    assert bool(np.all(got >= 0)) == nonneg


@pytest.mark.parametrize("solver, niter, stop_at", [(sirt, 4, 2), (cgls, 5, 3)])
def test_streaming_solver_resumes_after_the_last_saved_iteration(tmp_path, solver, niter, stop_at):
    pg = _flat()
    path = _save(tmp_path, _data(pg))
    budget = _sirt_budget(pg, 6)
    with ct.deterministic():  # bit-reproducible scatter-adds: the same bytes from every run
        whole = solver(VG, pg, path, niter=niter, memory=budget, progress=False)

        def stop(k: int, x: np.ndarray) -> None:
            if k == stop_at:
                raise Interrupt(f"after {k}")

        with pytest.raises(Interrupt):
            solver(VG, pg, path, niter=niter, memory=budget, checkpoint=tmp_path / "ck", progress=False, callback=stop)
        seen: list[int] = []
        again = solver(VG, pg, path, niter=niter, memory=budget, checkpoint=tmp_path / "ck", progress=False,
                       callback=lambda k, x: seen.append(k))  # fmt: skip
    assert seen == list(range(stop_at + 1, niter + 1))  # CGLS: from the residual array the last iteration wrote
    assert again.tobytes() == whole.tobytes()
    with pytest.raises(MemoryBudgetError, match="was planned for"):  # its chunks need more than a smaller budget
        solver(VG, pg, path, niter=niter + 1, memory=_sirt_budget(pg, 3), checkpoint=tmp_path / "ck", progress=False)
    if solver is sirt:
        with pytest.raises(ValueError, match="interrupted run with other options"):
            sirt(VG, pg, path, niter=5, memory=budget, checkpoint=tmp_path / "ck", nonneg=True, progress=False)


def test_streaming_sirt_refuses_a_volume_that_does_not_fit():
    with pytest.raises(MemoryBudgetError, match="the volume must fit in memory"):
        plan_views(VG, _flat(), "100KiB")


def test_streaming_cgls_equals_in_memory(tmp_path):
    pg = _flat()
    A = ct.Projector(VG, pg)
    y = A(ct.phantoms.shepp_logan(VG)) + 0.05 * _data(pg)
    # 4 iterations: CGLS amplifies float32 rounding (two in-memory runs differ by 5e-5 after 10, 2e-7 after 4)
    got = cgls(VG, pg, _save(tmp_path, y), niter=4, memory=_sirt_budget(pg, 6), progress=False)
    expected = np.asarray(ct.recon.cgls(A, y, niter=4, progress=False))
    assert np.abs(got - expected).max() <= 2e-6 * np.abs(expected).max()  # measured 2e-7
