"""PyTorch layers: the projector ``A``, its adjoint ``A.T`` and FBP as differentiable torch operations.

Import it explicitly (nothing else in drct imports torch)::

    import drct as ct
    import drct.torch

Tensors cross into Dr.Jit without copies (DLPack, as ``drjit.wrap`` does; CPU tensors run on the LLVM backend,
CUDA tensors on the CUDA backend), and a ``torch.autograd.Function`` carries gradients to the volume, the
sinogram and the geometry:

* :func:`project` / :func:`backproject` and the modules :class:`Projection`, :class:`BackProjection` map
  ``(*batch, *A.domain_shape)`` to ``(*batch, *A.range_shape)`` and back, the whole batch in one launch.
* Geometry tensors are the misalignment parameters of :meth:`drct.ProjectionGeometry.perturb`
  (``det_shift_u``, ``det_roll``, ``cor_offset``, ``motion_rotation``, ...). Each is a number or a torch tensor
  (``requires_grad`` makes it learnable) of shape ``()`` (one value), ``(V,)`` (one per view), ``(B, 1)`` or
  ``(B,)`` (one per sample of the leading batch axis) or ``(B, V)`` (per sample and view); the vector-valued
  ``motion_shift`` (``ndim`` components) and 3D ``motion_rotation`` (3 components) add a trailing axis. A
  length that equals both ``V`` and ``B`` means per view; write ``(B, 1)`` for per sample.
* :class:`FBP` filters the projections in torch (``torch.fft``) with the weights and filters of
  :mod:`drct.recon.fbp` and backprojects with ``A.T``; ``learnable=True`` makes the filter's frequency response
  an ``nn.Parameter`` initialised from the chosen filter.

Example:
    >>> import numpy as np, torch, drct as ct
    >>> import drct.torch
    >>> vg = ct.VolumeGeometry((32, 32))
    >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 20, endpoint=False), 48), backend="llvm")
    >>> x = torch.rand(4, 32, 32, requires_grad=True)
    >>> shift = torch.zeros((), dtype=torch.float64, requires_grad=True)
    >>> y = ct.torch.project(x, A, det_shift_u=shift)
    >>> y.shape
    torch.Size([4, 20, 48])
    >>> y.square().sum().backward()
    >>> x.grad.shape, shift.grad.shape
    (torch.Size([4, 32, 32]), torch.Size([]))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import drjit as dr
import numpy as np
import torch
from torch import nn

from .backend import drjit_module
from .geometry.perturb import PARAMETERS
from .geometry.projection import ProjectionGeometry
from .projector import Projector

__all__ = ["FBP", "BackProjection", "Projection", "backproject", "project"]

_TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
NAMES = (*PARAMETERS, "angle_offset")  # the misalignment parameters of ``pg.perturb``, plus angle offsets


# ---- checks ---------------------------------------------------------------------------------------------------
def _check_projector(A: Any) -> Projector:
    if not isinstance(A, Projector):
        raise TypeError(f"A must be a drct.Projector, got {type(A).__name__}")
    return A


def _device_type(A: Projector) -> str:
    return "cuda" if A.backend == "cuda" else "cpu"


def _check_tensor(value: Any, name: str, A: Projector, dtype_must_match: bool = True) -> torch.Tensor:
    """``value`` if it is a float32/float64 torch tensor on the device of ``A``'s backend, else a clear error."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} has dtype {value.dtype}; expected torch.float32 or torch.float64")
    if dtype_must_match and value.dtype != _TORCH_DTYPES[A.dtype]:
        raise TypeError(
            f"{name} has dtype {value.dtype}, but the projector computes in {A.dtype}; convert the tensor "
            f"(.to(torch.{A.dtype})) or build the projector with dtype={str(value.dtype).replace('torch.', '')!r}"
        )
    device = _device_type(A)
    if value.device.type != device:
        raise ValueError(
            f"{name} is on torch device {str(value.device)!r}, but the projector runs on Dr.Jit's {A.backend!r} "
            f"backend, which takes {device!r} tensors; move the tensor (.to({device!r})) or build the projector "
            f"with backend={'cuda' if value.device.type == 'cuda' else 'llvm'!r}"
        )
    return value


def _split_batch(value: torch.Tensor, name: str, core: tuple[int, ...]) -> tuple[int, ...]:
    """The leading batch shape of ``value`` whose trailing shape must be ``core``."""
    shape = tuple(value.shape)
    k = len(core)
    if len(shape) < k or shape[len(shape) - k :] != core:
        raise ValueError(f"{name} must have shape (*batch, {', '.join(map(str, core))}), got {shape}")
    return shape[: len(shape) - k]


