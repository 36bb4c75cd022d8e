r"""Plain-text rewrites of drct's docstrings for the docs site (no dependency: used by ``griffe_roles.py`` on the
API pages and by ``hooks.py`` on the example pages).

drct's docstrings are Google style with a few reStructuredText habits that Markdown does not know: ``Example:``
sections, ``a, b:`` entries documenting two arguments at once, Sphinx roles (``:func:`fbp```), simple tables
between ``=====  =====`` borders, and ``::`` before a literal block. :func:`markdown` rewrites all of them but
the roles, which :mod:`griffe_roles` turns into links (:func:`plain_roles` makes them code where there is no API
to link to).

>>> print(markdown("Run it::\n\n    drct info\n\nExample:\n    see above"))
Run it:
<BLANKLINE>
    drct info
<BLANKLINE>
Examples:
    see above
"""

from __future__ import annotations

import re

EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.MULTILINE)
GROUPED = re.compile(r"^(?P<indent>[ \t]+)(?P<names>\w+(?:, \w+)+): (?P<text>.*)$")
SECTION = re.compile(r"^[ \t]*(?:Args|Arguments|Parameters|Other Parameters|Keyword Args|Attributes):[ \t]*$")
ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|exc|obj|const|py:\w+):`~?(?P<name>[^`<>]+)`")


BORDER = re.compile(r"^(?P<indent>[ \t]*)=+(?: +=+)+[ \t]*$")
LITERAL = re.compile(r"(?<=\S)::[ \t]*$", re.MULTILINE)


def _cells(line: str, spans: list[tuple[int, int]]) -> list[str]:
    """The cells of one table line: the text under each column of the border (the last one to the line's end)."""
    ends = [start for start, _ in spans[1:]] + [len(line)]
    return [line[start:end].strip() for (start, _), end in zip(spans, ends, strict=True)]


def rst_tables(text: str) -> str:
    r"""reStructuredText simple tables as Markdown tables (a line with an empty first cell continues the row).

    >>> table = "=====  ====\nname   unit\n=====  ====\nmu     1/mm\n       (per mm)\n=====  ===="
    >>> print(rst_tables("Units:\n\n" + table))
    Units:
    <BLANKLINE>
    | name | unit |
    | --- | --- |
    | mu | 1/mm (per mm) |
    >>> rst_tables("=  =\na  b\n=  =\n\nafter")  # no header row: empty header cells; the blank line stays
    '|  |  |\n| --- | --- |\n| a | b |\n\nafter'
    """
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        border = BORDER.match(lines[i])
        if border is None:
            out.append(lines[i])
            i += 1
            continue
        spans = [m.span() for m in re.finditer(r"=+", lines[i])]
        rows: list[list[str]] = []
        borders, header = 1, None
        i += 1
        while i < len(lines) and borders < 3:
            line = lines[i]
            if BORDER.match(line):
                borders += 1
                if borders == 2 and i + 1 < len(lines) and lines[i + 1].strip() and not BORDER.match(lines[i + 1]):
                    header, rows = rows, []  # a second border before more rows closes the header
                else:
                    break  # the closing border
            elif line.strip():
                cells = _cells(line, spans)
                if rows and not cells[0]:
                    rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)]
                else:
                    rows.append(cells)
            i += 1
        i += 1
        head = header[0] if header else [""] * len(spans)
        indent = border["indent"]
        out += [indent + "| " + " | ".join(head) + " |", indent + "|" + " --- |" * len(spans)]
        out += [indent + "| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


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


def plain_roles(text: str) -> str:
    """Sphinx roles as code spans: ``:func:`~drct.fbp``` becomes ````fbp````.

    >>> plain_roles("see :func:`~drct.recon.fbp` and :mod:`drct.physics`")
    'see ``fbp`` and ``drct.physics``'
    """
    return ROLE.sub(lambda m: f"``{m['name'].rsplit('.', 1)[-1] if m.group(0).find('~') > 0 else m['name']}``", text)


def markdown(text: str) -> str:
    """A docstring's text with the rewrites above (roles aside): sections, grouped arguments, tables, ``::``."""
    text = EXAMPLE.sub(lambda m: f"{m['indent']}Examples:", text)
    return split_grouped(rst_tables(LITERAL.sub(":", text)))
