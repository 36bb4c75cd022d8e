"""drct.torch follows torch's conventions: dtypes and devices, pickle/torch.save, torch.func and torch.compile."""

from __future__ import annotations

import copy
import io
import pickle
from typing import Any

import numpy as np
import pytest
import torch
from conftest import requires_cuda

import drct as ct
import drct.torch  # makes ct.torch available

F64 = torch.float64
# torch.func and torch.compile import torch.jit.script internally, which warns in torch 2.13
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def _parallel(dtype: str = "float32") -> ct.Projector:
    vg = ct.VolumeGeometry((8, 8), voxel_size=1.0)
    return ct.Projector(
        vg, ct.parallel(np.linspace(0, np.pi, 6, endpoint=False), 11), basis="linear", dtype=dtype, deterministic=True
    )


def _fan(dtype: str = "float64") -> ct.Projector:
    vg = ct.VolumeGeometry((8, 8), voxel_size=1.0)
    pg = ct.fan(np.linspace(0, 2 * np.pi, 5, endpoint=False), 10, 1.2, 30.0, 50.0)
    return ct.Projector(vg, pg, basis="linear", dtype=dtype, deterministic=True)


def _rand(*shape: int, seed: int = 0, dtype: Any = F64) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _dense(A: ct.Projector) -> np.ndarray:
    """``A`` as a dense matrix (columns: the images of the unit vectors)."""
    return np.stack([A(e.reshape(A.domain_shape)).ravel() for e in np.eye(int(np.prod(A.domain_shape)))], 1)


def _modules(A: ct.Projector) -> dict[str, torch.nn.Module]:
    return {
        "Projection": ct.torch.Projection(A, geometry={"det_shift_u": 0.4}, learnable=True),
        "BackProjection": ct.torch.BackProjection(A, geometry={"det_shift_u": -0.2}),
        "FBP": ct.torch.FBP(A, filter="hann", learnable="response"),
    }


def _input(name: str, A: ct.Projector, dtype: Any) -> torch.Tensor:
    return _rand(2, *(A.domain_shape if name == "Projection" else A.range_shape), dtype=dtype)


# ---- dtypes and devices ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["Projection", "BackProjection", "FBP"])
def test_modules_compute_in_the_dtype_of_their_input(name: str) -> None:
    """.double()/.float()/.to(dtype) move buffers and parameters; the operator follows the input's dtype (before:
    a float32 module refused float64 input, even after .double())."""
    A32 = _parallel("float32")
    A64 = ct.Projector(A32.vg, A32.pg, basis="linear", dtype="float64")
    module = _modules(A32)[name]
    reference = _modules(A64)[name]
    for convert, dtype in (
        (lambda m: m.double(), F64),
        (lambda m: m.float(), torch.float32),
        (lambda m: m.to(F64), F64),
    ):
        assert convert(module) is module
        assert all(t.dtype == dtype for t in (*module.parameters(), *module.buffers()))
        for tdt in (torch.float32, F64):
            x = _input(name, A32, tdt)
            got = module(x).detach()
            assert got.dtype == tdt
            reference.load_state_dict({k: v.double() for k, v in module.state_dict().items()})  # same values
            want = reference(x.double()).to(tdt)
            tol = 1e-12 if tdt == F64 else 1e-5
            assert float((got - want).abs().max()) <= tol * float(want.abs().max())  # float32: its rounding only
    if name == "Projection":  # gradients reach the parameter in its own dtype
        module.double()
        module(_input(name, A32, torch.float32)).square().sum().backward()
        grad = module.det_shift_u.grad
        assert grad is not None and grad.dtype == F64 and float(grad.abs()) > 0


def test_fan_fbp_computes_in_the_dtype_of_its_input() -> None:
    """Fan-beam FBP (drct.recon's view-by-view backprojection) follows its input's dtype too."""
    A32 = _fan("float32")
    A64 = ct.Projector(A32.vg, A32.pg, basis="linear", dtype="float64", deterministic=True)
    y = _rand(2, *A32.range_shape)
    layer = ct.torch.FBP(A32).double()
    reference = ct.torch.FBP(A64)
    reference.load_state_dict(layer.state_dict())  # the same (float32-rounded) filter and weights
    want = reference(y)
    got = layer(y)
    assert got.dtype == F64 and float((got - want).abs().max()) <= 1e-12 * float(want.abs().max())
    low = layer.float()(y.float())
    assert low.dtype == torch.float32 and float((low.double() - want).abs().max()) <= 1e-5 * float(want.abs().max())


