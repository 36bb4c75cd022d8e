"""Σ μ·L of a scene is combined in one place (drct.physics.forward.line_integrals): the Dr.Jit path
(Scene.line_integrals) and the numpy path (Scene.simulate) agree with each other and with the analytic value,
for material objects and μ objects together."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import drct as ct
from drct.physics import get_material
from drct.physics.forward import line_integrals

SCENE = """
[scene]
compose = "add"

[source]
type = "monochromatic"
energy = "60 keV"

[geometry]
det_spacing = "0.5 cm"
det_shape = 48
type = "parallel"
angles = { count = 16, stop = "180 deg" }

[[objects]]
name = "water"
type = "shepp_logan"
material = "water"
density = "0.5 g/cm3"
radius = "10 cm"

[[objects]]
name = "plain"
type = "shepp_logan"
mu = "0.2 /cm"
radius = "10 cm"
"""


def test_line_integrals_combines_materials_and_plain_mu() -> None:
    lengths, plain = np.array([1.0, 2.0]), np.array([0.25, 0.5])
    got = line_integrals({"water": lengths, None: plain}, 60.0)
    np.testing.assert_allclose(got, lengths * get_material("water").mu(60.0)[0] + plain, rtol=1e-15)
    np.testing.assert_array_equal(line_integrals(plain, 60.0), plain)


def test_scene_and_simulation_line_integrals_agree_with_the_analytic_value(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SCENE)
    scene = ct.load_scene(path)
    shape = ct.phantoms.shepp_logan_projections(scene.projection_geometry(), radius=100.0)
    exact = shape * (float(get_material("water").mu(60.0)[0]) * 0.5 + 0.02)
    lazy = np.asarray(scene.line_integrals().numpy())
    np.testing.assert_allclose(lazy, exact, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(scene.simulate().line_integrals, lazy, rtol=1e-6, atol=1e-6)
