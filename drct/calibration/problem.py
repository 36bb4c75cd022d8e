"""One level of the calibration: its data, the low-pass weighted operator at a given geometry, the loss with its
reverse-mode gradient and forward-mode Jacobian, and the ridge-regularised CGLS that fits the volume."""

from __future__ import annotations

import copy
from typing import Any

import drjit as dr
import numpy as np

from ..backend import Types, types, upload_tensor
from ..geometry.projection import ProjectionGeometry
from ..krylov import CGLSOperations, cgls_iterate, cgls_start
from ..memory import require_memory
from ..projector import Projector
from .levels import Level
from .linalg import jacobian, seed_groups
from .lowpass import DetectorLowPass, WeightedOperator
from .projectors import projector


def ridge_cgls(
    A: Projector | WeightedOperator,
    y: np.ndarray,
    x0: np.ndarray,
    iterations: int,
    ridge: float,
    out: np.ndarray | None = None,
    residual: np.ndarray | None = None,
) -> np.ndarray:
    """Minimise ``|A x - y|^2 + ridge |x|^2`` by CGLS from ``x0`` (numpy in and out, no progress bar: the
    calibration's inner solver; :func:`drct.recon.cgls` is the user-facing one, without the ridge).

    The iteration runs on Dr.Jit tensors (``A.forward_tensor``, ``A.adjoint_tensor``, the low-pass of a
    :class:`~drct.calibration.lowpass.WeightedOperator` on the device too): the data, the start and the result
    cross to and from numpy once per call, not per iteration. Inner products are summed in float64; the step
    lengths travel to the host, where CGLS decides whether to go on.

    Leading dimensions of ``y`` and ``x0`` beyond the operator's shapes are independent problems solved together
    (one launch per operator application, each with its own step lengths): e.g. the volume's response to several
    Jacobian columns at once (:mod:`drct.calibration.diagnostics`).

    With ``out`` (a float32 array shaped like ``x0``) each iterate is copied into it, so that it holds the latest
    complete iterate even if the solve is interrupted. ``residual``, if known, is ``y - A x0`` (saves a
    forward projection).

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.calibration import ridge_cgls
        >>> vg = ct.VolumeGeometry((16, 16))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 24, endpoint=False), 24), basis="voxel")
        >>> y = A(np.ones(vg.shape, np.float32))
        >>> x = ridge_cgls(A, y, np.zeros(vg.shape, np.float32), 30, 0.0)
        >>> bool(np.abs(x - 1).max() < 0.05)
        True
        >>> xs = ridge_cgls(A, np.stack([y, 2 * y]), np.zeros((2, *vg.shape), np.float32), 30, 0.0)  # two at once
        >>> bool(np.abs(xs[1] - 2).max() < 0.1)
        True
    """
    if not all(hasattr(A, name) for name in ("forward_tensor", "adjoint_tensor", "types", "domain_shape")):
        raise TypeError(
            "ridge_cgls needs a drct.Projector or a WeightedOperator (forward_tensor, adjoint_tensor, types, "
            f"domain_shape), got {type(A).__name__}"
        )
    x0 = np.asarray(x0, dtype=np.float32)
    if out is not None:
        out[...] = x0
    ops = _RidgeOperations(A, ridge, x0.ndim - len(A.domain_shape), out)
    if ops.t.backend == "llvm":  # host memory: y, r, q and a blurred copy; x, s, p, Aᵀ r and a step
        need = (4 * np.size(y) + 5 * x0.size) * ops.t.itemsize
        require_memory(need, f"the CGLS vectors of a volume fit ({x0.shape} coefficients, {np.shape(y)} rays)")
    x = ops.tensor(x0)
    r = ops.tensor(y) - A.forward_tensor(x) if residual is None else ops.tensor(residual)
    x = cgls_iterate(ops, cgls_start(ops, x, r), range(iterations)).x
    if out is not None:  # set to x0 above and to each iterate by _RidgeOperations.advance: the solution already
        return out
    return np.asarray(x.numpy(), dtype=np.float32).reshape(x0.shape)


