"""Closed triangle meshes (OBJ/PLY) projected exactly through Mitsuba's ray tracer.

STUB: signatures are final; bodies land in the next commits.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .geometry.projection import AnyGeometry
from .physics.materials import Material

COMPOSE_MODES = ("replace", "add")


class MeshError(ValueError):
    """A mesh file that cannot be used (unreadable, not closed, inconsistently oriented)."""


@dataclass(frozen=True)
class Mesh:
    """A closed triangle mesh with a uniform attenuation.

    Attributes:
        vertices: ``(n, 3)`` float64 positions in mm (x, y, z), duplicates merged.
        faces: ``(m, 3)`` int vertex indices, counter-clockwise seen from outside (outward normals).
        mu: Linear attenuation coefficient in 1/mm (monochromatic model), or None.
        material: Material (or its name) for the polychromatic model, or None.
        name: Label used in errors and as the key of path lengths (default: the file name).
        path: File it was read from, if any.
    """

    vertices: np.ndarray = field(repr=False)
    faces: np.ndarray = field(repr=False)
    mu: float | None = None
    material: str | Material | None = None
    name: str = "mesh"
    path: Path | None = None


def load_mesh(
    path: str | os.PathLike[str],
    mu: float | None = None,
    material: str | Material | None = None,
    name: str | None = None,
    scale: float = 1.0,
    translate: Sequence[float] = (0.0, 0.0, 0.0),
    check: bool = True,
) -> Mesh:
    """Read a closed triangle mesh from an OBJ or PLY file (through Mitsuba's loaders)."""
    raise NotImplementedError


def check_closed(vertices: np.ndarray, faces: np.ndarray, name: str = "mesh") -> None:
    """Raise :class:`MeshError` unless every edge is shared by exactly two faces traversing it in opposite
    directions (a closed, consistently oriented surface)."""
    raise NotImplementedError


def mesh_path_lengths(
    meshes: Sequence[Mesh], pg: AnyGeometry, compose: str = "replace", chunk: int = 1 << 20
) -> list[np.ndarray]:
    """Per-mesh path lengths (mm) along every ray of ``pg``, each of shape ``pg.shape``."""
    raise NotImplementedError


def material_paths(meshes: Sequence[Mesh], pg: AnyGeometry, compose: str = "replace") -> dict[Any, np.ndarray]:
    """Path lengths per material (for :func:`drct.physics.simulate_counts`); meshes with only ``mu`` go to the
    ``None`` key as μ line integrals."""
    raise NotImplementedError


def project_meshes(meshes: Sequence[Mesh], pg: AnyGeometry, compose: str = "replace") -> np.ndarray:
    """Line integrals Σ μ_i L_i (dimensionless) of meshes with ``mu`` set, shape ``pg.shape``."""
    raise NotImplementedError
