"""A griffe extension for the docs site: drct's docstrings as mkdocstrings reads them, nothing changed in drct.

Three rewrites, each of a habit of drct's docstrings that Google style (griffe's parser) does not know:

* ``Example:`` sections are read as ``Examples:`` (their ``>>>`` lines become highlighted code);
* ``a, b: text`` in ``Args:`` documents each of ``a`` and ``b`` with ``text`` (griffe would look for a
  parameter named ``a, b`` and warn);
* Sphinx roles become links, as below;
* a package that exports a function named as its submodule (``drct.recon.fbp``, from ``from .fbp import fbp``)
  documents the function, as Python sees it (griffe keeps the submodule and would leave the function out).

drct's docstrings name other objects the Sphinx way, ``:func:`fbp```, ``:class:`drct.Projector```,
``:mod:`drct.outofcore.store```. Markdown has no such roles, so this extension (named in ``mkdocs.yml``) rewrites
each one into an optional cross-reference of mkdocs-autorefs: a link where the name resolves to an object the site
renders, plain code where it does not (the role's text unchanged, without a warning). Names are resolved the way
Python would from the docstring's object (``obj.resolve``), or as dotted paths from ``drct`` (``ct.`` read as
``drct.``).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.MULTILINE)
GROUPED = re.compile(r"^(?P<indent>[ \t]+)(?P<names>\w+(?:, \w+)+): (?P<text>.*)$")
SECTION = re.compile(r"^[ \t]*(?:Args|Arguments|Parameters|Other Parameters|Keyword Args|Attributes):[ \t]*$")
ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj|const|py:\w+):`~?(?P<name>[^`<>]+)`")


def target(obj: griffe.Object, name: str, loader: griffe.GriffeLoader) -> str | None:
    """The full path ``name`` stands for, seen from ``obj``, or None where it names nothing griffe loaded."""
    dotted = "drct." + name[3:] if name.startswith("ct.") else name
    if dotted in loader.modules_collection:
        return dotted
    try:
        return obj.resolve(name.split(".", 1)[0]) + ("." + name.split(".", 1)[1] if "." in name else "")
    except (griffe.NameResolutionError, ValueError):
        return None


def link(obj: griffe.Object, loader: griffe.GriffeLoader, match: re.Match[str]) -> str:
    name = match["name"]
    shown = name.rsplit(".", 1)[-1] if match.group(0).find("~") > 0 else name
    path = target(obj, name, loader)
    code = f"<code>{html.escape(shown)}</code>"
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>' if path else f"``{shown}``"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def split_grouped(text: str) -> str:
    r"""``a, b: text`` inside an ``Args:``-like section becomes one entry per name, each with ``text``.

    >>> print(split_grouped("Args:\n    a, b: the sizes\n        (mm).\n    c: one."))
    Args:
        a: the sizes
            (mm).
        b: the sizes
            (mm).
        c: one.
    """
    lines, out, section, i = text.split("\n"), [], None, 0
    while i < len(lines):
        line = lines[i]
        if SECTION.match(line):
            section = _indent(line)
        elif section is not None and line.strip() and _indent(line) <= section:
            section = None
        grouped = GROUPED.match(line) if section is not None else None
        if grouped is None:
            out.append(line)
            i += 1
            continue
        entry, i = [line], i + 1
        while i < len(lines) and lines[i].strip() and _indent(lines[i]) > _indent(line):
            entry.append(lines[i])
            i += 1
        for name in grouped["names"].split(", "):
            out += [f"{grouped['indent']}{name}: {grouped['text']}", *entry[1:]]
    return "\n".join(out)


def modules(module: griffe.Module) -> list[griffe.Module]:
    """``module`` and every module below it."""
    found = [module]
    for member in module.members.values():
        if not member.is_alias and isinstance(member, griffe.Module):
            found += modules(member)
    return found


def export_shadowing_functions(package: griffe.Module) -> None:
    """Where a module exports ``name`` and ``name`` is also its submodule holding ``name``, the export wins."""
    for module in modules(package):
        for name in module.exports or ():
            member = module.members.get(str(name))
            if member is None or member.is_alias or not isinstance(member, griffe.Module):
                continue
            inner = member.members.get(str(name))
            if inner is not None and not isinstance(inner, griffe.Module):
                module.set_member(str(name), griffe.Alias(str(name), inner, parent=module))


class SphinxRoles(griffe.Extension):
    """The rewrites above: section names, grouped arguments, Sphinx roles, exported functions named as modules."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        export_shadowing_functions(pkg)

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if obj.is_alias or obj.docstring is None:
            return
        text = EXAMPLE.sub(lambda m: f"{m['indent']}Examples:", obj.docstring.value)
        text = split_grouped(text)
        obj.docstring.value = ROLE.sub(lambda m: link(obj, loader, m), text)
