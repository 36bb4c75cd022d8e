"""The scene files that ship with drct, inside the package: they are there in a wheel, from any folder.

The files live in this folder (``drct/scenes/``: ``*.toml``, their data in ``data/`` and ``meshes/`` with the
scripts that made them, the format in ``README.md``); the repository's ``scenes/`` is a link to it.
:func:`drct.load_scene` and the command line (``drct simulate shepp_logan_2d``) take a bundled scene by its
name wherever no file of that name exists.

Example:
    >>> import drct as ct
    >>> "shepp_logan_2d" in ct.scenes.names()
    True
    >>> ct.scenes.path("shepp_logan_2d").name
    'shepp_logan_2d.toml'
    >>> (ct.scenes.FOLDER / "shepp_logan_2d.toml").is_file()  # the folder that holds them
    True
    >>> ct.load_scene("shepp_logan_2d", scale=0.25).name  # by name, from any folder
    'shepp_logan_2d'
"""

from __future__ import annotations

from ..scene.bundled import FOLDER as FOLDER
from ..scene.bundled import is_name as is_name
from ..scene.bundled import names as names
from ..scene.bundled import path as path

__all__ = ["FOLDER", "is_name", "names", "path"]
