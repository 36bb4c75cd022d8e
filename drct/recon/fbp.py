"""Filtered backprojection (FBP) and FDK in physical units, built on the exact adjoint ``A.T``.

``fbp(A, y)`` of line integrals ``y`` (dimensionless: mm × 1/mm) returns attenuation coefficients in 1/mm on
``A``'s grid, for every basis, voxel size and detector spacing, parallel, fan and cone beams with flat or
curved detectors, full or short scans (Parker weights chosen automatically). How: see
:mod:`drct.recon.weights`; in short ``fbp(A, y) = BP(post * filter(pre * y))`` with ``BP = A.T`` for 2D
parallel beams and the voxel-driven backprojection of :mod:`drct.recon.backproject` (each coefficient centre
projected onto the detector, the filtered data interpolated there, FDK's distance weights) for 2D fan beams and
3D scans.

The output holds the FBP image sampled at the coefficient centres: for 2D parallel beams smoothed by the basis
function (``A.T`` integrates against it), otherwise by the detector interpolation. For ``voxel`` and ``linear``
those are the coefficients of the reconstruction; for ``bspline2``/``bspline3`` they are sample values, a
slightly smoothed set of coefficients (the mean is kept: B-splines sum to one).

Differentiable: with ``y`` a Dr.Jit tensor with gradients, ``fbp`` is a Dr.Jit AD function of ``y``; 2D fan
beams whose geometry has Dr.Jit vectors (``pg.with_drjit_vectors()``) are backprojected with ``A.T`` and the
``D/r`` weight instead (:func:`backproject_fan`), so that gradients reach those vectors too (2D parallel beams
always use ``A.T``; the weights themselves are computed from detached values).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import drjit as dr
import numpy as np
from tqdm.auto import tqdm

from ..arrays import from_tensor, to_tensor
from ..backend import upload, upload_tensor
from ..geometry.projection import ProjectionGeometry, host_rows
from ..projector import Projector
from ._common import torch_differentiable, torch_requires_grad
from .backproject import backproject_tensor, make_backprojector
from .filters import FILTERS, filter_tensor
from .weights import FBPWeights, fbp_weights

_FAN_CACHE: weakref.WeakKeyDictionary[Projector, list[_FanChunk]] = weakref.WeakKeyDictionary()
_WEIGHT_CACHE: weakref.WeakKeyDictionary[Projector, FBPWeights] = weakref.WeakKeyDictionary()
_BP_CACHE: weakref.WeakKeyDictionary[Projector, Any] = weakref.WeakKeyDictionary()


def weights_for(A: Projector) -> FBPWeights:
    """:func:`drct.recon.weights.fbp_weights` of ``A``'s geometry, cached per projector."""
    if not isinstance(A, Projector):
        raise TypeError(f"A must be a drct.Projector, got {type(A).__name__}")
    if A not in _WEIGHT_CACHE:  # a view-sharded A: its views' rows of the whole scan's (angular, Parker) weights
        views = np.asarray(getattr(A, "views", None)) if A.sharded else None
        _WEIGHT_CACHE[A] = fbp_weights(A.full_pg, A.vg, views)
    return _WEIGHT_CACHE[A]


FAN_CHUNK_BYTES = 64 << 20
"""The most memory one launch of :func:`backproject_fan` holds in per-view images (views per launch follow)."""


@dataclass(frozen=True)
class _FanChunk:
    """A run of consecutive views ``start .. start + count`` of a 2D fan beam: one projector that backprojects
    each view into its own image (``batch=count``), and the views' sources and orbit radii on the device."""

    op: Projector
    start: int
    count: int
    src_x: Any
    src_y: Any
    orbit: Any


