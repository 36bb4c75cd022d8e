"""A named misalignment model: small changes of a nominal geometry, differentiable in every parameter.

Each parameter is optional (``None`` = nominal) and is a number, or one value per view (numpy, list or a Dr.Jit
array — give a Dr.Jit ``Float64`` with gradients enabled to differentiate with respect to it). Lengths are in mm,
angles in radians. Per view, the detector frame is ``û = det_u/|det_u|``, ``v̂ = det_v/|det_v|`` and its normal
``n̂``; the central ray runs along ``ĉ = (det - src)/|det - src|`` (cone) or the ray direction (parallel).
They are applied in this order:

=================================  =========================================================================
``det_shift_u``, ``det_shift_v``   move the detector along ``û`` / ``v̂``
``det_roll``, ``det_pitch``,       turn the detector about its centre: about ``n̂`` (in-plane), ``û`` and
``det_yaw``                        ``v̂`` (2D: ``det_yaw`` only, the tilt of the detector line)
``pixel_scale``                    multiply the pixel pitch (``det_u``, ``det_v``) by this factor
``src_shift_u``, ``src_shift_v``   move the source along ``û`` / ``v̂`` (cone/fan)
``src_orig_delta``                 move the source away from the origin along ``-ĉ`` (cone/fan)
``src_det_delta``                  move the detector away from the source along ``ĉ``
``cor_offset``                     move source and detector along ``û``: a centre-of-rotation offset
``axis_tilt``, ``axis_tilt_beam``  tilt the rotation axis within the detector plane (a turn of source and
                                   detector about the central ray through the origin) and towards the
                                   source (a turn about ``û`` through the origin); 3D only
``motion_rotation``,               per-view rigid motion of the object, ``p -> R p + t`` with
``motion_shift``                   ``R = Rz Ry Rx`` from ``(rx, ry, rz)`` (2D: one angle) and ``t`` (mm)
=================================  =========================================================================
"""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np

from ..backend import drjit_module, types, upload
from ..errors import require_finite
from ._checks import refuse_gradients
from .detector import cross, dot
from .parameters import PARAMETERS as PARAMETERS
from .parameters import TABLE, check_all
from .projection import ProjectionGeometry, is_drjit

Vec = list[Any]

# the table of parameters lives in .parameters; these names stay for compatibility
ONLY_3D = tuple(p.name for p in TABLE.values() if p.only_3d)
ONLY_CONE = tuple(p.name for p in TABLE.values() if p.needs_source)


def _unit(a: Vec) -> Vec:
    inv = dr.rsqrt(dot(a, a))
    return [x * inv for x in a]


def _axpy(alpha: Any, x: Vec, y: Vec) -> Vec:
    return [alpha * a + b for a, b in zip(x, y, strict=True)]


def _rotate(v: Vec, axis: Vec | None, angle: Any) -> Vec:
    """Rotate ``v`` by ``angle`` about the unit ``axis`` (Rodrigues); in 2D (``axis`` None) about +z."""
    s, c = dr.sincos(angle)
    if axis is None:
        return [c * v[0] - s * v[1], s * v[0] + c * v[1]]
    k_cross_v = cross(axis, v)
    along = dot(axis, v) * (1 - c)
    return [c * a + s * b + along * k for a, b, k in zip(v, k_cross_v, axis, strict=True)]


def _value(value: Any, name: str, views: int, t: Any, width: int) -> list[Any]:
    """A parameter as ``width`` Float64 components, each with one value or one per view."""
    if is_drjit(value):
        if not dr.is_float_v(value):
            raise TypeError(f"{name} must be a floating-point Dr.Jit array (gradients need floats), got {type(value)}")
        comps = [t.Float64(c) for c in value] if width > 1 else [t.Float64(value)]
        if (width > 1 and dr.size_v(value) != width) or (width == 1 and dr.depth_v(value) != 1):
            raise ValueError(f"{name} must have {width} component(s) per view, got {type(value).__name__}")
    else:
        refuse_gradients(value, name)
        arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value, dtype=np.float64)
        require_finite(arr, name)
        arr = arr.reshape(-1, width)
        comps = [upload(t.Float64, arr[:, i]) for i in range(width)]  # inputs, not literals: no recompiles
    for c in comps:
        if dr.width(c) not in (1, views):
            raise ValueError(f"{name} must have one value or one per view ({views} views), got {dr.width(c)}")
    # one value per view from here on: kernels of the geometry (and of its AD) never mix widths
    return [c if dr.width(c) == views else dr.gather(t.Float64, c, dr.zeros(t.UInt, views)) for c in comps]


