"""drct.torch keeps a forward projection's ray derivatives for the geometry gradient that follows
(:func:`drct.kept.keeping_partials` in the forward, :func:`drct.kept.supplying_partials` in the backward):
a training step marches the volume once with derivatives and once for ``A.T``, instead of a plain forward, a
derivative march in the backward's re-run and ``A.T``. The reference twin is the re-run (``keeps`` patched off):
the gradients must agree with it and the forward must give the plain projection's bits."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import torch

import drct as ct
import drct.torch  # makes ct.torch available
import drct.torch._functional as functional
from drct import kept as kept_module
from drct import transform
from drct.kernels import derivatives
from drct.torch._bridge import KEPT

F64 = torch.float64


class Marches:
    """Counts the derivative marches (the kept forward's and the re-run's) and the plain forward marches."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, keep: bool = True) -> None:
        self.derivative = self.plain = 0
        real_der, real_project = derivatives.ray_derivatives, transform.Transform.project

        def counted_der(*args: Any, **kwargs: Any) -> Any:
            self.derivative += 1
            return real_der(*args, **kwargs)

        def counted_project(engine: transform.Transform, *args: Any) -> Any:
            self.plain += 1
            return real_project(engine, *args)

        monkeypatch.setattr(derivatives, "ray_derivatives", counted_der)
        monkeypatch.setattr(transform.Transform, "project", counted_project)
        if not keep:
            monkeypatch.setattr(functional, "keeps", lambda adjoint, comps: False)


def cone(basis: str = "bspline2", dtype: str = "float64", **options: Any) -> ct.Projector:
    vg = ct.VolumeGeometry((9, 10, 8), voxel_size=(1.1, 0.9, 1.0), center=(0.2, -0.1, 0.3))
    pg = ct.cone(np.linspace(0, 2 * np.pi, 7, endpoint=False) + 0.1, (9, 11), 1.6, 40.0, 80.0)
    return ct.Projector(vg, pg, basis=basis, dtype=dtype, **options)


def step(
    A: ct.Projector, seed: int = 0, volume: bool = True, batch: tuple[int, ...] = (), backward: bool = True
) -> dict[str, Any]:
    """One training step: ``loss = <w, A(x; shift, per-view angles, roll)>`` backpropagated; the projection and
    every gradient as numpy (``backward=False``: the projection alone, under ``torch.no_grad``)."""
    g = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, A.dtype)
    x = torch.rand(*batch, *A.domain_shape, generator=g, dtype=dtype).requires_grad_(volume)
    shift = torch.tensor(0.3, dtype=dtype, requires_grad=True)
    turns = (torch.rand(7, generator=g, dtype=dtype) * 0.02).requires_grad_()
    roll = torch.tensor(0.01, dtype=dtype, requires_grad=True)
    if not backward:
        with torch.no_grad():
            return {"y": ct.torch.project(x, A, det_shift_u=shift, angle_offset=turns, det_roll=roll).numpy()}
    y = ct.torch.project(x, A, det_shift_u=shift, angle_offset=turns, det_roll=roll)
    assert y._base is not None and not hasattr(y._base, KEPT), "the kept derivatives must not stay on the output"
    w = torch.rand(y.shape, generator=g, dtype=dtype)
    (y * w).sum().backward()
    out = {"y": y.detach().numpy().copy(), "shift": shift.grad, "turns": turns.grad, "roll": roll.grad}
    if volume:
        out["x"] = x.grad
    return {k: np.asarray(v) for k, v in out.items()}


def assert_same_gradients(got: dict[str, Any], want: dict[str, Any], rtol: float) -> None:
    for name in want:
        if name == "y":
            continue
        scale = max(float(np.abs(want[name]).max()), 1e-300)
        error = float(np.abs(got[name] - want[name]).max()) / scale
        assert error <= rtol, f"gradient of {name}: kept and re-run differ by {error:.3g} (allowed {rtol:g})"


