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
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tomli_w import dumps

from ..io import output_folder, refuse_overwrite, write_atomically

if TYPE_CHECKING:
    from .scene import Scene


def _outside_files(data: dict[str, Any], folder: Path) -> dict[Path, Path]:
    """Point every data file that ``data`` (the tables of :meth:`Scene.to_dict`) names outside ``folder`` to a
    copy inside it: returns ``{copy: original}`` and rewrites the names in ``data``."""
    root = folder.resolve()
    tables = [data.get("geometry", {}), *data.get("objects", []), data.get("source", {})]
    copies: dict[Path, Path] = {}
    for i, table in enumerate(tables):
        name = table.get("file") if isinstance(table, dict) else None
        if not isinstance(name, str):
            continue
        original = (folder / name).resolve()
        if original.is_relative_to(root):
            continue
        copy = folder / original.name
        if copy in copies:  # two originals of the same name
            copy = folder / f"{i}_{original.name}"
        copies[copy] = original
        table["file"] = copy.name
    return copies


def save_scene(scene: Scene, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write ``scene`` as TOML (see :meth:`Scene.save`).

    The file is self-contained in its folder, as :func:`~drct.scene.load_scene` requires by default: changed
    data are written beside it, and data files the scene read from outside that folder are copied beside it.

    Example:
        >>> import os, tempfile, drct as ct
        >>> scene = ct.load_scene("shepp_logan_2d", scale=0.25)
        >>> path = ct.scene.save_scene(scene, os.path.join(tempfile.mkdtemp(), "copy.toml"))
        >>> ct.load_scene(path).name
        'shepp_logan_2d'
    """
    target = Path(path)
    folder = target.parent.resolve() if target.parent.exists() else target.parent
    data_files = {p: a for obj in scene.objects for p, a in obj.files_to_write(folder).items()}
    tables = scene.to_dict(folder)
    copies = _outside_files(tables, folder)
    refuse_overwrite([target, *data_files, *(c for c, o in copies.items() if not o.is_dir())], overwrite)
    text = "# drct scene file (see scenes/README.md)\n" + dumps(tables)
    for file, array in data_files.items():
        write_atomically(file, lambda tmp, array=array: np.save(tmp, array))
    for copy, original in copies.items():
        if original.is_dir():  # a folder of TIFF slices
            with output_folder(copy, force=overwrite) as staging:
                shutil.copytree(original, staging, dirs_exist_ok=True)
        else:
            write_atomically(copy, lambda tmp, original=original: shutil.copyfile(original, tmp))

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return write_atomically(target, write)