def test_fbp_buffers_do_not_share_memory_with_drct_recon() -> None:
    """Changing a float64 FBP's buffers in place (load_state_dict, an optimiser, mul_) leaves ct.fbp's weights of
    the same projector alone (before: the buffers were views of drct.recon's cached arrays)."""
    from drct.recon.fbp import weights_for

    A = _fan("float64")
    weights = weights_for(A)
    pre, post = weights.pre.copy(), weights.post.copy()
    layer = ct.torch.FBP(A)
    with torch.no_grad():
        layer.pre.mul_(2.0)
        layer.post.mul_(3.0)
    assert np.array_equal(weights_for(A).pre, pre) and np.array_equal(weights_for(A).post, post)


def test_unsupported_dtypes_and_devices_are_refused_clearly() -> None:
    A = _parallel()
    for module in _modules(A).values():
        core = A.domain_shape if isinstance(module, ct.torch.Projection) else A.range_shape
        for dtype in (torch.float16, torch.bfloat16, torch.int64, torch.complex64):
            with pytest.raises(TypeError, match=rf"dtype {dtype}; drct\.torch computes in torch\.float32 or torch"):
                module(torch.zeros(core, dtype=dtype))
        with pytest.raises(ValueError, match=r"torch device 'meta'; drct\.torch runs on 'cpu' tensors"):
            module(torch.zeros(core, device="meta"))
        module.to("meta")  # the module's tensors elsewhere than the input: named, with the fix
        with pytest.raises(ValueError, match=r"on torch device 'cpu', but \w+\.\w+ is on 'meta'; move the module"):
            module(torch.zeros(core))
    layer = ct.torch.Projection(A, geometry={"det_shift_u": 0.0})
    if not torch.cuda.is_available():  # torch's own error, as for any module with tensors
        with pytest.raises((AssertionError, RuntimeError), match="CUDA"):
            layer.to("cuda")


@requires_cuda
@pytest.mark.cuda
def test_modules_follow_cuda_tensors() -> None:
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    A = _parallel("float64")
    x = _rand(2, *A.domain_shape)
    layer = ct.torch.Projection(A, geometry={"det_shift_u": 0.4})
    cpu = layer(x)
    layer.cuda()
    np.testing.assert_allclose(layer(x.cuda()).cpu().numpy(), cpu.numpy(), rtol=1e-10)
    with pytest.raises(ValueError, match="move the module"):
        layer(x)
    with pytest.raises(ValueError, match="device 'cuda"):
        ct.torch.project(x.cuda(), A)  # the functional form keeps A's backend: a CUDA tensor into LLVM is refused


# ---- pickle and torch.save ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["Projection", "BackProjection", "FBP"])
def test_pickle_and_torch_save_rebuild_the_operator(name: str) -> None:
    """pickle, copy.deepcopy and torch.save of the whole module store A's geometry, basis and options (not
    Dr.Jit's state) and give identical outputs; twins built for other dtypes are not stored."""
    A = _fan("float32") if name != "FBP" else _parallel("float32")
    module = _modules(A)[name]
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(1.5)  # trained values, not the initial ones
    x = _input(name, A, torch.float32)
    want = module(x)
    module(x.double())  # builds the float64 twin
    data = pickle.dumps(module)
    assert b"drct.transform" not in data and b"drjit" not in data  # no engine state (before: it was pickled)
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    loaded = [pickle.loads(data), copy.deepcopy(module), torch.load(buffer, weights_only=False)]
    for other in loaded:
        assert other._twins == {} and other.A is not module.A
        assert (other.A.vg, other.A.basis, other.A.dtype, other.A.backend) == (A.vg, A.basis, A.dtype, A.backend)
        assert torch.equal(other(x), want)
        assert [n for n, _ in other.named_parameters()] == [n for n, _ in module.named_parameters()]


