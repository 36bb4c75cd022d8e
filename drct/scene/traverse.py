"""``traverse(scene)``: the differentiable parameters of a scene by flat key, readable and settable, in the
manner of Mitsuba's ``mi.traverse``.

Keys: ``geometry.<name>`` for every misalignment parameter that applies to the geometry (see
:mod:`drct.geometry.perturb`; nominal values 0, ``pixel_scale`` 1), ``object.<object name>.<param>`` for the
objects' parameters (``mu`` or ``density``, ``center``, ``axes``, ``radius``, ``data``), ``source.photons``.
Set a value to a Dr.Jit array with gradients enabled and :meth:`Scene.line_integrals` is differentiable w.r.t.
it.

Example:
    >>> import drjit as dr, drct as ct
    >>> scene = ct.load_scene("scenes/shepp_logan_2d.toml", scale=0.1)
    >>> params = ct.scene.traverse(scene)
    >>> mu = dr.llvm.ad.Float64(float(params["object.phantom.mu"]))
    >>> dr.enable_grad(mu)
    >>> params["object.phantom.mu"] = mu
    >>> loss = dr.sum(scene.line_integrals().array)
    >>> dr.backward(loss)
    >>> bool(dr.grad(mu)[0] > 0)
    True
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from .errors import SceneError
from .geometry import applicable, default_value
from .scene import Scene


class SceneParameters(MutableMapping[str, Any]):
    """A live view of a scene's parameters: reading gives the current value, assigning changes the scene."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene

    def _slots(self) -> dict[str, tuple[dict[str, Any], str, Any]]:
        """key -> (the dict holding the value, its key there, the default when absent)."""
        scene = self.scene
        pg = scene.nominal_geometry()
        slots: dict[str, tuple[dict[str, Any], str, Any]] = {}
        for name in applicable(pg):
            slots[f"geometry.{name}"] = (scene.misalignment, name, default_value(name, pg))
        for obj in scene.objects:
            for name in obj.params:
                slots[f"object.{obj.name}.{name}"] = (obj.params, name, None)
        slots["source.photons"] = (scene.source.params, "photons", None)
        for name in scene.detector.params:
            slots[f"detector.{name}"] = (scene.detector.params, name, None)
        return slots

    def _slot(self, key: str) -> tuple[dict[str, Any], str, Any]:
        slots = self._slots()
        if key not in slots:
            raise SceneError(self.scene.file, key, f"no such parameter; the scene has {sorted(slots)}")
        return slots[key]

    def __getitem__(self, key: str) -> Any:
        holder, name, default = self._slot(key)
        return holder.get(name, default)

    def __setitem__(self, key: str, value: Any) -> None:
        holder, name, _ = self._slot(key)
        holder[name] = value

    def __delitem__(self, key: str) -> None:
        raise SceneError(self.scene.file, key, "parameters cannot be deleted; set the nominal value instead")

    def __contains__(self, key: object) -> bool:
        return key in self._slots()

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots())

    def __len__(self) -> int:
        return len(self._slots())

    def __repr__(self) -> str:
        return f"SceneParameters({list(self)})"


def traverse(scene: Scene) -> SceneParameters:
    """The parameters of ``scene`` by flat key (see the module docstring)."""
    if not isinstance(scene, Scene):
        raise TypeError(f"traverse needs a drct Scene (ct.load_scene(...)), got {type(scene).__name__}")
    return SceneParameters(scene)
