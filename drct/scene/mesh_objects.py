"""Mesh objects: closed triangle meshes (OBJ/PLY) with a uniform ``mu`` or ``material``, projected through
Mitsuba's ray tracer by :mod:`drct.meshes` (imported only when a scene has a mesh, so Mitsuba loads lazily).

TOML: ``file``, ``mu`` or ``material``/``density``, ``scale`` (a factor), ``translate`` (mm). All meshes of a
scene are traced together, composed by the scene's ``compose`` rule (``[scene] compose = "replace"``: an inner
mesh replaces the outer one's material where they overlap; ``"add"``: attenuations add up).
Parameters: ``mu`` (or ``density``); the path lengths themselves are not differentiable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import Types, upload
from ..geometry.projection import ProjectionGeometry
from ..meshes import mesh_path_lengths
from .objects import SceneObject, read_weight, scalar
from .registry import register
from .schema import Table, relative_path

SUFFIXES = (".obj", ".ply")


@register("object", "mesh")
class MeshObject(SceneObject):
    def __init__(
        self,
        name: str,
        mesh: Any,
        file: Path,
        scale: float,
        translate: tuple[float, ...],
        mu: Any = None,
        material: str | None = None,
        density: Any = None,
    ) -> None:
        params: dict[str, Any] = {"density": density} if material is not None else {"mu": mu}
        super().__init__(name, params, material)
        self.mesh, self.file, self.scale, self.translate = mesh, file, scale, translate
        self._paths: tuple[ProjectionGeometry, np.ndarray] | None = None

    @classmethod
    def from_table(cls, t: Table, name: str) -> MeshObject:
        file = t.file_path("file", SUFFIXES)
        weight, material = read_weight(t)
        scale = t.quantity("scale", "number", 1.0, positive=True)
        translate = t.quantities("translate", "length", (3,), (0.0, 0.0, 0.0))
        try:
            from ..meshes import load_mesh

            mesh = load_mesh(file, mu=1.0, name=name, scale=scale, translate=translate, check=True)
        except NotImplementedError:
            t.fail("file", "mesh support (drct.meshes) is not available in this build")
        except (ValueError, OSError, RuntimeError) as err:
            t.fail("file", f"cannot use mesh {file.name}: {err}")
        return cls(name, mesh, file, scale, translate, weight.get("mu"), material, weight.get("density"))

    def project(self, pg: ProjectionGeometry, t: Types) -> Any:
        if self._paths is None or self._paths[0] is not pg:
            trace_meshes([self], pg)
        assert self._paths is not None
        return upload(t.Float64, self._paths[1].reshape(-1)) * scalar(self.weight, t)

    def to_table(self, folder: Path) -> dict[str, Any]:
        table: dict[str, Any] = {"type": self.type_name, "name": self.name, "file": relative_path(self.file, folder)}
        if self.scale != 1.0:
            table["scale"] = self.scale
        if any(self.translate):
            table["translate"] = list(self.translate)
        return table | self._weight_table()


def trace_meshes(objects: Sequence[MeshObject], pg: ProjectionGeometry, compose: str = "replace") -> None:
    """Trace all mesh objects of a scene together (their overlaps composed by ``compose``) and cache the paths."""
    if not objects:
        return
    paths = mesh_path_lengths([o.mesh for o in objects], pg, compose=compose)
    for obj, path in zip(objects, paths, strict=True):
        obj._paths = (pg, np.asarray(path, dtype=np.float64))
