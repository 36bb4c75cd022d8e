"""calibrate's options are checked (a bad value raises naming it, instead of returning zeros), and the Adam step
keeps off the gauge in theta when the Jacobian's column norms differ."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest

import drct as ct
from drct.calibration.gauge import Gauge
from drct.calibration.options import CalibrationOptions
from drct.calibration.steps import Adam, adam_update
from drct.errors import NonFiniteError

VG = ct.VolumeGeometry((8, 8, 8))
PG = ct.cone(np.linspace(0, 2 * np.pi, 6, endpoint=False), (8, 8), 2.0, 60.0, 120.0)

BAD: list[tuple[str, Any, str]] = [  # option, value, what the message must say
    ("regularization", -1, "regularization must be a finite number >= 0, got -1"),
    ("regularization", float("nan"), "regularization must be a finite number >= 0, got nan"),
    ("regularization", True, "regularization must be a finite number >= 0, got True"),
    ("levels", [2, 0], r"levels.*\[1\] must be an integer >= 1, got 0"),
    ("levels", [], "levels.*non-empty"),
    ("levels", [2.5], r"levels.*must be an integer >= 1, got 2.5"),
    ("levels", [True], r"levels.*must be an integer >= 1, got True"),
    ("iterations", -1, "iterations must be an integer >= 0, got -1"),
    ("iterations", True, "iterations must be an integer >= 0, got True"),
    ("recon_iterations", -3, "recon_iterations must be an integer >= 0, got -3"),
    ("initial_recon_iterations", 2.0, "initial_recon_iterations must be an integer >= 0, got 2.0"),
    ("final_recon_iterations", -1, "final_recon_iterations must be an integer >= 0, got -1"),
    ("lowpass", -1.0, r"lowpass .* must be a finite number >= 0, got -1.0"),
    ("lowpass", float("inf"), r"lowpass .* must be a finite number >= 0, got inf"),
    ("gauge_tol", 0.0, "gauge_tol must be a finite number > 0 and < 1, got 0.0"),
    ("gauge_tol", 2.0, "gauge_tol must be a finite number > 0 and < 1, got 2.0"),
    ("adam_lr", 0, "adam_lr must be a finite number > 0, got 0"),
    ("adam_steps", 0, "adam_steps must be an integer >= 1, got 0"),
    ("tol", -1e-3, "tol must be a finite number >= 0, got -0.001"),
    ("view_strides", [0], r"view_strides\[0\] must be an integer >= 1, got 0"),
    ("accelerate", 1, "accelerate must be True or False, got 1"),
    ("pose", "yes", "pose must be True or False, got 'yes'"),
    ("basis", "cubic", "basis must be one of"),
    ("gauge", "fixed", "gauge must be one of"),
]


@pytest.mark.parametrize(("option", "value", "message"), BAD, ids=[f"{o}={v!r}" for o, v, _ in BAD])
def test_bad_option_values_raise_naming_them(option: str, value: Any, message: str) -> None:
    y = np.ones(PG.shape, np.float32)
    with pytest.raises((ValueError, TypeError), match=message):
        ct.calibrate(y, PG, ["det_shift_u"], vg=VG, progress=False, **{option: value})


def test_good_values_pass_and_keep_their_meaning() -> None:
    levels, iterations = cast(Any, np.array([4, 2, 1])), cast(Any, np.int64(3))  # numpy integers are fine
    o = CalibrationOptions(levels=levels, iterations=iterations, regularization=0, gauge_tol=1e-6)
    assert o.levels == [4, 2, 1] and o.iterations == [3] and o.per_level([4, 2, 1]) == [3, 3, 3]
    assert isinstance(o.regularization, float) and o.regularization == 0.0
    with pytest.raises(ValueError, match=r"one per level \(3\)"):
        CalibrationOptions(iterations=[1, 2]).per_level([4, 2, 1])


def test_projections_must_be_finite() -> None:
    y = np.ones(PG.shape, np.float32)
    y[1, 2, 3] = np.nan
    with pytest.raises(NonFiniteError, match=r"projections has 1 non-finite entry"):
        ct.calibrate(y, PG, ["det_shift_u"], vg=VG, progress=False)


class Quadratic:
    """A stand-in for a level problem: loss ``|theta - target|^2`` with the model's scales."""

    def __init__(self, scale: np.ndarray, target: np.ndarray) -> None:
        self.model = SimpleNamespace(scale=scale)
        self.target = target

    def gradient(self, theta: np.ndarray, x: Any) -> tuple[float, np.ndarray]:
        return self.loss(theta, x), 2 * (theta - self.target)

    def loss(self, theta: np.ndarray, x: Any) -> float:
        return float(np.sum((theta - self.target) ** 2))


def test_adam_keeps_off_the_gauge_when_column_norms_differ() -> None:
    """The gauge's removed rows are in column-normalised coordinates ``norms * theta``; in theta they are
    ``rows * norms``. With norms 1 and 10 the two differ, and Adam must not move along the removed combination."""
    norms = np.array([1.0, 10.0, 3.0])
    row = np.array([[0.6, 0.8, 0.0]])  # unit, in norms * theta
    gauge = Gauge(np.zeros((0, 3)), [], row, norms, [])
    prob = Quadratic(scale=np.array([1.0, 0.5, 2.0]), target=np.array([1.0, -2.0, 0.5]))
    theta0 = np.zeros(3)
    free = np.arange(3)
    adam = Adam(steps=20, lr=0.1)
    adam.start_level(3)
    step = adam.step(prob, theta0, np.zeros(1), prob.loss(theta0, None), free, gauge)  # type: ignore[arg-type]
    moved = step.theta - theta0
    along = float(((row * norms) @ moved)[0])  # the removed combination, in theta
    assert np.linalg.norm(moved) > 0.1  # it did move, off the gauge
    assert abs(along) < 1e-9 * np.linalg.norm(moved), along
    assert step.loss < prob.loss(theta0, None) and step.refit
    # the function form the strategy uses, with its state dict
    state = {"t": 0, "m": np.zeros(3), "v": np.zeros(3)}
    theta, _ = adam_update(prob, theta0, np.zeros(1), free, gauge, state, 5, 0.1)  # type: ignore[arg-type]
    assert abs(float(((row * norms) @ theta)[0])) < 1e-9


def test_docstring_examples_of_the_new_modules_run() -> None:
    import doctest

    from drct.calibration import gauge, interrupts, options, steps
    from drct.geometry import parameters

    attempted = 0
    for module in (gauge, interrupts, options, steps, parameters):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted >= 12
