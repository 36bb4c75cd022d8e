"""Geometry derivatives of the emission operators for torch: ``A.perturbed(**geometry)(x)`` differentiable by
torch autograd w.r.t. the activity and every geometry tensor (through :func:`drct.autodiff.torch_apply`).

Example:
    >>> import numpy as np, torch, drct as ct
    >>> vg = ct.VolumeGeometry((4, 12, 12), voxel_size=4.0)
    >>> g = ct.spect(np.linspace(0, 2 * np.pi, 6, endpoint=False), 60.0, (4, 12), 4.0)
    >>> A = ct.emission.SPECTProjector(vg, g, collimator=ct.emission.Collimator.lehr(), dtype="float64")
    >>> cor = torch.zeros(6, dtype=torch.float64, requires_grad=True)  # one centre-of-rotation offset per view
    >>> x = torch.rand(vg.shape, dtype=torch.float64)
    >>> y = ct.emission.project(x, A, offset=cor)
    >>> (y * torch.linspace(0, 1, y.numel(), dtype=torch.float64).reshape(y.shape)).sum().backward()
    >>> cor.grad.shape
    torch.Size([6])
"""

from __future__ import annotations

from typing import Any

from ..autodiff import torch_apply


def project(x: Any, A: Any, **geometry: Any) -> Any:
    """``A.perturbed(**geometry)`` applied to the torch tensor ``x``, differentiable w.r.t. ``x`` and every
    geometry tensor that requires grad (first order).

    Args:
        x: the activity, a torch tensor of ``A.domain_shape`` and ``A``'s dtype.
        A: a :class:`~drct.emission.SPECTProjector` (geometry ``angle``, ``radius``, ``offset``: one per view or
            one for all) or a sinogram :class:`~drct.pet.PETProjector` without TOF (``radius``, ``rotation``:
            one number; ``shift``: three).
        **geometry: the changes, as numbers or torch tensors (``None`` or left out: unchanged).

    Example:
        >>> import numpy as np, torch, drct as ct
        >>> g = ct.spect(np.linspace(0, 2 * np.pi, 8, endpoint=False), 40.0, (4, 12), 2.0)
        >>> A = ct.emission.SPECTProjector(ct.VolumeGeometry((4, 12, 12), voxel_size=2.0), g, dtype="float64")
        >>> x = torch.ones(A.domain_shape, dtype=torch.float64)
        >>> offset = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
        >>> ct.emission.project(x, A, offset=offset).sum().backward()
        >>> offset.grad is not None
        True
    """
    import torch

    names = [k for k, v in geometry.items() if v is not None]
    params = [torch.as_tensor(geometry[k], dtype=x.dtype, device=x.device).reshape(-1) for k in names]

    def run(volume: Any, *values: Any) -> Any:
        return A.perturbed(**{k: v.array for k, v in zip(names, values, strict=True)}).forward_tensor(volume)

    return torch_apply(run, A.backend, x, *params)