# ---- geometry tensors -----------------------------------------------------------------------------------------
def _width(name: str, ndim: int) -> int:
    if name == "motion_shift":
        return ndim
    if name == "motion_rotation" and ndim == 3:
        return 3
    return 1


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


class _Geometry:
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
        pg = A.pg
        if not isinstance(pg, ProjectionGeometry):
            raise ValueError(
                f"geometry tensors {sorted(given)} need a detector geometry; {pg!r} is a ray list and has no "
                "misalignment parameters"
            )
        unknown = sorted(set(given) - set(NAMES))
        if unknown:
            raise ValueError(f"unknown geometry parameter(s) {unknown}; expected some of {list(NAMES)}")
        if "angle_offset" in given:
            given = _angle_offset(given, pg.ndim, _device_type(A))
        if A.batch is not None:
            raise ValueError(
                "geometry tensors need a projector of one (unbatched) geometry; this one already stacks "
                f"{A.batch} samples (batch={A.batch})"
            )
        views = pg.num_views
        device = _device_type(A)
        shaped: dict[str, tuple[torch.Tensor, str]] = {}
        for name, value in given.items():
            if not isinstance(value, torch.Tensor):
                try:
                    value = torch.as_tensor(np.asarray(value, dtype=np.float64), device=device)
                except (TypeError, ValueError) as err:
                    raise TypeError(f"{name} must be a number or a torch tensor, got {type(value).__name__}") from err
            value = _check_tensor(value, name, A, dtype_must_match=False)
            width = _width(name, pg.ndim)
            shape = tuple(value.shape)
            if width > 1:
                if not shape or shape[-1] != width:
                    raise ValueError(
                        f"{name} needs {width} components in its last axis (shape (..., {width})), got {shape}"
                    )
                shape = shape[:-1]
            layout = self._layout(name, shape, views, batch, width)
            if layout.startswith("sample"):
                self.samples = math.prod(batch)
            shaped[name] = (value, layout)
        for name, (value, layout) in shaped.items():
            self.values[name] = self._flatten(value, layout, views, batch, _width(name, pg.ndim))

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


def _operator(A: Projector, params: dict[str, list[Any]], samples: int | None) -> Projector:
    """The projector of ``A``'s geometry moved by ``params`` (name -> Dr.Jit Float64 components)."""
    if not params:
        return A
    pg = A.pg
    assert isinstance(pg, ProjectionGeometry)
    mod = drjit_module(A.backend)
    moved: dict[str, Any] = {}
    for name, comps in params.items():
        moved[name] = comps[0] if len(comps) == 1 else (mod.Array2f64 if len(comps) == 2 else mod.Array3f64)(*comps)
    base = pg if samples is None else _stacked(pg, samples)
    kwargs: dict[str, Any] = {"basis": A.basis, "dtype": A.dtype, "backend": A.backend}
    if samples is not None:
        kwargs["batch"] = samples
    return Projector(A.vg, base.perturb(**moved), **kwargs)


# ---- the bridge -----------------------------------------------------------------------------------------------
class _Spec:
    """What one call computes: ``A`` or ``A.T``, with which geometry parameters laid out how."""

    def __init__(self, A: Projector, adjoint: bool, names: list[tuple[str, int]], samples: int | None) -> None:
        self.A, self.adjoint, self.names, self.samples = A, adjoint, names, samples
        self.backend = dr.JitBackend.CUDA if A.backend == "cuda" else dr.JitBackend.LLVM
        self.mod = drjit_module(A.backend)

    def transposed(self) -> _Spec:
        return _Spec(self.A, not self.adjoint, self.names, self.samples)

    def to_drjit(self, value: torch.Tensor) -> Any:
        """A torch tensor as a Dr.Jit tensor sharing its memory (DLPack; contiguous first)."""
        tensor = self.mod.TensorXf if value.dtype == torch.float32 else self.mod.TensorXf64
        return tensor(value.detach().contiguous())

    def parameters(self, comps: tuple[torch.Tensor, ...], grad: bool) -> tuple[dict[str, list[Any]], list[Any]]:
        """The flat geometry components as Dr.Jit Float64 arrays (gradient-enabled leaves when ``grad``)."""
        leaves = [self.mod.Float64(self.to_drjit(c).array) for c in comps]
        if grad:
            dr.enable_grad(leaves)
        params: dict[str, list[Any]] = {}
        it = iter(leaves)
        for name, width in self.names:
            params[name] = [next(it) for _ in range(width)]
        return params, leaves

    def run(self, op: Projector, values: Any) -> Any:
        return op.adjoint_tensor(values) if self.adjoint else op.forward_tensor(values)

    def sync_in(self, device: torch.device) -> None:
        """Before Dr.Jit reads torch memory: on CUDA, finish torch's pending work on it."""
        dr.detail.new_scope(self.backend)
        if device.type == "cuda":
            torch.cuda.current_stream(device).synchronize()

    def sync_out(self) -> None:
        """Before torch reads Dr.Jit memory: finish Dr.Jit's launches (asynchronous on both backends)."""
        dr.sync_thread()
        dr.detail.new_scope(self.backend)