def test_a_module_saved_on_cuda_loads_on_a_cpu_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A projector stored with backend 'cuda' is rebuilt on the LLVM backend where CUDA is unavailable (the
    module follows its input's device anyway)."""
    import drct.torch._layers as layers

    module = ct.torch.Projection(_parallel(), geometry={"det_shift_u": 0.2})
    state = module.__getstate__()
    state["A"] = {**state["A"], "backend": "cuda"}
    monkeypatch.setattr(layers, "cuda_available", lambda: False)
    loaded = object.__new__(ct.torch.Projection)
    loaded.__setstate__(state)
    assert loaded.A.backend == "llvm"
    x = _rand(*module.A.domain_shape, dtype=torch.float32)
    assert torch.equal(loaded(x), module(x))


def test_state_dict_loads_with_weights_only() -> None:
    """torch.save(state_dict) loads with torch.load's default weights_only=True; a whole pickled module needs
    weights_only=False (the README says so)."""
    A = _parallel()
    trained = ct.torch.FBP(A, learnable=True)
    with torch.no_grad():
        trained.gain.copy_(torch.linspace(0.5, 1.5, trained.gain.numel()))
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    fresh = ct.torch.FBP(A, learnable=True)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    y = _rand(3, *A.range_shape, dtype=torch.float32)
    assert torch.equal(fresh(y), trained(y)) and not torch.equal(ct.torch.FBP(A)(y), trained(y))
    buffer = io.BytesIO()
    torch.save(trained, buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        torch.load(buffer)


# ---- torch.func -----------------------------------------------------------------------------------------------
def test_torch_func_transforms_of_the_volume_and_projections() -> None:
    """vmap, grad, jacrev, jacfwd, jvp and hessian give the exact matrix of A (before: all refused)."""
    A = _fan()
    M = _dense(A)
    x = _rand(3, *A.domain_shape)

    def P(v: torch.Tensor) -> torch.Tensor:
        return ct.torch.project(v, A)

    def PT(w: torch.Tensor) -> torch.Tensor:
        return ct.torch.backproject(w, A)

    n, m = M.shape[1], M.shape[0]
    assert torch.equal(torch.func.vmap(P)(x), P(x))
    assert torch.equal(torch.func.vmap(P, in_dims=1, out_dims=1)(x.transpose(0, 1)), P(x).transpose(0, 1))
    for jac in (torch.func.jacrev, torch.func.jacfwd):
        np.testing.assert_allclose(jac(P)(x[0]).reshape(m, n).numpy(), M, atol=1e-12)
        np.testing.assert_allclose(jac(PT)(P(x[0])).reshape(n, m).numpy(), M.T, atol=1e-12)
    g = torch.func.grad(lambda v: P(v).square().sum())(x[0])
    np.testing.assert_allclose(g.numpy().ravel(), 2 * M.T @ M @ x[0].numpy().ravel(), rtol=1e-10)
    t = _rand(*A.domain_shape, seed=1)
    _, tangent = torch.func.jvp(P, (x[0],), (t,))
    np.testing.assert_allclose(tangent.numpy().ravel(), M @ t.numpy().ravel(), rtol=1e-10, atol=1e-12)
    H = torch.func.hessian(lambda v: P(v).square().sum())(x[0]).reshape(n, n)
    np.testing.assert_allclose(H.numpy(), 2 * M.T @ M, atol=1e-10)


def test_torch_func_transforms_of_geometry_tensors() -> None:
    """First derivatives w.r.t. geometry under torch.func equal torch.autograd's; second ones refuse clearly."""
    A = _fan()
    x = _rand(*A.domain_shape)
    shift = torch.tensor(0.3, dtype=F64)

    def P(s: torch.Tensor) -> torch.Tensor:
        return ct.torch.project(x, A, det_shift_u=s)

    ref = shift.clone().requires_grad_()
    y = P(ref)
    (want,) = torch.autograd.grad(y, ref, torch.ones_like(y))
    assert float(torch.func.grad(lambda s: P(s).sum())(shift)) == pytest.approx(float(want), rel=1e-12)
    jr, jf = torch.func.jacrev(P)(shift), torch.func.jacfwd(P)(shift)
    np.testing.assert_allclose(jr.numpy(), jf.numpy(), rtol=1e-9, atol=1e-12)
    assert float(jr.sum()) == pytest.approx(float(want), rel=1e-9)
    shifts = torch.tensor([0.1, -0.4, 0.7], dtype=F64)
    assert torch.equal(torch.func.vmap(P)(shifts)[1], P(shifts[1]))
    xs = _rand(3, *A.domain_shape, seed=3)  # vmap over volume and shift = drct's per-sample geometry
    mapped = torch.func.vmap(lambda v, s: ct.torch.project(v, A, det_shift_u=s))(xs, shifts)
    np.testing.assert_allclose(mapped.numpy(), ct.torch.project(xs, A, det_shift_u=shifts).numpy(), rtol=1e-12)
    move = torch.zeros(A.pg.num_views, 2, dtype=F64)  # a vector parameter: 2 components per view
    jac = torch.func.jacrev(lambda m: ct.torch.project(x, A, motion_shift=m))(move)
    assert jac.shape == (*A.range_shape, *move.shape)
    ref_move = move.clone().requires_grad_()
    out = ct.torch.project(x, A, motion_shift=ref_move)
    (want_move,) = torch.autograd.grad(out, ref_move, torch.ones_like(out))
    np.testing.assert_allclose(jac.sum(dim=(0, 1)).numpy(), want_move.numpy(), rtol=1e-9, atol=1e-12)
    with pytest.raises(RuntimeError, match="second derivatives through geometry parameters are not supported"):
        torch.func.hessian(lambda s: P(s).square().sum())(shift)


def test_fbp_under_torch_func() -> None:
    """2D parallel FBP backprojects with A.T: torch.func works; fan/cone FBP (drct.recon's view-by-view
    backprojection) refuses with a message naming what works."""
    A = _parallel("float64")
    fbp = ct.torch.FBP(A)
    y = _rand(*A.range_shape)
    g = torch.func.grad(lambda y: fbp(y).square().sum())(y)
    ref = y.clone().requires_grad_()
    fbp(ref).square().sum().backward()
    assert ref.grad is not None
    np.testing.assert_allclose(g.numpy(), ref.grad.numpy(), rtol=1e-12)
    fan = ct.torch.FBP(_fan())
    with pytest.raises(RuntimeError, match=r"FBP of fan and cone beams .* no torch\.func rule"):
        torch.func.grad(lambda y: fan(y).square().sum())(_rand(*fan.A.range_shape))


# ---- torch.compile --------------------------------------------------------------------------------------------
def _compiled_loss_matches(backend: str, projectors: int) -> None:
    A = _fan("float64")
    layer = ct.torch.FBP(_parallel("float64"), learnable=True)
    geometry = ct.torch.Projection(A, geometry={"det_shift_u": 0.2}, learnable=True)
    sinograms = _rand(2, 6, 11, seed=5)

    def loss(x: torch.Tensor, shift: torch.Tensor, B: ct.Projector) -> torch.Tensor:
        y = ct.torch.project(x, B, det_shift_u=shift, pixel_scale=1.01)
        back = ct.torch.backproject(torch.relu(y), B)
        return (back - x).square().sum() + geometry(x).square().sum() + layer(sinograms).square().sum()

    x = _rand(2, *A.domain_shape).requires_grad_()
    shift = torch.tensor([0.3, -0.1], dtype=F64, requires_grad=True)
    leaves = (x, shift, geometry.det_shift_u, layer.gain)
    torch._dynamo.reset()
    compiled = torch.compile(loss, backend=backend, fullgraph=True)  # drct's operators inside the graph
    turned = ct.Projector(A.vg, ct.fan(np.linspace(0.4, 2 * np.pi + 0.4, 5, endpoint=False), 10, 1.2, 30.0, 50.0))
    for B in (A, ct.Projector(turned.vg, turned.pg, basis="linear", dtype="float64", deterministic=True))[:projectors]:
        want = loss(x, shift, B)
        got = compiled(x, shift, B)  # another projector: traced again, not the first one's graph
        assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-12)
        for g, w in zip(torch.autograd.grad(got, leaves), torch.autograd.grad(want, leaves), strict=True):
            np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-10, atol=1e-12)
    fan = ct.torch.FBP(A)  # drct.recon's view-by-view backprojection stays between graphs
    y = _rand(*A.range_shape)
    torch._dynamo.reset()
    np.testing.assert_allclose(torch.compile(fan, backend=backend)(y).numpy(), fan(y).numpy(), rtol=1e-12)
    torch._dynamo.reset()
    with pytest.raises(Exception, match=r"drct's Dr\.Jit kernels run outside torch\.compile's graphs"):
        torch.compile(fan, backend=backend, fullgraph=True)(y)


