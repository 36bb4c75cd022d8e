"""Gradients w.r.t. the volume and every geometry parameter: reverse and forward mode against central finite
differences in float64, and <J v, w> = <v, J^T w>."""

from __future__ import annotations

import drjit as dr
import numpy as np
import pytest
from conftest import GEOMETRIES, requires_cuda, slow_cases, volume_for

import drct as ct
from drct.backend import drjit_module
from drct.geometry.perturb import ONLY_3D, ONLY_CONE, PARAMETERS

mod = drjit_module()
GRAD_BASES = ("linear", "bspline2", "bspline3")
DETECTOR_KINDS = [k for k, g in GEOMETRIES.items() if isinstance(g, ct.ProjectionGeometry)]
RAY_KINDS = [k for k, g in GEOMETRIES.items() if isinstance(g, ct.RayGeometry)]


def nominal_parameters(pg: ct.ProjectionGeometry, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every applicable parameter at a small, non-zero value (per view for the motion)."""
    out = {}
    for name in PARAMETERS:
        if (pg.ndim == 2 and name in ONLY_3D) or (pg.beam == "parallel" and name in ONLY_CONE):
            continue
        if name == "det_yaw" or name.startswith("axis") or name in ("det_roll", "det_pitch"):
            out[name] = np.array([rng.uniform(-0.03, 0.03)])
        elif name == "pixel_scale":
            out[name] = np.array([1.0 + rng.uniform(-0.02, 0.02)])
        elif name == "motion_rotation":
            out[name] = rng.uniform(-0.02, 0.02, size=(pg.num_views, 3 if pg.ndim == 3 else 1))
        elif name == "motion_shift":
            out[name] = rng.uniform(-0.3, 0.3, size=(pg.num_views, pg.ndim))
        else:
            out[name] = np.array([rng.uniform(-0.4, 0.4)])
    return out


def as_drjit(value: np.ndarray):
    if value.ndim == 2 and value.shape[1] > 1:
        return (mod.Array2f64 if value.shape[1] == 2 else mod.Array3f64)(*[np.ascontiguousarray(c) for c in value.T])
    return mod.Float64(np.ascontiguousarray(value.reshape(-1)))


class Problem:
    """L(params, x) = <w, A(params) x> for one geometry, volume and basis, in float64."""

    def __init__(self, kind: str, basis: str, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.pg = GEOMETRIES[kind]
        self.vg = volume_for(self.pg)
        self.basis = basis
        self.x = rng.uniform(size=self.vg.shape)
        self.w = mod.Float64(rng.uniform(size=int(np.prod(self.pg.shape))))
        self.params = nominal_parameters(self.pg, rng) if isinstance(self.pg, ct.ProjectionGeometry) else {}

    def loss(self, params: dict, x, geometry=None):
        pg = geometry or (self.pg.perturb(**params) if params else self.pg)
        y = ct.Projector(self.vg, pg, basis=self.basis, dtype="float64")(x)
        return dr.sum(y.array * self.w)

    def value(self, params: dict[str, np.ndarray], x: np.ndarray) -> float:
        return float(self.loss(params, mod.TensorXf64(x)).numpy()[0])


def central_difference(f, h: float) -> float:
    return (f(h) - f(-h)) / (2 * h)


def bumped(params: dict[str, np.ndarray], name: str, index: tuple, h: float) -> dict[str, np.ndarray]:
    out = {k: v.copy() for k, v in params.items()}
    out[name][index] += h
    return out


def probe_index(value: np.ndarray) -> tuple:
    return (1, value.shape[1] - 1) if value.ndim == 2 else (0,)


@pytest.mark.parametrize("basis", GRAD_BASES)
@pytest.mark.parametrize("kind", slow_cases(DETECTOR_KINDS, {k for k in DETECTOR_KINDS if GEOMETRIES[k].ndim == 3}))
def test_named_parameters_reverse_and_forward(kind: str, basis: str) -> None:
    prob = Problem(kind, basis)
    # reverse mode: one backward pass gives every parameter's gradient and the volume's
    params = {k: as_drjit(v) for k, v in prob.params.items()}
    x = mod.TensorXf64(prob.x)
    dr.enable_grad(x, *params.values())
    dr.backward(prob.loss(params, x))
    h = 1e-5
    for name, value in prob.params.items():
        index = probe_index(value)
        fd = central_difference(
            lambda e, name=name, index=index: prob.value(bumped(prob.params, name, index, e), prob.x), h
        )
        grad = dr.grad(params[name])
        reverse = float(
            np.asarray(grad[index[1]].numpy() if value.ndim == 2 and value.shape[1] > 1 else grad.numpy())[
                index[0] if value.ndim == 2 else 0
            ]
        )
        # forward mode: every parameter differentiable (one graph, cached kernels), tangent 1 on that one entry
        tangent_params = {k: as_drjit(v) for k, v in prob.params.items()}
        dr.enable_grad(*tangent_params.values())
        for k, v in prob.params.items():
            seed = np.zeros_like(v)
            if k == name:
                seed[index] = 1.0
            dr.set_grad(tangent_params[k], as_drjit(seed))
        loss = prob.loss(tangent_params, mod.TensorXf64(prob.x))
        dr.forward_to(loss)
        forward = float(dr.grad(loss).numpy()[0])
        scale = max(abs(fd), 1e-3)
        assert abs(reverse - fd) <= 1e-4 * scale, f"{name}: reverse {reverse} vs FD {fd}"
        assert abs(forward - fd) <= 1e-4 * scale, f"{name}: forward {forward} vs FD {fd}"
    # the volume: d/dε L(x + ε v) = <grad_x, v>
    v = np.random.default_rng(1).normal(size=prob.x.shape)
    fd = central_difference(lambda e: prob.value(prob.params, prob.x + e * v), 1e-3)
    assert abs(float(np.sum(dr.grad(x).numpy() * v)) - fd) <= 1e-6 * abs(fd)


@pytest.mark.parametrize("basis", GRAD_BASES)
@pytest.mark.parametrize("kind", [*RAY_KINDS, "vectors3d_cone", "fan_curved"])
def test_raw_vectors_reverse_mode(kind: str, basis: str) -> None:
    """Gradients w.r.t. the vector arrays themselves (``dr.enable_grad(pg.det)``) and ray lists."""
    prob = Problem(kind, basis, seed=2)
    pg = prob.pg.with_drjit_vectors()
    names = ("origins", "directions") if isinstance(pg, ct.RayGeometry) else ("src", "det", "det_u")
    for name in names:
        dr.enable_grad(getattr(pg, name))
    dr.backward(prob.loss({}, mod.TensorXf64(prob.x), geometry=pg))
    rows = prob.pg.to_vectors()
    width = prob.pg.ndim
    for k, name in enumerate(names):
        for view, axis in ((0, 0), (rows.shape[0] - 1, width - 1)):
            grad = float(dr.grad(getattr(pg, name))[axis].numpy()[view])

            def moved(e: float, view=view, axis=axis, k=k) -> float:
                r = rows.copy()
                r[view, k * width + axis] += e
                if isinstance(prob.pg, ct.RayGeometry):
                    geometry = ct.rays(r[:, :width], r[:, width:])
                else:
                    geometry = ct.from_vectors(r, prob.pg.det_shape, prob.pg.beam, prob.pg.curved)
                return float(prob.loss({}, mod.TensorXf64(prob.x), geometry=geometry).numpy()[0])

            fd = central_difference(moved, 1e-5)
            assert abs(grad - fd) <= 1e-4 * max(abs(fd), 1e-3), f"{name}[{view}, {axis}]: {grad} vs {fd}"


@pytest.mark.parametrize("kind", ["cone_flat", "fan_flat", "parallel3d", "helix"])
def test_jvp_and_vjp_are_transposes(kind: str) -> None:
    """<J v, w> = <v, J^T w> for the map (volume, parameters) -> projections."""
    prob = Problem(kind, "bspline2", seed=3)
    rng = np.random.default_rng(4)
    tangents = {k: rng.normal(size=v.shape) for k, v in prob.params.items()}
    tangent_x = rng.normal(size=prob.x.shape)
    w = mod.Float64(rng.normal(size=int(np.prod(prob.pg.shape))))

    def projections(params, x):
        return ct.Projector(prob.vg, prob.pg.perturb(**params), basis="bspline2", dtype="float64")(x).array

    params = {k: as_drjit(v) for k, v in prob.params.items()}
    x = mod.TensorXf64(prob.x)
    dr.enable_grad(x, *params.values())
    for k, p in params.items():
        dr.set_grad(p, as_drjit(tangents[k]))
    dr.set_grad(x, mod.TensorXf64(tangent_x))
    y = projections(params, x)
    dr.forward_to(y)
    jv_w = float(dr.sum(dr.grad(y) * w).numpy()[0])

    params = {k: as_drjit(v) for k, v in prob.params.items()}
    x = mod.TensorXf64(prob.x)
    dr.enable_grad(x, *params.values())
    dr.backward(dr.sum(projections(params, x) * w))
    v_jtw = float(np.sum(dr.grad(x).numpy() * tangent_x))
    for k, p in params.items():
        g = dr.grad(p)
        g = np.stack([c.numpy() for c in g], axis=1) if dr.size_v(g) in (2, 3) and dr.depth_v(g) == 2 else g.numpy()
        v_jtw += float(np.sum(np.asarray(g).reshape(tangents[k].shape) * tangents[k]))
    assert abs(jv_w - v_jtw) <= 1e-6 * max(abs(jv_w), 1.0), (jv_w, v_jtw)


def test_voxel_basis_gives_the_derivative_between_faces() -> None:
    """The box basis is piecewise constant: its geometry derivative is the sum of jumps at crossed faces, which
    matches finite differences wherever the rays do not pass a grid edge within the FD step."""
    prob = Problem("fan_flat", "voxel", seed=5)
    shift = mod.Float64(0.123)
    x = mod.TensorXf64(prob.x)
    dr.enable_grad(shift)
    dr.backward(prob.loss({"det_shift_u": shift}, x))
    fd = central_difference(lambda e: prob.value({"det_shift_u": np.array([0.123 + e])}, prob.x), 1e-7)
    assert abs(dr.grad(shift).numpy()[0] - fd) <= 1e-4 * abs(fd)


def test_adjoint_is_differentiable_too() -> None:
    """d/dθ <g, A.T(θ) y> matches finite differences (reverse mode through A.T)."""
    prob = Problem("cone_flat", "bspline2", seed=6)
    rng = np.random.default_rng(7)
    y = rng.uniform(size=prob.pg.shape)
    g = mod.TensorXf64(rng.uniform(size=prob.vg.shape))

    def loss(shift):
        A = ct.Projector(prob.vg, prob.pg.perturb(det_shift_u=shift), basis="bspline2", dtype="float64")
        return dr.sum((A.T(mod.TensorXf64(y)) * g).array)

    shift = mod.Float64(0.2)
    dr.enable_grad(shift)
    dr.backward(loss(shift))
    fd = central_difference(lambda e: float(loss(mod.Float64(0.2 + e)).numpy()[0]), 1e-5)
    assert abs(dr.grad(shift).numpy()[0] - fd) <= 1e-4 * abs(fd)


def test_bad_parameters_are_refused() -> None:
    fan = GEOMETRIES["fan_flat"]
    with pytest.raises(ValueError, match="unknown misalignment parameter"):
        fan.perturb(det_shfit_u=1.0)
    with pytest.raises(ValueError, match=r"\['det_roll'\] only exist for 3D"):
        fan.perturb(det_roll=0.1)
    with pytest.raises(ValueError, match="need a source"):
        GEOMETRIES["parallel2d"].perturb(src_shift_u=1.0)
    with pytest.raises(ValueError, match=r"one value or one per view"):
        fan.perturb(det_shift_u=np.zeros(3))
    with pytest.raises(TypeError, match=r"floating-point Dr\.Jit array"):
        fan.perturb(det_shift_u=mod.Int(1))
    with pytest.raises(ValueError, match="det_yaw has 1 non-finite entry"):
        fan.perturb(det_yaw=np.nan)
    with pytest.raises(TypeError, match="needs a detector geometry"):
        from drct.geometry.perturb import perturb

        perturb(GEOMETRIES["rays2d"], det_shift_u=1.0)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cone_flat", "rays2d"])
def test_chunking_changes_nothing(kind: str) -> None:
    """Splitting the rays into many launches gives the same values and gradients."""
    prob = Problem(kind, "bspline2", seed=8)
    rng = np.random.default_rng(9)
    y = rng.uniform(size=prob.pg.shape)
    results = []
    for chunk in (1 << 20, 37):
        pg = prob.pg.with_drjit_vectors()
        x = mod.TensorXf64(prob.x)
        vectors = [getattr(pg, n) for n in ("origins", "directions", "src", "det") if hasattr(pg, n)]
        dr.enable_grad(x, *vectors)
        A = ct.Projector(prob.vg, pg, basis="bspline2", dtype="float64", chunk_rays=chunk)
        loss = dr.sum(A(x).array * prob.w) + dr.sum((A.T(mod.TensorXf64(y)) * x).array)
        dr.backward(loss)
        results.append(
            [loss.numpy(), dr.grad(x).numpy()] + [np.array([c.numpy() for c in dr.grad(v)]) for v in vectors]
        )
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_geometry_arrays_must_be_differentiable_drjit_arrays() -> None:
    import drjit.llvm as plain

    fan = GEOMETRIES["fan_flat"]
    vectors = fan.to_vectors()
    pg = ct.ProjectionGeometry("cone", plain.Array2f64(*vectors[:, :2].T.copy()), fan.det, fan.det_u, None, (20,))
    with pytest.raises(TypeError, match=r"must be differentiable Dr\.Jit arrays"):
        ct.Projector(ct.VolumeGeometry((8, 8)), pg)(np.ones((8, 8), np.float32))
    with pytest.raises(TypeError, match="must be Array2f64/Array3f64"):
        ct.ProjectionGeometry("cone", mod.Float64(1.0), fan.det, fan.det_u, None, (20,))


@requires_cuda
def test_mixing_backends_is_refused() -> None:
    pg = GEOMETRIES["fan_flat"].with_drjit_vectors("llvm")
    with pytest.raises(ValueError, match=r"live on Dr\.Jit.s .llvm. backend but the operator runs on .cuda."):
        ct.Projector(ct.VolumeGeometry((8, 8)), pg, backend="cuda")(np.ones((8, 8), np.float32))
