"""The scenes bundled with drct: their names and files (the files lie in the package folder ``drct/scenes/``).

:func:`drct.load_scene` resolves a bare name through :func:`path`; :mod:`drct.scenes` is the public face of
these functions (``ct.scenes.names()``, ``ct.scenes.path(name)``).

Example:
    >>> from drct.scene.bundled import names, path
    >>> "micro_ct_misaligned" in names()
    True
    >>> path("micro_ct_misaligned").parent.name
    'scenes'
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parents[1] / "scenes"  # drct/scenes/: package data (pyproject.toml)
SUFFIX = ".toml"


def names() -> list[str]:
    """The names of the bundled scenes (file names without ``.toml``), sorted.

    Example:
        >>> import drct as ct
        >>> ct.scenes.names()[:2]
        ['cone_full_scan', 'cone_short_scan']
    """
    return sorted(p.stem for p in FOLDER.glob(f"*{SUFFIX}") if p.is_file())


def is_name(text: str) -> bool:
    """Whether ``text`` is the name of a bundled scene (a bare name: no folder, no suffix).

    Example:
        >>> import drct as ct
        >>> ct.scenes.is_name("helical"), ct.scenes.is_name("scenes/helical.toml")
        (True, False)
    """
    return text in names()


def path(name: str) -> Path:
    """The file of the bundled scene ``name`` (as :func:`names` lists it).

    Raises:
        ValueError: no bundled scene has that name (the message lists those that exist).

    Example:
        >>> import drct as ct
        >>> ct.scenes.path("helical").name
        'helical.toml'
        >>> ct.scenes.path("nonesuch")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: no bundled scene named 'nonesuch'; the bundled scenes are: ...
    """
    if not is_name(name):
        raise ValueError(f"no bundled scene named {name!r}; the bundled scenes are: {', '.join(names())}")
    return FOLDER / f"{name}{SUFFIX}"


__all__ = ["FOLDER", "is_name", "names", "path"]