@pytest.mark.parametrize("basis", ["linear", "bspline2", "bspline3"])
def test_a_step_marches_the_volume_once_with_derivatives(basis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kept: one derivative march (the forward) and no plain forward; re-run: a plain forward and a derivative
    march in the backward. The projections are the same bits, the gradients agree to rounding (the kept path
    adds the same products in another grouping)."""
    A = cone(basis)
    plain = step(A, backward=False)["y"]
    with monkeypatch.context() as patch:
        reference = Marches(patch, keep=False)
        want = step(A)
    assert (reference.plain, reference.derivative) == (1, 1)
    marches = Marches(monkeypatch)
    got = step(A)
    assert (marches.plain, marches.derivative) == (0, 1), "the backward marched the volume again"
    assert np.array_equal(got["y"], want["y"]) and np.array_equal(got["y"], plain)
    assert_same_gradients(got, want, 1e-11)


def test_float32_batch_and_geometry_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch of volumes in float32, and gradients to the geometry alone (the volume a constant)."""
    A = cone("bspline2", "float32")
    for volume in (True, False):
        with monkeypatch.context() as patch:
            Marches(patch, keep=False)
            want = step(A, seed=4, volume=volume, batch=(2,))
        marches = Marches(monkeypatch)
        got = step(A, seed=4, volume=volume, batch=(2,))
        assert (marches.plain, marches.derivative) == (0, 1)
        assert np.array_equal(got["y"], want["y"])
        assert_same_gradients(got, want, 2e-5)
        monkeypatch.undo()


def test_a_geometry_per_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-sample shifts stack the samples' geometries into one projector (``batch=3``): the kept derivatives
    are that launch's, and the gradients those of the re-run."""
    A = cone()

    def sample_step() -> dict[str, Any]:
        g = torch.Generator().manual_seed(7)
        x = torch.rand(3, *A.domain_shape, generator=g, dtype=F64).requires_grad_()
        shifts = torch.tensor([0.1, -0.2, 0.3], dtype=F64, requires_grad=True)
        y = ct.torch.project(x, A, det_shift_u=shifts, det_roll=0.01)
        (y * torch.rand(y.shape, generator=g, dtype=F64)).sum().backward()
        return {"y": y.detach().numpy().copy(), "x": np.asarray(x.grad), "shifts": np.asarray(shifts.grad)}

    with monkeypatch.context() as patch:
        Marches(patch, keep=False)
        want = sample_step()
    marches = Marches(monkeypatch)
    got = sample_step()
    assert (marches.plain, marches.derivative) == (0, 1)
    assert np.array_equal(got["y"], want["y"])
    assert_same_gradients(got, want, 1e-11)


def test_retain_graph_backward_twice_gives_the_same_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kept derivatives are plain arrays: a second backward through the same graph uses them again (in a
    fixed summation order, ``ct.deterministic()``, the two are the same bits)."""
    A = cone()
    x = torch.rand(*A.domain_shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    shift = torch.tensor(0.2, dtype=F64, requires_grad=True)
    marches = Marches(monkeypatch)
    with ct.deterministic():
        loss = (ct.torch.project(x, A, det_shift_u=shift) ** 2).sum()
        loss.backward(retain_graph=True)
        first = float(shift.grad)
        loss.backward()
    assert float(shift.grad) == 2 * first
    assert (marches.plain, marches.derivative) == (0, 1)


def test_torch_owns_the_kept_derivatives_and_frees_them_after_the_backward() -> None:
    """The kept derivatives are tensors saved for backward (7 per chunk in 3D, one value per ray), so torch frees
    them once the backward has run, and checkpointing and saved-tensor hooks see them."""
    A = cone()
    x = torch.rand(*A.domain_shape, generator=torch.Generator().manual_seed(3), dtype=F64)
    shift = torch.tensor(0.2, dtype=F64, requires_grad=True)
    y = ct.torch.project(x, A, det_shift_u=shift)
    node = y.grad_fn
    while type(node).__name__ != "_TransformBackward":
        node = node.next_functions[0][0]
    saved = node.saved_tensors
    assert len(saved) > 2 and (len(saved) - 2) % 7 == 0, [tuple(t.shape) for t in saved]  # volume, shift, kept
    assert sum(t.numel() for t in saved[2:]) == 7 * y.numel()
    y.sum().backward()
    with pytest.raises(RuntimeError, match=r"freed|backward through the graph a second time"):
        node.saved_tensors  # noqa: B018 - the access itself is the test


def test_create_graph_and_a_gradient_of_the_volume_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """``create_graph=True`` gives the same first derivatives (the geometry's are first-order), and asking for the
    volume's gradient alone while the geometry requires one is ``A.T`` of the seed."""
    A = cone()
    g = torch.Generator().manual_seed(8)
    x = torch.rand(*A.domain_shape, generator=g, dtype=F64).requires_grad_()
    w = torch.rand(A.range_shape, generator=g, dtype=F64)
    shift = torch.tensor(0.25, dtype=F64, requires_grad=True)
    with monkeypatch.context() as patch:
        Marches(patch, keep=False)
        want = torch.autograd.grad((ct.torch.project(x, A, det_shift_u=shift) * w).sum(), [x, shift])
    got = torch.autograd.grad((ct.torch.project(x, A, det_shift_u=shift) * w).sum(), [x, shift], create_graph=True)
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, rtol=1e-11, atol=0.0)
    (only,) = torch.autograd.grad((ct.torch.project(x, A, det_shift_u=shift) * w).sum(), [x])
    assert torch.allclose(only, ct.torch.backproject(w, A, det_shift_u=0.25), rtol=1e-12, atol=0.0)


def test_nothing_is_kept_where_no_geometry_gradient_follows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under no_grad, with only the volume needing a gradient, for the voxel basis (its derivatives come from its
    own march) and past the memory budget, the forward is the plain march."""
    A = cone()
    x = torch.rand(*A.domain_shape, generator=torch.Generator().manual_seed(2), dtype=F64)
    shift = torch.tensor(0.2, dtype=F64, requires_grad=True)
    marches = Marches(monkeypatch)
    with torch.no_grad():
        ct.torch.project(x, A, det_shift_u=shift)
    ct.torch.project(x.clone().requires_grad_(), A, det_shift_u=0.2)
    ct.torch.project(x, cone("voxel"), det_shift_u=shift)
    monkeypatch.setattr(transform, "KEPT_PARTIALS_BUDGET", 0)
    y = ct.torch.project(x, A, det_shift_u=shift)
    assert (marches.plain, marches.derivative) == (4, 0)
    y.sum().backward()  # nothing was kept: the backward re-runs with its own derivative march
    assert marches.derivative == 1 and shift.grad is not None


def test_supplied_partials_of_another_projection_raise() -> None:
    """Partials handed to a projection they were not kept for (other chunks, other batch) raise, naming both."""
    A, other = cone(), cone(chunk_rays=50)
    x = A.types.Tensor(np.ones(A.domain_shape))
    with kept_module.keeping_partials() as kept:
        other.forward_tensor(x)
    assert len(kept) == 1
    pg = A.pg.with_drjit_vectors()
    moved = ct.Projector(A.vg, pg, basis=A.basis, dtype=A.dtype)
    import drjit as dr

    dr.enable_grad(pg.src)
    with kept_module.supplying_partials(kept), pytest.raises(ValueError, match="do not belong to this projection"):
        moved.forward_tensor(x)


def test_threads_keep_their_own_partials() -> None:
    """Two threads taking steps with different geometries at once get the gradients of their own steps."""
    A = cone()
    want = {seed: step(A, seed=seed) for seed in (5, 6)}
    got: dict[int, Any] = {}
    errors: list[BaseException] = []

    def run(seed: int) -> None:
        try:
            for _ in range(2):
                got[seed] = step(A, seed=seed)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (5, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for seed in (5, 6):
        assert np.array_equal(got[seed]["y"], want[seed]["y"])
        assert_same_gradients(got[seed], want[seed], 1e-12)
