"""Checks of torch inputs and the geometry tensors of :mod:`drct.torch` (misalignment parameters as tensors)."""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from typing import Any, NamedTuple

import drjit as dr
import numpy as np
import torch

from ..backend import drjit_module
from ..geometry.parameters import PARAMETERS, TABLE, check_all
from ..geometry.projection import ProjectionGeometry
from ..projector import Projector

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
NAMES = (*PARAMETERS, "angle_offset", "vectors")  # pg.perturb parameters, angle offsets, whole vector rows


# ---- checks ---------------------------------------------------------------------------------------------------
def check_projector(A: Any) -> Projector:
    if not isinstance(A, Projector):
        raise TypeError(f"A must be a drct.Projector, got {type(A).__name__}")
    return A


class ProjectorInfo(NamedTuple):
    """What the torch front end reads of a projector, as plain values: under ``torch.compile`` they are constants
    of the graph (:func:`projector_info`), so dynamo never traces drct's geometry code."""

    domain_shape: tuple[int, ...]
    range_shape: tuple[int, ...]
    batch: int | None
    dtype: str
    backend: str
    detector: bool  # a detector geometry, which has misalignment parameters (not a ray list)
    ndim: int
    views: int
    geometry: str  # repr(A.pg), for messages


_INFO: weakref.WeakKeyDictionary[Projector, ProjectorInfo] = weakref.WeakKeyDictionary()


@torch._dynamo.assume_constant_result
def projector_info(A: Any) -> ProjectorInfo:
    """:class:`ProjectorInfo` of the projector ``A`` (a TypeError for anything else), cached per projector."""
    A = check_projector(A)
    if A not in _INFO:
        _INFO[A] = _info(A)
    return _INFO[A]


def _info(A: Projector) -> ProjectorInfo:
    pg = A.pg
    return ProjectorInfo(
        tuple(A.domain_shape),
        tuple(A.range_shape),
        A.batch,
        A.dtype,
        A.backend,
        isinstance(pg, ProjectionGeometry),
        pg.ndim,
        pg.num_views,
        repr(pg),
    )


@torch._dynamo.assume_constant_result
def check_parameters(A: Projector, names: tuple[str, ...]) -> bool:
    """True if the misalignment parameters ``names`` apply to ``A``'s geometry, else the ValueError of
    :func:`drct.geometry.parameters.check_all`."""
    check_all(list(names), A.pg)
    return True


def device_type(A: Projector | ProjectorInfo) -> str:
    return "cuda" if A.backend == "cuda" else "cpu"


def check_tensor(value: Any, name: str, A: Projector | ProjectorInfo, dtype_must_match: bool = True) -> torch.Tensor:
    """``value`` if it is a float32/float64 torch tensor on the device of ``A``'s backend, else a clear error."""
    dtype, backend = kind_of(value, name)
    if dtype_must_match and dtype != A.dtype:
        raise TypeError(
            f"{name} has dtype {value.dtype}, but the projector computes in {A.dtype}; convert the tensor "
            f"(.to(torch.{A.dtype})) or build the projector with dtype={dtype!r}"
        )
    if backend != A.backend:
        device = device_type(A)
        raise ValueError(
            f"{name} is on torch device {str(value.device)!r}, but the projector runs on Dr.Jit's {A.backend!r} "
            f"backend, which takes {device!r} tensors; move the tensor (.to({device!r})) or build the projector "
            f"with backend={backend!r}"
        )
    return value


