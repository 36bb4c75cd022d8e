"""The ``type`` registry: scene kinds (objects, geometries, sources, detectors) looked up by name.

New kinds plug in with a decorator; a scene file then names them in its ``type`` key. The registry imports none
of the kinds: each kind's module registers its classes when imported, and :mod:`drct.scene` imports the built-in
kind modules once.

Example:
    >>> from drct.scene.registry import kinds
    >>> "ellipsoid" in kinds("object") and "cone" in kinds("geometry")
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .schema import Table

CATEGORIES = ("object", "geometry", "source", "detector")
_REGISTRY: dict[str, dict[str, Any]] = {c: {} for c in CATEGORIES}
T = TypeVar("T")


def register(category: str, name: str) -> Callable[[T], T]:
    """Register a class (with ``from_table(table, ...)`` and ``to_table()``) as ``type = name`` of ``category``.

    Example:
        >>> from drct.scene.registry import register
        >>> from drct.scene.objects import Ellipsoid
        >>> @register("object", "my_blob")
        ... class Blob(Ellipsoid):
        ...     pass
    """
    if category not in _REGISTRY:
        raise ValueError(f"category must be one of {CATEGORIES}, got {category!r}")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a type name must be an identifier, got {name!r}")

    def wrap(cls: T) -> T:
        _REGISTRY[category][name] = cls
        cls.type_name = name  # type: ignore[attr-defined]
        return cls

    return wrap


def kinds(category: str) -> list[str]:
    """The registered type names of ``category``.

    Example:
        >>> import drct as ct
        >>> ct.scene.kinds("geometry")
        ['astra', 'cone', 'fan', 'file', 'helix', 'laminography', 'parallel', 'rays', 'vectors']
    """
    return sorted(_REGISTRY[category])


def lookup(category: str, table: Table, default: str | None = None) -> Any:
    """The class named by ``table``'s ``type`` key; a SceneError lists the known types otherwise."""
    name = table.string("type", default)
    if name is None:
        table.fail("type", f"missing: the {category} type (one of {kinds(category)})")
    if name not in _REGISTRY[category]:
        table.fail("type", f"unknown {category} type {name!r}; expected one of {kinds(category)}")
    return _REGISTRY[category][name]
