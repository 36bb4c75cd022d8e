"""drct's optional dependencies in one place: which extra of ``pip install "drct[...]"`` brings each one, and
the error raised where one is needed but not installed.

``pip install drct`` brings what every projector, solver, scene and command needs (Dr.Jit, numpy, scipy,
matplotlib, tqdm, tifffile). The rest is optional, imported only where it is used:

========================  =============  =================================================================
module                    extra          used by
========================  =============  =================================================================
``torch``                 ``torch``      :mod:`drct.torch` (layers, autograd); ``distributed``: sharding
``mitsuba``               ``meshes``     triangle meshes (:mod:`drct.meshes`, mesh objects in scenes)
``h5py``, ``pydicom``     ``formats``    NXtomo and DICOM files (:mod:`drct.formats`)
``xraydb``, ``spekpy``    ``physics``    ``Material.from_formula``, ``Spectrum.tube(model="spekpy")``
``ray``                   ``ray``        ``drct generate --workers K`` (:mod:`drct.datasets`; with h5py)
``pint``                  ``units``      quantities with units in the geometry constructors (:mod:`drct.units`)
========================  =============  =================================================================

``drct[all]`` installs every extra. A missing one raises :class:`MissingExtraError`, a
:class:`ModuleNotFoundError` whose message names the extra to install.

Example:
    >>> from drct.extras import message, require
    >>> print(message("mitsuba", "tracing triangle meshes"))
    tracing triangle meshes needs mitsuba, which is not installed: pip install "drct[meshes]"
    >>> require("json", "reading JSON").__name__  # an installed module is simply imported
    'json'
    >>> from drct.extras import EXTRAS  # the table above: top-level module -> extra
    >>> EXTRAS["h5py"], EXTRAS["mitsuba"]
    ('formats', 'meshes')
"""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {
    "torch": "torch",
    "mitsuba": "meshes",
    "h5py": "formats",
    "pydicom": "formats",
    "xraydb": "physics",
    "spekpy": "physics",
    "ray": "ray",
    "pint": "units",
}  # top-level module -> the extra of pyproject.toml that installs it


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency is not installed; the message names the ``pip install "drct[extra]"`` for it.

    Example:
        >>> from drct.extras import MissingExtraError, require
        >>> try:
        ...     require("no_such_module_xyz", "an example", extra="all")
        ... except MissingExtraError as error:
        ...     print(error)
        an example needs no_such_module_xyz, which is not installed: pip install "drct[all]"
    """


def message(module: str, purpose: str, extra: str | None = None) -> str:
    """The sentence a missing ``module`` raises: what needed it and the install command (``extra``: default
    from :data:`EXTRAS`).

    Example:
        >>> from drct.extras import message
        >>> message("h5py", "reading NXtomo files")
        'reading NXtomo files needs h5py, which is not installed: pip install "drct[formats]"'
    """
    root = module.partition(".")[0]
    chosen = extra or EXTRAS.get(root)
    hint = f'pip install "drct[{chosen}]"' if chosen else f"pip install {root}"
    return f"{purpose} needs {root}, which is not installed: {hint}"


def require(module: str, purpose: str, extra: str | None = None) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming the extra that provides it.

    Only the module's own absence is translated: an installed package that fails to import (a broken build, a
    missing shared library) raises its own error unchanged.

    Args:
        module: the module to import, e.g. ``"mitsuba"`` or ``"torch.distributed"``.
        purpose: what needs it, for the message (``"tracing triangle meshes"``).
        extra: the extra to name (default: the one :data:`EXTRAS` lists for the top-level module).

    Example:
        >>> from drct.extras import require
        >>> require("numpy", "arrays").__name__
        'numpy'
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or not (module == error.name or module.startswith(f"{error.name}.")):
            raise  # something the module itself imports is missing: its own error says what
        raise MissingExtraError(message(module, purpose, extra), name=error.name) from None


__all__ = ["EXTRAS", "MissingExtraError", "message", "require"]