class _Transform(torch.autograd.Function):
    """``A x`` or ``A.T y`` with gradients to the data and to flat geometry components.

    Not ``drjit.wrap``: its backward consumes the Dr.Jit graph, so a second backward through the same output
    (``retain_graph=True``, ``torch.autograd.gradcheck``) silently returns stale gradients. Here the gradient
    of the data is the transposed operator, itself a :class:`_Transform` (so it can be differentiated again),
    and geometry gradients rebuild a fresh Dr.Jit graph at each backward.
    """

    @staticmethod
    def forward(ctx: Any, spec: _Spec, data: torch.Tensor, *comps: torch.Tensor) -> torch.Tensor:
        spec.sync_in(data.device)
        params, _ = spec.parameters(comps, grad=False)
        op = _operator(spec.A, params, spec.samples)
        out = spec.run(op, spec.to_drjit(data))
        spec.sync_out()
        ctx.spec = spec
        ctx.save_for_backward(data, *comps)
        return out.torch()

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> Any:
        spec: _Spec = ctx.spec
        data, *comps = ctx.saved_tensors
        need_data = ctx.needs_input_grad[1]
        need_geometry = any(ctx.needs_input_grad[2:])
        none_for_geometry = [None] * len(comps)
        if not need_geometry:
            grad_data = _Transform.apply(spec.transposed(), grad_out, *comps) if need_data else None
            return None, grad_data, *none_for_geometry
        if torch.is_grad_enabled():
            raise RuntimeError(
                "drct.torch: second derivatives through geometry parameters are not supported "
                "(create_graph=True with geometry tensors that require grad)"
            )
        spec.sync_in(grad_out.device)
        with dr.isolate_grad():
            params, leaves = spec.parameters(tuple(comps), grad=True)
            values = spec.to_drjit(data)
            if need_data:
                dr.enable_grad(values)
            out = spec.run(_operator(spec.A, params, spec.samples), values)
            dr.set_grad(out, spec.to_drjit(grad_out))
            dr.enqueue(dr.ADMode.Backward, out)
            dr.traverse(dr.ADMode.Backward)
            grads = [dr.grad(leaf) for leaf in leaves]
            grad_values = dr.grad(values) if need_data else None
            dr.eval(grads, grad_values)
        spec.sync_out()
        grad_comps = [
            torch.as_tensor(g.torch(), dtype=c.dtype).reshape(c.shape) if ctx.needs_input_grad[2 + i] else None
            for i, (g, c) in enumerate(zip(grads, comps, strict=True))
        ]
        grad_data = None if grad_values is None else grad_values.torch().reshape(data.shape)
        return None, grad_data, *grad_comps


def _apply(adjoint: bool, data: Any, A: Any, geometry: Mapping[str, Any]) -> torch.Tensor:
    A = _check_projector(A)
    name = "y (projections)" if adjoint else "x (volume)"
    data = _check_tensor(data, name, A)
    core = tuple(A.range_shape if adjoint else A.domain_shape)
    out_core = tuple(A.domain_shape if adjoint else A.range_shape)
    if A.batch is not None and tuple(data.shape) != core:
        raise ValueError(
            f"{name} must have shape {core}: the projector stacks {A.batch} per-sample geometries, got "
            f"{tuple(data.shape)}"
        )
    batch = _split_batch(data, name, core)
    geo = _Geometry(A, geometry, batch)
    if geo.samples is not None:  # per-sample geometry: one stacked geometry of N * V views, data as (N, *core)
        data = data.reshape(geo.samples, *core)
    names = [(k, len(v)) for k, v in geo.values.items()]
    comps = [c for v in geo.values.values() for c in v]
    out = _Transform.apply(_Spec(A, adjoint, names, geo.samples), data, *comps)
    return out.reshape(*batch, *out_core)