class _RidgeOperations(CGLSOperations[Any, Any]):
    """CGLS on Dr.Jit tensors of ``lead`` leading problem axes (0: one problem); the scalars (one per problem)
    are numpy float64 on the host, and go back to the device as evaluated arrays (a Python float would be
    compiled into the kernel as a literal: one compile per iteration)."""

    def __init__(self, A: Any, ridge: float, lead: int, out: np.ndarray | None) -> None:
        super().__init__(A.forward_tensor, A.adjoint_tensor, self._dot, ridge=ridge)
        self.t: Types = A.types
        self.lead = lead
        self.out = out

    def tensor(self, a: np.ndarray) -> Any:
        return upload_tensor(self.t, a)

    def _dot(self, a: Any, b: Any) -> np.ndarray:  # one inner product per problem, summed in float64
        wide: Any = dr.float64_array_t(type(a))
        axes = None if self.lead == 0 else tuple(range(self.lead, len(a.shape)))
        total = dr.sum(wide(a) * wide(b), axis=axes)
        return np.asarray(total.numpy(), dtype=np.float64).reshape(a.shape[: self.lead])

    def scale(self, c: np.ndarray, a: Any) -> Any:  # per-problem scalars times a tensor of problems
        factor = np.asarray(c, dtype=self.t.np_dtype).reshape(c.shape + (1,) * (len(a.shape) - self.lead))
        return self.tensor(factor) * a

    def divide(self, num: np.ndarray, den: np.ndarray) -> np.ndarray:  # 0 for a problem with nothing left
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)

    def nonzero(self, c: np.ndarray) -> bool:
        return bool(np.any(c > 0))

    def step_length(self, gamma: np.ndarray, denominator: np.ndarray) -> np.ndarray | None:
        alpha = self.divide(gamma, denominator) * (gamma > 0)
        return alpha if np.any(alpha != 0) else None

    def advance(self, x: Any, alpha: np.ndarray, p: Any) -> Any:
        x = x + self.scale(alpha, p)
        dr.eval(x)
        if self.out is not None:  # the latest complete iterate, should the next projection be interrupted
            self.out[...] = np.asarray(x.numpy()).reshape(self.out.shape)
        return x


def operator_norm(A: Projector) -> float:
    """An upper bound of ``|A^T A|`` (the largest entry of ``A^T A 1`` for a non-negative ``A``)."""
    ones = np.ones(A.domain_shape, np.float32)
    return float(np.max(A.T(A(ones))))


