"""The one error type of scene files: :class:`SceneError`, naming the file, the key and the problem."""

from __future__ import annotations

import os


class SceneError(ValueError):
    """A scene file (or a scene built in Python) that cannot be used.

    Attributes:
        file: the scene file (``"<scene>"`` for scenes not read from a file).
        key: the dotted TOML key at fault, e.g. ``"objects[2].mu"`` (``""`` for the whole file).
        problem: what is wrong and what was expected.

    Example:
        >>> from drct.scene import SceneError
        >>> str(SceneError("a.toml", "geometry.type", "unknown type 'fann'"))
        "a.toml: geometry.type: unknown type 'fann'"
    """

    def __init__(self, file: str | os.PathLike[str] | None, key: str, problem: str) -> None:
        self.file = str(file) if file is not None else "<scene>"
        self.key = key
        self.problem = problem
        where = f"{self.file}: {key}" if key else self.file
        super().__init__(f"{where}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (type(self), (self.file, self.key, self.problem))
