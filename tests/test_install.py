"""A light, complete install: dependencies declared exactly, torch and Mitsuba optional, the bundled scenes inside
the package (and the wheel), ``python -m drct``, ``drct --version``, and a README set-up line that can be rerun."""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

import drct as ct
from drct.cli import main
from drct.extras import EXTRAS, MissingExtraError, message, require

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
OPTIONAL_WITH_FALLBACK = {"psutil"}  # drct.memory uses it when present, else /proc/meminfo


def _dist(requirement: str) -> str:
    """The normalised distribution name of a requirement string: ``"mitsuba>=3.6,<3.10"`` -> ``"mitsuba"``."""
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


CORE = {_dist(r) for r in PYPROJECT["project"]["dependencies"]}
EXTRA_DISTS = {name: {_dist(r) for r in reqs} for name, reqs in PYPROJECT["project"]["optional-dependencies"].items()}


def _third_party_imports() -> dict[str, set[str]]:
    """Every top-level module drct's source imports (at module level or in a function), outside the standard
    library and drct, with the files importing it (``importlib.import_module("x")`` with a literal counts)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "drct").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("require", "importlib.import_module"):
                if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                    names = [node.args[0].value]
            for name in names:
                root = name.partition(".")[0]
                if root != "drct" and root not in sys.stdlib_module_names:
                    found.setdefault(root, set()).add(str(path.relative_to(ROOT)))
    return found


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return dict(packages_distributions())  # top-level module -> distributions (slow: read once)


def _dist_of(module: str) -> str:
    return (_distributions().get(module) or [module])[0].lower().replace("_", "-")


def test_every_import_is_a_declared_dependency_or_extra_and_every_dependency_is_used() -> None:
    imports = _third_party_imports()
    declared = CORE.union(*EXTRA_DISTS.values())
    undeclared = {m: sorted(f) for m, f in imports.items() if _dist_of(m) not in declared}
    assert {m: f for m, f in undeclared.items() if m not in OPTIONAL_WITH_FALLBACK} == {}
    used = {_dist_of(m) for m in imports}
    assert CORE - used == set(), "pyproject.toml declares dependencies drct never imports"
    assert "torch" not in CORE and "mitsuba" not in CORE  # a plain install brings no torch (nor its CUDA wheels)


def test_the_extras_table_names_extras_that_install_the_module() -> None:
    for module, extra in EXTRAS.items():
        assert _dist_of(module) in EXTRA_DISTS[extra], f"{module}: extra {extra!r} does not install it"
    assert EXTRA_DISTS["all"] == {"drct"}
    (all_extra,) = PYPROJECT["project"]["optional-dependencies"]["all"]
    assert set(all_extra.partition("[")[2].rstrip("]").split(",")) >= set(EXTRAS.values())


def test_require_imports_or_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert require("json", "test").__name__ == "json"
    monkeypatch.setitem(sys.modules, "mitsuba", None)  # as if it were not installed
    with pytest.raises(
        MissingExtraError,
        match=re.escape('tracing meshes needs mitsuba, which is not installed: pip install "drct[meshes]"'),
    ) as info:
        require("mitsuba", "tracing meshes")
    assert isinstance(info.value, ModuleNotFoundError) and info.value.name == "mitsuba"
    assert message("torch.distributed", "sharding", extra="distributed").endswith('pip install "drct[distributed]"')
    # an installed package that fails on a missing module of its own keeps that error: it names the real culprit
    (tmp_path / "broken_pkg_for_drct.py").write_text("import no_such_module_for_drct\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as own:
        require("broken_pkg_for_drct", "test")
    assert not isinstance(own.value, MissingExtraError) and own.value.name == "no_such_module_for_drct"


WITHOUT_OPTIONAL = r"""
import contextlib, io, json, sys
for name in sys.argv[1:]:
    sys.modules[name] = None  # as if not installed: importing it raises ModuleNotFoundError
import numpy as np
import drct as ct
from drct.cli import main

out = {}
vg = ct.VolumeGeometry((16, 16))
A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 8, endpoint=False), 24))
out["projection"] = list(A(np.ones((16, 16), np.float32)).shape)
out["scene"] = ct.load_scene("micro_ct_misaligned", scale=0.25).name
for what, call in [
    ("torch", lambda: __import__("drct.torch")),
    ("meshes", lambda: ct.meshes.load_mesh(str(ct.scenes.FOLDER / "meshes" / "unit_cube.obj"), mu=0.1)),
    ("distributed", lambda: __import__("drct.distributed", fromlist=["Group"]).Group()),
]:
    try:
        call()
        out[what] = "no error"
    except ct.MissingExtraError as err:
        out[what] = str(err)
err = io.StringIO()
with contextlib.redirect_stderr(err):
    out["cli_status"] = main(["simulate", "industrial_meshes", "-o", "never", "--scale", "0.1", "--no-progress"])
