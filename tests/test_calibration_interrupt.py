"""Ctrl-C at every phase of a calibration (volume fit, gauge test, Jacobian — also inside a Dr.Jit loop —, geometry
step, uncertainties, final reconstruction) returns the best state with ``interrupted=True``, and ``drct calibrate``
writes every promised file."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pytest
import tifffile

import drct as ct
from drct.calibration import problem, solver, steps
from drct.calibration.diagnostics import CalibrationWarning
from drct.cli import main as cli_main
from drct.kernels import march

VG = ct.VolumeGeometry((12, 12, 12), voxel_size=4.0)
PG = ct.cone(np.linspace(0, 2 * np.pi, 12, endpoint=False), (12, 12), 10.0, 150.0, 300.0)
# a level's first fit, a refit after a step and the final reconstruction differ in their CGLS iterations
FIRST, REFIT, FINAL = 25, 20, 30
KW: dict[str, Any] = {"vg": VG, "levels": [2, 1], "iterations": 2, "lowpass": 0, "progress": False}
KW |= {"initial_recon_iterations": FIRST, "recon_iterations": REFIT, "final_recon_iterations": FINAL}


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return ct.Projector(VG, PG.perturb(det_shift_u=3.0), basis="bspline2")(ct.phantoms.shepp_logan(VG))


def raise_on(
    k: int, original: Callable[..., Any], calls: list[int], how: Callable[..., Any], iterations: int | None = None
) -> Callable[..., Any]:
    """``original``, except that call number ``k`` (1-based; -1: never) is interrupted by ``how``; with
    ``iterations``, only CGLS calls with that many iterations count."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if iterations is not None and args[3] != iterations:
            return original(*args, **kwargs)
        calls.append(1)
        if len(calls) == k:
            return how(*args, **kwargs)
        return original(*args, **kwargs)

    return wrapped


def ctrl_c(*args: Any, **kwargs: Any) -> None:
    raise KeyboardInterrupt


class Flaky:
    """An operator whose ``n``-th forward projection is interrupted (the adjoint passes through)."""

    def __init__(self, A: Any, n: int) -> None:
        self.A, self.n = A, n
        self.domain_shape, self.types, self.adjoint_tensor = A.domain_shape, A.types, A.adjoint_tensor

    def forward_tensor(self, x: Any) -> Any:
        self.n -= 1
        if self.n == 0:
            raise KeyboardInterrupt
        return self.A.forward_tensor(x)


def ctrl_c_mid_cgls(A: Any, *args: Any, **kwargs: Any) -> Any:
    """Interrupted after a few CGLS iterations."""
    return problem.ridge_cgls(cast(Any, Flaky(A, 4)), *args, **kwargs)


def ctrl_c_inside_drjit_loop(original: Callable[..., Any]) -> Callable[[], Any]:
    """A Ctrl-C while Dr.Jit traces the ray march's loop body: Python sees a RuntimeError caused by it."""

    def how() -> Any:
        def cell(*args: Any, **kwargs: Any) -> Any:
            raise KeyboardInterrupt

        saved = march.Cell
        march.Cell = cell  # type: ignore[misc]
        try:
            return original()
        finally:
            march.Cell = saved  # type: ignore[misc]

    return how


# (what is interrupted, which of its calls): the Jacobians are the gauge test's and one per LM step
PHASES = {
    "first volume fit": (f"cgls:{FIRST}", 1),
    "refit after a step": (f"cgls:{REFIT}", 1),
    "second level's first fit": (f"cgls:{FIRST}", 2),
    "final reconstruction": (f"cgls:{FINAL}", 1),
    "gauge test's Jacobian": ("jacobian", 1),
    "LM step's Jacobian": ("jacobian", 2),
    "Jacobian inside a Dr.Jit loop": ("jacobian-loop", 2),
    "last LM step's Jacobian": ("jacobian", "last"),
    "first geometry step": ("step", 1),
    "last geometry step": ("step", "last"),
}


def count_calls(monkeypatch: pytest.MonkeyPatch, data: np.ndarray) -> dict[str, int]:
    counts: dict[str, list[int]] = {f"cgls:{n}": [] for n in (FIRST, REFIT, FINAL)} | {"jacobian": [], "step": []}

    def cgls(*args: Any, **kwargs: Any) -> Any:
        counts[f"cgls:{args[3]}"].append(1)
        return problem.ridge_cgls(*args, **kwargs)

    monkeypatch.setattr(solver, "ridge_cgls", cgls)
    monkeypatch.setattr(
        problem.LevelProblem, "jacobian", raise_on(-1, problem.LevelProblem.jacobian, counts["jacobian"], ctrl_c)
    )
    monkeypatch.setattr(steps, "lm_step", raise_on(-1, steps.lm_step, counts["step"], ctrl_c))
    # this counting run is a complete 2-iteration calibration of a 12³ scan, whose diagnostics may doubt its
    # det_shift_u (a CalibrationWarning): what they say is tested in test_calibration_diagnostics, not here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        res = ct.calibrate(data, PG, ["det_shift_u"], **KW)
    monkeypatch.undo()
    assert not res.interrupted
    return {k: len(v) for k, v in counts.items()}


