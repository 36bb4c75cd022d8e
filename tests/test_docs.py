"""The documentation: every public name has a docstring with a runnable example, and the API site builds.

A public name is one in ``drct.__all__`` or in the ``__all__`` of a public subpackage or module of drct (those
that declare one; ``drct.deepinv`` among them, checked where deepinv is installed), or a public function or class
of a module without ``__all__`` that an API page renders (``drct.algebra``, ``drct.meshes``, ...). Its docstring
must hold a ``>>>`` example; ``tests/test_doctests.py`` runs every such example. A data name (``__version__``, a
table such as ``drct.extras.EXTRAS``) cannot carry a docstring of its own: an example in its module's docstring must
use it.

The site (``mkdocs build --strict``, as ``.ci/run`` builds it) is built here where mkdocs is installed (``pip
install -e ".[docs]"``), and its inventory must list every public name: a name the API pages leave out fails.
The pages of ``docs/`` (Getting started) are run as doctests too, so the code they show works.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import drct

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def declares_all(path: Path) -> bool:
    """Whether a module's source assigns ``__all__`` (read without importing it: an extra may be missing)."""
    for node in ast.parse(path.read_text()).body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return True
    return False


def api_pages_modules() -> set[str]:
    """The modules the API pages render (``::: drct.x`` lines of ``docs/api/*.md``)."""
    found = set()
    for page in (DOCS / "api").glob("*.md"):
        found.update(re.findall(r"^::: (drct[\w.]*)", page.read_text(), flags=re.MULTILINE))
    return found


def public_modules() -> list[str]:
    """``drct``, each public subpackage or module directly below it that declares ``__all__``, and each module
    the API pages render."""
    names = {"drct"} | api_pages_modules()
    for path in sorted((ROOT / "drct").iterdir()):
        name = path.stem if path.suffix == ".py" else path.name
        source = path / "__init__.py" if path.is_dir() else path
        if name.startswith("_") or not source.is_file() or source.suffix != ".py":
            continue
        if declares_all(source):
            names.add(f"drct.{name}")
    return sorted(names)