def project(x: torch.Tensor, A: Projector, **geometry: Any) -> torch.Tensor:
    """``A x`` as a differentiable torch operation.

    Args:
        x: volume(s) of shape ``(*batch, *A.domain_shape)``, float32 or float64 like ``A``, on the CPU for the
            LLVM backend or on a CUDA device for the CUDA backend. Non-contiguous tensors and views are fine.
        A: the projector.
        **geometry: misalignment parameters of :meth:`drct.ProjectionGeometry.perturb` as numbers or torch
            tensors (``()``, ``(V,)``, ``(B,)``/``(B, 1)`` or ``(B, V)``, see the module docstring); gradients
            reach those with ``requires_grad``.

    Returns:
        The projections, ``(*batch, *A.range_shape)``, same dtype and device as ``x``.

    Example:
        >>> import numpy as np, torch, drct as ct
        >>> import drct.torch
        >>> vg = ct.VolumeGeometry((16, 16))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 8, endpoint=False), 24), backend="llvm")
        >>> ct.torch.project(torch.ones(2, 3, 16, 16), A).shape
        torch.Size([2, 3, 8, 24])
    """
    return _apply(False, x, A, geometry)


def backproject(y: torch.Tensor, A: Projector, **geometry: Any) -> torch.Tensor:
    """``A.T y`` (the exact adjoint) as a differentiable torch operation.

    Args:
        y: projections of shape ``(*batch, *A.range_shape)``, float32 or float64 like ``A``, on ``A``'s device.
        A: the projector.
        **geometry: misalignment parameters, as for :func:`project`.

    Returns:
        ``(*batch, *A.domain_shape)``, same dtype and device as ``y``.

    Example:
        >>> import numpy as np, torch, drct as ct
        >>> import drct.torch
        >>> vg = ct.VolumeGeometry((16, 16))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 8, endpoint=False), 24), backend="llvm")
        >>> ct.torch.backproject(torch.ones(5, 8, 24), A).shape
        torch.Size([5, 16, 16])
    """
    return _apply(True, y, A, geometry)


