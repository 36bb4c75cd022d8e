"""Penalised emission reconstruction: BSREM with the relative-difference prior.

The objective, maximised over ``x ≥ 0``, is the Poisson log-likelihood minus a penalty,
``Φ(x) = Σ_i y_i log((A x + s)_i) − (A x + s)_i − β R(x)``, with the relative-difference prior of Nuyts et al.
(IEEE TNS 2002)::

    R(x) = Σ_j Σ_{k ∈ N(j)} w_jk (x_j − x_k)² / (x_j + x_k + γ |x_j − x_k|)

(every neighbour pair counted from both ends, as written), ``N(j)`` the 3×3 (2D) or 3×3×3 (3D) neighbourhood, or
only the face neighbours, and ``w_jk`` the inverse distance between voxel centres (in units of the smallest
voxel side). ``γ ≥ 0`` sets the edge preservation: large ``γ`` penalises large differences less than small ones.
Terms whose denominator is 0 (two zero voxels) are 0, as is their gradient.

:func:`bsrem` is the block-sequential regularised EM of De Pierro & Yamagishi (IEEE TMI 2001): per subset ``m`` of
``M``, ``x ← max(0, x + α_n x / (A_mᵀ 1) · (A_mᵀ (y_m / (A_m x + s_m)) − A_mᵀ 1 − β ∇R(x) / M))`` with the
relaxation ``α_n = 1 / (1 + relaxation · (n − 1))`` in outer iteration ``n``. With ``β = 0`` and ``relaxation = 0``
it is exactly OSEM (:func:`drct.recon.osem`); a relaxation that decays to 0 makes it converge to the maximiser of
``Φ`` instead of OSEM's limit cycle.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import drjit as dr
import numpy as np

from ..arrays import from_tensor, to_tensor
from ..backend import types as backend_types
from ..errors import require_finite
from ..projector import Projector
from ._common import Callback, Problem, check_niter, report, steps, torch_autograd
from .em import _additive, _check_data, _ratio, _start, _subset_plan

NEIGHBOURHOODS = ("full", "face")
"""``"full"``: every voxel touching ``j`` (8 in 2D, 26 in 3D); ``"face"``: those sharing a side (4 / 6)."""


def _offsets(
    shape: tuple[int, ...], voxel_size: tuple[float, ...], neighbourhood: str
) -> list[tuple[tuple[int, ...], int, float]]:
    """Half of the neighbourhood's offsets, one of each ± pair (the one whose first non-zero step is +1, so that
    its flat offset is positive), as ``(offset, flat offset, w)``."""
    if neighbourhood not in NEIGHBOURHOODS:
        raise ValueError(f"neighbourhood must be one of {NEIGHBOURHOODS}, got {neighbourhood!r}")
    spacing = np.asarray(voxel_size, dtype=np.float64)
    strides = np.cumprod((*shape[1:], 1)[::-1])[::-1]
    out = []
    for offset in itertools.product((-1, 0, 1), repeat=len(shape)):
        if not any(offset) or offset <= tuple(-o for o in offset):  # keep the lexicographically larger half
            continue
        if neighbourhood == "face" and sum(map(abs, offset)) != 1:
            continue
        weight = float(spacing.min() / np.linalg.norm(np.asarray(offset) * spacing))
        out.append((offset, int(np.dot(offset, strides)), weight))
    return out


class RelativeDifferencePrior:
    """``R(x)`` and ``∇R(x)`` on flat Dr.Jit arrays of a volume (see the module docstring).

    Example:
        >>> import numpy as np, drct as ct
        >>> R = ct.recon.RelativeDifferencePrior(ct.VolumeGeometry((2, 2)), gamma=2.0)
        >>> x = np.array([[1.0, 1.0], [1.0, 3.0]], np.float32)
        >>> round(R.value(x), 4)  # pairs (1, 3) at weights 1, 1, 1/√2, each 2² / (4 + 2·2), counted from both ends
        2.7071
    """

    def __init__(self, vg: Any, gamma: float = 2.0, neighbourhood: str = "full", types: Any = None) -> None:
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.number)) or not gamma >= 0:
            raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
        require_finite(float(gamma), "gamma")
        self.vg = vg
        self.gamma = float(gamma)
        self.t = backend_types("float32") if types is None else types
        self._offsets = _offsets(tuple(vg.shape), tuple(vg.voxel_size), neighbourhood)

    def _pairs(self) -> Iterator[tuple[Any, Any, float]]:
        """Per offset: ``(k, valid, w)``, the flat neighbour index of every voxel ``j`` and whether it is inside
        the volume (computed in the kernel: no index arrays are stored)."""
        shape = tuple(self.vg.shape)
        for offset, flat, w in self._offsets:
            j = dr.arange(self.t.UInt, int(np.prod(shape)))
            valid = dr.full(dr.mask_t(self.t.UInt), True, dr.width(j))
            rest = j
            for n, o in zip(reversed(shape), reversed(offset), strict=True):
                c = rest % n
                rest = rest // n
                if o:
                    valid &= c < n - 1 if o > 0 else c > 0
            yield j + flat, valid, w

    def _flat(self, x: Any) -> Any:
        if isinstance(x, self.t.Float):
            return x
        return to_tensor(x, self.vg.shape, self.t, "x (activity)")[0].array

    def value_flat(self, x: Any) -> Any:
        """``R(x)`` as a width-1 array (``x`` flat, non-negative)."""
        total = self.t.Float(0.0)
        for k, valid, w in self._pairs():
            a, b = x, dr.gather(self.t.Float, x, k, valid)
            d = a - b
            s = a + b + self.gamma * dr.abs(d)
            total += 2.0 * w * dr.sum(dr.select(valid & (s > 0), d * d / dr.maximum(s, 1e-30), 0.0))
        return total

    def gradient_flat(self, x: Any) -> Any:
        """``∇R(x)`` flat: ``∂/∂x_j = 2 Σ_k w_jk (x_j − x_k)(x_j + 3 x_k + γ|x_j − x_k|) / (x_j + x_k + γ|x_j − x_k|)²``
        (the pair term appears twice in ``R``, once from each end)."""
        grad = dr.zeros(self.t.Float, dr.width(x))
        for k, valid, w in self._pairs():
            a, b = x, dr.gather(self.t.Float, x, k, valid)
            d = a - b
            g = self.gamma * dr.abs(d)
            s = a + b + g
            inv = dr.select(valid & (s > 0), dr.rcp(dr.maximum(s * s, 1e-30)), 0.0)
            grad += 2.0 * w * d * (a + 3.0 * b + g) * inv
            dr.scatter_add(grad, 2.0 * w * -d * (b + 3.0 * a + g) * inv, k, valid)
            dr.eval(grad)
        return grad

    def value(self, x: Any) -> float:
        """``R(x)`` for a volume (numpy, torch or Dr.Jit), as a float."""
        flat = self._check(x)
        return float(self.value_flat(flat).numpy()[0])

    def gradient(self, x: Any) -> Any:
        """``∇R(x)``, the same kind and shape of array as ``x``."""
        kind = to_tensor(x, self.vg.shape, self.t, "x (activity)")[1]
        return from_tensor(self.t.Tensor(self.gradient_flat(self._check(x)), self.vg.shape), kind)

    def _check(self, x: Any) -> Any:
        flat = self._flat(x)
        low = float(dr.min(dr.detach(flat))[0])
        if low < 0:
            raise ValueError(f"relative-difference prior: x must be non-negative, but its minimum is {low}")
        return flat


@torch_autograd
def bsrem(
    A: Projector,
    y: Any,
    x0: Any = None,
    niter: int = 10,
    callback: Callback | None = None,
    progress: bool = True,
    *,
    beta: float = 1.0,
    gamma: float = 2.0,
    neighbourhood: str = "full",
    subsets: int = 8,
    relaxation: float = 0.1,
    mask: Any = None,
    additive: Any = None,
) -> Any:
    """BSREM with the relative-difference prior: maximises ``Σ y log(A x + s) − (A x + s) − β R(x)``, ``x ≥ 0``.

    Voxels driven below 0 by a step are set to 0 (and, the update being multiplicative in ``x``, stay there); when
    a large ``beta`` drives every voxel there, a ``ValueError`` says so instead of returning zeros. Torch
    ``y`` / ``x0`` that require gradients are differentiable through the iterations, as with :func:`osem`.

    Args:
        A, y, x0, niter, callback, progress, mask, additive: as in :func:`drct.recon.mlem` (``y`` non-negative
            counts; ``callback`` gets ``||A x + s − y||₂``).
        beta: prior strength ``β ≥ 0`` (0: OSEM when ``relaxation=0``).
        gamma: edge-preservation ``γ ≥ 0`` of the prior.
        neighbourhood: ``"full"`` (8 / 26 neighbours) or ``"face"`` (4 / 6).
        subsets: number of ordered subsets of views (interleaved, as in :func:`drct.recon.osem`).
        relaxation: ``α_n = 1 / (1 + relaxation (n − 1))``; ``> 0`` for convergence, ``0`` keeps ``α = 1``.

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((32, 32))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 48, endpoint=False), 48), basis="voxel")
        >>> x = 10 * ct.phantoms.shepp_logan(vg)
        >>> y = np.random.default_rng(0).poisson(A(x)).astype(np.float32)
        >>> rec = ct.recon.bsrem(A, y, niter=10, subsets=6, beta=0.05, progress=False)
        >>> bool(rec.min() >= 0 and np.linalg.norm(rec - x) < 0.5 * np.linalg.norm(x))
        True
    """
    p = Problem(A, y, "bsrem")  # refuses NaN/±Inf in y (NonFiniteError)
    _check_data(p)
    niter = check_niter(niter, "bsrem")
    for value, what in ((beta, "beta"), (relaxation, "relaxation")):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value >= 0:
            raise ValueError(f"bsrem: {what} must be a finite number >= 0, got {value!r}")
        require_finite(float(value), what)
    prior = RelativeDifferencePrior(A.vg, gamma, neighbourhood, p.t)
    m = p.mask(mask)
    s = _additive(p, additive)
    plan = _subset_plan(p, subsets, additive, s, m)
    x = _start(p, x0, m)
    share = float(beta) / len(plan)
    for n in steps(niter, progress, "bsrem"):
        alpha = 1.0 / (1.0 + float(relaxation) * (n - 1))
        for op, y_s, s_s, sens, scale in plan:
            back = p.adjoint(_ratio(y_s, p.forward(x, op) + s_s, p.t.Float), op)
            step = back - sens
            if share:
                step = step - share * prior.gradient_flat(x)
            x = dr.maximum(x + alpha * x * scale * step, 0.0)
            dr.eval(x)
            if share and not p.A.reduce_max(dr.max(dr.detach(x)))[0] > 0:
                raise ValueError(
                    f"bsrem: every coefficient was driven to 0 (beta={beta!r} with relaxation={relaxation!r}, "
                    f"iteration {n}): the prior's step overshoots and zeros stay zero; lower beta or raise relaxation"
                )
        if callback is not None and report(callback, p, n, x, p.y - p.forward(x) - s):
            break
    return p.output(x)
