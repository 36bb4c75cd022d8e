"""``drct generate`` and :mod:`drct.datasets`: the --vary grammar, deterministic samples, the same bytes serially
and on Ray (2 workers), no sample lost when a worker is killed, and the dataset read back through torch."""

from __future__ import annotations

import importlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import drct as ct
from drct.cli import main
from drct.datasets import Recipe, SimulatedDataset, Variations, generate, simulate_sample
from drct.datasets.generate import sample_bytes
from drct.datasets.sample import FAULT_ENV, rasterize_scene, sample_seeds
from drct.datasets.vary import Variation
from drct.errors import NonFiniteError

ROOT = Path(__file__).resolve().parent.parent
SL2D = str(ROOT / "scenes" / "shepp_logan_2d.toml")
VARY = ["object.*.mu=uniform(0.01,0.03)", "geometry.det_shift_u=normal(0,1)"]


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    return Recipe.from_file(SL2D, VARY, seed=3, scale=0.2)


@pytest.fixture(scope="module")
def serial(recipe: Recipe, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 samples generated in this process: the reference every other run must reproduce byte for byte."""
    return generate(recipe, 8, tmp_path_factory.mktemp("serial") / "data")


# ------------------------------------------------------------------------------------------------ the grammar
def test_the_grammar_parses_patterns_and_distributions() -> None:
    v = Variation.parse(" object.*.mu = uniform( -1e-2 , .5 ) ")
    assert (v.pattern, v.distribution.name, v.distribution.args) == ("object.*.mu", "uniform", (-0.01, 0.5))
    assert Variation.parse("source.photons=choice(1e4,2e4,5e4)").distribution.args == (1e4, 2e4, 5e4)
    assert Variation.parse("geometry.det_?aw=normal(0, 0)").matches("geometry.det_yaw")
    star = Variation.parse("object.*=normal(0,1)")
    assert star.matches("object.phantom") and not star.matches("object.phantom.mu")  # * never crosses a dot


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("object.phantom.mu", "expected PATTERN=DISTRIBUTION"),
        ("object.phantom.mu=uniform 0.1 0.3", "expected PATTERN=DISTRIBUTION"),
        ("object.phantom.mu=gauss(0,1)", "unknown distribution 'gauss'"),
        ("object.phantom.mu=uniform(0.1)", "uniform takes 2 numbers, got 1"),
        ("object.phantom.mu=normal(0,1,2)", "normal takes 2 numbers, got 3"),
        ("object.phantom.mu=uniform(0.3,0.1)", "LOW < HIGH"),
        ("object.phantom.mu=uniform(0.1,0.1)", "LOW < HIGH"),
        ("object.phantom.mu=normal(0,-1)", "STD >= 0"),
        ("object.phantom.mu=uniform(-1e308,1e308)", "a finite HIGH - LOW"),
        ("object.phantom.mu=choice()", "at least one value"),
        ("object.phantom.mu=uniform(0,abc)", "finite decimal numbers, got 'abc'"),
        ("object.phantom.mu=uniform(0,inf)", "finite decimal numbers, got 'inf'"),
        ("object.phantom.mu=uniform(nan,1)", "finite decimal numbers, got 'nan'"),
        ("object.phantom.mu=uniform(0,1e999)", "not a finite number"),
        ("object..mu=uniform(0,1)", "dotted parts"),
        ("object.$x.mu=uniform(0,1)", "expected PATTERN=DISTRIBUTION"),
    ],
)
def test_the_grammar_refuses_malformed_items_naming_them(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="--vary") as err:
        Variation.parse(text)
    assert message in str(err.value) and text in str(err.value)


def test_patterns_must_match_a_parameter_and_no_parameter_twice(recipe: Recipe) -> None:
    scene = recipe.load()
    with pytest.raises(ValueError, match=r"matches no parameter of scene 'shepp_logan_2d'; it has .*object.phantom.mu"):
        Variations.parse(["object.*.density=uniform(1,2)"], scene)
    with pytest.raises(ValueError, match=r"'object.phantom.mu' is matched by both"):
        Variations.parse(["object.*.mu=uniform(0,1)", "object.phantom.mu=normal(0,1)"], scene)
    v = Variations.parse(["object.phantom.*=uniform(1,2)", "geometry.motion_shift=normal(0,1)"], scene)
    assert v.keys == ["object.phantom.center", "object.phantom.radius", "object.phantom.mu", "geometry.motion_shift"]
    assert v.columns(scene) == [
        *(f"object.phantom.center[{i}]" for i in range(3)),
        "object.phantom.radius",
        "object.phantom.mu",
        "geometry.motion_shift[0]",
        "geometry.motion_shift[1]",
    ]
    values = v.draw(scene, np.random.default_rng(0))
    assert values["object.phantom.center"].shape == (3,) and np.all(values["object.phantom.center"] >= 1)
    assert v.flatten(values).shape == (7,)


def test_a_volume_is_not_a_parameter_to_draw_voxel_by_voxel() -> None:
    scene = ct.load_scene(ROOT / "scenes" / "micro_ct_misaligned.toml", scale=0.1)
    with pytest.raises(ValueError, match=r"object.foam.data holds 64000 numbers \(a volume\?\)"):
        Variations.parse(["object.foam.*=normal(0,1)"], scene)


def test_draws_that_overflow_are_refused(recipe: Recipe) -> None:
    scene = recipe.load()
    v = Variations.parse(["object.phantom.center=normal(0,1e308)"], scene)
    with pytest.raises(NonFiniteError, match=r"the values drawn for object.phantom.center has \d non-finite"):
        [v.draw(scene, np.random.default_rng(i)) for i in range(20)]


def test_draws_follow_their_distributions(recipe: Recipe) -> None:
    scene = recipe.load()
    rng = np.random.default_rng(1)
    v = Variations.parse(["object.*.mu=uniform(0.01,0.03)", "source.photons=choice(1000,2000)"], scene)
    draws = [v.draw(scene, rng) for _ in range(400)]
    mu = np.array([d["object.phantom.mu"] for d in draws])
    assert mu.min() >= 0.01 and mu.max() < 0.03 and abs(mu.mean() - 0.02) < 0.001
    assert {d["source.photons"] for d in draws} == {1000.0, 2000.0}


# ------------------------------------------------------------------------------------------------ samples
def test_sample_seeds_are_the_children_of_the_master_seed_sequence() -> None:
    children = np.random.SeedSequence(11).spawn(4)
    for i, child in enumerate(children):
        params, noise = sample_seeds(11, i)
        expected = child.spawn(2)
        assert params.generate_state(4).tolist() == expected[0].generate_state(4).tolist()
        assert noise == int(expected[1].generate_state(1, np.uint32)[0])
    assert len({sample_seeds(11, i)[1] for i in range(64)}) == 64


def test_a_sample_depends_only_on_recipe_seed_and_index(recipe: Recipe) -> None:
    a, b = simulate_sample(recipe, 5), simulate_sample(recipe, 5)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    other = simulate_sample(recipe, 6)
    assert not np.array_equal(a["projections"], other["projections"])
    assert not np.array_equal(a["parameters"], other["parameters"])
    # the drawn values are applied: the geometry moves with det_shift_u, the phantom scales with mu
    assert not np.array_equal(a["geometry"], other["geometry"])
    ratio = other["phantom"].max() / a["phantom"].max()
    np.testing.assert_allclose(ratio, other["parameters"][0] / a["parameters"][0], rtol=1e-5)


@pytest.mark.parametrize(("scene", "scale"), [("shepp_logan_2d.toml", 0.25), ("helical.toml", 0.25)])
def test_the_phantom_projects_to_the_line_integrals(scene: str, scale: float) -> None:
    """The phantom is the attenuation the simulation integrates (helical: materials at the reference energy):
    its projection conserves the line integrals' total and matches them up to the voxel discretization."""
    sample = simulate_sample(Recipe.from_file(ROOT / "scenes" / scene, seed=1, scale=scale), 0)
    s = Recipe.from_file(ROOT / "scenes" / scene, scale=scale).load()
    assert s.volume is not None
    y = np.asarray(ct.Projector(s.volume, s.projection_geometry())(sample["phantom"]))
    clean = sample["line_integrals"]
    assert abs(y.sum() / clean.sum() - 1) < 0.005
    assert np.linalg.norm(y - clean) / np.linalg.norm(clean) < 0.06


def test_scenes_without_a_voxelizable_phantom_need_no_phantom() -> None:
    meshes = ROOT / "scenes" / "industrial_meshes.toml"
    with pytest.raises(ValueError, match=r"not ellipsoids or Shepp-Logan .*--no-phantom"):
        Recipe.from_file(meshes, scale=0.1)
    with pytest.raises(ValueError, match="not ellipsoids"):
        rasterize_scene(ct.load_scene(meshes, scale=0.1))
    recipe = Recipe.from_file(meshes, scale=0.1, phantom=False)
    assert "phantom" not in simulate_sample(recipe, 0)


def test_overrides_of_tables_and_arrays_reach_every_sample(tmp_path: Path) -> None:
    overrides = {"volume.shape": [20, 24], "geometry.angles": {"count": 10}, "geometry.det_shape": 32}
    recipe = Recipe.from_file(SL2D, ["source.photons=uniform(1e4,2e4)"], overrides=overrides)
    data = SimulatedDataset(generate(recipe, 2, tmp_path / "o"))
    assert tuple(data[1]["phantom"].shape) == (20, 24) and data[1]["projections"].shape[0] == 10


def test_a_sample_that_fails_names_its_index_and_values(tmp_path: Path) -> None:
    recipe = Recipe.from_file(SL2D, ["object.*.radius=uniform(-20,-10)"], scale=0.1)
    with pytest.raises(ValueError, match=r"sample 0 \(object.phantom.radius=-1\d\.\d+\):"):
        generate(recipe, 2, tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and list(tmp_path.iterdir()) == []  # nothing half-written


# ------------------------------------------------------------------------------------------------ serial runs
def test_serial_runs_give_the_same_bytes_and_another_seed_other_ones(
    recipe: Recipe, serial: Path, tmp_path: Path
) -> None:
    again = generate(recipe, 8, tmp_path / "again")
    assert (again / "dataset.h5").read_bytes() == (serial / "dataset.h5").read_bytes()
    # the saved scene is the one simulated: with it, the seeds and the drawn values, any sample is redone
    saved = ct.load_scene(again / "scene.toml")
    with h5py.File(again / "dataset.h5") as f:
        params = ct.scene.traverse(saved)
        params["object.phantom.mu"], params["geometry.det_shift_u"] = f["parameters"][6]
        np.testing.assert_array_equal(saved.simulate(seed=int(f["seeds"][6])).projections, f["projections"][6])
    other = Recipe.from_file(SL2D, VARY, seed=4, scale=0.2)
    assert (generate(other, 8, tmp_path / "other") / "dataset.h5").read_bytes() != (serial / "dataset.h5").read_bytes()
    # a shorter run is a prefix: sample i does not depend on how many there are
    short = generate(recipe, 3, tmp_path / "short")
    with h5py.File(short / "dataset.h5") as a, h5py.File(serial / "dataset.h5") as b:
        for name in ("projections", "phantom", "geometry", "parameters", "seeds"):
            np.testing.assert_array_equal(a[name][:], b[name][:3])


def test_the_file_holds_every_field(recipe: Recipe, serial: Path) -> None:
    with h5py.File(serial / "dataset.h5") as f:
        assert f.attrs["format"] == "drct-simulated-dataset-1" and int(f.attrs["seed"]) == 3
        assert list(f.attrs["vary"]) == VARY
        assert list(f.attrs["columns"]) == ["object.phantom.mu", "geometry.det_shift_u"]
        assert f["projections"].chunks == (1, *f["projections"].shape[1:])
        for i in (0, 7):
            sample = simulate_sample(recipe, i)
            for name in ("projections", "line_integrals", "phantom", "geometry", "parameters"):
                np.testing.assert_array_equal(f[name][i], sample[name])
            assert int(f["seeds"][i]) == sample_seeds(3, i)[1] == int(sample["seed"])


def test_the_output_folder_is_never_overwritten_without_force(recipe: Recipe, tmp_path: Path) -> None:
    out = generate(recipe, 2, tmp_path / "d")
    before = (out / "dataset.h5").read_bytes()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        generate(recipe, 3, out)
    assert (out / "dataset.h5").read_bytes() == before
    generate(recipe, 3, out, force=True)
    with h5py.File(out / "dataset.h5") as f:
        assert f["seeds"].shape == (3,)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"files drct did not write there \(notes.txt\)"):
        generate(recipe, 2, out, force=True)


def test_a_run_that_cannot_fit_on_the_disk_is_refused_first(recipe: Recipe, serial: Path, tmp_path: Path) -> None:
    per_sample = sample_bytes(recipe.load(), phantom=True)
    size = (serial / "dataset.h5").stat().st_size
    assert 8 * per_sample <= size <= 8 * per_sample + 2**16  # the estimate is the file's payload
    with pytest.raises(OSError, match=r"10000000000 samples of 'shepp_logan_2d' need about .* GiB free"):
        generate(recipe, 10**10, tmp_path / "huge")
    assert list(tmp_path.iterdir()) == []


def test_cli_generate_and_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = ["generate", SL2D, "--samples", "2", "--scale", "0.1", "--seed", "9", "-o", str(out), "--no-progress"]
    assert main([*argv, "--vary", "object.*.mu=normal(0.02,0.001)"]) == 0
    reference = generate(Recipe.from_file(SL2D, ["object.*.mu=normal(0.02,0.001)"], 9, 0.1), 2, tmp_path / "api")
    assert (out / "dataset.h5").read_bytes() == (reference / "dataset.h5").read_bytes()
    capsys.readouterr()
    for extra, message in [
        (["--vary", "object.*.mu=uniform(1)", "--force"], "uniform takes 2 numbers"),
        (["--vary", "nothing.here=uniform(0,1)", "--force"], "matches no parameter"),
        (["--workers", "-1", "--force"], "workers must be an integer >= 0"),
        (["--address", "auto", "--force"], "an address needs workers >= 1"),
        ([], "refusing to overwrite"),
    ]:
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("drct generate: error:") and message in err and err.count("\n") == 1
    assert main([*argv[:3], "0", *argv[4:], "--force"]) == 2
    assert "samples must be an integer >= 1" in capsys.readouterr().err


def test_without_ray_parallel_runs_name_the_extra(
    recipe: Recipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ModuleNotFoundError, match=r"drct\[ray\]"):
        generate(recipe, 2, tmp_path / "x", workers=2)
    assert not (tmp_path / "x").exists()


class _Ref:
    """A task's object reference (hashable by identity, like Ray's)."""

    def __init__(self, index: int, value: object) -> None:
        self.index, self.value = index, value


class _FakeRay:
    """Just enough of Ray's API to drive the scheduler: tasks run when submitted and finish newest first."""

    class exceptions:
        class RayError(Exception):
            pass

        class RayTaskError(RayError):
            cause: BaseException

    def __init__(self) -> None:
        self.in_flight: list[int] = []

    def is_initialized(self) -> bool:
        return True

    def put(self, value: object) -> object:
        return value

    def remote(self, **options: object):
        class Task:
            def __init__(self, fn) -> None:
                self.fn = fn

            def remote(self, recipe: Recipe, index: int) -> _Ref:
                return _Ref(index, self.fn(recipe, index))

        assert options["num_cpus"] == 1 and options["max_retries"] == 3
        return Task

    def wait(self, refs: list, num_returns: int) -> tuple[list, list]:
        self.in_flight.append(len(refs))
        newest = max(refs, key=lambda r: r.index)
        return [newest], [r for r in refs if r is not newest]

    def get(self, ref: _Ref) -> object:
        return ref.value


def test_the_scheduler_keeps_k_tasks_in_flight_and_writes_in_index_order(
    recipe: Recipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results that arrive newest first still land in index order, with at most ``workers`` tasks running."""
    gen = importlib.import_module("drct.datasets.generate")  # (the package's name `generate` is the function)
    fake = _FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr(gen, "simulate_sample", lambda r, i: {**simulate_sample(r, 0), "seed": np.uint32(i)})
    out = generate(recipe, 9, tmp_path / "fake", workers=3)
    with h5py.File(out / "dataset.h5") as f:
        assert f["seeds"][:].tolist() == list(range(9))
    assert max(fake.in_flight) == 3 and fake.in_flight.count(3) >= 5


def test_an_address_other_than_the_connected_cluster_is_refused(
    recipe: Recipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With Ray already connected in this process (ray.init), another --address used to be ignored silently:
    the samples were made on the connected cluster instead."""
    fake = _FakeRay()
    fake.get_runtime_context = lambda: types.SimpleNamespace(gcs_address="127.0.0.1:6380")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray", fake)
    with pytest.raises(ValueError, match=r"already connected to the Ray cluster at 127\.0\.0\.1:6380"):
        generate(recipe, 2, tmp_path / "elsewhere", workers=2, address="127.0.0.1:6379")
    assert not (tmp_path / "elsewhere").exists()
    fake.remote = lambda **options: _FakeRay.remote(fake, **{**options, "max_retries": 3})  # type: ignore[method-assign]
    for same in ("localhost:6380", "auto"):  # the connected cluster, by another name
        assert generate(recipe, 2, tmp_path / same.replace(":", "_"), workers=2, address=same).exists()


# ------------------------------------------------------------------------------------------------ reading back
def test_the_dataset_reads_back_through_torch(serial: Path) -> None:
    data = SimulatedDataset(serial)
    assert len(data) == 8 and data.columns == ["object.phantom.mu", "geometry.det_shift_u"]
    with h5py.File(serial / "dataset.h5") as f:
        item = data[-1]
        for name in ("projections", "line_integrals", "phantom", "geometry", "parameters"):
            np.testing.assert_array_equal(item[name].numpy(), f[name][7])
        assert int(item["seed"]) == int(f["seeds"][7])
        pg = data.projection_geometry(3)
        np.testing.assert_array_equal(pg.to_vectors(), f["geometry"][3])
    vg = data.volume
    assert vg is not None and vg.shape == tuple(data[0]["phantom"].shape)
    batches = list(torch.utils.data.DataLoader(SimulatedDataset(serial, ("phantom", "seed")), batch_size=3))
    assert [tuple(b["phantom"].shape) for b in batches] == [(3, *vg.shape), (3, *vg.shape), (2, *vg.shape)]
    assert set(batches[0]) == {"phantom", "seed"}
    # DataLoader workers (forked, each opens the file itself) read the same samples
    data[0]  # this process's handle is open before the fork
    parallel = torch.utils.data.DataLoader(data, batch_size=4, num_workers=2)
    np.testing.assert_array_equal(
        torch.cat([b["projections"] for b in parallel]).numpy(), np.stack([data[i]["projections"] for i in range(8)])
    )
    with pytest.raises(IndexError, match="sample 8 out of range for a dataset of 8"):
        data[8]
    with pytest.raises(ValueError, match=r"no field\(s\) \['volume'\]"):
        SimulatedDataset(serial, ("volume",))


def test_the_reader_refuses_files_that_are_not_datasets(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="not a drct simulated dataset"):
        SimulatedDataset(tmp_path / "other.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        SimulatedDataset(tmp_path / "text.h5")


# ------------------------------------------------------------------------------------------------ Ray
@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[object]:
    """One local 2-CPU Ray cluster for the module (starting one takes seconds)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow  # the module's Ray cluster takes 5-20 s to start on 2 busy cores
def test_ray_with_two_workers_gives_the_serial_bytes(
    ray_cluster: object, recipe: Recipe, serial: Path, tmp_path: Path
) -> None:
    out = generate(recipe, 8, tmp_path / "ray", workers=2)
    assert (out / "dataset.h5").read_bytes() == (serial / "dataset.h5").read_bytes()


@pytest.mark.slow  # the module's Ray cluster takes 5-20 s to start on 2 busy cores
def test_a_killed_worker_loses_no_sample(
    ray_cluster: object, serial: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, f"5:{marker}")
    recipe = Recipe.from_file(SL2D, VARY, seed=3, scale=0.2)  # the fault travels with the recipe to the workers
    out = generate(recipe, 8, tmp_path / "ray", workers=2)
    assert marker.exists()  # sample 5's first worker was SIGKILLed ...
    assert (out / "dataset.h5").read_bytes() == (serial / "dataset.h5").read_bytes()  # ... and retried


@pytest.mark.slow  # the module's Ray cluster takes 5-20 s to start on 2 busy cores
def test_a_worker_that_keeps_dying_fails_the_run_cleanly(
    ray_cluster: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from drct.datasets import GenerationError

    monkeypatch.setenv(FAULT_ENV, f"1:{tmp_path / 'killed'}")
    recipe = Recipe.from_file(SL2D, VARY, seed=3, scale=0.1)
    with pytest.raises(GenerationError, match=r"sample 1: its worker died on all 1 tries"):
        generate(recipe, 3, tmp_path / "ray", workers=2, retries=0)
    assert not (tmp_path / "ray").exists()


@pytest.mark.slow  # the module's Ray cluster takes 5-20 s to start on 2 busy cores
def test_errors_in_ray_tasks_arrive_as_drct_raised_them(ray_cluster: object, tmp_path: Path) -> None:
    recipe = Recipe.from_file(SL2D, ["object.*.radius=uniform(-20,-10)"], scale=0.1)
    with pytest.raises(ValueError, match=r"^sample \d \(object.phantom.radius=-1\d"):
        generate(recipe, 2, tmp_path / "bad", workers=2)
    assert not (tmp_path / "bad").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow  # a Ray head node takes 5-20 s to start on 2 busy cores
def test_cli_generate_joins_a_running_cluster_by_address(serial: Path, tmp_path: Path) -> None:
    """`ray start --head` in a subprocess, then `drct generate --address HOST:PORT` (another process) makes the
    serial run's bytes on that cluster. The head runs with --block and is stopped by its own pid (SIGTERM ends
    the processes it started)."""
    pytest.importorskip("ray")
    port = _free_port()
    token = secrets.token_hex(32)  # this cluster's own (not ~/.ray/auth_token, which other clusters may share)
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token")
    env.update(RAY_AUTH_TOKEN=token)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    scratch = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 characters
    start = ["-m", "ray.scripts.scripts", "start", "--head", "--block", "--num-cpus=2", f"--port={port}"]
    head = subprocess.Popen(
        [sys.executable, *start, "--include-dashboard=false", f"--temp-dir={scratch}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert head.stdout is not None
        log = []
        for line in head.stdout:  # until the head is up
            log.append(line)
            if "Ray runtime started" in line:
                break
        assert head.poll() is None, "".join(log)
        command = [sys.executable, "-m", "drct", "generate", SL2D, "--samples", "8", "--seed", "3", "--scale", "0.2"]
        command += [a for v in VARY for a in ("--vary", v)]
        command += ["--workers", "2", "--address", f"127.0.0.1:{port}", "-o", str(tmp_path / "joined"), "--quiet"]
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
        assert (tmp_path / "joined" / "dataset.h5").read_bytes() == (serial / "dataset.h5").read_bytes()
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(120)
        shutil.rmtree(scratch, ignore_errors=True)
