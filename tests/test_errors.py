"""Bad input gives a clear ValueError/TypeError naming the value and what was expected, never a crash."""

from __future__ import annotations

import re

import numpy as np
import pytest

import drct as ct

ANGLES = np.linspace(0, np.pi, 4, endpoint=False)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: ct.VolumeGeometry((0, 4)), ValueError, "shape entries must be >= 1"),
        (lambda: ct.VolumeGeometry((4,)), ValueError, "shape must be"),
        (lambda: ct.VolumeGeometry((4, 4.5)), ValueError, "shape must be"),
        (lambda: ct.VolumeGeometry(4), TypeError, "shape must be a sequence"),
        (lambda: ct.VolumeGeometry((4, 4), voxel_size=0.0), ValueError, "voxel_size must be finite and > 0"),
        (
            lambda: ct.VolumeGeometry((4, 4), voxel_size=(1, 2, 3)),
            ValueError,
            "voxel_size must be one number or 2",
        ),
        (lambda: ct.VolumeGeometry((4, 4), center=(0, np.nan)), ValueError, "center must be finite"),
        (lambda: ct.parallel(ANGLES, 8, det_spacing=0.0), ValueError, "det_spacing must be finite and > 0"),
        (lambda: ct.parallel([], 8), ValueError, "angles is empty"),
        (lambda: ct.parallel([0.0, np.nan], 8), ValueError, "angles must be finite"),
        (lambda: ct.parallel(1.0, 8), TypeError, "angles must be a 1D sequence"),
        (lambda: ct.parallel(ANGLES, 0), ValueError, "det_shape entries must be >= 1"),
        (lambda: ct.parallel(ANGLES, 8.0), TypeError, "det_shape must be an int"),
        (lambda: ct.parallel(ANGLES, (1, 2, 3)), TypeError, "det_shape must be an int"),
        (lambda: ct.fan(ANGLES, 8, 1.0, 0.0, 10.0), ValueError, "src_orig_dist must be finite and > 0"),
        (lambda: ct.fan(ANGLES, (8, 8), 1.0, 5.0, 10.0), ValueError, "det_count must be one int"),
        (lambda: ct.from_vectors([[0, 0, 3, 0, 1, 0]], 8), ValueError, "source lies in the detector plane"),
        (lambda: ct.cone(ANGLES, 8, 1.0, 5.0, 10.0), ValueError, "det_shape must be \\(rows, cols\\)"),
        (lambda: ct.helix(ANGLES, np.inf, (4, 4), 1.0, 5.0, 10.0), ValueError, "pitch must be finite"),
        (
            lambda: ct.parallel(ANGLES, 8).__class__("parallel", [[1, 0]], [[0, 0]], [[1, 0]], None, (8,), True),
            ValueError,
            "curved=True needs beam='cone'",
        ),
        (
            lambda: ct.from_vectors(np.full((3, 6), np.nan), 8),
            ValueError,
            "vectors must be finite, but row 0",
        ),
        (lambda: ct.from_vectors(np.zeros((3, 5)), 8), ValueError, "vectors must have shape \\(n, 6\\)"),
        (lambda: ct.from_vectors(np.zeros((0, 12)), (4, 4)), ValueError, "vectors is empty"),
        (lambda: ct.from_vectors([[0, -5, 0, 5, 0, 0]], 8), ValueError, "det_u must be non-zero"),
        (lambda: ct.from_vectors([[0, -5, 0, 5, 1, 0]], 8, beam="fan"), ValueError, "beam must be one of"),
        (
            lambda: ct.from_vectors([[1, 0, 0, 5, 1, 0]], 8, beam="parallel"),
            ValueError,
            "ray direction lies in",
        ),
        (
            lambda: ct.from_vectors([[0, -5, 0, 0, 5, 0, 1, 0, 0, 2, 0, 0]], (4, 4)),
            ValueError,
            "det_u and det_v are parallel",
        ),
        (lambda: ct.rays([[0, 0]], [[0, 0]]), ValueError, "directions must be non-zero"),
        (lambda: ct.rays([[0, 0, 0, 0]], [[1, 0, 0, 0]]), ValueError, "origins must have shape"),
        (lambda: ct.rays([[0, 0]], [[1, 0], [0, 1]]), ValueError, "directions must have 1 rows"),
        (lambda: ct.rays([["a", "b"]], [[1, 0]]), TypeError, "origins must be numeric"),
    ],
)
def test_bad_geometry_is_refused(make, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        make()


@pytest.fixture
def A() -> ct.Projector:
    return ct.Projector(ct.VolumeGeometry((8, 8)), ct.parallel(ANGLES, 12))


def test_projector_arguments_are_checked() -> None:
    vg2, vg3 = ct.VolumeGeometry((8, 8)), ct.VolumeGeometry((4, 8, 8))
    pg = ct.parallel(ANGLES, 12)
    with pytest.raises(ValueError, match=re.escape("the volume is 3D (shape (4, 8, 8)) but the geometry is 2D")):
        ct.Projector(vg3, pg)
    with pytest.raises(ValueError, match="basis must be one of"):
        ct.Projector(vg2, pg, basis="cubic")
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        ct.Projector(vg2, pg, dtype="int32")
    with pytest.raises(TypeError, match="pg must be a drct projection geometry"):
        ct.Projector(vg2, "parallel")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"vg must be a drct\.VolumeGeometry"):
        ct.Projector((8, 8), pg)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend must be one of"):
        ct.Projector(vg2, pg, backend="metal")


