"""drct.autodiff: the one helper that runs Dr.Jit code under torch autograd (projector, FBP layer, solvers)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import drjit as dr
import pytest

torch = pytest.importorskip("torch")

from drct.autodiff import jvp, torch_apply, vjp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1] / "drct"


def _f(a: Any, b: Any) -> Any:  # Dr.Jit tensors; b may be None
    return a * a * dr.sin(a) if b is None else a * a * dr.sin(b) + 2.0 * b


def test_torch_apply_gradcheck_two_inputs_and_none() -> None:
    a = torch.rand(5, dtype=torch.float64, requires_grad=True)
    b = torch.rand(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: torch_apply(_f, "llvm", x, y), (a, b))
    assert torch.autograd.gradcheck(lambda x: torch_apply(_f, "llvm", x, None), (a,))


def test_torch_apply_backward_twice_and_only_wanted_inputs() -> None:
    a = torch.rand(4, dtype=torch.float64, requires_grad=True)
    b = torch.rand(4, dtype=torch.float64)  # no gradient wanted
    out = torch_apply(_f, "llvm", a, b)
    torch.testing.assert_close(out, a * a * torch.sin(b) + 2 * b)
    first = torch.autograd.grad(out.sum(), a, retain_graph=True)[0]
    second = torch.autograd.grad(out.sum(), a)[0]
    torch.testing.assert_close(first, 2 * a.detach() * torch.sin(b))
    torch.testing.assert_close(second, first)


def test_vjp_and_jvp_of_a_drjit_function() -> None:
    Float = dr.llvm.ad.Float64
    x = Float([0.5, 1.0, 2.0])
    y = Float([1.0, 3.0, -1.0])
    gx, gy = vjp(lambda p, q: p * q * q, [Float(x), Float(y)], [True, True], Float([1.0, 1.0, 1.0]))
    assert gx.numpy().tolist() == (y * y).numpy().tolist()
    assert gy.numpy().tolist() == (2 * x * y).numpy().tolist()
    (none,) = vjp(lambda p: p, [Float(x)], [False], Float([1.0, 1.0, 1.0]))
    assert none is None
    tangent = jvp(lambda p, q: p * q * q, [Float(x), Float(y)], [Float([1.0, 0.0, 0.0]), None])
    assert tangent.numpy().tolist() == [1.0, 0.0, 0.0]


def test_from_torch_refuses_other_dtypes_and_devices() -> None:
    with pytest.raises(TypeError, match="float32 or float64"):
        torch_apply(_f, "llvm", torch.ones(3, dtype=torch.int64), None)
    with pytest.raises(ValueError, match=r"cannot run on Dr\.Jit's 'cuda' backend"):
        torch_apply(_f, "cuda", torch.ones(3), None)


def test_one_autograd_function_per_purpose() -> None:
    """Only drct.autodiff (generic) and drct.torch._bridge (the projector, with double backward and jvp)
    define torch.autograd.Function subclasses; everything else goes through drct.autodiff."""
    owners = set()
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith("autograd.Function") for b in node.bases):
                owners.add(path.relative_to(ROOT).as_posix())
    assert owners == {"autodiff.py", "torch/_bridge.py"}