def public_names(module: ModuleType) -> list[str]:
    """``module.__all__``; for a module without one, its public functions and classes defined in it."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module.__name__
    ]


def import_or_skip(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:  # MissingExtraError too: it names the extra
        if error.name is None or error.name.startswith("drct"):
            raise
        pytest.skip(f"{name} needs the optional package {error.name!r}, which is not installed")


def is_data(value: Any) -> bool:
    """A value that cannot carry a docstring of its own (a string, a number, a table, a path)."""
    return not (inspect.ismodule(value) or inspect.isclass(value) or callable(value))


def has_example(doc: str | None) -> bool:
    return doc is not None and any(line.lstrip().startswith(">>> ") for line in doc.splitlines())


def example_uses(doc: str | None, name: str) -> bool:
    """Whether a ``>>>`` (or ``...``) line of ``doc`` names ``name``."""
    pattern = re.compile(rf"\b{re.escape(name)}\b")
    return any(line.lstrip().startswith((">>> ", "... ")) and pattern.search(line) for line in (doc or "").splitlines())


def missing_examples(module: ModuleType) -> list[str]:
    """The public names of ``module`` whose docstring (or, for data, module docstring) has no ``>>>`` example."""
    missing = []
    for name in public_names(module):
        value = getattr(module, name)
        if is_data(value):
            if not example_uses(module.__doc__, name):
                missing.append(f"{module.__name__}.{name} (data: no example of the module's docstring uses it)")
        elif not has_example(value.__doc__):
            missing.append(f"{module.__name__}.{name}")
    return missing


def test_public_modules_are_found() -> None:
    """The discovery of public modules sees the curated API (a broken scan would make the next test vacuous)."""
    found = public_modules()
    assert {"drct", "drct.recon", "drct.formats", "drct.torch", "drct.pet", "drct.scene", "drct.meshes"} <= set(found)
    assert len(drct.__all__) > 20


@pytest.mark.parametrize("name", public_modules())
def test_every_public_name_has_an_example(name: str) -> None:
    module = import_or_skip(name)
    missing = missing_examples(module)
    assert not missing, f"{len(missing)} public names of {name} have no docstring example:\n" + "\n".join(missing)


def test_missing_examples_are_seen() -> None:
    """The check itself: a function without an example, and a data name no example uses, are both reported."""
    fake = ModuleType("fake", "Example:\n    >>> fake.LISTED\n    1\n")

    def documented() -> None:
        """Says hello.

        Example:
            >>> documented()
        """

    def undocumented() -> None:
        """Says nothing runnable."""

    fake.__dict__.update(documented=documented, undocumented=undocumented, LISTED=1, UNLISTED=2)
    fake.__all__ = ["documented", "undocumented", "LISTED", "UNLISTED"]  # type: ignore[attr-defined]
    assert missing_examples(fake) == [
        "fake.undocumented",
        "fake.UNLISTED (data: no example of the module's docstring uses it)",
    ]


def test_getting_started_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``>>>`` code of the Getting started page runs and prints what the page shows (the other hand-written
    pages hold no code: Home includes the README, whose code tests/test_readme.py runs)."""
    monkeypatch.chdir(ROOT)
    page = DOCS / "getting-started.md"
    result = doctest.testfile(str(page), module_relative=False, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted >= 10 and result.failed == 0, f"docs/getting-started.md: {result}"
    others = [p.name for p in DOCS.rglob("*.md") if p != page and ">>> " in p.read_text()]
    assert not others, f"pages with >>> code that no test runs: {others}"


def docs_module(name: str) -> ModuleType:
    """A helper module of ``docs/`` (``hooks``, ``docstring_text``), imported from its folder."""
    sys.path.insert(0, str(DOCS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(DOCS))


@pytest.mark.parametrize("name", ["hooks", "docstring_text", "gen_pictures"])
def test_docs_helpers_examples(name: str) -> None:
    """The site's helpers (example pages; the docstring rewrites) hold their own examples."""
    result = doctest.testmod(docs_module(name))
    assert result.attempted > 0 and result.failed == 0, result


def test_every_example_has_a_page() -> None:
    """docs/hooks.py makes one page per runnable example script, showing its docstring and its command."""
    hooks = docs_module("hooks")
    found = hooks.examples()
    scripts = {e.script.as_posix() for e in found}
    runnable = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "examples").rglob("*.py") if "__main__" in p.read_text()
    }
    assert scripts == runnable
    for example in found:
        text = hooks.page(example)
        assert f"python {example.script.as_posix()}" in text
        assert "::\n" not in text and ":func:`" not in text  # reStructuredText made Markdown
        pictures = "![" in text or f"gen_pictures.py {example.key}" in text or "No pictures are stored" in text
        assert pictures, f"{example.key}: the page neither shows pictures nor says how to make them"


def inventory(path: Path) -> set[str]:
    """The object names of a Sphinx ``objects.inv`` (as mkdocstrings writes it): 4 header lines, then zlib."""
    data = path.read_bytes()
    body = data.split(b"\n", 4)[4]
    return {line.split(" ", 1)[0] for line in zlib.decompress(body).decode().splitlines() if line}


@pytest.mark.slow
def test_site_builds_with_every_public_name(tmp_path: Path) -> None:
    """``mkdocs build --strict`` passes (no warning) and the site has an entry for every public name."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert run.returncode == 0, run.stderr[-4000:]
    names = inventory(site / "objects.inv")
    absent = []
    for module_name in public_modules():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:  # an extra that is not installed (drct.deepinv): its page is checked by mkdocs
            continue
        absent += [
            f"{module_name}.{n}"
            for n in public_names(module)
            if not is_data(getattr(module, n)) and f"{module_name}.{n}" not in names
        ]
    assert not absent, f"not in the site's inventory: {absent}"
    for example in ("quickstart", "torch/learned_fbp_filter"):
        assert (site / "examples" / example / "index.html").is_file()