def kind_of(value: Any, name: str) -> tuple[str, str]:
    """The ``(dtype, backend)`` drct computes ``value`` in: float32/float64, LLVM for CPU and CUDA for CUDA tensors
    (a clear error for anything else)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"{name} has dtype {value.dtype}; drct.torch computes in torch.float32 or torch.float64 (convert it "
            "with .float() or .double())"
        )
    backend = {"cpu": "llvm", "cuda": "cuda"}.get(value.device.type)
    if backend is None:
        raise ValueError(
            f"{name} is on torch device {str(value.device)!r}; drct.torch runs on 'cpu' tensors (Dr.Jit's LLVM "
            "backend) and 'cuda' tensors (its CUDA backend)"
        )
    return str(value.dtype).replace("torch.", ""), backend


def projector_options(A: Projector) -> dict[str, Any]:
    """What rebuilds ``A``: its geometries, basis and options (:class:`drct.Projector`'s arguments)."""
    engine = A._engine
    return {
        "vg": A.vg,
        "pg": A.pg,
        "basis": A.basis,
        "dtype": A.dtype,
        "backend": A.backend,
        "chunk_rays": engine.chunk_rays,
        "batch": A.batch,
        "deterministic": engine.deterministic,
    }


def rebuild(options: Mapping[str, Any], **changes: Any) -> Projector:
    """The projector of :func:`projector_options`, with ``changes`` (e.g. another ``dtype`` or ``backend``)."""
    return Projector(**{**options, **changes})


def split_batch(value: torch.Tensor, name: str, core: tuple[int, ...]) -> tuple[int, ...]:
    """The leading batch shape of ``value`` whose trailing shape must be ``core``."""
    shape = tuple(value.shape)
    k = len(core)
    if len(shape) < k or shape[len(shape) - k :] != core:
        raise ValueError(f"{name} must have shape (*batch, {', '.join(map(str, core))}), got {shape}")
    return shape[: len(shape) - k]


# ---- geometry tensors -----------------------------------------------------------------------------------------
def _width(name: str, ndim: int) -> int:
    if name == "vectors":  # src, det, det_u[, det_v] per view, as in pg.to_vectors()
        return 3 * ndim if ndim == 2 else 4 * ndim
    if name == "angle_offset":
        return 1
    return TABLE[name].width(ndim)


def _angle_offset(given: dict[str, Any], ndim: int, device: str) -> dict[str, Any]:
    """``angle_offset`` (the scanner turned further by that angle about the z axis) as ``motion_rotation``.

    Turning the scanner by ``+a`` is turning the object by ``-a``; in 3D the turn is about z.
    """
    given = dict(given)
    if "motion_rotation" in given:
        raise ValueError("give angle_offset or motion_rotation, not both (angle_offset is a rotation about z)")
    value = given.pop("angle_offset")
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(np.asarray(value, dtype=np.float64), device=device)
    turn = -value
    if ndim == 3:
        zero = torch.zeros_like(turn)
        turn = torch.stack([zero, zero, turn], dim=-1)
    given["motion_rotation"] = turn
    return given


class GeometryTensors:
    """Validated geometry tensors, laid out for :meth:`drct.ProjectionGeometry.perturb`.

    ``values[name]`` is a list of flat tensors, one per component, of length 1, ``V`` (shared by the batch) or
    ``N * V`` (per sample, ``N`` = the flattened batch), and ``samples`` is ``N`` when any parameter is given
    per sample, else None.
    """

    def __init__(self, A: Projector, geometry: Mapping[str, Any], batch: tuple[int, ...]) -> None:
        self.values: dict[str, list[torch.Tensor]] = {}
        self.samples: int | None = None
        given = {k: v for k, v in geometry.items() if v is not None}
        if not given:
            return
        info = projector_info(A)
        if not info.detector:
            raise ValueError(
                f"geometry tensors {sorted(given)} need a detector geometry; {info.geometry} is a ray list and has "
                "no misalignment parameters"
            )
        unknown = sorted(set(given) - set(NAMES))
        if unknown:
            raise ValueError(f"unknown geometry parameter(s) {unknown}; expected some of {list(NAMES)}")
        check_parameters(A, tuple(sorted(set(given) & set(PARAMETERS))))  # the parameters that apply to A.pg
        if "angle_offset" in given:
            given = _angle_offset(given, info.ndim, device_type(info))
        if info.batch is not None:
            raise ValueError(
                "geometry tensors need a projector of one (unbatched) geometry; this one already stacks "
                f"{info.batch} samples (batch={info.batch})"
            )
        views, ndim = info.views, info.ndim
        device = device_type(info)
        shaped: dict[str, tuple[torch.Tensor, str]] = {}
        for name, value in given.items():
            if not isinstance(value, torch.Tensor):
                try:
                    value = torch.as_tensor(np.asarray(value, dtype=np.float64), device=device)
                except (TypeError, ValueError) as err:
                    raise TypeError(f"{name} must be a number or a torch tensor, got {type(value).__name__}") from err
            value = check_tensor(value, name, info, dtype_must_match=False)
            width = _width(name, ndim)
            shape = tuple(value.shape)
            if width > 1:
                if not shape or shape[-1] != width:
                    raise ValueError(
                        f"{name} needs {width} components in its last axis (shape (..., {width})), got {shape}"
                    )
                shape = shape[:-1]
            layout = self._layout(name, shape, views, batch, width)
            if name == "vectors" and layout not in ("view", "sample-view"):
                raise ValueError(f"vectors must have shape ({views}, {width}) or (B, {views}, {width}), got {shape}")
            if layout.startswith("sample"):
                self.samples = math.prod(batch)
            shaped[name] = (value, layout)
        for name, (value, layout) in shaped.items():
            self.values[name] = self._flatten(value, layout, views, batch, _width(name, ndim))

    @staticmethod
    def _layout(name: str, shape: tuple[int, ...], views: int, batch: tuple[int, ...], width: int) -> str:
        b = batch[0] if batch else None
        if shape == ():
            return "scalar"
        if shape == (views,):
            return "view"
        if b is not None and shape in ((b,), (b, 1)):
            return "sample"
        if b is not None and shape == (b, views):
            return "sample-view"
        tail = "" if width == 1 else f" + ({width},)"
        expected = f"(), ({views},)" + (f", ({b},), ({b}, 1) or ({b}, {views})" if b is not None else "")
        hint = "" if batch else " (per-sample values need a leading batch axis on the input)"
        raise ValueError(
            f"{name} has shape {shape + (() if width == 1 else (width,))}; expected one of {expected}{tail}: "
            f"one value, one per view ({views} views) or per sample of the batch axis{hint}"
        )

    def _flatten(
        self, value: torch.Tensor, layout: str, views: int, batch: tuple[int, ...], width: int
    ) -> list[torch.Tensor]:
        value = value.reshape(*value.shape[: value.ndim - (width > 1)], width)  # (..., width)
        if self.samples is not None:  # every parameter becomes (N * V, width), sample-major
            b = batch[0]
            rest = self.samples // b
            if layout == "scalar":
                value = value.reshape(1, 1, 1, width).expand(b, rest, views, width)
            elif layout == "view":
                value = value.reshape(1, 1, views, width).expand(b, rest, views, width)
            elif layout == "sample":
                value = value.reshape(b, 1, 1, width).expand(b, rest, views, width)
            else:
                value = value.reshape(b, 1, views, width).expand(b, rest, views, width)
        value = value.reshape(-1, width)
        return [value[:, i].contiguous() for i in range(width)]


def _stacked(pg: ProjectionGeometry, samples: int) -> ProjectionGeometry:
    """``pg`` repeated ``samples`` times, sample-major (views ``b*V .. b*V+V-1`` belong to sample ``b``)."""
    views = pg.num_views

    def tile(value: Any) -> Any:
        if value is None:
            return None
        if dr.is_array_v(value):  # keep the AD graph of Dr.Jit geometry vectors
            index = dr.arange(dr.uint32_array_t(dr.leaf_t(value)), samples * views) % views
            return type(value)(*[dr.gather(type(c), c, index) for c in value])
        return np.tile(np.asarray(value), (samples, 1))

    return ProjectionGeometry(
        pg.beam, tile(pg.src), tile(pg.det), tile(pg.det_u), tile(pg.det_v), pg.det_shape, pg.curved
    )


def operator(A: Projector, params: dict[str, list[Any]], samples: int | None) -> Projector:
    """The projector of ``A``'s geometry moved by ``params`` (name -> Dr.Jit Float64 components)."""
    if not params:
        return A
    pg = A.pg
    assert isinstance(pg, ProjectionGeometry)
    mod = drjit_module(A.backend)
    vec = mod.Array2f64 if pg.ndim == 2 else mod.Array3f64
    moved: dict[str, Any] = {}
    for name, comps in params.items():
        if name != "vectors":
            moved[name] = comps[0] if len(comps) == 1 else (mod.Array2f64 if len(comps) == 2 else mod.Array3f64)(*comps)
    if "vectors" in params:  # the whole per-view geometry, already laid out for every sample
        c, d = params["vectors"], pg.ndim
        rows = [vec(*c[i : i + d]) for i in range(0, len(c), d)]
        det_v = rows[3] if d == 3 else None
        base = ProjectionGeometry(pg.beam, rows[0], rows[1], rows[2], det_v, pg.det_shape, pg.curved)
    else:
        base = pg if samples is None else _stacked(pg, samples)
    kwargs: dict[str, Any] = {"basis": A.basis, "dtype": A.dtype, "backend": A.backend}
    if samples is not None:
        kwargs["batch"] = samples
    return Projector(A.vg, base.perturb(**moved) if moved else base, **kwargs)