def test_torch_compile_traces_drct_operators() -> None:
    """torch.compile(fullgraph=True) traces project, backproject, Projection and 2D parallel FBP as custom
    operators: same values and gradients (volume, geometry tensors, module parameters); fan-beam FBP is a graph
    break and fullgraph=True says why (before: every drct call failed fullgraph with 'nb_func.__call__')."""
    _compiled_loss_matches("eager", projectors=1)


def test_torch_compile_of_a_module_in_another_dtype() -> None:
    """A module's projector twin for a new dtype is built between graphs: compiling works, fullgraph=True says to
    call the module once first, and then works."""
    A = _parallel("float32")
    x = _rand(2, *A.domain_shape)  # float64 into a float32-built module
    layer = ct.torch.Projection(A, geometry={"det_shift_u": 0.1})
    torch._dynamo.reset()
    with pytest.raises(Exception, match=r"call the module once on such an input before torch\.compile"):
        torch.compile(layer, backend="eager", fullgraph=True)(x)
    torch._dynamo.reset()
    got = torch.compile(layer, backend="eager")(x)  # builds the twin, a graph break
    torch._dynamo.reset()
    again = torch.compile(layer, backend="eager", fullgraph=True)(x)
    assert got.dtype == F64 and torch.equal(got, layer(x)) and torch.equal(again, got)


