"""The functional forms of :mod:`drct.torch`: :func:`project` (``A x``) and :func:`backproject` (``A.T y``).

Eager torch runs them through the ``autograd.Function`` of :mod:`drct.torch._bridge`; under ``torch.compile``,
through the custom operators of :mod:`drct.torch._compiled`, which dynamo traces (``fullgraph=True`` included):
everything they read of the projector is a constant of the graph (:func:`~drct.torch._geometry.projector_info`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..projector import Projector
from ._bridge import Spec, _Transform, keeps, outside_compile
from ._geometry import GeometryTensors, check_tensor, projector_info, split_batch

try:
    from . import _compiled
except AttributeError:  # pragma: no cover - torch < 2.4 has no torch.library.custom_op: a graph break instead
    _compiled = None


def _compiling() -> bool:
    """Whether dynamo is tracing this call outside any ``torch.func`` transform (the custom operators have no
    transform rules: inside one, the call runs eagerly, between graphs)."""
    check = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(check()) and not torch._C._are_functorch_transforms_active() if check is not None else False


def _apply(adjoint: bool, data: Any, A: Any, geometry: Mapping[str, Any]) -> torch.Tensor:
    """``A x`` or ``A.T y``: traced as custom operators under torch.compile, else (eager torch, ``torch.func``
    transforms, torch < 2.4) the autograd Function, a graph break as a whole under torch.compile."""
    if _compiled is not None and _compiling():
        return _run(adjoint, data, A, geometry, traced=True)
    return _run_between_graphs(adjoint, data, A, geometry, traced=False)


def _run(adjoint: bool, data: Any, A: Any, geometry: Mapping[str, Any], traced: bool) -> torch.Tensor:
    info = projector_info(A)  # checks A; plain values (constants under torch.compile)
    name = "y (projections)" if adjoint else "x (volume)"
    data = check_tensor(data, name, info)
    core, out_core = (info.range_shape, info.domain_shape) if adjoint else (info.domain_shape, info.range_shape)
    if info.batch is not None and tuple(data.shape) != core:
        raise ValueError(
            f"{name} must have shape {core}: the projector stacks {info.batch} per-sample geometries, got "
            f"{tuple(data.shape)}"
        )
    batch = split_batch(data, name, core)
    geo = GeometryTensors(A, geometry, batch)
    if geo.samples is not None:  # per-sample geometry: one stacked geometry of N * V views, data as (N, *core)
        data = data.reshape(geo.samples, *core)
    names = [(k, len(v)) for k, v in geo.values.items()]
    comps = [c for v in geo.values.values() for c in v]
    if traced:  # the custom operator, which dynamo and AOTAutograd trace
        out = _compiled.apply(A, adjoint, names, geo.samples, data, comps)  # type: ignore[union-attr]
    else:
        out = _Transform.apply(Spec(A, adjoint, names, geo.samples, keeps(adjoint, comps)), data, *comps)
    return out.reshape(*batch, *out_core)


_run_between_graphs = outside_compile(_run)


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
