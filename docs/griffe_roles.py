"""A griffe extension for the docs site: drct's docstrings as mkdocstrings reads them, nothing changed in drct.

It applies the plain-text rewrites of ``docstring_text.py`` (``Example:`` sections, grouped arguments, simple
tables, ``::``) to every docstring, turns Sphinx roles into links, and makes a package that exports a function
named as its submodule (``drct.recon.fbp``, from ``from .fbp import fbp``) document the function, as Python sees
it (griffe keeps the submodule and would leave the function out).

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
import sys
from pathlib import Path
from typing import Any

import griffe

sys.path.insert(0, str(Path(__file__).parent))  # griffe loads this file by path; its helper lies beside it
from docstring_text import ROLE, markdown


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
        obj.docstring.value = ROLE.sub(lambda m: link(obj, loader, m), markdown(obj.docstring.value))
