"""Scene objects: analytic ellipsoids and Shepp-Logan phantoms, voxel/B-spline volumes from files, meshes.

Every object has a ``name`` (default ``<type>_<index>``), differentiable ``params`` (listed by
:func:`drct.scene.traverse` as ``object.<name>.<param>``), and ``project(pg, t)``: its line integrals on
``pg`` as a flat Dr.Jit float64 array, differentiable w.r.t. its parameters and the geometry vectors.
Attenuation is either ``mu`` (1/mm, energy independent) or a ``material`` with a ``density`` (g/cm³), whose
energy dependence the source/detector physics applies.

Example:
    >>> import numpy as np
    >>> from drct.backend import types
    >>> from drct.scene.objects import plain, scalar
    >>> mu = scalar(0.02, types("float64"))  # a parameter as a Dr.Jit value, ready for AD
    >>> plain(mu), plain(np.array([1.0, 2.0]))  # and back to plain numbers, for saving
    (0.02, [1.0, 2.0])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import drjit as dr
import numpy as np

from ..backend import Types
from ..geometry.projection import ProjectionGeometry
from ..phantoms import Ellipsoid as _Ellipsoid
from ..phantoms import ellipsoid_chords, shepp_logan_ellipses
from .rays import geometry_rays
from .registry import register
from .schema import Table

CHUNK = 1 << 22


def is_drjit(value: Any) -> bool:
    return bool(dr.is_array_v(value))


def scalar(value: Any, t: Types) -> Any:
    """A parameter as a Dr.Jit float64 value (Dr.Jit values keep their AD graph; numbers become opaque)."""
    if is_drjit(value):
        return t.Float64(value)
    return dr.opaque(t.Float64, float(np.asarray(value, dtype=np.float64).reshape(())))


def vector(value: Any, t: Types, size: int) -> list[Any]:
    """A vector parameter as ``size`` Dr.Jit float64 components."""
    if is_drjit(value):
        if dr.size_v(value) == size:
            return [t.Float64(c) for c in value]
        if dr.width(value) == size:  # a flat Float64 of size entries
            return [t.Float64(dr.gather(type(value), value, i)) for i in range(size)]
        raise ValueError(f"expected a Dr.Jit vector of {size} components, got {type(value).__name__}")
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size != size:
        raise ValueError(f"expected {size} numbers, got {arr.tolist()}")
    return [dr.opaque(t.Float64, float(a)) for a in arr]


def plain(value: Any) -> Any:
    """A parameter value as plain Python numbers/lists (Dr.Jit and numpy values detached), for saving."""
    if is_drjit(value):
        arr = np.asarray(dr.detach(value).numpy(), dtype=np.float64)
        if dr.size_v(value) in (2, 3) and arr.ndim == 2:
            arr = arr.reshape(arr.shape[0], -1)[:, 0]
        return arr.item() if arr.size == 1 else arr.tolist()
    if isinstance(value, np.ndarray):
        return value.item() if value.size == 1 else value.tolist()
    return value


class SceneObject:
    """Base class of scene objects (subclass and ``@register("object", "<type>")`` to add a kind)."""

    type_name: ClassVar[str] = "object"
    params: dict[str, Any]

    def __init__(self, name: str, params: dict[str, Any], material: str | None = None) -> None:
        self.name = name
        self.params = params
        self.material = material

    @property
    def ndim(self) -> int | None:
        """2 or 3 when the object only exists in that dimension, else None."""
        return None

    def project(self, pg: ProjectionGeometry, t: Types) -> Any:  # pragma: no cover - interface
        """Line integrals ``∫ value dl`` over every ray of ``pg``: a flat Dr.Jit float64 array."""
        raise NotImplementedError

    def to_table(self, folder: Path) -> dict[str, Any]:  # pragma: no cover - interface
        """The TOML table describing this object; files are referred to relative to ``folder``."""
        raise NotImplementedError

    def files_to_write(self, folder: Path) -> dict[Path, np.ndarray]:
        """Data files that :meth:`to_table` refers to and that must be written beside the scene file."""
        return {}

    def _weight_table(self) -> dict[str, Any]:
        if self.material is None:
            return {"mu": plain(self.params["mu"])}
        return {"material": self.material, "density": plain(self.params["density"])}

    @property
    def weight(self) -> Any:
        """The value multiplying this object's path length: ``mu`` (1/mm) or ``density`` (g/cm³)."""
        return self.params["density" if self.material is not None else "mu"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def read_weight(t: Table, default_mu: float | None = None) -> tuple[dict[str, Any], str | None]:
    """``mu`` (1/mm) or ``material`` + ``density`` (g/cm³) of an object table."""
    if t.has("material"):
        if t.has("mu"):
            t.fail("mu", "give either mu (1/mm) or material (with density), not both")
        material = t.string("material")
        if not material.strip():
            t.fail("material", "expected a material name")
        return {"density": t.quantity("density", "density", positive=True)}, material
    if default_mu is None:
        return {"mu": t.quantity("mu", "attenuation")}, None
    return {"mu": t.quantity("mu", "attenuation", default_mu)}, None


def _chunked(pg: ProjectionGeometry, t: Types, fn: Any) -> Any:
    """``fn(rays)`` over all rays of ``pg``, chunk by chunk, concatenated to one flat float64 array."""
    parts = []
    for start in range(0, pg.num_rays, CHUNK):
        count = min(CHUNK, pg.num_rays - start)
        value = fn(geometry_rays(pg, t, start, count))
        dr.eval(value)
        parts.append(value)
    if len(parts) == 1:
        return parts[0]
    out = dr.zeros(t.Float64, pg.num_rays)
    for i, part in enumerate(parts):
        dr.scatter(out, part, dr.arange(t.UInt, i * CHUNK, i * CHUNK + dr.width(part)))
    return out


@register("object", "ellipsoid")
class Ellipsoid(SceneObject):
    """An ellipsoid (3D) or ellipse (2D) of constant attenuation, projected exactly.

    TOML: ``center`` (mm), ``axes`` (semi-axes, mm), ``angles`` (ZXZ Euler angles, or one angle about z;
    see :class:`drct.phantoms.Ellipsoid`), ``mu`` or ``material``/``density``. Parameters: ``center``,
    ``axes`` and ``mu`` (or ``density``).
    """

    def __init__(
        self,
        name: str,
        center: Any,
        axes: Any,
        mu: Any = None,
        angles: Any = 0.0,
        material: str | None = None,
        density: Any = None,
    ) -> None:
        shape = _Ellipsoid(plain(center), plain(axes), 1.0, angles)  # validates sizes and values
        params: dict[str, Any] = {"center": np.array(shape.center), "axes": np.array(shape.axes)}
        params.update({"density": density} if material is not None else {"mu": mu})
        super().__init__(name, params, material)
        self.angles = shape.angles[: 1 if shape.ndim == 2 else 3]
        self.rotation = shape.rotation()
        self._ndim = shape.ndim

    @property
    def ndim(self) -> int | None:
        return 2 if self._ndim == 2 else None

    @classmethod
    def from_table(cls, t: Table, name: str) -> Ellipsoid:
        center = t.quantities("center", "length", (2, 3))
        axes = t.quantities("axes", "length", (len(center),), positive=True)
        angles = t.quantities("angles", "angle", (1, 3) if len(center) == 3 else (1,), (0.0,))
        weight, material = read_weight(t)
        return cls(
            name, np.array(center), np.array(axes), weight.get("mu"), np.array(angles), material, weight.get("density")
        )

    def project(self, pg: ProjectionGeometry, t: Types) -> Any:
        if pg.ndim == 3 and self._ndim == 2:
            raise ValueError(f"object {self.name!r} is a 2D ellipse but the geometry is 3D; give it 3 axes")
        dim = self._ndim
        center, axes = vector(self.params["center"], t, dim), vector(self.params["axes"], t, dim)
        weight = scalar(self.weight, t)
        return _chunked(pg, t, lambda rays: weight * ellipsoid_chords(rays, center, axes, self.rotation))

    def to_table(self, folder: Path) -> dict[str, Any]:
        table = {
            "type": self.type_name,
            "name": self.name,
            "center": plain(self.params["center"]),
            "axes": plain(self.params["axes"]),
            "angles": [float(a) for a in self.angles],
        }
        return table | self._weight_table()


@register("object", "shepp_logan")
class SheppLogan(SceneObject):
    """The modified Shepp-Logan phantom (2D or 3D, following the geometry), projected exactly.

    TOML: ``radius`` (mm per unit of the ``[-1, 1]`` table), ``center`` (mm, default the origin), ``mu``
    (1/mm per unit of the table's values; the skull is 1) or ``material``/``density``. Parameters:
    ``center``, ``radius`` and ``mu`` (or ``density``).
    """

    def __init__(
        self,
        name: str,
        radius: Any,
        center: Any = (0.0, 0.0, 0.0),
        mu: Any = 1.0,
        material: str | None = None,
        density: Any = None,
    ) -> None:
        params: dict[str, Any] = {"center": np.asarray(center, dtype=np.float64), "radius": radius}
        params.update({"density": density} if material is not None else {"mu": mu})
        super().__init__(name, params, material)

    @classmethod
    def from_table(cls, t: Table, name: str) -> SheppLogan:
        radius = t.quantity("radius", "length", positive=True)
        center = t.quantities("center", "length", (3,), (0.0, 0.0, 0.0))
        weight, material = read_weight(t, default_mu=1.0)
        return cls(name, radius, np.array(center), weight.get("mu"), material, weight.get("density"))

    def project(self, pg: ProjectionGeometry, t: Types) -> Any:
        center, radius = vector(self.params["center"], t, 3), scalar(self.params["radius"], t)
        weight = scalar(self.weight, t)
        table = shepp_logan_ellipses(pg.ndim, 1.0)

        def chords(rays: Any) -> Any:
            total = dr.zeros(t.Float64, dr.width(rays.t_min))
            for e in table:
                mid = [center[k] + radius * e.center[k] for k in range(pg.ndim)]
                axes = [radius * a for a in e.axes]
                total += e.mu * ellipsoid_chords(rays, mid, axes, e.rotation())
            return weight * total

        return _chunked(pg, t, chords)

    def to_table(self, folder: Path) -> dict[str, Any]:
        table = {
            "type": self.type_name,
            "name": self.name,
            "radius": plain(self.params["radius"]),
            "center": plain(self.params["center"]),
        }
        return table | self._weight_table()