def perturb(pg: ProjectionGeometry, **params: Any) -> ProjectionGeometry:
    """A copy of ``pg`` moved by the misalignment parameters of this module, with Dr.Jit vector arrays that
    carry the parameters' gradients.

    Example:
        >>> import numpy as np, drjit as dr, drct as ct
        >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 90, endpoint=False), (32, 48), 1.0, 200.0, 400.0)
        >>> shift = dr.llvm.ad.Float64(0.5)
        >>> dr.enable_grad(shift)
        >>> moved = pg.perturb(det_shift_u=shift, det_roll=0.01)
        >>> bool(dr.grad_enabled(moved.det))
        True
    """
    if not isinstance(pg, ProjectionGeometry):
        raise TypeError(f"perturb needs a detector geometry (ct.parallel, ct.cone, ...), got {type(pg).__name__}")
    check_all(sorted(k for k in params if k not in TABLE), pg)  # unknown names, even if None
    given = {k: v for k, v in params.items() if v is not None}
    check_all(sorted(given), pg)  # names that do not apply to this geometry

    backend = "cuda" if any(is_drjit(v) and dr.backend_v(v) == dr.JitBackend.CUDA for v in given.values()) else None
    t = types("float64", backend)
    views, dim = pg.num_views, pg.ndim
    mod = drjit_module(t.backend)

    def field(value: Any) -> Vec:
        if is_drjit(value):
            return [t.Float64(c) for c in value]
        return [upload(t.Float64, c) for c in np.asarray(value).T]

    src, det, u, v = field(pg.src), field(pg.det), field(pg.det_u), None if pg.det_v is None else field(pg.det_v)
    widths = {k: TABLE[k].width(dim) for k in given}
    values = {k: _value(val, k, views, t, widths[k]) for k, val in given.items()}
    p: dict[str, Any] = {k: c if widths[k] > 1 else c[0] for k, c in values.items()}
    u_hat = _unit(u)
    v_hat = _unit(v) if v is not None else None
    normal = _unit(cross(u_hat, v_hat)) if v_hat is not None else [-u_hat[1], u_hat[0]]
    central = _unit([d - s for d, s in zip(det, src, strict=True)]) if pg.beam == "cone" else _unit(src)

    if "det_shift_u" in p:
        det = _axpy(p["det_shift_u"], u_hat, det)
    if "det_shift_v" in p and v_hat is not None:
        det = _axpy(p["det_shift_v"], v_hat, det)
    for name, axis in (("det_roll", normal), ("det_pitch", u_hat), ("det_yaw", v_hat)):
        if name in p:
            u = _rotate(u, axis, p[name])
            v = _rotate(v, axis, p[name]) if v is not None else None
    if "pixel_scale" in p:
        u = [p["pixel_scale"] * c for c in u]
        v = [p["pixel_scale"] * c for c in v] if v is not None else None
    if "src_shift_u" in p:
        src = _axpy(p["src_shift_u"], u_hat, src)
    if "src_shift_v" in p and v_hat is not None:
        src = _axpy(p["src_shift_v"], v_hat, src)
    if "src_orig_delta" in p:
        src = _axpy(-p["src_orig_delta"], central, src)
    if "src_det_delta" in p:
        det = _axpy(p["src_det_delta"], central, det)
    if "cor_offset" in p:
        det = _axpy(p["cor_offset"], u_hat, det)
        if pg.beam == "cone":
            src = _axpy(p["cor_offset"], u_hat, src)
    for name, axis in (("axis_tilt", central), ("axis_tilt_beam", u_hat)):
        if name in p:  # about an axis through the origin: points and directions turn alike
            src, det = _rotate(src, axis, p[name]), _rotate(det, axis, p[name])
            u = _rotate(u, axis, p[name])
            v = _rotate(v, axis, p[name]) if v is not None else None
    if "motion_rotation" in p or "motion_shift" in p:
        src, det, u, v = _move_object(pg, src, det, u, v, p.get("motion_rotation"), p.get("motion_shift"))

    vec = mod.Array2f64 if dim == 2 else mod.Array3f64
    dr.eval(src, det, u, v)  # one kernel for the whole geometry
    return ProjectionGeometry(
        pg.beam, vec(*src), vec(*det), vec(*u), None if v is None else vec(*v), pg.det_shape, pg.curved
    )


def _move_object(pg: ProjectionGeometry, src: Vec, det: Vec, u: Vec, v: Vec | None, rotation: Any, shift: Any):
    """The object moving by ``p -> R p + t`` is the scanner moving by the inverse: ``q -> R^T (q - t)``."""
    return (
        undo_object_motion(src, rotation, shift, pg.beam == "cone"),
        undo_object_motion(det, rotation, shift, True),
        undo_object_motion(u, rotation, shift, False),
        None if v is None else undo_object_motion(v, rotation, shift, False),
    )


def undo_object_motion(x: Vec, rotation: Any, shift: Any, is_point: bool) -> Vec:
    """``R^T (x - t)`` for a point, ``R^T x`` for a direction (``is_point=False``): the inverse of the object
    motion ``p -> R p + t`` of ``motion_rotation`` (one angle in 2D; ``(rx, ry, rz)`` with ``R = Rz Ry Rx`` in 3D)
    and ``motion_shift`` (either may be None). Components are Dr.Jit arrays or plain floats.

    Example:
        >>> import numpy as np
        >>> from drct.geometry.perturb import undo_object_motion
        >>> np.round(undo_object_motion([2.0, 1.0], np.pi / 2, [1.0, 1.0], True), 6).tolist()  # R^T (1, 0)
        [0.0, -1.0]
    """
    if is_point and shift is not None:
        x = [a - b for a, b in zip(x, shift, strict=True)]
    if rotation is None:
        return x
    if len(x) == 2:
        return _rotate(x, None, -rotation)
    rx, ry, rz = rotation  # R = Rz Ry Rx, so R^T = Rx^T Ry^T Rz^T: undo z first
    for angle, axis in ((rz, [0.0, 0.0, 1.0]), (ry, [0.0, 1.0, 0.0]), (rx, [1.0, 0.0, 0.0])):
        x = _rotate(x, axis, -angle)
    return x