def _fan_chunks(A: Projector) -> list[_FanChunk]:
    if A not in _FAN_CACHE:
        pg, t = A.pg, A.types
        assert isinstance(pg, ProjectionGeometry)  # fbp_weights refused ray lists
        per_launch = max(1, FAN_CHUNK_BYTES // (A.vg.size * np.dtype(t.np_dtype).itemsize))
        src = np.asarray(host_rows(pg.src), dtype=np.float64)
        deterministic = A._engine.deterministic  # A's own setting: bit-reproducible if A is
        chunks = []
        for start in range(0, pg.num_views, per_launch):
            views = np.arange(start, min(pg.num_views, start + per_launch))
            sub = pg.select_views(views)
            op = Projector(A.vg, sub, A.basis, A.dtype, A.backend, batch=views.size, deterministic=deterministic)
            s = src[views]
            columns = [upload(t.Float, c.astype(t.np_dtype)) for c in (s[:, 0], s[:, 1], np.hypot(s[:, 0], s[:, 1]))]
            chunks.append(_FanChunk(op, int(start), int(views.size), *columns))
        _FAN_CACHE[A] = chunks
    return _FAN_CACHE[A]


def backproject_fan(A: Projector, z: Any, progress: bool = False) -> Any:
    """``Σ_i (D/r_i) ⊙ A_i.T z_i`` of a 2D fan beam: each view's exact adjoint ``A_i.T`` times the distance weight
    ``D/|x_k - s_i|`` at each coefficient centre ``x_k`` (``s_i`` the view's source, ``D = |s_i|``).

    The views' adjoints run in one launch per :data:`FAN_CHUNK_BYTES` of images (a projector with ``batch``
    set, one image per view), then one weighted sum over the views — the same sum as the view-by-view
    reference of the tests (``tests/fbp_reference.py``), in about 1.4 times the time of one ``A.T`` of all views
    (the weighted sum; 0.57 s vs 0.41 s at 256² × 360 views, ``linear``, 2 loaded cores). Built from
    differentiable Dr.Jit operations: gradients flow to ``z`` (both modes, the exact transpose) and, through
    ``A.T``, to geometry vectors that carry gradients. :func:`drct.fbp` uses it for fan beams with Dr.Jit
    geometry vectors only (the voxel-driven backprojection is 4-7 times faster, ``benchmarks/bench_fbp.py``).

    Example:
        >>> import numpy as np, drct as ct
        >>> A = ct.Projector(ct.VolumeGeometry((8, 8)), ct.fan(np.linspace(0, 6, 5), 12, 1.0, 40.0, 80.0))
        >>> z = A.types.Tensor(np.ones(A.range_shape, np.float32))
        >>> backproject_fan(A, z).shape
        (8, 8)
    """
    t, size = A.types, A.vg.size
    cols = A.range_shape[-1]
    xs, ys = (upload(t.Float, np.asarray(c, dtype=t.np_dtype)) for c in A.vg.coordinates())
    width = A.domain_shape[-1]
    out = dr.zeros(t.Float, size)
    chunks = _fan_chunks(A)
    for chunk in tqdm(chunks, desc="backprojection", disable=not progress or len(chunks) == 1, leave=False):
        part = z.array
        if chunk.count != A.pg.num_views:
            part = dr.gather(t.Float, part, dr.arange(t.UInt, chunk.start * cols, (chunk.start + chunk.count) * cols))
        images = chunk.op.adjoint_tensor(t.Tensor(part, (chunk.count, 1, cols))).array
        index = dr.arange(t.UInt, chunk.count * size)
        view = index // size
        pixel = index - view * size
        row = pixel // width
        dx = dr.gather(t.Float, xs, pixel - row * width) - dr.gather(t.Float, chunk.src_x, view)
        dy = dr.gather(t.Float, ys, row) - dr.gather(t.Float, chunk.src_y, view)
        weight = dr.gather(t.Float, chunk.orbit, view) * dr.rsqrt(dr.fma(dx, dx, dy * dy))
        out = out + dr.sum(t.Tensor(images * weight, (chunk.count, size)), axis=0).array
        dr.eval(out)
    return t.Tensor(out, A.domain_shape)


def _tensor(A: Projector, values: np.ndarray, shape: tuple[int, ...]) -> Any:
    t = A.types
    return upload_tensor(t, np.broadcast_to(np.asarray(values, dtype=t.np_dtype), shape))


def backproject_filtered(A: Projector, q: Any, weights: FBPWeights | None = None, progress: bool = False) -> Any:
    """The FBP backprojection of filtered data ``q`` (a Dr.Jit tensor of ``pg.shape``), ``post`` included.

    2D parallel beams: ``A.adjoint_tensor(post * q)``; 2D fan beams and 3D: the voxel-driven backprojection of
    :mod:`drct.recon.backproject` (2D fan beams with Dr.Jit geometry vectors: :func:`backproject_fan`, scaled by
    ``Δ / h²`` to the same amplitude). A view-sharded ``A`` (``q`` its views' share) backprojects its own views
    and sums over the ranks (:meth:`reduce_sum`): every rank gets the whole scan's result.
    """
    w = weights_for(A) if weights is None else weights
    t = A.types
    z = q * _tensor(A, w.post, A.range_shape) if np.any(w.post != 1) else q
    if not (A.pg.ndim == 3 or w.fan_2d):
        return A.adjoint_tensor(z)  # a sharded A.T sums over the ranks itself
    if w.fan_2d and A.pg.differentiable:
        return A.reduce_sum(backproject_fan(A, z * (w.spacing / float(np.prod(A.vg.voxel_size))), progress))
    if A not in _BP_CACHE:
        _BP_CACHE[A] = make_backprojector(A.pg, A.vg, t)  # type: ignore[arg-type]
    return A.reduce_sum(backproject_tensor(_BP_CACHE[A], z, progress))  # sharded A: summed over the ranks


def fbp_tensor(A: Projector, y: Any, filter: str = "ram-lak", cutoff: float = 1.0, progress: bool = False) -> Any:
    """:func:`fbp` on a Dr.Jit tensor of ``A``'s type; returns a tensor (differentiable in ``y``).

    Example:
        >>> import numpy as np, drct as ct
        >>> from drjit.llvm.ad import TensorXf
        >>> vg = ct.VolumeGeometry((16, 16))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 24, endpoint=False), 24))
        >>> y = A(ct.phantoms.shepp_logan(vg))
        >>> x = ct.recon.fbp_tensor(A, TensorXf(y))  # a Dr.Jit tensor in, a Dr.Jit tensor out
        >>> type(x).__name__, bool(np.allclose(x.numpy(), ct.fbp(A, y, progress=False), atol=1e-6))
        ('TensorXf', True)
    """
    w = weights_for(A)
    pre = y * _tensor(A, w.pre, A.range_shape) if np.any(w.pre != 1) else y
    q = filter_tensor(pre, w.spacing, filter, cutoff, w.curved)
    return backproject_filtered(A, q, w, progress)


def fbp(A: Projector, y: Any, filter: str = "ram-lak", cutoff: float = 1.0, progress: bool = True) -> Any:
    """Filtered backprojection of line integrals ``y`` in physical units (1/mm for ``y`` in mm × 1/mm).

    Works for parallel beams (2D and 3D), 2D fan beams (flat or equiangular detectors) and circular cone beams
    (flat or cylindrical detectors: FDK), with non-uniform angles, full scans and short scans (Parker weights,
    chosen automatically when a fan/cone orbit covers less than 2π). Helical orbits are refused.

    Args:
        A: the projector (its grid, geometry and basis define the reconstruction).
        y: projections of shape ``A.range_shape``: numpy, torch or Dr.Jit tensor (returned as the same kind;
            Dr.Jit tensors keep their AD graph, torch tensors that require gradients get them by autograd).
        filter: ``"ram-lak"``, ``"shepp-logan"``, ``"cosine"``, ``"hamming"`` or ``"hann"``.
        cutoff: the filter's cut-off frequency as a fraction of the Nyquist frequency, in (0, 1].
        progress: a tqdm bar over the launches of the backprojection (fan and cone beams).

    Returns:
        The reconstruction, shape ``A.domain_shape``.

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((64, 64), voxel_size=0.5)
        >>> pg = ct.parallel(np.linspace(0, np.pi, 90, endpoint=False), 96, 0.5)
        >>> A = ct.Projector(vg, pg, basis="voxel")
        >>> x = np.zeros(vg.shape, np.float32); x[16:48, 16:48] = 0.02  # 1/mm
        >>> round(float(ct.fbp(A, A(x))[24:40, 24:40].mean()), 3)
        0.02
    """
    if not isinstance(filter, str) or filter.lower() not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {filter!r}")
    if torch_requires_grad(y):  # torch autograd through Dr.Jit AD
        return torch_differentiable(A, lambda yy: fbp_tensor(A, yy, filter, cutoff, progress), y)
    tensor, kind = to_tensor(y, A.range_shape, A.types, "y (projections)")
    return from_tensor(fbp_tensor(A, tensor, filter, cutoff, progress), kind)


def fdk(A: Projector, y: Any, filter: str = "ram-lak", cutoff: float = 1.0, progress: bool = True) -> Any:
    """Feldkamp–Davis–Kress reconstruction of a circular cone-beam scan (flat or cylindrical detector), in
    physical units; short scans get Parker weights automatically. The same as :func:`fbp`, restricted to 3D
    cone beams.

    Example:
        >>> import numpy as np, drct as ct
        >>> vg = ct.VolumeGeometry((16, 32, 32), voxel_size=1.0)
        >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 60, endpoint=False), (24, 48), 1.5, 100.0, 150.0)
        >>> A = ct.Projector(vg, pg, basis="voxel")
        >>> x = np.zeros(vg.shape, np.float32); x[4:12, 8:24, 8:24] = 0.02
        >>> round(float(ct.fdk(A, A(x))[6:10, 12:20, 12:20].mean()), 3)
        0.02
    """
    pg = A.pg if isinstance(A, Projector) else None
    if pg is None or pg.ndim != 3 or getattr(pg, "beam", None) != "cone":
        raise ValueError(f"fdk needs a 3D cone-beam projector (ct.cone), got {pg!r}; use ct.fbp for other geometries")
    return fbp(A, y, filter, cutoff, progress)
