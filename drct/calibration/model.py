"""Parameterised geometry models for calibration: which numbers are unknown and how they move the rays.

Two models share one interface, the protocol :class:`GeometryModel`:

* :class:`PerturbModel` — the named misalignment parameters of :meth:`drct.ProjectionGeometry.perturb`, each
  global (one value) or per view (``"name:view"``).
* :class:`EndpointModel` — a list of lines between detector elements grouped in modules (PET-like rings); the
  unknowns are a shift of every module.

A model maps a flat parameter vector ``theta`` (in the parameters' own units: mm, radians, a scale factor) to a
geometry, with Dr.Jit arrays that carry gradients when the caller asks for them. It also knows a *scale* per
entry (about one detector pixel's worth of effect) used to condition the optimisers, and how to coarsen itself
for multi-resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

import drjit as dr
import numpy as np

from ..backend import drjit_module, types, upload
from ..geometry.parameters import TABLE, Parameter, check
from ..geometry.projection import ProjectionGeometry, RayGeometry

POSE = ("pose_shift", "pose_rotation")
# the object pose estimated alongside: a rigid motion, tabled like motion_shift / motion_rotation
POSE_TABLE = {"pose_shift": TABLE["motion_shift"], "pose_rotation": TABLE["motion_rotation"]}


@dataclass(frozen=True)
class ParamSpec:
    """One unknown: ``width`` components, once (global) or once per view."""

    name: str
    width: int
    per_view: bool
    count: int  # entries in theta: width (global) or width * views

    @property
    def label(self) -> str:
        return f"{self.name}:view" if self.per_view else self.name


class GeometryModel(Protocol):
    """What :func:`drct.calibration.calibrate` needs of a geometry model (:class:`PerturbModel`,
    :class:`EndpointModel`, or your own).

    ``theta`` is a flat float64 vector of ``size`` entries laid out by ``specs`` (each spec's components
    component-major, per-view specs with one entry per view); the first ``user_size`` entries are the user's
    parameters, the rest a rigid object pose estimated alongside (the joint problem's gauge), if any.
    """

    specs: list[ParamSpec]
    size: int
    user_size: int
    theta0: np.ndarray  # starting values
    scale: np.ndarray  # per entry: about one detector pixel's worth of effect (conditions the steps)
    pixel: float  # detector pixel (or element) pitch, mm

    @property
    def num_views(self) -> int: ...

    @property
    def views_independent(self) -> bool:
        """True if per-view entries move only their own view (block-diagonal Jacobian)."""
        ...

    def split(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """``theta`` as ``{name: (n, width)}`` rows."""
        ...

    def public(self, theta: np.ndarray) -> dict[str, Any]:
        """The user's parameters as plain numbers and lists (what the result reports)."""
        ...

    def geometry(self, theta: np.ndarray, seed: np.ndarray | None = None) -> Any:
        """The geometry at ``theta``; with ``seed`` (a tangent of theta) carrying forward-mode AD."""
        ...

    def geometry_reverse(self, theta: np.ndarray) -> tuple[Any, dict[str, Any]]:
        """The geometry and its grad-enabled Dr.Jit leaves (reverse mode)."""
        ...

    def gradient(self, leaves: dict[str, Any]) -> np.ndarray:
        """The flat gradient from the leaves of :meth:`geometry_reverse` after ``dr.backward``."""
        ...

    def with_geometry(self, pg: Any) -> GeometryModel:
        """The same unknowns on a level's (coarser) nominal geometry with the same views."""
        ...

    def gauge_geometry(self, theta: np.ndarray, seed_shift: np.ndarray | None, seed_rot: np.ndarray | None) -> Any:
        """The geometry at ``theta`` moved by a rigid object motion with the given tangents."""
        ...

    def pose(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The estimated object pose ``(shift, rotation)``, or None."""
        ...

    def nominal_geometry(self) -> Any: ...

    def final_geometry(self, theta: np.ndarray, pose: bool = True) -> Any:
        """The geometry at ``theta`` with plain numpy arrays; ``pose=False`` leaves out the object pose."""
        ...


def _rows(value: np.ndarray, n: int, width: int) -> np.ndarray:
    return np.asarray(value, dtype=np.float64).reshape(width, n).T  # theta is stored component-major


def as_drjit(values: np.ndarray, t: Any, grad: bool = False, seed: np.ndarray | None = None) -> Any:
    """``(n, width)`` values as Float64 (width 1) or Array2f64/Array3f64, optionally with a tangent ``seed``."""
    mod = drjit_module(t.backend)
    width = values.shape[1]
    if width == 1:
        out = upload(t.Float64, values[:, 0])
    else:
        cls = mod.Array2f64 if width == 2 else mod.Array3f64
        out = cls(*[upload(t.Float64, values[:, i]) for i in range(width)])
    if grad:
        dr.enable_grad(out)
        if seed is not None:
            dr.set_grad(out, as_drjit(seed, t))
    return out


def _row(name: str) -> Parameter:
    """The table row of a model entry (the pose entries are tabled like the object motion)."""
    return POSE_TABLE.get(name) or TABLE[name]


class PerturbModel:
    """The misalignment parameters of :func:`drct.geometry.perturb.perturb` on a nominal detector geometry.

    Args:
        pg: the nominal geometry.
        params: parameter names; ``"name:view"`` makes a parameter per view (e.g. ``"det_shift_u:view"``).
        init: starting values in the parameters' units (default: nominal, i.e. 0 and ``pixel_scale`` 1);
            one value, or one per view for per-view parameters.

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.calibration.model import PerturbModel
        >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 8, endpoint=False), (16, 16), 1.0, 100.0, 200.0)
        >>> m = PerturbModel(pg, ["det_shift_u", "det_shift_v:view"])
        >>> m.size, [s.label for s in m.specs]  # with the object pose (3 shifts, 3 angles) estimated alongside
        (15, ['det_shift_u', 'det_shift_v:view', 'pose_shift', 'pose_rotation'])
    """

    def __init__(
        self, pg: ProjectionGeometry, params: list[str], init: dict[str, Any] | None = None, pose: bool = True
    ) -> None:
        if not isinstance(pg, ProjectionGeometry):
            raise TypeError(
                f"pg must be a drct.ProjectionGeometry (ct.cone, ct.parallel, ...), got {type(pg).__name__}"
            )
        if not params:
            raise ValueError("params must name at least one parameter to calibrate, e.g. ['det_shift_u']")
        self.pg = pg
        views, dim = pg.num_views, pg.ndim
        specs: list[ParamSpec] = []
        for raw in params:
            name, _, mode = str(raw).partition(":")
            param = check(name, pg, "calibration parameter")
            if mode not in ("", "view"):
                raise ValueError(f"parameter {raw!r}: the only suffix is ':view' (one value per view)")
            if mode == "view" and not param.per_view:
                raise ValueError(f"parameter {name!r} takes one value, not one per view: drop ':view'")
            if any(s.name == name for s in specs):
                raise ValueError(f"parameter {name!r} is given twice")
            width = param.width(dim)
            specs.append(ParamSpec(name, width, mode == "view", width * (views if mode == "view" else 1)))
        self.user_size = sum(s.count for s in specs)
        if pose:  # a rigid motion of the object: the joint problem's gauge, estimated alongside (see POSE)
            specs += [ParamSpec(n, POSE_TABLE[n].width(dim), False, POSE_TABLE[n].width(dim)) for n in POSE]
        self.specs = specs
        self.size = sum(s.count for s in specs)
        init = dict(init or {})
        unknown = sorted(set(init) - {s.name for s in specs})
        if unknown:
            raise ValueError(f"init names parameter(s) {unknown} that are not being calibrated")
        theta0 = []
        for s in specs:
            default = _row(s.name).nominal
            value = np.asarray(init.get(s.name, default), dtype=np.float64)
            n = views if s.per_view else 1
            try:
                rows = np.broadcast_to(value.reshape(-1, s.width) if value.size > 1 else value, (n, s.width))
            except ValueError:
                raise ValueError(
                    f"init[{s.name!r}] must be one value or {n} rows of {s.width}, got shape {value.shape}"
                ) from None
            theta0.append(np.ascontiguousarray(rows.T).reshape(-1))
        self.theta0 = np.concatenate(theta0 + [np.zeros(s.count) for s in specs[len(theta0) :]])
        pixel = float(np.mean(np.linalg.norm(np.asarray(pg.det_u), axis=1)))
        if pg.beam == "cone":
            src, det = np.asarray(pg.src), np.asarray(pg.det)
            sod = float(np.mean(np.linalg.norm(src, axis=1)))
            magnification = float(np.mean(np.linalg.norm(det - src, axis=1))) / max(sod, 1e-12)
        else:
            magnification = 1.0
        self.pixel = pixel
        self.magnification = magnification
        cols = pg.det_shape[-1]
        scales = [np.full(s.count, _row(s.name).typical_scale(pixel, cols, magnification)) for s in specs]
        self.scale = np.concatenate(scales)

    @property
    def num_views(self) -> int:
        return self.pg.num_views

    @property
    def views_independent(self) -> bool:
        """True: per-view parameters only move their own view (block-diagonal Jacobian)."""
        return True

    def split(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """``theta`` as ``{name: (n, width)}`` rows (``n`` = 1 or the number of views)."""
        out, k = {}, 0
        for s in self.specs:
            n = self.num_views if s.per_view else 1
            out[s.name] = _rows(theta[k : k + s.count], n, s.width)
            k += s.count
        return out

    def public(self, theta: np.ndarray) -> dict[str, Any]:
        """``{name: float | list}``: the values as :meth:`drct.ProjectionGeometry.perturb` takes them."""
        out: dict[str, Any] = {}
        for name, rows in self.split(theta).items():
            spec = next(s for s in self.specs if s.name == name)
            if name in POSE:
                continue
            if spec.per_view:
                out[name] = rows[:, 0].tolist() if spec.width == 1 else rows.tolist()
            else:
                out[name] = float(rows[0, 0]) if spec.width == 1 else rows[0].tolist()
        return out

    def _apply(self, values: dict[str, Any]) -> ProjectionGeometry:
        pg = self.pg.perturb(**{k: v for k, v in values.items() if k not in POSE})
        if "pose_shift" in values:
            pg = pg.perturb(motion_shift=values["pose_shift"], motion_rotation=values["pose_rotation"])
        return pg

    def geometry(self, theta: np.ndarray, seed: np.ndarray | None = None) -> ProjectionGeometry:
        """The geometry at ``theta``; with ``seed`` (a tangent of theta) its vectors carry forward-mode AD."""
        t = types("float64")
        seeds = self.split(seed) if seed is not None else {}
        kwargs = {
            name: as_drjit(rows, t, grad=seed is not None, seed=seeds.get(name))
            for name, rows in self.split(theta).items()
        }
        return self._apply(kwargs)

    def geometry_reverse(self, theta: np.ndarray) -> tuple[ProjectionGeometry, dict[str, Any]]:
        """The geometry and the grad-enabled Dr.Jit leaves (for reverse mode) keyed by name."""
        t = types("float64")
        leaves = {name: as_drjit(rows, t, grad=True) for name, rows in self.split(theta).items()}
        return self._apply(leaves), leaves

    def gradient(self, leaves: dict[str, Any]) -> np.ndarray:
        """Flat gradient from the leaves of :meth:`geometry_reverse` after ``dr.backward``."""
        parts = []
        for s in self.specs:
            g = dr.grad(leaves[s.name])
            cols = [np.asarray(g.numpy())] if s.width == 1 else [np.asarray(c.numpy()) for c in g]
            n = self.num_views if s.per_view else 1
            parts.append(np.concatenate([np.broadcast_to(c.reshape(-1), (n,)) for c in cols]))
        return np.concatenate(parts)

    def with_geometry(self, pg: ProjectionGeometry) -> PerturbModel:
        """The same unknowns on another nominal geometry with the same views (a coarser detector)."""
        other = object.__new__(PerturbModel)
        other.__dict__.update(self.__dict__)
        other.pg = pg
        return other

    def gauge_geometry(self, theta: np.ndarray, seed_shift: np.ndarray | None, seed_rot: np.ndarray | None) -> Any:
        """The geometry at ``theta`` moved by a rigid object motion whose tangent is given (gauge directions)."""
        t = types("float64")
        dim = self.pg.ndim
        shift = as_drjit(np.zeros((1, dim)), t, True, None if seed_shift is None else seed_shift.reshape(1, dim))
        width = 3 if dim == 3 else 1
        rot = as_drjit(np.zeros((1, width)), t, True, None if seed_rot is None else seed_rot.reshape(1, width))
        kwargs = {name: as_drjit(rows, t) for name, rows in self.split(theta).items()}
        return self._apply(kwargs).perturb(motion_shift=shift, motion_rotation=rot)

    def nominal_geometry(self) -> ProjectionGeometry:
        return self.pg

    def pose(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The estimated rigid object motion ``(shift (mm), rotation (rad))``, or None without a pose."""
        values = self.split(theta)
        if "pose_shift" not in values:
            return None
        return values["pose_shift"][0], values["pose_rotation"][0]

    def final_geometry(self, theta: np.ndarray, pose: bool = True) -> ProjectionGeometry:
        """The geometry at ``theta`` with plain numpy vectors; ``pose=False`` leaves out the object pose."""
        moved = self.pg.perturb(**self.public(theta))
        values = self.split(theta)
        if pose and "pose_shift" in values:
            rot = values["pose_rotation"][0]
            moved = moved.perturb(motion_shift=values["pose_shift"][0], motion_rotation=rot if rot.size > 1 else rot[0])
        rows = moved.to_vectors()
        from ..geometry.factories import from_vectors

        return from_vectors(rows, cast(Any, moved.det_shape), moved.beam, moved.curved)