class LevelProblem:
    """One level: data, model, and the operator at a given theta.

    The data term is ``|L (A x - y)|^2`` with ``L`` a Gaussian low-pass across the detector: the smooth volume
    model cannot reproduce the data's finest detail (edges sharper than its basis), and left unweighted that
    mismatch pulls the geometry (see ``calibrate``'s ``lowpass``).
    """

    def __init__(
        self,
        level: Level,
        model: Any,
        basis: str,
        regularization: float,
        lowpass: float = 0.0,
        ridge: float | None = None,
    ) -> None:
        self.level = level
        self.model = model
        self.basis = basis
        dims = level.pg.ndim - 1 if isinstance(level.pg, ProjectionGeometry) else 0
        self.lowpass = DetectorLowPass(lowpass / level.factor if dims else 0.0, dims)
        self.y = self.lowpass(level.y)
        self.norm = max(float(np.vdot(self.y, self.y)), 1e-300)
        if ridge is None:  # λ relative to a bound of |AᵀA| (one forward and one adjoint projection to find)
            ridge = regularization * operator_norm(projector(level.vg, level.pg, basis))
        self.ridge = float(ridge)
        self.t = types("float32")
        self._operators: dict[bytes, WeightedOperator] = {}  # the last few thetas' operators
        self._residual: tuple[bytes, int, float, np.ndarray] | None = None  # the last residual and its key

    def __copy__(self) -> LevelProblem:
        out = object.__new__(LevelProblem)
        out.__dict__.update(self.__dict__)
        out._operators, out._residual = {}, None  # another weighting: nothing cached carries over
        return out

    def unweighted(self) -> LevelProblem:
        """The same level without the low-pass (the ridge, one forward and adjoint to find, is kept)."""
        return self.weighted(0.0)

    def weighted(self, sigma: float) -> LevelProblem:
        """The same level with another low-pass, ``sigma`` pixels of this level's detector (the ridge is kept)."""
        out = copy.copy(self)
        out.lowpass = DetectorLowPass(sigma, self.lowpass.ndim)
        out.y = out.lowpass(self.level.y)
        out.norm = max(float(np.vdot(out.y, out.y)), 1e-300)
        return out

    def operator(self, theta: np.ndarray) -> Any:
        """``L A(theta)``: the weighted operator the volume is fitted with (built once per theta: the last few
        are kept, since a step's residual, loss, refit and Jacobian all use the same one)."""
        key = np.asarray(theta, dtype=np.float64).tobytes()
        op = self._operators.pop(key, None)
        if op is None:
            op = WeightedOperator(projector(self.level.vg, self.model.final_geometry(theta), self.basis), self.lowpass)
        self._operators[key] = op  # most recent last
        while len(self._operators) > 3:
            del self._operators[next(iter(self._operators))]
        return op

    def residual(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``L (A(theta) x - y)``; the last one is kept (the loss of a step and the next step's Jacobian products
        need the same). Do not change ``x`` in place after passing it here."""
        key = (np.asarray(theta, dtype=np.float64).tobytes(), id(x), float(np.sum(x, dtype=np.float64)))
        if self._residual is not None and self._residual[:3] == key:
            return self._residual[3]
        r = self.operator(theta).forward_tensor(self.tensor(x)) - self.tensor(self.y)  # blurred on the device
        r = np.asarray(r.numpy(), dtype=np.float32).reshape(self.y.shape)
        self._residual = (*key, r)
        return r

    def loss(self, theta: np.ndarray, x: np.ndarray) -> float:
        r = self.residual(theta, x)
        return float(np.vdot(r, r)) / self.norm

    def tensor(self, x: np.ndarray) -> Any:
        return upload_tensor(self.t, x)

    def gradient(self, theta: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss and its reverse-mode gradient w.r.t. theta (the low-pass on the device, as in the volume fits)."""
        pg, leaves = self.model.geometry_reverse(theta)
        A = projector(self.level.vg, pg, self.basis)
        ax = A.forward_tensor(self.tensor(x))
        r = self.lowpass.tensor(dr.detach(ax)) - self.tensor(self.y)
        weight = dr.detach(self.lowpass.tensor(r).array) * (2.0 / self.norm)  # d loss / d (A x)
        dr.backward(dr.sum(ax.array * weight))
        residual = np.asarray(r.numpy(), dtype=np.float32)
        return float(np.vdot(residual, residual)) / self.norm, self.model.gradient(leaves)

    def weighted_columns(self, G: np.ndarray) -> np.ndarray:
        """Dense Jacobian columns ``(rays, k)`` through the low-pass, as the data term sees them."""
        if self.lowpass.sigma <= 0:
            return G
        blurred = self.lowpass(np.moveaxis(G, 1, 0).reshape(G.shape[1], *self.y.shape))
        return np.moveaxis(blurred.reshape(G.shape[1], -1), 0, 1)

    def jacobian(self, theta: np.ndarray, x: np.ndarray) -> Any:
        # the operator at theta serves the derivative march when both are built from the same vectors (named
        # geometries; a ray list's model builds its Dr.Jit rays differently from its numpy ones)
        A = self.operator(theta).A if isinstance(self.level.pg, ProjectionGeometry) else None
        cols = jacobian(self.model, theta, self.level.vg, self.basis, self.tensor(x), seed_groups(self.model), A)
        if self.lowpass.sigma > 0:
            cols.data = [self.lowpass(d.reshape(self.y.shape)).reshape(d.shape) for d in cols.data]
        return cols