out["cli_stderr"] = err.getvalue()
out["loaded"] = sorted({m.partition(".")[0] for m, v in sys.modules.items() if v is not None})
print(json.dumps(out))
"""


def test_import_drct_projects_and_names_each_missing_extra_without_the_optional_packages(tmp_path: Path) -> None:
    """torch, Mitsuba and every other optional package absent: ``import drct``, a projection and a bundled scene
    work; each entry point that needs an extra raises an error naming it; the CLI says so in one line."""
    blocked = sorted({*EXTRAS, *OPTIONAL_WITH_FALLBACK})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPTIONAL, *blocked], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["projection"] == [8, 24] and out["scene"] == "micro_ct_misaligned"
    assert 'needs torch, which is not installed: pip install "drct[torch]"' in out["torch"]
    assert 'needs mitsuba, which is not installed: pip install "drct[meshes]"' in out["meshes"]
    assert 'pip install "drct[distributed]"' in out["distributed"]
    assert out["cli_status"] == 2 and out["cli_stderr"].count("\n") == 1
    assert out["cli_stderr"].startswith("drct simulate: error:") and 'pip install "drct[meshes]"' in out["cli_stderr"]
    assert not set(blocked) & set(out["loaded"])
    assert not (tmp_path / "never").exists()


def test_the_bundled_scenes_are_the_repository_scenes_inside_the_package() -> None:
    assert ct.scenes.FOLDER == ROOT / "drct" / "scenes"
    assert (ROOT / "scenes").resolve() == ct.scenes.FOLDER  # the README's scenes/ paths lead there
    files = sorted(p.stem for p in (ROOT / "scenes").glob("*.toml"))
    assert ct.scenes.names() == files and "shepp_logan_2d" in files
    assert ct.scenes.path("helical") == ct.scenes.FOLDER / "helical.toml"
    with pytest.raises(ValueError, match=r"no bundled scene named 'helix'; the bundled scenes are: .*helical"):
        ct.scenes.path("helix")


def test_load_scene_takes_a_bundled_name_from_any_folder_and_a_file_of_that_name_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert ct.load_scene("shepp_logan_2d").name == "shepp_logan_2d"
    (tmp_path / "shepp_logan_2d").mkdir()  # e.g. an output folder of that name: the bundled scene is still meant
    assert ct.load_scene("shepp_logan_2d").name == "shepp_logan_2d"
    text = ct.scenes.path("helical").read_text(encoding="utf-8").replace('name = "helical"', 'name = "mine"')
    (tmp_path / "helical").write_text(text, encoding="utf-8")
    assert ct.load_scene("helical").name == "mine"  # the user's own file wins
    with pytest.raises(ct.SceneError, match=r"scene file not found \(nor a bundled scene: cone_full_scan, "):
        ct.load_scene("shepp")


def test_version_flag_and_python_m_drct(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"drct {ct.__version__}"
    run = subprocess.run([sys.executable, "-m", "drct", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0 and run.stdout.strip() == f"drct {ct.__version__}"


def _readme_main_job() -> list[str]:
    """The ``python -m drct ...`` command of the README's set-up line, as arguments for :func:`drct.cli.main`."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set up and run", 1)[1]
    (line,) = [part.strip() for part in re.findall(r"```bash\n(.*?)\n", setup)[0].split("&&") if "-m drct" in part]
    words = shlex.split(line)
    assert words[:3] == ["python", "-m", "drct"], line
    return words[3:]


@pytest.mark.slow
def test_the_readme_set_up_line_runs_twice_from_an_empty_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's main job names a bundled scene, so it runs from any folder, and it can be rerun."""
    args = _readme_main_job()
    assert args[:2] == ["simulate", "shepp_logan_2d"]
    monkeypatch.chdir(tmp_path)
    assert main(args) == 0
    first = (tmp_path / "out" / "shepp_logan_2d" / "projections.npy").read_bytes()
    assert main(args) == 0  # the second run replaces the first one's output
    assert (tmp_path / "out" / "shepp_logan_2d" / "projections.npy").read_bytes() == first


@pytest.mark.slow
def test_the_wheel_holds_the_scenes_and_py_typed_and_works_without_the_checkout(tmp_path: Path) -> None:
    """``pip wheel . --no-deps``: py.typed, every bundled scene file, core requirements without torch/Mitsuba;
    installed from the wheel alone (no checkout on the path), a bundled scene with a data file loads."""
    source = tmp_path / "source"  # a clean copy: no stale build/ of the checkout can slip into the wheel
    shutil.copytree(ROOT / "drct", source / "drct", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w", str(tmp_path / "dist")],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = (tmp_path / "dist").glob("drct-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = archive.read(metadata).decode()
    assert "drct/py.typed" in names
    shipped = {
        str(p.relative_to(ROOT)) for p in ct.scenes.FOLDER.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    assert shipped - names == set()
    assert not any(n.startswith(("tests/", "scenes/", "examples/")) for n in names)
    core = [line for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert core and not any(re.search(r"\b(torch|mitsuba)\b", line) for line in core)
    assert {"torch", "meshes", "all"} <= set(re.findall(r"^Provides-Extra: (\S+)$", meta, flags=re.M))

    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)]
    assert subprocess.run(install, capture_output=True, text=True).returncode == 0
    code = (
        "import sys; sys.modules['torch'] = sys.modules['mitsuba'] = None; import drct as ct; "
        "print(ct.__file__); print(ct.load_scene('micro_ct_misaligned', scale=0.25).objects[0].name)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    where, obj = run.stdout.split()
    assert Path(where).is_relative_to(site) and obj
