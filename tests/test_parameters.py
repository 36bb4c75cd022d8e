"""The one table of misalignment parameters (drct.geometry.parameters) drives every room that names them: perturb,
the calibration model and its result files, scene files and the torch layer accept exactly the parameters that
apply to a geometry, with the table's widths, nominal values, units and scales."""

from __future__ import annotations

import numpy as np
import pytest

import drct as ct
from drct.calibration import PerturbModel
from drct.calibration.result import unit_of
from drct.geometry import parameters
from drct.geometry.parameters import PARAMETERS, TABLE, applicable, check, check_all
from drct.scene.geometry import UNITS, default_value, read_misalignment
from drct.scene.geometry import applicable as scene_applicable
from drct.scene.schema import Table

ANGLES = np.linspace(0, np.pi, 4, endpoint=False)
GEOMETRIES = {
    "parallel2d": ct.parallel(ANGLES, 16),
    "parallel3d": ct.parallel(ANGLES, (8, 16)),
    "fan": ct.fan(ANGLES, 16, 1.0, 100.0, 200.0),
    "cone": ct.cone(ANGLES, (8, 16), 1.0, 100.0, 200.0),
}
EXPECTED = {  # written out by hand: what the table must say
    "parallel2d": {"det_shift_u", "det_yaw", "pixel_scale", "src_det_delta", "cor_offset"},
    "fan": {"det_shift_u", "det_yaw", "pixel_scale", "src_shift_u", "src_orig_delta", "src_det_delta", "cor_offset"},
}
ONLY_3D = {"det_shift_v", "det_roll", "det_pitch", "axis_tilt", "axis_tilt_beam"}
EXPECTED["parallel3d"] = EXPECTED["parallel2d"] | ONLY_3D
EXPECTED["cone"] = EXPECTED["fan"] | EXPECTED["parallel3d"] | {"src_shift_v"}
for _names in EXPECTED.values():
    _names |= {"motion_rotation", "motion_shift"}


def value_for(name: str, pg: ct.ProjectionGeometry) -> np.ndarray:
    """A value one step away from nominal, with the table's width."""
    return np.full(TABLE[name].width(pg.ndim), TABLE[name].nominal + 0.01)


def accepts(make) -> bool:
    try:
        make()
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("kind", list(GEOMETRIES))
def test_table_says_what_applies(kind: str) -> None:
    pg = GEOMETRIES[kind]
    assert set(applicable(pg)) == EXPECTED[kind]
    assert list(applicable(pg)) == [n for n in PARAMETERS if n in EXPECTED[kind]]  # the table's order


@pytest.mark.parametrize("kind", list(GEOMETRIES))
def test_every_room_accepts_exactly_the_applicable_parameters(kind: str) -> None:
    torch = pytest.importorskip("torch")
    from drct.torch._geometry import GeometryTensors

    pg = GEOMETRIES[kind]
    vg = ct.VolumeGeometry((8, 8) if pg.ndim == 2 else (8, 8, 8))
    A = ct.Projector(vg, pg, basis="voxel", dtype="float64")
    rooms = {
        "perturb": lambda n: pg.perturb(**{n: value_for(n, pg)}),
        "calibration model": lambda n: PerturbModel(pg, [n], pose=False),
        "scene": lambda n: read_misalignment(Table({n: value_for(n, pg).tolist()}, None, "misalignment"), pg),
        "torch": lambda n: GeometryTensors(A, {n: torch.tensor(value_for(n, pg)).squeeze()}, ()),
    }
    for room, make in rooms.items():
        accepted = {n for n in PARAMETERS if accepts(lambda n=n, make=make: make(n))}
        assert accepted == set(applicable(pg)), room
    assert scene_applicable(pg) == list(applicable(pg))


@pytest.mark.parametrize("kind", ["parallel2d", "cone"])
def test_widths_nominals_units_and_scales_come_from_the_table(kind: str) -> None:
    pg = GEOMETRIES[kind]
    names = list(applicable(pg))
    model = PerturbModel(pg, names, pose=False)
    pixel = float(np.linalg.norm(pg.det_u[0]))
    mag = 2.0 if pg.beam == "cone" else 1.0
    start = model.split(model.theta0)
    k = 0
    for spec in model.specs:
        p = TABLE[spec.name]
        assert spec.width == p.width(pg.ndim)
        assert np.all(start[spec.name] == p.nominal)
        assert np.allclose(model.scale[k : k + spec.count], p.typical_scale(pixel, pg.det_shape[-1], mag))
        k += spec.count
        assert np.all(np.asarray(default_value(spec.name, pg)) == p.nominal)
        assert np.size(default_value(spec.name, pg)) == p.width(pg.ndim)
        assert unit_of(spec.name) == p.unit
        assert UNITS[spec.name] == ("number" if p.unit == "scale" else p.unit)
    # the table's units, written out by hand
    assert {n for n in names if TABLE[n].unit == "angle"} == {n for n in names if "roll" in n or "pitch" in n} | {
        n for n in names if "yaw" in n or "tilt" in n or n == "motion_rotation"
    }
    assert [TABLE[n].symbol for n in ("pixel_scale", "det_roll", "cor_offset")] == ["1", "rad", "mm"]


def test_errors_name_the_parameter_and_what_is_allowed() -> None:
    fan, par = GEOMETRIES["fan"], GEOMETRIES["parallel3d"]
    allowed_fan = ", ".join(applicable(fan))
    with pytest.raises(ValueError, match="'det_roll' only exists for 3D") as err:
        check("det_roll", fan)
    assert allowed_fan in str(err.value) and "2D cone (fan) beam" in str(err.value)
    with pytest.raises(ValueError, match=r"'src_shift_v' needs a source") as err:
        check("src_shift_v", par)
    assert ", ".join(applicable(par)) in str(err.value) and "3D parallel beam" in str(err.value)
    with pytest.raises(ValueError, match=r"unknown misalignment parameter 'det_shift_w'") as err:
        check("det_shift_w", fan)
    assert "det_shift_u" in str(err.value)
    with pytest.raises(ValueError, match=r"\['axis_tilt', 'det_pitch'\] only exist for 3D"):
        check_all(["det_shift_u", "axis_tilt", "det_pitch"], fan)
    with pytest.raises(TypeError, match="detector geometry"):
        applicable(ct.RayGeometry(np.zeros((2, 2)), np.ones((2, 2))))
    # every room passes the table's message on
    with pytest.raises(ValueError, match=f"only exist for 3D.*{allowed_fan}"):
        fan.perturb(det_roll=0.1)
    with pytest.raises(ValueError, match=f"'det_roll' only exists for 3D.*{allowed_fan}"):
        PerturbModel(fan, ["det_roll"])
    with pytest.raises(ct.scene.SceneError, match=f"det_roll.*only exists for 3D.*{allowed_fan}"):
        read_misalignment(Table({"det_roll": 0.1}, None, "misalignment"), fan)


def test_table_rows_are_frozen_and_complete() -> None:
    assert PARAMETERS == tuple(TABLE) and len(PARAMETERS) == 15
    with pytest.raises(AttributeError):
        TABLE["det_roll"].nominal = 1.0  # type: ignore[misc]
    assert all(p.unit in parameters.SYMBOLS for p in TABLE.values())