# ---- modules --------------------------------------------------------------------------------------------------
class _GeometryModule(nn.Module):
    """Holds optional geometry values: buffers, or ``nn.Parameter`` when ``learnable``."""

    def __init__(self, A: Projector, geometry: Mapping[str, Any] | None, learnable: bool) -> None:
        super().__init__()
        self.A = _check_projector(A)
        self._geometry_names: list[str] = []
        dtype = _TORCH_DTYPES[A.dtype]
        for name, value in (geometry or {}).items():
            if name not in NAMES:
                raise ValueError(f"unknown geometry parameter {name!r}; expected one of {list(NAMES)}")
            tensor = torch.as_tensor(value, dtype=dtype, device=_device_type(A)).clone()
            if learnable:
                self.register_parameter(name, nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)
            self._geometry_names.append(name)

    def geometry(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The stored geometry values, replaced or extended by ``overrides``."""
        values: dict[str, Any] = {name: getattr(self, name) for name in self._geometry_names}
        values.update(overrides)
        return values

    def extra_repr(self) -> str:
        names = ", ".join(self._geometry_names)
        return f"A={self.A!r}" + (f", geometry=[{names}]" if names else "")


class Projection(_GeometryModule):
    """``A x`` as a module: ``Projection(A)(x)``; optional learnable geometry parameters.

    Args:
        A: the projector.
        geometry: initial misalignment parameters (name → value), stored as buffers, or as ``nn.Parameter``
            when ``learnable`` (a torch optimiser then calibrates them). ``forward`` keywords override them.
        learnable: make ``geometry`` trainable parameters.

    Example:
        >>> import numpy as np, torch, drct as ct
        >>> import drct.torch
        >>> vg = ct.VolumeGeometry((16, 16))
        >>> A = ct.Projector(vg, ct.fan(np.linspace(0, 2 * np.pi, 8, endpoint=False), 24, 1.0, 40.0, 80.0))
        >>> layer = ct.torch.Projection(A, geometry={"det_shift_u": 0.0}, learnable=True)
        >>> [name for name, _ in layer.named_parameters()]
        ['det_shift_u']
        >>> layer(torch.ones(16, 16)).shape
        torch.Size([8, 24])
    """

    def __init__(self, A: Projector, geometry: Mapping[str, Any] | None = None, learnable: bool = False) -> None:
        super().__init__(A, geometry, learnable)

    def forward(self, x: torch.Tensor, **geometry: Any) -> torch.Tensor:
        return project(x, self.A, **self.geometry(geometry))


class BackProjection(_GeometryModule):
    """``A.T y`` as a module: ``BackProjection(A)(y)`` (arguments as for :class:`Projection`).

    Example:
        >>> import numpy as np, torch, drct as ct
        >>> import drct.torch
        >>> vg = ct.VolumeGeometry((16, 16))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 8, endpoint=False), 24))
        >>> ct.torch.BackProjection(A)(torch.ones(3, 8, 24)).shape
        torch.Size([3, 16, 16])
    """

    def __init__(self, A: Projector, geometry: Mapping[str, Any] | None = None, learnable: bool = False) -> None:
        super().__init__(A, geometry, learnable)

    def forward(self, y: torch.Tensor, **geometry: Any) -> torch.Tensor:
        return backproject(y, self.A, **self.geometry(geometry))


# ---- FBP ------------------------------------------------------------------------------------------------------
class _DrJitLinear(torch.autograd.Function):
    """A linear Dr.Jit function of one tensor (``fn(t) -> t``) in torch; its gradient comes from Dr.Jit's AD,
    rebuilt at each backward so that repeated backward passes stay correct."""

    @staticmethod
    def forward(ctx: Any, fn: Any, spec: _Spec, values: torch.Tensor) -> torch.Tensor:
        spec.sync_in(values.device)
        out = fn(spec.to_drjit(values))
        dr.eval(out)
        spec.sync_out()
        ctx.fn, ctx.spec, ctx.shape = fn, spec, values.shape
        ctx.save_for_backward(values)
        return out.torch()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> Any:
        spec: _Spec = ctx.spec
        (values,) = ctx.saved_tensors
        spec.sync_in(grad_out.device)
        with dr.isolate_grad():
            inputs = spec.to_drjit(values)
            dr.enable_grad(inputs)
            out = ctx.fn(inputs)
            dr.set_grad(out, spec.to_drjit(grad_out))
            dr.enqueue(dr.ADMode.Backward, out)
            dr.traverse(dr.ADMode.Backward)
            grad = dr.grad(inputs)
            dr.eval(grad)
        spec.sync_out()
        return None, None, grad.torch().reshape(ctx.shape)


class FBP(nn.Module):
    """Filtered backprojection in physical units, ``FBP(A)(y)`` equal to :func:`drct.fbp` ``(A, y)``.

    The weights, the filter's frequency response and the backprojection step are those of
    :mod:`drct.recon.fbp` (pre-weights, Parker weights for short scans, angular weights and scale); the
    filtering runs in torch (``torch.fft``, zero-padded to :func:`drct.recon.padded_length`), so the frequency
    response (one real value per ``rfft`` bin) can be trained by a torch optimiser — the learned-filter
    baseline of PYRO-NN:

    * ``learnable=True`` (or ``"gain"``): ``self.gain``, an ``nn.Parameter`` of ones, multiplies the fixed
      response of ``filter`` (the filter starts as exactly that response). Relative changes per frequency
      are well scaled for Adam: the ramp spans 3 decades from DC to Nyquist, and a raw response trains slowly.
    * ``learnable="response"``: ``self.response`` itself is the ``nn.Parameter``, initialised from ``filter``.

    :meth:`filter_response` gives the response in use.

    2D parallel beams backproject with :func:`backproject` (a batch in one launch; geometry tensors such as
    ``det_shift_u`` may be passed to ``forward``). Other geometries use :mod:`drct.recon`'s backprojection
    step sample by sample, with the nominal geometry.

    Args:
        A: the projector (its grid, geometry and basis define the reconstruction).
        filter: ``"ramp"`` (= ``"ram-lak"``), ``"shepp-logan"``, ``"cosine"``, ``"hamming"`` or ``"hann"``.
        cutoff: the window's cut-off as a fraction of the Nyquist frequency, in (0, 1].
        learnable: ``False``, ``True``/``"gain"`` (train a per-frequency gain) or ``"response"`` (train the
            response itself).

    Example:
        >>> import numpy as np, torch, drct as ct
        >>> import drct.torch
        >>> vg = ct.VolumeGeometry((32, 32))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 48, endpoint=False), 48), basis="voxel")
        >>> x = torch.zeros(32, 32); x[8:24, 8:24] = 0.02
        >>> fbp = ct.torch.FBP(A, learnable=True)
        >>> round(float(fbp(ct.torch.project(x, A))[12:20, 12:20].mean().detach()), 3)
        0.02
        >>> fbp.gain.shape, fbp.filter_response().shape
        (torch.Size([65]), torch.Size([65]))
    """

    response: torch.Tensor
    gain: torch.Tensor | None
    pre: torch.Tensor
    post: torch.Tensor

    def __init__(self, A: Projector, filter: str = "ramp", cutoff: float = 1.0, learnable: bool | str = False) -> None:
        super().__init__()
        from .recon.fbp import weights_for
        from .recon.filters import filter_response, padded_length

        self.A = _check_projector(A)
        if A.batch is not None:
            raise ValueError(f"FBP needs a projector of one geometry, this one stacks batch={A.batch} samples")
        name = "ram-lak" if isinstance(filter, str) and filter.lower() == "ramp" else filter
        weights = weights_for(A)
        dtype, device = _TORCH_DTYPES[A.dtype], _device_type(A)
        self.filter, self.cutoff, self._weights = name, cutoff, weights
        self.cols = A.range_shape[-1]
        self.padded = padded_length(self.cols)
        self.spacing = float(weights.spacing)
        self._fast = isinstance(A.pg, ProjectionGeometry) and A.pg.beam == "parallel" and A.pg.ndim == 2
        response = torch.as_tensor(
            filter_response(self.padded, weights.spacing, name, cutoff, weights.curved), dtype=dtype, device=device
        )
        if learnable not in (False, True, "gain", "response"):
            raise ValueError(f'learnable must be False, True, "gain" or "response", got {learnable!r}')
        if learnable == "response":
            self.response = nn.Parameter(response)
        else:
            self.register_buffer("response", response)
        self.gain = nn.Parameter(torch.ones_like(response)) if learnable in (True, "gain") else None
        self._has_pre = bool(np.any(weights.pre != 1))
        self.register_buffer("pre", torch.as_tensor(weights.pre, dtype=dtype, device=device))
        self.register_buffer("post", torch.as_tensor(weights.post, dtype=dtype, device=device))
        self._spec = _Spec(A, True, [], None)

    def filter_response(self) -> torch.Tensor:
        """The frequency response in use (``n // 2 + 1`` values for ``torch.fft.rfft`` of ``n`` samples, 1/mm²
        as in :func:`drct.recon.filter_response`)."""
        return self.response if self.gain is None else self.response * self.gain

    def filtered(self, y: torch.Tensor) -> torch.Tensor:
        """The pre-weighted, filtered projections (before the post-weights and the backprojection)."""
        if self._has_pre:
            y = y * self.pre
        spectrum = torch.fft.rfft(y, n=self.padded, dim=-1) * self.filter_response()
        return torch.fft.irfft(spectrum, n=self.padded, dim=-1)[..., : self.cols] * self.spacing

    def forward(self, y: torch.Tensor, **geometry: Any) -> torch.Tensor:
        """Reconstruct ``y`` of shape ``(*batch, *A.range_shape)``; returns ``(*batch, *A.domain_shape)``."""
        A = self.A
        y = _check_tensor(y, "y (projections)", A)
        batch = _split_batch(y, "y (projections)", tuple(A.range_shape))
        q = self.filtered(y)
        if self._fast:
            return backproject(q * self.post, A, **geometry)
        if any(v is not None for v in geometry.values()):
            raise ValueError(
                f"geometry tensors {sorted(geometry)} are supported by ct.torch.FBP for 2D parallel beams only; "
                f"this projector has {A.pg!r}"
            )
        from .recon.fbp import backproject_filtered

        def step(values: Any) -> Any:
            return backproject_filtered(A, values, self._weights)

        flat = q.reshape(-1, *A.range_shape)
        out = [_DrJitLinear.apply(step, self._spec, flat[i]) for i in range(flat.shape[0])]
        return torch.stack(out).reshape(*batch, *A.domain_shape)

    def extra_repr(self) -> str:
        learn = "response" if isinstance(self.response, nn.Parameter) else self.gain is not None
        return f"A={self.A!r}, filter={self.filter!r}, cutoff={self.cutoff}, learnable={learn!r}"
