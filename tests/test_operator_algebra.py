"""Operator algebra (drct.algebra): every combination applies what it says and has its exact adjoint."""

from __future__ import annotations

import numpy as np
import pytest

import drct as ct


@pytest.fixture(scope="module")
def ops() -> tuple[ct.Projector, ct.Projector]:
    vg = ct.VolumeGeometry((12, 10))
    A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 9, endpoint=False), 16), basis="linear", dtype="float64")
    B = ct.Projector(vg, ct.fan(np.linspace(0, 2 * np.pi, 9, endpoint=False), 16, 1.5, 40.0, 80.0), dtype="float64")
    return A, B


def dense(op: object) -> np.ndarray:
    """The matrix of an operator, column by column."""
    lin = op.aslinearoperator()  # type: ignore[attr-defined]
    return lin.matmat(np.eye(lin.shape[1]))


def test_matmul_applies_and_composes(ops: tuple[ct.Projector, ct.Projector]) -> None:
    A, B = ops
    x = np.random.default_rng(0).random(A.domain_shape)
    assert np.array_equal(A @ x, A(x))
    assert np.array_equal(A.H(A(x)), A.T(A(x)))
    normal = A.T @ A
    assert normal.domain_shape == normal.range_shape == A.domain_shape
    np.testing.assert_allclose(normal(x), A.T(A(x)), rtol=1e-12)
    np.testing.assert_allclose(dense(normal), dense(A).T @ dense(A), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose((B.T @ B @ A.T @ A)(x), B.T(B(A.T(A(x)))), rtol=1e-12)
    with pytest.raises(ValueError, match="shapes do not match"):
        _ = B @ A  # A's range (views, bins) is not B's domain (the volume)


def test_combinations_are_the_matrices_and_their_transposes(ops: tuple[ct.Projector, ct.Projector]) -> None:
    A, B = ops
    MA, MB = dense(A), dense(B)
    cases = {
        "2A - B": (2 * A - B, 2 * MA - MB),
        "-A + B": (-A + B, -MA + MB),
        "A.T": (A.T, MA.T),
        "0.5 * A.T @ B": (0.5 * A.T @ B, 0.5 * MA.T @ MB),
    }
    for name, (op, matrix) in cases.items():
        np.testing.assert_allclose(dense(op), matrix, rtol=1e-10, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(dense(op.T), matrix.T, rtol=1e-10, atol=1e-12, err_msg=f"({name}).T")
    with pytest.raises(ValueError, match="equal ranges"):
        _ = A + ct.Projector(A.vg, ct.parallel(np.linspace(0, np.pi, 5, endpoint=False), 16))


def test_norm_is_the_largest_singular_value(ops: tuple[ct.Projector, ct.Projector]) -> None:
    A, _ = ops
    truth = float(np.linalg.norm(dense(A), 2))
    assert abs(A.norm(iterations=50) - truth) <= 1e-6 * truth
    assert abs(A.T.norm(iterations=50) - truth) <= 1e-6 * truth
    assert abs((3 * A).norm(iterations=50) - 3 * truth) <= 1e-6 * truth
    with pytest.raises(ValueError, match="iterations"):
        A.norm(iterations=0)


def test_scipy_solves_through_the_linear_operator_view(ops: tuple[ct.Projector, ct.Projector]) -> None:
    from scipy.sparse.linalg import lsqr

    A, _ = ops
    x = ct.phantoms.shepp_logan(A.vg)
    lin = A.aslinearoperator()
    assert lin.shape == (int(np.prod(A.range_shape)), int(np.prod(A.domain_shape)))
    np.testing.assert_allclose(lin.rmatvec(A(x).ravel()), A.T(A(x)).ravel(), rtol=1e-12)
    solution = lsqr(lin, A(x).ravel(), atol=1e-12, btol=1e-12, iter_lim=500)[0]
    residual = np.linalg.norm(A(solution.reshape(A.domain_shape)) - A(x)) / np.linalg.norm(A(x))
    assert residual < 1e-4  # from 1 at the zero start: scipy iterates through A and A.T