class EndpointModel:
    """Lines between detector elements grouped in modules; each module may be shifted (PET-like rings).

    Line ``i`` runs from element ``a[i]`` (in module ``module_a[i]``) to ``b[i]`` (in ``module_b[i]``). The
    unknowns are one shift vector per module (``"module_shift"``, mm), stored component-major in ``theta``.

    Example:
        >>> import numpy as np
        >>> from drct.calibration.model import EndpointModel
        >>> m = EndpointModel(np.array([[-50.0, 0.0]]), np.array([[50.0, 0.0]]), [0], [1], 2)
        >>> m.size
        4
    """

    def __init__(self, a: Any, b: Any, module_a: Any, module_b: Any, modules: int) -> None:
        self.a = np.asarray(a, dtype=np.float64)
        self.b = np.asarray(b, dtype=np.float64)
        if self.a.ndim != 2 or self.a.shape != self.b.shape or self.a.shape[1] not in (2, 3):
            raise ValueError(f"a and b must both be (n, 2) or (n, 3) points, got {self.a.shape} and {self.b.shape}")
        self.module_a = np.asarray(module_a, dtype=np.uint32).reshape(-1)
        self.module_b = np.asarray(module_b, dtype=np.uint32).reshape(-1)
        n = self.a.shape[0]
        if self.module_a.size != n or self.module_b.size != n:
            raise ValueError(f"module_a and module_b need one entry per line ({n}), got {self.module_a.size}")
        if max(self.module_a.max(), self.module_b.max()) >= modules:
            raise ValueError(f"module indices must be < modules ({modules})")
        self.modules = int(modules)
        dim = self.a.shape[1]
        self.dim = dim
        self.specs = [ParamSpec("module_shift", dim * modules, False, dim * modules)]
        self.size = dim * modules
        self.user_size = self.size
        self.theta0 = np.zeros(self.size)
        steps = np.linalg.norm(np.diff(self.a, axis=0), axis=1)
        steps = steps[steps > 0]
        self.pixel = float(np.median(steps)) if steps.size else 1.0  # about one element's pitch
        self.magnification = 1.0
        self.scale = np.full(self.size, self.pixel)
        self.num_views = 1

    views_independent = False

    def split(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        return {"module_shift": theta.reshape(self.dim, self.modules).T.copy()}

    def public(self, theta: np.ndarray) -> dict[str, Any]:
        return {"module_shift": self.split(theta)["module_shift"].tolist()}

    def _lines(self, shift: list[Any], t: Any) -> RayGeometry:
        mod = drjit_module(t.backend)
        ia, ib = upload(t.UInt, self.module_a), upload(t.UInt, self.module_b)
        pa = [upload(t.Float64, self.a[:, k]) + dr.gather(t.Float64, shift[k], ia) for k in range(self.dim)]
        pb = [upload(t.Float64, self.b[:, k]) + dr.gather(t.Float64, shift[k], ib) for k in range(self.dim)]
        vec = mod.Array2f64 if self.dim == 2 else mod.Array3f64
        return RayGeometry(vec(*pa), vec(*[q - p for p, q in zip(pa, pb, strict=True)]))

    def _shift(self, theta: np.ndarray, seed: np.ndarray | None, t: Any) -> list[Any]:
        rows = self.split(theta)["module_shift"]
        seeds = None if seed is None else self.split(seed)["module_shift"]
        out = []
        for k in range(self.dim):
            c = upload(t.Float64, rows[:, k])
            if seed is not None:
                dr.enable_grad(c)
                dr.set_grad(c, upload(t.Float64, seeds[:, k]))  # type: ignore[index]
            out.append(c)
        return out

    def geometry(self, theta: np.ndarray, seed: np.ndarray | None = None) -> RayGeometry:
        t = types("float64")
        return self._lines(self._shift(theta, seed, t), t)

    def geometry_reverse(self, theta: np.ndarray) -> tuple[RayGeometry, dict[str, Any]]:
        t = types("float64")
        shift = self._shift(theta, None, t)
        dr.enable_grad(*shift)
        return self._lines(shift, t), {"module_shift": shift}

    def gradient(self, leaves: dict[str, Any]) -> np.ndarray:
        return np.concatenate([np.asarray(dr.grad(c).numpy()) for c in leaves["module_shift"]])

    def with_geometry(self, pg: Any) -> EndpointModel:
        return self

    def gauge_geometry(self, theta: np.ndarray, seed_shift: np.ndarray | None, seed_rot: np.ndarray | None) -> Any:
        """Lines moved by a rigid motion of the object (the inverse motion of the scanner), with tangents."""
        t = types("float64")
        lines = self._lines(self._shift(theta, None, t), t)
        dim = self.dim
        tshift = [t.Float64(0.0) for _ in range(dim)]
        angles = [t.Float64(0.0) for _ in range(3 if dim == 3 else 1)]
        dr.enable_grad(*tshift, *angles)
        for c, s in zip(tshift, np.zeros(dim) if seed_shift is None else seed_shift.reshape(-1), strict=True):
            dr.set_grad(c, float(s))
        for c, s in zip(angles, np.zeros(len(angles)) if seed_rot is None else seed_rot.reshape(-1), strict=True):
            dr.set_grad(c, float(s))
        o = [lines.origins[k] - tshift[k] for k in range(dim)]
        d = [lines.directions[k] for k in range(dim)]
        # small-angle generator is enough for the tangent: x -> x - w × x (inverse rotation)
        if dim == 2:
            w = angles[0]
            o = [o[0] + w * o[1], o[1] - w * o[0]]
            d = [d[0] + w * d[1], d[1] - w * d[0]]
        else:

            def turn(v: list[Any]) -> list[Any]:
                wx, wy, wz = angles
                return [v[0] - (wy * v[2] - wz * v[1]), v[1] - (wz * v[0] - wx * v[2]), v[2] - (wx * v[1] - wy * v[0])]

            o, d = turn(o), turn(d)
        mod = drjit_module(t.backend)
        vec = mod.Array2f64 if dim == 2 else mod.Array3f64
        return RayGeometry(vec(*o), vec(*d))

    def pose(self, theta: np.ndarray) -> None:
        return None

    def centres(self) -> np.ndarray:
        """``(modules, ndim)`` mean position of each module's elements."""
        points = np.concatenate([self.a, self.b])
        labels = np.concatenate([self.module_a, self.module_b])
        return np.array([points[labels == k].mean(0) for k in range(self.modules)])

    def without_rigid_motion(self, shifts: np.ndarray) -> np.ndarray:
        """``(modules, ndim)`` shifts minus their best-fitting rigid motion of the whole ring (small angles):
        the part of a module misalignment that the data can tell from a motion of the object (2D and 3D)."""
        c = self.centres()
        dim = self.dim
        cols = [np.eye(dim)[k][None, :].repeat(self.modules, 0).reshape(-1) for k in range(dim)]
        axes = [np.array([0.0, 0.0, 1.0])] if dim == 2 else list(np.eye(3))
        for w in axes:
            turn = (
                np.cross(w, np.pad(c, ((0, 0), (0, 3 - dim))))[:, :dim]
                if dim == 3
                else np.stack([-c[:, 1], c[:, 0]], 1)
            )
            cols.append(turn.reshape(-1))
        M = np.stack(cols, axis=1)
        flat = np.asarray(shifts, dtype=np.float64).reshape(-1)
        coef, *_ = np.linalg.lstsq(M, flat, rcond=None)
        return (flat - M @ coef).reshape(self.modules, dim)

    def nominal_geometry(self) -> RayGeometry:
        return RayGeometry(self.a, self.b - self.a)

    def final_geometry(self, theta: np.ndarray, pose: bool = True) -> RayGeometry:
        rows = self.split(theta)["module_shift"]
        a = self.a + rows[self.module_a]
        b = self.b + rows[self.module_b]
        return RayGeometry(a, b - a)


def _conforms(perturb: PerturbModel, endpoint: EndpointModel) -> tuple[GeometryModel, GeometryModel]:
    """Never called: pyright checks here that both models satisfy :class:`GeometryModel`."""
    return perturb, endpoint