def interrupt(monkeypatch: pytest.MonkeyPatch, phase: str, k: int) -> None:
    calls: list[int] = []
    if phase.startswith("cgls:"):
        iterations = int(phase.split(":")[1])
        monkeypatch.setattr(solver, "ridge_cgls", raise_on(k, problem.ridge_cgls, calls, ctrl_c_mid_cgls, iterations))
    elif phase == "step":
        monkeypatch.setattr(steps, "lm_step", raise_on(k, steps.lm_step, calls, ctrl_c))
    else:
        original = problem.LevelProblem.jacobian

        def jacobian(self: Any, *args: Any) -> Any:
            calls.append(1)
            if len(calls) == k:
                how = ctrl_c if phase == "jacobian" else ctrl_c_inside_drjit_loop(lambda: original(self, *args))
                return how()
            return original(self, *args)

        monkeypatch.setattr(problem.LevelProblem, "jacobian", jacobian)


@pytest.fixture(scope="module")
def counts(data: np.ndarray) -> dict[str, int]:
    with pytest.MonkeyPatch.context() as mp:
        return count_calls(mp, data)


@pytest.mark.parametrize("name", list(PHASES))
def test_interrupt_at_every_phase_returns_the_best_state(
    name: str, data: np.ndarray, counts: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    phase, k = PHASES[name]
    total = counts["jacobian" if phase.startswith("jacobian") else phase]
    assert total >= 1, (name, counts)
    k = total if k == "last" else int(k)
    assert k <= total, (name, counts)
    interrupt(monkeypatch, phase, k)
    res = ct.calibrate(data, PG, ["det_shift_u"], **KW)
    assert res.interrupted, name
    assert isinstance(res.geometry, ct.ProjectionGeometry) and np.isfinite(res.params["det_shift_u"])
    assert res.reconstruction is not None and res.vg is not None and res.reconstruction.shape == res.vg.shape
    assert np.all(np.isfinite(res.reconstruction)) and np.abs(res.reconstruction).max() > 0, name
    # the geometry and the volume belong together: the returned pair fits the data as well as the loss says
    if len(res.loss):
        y = ct.Projector(res.vg, res.geometry, basis="bspline2")(res.reconstruction)
        if res.vg == VG:
            assert np.vdot(y - data, y - data) / np.vdot(data, data) <= 1.5 * min(res.loss) + 1e-6, name
    if name == "final reconstruction":  # the last complete volume: the best of the finest level
        assert res.final_loss is None and res.vg == VG and len(res.loss) == 6


def test_cli_writes_every_file_when_interrupted(tmp_path, data: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    np.save(tmp_path / "scan.npy", data)
    ct.save_geometry(tmp_path / "nominal.json", PG, VG)
    for k in (1, 2):  # in the first volume fit (no complete volume yet) and in a refit
        interrupt(monkeypatch, f"cgls:{30 if k == 1 else 20}", 1)  # drct calibrate's first fit: 30, refits: 20
        out = tmp_path / f"calib{k}"
        argv = ["calibrate", str(tmp_path / "scan.npy"), "--geometry", str(tmp_path / "nominal.json")]
        argv += ["--params", "det_shift_u", "-o", str(out), "--levels", "2,1", "--iterations", "2", "--no-progress"]
        argv += ["--recon-iterations", "20", "--final-recon-iterations", "31"]
        assert cli_main(argv) == 130
        monkeypatch.undo()
        data_json = json.loads((out / "calibration.json").read_text())
        assert data_json["complete"] is False and data_json["interrupted"] is True
        for name in ("geometry.json", "reconstruction.tif", "report.png"):
            assert (out / name).stat().st_size > 0, (k, name)
        assert tifffile.imread(out / "reconstruction.tif").ndim == 3


def test_deferred_interrupts_hold_ctrl_c_until_the_block_ends() -> None:
    import signal

    from drct.calibration.interrupts import deferred_interrupts

    # Python raises KeyboardInterrupt on SIGINT only where it was not ignored when the process started (a job run
    # in the background of a shell, e.g. a CI runner, inherits SIG_IGN): install Python's own handler here
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _hold_and_release(deferred_interrupts)
    finally:
        signal.signal(signal.SIGINT, inherited)


def _hold_and_release(deferred_interrupts) -> None:
    import os
    import signal

    before = signal.getsignal(signal.SIGINT)
    with deferred_interrupts() as late:
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered to the main thread
        for _ in range(100):  # let the handler run
            sum(range(100))
        assert late.pending
    assert signal.getsignal(signal.SIGINT) is before
    with pytest.raises(KeyboardInterrupt):  # outside the block Ctrl-C interrupts again
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):
            sum(range(100))
