"""mkdocs hooks (named in ``mkdocs.yml``): one page per example script under ``examples/``, made at build time.

Each page shows the script's docstring, the command that runs it (its ``Run:`` line, plus ``--quick`` where the
script has that setting) and its pictures: the PNGs in ``docs/pictures/<example path>/`` that
``python docs/gen_pictures.py`` writes by running the example, or, where none were made, the command that makes
them. Helper modules without a ``__main__`` block (``examples/calibration/common.py``) get no page. The pages are
made from the scripts on every build, so they cannot go stale.

Example:
    >>> [e.page for e in examples()][:2]
    ['examples/calibration/bench_calibration.md', 'examples/calibration/cone_beam.md']
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))  # mkdocs loads this file by path; its helper lies beside it
from docstring_text import markdown, plain_roles
from gen_pictures import SETTINGS, shown_command

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PICTURES = ROOT / "docs" / "pictures"
RUN = re.compile(r"^Run:\s+(?P<command>python .+)$", re.MULTILINE)


@dataclass(frozen=True)
class Example:
    """One example script: its path under ``examples/``, docstring and page."""

    script: Path  # relative to the repository root
    doc: str

    @property
    def key(self) -> str:
        """``torch/learned_fbp_filter`` for ``examples/torch/learned_fbp_filter.py``."""
        return self.script.relative_to("examples").with_suffix("").as_posix()

    @property
    def page(self) -> str:
        return f"examples/{self.key}.md"

    @property
    def title(self) -> str:
        return self.key.rsplit("/", 1)[-1].replace("_", " ").capitalize()

    @property
    def commands(self) -> list[str]:
        """The ``Run:`` line of the docstring (else ``python examples/...``), then its ``--quick`` setting."""
        found = RUN.search(self.doc)
        main = found["command"].strip() if found else f"python {self.script.as_posix()}"
        quick = "--quick" in (ROOT / self.script).read_text()
        return [main, f"python {self.script.as_posix()} --quick"] if quick else [main]

    @property
    def pictures(self) -> list[Path]:
        """The PNGs made for this example (``docs/pictures/<key>/*.png``), relative to ``docs/``."""
        return sorted(p.relative_to(ROOT / "docs") for p in (PICTURES / self.key).glob("*.png"))


def examples() -> list[Example]:
    """Every runnable example script (one with a ``__main__`` block and a docstring), sorted by path."""
    found = []
    for path in sorted(EXAMPLES.rglob("*.py")):
        source = path.read_text()
        doc = ast.get_docstring(ast.parse(source))
        if doc and "__main__" in source:
            found.append(Example(path.relative_to(ROOT), doc))
    return found


def _prose(doc: str) -> str:
    """The docstring as Markdown, without its ``Run:`` line (the page shows the command in a code block)."""
    return plain_roles(markdown(RUN.sub("", doc).strip()))


def page(example: Example) -> str:
    """The Markdown of one example's page."""
    up = "../" * example.page.count("/")
    lines = [f"# {example.title}", "", f"`{example.script.as_posix()}`", "", _prose(example.doc), "", "## Run it", ""]
    lines += ["```bash", *example.commands, "```", "", "## Pictures", ""]
    if example.pictures:
        lines += [f"Made by `python docs/gen_pictures.py {example.key}`, which runs", ""]
        lines += ["```bash", shown_command(example.key), "```", ""]
        lines += [f"![{p.name}]({up}{p.as_posix()})" for p in example.pictures]
    elif example.key in SETTINGS:
        lines += [
            "No pictures are stored for this example (they would make the repository too large).",
            f"Make them with `python docs/gen_pictures.py {example.key}` (into `docs/pictures/`), which runs",
            "",
            "```bash",
            shown_command(example.key),
            "```",
        ]
    else:
        lines += ["No pictures are stored for this example: it prints its results (its docstring says what it writes)."]
    return "\n".join(lines) + "\n"


def index(found: list[Example]) -> str:
    """The Markdown of the examples' overview page: one line per example with the first line of its docstring."""
    lines = [
        "# Examples",
        "",
        "Scripts under `examples/`; each page shows what it does, how to run it and its pictures.",
        "",
    ]
    lines += [f"- [{e.key}]({e.key}.md): {e.doc.splitlines()[0]}" for e in found]
    return "\n".join(lines) + "\n"


def on_config(config: Any, **kwargs: Any) -> Any:
    """Lists the example pages in the navigation, under "Examples", grouped by folder."""
    found = examples()
    groups: dict[str, list[Any]] = {}
    for e in found:
        folder = e.key.rsplit("/", 1)[0] if "/" in e.key else "General"
        groups.setdefault(folder, []).append({e.title: e.page})
    entries: list[Any] = ["examples/index.md", *[{k: v} for k, v in groups.items()]]
    for i, item in enumerate(config["nav"]):
        if isinstance(item, dict) and "Examples" in item:
            config["nav"][i] = {"Examples": entries}
    return config


def on_files(files: Any, config: Any, **kwargs: Any) -> Any:
    """Adds the example pages (made from the scripts, not stored under ``docs/``)."""
    from mkdocs.structure.files import File

    found = examples()
    files.append(File.generated(config, "examples/index.md", content=index(found)))
    for e in found:
        files.append(File.generated(config, e.page, content=page(e)))
    return files