def test_wrong_shapes_and_dtypes(A: ct.Projector) -> None:
    with pytest.raises(ValueError, match=re.escape("x (volume) must have shape (..., 8, 8), got (8, 9)")):
        A(np.zeros((8, 9), np.float32))
    with pytest.raises(ValueError, match=re.escape("y (projections) must have shape (..., 4, 12), got (12, 4)")):
        A.T(np.zeros((12, 4), np.float32))
    with pytest.raises(TypeError, match="must be a floating-point array"):
        A(np.zeros((8, 8), np.int32))
    with pytest.raises(TypeError, match=r"expected a numpy array, a torch tensor or a Dr\.Jit tensor, got list"):
        A([[0.0] * 8] * 8)


def test_float64_numpy_input_is_converted(A: ct.Projector) -> None:
    y = A(np.ones((8, 8)))
    assert y.dtype == np.float32 and y.shape == (4, 12)


def test_torch_inputs_round_trip_and_dtype_is_checked(A: ct.Projector) -> None:
    torch = pytest.importorskip("torch")
    x = torch.ones(8, 8)
    y = A(x)
    assert isinstance(y, torch.Tensor) and tuple(y.shape) == (4, 12)
    np.testing.assert_allclose(y.numpy(), A(np.ones((8, 8), np.float32)), rtol=1e-6)
    with pytest.raises(TypeError, match="x \\(volume\\) has dtype float64, but this operator computes in float32"):
        A(torch.ones(8, 8, dtype=torch.float64))


def test_drjit_inputs_round_trip(A: ct.Projector) -> None:
    t = A.types
    y = A(t.Tensor(np.ones((8, 8), np.float32)))
    assert type(y) is t.Tensor and tuple(y.shape) == (4, 12)
    with pytest.raises(TypeError, match=r"must be a Dr\.Jit tensor"):
        A(t.Float(np.ones(64, np.float32)))


def test_unknown_backend_name() -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        ct.set_backend("opencl")


def test_oversized_problem_is_refused_before_any_allocation() -> None:
    vg = ct.VolumeGeometry((1400, 1400, 1400))
    with pytest.raises(ValueError, match="problem too large for one launch"):
        ct.Projector(vg, ct.parallel(ANGLES, (4, 4)))


def test_atomic_writes_get_the_usual_permissions(tmp_path) -> None:
    """Files written through a temporary file end up with 0666 less the umask, like a plain open()."""
    import os
    from pathlib import Path

    from drct.io import write_atomically

    mask = os.umask(0o022)
    try:
        out = write_atomically(tmp_path / "a.txt", lambda tmp: Path(tmp).write_text("x"))
    finally:
        os.umask(mask)
    assert out.read_text() == "x"
    assert out.stat().st_mode & 0o777 == 0o644
