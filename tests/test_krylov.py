"""One CGLS and one power iteration (:mod:`drct.krylov`) for every caller: the algorithm against dense linear
algebra, and each caller (:func:`drct.recon.cgls`, :func:`drct.calibration.ridge_cgls`,
:func:`drct.outofcore.cgls`, ``A.norm()``, ``fista_tv``'s step) against its own earlier implementation, kept
here as the slow reference twin: bit-for-bit equal in deterministic mode (A.T's scatter-adds in a fixed order)."""

from __future__ import annotations

import itertools
from typing import Any

import drjit as dr
import numpy as np
import pytest

import drct as ct
from drct.calibration import ridge_cgls
from drct.calibration.lowpass import DetectorLowPass, WeightedOperator
from drct.krylov import CGLSOperations, cgls, power_iteration
from drct.outofcore import cgls as streamed_cgls
from drct.outofcore.solvers import _Streamed
from drct.recon._common import Problem, dot, item
from drct.recon.tv import _norm_squared

# -- the reference twins: the three CGLS loops drct had before drct.krylov (verbatim but for names) ----------------


def _recon_cgls_twin(A: Any, y: Any, niter: int, mask: Any = None) -> np.ndarray:
    p = Problem(A, y, "cgls")
    m = p.mask(mask)

    def restrict(v: Any) -> Any:
        return v if m is None else v * m

    x = restrict(p.start(None))
    r = p.y - p.forward(x)
    s = restrict(p.adjoint(r))
    d = s
    gamma = dot(s, s)
    dr.eval(x, r, s, gamma)
    for _ in range(niter):
        if item(gamma) == 0:
            break
        q = p.forward(d)
        qq = p.data_dot(q, q)
        if item(qq) == 0:
            break
        alpha = gamma / qq
        x = x + alpha * d
        r = r - A.replicate(alpha) * q
        s = restrict(p.adjoint(r))
        gamma_new = dot(s, s)
        d = s + (gamma_new / gamma) * d
        gamma = gamma_new
        dr.eval(x, r, s, d, gamma)
    return p.output(x)


def _ridge_cgls_twin(A: Any, y: np.ndarray, x0: np.ndarray, iterations: int, ridge: float) -> np.ndarray:
    x = np.array(x0, copy=True)  # float64 for a float64 operator: the reference
    lead = x.ndim - len(A.domain_shape)

    def inner(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if lead == 0:
            return np.asarray(float(np.vdot(a, b)))
        return np.sum(a.astype(np.float64) * b, axis=tuple(range(lead, a.ndim)))

    def times(c: np.ndarray, a: np.ndarray) -> np.ndarray:
        return c.astype(a.dtype).reshape(c.shape + (1,) * (a.ndim - lead)) * a

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)

    r = y - A(x)
    s = A.T(r) - ridge * x
    p = s.copy()
    gamma = inner(s, s)
    for _ in range(iterations):
        if not np.any(gamma > 0):
            break
        q = A(p)
        denom = inner(q, q) + ridge * inner(p, p)
        alpha = ratio(gamma, denom) * (gamma > 0)
        if not np.any(alpha != 0):
            break
        x += times(alpha, p)
        r -= times(alpha, q)
        s = A.T(r) - ridge * x
        gamma, previous = inner(s, s), gamma
        p = s + times(ratio(gamma, previous), p)
    return x


def _streamed_cgls_twin(vg: Any, pg: Any, path: Any, niter: int) -> np.ndarray:
    p = _Streamed("cgls", vg, pg, path, {"basis": "linear"}, "2MiB", None, False, ("prepared", "iterations"))
    t, run = p.t, p.run
    try:
        residuals = [run.array(f"residual{j}.npy", pg.shape) for j in (0, 1)]
        q_store = run.array("projection.npy", pg.shape)
        s = dr.zeros(t.Float, vg.size)
        for i in range(len(p.chunks)):
            y = p.data(i)
            p.write(residuals[0], i, y)
            s = s + p.adjoint(i, y)
            dr.eval(s)
        residuals[0].flush()
        x, d, gamma = dr.zeros(t.Float, vg.size), s, float(dr.sum(s * s)[0])
        for k in range(1, niter + 1):
            if gamma == 0:
                break
            qq = 0.0
            for i in range(len(p.chunks)):
                q = p.forward(i, d)
                p.write(q_store, i, q)
                qq += float(dr.sum(q * q)[0])
            if qq == 0:
                break
            alpha = gamma / qq
            x = x + alpha * d
            old, new = residuals[(k - 1) % 2], residuals[k % 2]
            s = dr.zeros(t.Float, vg.size)
            for i in range(len(p.chunks)):
                r = p.read(old, i) - alpha * p.read(q_store, i)
                p.write(new, i, r)
                s = s + p.adjoint(i, r)
                dr.eval(s)
            new.flush()
            gamma_new = float(dr.sum(s * s)[0])
            d = s + (gamma_new / gamma) * d
            gamma = gamma_new
            dr.eval(x, d)
        return p.volume(x)
    finally:
        p.close()


