"""PyTorch layers: the projector ``A``, its adjoint ``A.T`` and FBP as differentiable torch operations.

Import it explicitly (nothing else in drct imports torch; ``pip install "drct[torch]"`` installs it)::

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
  length that equals both ``V`` and ``B`` means per view; write ``(B, 1)`` for per sample. ``angle_offset``
  (the scanner turned further about z, per view or not) is ``motion_rotation = -angle_offset``. ``vectors``
  replaces the whole geometry by per-view rows as in :meth:`~drct.ProjectionGeometry.to_vectors`, shape
  ``(V, 6|12)`` or per sample ``(B, V, 6|12)`` (arbitrary learnable poses; the other parameters apply on top).
* :class:`FBP` filters the projections in torch (``torch.fft``) with the weights and filters of
  :mod:`drct.recon.fbp` and backprojects like :func:`drct.fbp`; ``learnable=True`` trains a per-frequency
  gain on the filter, ``learnable="response"`` the frequency response itself, ``learnable="redundancy"`` the
  short-scan (Parker) weights of fan and cone beams.
* Reverse mode: backward may run twice through one output (``retain_graph``) and the gradients w.r.t. the
  data are differentiable again (double backward, and w.r.t. geometry: mixed second derivatives); gradients
  w.r.t. geometry are first order (differentiating them again raises). Forward mode:
  ``torch.autograd.forward_ad`` (``A`` w.r.t. volume and geometry, ``A.T`` w.r.t. the projections).
* ``torch.func``: ``vmap`` (extra axes of the data in one launch), ``grad``, ``vjp``, ``jacrev``, ``jacfwd``,
  ``jvp`` and ``hessian`` (of the data) work on :func:`project`, :func:`backproject` and the modules (FBP of
  2D parallel beams; fan/cone FBP refuses with a clear error). ``torch.compile`` (``fullgraph=True`` included)
  traces :func:`project`, :func:`backproject`, the modules and 2D parallel FBP as custom operators
  (:mod:`drct.torch._compiled`); fan/cone FBP runs between compiled graphs (``fullgraph=True`` says so).
* Modules follow torch's conventions: they compute in the dtype (float32/float64) and on the device of their
  input (a twin of ``A`` per dtype and backend, built on first use); ``.to()``/``.double()``/``.float()`` move
  their tensors. ``pickle``, ``copy.deepcopy`` and ``torch.save(module)`` store ``A``'s geometries, basis and
  options and rebuild it on loading (``torch.load(..., weights_only=False)``: a whole module is a pickle);
  ``torch.save(module.state_dict())`` is tensors only and loads with the default ``weights_only=True``.

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

from ..extras import require

try:
    from ._functional import backproject as backproject
    from ._functional import project as project
    from ._layers import FBP as FBP
    from ._layers import BackProjection as BackProjection
    from ._layers import Projection as Projection
except ModuleNotFoundError:
    require("torch", "drct.torch (the PyTorch layers)")  # without torch: an error naming the extra
    raise

__all__ = ["FBP", "BackProjection", "Projection", "backproject", "project"]
