"""A small TOML writer for scene files: sections for tables, ``[[objects]]`` for arrays of tables, inline arrays.

Example:
    >>> from drct.scene.tomlwrite import dumps
    >>> print(dumps({"geometry": {"type": "cone", "det_shape": [4, 8], "angles": {"count": 3}}}))
    [geometry]
    type = "cone"
    det_shape = [4, 8]
    angles = { count = 3 }
    <BLANKLINE>
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_key(str(k))} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _section(lines: list[str], path: list[str], table: dict[str, Any], header: str | None) -> None:
    if header is not None:
        lines.append(header)
    subtables = []
    for key, value in table.items():
        if isinstance(value, dict) and len(path) < 2 and any(isinstance(v, (dict, list)) for v in value.values()):
            subtables.append((key, value))
        elif _is_table_array(value) and not path:
            subtables.append((key, value))
        else:
            lines.append(f"{_key(str(key))} = {_value(value)}")
    for key, value in subtables:
        name = ".".join(_key(p) for p in [*path, str(key)])
        if isinstance(value, list):
            for item in value:
                lines.append("")
                _section(lines, [*path, str(key)], item, f"[[{name}]]")
        else:
            lines.append("")
            _section(lines, [*path, str(key)], value, f"[{name}]")


def dumps(data: dict[str, Any]) -> str:
    """``data`` (nested dicts, lists, strings, numbers, booleans) as TOML text."""
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) and not _is_table_array(v)}
    _section(lines, [], scalars, None)
    for key, value in data.items():
        if key in scalars:
            continue
        if lines:
            lines.append("")
        if isinstance(value, dict):
            _section(lines, [str(key)], value, f"[{_key(str(key))}]")
        else:
            for i, item in enumerate(value):
                if i:
                    lines.append("")
                _section(lines, [str(key)], item, f"[[{_key(str(key))}]]")
    return "\n".join(lines) + "\n"
