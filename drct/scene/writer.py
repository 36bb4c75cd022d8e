"""Writing a scene back as TOML, with any volume data changed in Python beside it (:meth:`Scene.save`).

Example:
    >>> import tempfile, pathlib, drct as ct
    >>> scene = ct.load_scene("scenes/shepp_logan_2d.toml", scale=0.25)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = save_scene(scene, pathlib.Path(folder) / "copy.toml")
    ...     ct.load_scene(path).projection_geometry().shape == scene.projection_geometry().shape
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..io import refuse_overwrite, write_atomically
from .tomlwrite import dumps

if TYPE_CHECKING:
    from .scene import Scene


def save_scene(scene: Scene, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write ``scene`` as TOML (see :meth:`Scene.save`)."""
    target = Path(path)
    folder = target.parent.resolve() if target.parent.exists() else target.parent
    data_files = {p: a for obj in scene.objects for p, a in obj.files_to_write(folder).items()}
    refuse_overwrite([target, *data_files], overwrite)
    text = "# drct scene file (see scenes/README.md)\n" + dumps(scene.to_dict(folder))
    for file, array in data_files.items():
        write_atomically(file, lambda tmp, array=array: np.save(tmp, array))

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return write_atomically(target, write)
