"""pint quantities at the geometry constructors (:mod:`drct.units`): converted to mm and radians, or refused
naming the unit expected. Before, pint stripped the units silently: 50 µm became 50 mm, 90° became 90 rad."""

from __future__ import annotations

import numpy as np
import pytest

import drct as ct
from drct.units import angle, is_quantity, length

pint = pytest.importorskip("pint")
ureg = pint.UnitRegistry()


def test_plain_numbers_pass_through_unchanged() -> None:
    values = [1.5, np.arange(3.0), (1.0, 2.0)]
    assert all(length(v, "x") is v and angle(v, "x") is v for v in values)
    assert not is_quantity(np.float64(2.0)) and is_quantity(2.0 * ureg.mm)


def test_volume_geometry_takes_lengths_in_any_unit() -> None:
    """Regression: ``voxel_size=50 µm`` gave voxels of 50 mm."""
    vg = ct.VolumeGeometry((4, 6), voxel_size=50 * ureg.um, center=(1 * ureg.cm, -2 * ureg.mm))
    assert vg.voxel_size == pytest.approx((0.05, 0.05)) and vg.center == pytest.approx((10.0, -2.0))
    per_axis = ct.VolumeGeometry((2, 4, 6), voxel_size=np.array([0.1, 0.2, 0.3]) * ureg.mm)
    assert per_axis.voxel_size == pytest.approx((0.1, 0.2, 0.3))


def test_factories_take_degrees_and_lengths_in_any_unit() -> None:
    """Regression: angles in degrees were read as radians, a source distance of 0.5 m as 0.5 mm."""
    degrees = np.linspace(0, 360, 12, endpoint=False)
    radians = np.deg2rad(degrees)
    pairs = [
        (ct.parallel(degrees * ureg.deg, 8, 0.5 * ureg.mm), ct.parallel(radians, 8, 0.5)),
        (ct.fan(degrees * ureg.deg, 8, 1.2 * ureg.mm, 0.5 * ureg.m, 1 * ureg.m), ct.fan(radians, 8, 1.2, 500, 1000)),
        (
            ct.cone(degrees * ureg.deg, (4, 8), (100 * ureg.um, 0.2 * ureg.mm), 50 * ureg.cm, 1 * ureg.m),
            ct.cone(radians, (4, 8), (0.1, 0.2), 500.0, 1000.0),
        ),
        (
            ct.helix(radians * ureg.rad, 2 * ureg.cm, (4, 8), 1.0, 500 * ureg.mm, 1000 * ureg.mm),
            ct.helix(radians, 20.0, (4, 8), 1.0, 500.0, 1000.0),
        ),
    ]
    for with_units, plain in pairs:
        np.testing.assert_allclose(with_units.to_vectors(), plain.to_vectors(), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ct.VolumeGeometry((4, 4), voxel_size=2 * ureg.s), r"voxel_size must be a length \(converted to mm\)"),
        (lambda: ct.parallel(np.arange(3) * ureg.mm, 8), r"angles must be an angle \(converted to rad\)"),
        (
            lambda: ct.cone([0.0], (4, 4), 1.0, 3 * ureg.deg, 1000.0),
            r"src_orig_dist must be a length \(converted to mm\), got 3 degree \(dimension dimensionless\)",
        ),
        (lambda: ct.VolumeGeometry((4, 4), center=(1 * ureg.mm, 1 * ureg.kg)), r"center\[1\] must be a length"),
    ],
)
def test_a_quantity_of_the_wrong_kind_is_refused_naming_the_unit_expected(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
