"""Every module's docstring examples run and hold: one case per module under ``drct/``, each run exactly once.

Examples that need a GPU carry the directive ``# doctest: +CUDA``; without one, the docstrings holding such an
example are skipped (later examples of a docstring usually build on earlier ones). A module whose import or example
needs an optional package that is not installed is skipped, naming the package. ``NO_EXAMPLE_YET`` lists the public
modules that still lack an example, so a new module without one fails here and a module that gains one is taken off.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType, TracebackType

import pytest
from conftest import cuda_available, slow_cases

import drct
import drct as ct

ROOT = Path(__file__).resolve().parents[1]
CUDA = doctest.register_optionflag("CUDA")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
ExcInfo = tuple[type[BaseException], BaseException, TracebackType]

# Modules whose examples take several seconds on 2 CPU cores (they run whole calibrations).
SLOW = {"drct.calibration", "drct.calibration.solver"}

# Public modules without a runnable example yet; take a module off when it gains one.
NO_EXAMPLE_YET = {
    "drct.calibration.report",
    "drct.cli",
    "drct.cli.reconstruct",
    "drct.cli.simulate",
    "drct.kernels",
    "drct.kernels.derivatives",
    "drct.kernels.march",
    "drct.physics.make_tables",
    "drct.scene.mesh_objects",
}


def module_names() -> list[str]:
    """``drct`` and every module below it, except ``__main__`` entry points (importing one runs the program)."""
    found = [info.name for info in pkgutil.walk_packages(drct.__path__, "drct.")]
    return ["drct", *sorted(name for name in found if name.rsplit(".", 1)[-1] != "__main__")]


def is_public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


class _Runner(doctest.DocTestRunner):
    """A runner that notes examples failing only because an optional package outside drct is missing."""

    def __init__(self) -> None:
        super().__init__(optionflags=FLAGS)
        self.missing: set[str] = set()

    def report_unexpected_exception(
        self, out: Callable[[str], object], test: doctest.DocTest, example: doctest.Example, exc_info: ExcInfo
    ) -> None:
        error = exc_info[1]
        if isinstance(error, ModuleNotFoundError) and error.name and not error.name.startswith("drct"):
            self.missing.add(error.name)
        super().report_unexpected_exception(out, test, example, exc_info)


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is None or error.name.startswith("drct"):
            raise
        pytest.skip(f"{name} needs the optional package {error.name!r}, which is not installed")


@pytest.mark.parametrize("name", slow_cases(module_names(), SLOW))
def test_docstring_examples(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # examples name files of the repository (scenes/...) relative to its root
    module = _import(name)
    tests = [t for t in doctest.DocTestFinder().find(module, name) if t.examples]
    needs_gpu = [t for t in tests if any(ex.options.get(CUDA) for ex in t.examples)]
    if needs_gpu and not cuda_available():
        tests = [t for t in tests if t not in needs_gpu]
        if not tests:
            pytest.skip(f"{name}: every docstring example needs a CUDA GPU")

    runner, report, backend = _Runner(), io.StringIO(), ct.get_backend()
    try:
        for test in tests:
            runner.run(test, out=report.write)
    finally:
        ct.set_backend(backend)  # an example may choose a backend; the next test must not inherit it
    result = runner.summarize(verbose=False)
    if result.failed and runner.missing:
        pytest.skip(f"{name}: an example needs the optional package(s) {sorted(runner.missing)}, not installed")
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed\n{report.getvalue()}"
    if is_public(name) and name not in NO_EXAMPLE_YET:
        assert result.attempted > 0, f"{name} has no docstring example (or list it in NO_EXAMPLE_YET)"
    if name in NO_EXAMPLE_YET:
        assert result.attempted == 0, f"{name} has examples now: take it off NO_EXAMPLE_YET"


def test_no_example_list_names_real_modules() -> None:
    """A renamed or removed module must leave ``NO_EXAMPLE_YET`` and ``SLOW`` too."""
    names = set(module_names())
    assert NO_EXAMPLE_YET <= names, sorted(NO_EXAMPLE_YET - names)
    assert names >= SLOW, sorted(SLOW - names)