# -- the algorithm --------------------------------------------------------------------------------------------------


def _dense_problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(9, 5)), rng.normal(size=9)


def test_cgls_reaches_the_least_squares_solution_in_n_steps() -> None:
    M, y = _dense_problem()
    ops = CGLSOperations(lambda v: M @ v, lambda r: M.T @ r, np.dot)
    state = cgls(ops, np.zeros(5), y, 5)
    np.testing.assert_allclose(state.x, np.linalg.lstsq(M, y, rcond=None)[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(state.r, y - M @ state.x, atol=1e-12)
    np.testing.assert_allclose(state.s, M.T @ state.r, atol=1e-12)
    assert np.isclose(state.gamma, state.s @ state.s)


def test_cgls_with_a_ridge_solves_the_regularised_normal_equations() -> None:
    M, y = _dense_problem(1)
    ridge = 0.7
    ops = CGLSOperations(lambda v: M @ v, lambda r: M.T @ r, np.dot, ridge=ridge)
    x0 = np.linspace(-1, 1, 5)
    got = cgls(ops, x0, y, 5).x
    np.testing.assert_allclose(got, np.linalg.solve(M.T @ M + ridge * np.eye(5), M.T @ y), rtol=1e-9)


def test_cgls_stops_at_the_exact_solution_and_calls_back_per_iteration() -> None:
    M = np.eye(3)
    seen: list[int] = []
    ops = CGLSOperations(lambda v: M @ v, lambda r: M.T @ r, np.dot)
    state = cgls(ops, np.zeros(3), np.array([1.0, 2.0, 3.0]), 10, lambda k, s: seen.append(k))
    assert seen == [1] and np.array_equal(state.x, [1.0, 2.0, 3.0]) and state.gamma == 0  # one step, then done
    stopped = cgls(CGLSOperations(lambda v: v, lambda r: r, np.dot), np.zeros(2), np.ones(2), 10, lambda k, s: True)
    assert np.array_equal(stopped.x, [1.0, 1.0])


def test_power_iteration_is_a_lower_bound_that_grows_with_every_iteration() -> None:
    M, _ = _dense_problem(2)
    truth = np.linalg.norm(M, 2) ** 2
    start = np.random.default_rng(0).random(5) * 40  # far from unit length
    values = [power_iteration(lambda v: M.T @ (M @ v), start, np.linalg.norm, k) for k in range(1, 8)]
    assert all(0 < a <= b * (1 + 1e-12) for a, b in itertools.pairwise(values))  # Cauchy-Schwarz
    assert values[-1] <= truth * (1 + 1e-12)
    assert power_iteration(lambda v: M.T @ (M @ v), start, np.linalg.norm, 200) == pytest.approx(truth, rel=1e-9)


def test_power_iteration_refuses_no_iterations_and_a_zero_start() -> None:
    with pytest.raises(ValueError, match="iterations must be >= 1"):
        power_iteration(lambda v: v, np.ones(2), np.linalg.norm, 0)
    with pytest.raises(ValueError, match="start vector is zero"):
        power_iteration(lambda v: v, np.zeros(2), np.linalg.norm, 3)
    assert power_iteration(lambda v: 0 * v, np.ones(2), np.linalg.norm, 3) == 0.0


# -- every caller gives what it gave before -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small() -> tuple[ct.Projector, np.ndarray]:
    vg = ct.VolumeGeometry((20, 20))
    A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 16, endpoint=False), 28), basis="linear")
    noise = np.random.default_rng(0).normal(0, 0.1, A.range_shape).astype(np.float32)
    return A, A(ct.phantoms.shepp_logan(vg)) + noise


@pytest.mark.parametrize("masked", [False, True])
def test_recon_cgls_is_its_earlier_self(small: tuple[ct.Projector, np.ndarray], masked: bool) -> None:
    A, y = small
    mask = np.zeros(A.domain_shape, bool)
    mask[3:17, 2:18] = True
    with ct.deterministic():
        got = ct.recon.cgls(A, y, niter=8, progress=False, mask=mask if masked else None)
        twin = _recon_cgls_twin(A, y, 8, mask if masked else None)
    assert got.tobytes() == twin.tobytes()


