"""Projection geometries in vector form: per view a source (or ray direction), a detector centre and its axes.

Every geometry drct supports reduces to one of two classes:

* :class:`ProjectionGeometry` — a detector of ``det_shape`` pixels per view. Pixel ``(row, col)`` of view ``i``
  has its centre at ``det[i] + (col - (cols - 1) / 2) * det_u[i] + (row - (rows - 1) / 2) * det_v[i]``
  (the convention of ASTRA's ``*_vec`` geometries). For ``beam="parallel"``, ``src[i]`` is the ray direction
  and each ray is the whole line through the pixel centre; for ``beam="cone"`` (fan beam in 2D), ``src[i]`` is
  the source position and each ray is the segment from the source to the pixel centre.
  A ``curved`` detector is a cylinder around the source whose axis is ``det_v`` (an equiangular fan in 2D):
  ``det`` is its centre, ``det_u`` its tangent there, and ``|det_u|`` the arc length of one pixel.
* :class:`RayGeometry` — any list of lines (PET-like lines of response), each integrated over its full length.

Sinograms are shaped ``(views, rows, cols)`` in 3D, ``(views, cols)`` in 2D, and ``(rays,)`` for ray lists.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import drjit as dr
import numpy as np

from ._checks import finite_rows

BEAMS = ("parallel", "cone")


def _cross2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]


def is_drjit(value: Any) -> bool:
    """True for Dr.Jit arrays (geometry vectors that may carry gradients)."""
    return bool(dr.is_array_v(value))


def host_rows(value: Any) -> Any:
    """``(n, ndim)`` numpy rows of a Dr.Jit vector array (components x, y[, z]); anything else unchanged."""
    if not is_drjit(value):
        return value
    if dr.size_v(value) not in (2, 3) or not dr.is_float_v(value):
        raise TypeError(
            "geometry vectors given as Dr.Jit arrays must be Array2f64/Array3f64 (or float32), "
            f"got {type(value).__name__}"
        )
    columns = [np.asarray(dr.detach(c).numpy(), dtype=np.float64).reshape(-1) for c in value]
    size = max(c.size for c in columns)
    return np.stack([np.broadcast_to(c, (size,)) for c in columns], axis=1)


def _fixed(arr: np.ndarray) -> np.ndarray:
    arr = np.array(arr, dtype=np.float64)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class ProjectionGeometry:
    """A detector geometry in vector form (see the module docstring for the exact meaning of each array).

    Build one with :func:`drct.parallel`, :func:`drct.fan`, :func:`drct.cone`, :func:`drct.helix` or
    :func:`drct.from_vectors` rather than directly.

    Attributes:
        beam: ``"parallel"`` or ``"cone"`` (fan beam in 2D).
        src: ``(views, ndim)`` source positions (cone) or ray directions (parallel), points ``(x, y[, z])``.
        det: ``(views, ndim)`` detector centres.
        det_u: ``(views, ndim)`` step from one detector column to the next.
        det_v: ``(views, 3)`` step from one detector row to the next (3D only, else None).
        det_shape: ``(cols,)`` in 2D, ``(rows, cols)`` in 3D.
        curved: cylindrical detector centred on the source (cone beam only).

    Example:
        >>> import numpy as np, drct as ct
        >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 8, endpoint=False), (4, 6), 1.0, 100.0, 150.0)
        >>> pg.shape, pg.to_vectors().shape
        ((8, 4, 6), (8, 12))
    """

    beam: str
    src: np.ndarray
    det: np.ndarray
    det_u: np.ndarray
    det_v: np.ndarray | None
    det_shape: tuple[int, ...]
    curved: bool = False

    def __post_init__(self) -> None:
        if self.beam not in BEAMS:
            raise ValueError(f"beam must be one of {BEAMS}, got {self.beam!r}")
        if len(self.det_shape) not in (1, 2) or any(int(n) < 1 for n in self.det_shape):
            raise ValueError(f"det_shape must be (cols,) or (rows, cols) of positive ints, got {self.det_shape!r}")
        dim = len(self.det_shape) + 1
        src = finite_rows(host_rows(self.src), dim, "src" if self.beam == "cone" else "ray direction (src)")
        views = src.shape[0]
        det = finite_rows(host_rows(self.det), dim, "det", views)
        det_u = finite_rows(host_rows(self.det_u), dim, "det_u", views)
        if dim == 3:
            if self.det_v is None:
                raise ValueError("det_v is required for a 3D geometry (det_shape has 2 entries)")
            det_v = finite_rows(host_rows(self.det_v), 3, "det_v", views)
        elif self.det_v is not None:
            raise ValueError("det_v must be None for a 2D geometry (det_shape has 1 entry)")
        else:
            det_v = None
        if self.curved and self.beam != "cone":
            raise ValueError("curved=True needs beam='cone': a curved detector is centred on a source")
        self._check_degenerate(src, det, det_u, det_v)
        for name, value in (("src", src), ("det", det), ("det_u", det_u), ("det_v", det_v)):
            if value is not None and not is_drjit(getattr(self, name)):
                object.__setattr__(self, name, _fixed(value))
        object.__setattr__(self, "det_shape", tuple(int(n) for n in self.det_shape))
        object.__setattr__(self, "curved", bool(self.curved))

    def _check_degenerate(self, src: np.ndarray, det: np.ndarray, det_u: np.ndarray, det_v: np.ndarray | None) -> None:
        def fail(what: str, mask: np.ndarray) -> None:
            view = int(np.argmax(mask))
            raise ValueError(f"{what} (view {view}; {int(mask.sum())} view(s) affected)")

        scale = np.linalg.norm(det_u, axis=1)
        if np.any(scale == 0):
            fail("det_u must be non-zero: zero detector spacing", scale == 0)
        if det_v is None:
            normal = np.stack([-det_u[:, 1], det_u[:, 0]], axis=1)
        else:
            vlen = np.linalg.norm(det_v, axis=1)
            if np.any(vlen == 0):
                fail("det_v must be non-zero: zero detector spacing", vlen == 0)
            normal = np.cross(det_u, det_v)
            flat = np.linalg.norm(normal, axis=1) <= 1e-12 * scale * vlen
            if np.any(flat):
                fail("det_u and det_v are parallel: the detector has no area", flat)
        normal = normal / np.linalg.norm(normal, axis=1, keepdims=True)
        if self.beam == "parallel":
            size = np.linalg.norm(src, axis=1)
            if np.any(size == 0):
                fail("ray direction (src) must be non-zero for a parallel beam", size == 0)
            grazing = np.abs(np.sum(src * normal, axis=1)) <= 1e-9 * size
            if np.any(grazing):
                fail("ray direction lies in the detector plane: no ray reaches the detector", grazing)
        else:
            offset = src - det
            dist = np.abs(np.sum(offset * normal, axis=1))
            inside = dist <= 1e-9 * np.maximum(np.linalg.norm(offset, axis=1), 1.0)
            if np.any(inside):
                fail("the source lies in the detector plane (source-detector distance 0)", inside)

    @property
    def ndim(self) -> int:
        """2 or 3."""
        return len(self.det_shape) + 1

    @property
    def num_views(self) -> int:
        return int(host_rows(self.src).shape[0]) if is_drjit(self.src) else int(self.src.shape[0])

    @property
    def differentiable(self) -> bool:
        """True when some vector array is a Dr.Jit array (see :meth:`with_drjit_vectors`)."""
        return any(is_drjit(v) for v in (self.src, self.det, self.det_u, self.det_v))

    def with_drjit_vectors(self, backend: str | None = None) -> ProjectionGeometry:
        """A copy whose ``src``, ``det``, ``det_u``, ``det_v`` are Dr.Jit ``Array{2,3}f64`` arrays (one entry per
        view), ready for ``dr.enable_grad(pg.det)`` and friends.

        Example:
            >>> import numpy as np, drjit as dr, drct as ct
            >>> pg = ct.fan(np.linspace(0, np.pi, 4), 16, 1.0, 50.0, 100.0).with_drjit_vectors()
            >>> dr.enable_grad(pg.det)
            >>> type(pg.det).__name__
            'Array2f64'
        """
        from ..backend import drjit_module

        mod = drjit_module(backend)
        vec = mod.Array2f64 if self.ndim == 2 else mod.Array3f64
        arrays = {
            name: None if value is None else vec(*[np.ascontiguousarray(c) for c in np.asarray(host_rows(value)).T])
            for name, value in (("src", self.src), ("det", self.det), ("det_u", self.det_u), ("det_v", self.det_v))
        }
        return replace(self, **arrays)

    @property
    def shape(self) -> tuple[int, ...]:
        """Sinogram shape: ``(views, rows, cols)`` or ``(views, cols)``."""
        return (self.num_views, *self.det_shape)

    @property
    def num_rays(self) -> int:
        return int(np.prod(self.shape))

    def perturb(self, **params: Any) -> ProjectionGeometry:
        """This geometry moved by named misalignment parameters (see :mod:`drct.geometry.perturb`); gradients
        flow to every parameter given as a Dr.Jit array with gradients enabled.

        Example:
            >>> import numpy as np, drct as ct
            >>> pg = ct.fan(np.linspace(0, np.pi, 4), 16, 1.0, 50.0, 100.0)
            >>> float(pg.perturb(det_shift_u=2.0).to_vectors()[0, 2] - pg.det[0, 0])
            2.0
        """
        from .perturb import perturb

        return perturb(self, **params)

    def select_views(self, indices: Any) -> ProjectionGeometry:
        """The geometry of a subset of views, in the order given (e.g. one ordered subset of OS-SART/OSEM).

        Dr.Jit vectors are gathered, so gradients still flow back to the full geometry's parameters.

        Args:
            indices: view indices (ints in ``[0, num_views)``), a slice, or a boolean mask of ``num_views``.

        Example:
            >>> import numpy as np, drct as ct
            >>> pg = ct.parallel(np.linspace(0, np.pi, 12, endpoint=False), 16)
            >>> pg.select_views(slice(0, None, 4)).shape
            (3, 16)
        """
        views = self.num_views
        if isinstance(indices, slice):
            idx = np.arange(views)[indices]
        else:
            arr = np.asarray(indices)
            if arr.dtype == bool:
                if arr.shape != (views,):
                    raise ValueError(f"a boolean view mask must have shape ({views},), got {arr.shape}")
                idx = np.flatnonzero(arr)
            elif arr.size == 0 or np.issubdtype(arr.dtype, np.integer):
                idx = arr.astype(np.int64).reshape(-1)
            else:
                raise TypeError(f"indices must be integers, a slice or a boolean mask, got dtype {arr.dtype}")
        if idx.size == 0:
            raise ValueError("select_views needs at least one view, got an empty selection")
        bad = (idx < -views) | (idx >= views)
        if np.any(bad):
            raise ValueError(f"view index {int(idx[bad][0])} is out of range for {views} views")
        idx = np.where(idx < 0, idx + views, idx)

        def pick(value: Any) -> Any:
            if value is None:
                return None
            if not is_drjit(value):
                return np.asarray(value)[idx]
            from ..backend import drjit_module

            mod = drjit_module("cuda" if dr.backend_v(value) == dr.JitBackend.CUDA else "llvm")
            if dr.width(value) == 1:
                return value
            return dr.gather(type(value), value, mod.UInt32(idx.astype(np.uint32)))

        return replace(self, src=pick(self.src), det=pick(self.det), det_u=pick(self.det_u), det_v=pick(self.det_v))

    def to_vectors(self) -> np.ndarray:
        """ASTRA-style vector rows: ``(views, 12)`` = src, det, u, v in 3D; ``(views, 6)`` = src, det, u in 2D."""
        parts = [self.src, self.det, self.det_u] + ([] if self.det_v is None else [self.det_v])
        return np.concatenate([np.asarray(host_rows(p), dtype=np.float64) for p in parts], axis=1)

    def plot(self, vg: Any = None, views: Any = None, ax: Any = None) -> Any:
        """Draw this geometry with matplotlib: source path, a few views' sources, detector outlines and central and
        corner rays, and ``vg``'s box (see :func:`drct.geometry.plot.plot_geometry`); returns the axes.

        Example:
            >>> import matplotlib
            >>> matplotlib.use("Agg")
            >>> import numpy as np, drct as ct
            >>> ct.parallel(np.linspace(0, np.pi, 90), 64).plot(ct.VolumeGeometry((64, 64)), views=3).name
            'rectilinear'
        """
        from .plot import plot_geometry

        return plot_geometry(self, vg, views, ax)

    def __repr__(self) -> str:
        kind = ("fan" if self.ndim == 2 else "cone") if self.beam == "cone" else "parallel"
        curved = ", curved" if self.curved else ""
        return f"ProjectionGeometry({kind} {self.ndim}D, {self.num_views} views, det_shape={self.det_shape}{curved})"


@dataclass(frozen=True, eq=False)
class RayGeometry:
    """An arbitrary list of lines, each integrated over its whole length (e.g. PET lines of response).

    Attributes:
        origins: ``(rays, ndim)`` a point on each line.
        directions: ``(rays, ndim)`` direction of each line (normalised on construction).

    Example:
        >>> import numpy as np, drct as ct
        >>> pg = ct.rays([[0.0, -50.0], [-50.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]])
        >>> pg.shape
        (2,)
    """

    origins: np.ndarray
    directions: np.ndarray

    def __post_init__(self) -> None:
        origins = np.asarray(host_rows(self.origins))
        dim = origins.shape[-1] if origins.ndim in (1, 2) else -1
        if dim not in (2, 3):
            raise ValueError(f"origins must have shape (n, 2) or (n, 3), got {origins.shape}")
        origins = finite_rows(origins, dim, "origins")
        directions = finite_rows(host_rows(self.directions), dim, "directions", origins.shape[0])
        length = np.linalg.norm(directions, axis=1, keepdims=True)
        if np.any(length == 0):
            raise ValueError(f"directions must be non-zero, but row {int(np.argmax(length == 0))} is zero")
        if not is_drjit(self.origins):
            object.__setattr__(self, "origins", _fixed(origins))
        if not is_drjit(self.directions):  # Dr.Jit directions are normalised where the rays are made
            object.__setattr__(self, "directions", _fixed(directions / length))

    @property
    def ndim(self) -> int:
        return int(np.asarray(host_rows(self.origins)).shape[1])

    @property
    def differentiable(self) -> bool:
        return is_drjit(self.origins) or is_drjit(self.directions)

    def with_drjit_vectors(self, backend: str | None = None) -> RayGeometry:
        """A copy whose ``origins`` and ``directions`` are Dr.Jit ``Array{2,3}f64`` arrays (see
        :meth:`ProjectionGeometry.with_drjit_vectors`)."""
        from ..backend import drjit_module

        mod = drjit_module(backend)
        vec = mod.Array2f64 if self.ndim == 2 else mod.Array3f64
        return replace(
            self,
            origins=vec(*[np.ascontiguousarray(c) for c in np.asarray(host_rows(self.origins)).T]),
            directions=vec(*[np.ascontiguousarray(c) for c in np.asarray(host_rows(self.directions)).T]),
        )

    @property
    def num_views(self) -> int:
        return 1

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.num_rays,)

    @property
    def num_rays(self) -> int:
        return int(np.asarray(host_rows(self.origins)).shape[0])

    def to_vectors(self) -> np.ndarray:
        """``(rays, 2 * ndim)`` rows: origin, unit direction."""
        directions = np.asarray(host_rows(self.directions), dtype=np.float64)
        directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
        return np.concatenate([np.asarray(host_rows(self.origins), dtype=np.float64), directions], axis=1)

    def plot(self, vg: Any = None, rays: Any = None, ax: Any = None) -> Any:
        """Draw a few of these lines and ``vg``'s box with matplotlib (see :func:`drct.geometry.plot.plot_rays`);
        returns the axes.

        Example:
            >>> import matplotlib
            >>> matplotlib.use("Agg")
            >>> import drct as ct
            >>> len(ct.rays([[0.0, -50.0], [-50.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]).plot().get_lines())
            2
        """
        from .plot import plot_rays

        return plot_rays(self, vg, rays, ax)

    def __repr__(self) -> str:
        return f"RayGeometry({self.ndim}D, {self.num_rays} rays)"


AnyGeometry = ProjectionGeometry | RayGeometry