def test_torch_func_inside_torch_compile() -> None:
    """torch.func transforms inside a compiled function run drct eagerly between graphs, with exact results (a
    custom operator under torch.func.jvp gave a zero tangent, silently: the compiled path is never taken inside a
    transform); fullgraph=True refuses with drct's reason."""
    A = _fan()
    x, t = _rand(2, *A.domain_shape), _rand(2, *A.domain_shape, seed=1)

    def P(v: torch.Tensor) -> torch.Tensor:
        return ct.torch.project(v, A)

    cases = {
        "jvp": (lambda v: torch.func.jvp(P, (v,), (t,))[1], P(t)),
        "vmap": (lambda v: torch.func.vmap(P)(v), P(x)),
        "grad": (lambda v: torch.func.grad(lambda u: P(u).square().sum())(v), 2 * ct.torch.backproject(P(x), A)),
    }
    for name, (fn, want) in cases.items():
        torch._dynamo.reset()
        got = torch.compile(fn, backend="eager")(x)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-12, atol=1e-12, err_msg=name)
    torch._dynamo.reset()
    with pytest.raises(Exception, match=r"drct's Dr\.Jit kernels run outside torch\.compile's graphs"):
        torch.compile(cases["jvp"][0], backend="eager", fullgraph=True)(x)


@pytest.mark.slow
def test_torch_compile_aot_autograd() -> None:
    """The same through AOTAutograd (aot_eager), which runs the operators' fake shapes and registered gradients,
    and a second projector, which is traced anew (not run through the first one's graph); inductor works too but
    compiles for a minute on 2 loaded cores."""
    _compiled_loss_matches("aot_eager", projectors=2)


def test_mixed_second_derivative_volume_and_geometry() -> None:
    """d/ds of the volume gradient (create_graph=True) runs through A.T's geometry derivative: it matches central
    differences (before: refused). The pure second derivative in s stays refused."""
    A = _fan()
    x, w = _rand(*A.domain_shape).requires_grad_(), _rand(*A.domain_shape, seed=2)

    def volume_gradient(s: torch.Tensor, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
        loss = ct.torch.project(x, A, det_shift_u=s).square().sum() / 2
        gx, gs = torch.autograd.grad(loss, (x, s), create_graph=create_graph)
        return (gx * w).sum(), gs

    s = torch.tensor(0.3, dtype=F64, requires_grad=True)
    mixed, gs = volume_gradient(s, create_graph=True)
    (got,) = torch.autograd.grad(mixed, s)
    h = 1e-5
    plus, minus = (
        float(volume_gradient(torch.tensor(0.3 + d, dtype=F64, requires_grad=True), False)[0]) for d in (h, -h)
    )
    assert float(got) == pytest.approx((plus - minus) / (2 * h), rel=1e-6)
    with pytest.raises(RuntimeError, match="second derivatives through geometry"):
        torch.autograd.grad(gs, s)