@pytest.mark.parametrize("ridge", [0.0, 0.1])
@pytest.mark.parametrize("batch", [False, True])
def test_ridge_cgls_on_the_device_is_its_numpy_twin(
    small: tuple[ct.Projector, np.ndarray], ridge: float, batch: bool
) -> None:
    """The calibration's CGLS runs on Dr.Jit tensors (the low-pass by ``dr.convolve``, float64 inner products).
    Its numpy twin on a float64 operator (scipy's blur) is the reference: six float32 iterations stay within
    3e-4 of it (measured 4e-5 to 1.4e-4; the float32 twin, with float32 inner products, 2e-4 to 8e-4), and a
    problem with nothing to fit stays at zero."""
    A, y = small
    A64 = ct.Projector(A.vg, A.pg, basis=A.basis, dtype="float64")
    ys = np.stack([y, -0.5 * y, 0 * y]) if batch else y  # a batch with a problem that has nothing to fit
    x0 = np.zeros((*ys.shape[:-2], *A.domain_shape), np.float32)
    for weighted in (False, True):
        op, op64 = (WeightedOperator(B, DetectorLowPass(1.0, 1)) if weighted else B for B in (A, A64))
        with ct.deterministic():
            got = ridge_cgls(op, ys, x0, 6, ridge)
        reference = _ridge_cgls_twin(op64, ys.astype(np.float64), x0.astype(np.float64), 6, ridge)
        assert got.dtype == np.float32 and got.shape == reference.shape
        assert np.abs(got - reference).max() <= 3e-4 * np.abs(reference).max()
        if batch:
            assert not np.any(got[2])


def test_ridge_cgls_refuses_vectors_that_do_not_fit(
    small: tuple[ct.Projector, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    from drct import memory
    from drct.calibration import problem
    from drct.errors import MemoryBudgetError

    A, y = small
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    with pytest.raises(MemoryBudgetError, match=r"the CGLS vectors of a volume fit \(\(20, 20\) coefficients"):
        problem.ridge_cgls(A, y, np.zeros(A.domain_shape, np.float32), 2, 0.0)


def test_ridge_cgls_names_the_operator_it_needs() -> None:
    with pytest.raises(TypeError, match=r"needs a drct\.Projector or a WeightedOperator.*got function"):
        ridge_cgls(lambda v: v, np.ones(3, np.float32), np.zeros(3, np.float32), 2, 0.0)  # type: ignore[arg-type]


def test_streamed_cgls_is_its_earlier_self(tmp_path: Any) -> None:
    vg = ct.VolumeGeometry((6, 12, 12))
    pg = ct.cone(np.linspace(0, 2 * np.pi, 16, endpoint=False), (8, 16), 1.5, 60.0, 90.0)
    x = np.zeros(vg.shape, np.float32)
    x[1:5, 3:9, 3:9] = 0.02
    y = ct.Projector(vg, pg)(x) + np.random.default_rng(0).normal(0, 0.01, pg.shape).astype(np.float32)
    np.save(tmp_path / "y.npy", y)
    with ct.deterministic():
        got = streamed_cgls(vg, pg, tmp_path / "y.npy", niter=5, memory="2MiB", progress=False)
        twin = _streamed_cgls_twin(vg, pg, tmp_path / "y.npy", 5)
        # resumed after 2 of 5 iterations: the same iterates as one run
        streamed_cgls(vg, pg, tmp_path / "y.npy", niter=2, memory="2MiB", progress=False, checkpoint=tmp_path / "c")
        resumed = streamed_cgls(
            vg, pg, tmp_path / "y.npy", niter=5, memory="2MiB", progress=False, checkpoint=tmp_path / "c"
        )
    assert got.tobytes() == twin.tobytes() == resumed.tobytes()


def test_operator_norm_estimates_are_lower_bounds_from_the_first_iteration() -> None:
    """Regression: ``A.norm(iterations=1)`` was 2.9x ``‖A‖₂`` (an unnormalised random start), not the lower
    bound its docstring promised; ``fista_tv``'s ``||A||²`` is the same iteration on Dr.Jit arrays."""
    A = ct.Projector(ct.VolumeGeometry((12, 12)), ct.parallel(np.linspace(0, np.pi, 10, endpoint=False), 18))
    truth = float(np.linalg.norm(A.aslinearoperator().matmat(np.eye(A.vg.size)), 2))
    for k in (1, 2, 5):
        assert 0.8 * truth < A.norm(iterations=k) <= truth * (1 + 1e-9)
    lipschitz = _norm_squared(Problem(A, np.zeros(A.range_shape, np.float32), "fista_tv"))
    assert truth**2 < lipschitz <= 1.03 * truth**2  # the 2% margin above a converged estimate
