"""``ctt.FBP(A, learnable="redundancy")``: FBP/FDK with learnable short-scan (redundancy) weights.

The layer keeps the cosine and angular weights of :func:`drct.recon.weights.fbp_weights` and replaces Parker's
factor by an ``nn.Parameter``; set to Parker's weights it must be exactly ``ctt.FBP(A)``, and its gradient
must match finite differences (2D fan and 3D cone), since PYRO-NN's weight-learning experiment trains it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import drct as ct
import drct.torch as ctt
from drct.recon.weights import fbp_weights

SHORT = np.pi + 0.9  # a short scan: π plus more than the fan angle of the geometries below


def _fan(views: int = 12) -> tuple[ct.VolumeGeometry, ct.ProjectionGeometry]:
    return ct.VolumeGeometry((10, 10)), ct.fan(np.linspace(0, SHORT, views, endpoint=False), 14, 1.0, 30.0, 60.0)


def _cone(views: int = 10) -> tuple[ct.VolumeGeometry, ct.ProjectionGeometry]:
    pg = ct.cone(np.linspace(0, SHORT, views, endpoint=False), (6, 14), 1.0, 30.0, 60.0)
    return ct.VolumeGeometry((4, 10, 10)), pg


def _parker(layer: Any, vg: ct.VolumeGeometry, pg: ct.ProjectionGeometry) -> Any:
    red = fbp_weights(pg, vg).redundancy
    assert red is not None
    return torch.as_tensor(red[:, :1] if red.ndim == 3 else red, dtype=layer.redundancy.dtype)


@pytest.mark.parametrize("make", [_fan, _cone], ids=["fan2d", "cone3d"])
def test_parker_weights_reproduce_fbp(make: Any) -> None:
    """With Parker's weights in the parameter the layer is ctt.FBP (which uses them itself); at the initial
    ones it is not (the overlap of a short scan counted twice)."""
    vg, pg = make()
    A = ct.Projector(vg, pg, dtype="float64")
    y = torch.as_tensor(A(ct.phantoms.shepp_logan(vg)))
    ref = ctt.FBP(A)(y)
    layer = ctt.FBP(A, learnable="redundancy")
    assert [name for name, _ in layer.named_parameters()] == ["redundancy"]
    assert layer.redundancy is not None and bool((layer.redundancy == 1).all())
    ones = layer(y).detach()
    with torch.no_grad():
        layer.redundancy.copy_(_parker(layer, vg, pg))
    got = layer(y).detach()
    assert float((got - ref).abs().max()) <= 1e-12 * float(ref.abs().max())
    assert float((ones - ref).abs().max()) > 0.05 * float(ref.abs().max())


@pytest.mark.parametrize("make", [_fan, _cone], ids=["fan2d", "cone3d"])
def test_redundancy_gradient_matches_finite_differences(make: Any) -> None:
    """torch.autograd.gradcheck w.r.t. the redundancy weights and the data, through drct's backprojection."""
    vg, pg = make()
    A = ct.Projector(vg, pg, dtype="float64")
    layer = ctt.FBP(A, learnable="redundancy")
    assert layer.redundancy is not None
    g = torch.Generator().manual_seed(1)
    start = (0.5 + torch.rand(layer.redundancy.shape, generator=g, dtype=torch.float64)).requires_grad_()
    y = torch.rand(2, *A.range_shape, generator=g, dtype=torch.float64).requires_grad_()

    def fn(data: Any, weights: Any) -> Any:
        return torch.func.functional_call(layer, {"redundancy": weights}, (data,))

    assert torch.autograd.gradcheck(fn, (y, start), eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True, nondet_tol=1e-10)


def test_one_step_of_gradient_descent_lowers_the_image_error() -> None:
    """The gradient points downhill: one small step on the redundancy weights from ones lowers the image MSE."""
    vg, pg = _fan(24)
    A = ct.Projector(vg, pg)
    x = torch.as_tensor(ct.phantoms.shepp_logan(vg, radius=4.5)) * 0.02
    y = torch.as_tensor(A(x.numpy()))
    layer = ctt.FBP(A, learnable="redundancy")
    loss = (layer(y) - x).square().mean()
    loss.backward()
    assert layer.redundancy is not None and layer.redundancy.grad is not None
    with torch.no_grad():
        layer.redundancy -= 0.1 * layer.redundancy.grad / layer.redundancy.grad.abs().max()
        after = (layer(y) - x).square().mean()
    assert float(after) < float(loss.detach())


def test_redundancy_needs_a_short_scan() -> None:
    """Full fan scans and parallel beams have no Parker weights: a clear error, not a silent no-op."""
    vg = ct.VolumeGeometry((10, 10))
    full = ct.fan(np.linspace(0, 2 * np.pi, 12, endpoint=False), 14, 1.0, 30.0, 60.0)
    parallel = ct.parallel(np.linspace(0, np.pi, 12, endpoint=False), 14)
    for pg in (full, parallel):
        with pytest.raises(ValueError, match="short scan"):
            ctt.FBP(ct.Projector(vg, pg), learnable="redundancy")
    with pytest.raises(ValueError, match="redundancy"):
        ctt.FBP(ct.Projector(vg, full), learnable="weights")
