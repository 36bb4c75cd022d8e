"""Operator algebra as ODL, deepinv and scipy users write it: ``A @ x``, ``A.H``, ``A @ B``, ``2 * A - B``,
``A.norm()`` and a :class:`scipy.sparse.linalg.LinearOperator` view.

Every drct operator (:class:`drct.Projector`, :class:`drct.emission.SPECTProjector`,
:class:`drct.pet.PETProjector`, their ``.T``) mixes in :class:`Algebra`; the combinations it builds are
operators again (call, ``.adjoint``, ``.T``, shapes), each with its exact adjoint. Inputs and outputs are what
the operators take: numpy arrays, torch tensors or Dr.Jit tensors.

Example:
    >>> import numpy as np, drct as ct
    >>> A = ct.Projector(ct.VolumeGeometry((16, 16)), ct.parallel(np.linspace(0, np.pi, 12, endpoint=False), 24))
    >>> x = ct.phantoms.shepp_logan(A.vg)
    >>> bool(np.array_equal(A @ x, A(x))), (A.H @ A).domain_shape
    (True, (16, 16))
    >>> normal = A.T @ A  # x -> A.T(A(x)), its own adjoint
    >>> bool(np.allclose(normal(x), A.T(A(x))))
    True
    >>> round(A.norm() / float(np.linalg.norm(A.aslinearoperator().matmat(np.eye(256)), 2)), 3)
    1.0
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .krylov import power_iteration


def is_operator(value: Any) -> bool:
    """Whether ``value`` is a linear operator in drct's sense (callable, ``adjoint``, both shapes).

    Example:
        >>> import numpy as np, drct as ct
        >>> A = ct.Projector(ct.VolumeGeometry((8, 8)), ct.parallel(np.linspace(0, np.pi, 6, endpoint=False), 12))
        >>> from drct.algebra import is_operator
        >>> is_operator(A), is_operator(A.T @ A), is_operator(np.eye(3))
        (True, True, False)
    """
    return callable(value) and all(hasattr(value, name) for name in ("adjoint", "domain_shape", "range_shape"))


def _require_shapes(what: str, expected: tuple[int, ...], got: tuple[int, ...]) -> None:
    if tuple(expected) != tuple(got):
        raise ValueError(f"{what}: shapes do not match, {tuple(expected)} against {tuple(got)}")


class Algebra:
    """The operator algebra mixed into every drct operator (see the module docstring). An operator defines
    ``__call__``, ``adjoint``, ``domain_shape`` and ``range_shape``.

    Example:
        >>> import numpy as np, drct as ct
        >>> A = ct.Projector(ct.VolumeGeometry((8, 8)), ct.parallel(np.linspace(0, np.pi, 6, endpoint=False), 12))
        >>> from drct.algebra import Algebra
        >>> isinstance(A, Algebra), (2 * A.T @ A - A.T @ A).domain_shape  # combinations are operators again
        (True, (8, 8))
    """

    domain_shape: tuple[int, ...]
    range_shape: tuple[int, ...]

    def __call__(self, x: Any) -> Any:  # pragma: no cover - every operator defines its own
        raise NotImplementedError

    def adjoint(self, y: Any) -> Any:  # pragma: no cover - every operator defines its own
        raise NotImplementedError

    @property
    def T(self) -> Any:
        """The adjoint operator (``A.T(y) == A.adjoint(y)``)."""
        return Transposed(self)

    @property
    def H(self) -> Any:
        """The adjoint operator (the same as :attr:`T`: drct's operators are real)."""
        return self.T

    def __matmul__(self, other: Any) -> Any:
        """``A @ B`` composes operators (``B`` first); ``A @ x`` applies ``A``."""
        return Composition(self, other) if is_operator(other) else self(other)

    def __mul__(self, scale: Any) -> Any:
        if not isinstance(scale, numbers.Real) or isinstance(scale, bool):
            return NotImplemented
        return Scaled(self, float(scale))

    __rmul__ = __mul__

    def __neg__(self) -> Any:
        return Scaled(self, -1.0)

    def __add__(self, other: Any) -> Any:
        return Sum(self, other, 1.0) if is_operator(other) else NotImplemented

    def __sub__(self, other: Any) -> Any:
        return Sum(self, other, -1.0) if is_operator(other) else NotImplemented

    def norm(self, iterations: int = 30, seed: int = 0) -> float:
        """``‖A‖₂``, the largest singular value, by the power iteration on ``Aᵀ A``
        (:func:`drct.krylov.power_iteration`) from a random start: an estimate from below that converges as the
        ratio of the two largest singular values; detached from any gradient.
        """
        if int(iterations) < 1:
            raise ValueError(f"norm: iterations must be >= 1, got {iterations}")

        def normal(v: np.ndarray) -> np.ndarray:
            return np.asarray(self.adjoint(np.asarray(self(v))), dtype=np.float64)

        start = np.random.default_rng(seed).random(self.domain_shape)
        return float(np.sqrt(power_iteration(normal, start, lambda w: float(np.linalg.norm(w)), iterations)))

    def aslinearoperator(self) -> Any:
        """A :class:`scipy.sparse.linalg.LinearOperator` on flattened arrays (``matvec`` is ``A``, ``rmatvec``
        ``A.T``), for scipy's solvers and eigenvalue routines."""
        from scipy.sparse.linalg import LinearOperator

        m, n = int(np.prod(self.range_shape)), int(np.prod(self.domain_shape))

        def matvec(v: np.ndarray) -> np.ndarray:
            return np.asarray(self(np.asarray(v).reshape(self.domain_shape)), dtype=np.float64).reshape(-1)

        def rmatvec(v: np.ndarray) -> np.ndarray:
            return np.asarray(self.adjoint(np.asarray(v).reshape(self.range_shape)), dtype=np.float64).reshape(-1)

        return LinearOperator((m, n), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)  # type: ignore[call-arg]


class Transposed(Algebra):
    """``A.T`` of any operator: calling it applies ``A.adjoint``; its ``.T`` is ``A`` again.

    Example:
        >>> import numpy as np, drct as ct
        >>> A = ct.Projector(ct.VolumeGeometry((8, 8)), ct.parallel(np.linspace(0, np.pi, 6, endpoint=False), 12))
        >>> y = np.ones(A.range_shape, np.float32)
        >>> type(A.T.T) is type(A), bool(np.allclose(A.H(y), A.adjoint(y)))
        (True, True)
    """

    def __init__(self, op: Any) -> None:
        self._op = op

    def __call__(self, y: Any) -> Any:
        return self._op.adjoint(y)

    def adjoint(self, x: Any) -> Any:
        return self._op(x)

    @property
    def T(self) -> Any:
        return self._op

    @property
    def domain_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return self._op.range_shape

    @property
    def range_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return self._op.domain_shape


class Composition(Algebra):
    """``A @ B``: ``x -> A(B(x))``, adjoint ``y -> B.T(A.T(y))``.

    Example:
        >>> import numpy as np, drct as ct
        >>> A = ct.Projector(ct.VolumeGeometry((8, 8)), ct.parallel(np.linspace(0, np.pi, 6, endpoint=False), 12))
        >>> x = ct.phantoms.shepp_logan(A.vg)
        >>> normal = A.T @ A  # a Composition
        >>> type(normal).__name__, bool(np.allclose(normal(x), A.T(A(x))))
        ('Composition', True)
    """

    def __init__(self, outer: Any, inner: Any) -> None:
        _require_shapes("A @ B needs A's domain to be B's range", outer.domain_shape, inner.range_shape)
        self.outer, self.inner = outer, inner

    def __call__(self, x: Any) -> Any:
        return self.outer(self.inner(x))

    def adjoint(self, y: Any) -> Any:
        return self.inner.adjoint(self.outer.adjoint(y))

    @property
    def domain_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return tuple(self.inner.domain_shape)

    @property
    def range_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return tuple(self.outer.range_shape)


class Scaled(Algebra):
    """``c * A``.

    Example:
        >>> import numpy as np, drct as ct
        >>> A = ct.Projector(ct.VolumeGeometry((8, 8)), ct.parallel(np.linspace(0, np.pi, 6, endpoint=False), 12))
        >>> x = ct.phantoms.shepp_logan(A.vg)
        >>> half = 0.5 * A
        >>> type(half).__name__, bool(np.allclose(half(x), 0.5 * A(x)))
        ('Scaled', True)
    """

    def __init__(self, op: Any, scale: float) -> None:
        self.op, self.scale = op, scale

    def __call__(self, x: Any) -> Any:
        return self.scale * self.op(x)

    def adjoint(self, y: Any) -> Any:
        return self.scale * self.op.adjoint(y)

    @property
    def domain_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return tuple(self.op.domain_shape)

    @property
    def range_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return tuple(self.op.range_shape)


class Sum(Algebra):
    """``A + s B`` (``s`` = 1 or -1).

    Example:
        >>> import numpy as np, drct as ct
        >>> A = ct.Projector(ct.VolumeGeometry((8, 8)), ct.parallel(np.linspace(0, np.pi, 6, endpoint=False), 12))
        >>> x = ct.phantoms.shepp_logan(A.vg)
        >>> N = A.T @ A
        >>> twice = N + N
        >>> type(twice).__name__, bool(np.allclose(twice(x), 2 * N(x), rtol=1e-5))
        ('Sum', True)
    """

    def __init__(self, first: Any, second: Any, sign: float) -> None:
        _require_shapes("A + B needs equal domains", first.domain_shape, second.domain_shape)
        _require_shapes("A + B needs equal ranges", first.range_shape, second.range_shape)
        self.first, self.second, self.sign = first, second, sign

    def __call__(self, x: Any) -> Any:
        return self.first(x) + self.sign * self.second(x)

    def adjoint(self, y: Any) -> Any:
        return self.first.adjoint(y) + self.sign * self.second.adjoint(y)

    @property
    def domain_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return tuple(self.first.domain_shape)

    @property
    def range_shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return tuple(self.first.range_shape)
