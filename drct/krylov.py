"""Krylov iterations written once for every kind of array drct solves with: CGLS and the power iteration.

drct runs the same two algorithms on Dr.Jit arrays (:func:`drct.recon.cgls`, ``fista_tv``'s step size), on
numpy arrays of one or several problems at once (:func:`drct.calibration.ridge_cgls`, :meth:`drct.Projector.norm`)
and on projections streamed from disk (:func:`drct.outofcore.cgls`). The iteration lives here; each caller says
how ``A``, ``Aᵀ`` and the inner products are done with a :class:`CGLSOperations` (a subclass fuses passes over
streamed data or keeps arrays in place), and how the power iteration applies ``Aᵀ A`` and measures a norm.

CGLS minimises ``|A x - y|² + ridge |x|²`` (conjugate gradients on ``(Aᵀ A + ridge) x = Aᵀ y``, written on the
residual ``r = y - A x`` so that ``Aᵀ A`` is never formed); ``|A x - y|`` decreases monotonically when
``ridge = 0``.

Example:
    >>> import numpy as np
    >>> from drct.krylov import CGLSOperations, cgls, power_iteration
    >>> M = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    >>> y = np.array([1.0, 2.0, 3.0])
    >>> ops = CGLSOperations(lambda v: M @ v, lambda r: M.T @ r, np.dot)
    >>> x = cgls(ops, np.zeros(2), y, 2).x  # n = 2 unknowns: exact after 2 iterations
    >>> bool(np.allclose(x, np.linalg.lstsq(M, y, rcond=None)[0]))
    True
    >>> value = power_iteration(lambda v: M.T @ (M @ v), np.ones(2), np.linalg.norm, 50)
    >>> bool(np.isclose(value, np.linalg.norm(M, 2) ** 2))
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

X = TypeVar("X")  # the unknowns' space (volumes)
Y = TypeVar("Y")  # the data space (projections)
V = TypeVar("V")


@dataclass
class CGLSState(Generic[X, Y]):
    """Where CGLS stands: the iterate ``x``, its residual ``r = y - A x``, the search direction ``p``,
    ``gamma = |s|²`` (per problem for batched arrays) and ``s = Aᵀ r - ridge x``, the normal equations' residual
    (the gradient of the loss; None in a state rebuilt without it, e.g. a resumed run: only ``gamma`` is needed
    to go on).

    Example:
        >>> import numpy as np
        >>> from drct.krylov import CGLSOperations, cgls_start
        >>> M = np.array([[1.0, 0.0], [0.0, 2.0]])
        >>> state = cgls_start(CGLSOperations(lambda v: M @ v, lambda r: M.T @ r, np.dot), np.zeros(2), np.ones(2))
        >>> state.p.tolist(), float(state.gamma)  # the first direction is Aᵀ r
        ([1.0, 2.0], 5.0)
    """

    x: X
    r: Y
    p: X
    gamma: Any
    s: X | None = None


class CGLSOperations(Generic[X, Y]):
    """How CGLS applies ``A`` and ``Aᵀ`` and forms inner products.

    Args:
        forward: ``x -> A x``.
        adjoint: ``r -> Aᵀ r``.
        dot: the inner product of two unknowns (a scalar, or one per problem of a batch).
        data_dot: the inner product of two data arrays (default ``dot``).
        ridge: the weight of ``|x|²`` (0: plain least squares).

    The scalars ``dot`` returns only meet ``+``, ``*``, :meth:`divide` and :meth:`nonzero`, so they can be
    floats, width-1 Dr.Jit arrays (gradients flow through the iteration) or numpy arrays of one scalar per
    problem. Override :meth:`project` and :meth:`descend` to fuse passes over the data, :meth:`scale` for
    scalars that need a shape, :meth:`advance` to update ``x`` in place.

    Example:
        >>> import numpy as np
        >>> from drct.krylov import CGLSOperations, cgls
        >>> M = np.array([[2.0, 0.0], [0.0, 1.0]])
        >>> ops = CGLSOperations(lambda v: M @ v, lambda r: M.T @ r, np.dot, ridge=1.0)
        >>> cgls(ops, np.zeros(2), np.array([2.0, 1.0]), 2).x.round(6).tolist()  # (MᵀM + I)⁻¹ Mᵀ y
        [0.8, 0.5]
    """

    def __init__(
        self,
        forward: Callable[[X], Y],
        adjoint: Callable[[Y], X],
        dot: Callable[[X, X], Any],
        data_dot: Callable[[Y, Y], Any] | None = None,
        *,
        ridge: float = 0.0,
    ) -> None:
        self.forward = forward
        self.adjoint = adjoint
        self.dot = dot
        self.data_dot: Callable[[Y, Y], Any] = data_dot if data_dot is not None else dot  # type: ignore[assignment]
        self.ridge = float(ridge)

    def scale(self, c: Any, v: Any) -> Any:
        """``c v`` for a scalar (or per-problem scalars) ``c``."""
        return c * v

    def divide(self, a: Any, b: Any) -> Any:
        """``a / b`` of two scalars (a batch: per problem)."""
        return a / b

    def nonzero(self, c: Any) -> bool:
        """Whether a scalar is non-zero (a batch: whether any problem's is)."""
        return bool(c != 0)

    def step_length(self, gamma: Any, denominator: Any) -> Any | None:
        """``gamma / denominator``, or None when no problem can move (CGLS stops)."""
        return self.divide(gamma, denominator) if self.nonzero(denominator) else None

    def project(self, p: X) -> tuple[Y, Any]:
        """``q = A p`` and ``|q|²``."""
        q = self.forward(p)
        return q, self.data_dot(q, q)

    def descend(self, r: Y, alpha: Any, q: Y) -> tuple[Y, X]:
        """The next residual ``r - alpha q`` and its backprojection ``Aᵀ (r - alpha q)``."""
        r = r - self.scale(alpha, q)
        return r, self.adjoint(r)

    def advance(self, x: X, alpha: Any, p: X) -> X:
        """The next iterate ``x + alpha p``."""
        return x + self.scale(alpha, p)

    def normal_residual(self, backprojection: X, x: X) -> X:
        """``s = Aᵀ r - ridge x`` from the backprojection ``Aᵀ r``."""
        return backprojection - self.ridge * x if self.ridge else backprojection  # type: ignore[operator]


def cgls_start(ops: CGLSOperations[X, Y], x: X, r: Y) -> CGLSState[X, Y]:
    """The state of CGLS at ``x`` with residual ``r = y - A x``: the first direction is the steepest descent.

    Example:
        >>> import numpy as np
        >>> from drct.krylov import CGLSOperations, cgls_start
        >>> ops = CGLSOperations(lambda v: 3.0 * v, lambda r: 3.0 * r, np.dot)
        >>> cgls_start(ops, np.zeros(1), np.ones(1)).s.tolist()
        [3.0]
    """
    s = ops.normal_residual(ops.adjoint(r), x)
    return CGLSState(x, r, s, ops.dot(s, s), s)


def cgls_iterate(
    ops: CGLSOperations[X, Y],
    state: CGLSState[X, Y],
    iterations: Iterable[int],
    callback: Callable[[int, CGLSState[X, Y]], Any] | None = None,
) -> CGLSState[X, Y]:
    """CGLS iterations from ``state``, one per item of ``iterations`` (the numbers handed to ``callback``: a
    ``range``, a progress bar, the iterations left of a resumed run).

    Stops early when ``gamma`` or the step's denominator is zero (the exact solution, or nothing left to fit);
    ``callback(k, state)`` after iteration ``k``: True stops.

    Example:
        >>> import numpy as np
        >>> from drct.krylov import CGLSOperations, cgls_iterate, cgls_start
        >>> M = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
        >>> ops = CGLSOperations(lambda v: M @ v, lambda r: M.T @ r, np.dot)
        >>> y = np.array([1.0, 2.0, 3.0])
        >>> state = cgls_iterate(ops, cgls_start(ops, np.zeros(2), y), range(1, 3))
        >>> bool(np.allclose(state.x, np.linalg.lstsq(M, y, rcond=None)[0]))
        True
    """
    for k in iterations:
        if not ops.nonzero(state.gamma):
            break
        q, qq = ops.project(state.p)
        denominator = qq + ops.ridge * ops.dot(state.p, state.p) if ops.ridge else qq
        alpha = ops.step_length(state.gamma, denominator)
        if alpha is None:
            break
        x = ops.advance(state.x, alpha, state.p)
        r, backprojection = ops.descend(state.r, alpha, q)
        s = ops.normal_residual(backprojection, x)
        gamma = ops.dot(s, s)
        state = CGLSState(x, r, s + ops.scale(ops.divide(gamma, state.gamma), state.p), gamma, s)
        if callback is not None and callback(k, state):
            break
    return state


def cgls(
    ops: CGLSOperations[X, Y],
    x0: X,
    y: Y,
    iterations: int,
    callback: Callable[[int, CGLSState[X, Y]], Any] | None = None,
) -> CGLSState[X, Y]:
    """``iterations`` CGLS iterations for ``A x ≈ y`` from ``x0`` (:func:`cgls_start` and :func:`cgls_iterate`
    with iterations numbered from 1); the returned state's ``x`` is the solution.

    Example:
        >>> import numpy as np
        >>> from drct.krylov import CGLSOperations, cgls
        >>> ops = CGLSOperations(lambda v: 2.0 * v, lambda r: 2.0 * r, np.dot)
        >>> cgls(ops, np.zeros(3), np.array([2.0, 4.0, 6.0]), 1).x.tolist()
        [1.0, 2.0, 3.0]
    """
    state = cgls_start(ops, x0, y - ops.forward(x0))  # type: ignore[operator]
    return cgls_iterate(ops, state, range(1, iterations + 1), callback)


def power_iteration(normal: Callable[[V], V], v: V, norm: Callable[[V], float], iterations: int) -> float:
    """The largest eigenvalue of a symmetric positive semi-definite operator (``Aᵀ A``: ``‖A‖₂²``) by the power
    iteration from ``v`` (normalised first, so every estimate ``|normal(v)|`` with ``|v| = 1`` is a lower
    bound, converging as the ratio of the two largest eigenvalues).

    Args:
        normal: ``v -> Aᵀ A v``.
        v: the start (not orthogonal to the leading eigenvector: a random one).
        norm: the Euclidean norm of a vector, as a float.
        iterations: applications of ``normal`` (>= 1).

    Returns:
        The estimate; 0.0 when ``normal`` maps ``v`` to zero.

    Raises:
        ValueError: ``iterations < 1`` or a zero start.

    Example:
        >>> import numpy as np
        >>> from drct.krylov import power_iteration
        >>> M = np.diag([3.0, 1.0])
        >>> round(float(power_iteration(lambda v: M.T @ (M @ v), np.ones(2), np.linalg.norm, 40)), 6)  # ‖M‖₂² = 9
        9.0
    """
    if int(iterations) < 1:
        raise ValueError(f"power iteration: iterations must be >= 1, got {iterations}")
    length = norm(v)
    if length == 0:
        raise ValueError("power iteration: the start vector is zero")
    v = v / length  # type: ignore[operator]
    value = 0.0
    for _ in range(int(iterations)):
        w = normal(v)
        value = norm(w)
        if value == 0.0:
            return 0.0
        v = w / value  # type: ignore[operator]
    return value


__all__ = ["CGLSOperations", "CGLSState", "cgls", "cgls_iterate", "cgls_start", "power_iteration"]
