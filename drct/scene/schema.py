"""Typed, checked access to one TOML table of a scene file; every problem becomes a :class:`SceneError`.

Example:
    >>> from drct.scene.schema import Table
    >>> t = Table({"det_spacing": "0.1 cm", "det_shape": [4, 8]}, "a.toml", "geometry")
    >>> t.quantity("det_spacing", "length"), t.ints("det_shape", (1, 2))
    (1.0, (4, 8))
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .errors import SceneError
from .units import parse_quantity

_MISSING: Any = object()
MAX_COUNT = 1 << 20  # no scene needs more views, or more pixels or voxels along one axis


class Table:
    """One table of a scene file with its dotted key, the file it came from and the folder for relative paths.

    Every accessor records the key it read; :meth:`finish` rejects any key nobody read (a typo).
    """

    def __init__(
        self, data: Any, file: str | None, key: str = "", base: Path | None = None, allow_outside: bool = False
    ) -> None:
        self.file = file
        self.key = key
        self.base = base if base is not None else (Path(file).parent if file else Path.cwd())
        self.allow_outside = allow_outside  # may file names lead outside ``base``? (see :meth:`confine`)
        if not isinstance(data, Mapping):
            self.fail("", f"expected a table ({{...}} or [section]), got {_kind(data)}")
        self.data: Mapping[str, Any] = data
        self.read: set[str] = set()

    # ------------------------------------------------------------------ errors and keys
    def full(self, key: str) -> str:
        """The dotted key of ``key`` inside this table."""
        if not key:
            return self.key
        return f"{self.key}.{key}" if self.key else key

    def fail(self, key: str, problem: str) -> NoReturn:
        raise SceneError(self.file, self.full(key), problem)

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The raw value (marks the key as read)."""
        self.read.add(key)
        if key not in self.data:
            if default is _MISSING:
                self.fail(key, "missing (required)")
            return default
        return self.data[key]

    def finish(self) -> None:
        """Raise for keys that no accessor read: unknown (often misspelt) keys."""
        unknown = sorted(str(k) for k in self.data if k not in self.read)
        if unknown:
            known = ", ".join(sorted(self.read)) or "none"
            self.fail(unknown[0], f"unknown key {unknown[0]!r} (this table knows: {known})")

    # ------------------------------------------------------------------ scalars
    def string(self, key: str, default: Any = _MISSING, choices: Sequence[str] | None = None) -> Any:
        value = self.get(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {_kind(value)}")
        if choices is not None and value not in choices:
            self.fail(key, f"expected one of {list(choices)}, got {value!r}")
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        value = self.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_kind(value)}")
        return value

    def integer(self, key: str, default: Any = _MISSING, minimum: int = 1) -> Any:
        value = self.get(key, default)
        if value is default and default is not _MISSING:
            return value
        return self._int(key, value, minimum)

    def _int(self, key: str, value: Any, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {_kind(value)}")
        if not minimum <= value <= MAX_COUNT:
            self.fail(key, f"expected an integer in [{minimum}, {MAX_COUNT}], got {value}")
        return int(value)

    def quantity(self, key: str, kind: str, default: Any = _MISSING, positive: bool = False) -> Any:
        value = self.get(key, default)
        if value is default and default is not _MISSING:
            return value
        return self._quantity(key, value, kind, positive)

    def _quantity(self, key: str, value: Any, kind: str, positive: bool = False) -> float:
        try:
            number = parse_quantity(value, kind)
        except ValueError as err:
            self.fail(key, str(err))
        if positive and not number > 0:
            self.fail(key, f"expected a positive {kind}, got {value!r}")
        return number

    # ------------------------------------------------------------------ sequences
    def ints(self, key: str, counts: Sequence[int], default: Any = _MISSING, minimum: int = 1) -> Any:
        """An integer or a list of integers, of one of the lengths ``counts`` (1 means a bare integer)."""
        value = self.get(key, default)
        if value is default and default is not _MISSING:
            return value
        items = [value] if 1 in counts and not isinstance(value, list) else value
        if not isinstance(items, list) or len(items) not in counts:
            self.fail(key, f"expected {_lengths(counts)} integer(s), got {_kind(value)}")
        return tuple(self._int(key, v, minimum) for v in items)

    def quantities(self, key: str, kind: str, counts: Sequence[int], default: Any = _MISSING, positive=False) -> Any:
        """A quantity or a list of them, of one of the lengths ``counts`` (1 means a bare value)."""
        value = self.get(key, default)
        if value is default and default is not _MISSING:
            return value
        items = [value] if 1 in counts and not isinstance(value, list) else value
        if not isinstance(items, list) or len(items) not in counts:
            self.fail(key, f"expected {_lengths(counts)} {kind}(s), got {_kind(value)}")
        return tuple(self._quantity(key, v, kind, positive) for v in items)

    def array(self, key: str, kind: str, width: int | None = None) -> np.ndarray:
        """A number, a list of numbers, or a list of rows of ``width`` numbers (each may carry a unit)."""
        value = self.get(key)
        if not isinstance(value, list):
            return np.array(self._quantity(key, value, kind))
        if value and all(isinstance(v, list) for v in value):
            rows = [[self._quantity(key, v, kind) for v in row] for row in value]
            if len({len(r) for r in rows}) != 1 or (width is not None and len(rows[0]) != width):
                self.fail(
                    key, f"expected rows of {width or 'equal'} numbers, got rows of {sorted({len(r) for r in rows})}"
                )
            return np.array(rows, dtype=np.float64)
        if not value or any(isinstance(v, (list, dict)) for v in value):
            self.fail(key, f"expected a number or a non-empty list of numbers, got {_kind(value)}")
        return np.array([self._quantity(key, v, kind) for v in value], dtype=np.float64)

    # ------------------------------------------------------------------ structure
    def table(self, key: str, default: Any = _MISSING) -> Any:
        value = self.get(key, default)
        if value is default and default is not _MISSING:
            return value
        return Table(value, self.file, self.full(key), self.base, self.allow_outside)

    def tables(self, key: str) -> list[Table]:
        """An array of tables (``[[key]]``); missing means empty."""
        value = self.get(key, [])
        if not isinstance(value, list):
            self.fail(key, f"expected an array of tables ([[{key}]]), got {_kind(value)}")
        return [
            Table(v, self.file, f"{self.full(key)}[{i}]", self.base, self.allow_outside) for i, v in enumerate(value)
        ]

    def file_path(self, key: str, suffixes: Sequence[str] | None = None) -> Path:
        """An existing file, relative to the scene file's folder."""
        name = self.string(key)
        if not name.strip() or "\x00" in name:
            self.fail(key, f"expected a file name, got {name!r}")
        path = self.confine(key, Path(name) if Path(name).is_absolute() else self.base / name)
        if suffixes is not None and not any(str(path).lower().endswith(s) for s in suffixes):
            self.fail(key, f"expected a {' or '.join(suffixes)} file, got {name!r}")
        try:
            exists = path.is_file()
        except OSError:
            exists = False
        if not exists:
            self.fail(key, f"file not found: {path}")
        return path

    def confine(self, key: str, path: Path) -> Path:
        """``path`` unless, with symlinks resolved, it leads outside the scene's folder and ``allow_outside`` is
        off (a scene file must not read arbitrary files: absolute paths, ``..``, symlinks leading out)."""
        if self.allow_outside:
            return path
        try:
            root, real = self.base.resolve(), path.resolve()
        except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop
            self.fail(key, f"cannot resolve {path}: {err}")
        if not real.is_relative_to(root):
            self.fail(
                key,
                f"{path} lies outside the scene's folder {root} (resolved: {real}); scene files may only read "
                "files in their own folder unless allowed (allow_outside=True, CLI --allow-outside-files)",
            )
        return path

    def angles(self, key: str, default_stop: float = 2 * math.pi) -> np.ndarray:
        """Angles: a list, or ``{start, stop, count, endpoint}`` (stop defaults to a full turn)."""
        value = self.get(key)
        if isinstance(value, list):
            out = self.array(key, "angle")
            if out.ndim != 1:
                self.fail(key, "expected a list of angles")
            return out
        t = self.table(key)
        count = t.integer("count")
        start = t.quantity("start", "angle", 0.0)
        stop = t.quantity("stop", "angle", start + default_stop)
        endpoint = t.boolean("endpoint", False)
        t.finish()
        return np.linspace(start, stop, count, endpoint=endpoint)


def _lengths(counts: Sequence[int]) -> str:
    return " or ".join(str(c) for c in counts)


def _kind(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(value).__name__} {text}"


def relative_path(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (where a scene file is written), or absolute on another drive."""
    try:
        return os.path.relpath(path.resolve(), folder.resolve())
    except ValueError:  # another drive
        return str(path.resolve())
