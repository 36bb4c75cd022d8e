"""A forward projection whose geometry needs gradients keeps every ray's derivatives for the derivative pass that
follows (:meth:`drct.transform.Transform.project_keeping_partials`): its values are bit for bit those of the plain
forward projection, and the reverse and forward passes from what it kept equal those that march the volume again
(the reference twin, :meth:`Transform.keeps_partials` patched off). Finite differences of the same gradients are
checked in ``tests/test_gradients.py``, which now runs through this path."""

from __future__ import annotations

from typing import Any

import drjit as dr
import numpy as np
import pytest
from conftest import GEOMETRIES, volume_for

import drct as ct
from drct import transform
from drct.backend import drjit_module

mod = drjit_module()
KINDS = sorted(GEOMETRIES)


def vector_fields(pg: Any) -> tuple[str, ...]:
    """The names of the geometry's vectors (2D detectors have no ``det_v``)."""
    names = ("origins", "directions") if isinstance(pg, ct.RayGeometry) else ("src", "det", "det_u", "det_v")
    return tuple(name for name in names if getattr(pg, name) is not None)


class Calls:
    """Counts the forward projections that kept their rays' derivatives."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, keep: bool) -> None:
        self.kept = 0
        real = transform.Transform.project_keeping_partials

        def counted(engine: transform.Transform, *args: Any) -> Any:
            self.kept += 1
            return real(engine, *args)

        monkeypatch.setattr(transform.Transform, "project_keeping_partials", counted)
        if not keep:
            monkeypatch.setattr(transform.Transform, "keeps_partials", lambda engine, batch: False)


def derivatives_of(
    kind: str, basis: str, dtype: str, batch: int | None, seed: int = 0, stacked: bool = False
) -> dict[str, Any]:
    """``y = A(x)`` with gradients on ``x`` and every geometry vector, then the reverse pass of ``<w, y>`` and the
    forward pass along random tangents, as numpy arrays. A small ``chunk_rays`` spreads the rays over several
    launches (3D detectors march rows first: the kept chunks must line up with the derivative pass's).
    ``stacked``: the geometry's views are ``batch`` samples' own (``ct.Projector(..., batch=batch)``)."""
    rng = np.random.default_rng(seed)
    pg = GEOMETRIES[kind].with_drjit_vectors()
    fields = [getattr(pg, name) for name in vector_fields(pg)]
    vg = volume_for(pg)
    shape = vg.shape if batch is None else (batch, *vg.shape)
    tensor = mod.TensorXf64 if dtype == "float64" else mod.TensorXf
    x = tensor(rng.uniform(size=shape).astype(dtype))
    A = ct.Projector(vg, pg, basis=basis, dtype=dtype, chunk_rays=97, batch=batch if stacked else None)
    out: dict[str, Any] = {"plain": np.asarray(A(x.numpy()))}

    dr.enable_grad(x, *fields)
    y = A(x)
    out["y"] = y.numpy()
    w = type(y.array)(rng.uniform(size=dr.width(y.array)).astype(dtype))
    dr.backward(dr.sum(y.array * w))
    out["x_grad"] = dr.grad(x).numpy()
    out["vector_grads"] = [np.asarray(dr.grad(f)) for f in fields]

    dr.disable_grad(x, *fields)
    dr.enable_grad(x, *fields)
    y = A(x)
    dr.set_grad(x, tensor(rng.uniform(-1, 1, size=shape).astype(dtype)))
    for f in fields:
        dr.set_grad(f, type(f)(*[rng.uniform(-0.1, 0.1, size=dr.width(f)) for _ in range(len(f))]))
    dr.forward_to(y)
    out["jvp"] = dr.grad(y).numpy()
    return out


def assert_close(got: Any, want: Any, rtol: float, what: str) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = max(float(np.abs(want).max()), 1e-300)
    error = float(np.abs(got - want).max()) / scale
    assert error <= rtol, f"{what}: kept and re-marched differ by {error:.3g} of the largest value (allowed {rtol:g})"


def assert_kept_matches_re_marched(
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    basis: str,
    dtype: str,
    batch: int | None,
    rtol: tuple[float, float],
    **options: Any,
) -> None:
    """The same derivatives with the kept path patched off (the reference) and on: ``A(x)`` bit for bit the plain
    forward's and the reference's, the volume gradient within ``rtol[0]``, the geometry's and the forward-mode
    derivative within ``rtol[1]`` of their largest values."""
    with monkeypatch.context() as patch:
        reference = Calls(patch, keep=False)
        want = derivatives_of(kind, basis, dtype, batch, **options)
    assert reference.kept == 0
    calls = Calls(monkeypatch, keep=True)
    got = derivatives_of(kind, basis, dtype, batch, **options)
    assert calls.kept == 2  # the reverse and the forward pass's projections
    assert np.array_equal(got["y"], got["plain"]), "the forward projection that kept its derivatives changed A x"
    assert np.array_equal(got["y"], want["y"])
    assert_close(got["x_grad"], want["x_grad"], rtol[0], "volume gradient")
    for g, r, name in zip(got["vector_grads"], want["vector_grads"], vector_fields(GEOMETRIES[kind]), strict=True):
        assert_close(g, r, rtol[1], f"gradient w.r.t. {name}")
    assert_close(got["jvp"], want["jvp"], rtol[1], "forward-mode derivative")


@pytest.mark.parametrize("basis", ["linear", "bspline2", "bspline3"])
@pytest.mark.parametrize("kind", KINDS)
def test_kept_partials_give_the_re_marched_derivatives(kind: str, basis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_kept_matches_re_marched(monkeypatch, kind, basis, "float64", None, (1e-12, 1e-10))


@pytest.mark.parametrize("kind", ["cone_flat", "fan_flat", "parallel2d"])
def test_kept_partials_in_float32_and_over_a_batch(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_kept_matches_re_marched(monkeypatch, kind, "bspline2", "float32", 2, (1e-5, 1e-5), seed=3)


def test_kept_partials_with_a_geometry_per_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stacked samples (``batch=3`` over the helix's 9 views): each ray's coefficients offset by its sample."""
    assert_kept_matches_re_marched(monkeypatch, "helix", "bspline2", "float64", 3, (1e-12, 1e-10), stacked=True)


def test_the_box_basis_and_a_full_budget_march_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The box's derivatives come from its own march (jumps at the faces), and kept derivatives past
    KEPT_PARTIALS_BUDGET would crowd the memory: both take the re-marching path, with the same results."""
    calls = Calls(monkeypatch, keep=True)
    derivatives_of("cone_flat", "voxel", "float64", None)
    assert calls.kept == 0
    want = derivatives_of("cone_flat", "bspline2", "float64", None)
    assert calls.kept == 2
    monkeypatch.setattr(transform, "KEPT_PARTIALS_BUDGET", 0)
    got = derivatives_of("cone_flat", "bspline2", "float64", None)
    assert calls.kept == 2
    assert np.array_equal(got["y"], want["y"])
    assert_close(got["x_grad"], want["x_grad"], 1e-12, "volume gradient")
    for g, r in zip(got["vector_grads"], want["vector_grads"], strict=True):
        assert_close(g, r, 1e-10, "geometry gradient")
