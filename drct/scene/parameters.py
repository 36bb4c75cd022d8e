"""The live view of a scene's differentiable parameters by flat key (see :func:`drct.scene.traverse`)."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from .errors import SceneError
from .geometry import applicable, default_value

if TYPE_CHECKING:
    from .scene import Scene


class SceneParameters(MutableMapping[str, Any]):
    """A live view of a scene's parameters: reading gives the current value, assigning changes the scene.

    Example:
        >>> import drct as ct
        >>> params = ct.scene.traverse(ct.load_scene("scenes/shepp_logan_2d.toml", scale=0.1))
        >>> "geometry.det_shift_u" in params, "source.photons" in params
        (True, True)
        >>> params["geometry.det_shift_u"] = 0.5
        >>> float(params["geometry.det_shift_u"])
        0.5
    """

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
