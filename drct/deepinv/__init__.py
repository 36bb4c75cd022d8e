"""drct operators as `deepinv <https://deepinv.github.io>`_ physics: :class:`Tomography` and :class:`DetectorNoise`.

Import it explicitly (nothing else in drct imports deepinv); it needs the ``learn`` extra
(``pip install 'drct[learn]'``), and says so when deepinv is missing.

* :class:`Tomography` ``(A)`` is a ``deepinv.physics.LinearPhysics`` built from any :class:`drct.Projector`
  (parallel, fan, cone, ray lists; every basis): ``A`` and ``A_adjoint`` are drct's exact pair through
  :mod:`drct.torch` (a whole ``(B, C, *A.domain_shape)`` batch in one launch), misalignment parameters
  (``det_shift_u``, ``cor_offset``, ``angle_offset``, ...) are tensors set by ``update_parameters`` or
  ``physics(x, det_shift_u=t)`` with gradients through autograd, or ``nn.Parameter`` with ``learnable=True``.
  Measurements keep drct's layout ``(B, C, views, [rows,] cols)`` (deepinv's own 2D ``Tomography`` uses
  ``(B, C, cols, views)``).
* :class:`DetectorNoise` is drct's detector model (:class:`drct.physics.Detector`: Poisson photons, electronic
  noise, b-bit digitisation, blur, gain, dark offset, then the log transform) as a ``deepinv.physics.NoiseModel``
  acting on line integrals.
* :func:`deepinv_geometry` gives the drct geometry that scans like deepinv's own 2D ``Tomography`` (drct in its
  place, same data).

Example:
    >>> import numpy as np, torch, drct as ct
    >>> import drct.deepinv
    >>> A = ct.Projector(ct.VolumeGeometry((32, 32)), ct.parallel(np.linspace(0, np.pi, 20, endpoint=False), 48))
    >>> physics = ct.deepinv.Tomography(A, geometry={"det_shift_u": 0.0})
    >>> x = torch.rand(4, 1, 32, 32)
    >>> physics.A(x).shape
    torch.Size([4, 1, 20, 48])
    >>> bool(physics.adjointness_test(x) < 1e-5)
    True
    >>> shift = torch.tensor(0.3, requires_grad=True)
    >>> physics.A(x, det_shift_u=shift).sum().backward()  # gradients reach the geometry
    >>> shift.grad.shape
    torch.Size([])
"""

from __future__ import annotations

try:
    import deepinv as _deepinv  # noqa: F401
except (ImportError, RuntimeError) as error:  # RuntimeError: a torchvision built for another torch
    raise ModuleNotFoundError(  # naming deepinv, so that callers may skip on it
        f"drct.deepinv needs deepinv: pip install 'drct[learn]' (deepinv, and a torchvision built for the installed "
        f"torch); importing deepinv failed: {type(error).__name__}: {error}",
        name="deepinv",
    ) from None

from ._geometry import deepinv_geometry as deepinv_geometry
from ._noise import DetectorNoise as DetectorNoise
from ._physics import Tomography as Tomography

__all__ = ["DetectorNoise", "Tomography", "deepinv_geometry"]
