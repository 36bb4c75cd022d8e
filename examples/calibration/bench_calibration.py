"""What one calibration costs: projectors built, forward and adjoint projections, derivative marches and the run
time, on the cone-beam example's problem at a small size (levels 2, 1), in total and per level and phase. Run it
once per implementation (e.g. with ``PYTHONPATH`` pointing at an older checkout) on the same machine at the same
time to compare them; the counts do not depend on the machine. ``cone_beam.py --count`` prints the same per-level
table for the full example.

Run:  python examples/calibration/bench_calibration.py [--size 24] [--views 48] [--iterations 4,2]
"""

from __future__ import annotations

import argparse
import functools
import inspect
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import add_noise
from cone_beam import setup

import drct as ct
from drct import projector

COUNTS: Counter[str] = Counter()
BY_PHASE: defaultdict[tuple[int, int, str], Counter[str]] = defaultdict(Counter)  # (grid, views, phase) -> counts
SECONDS: defaultdict[str, float] = defaultdict(float)  # "grid views phase" -> seconds spent in its passes
_PHASES: list[str] = ["other"]


def _counting(name: str, method: Any) -> Any:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS[name] += 1
        where = BY_PHASE[(int(self.vg.shape[0]), int(getattr(self.pg, "num_views", 0)), _PHASES[-1])]
        where[name] += 1
        start = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            SECONDS[f"{self.vg.shape[0]} {getattr(self.pg, 'num_views', 0)} {_PHASES[-1]}"] += (
                time.perf_counter() - start
            )

    return wrapper


def _phase(label: Any, fn: Any) -> Any:
    """``fn`` with everything it does counted under ``label`` (a string, or a function of the call's kwargs)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _PHASES.append(str(label(kwargs)) if callable(label) else str(label))
        try:
            return fn(*args, **kwargs)
        finally:
            _PHASES.pop()

    return wrapper


def install_counters() -> None:
    """Count every projector built, forward, adjoint and derivative march, per grid size and calibration phase."""
    from drct.calibration import solver, steps

    P = projector.Projector
    for name, attr in [
        ("forward", "forward_tensor"),
        ("adjoint", "adjoint_tensor"),
        ("derivative marches", "geometry_jvps"),
    ]:
        setattr(P, attr, _counting(name, getattr(P, attr)))
    init = P.__init__

    def built(self: Any, *args: Any, **kwargs: Any) -> None:
        COUNTS["projectors built"] += 1
        init(self, *args, **kwargs)

    P.__init__ = built  # type: ignore[method-assign]
    solver.ridge_cgls = _phase(  # type: ignore[attr-defined]
        lambda kw: _PHASES[-1] if _PHASES[-1] != "other" else "volume refit" if "residual" in kw else "volume fit",
        solver.ridge_cgls,
    )
    for module, name, label in [
        (solver, "first_level_gauge", "gauge test"),
        (solver, "uncertainty", "uncertainty"),
        (solver, "analyse", "diagnostics: analysis"),
        (solver, "check_weighting", "diagnostics: weighting check"),
        (steps, "lm_step", "LM: Jacobian + trials"),
        (steps, "ridge_cgls", "quasi-Newton refit"),
    ]:
        if hasattr(module, name):
            setattr(module, name, _phase(label, getattr(module, name)))
    run = solver._Run
    run._final = _phase("final reconstruction", run._final)  # type: ignore[method-assign]
    run._diagnose = _phase("diagnostics: fits", run._diagnose)  # type: ignore[method-assign]


def clear_counters() -> None:
    COUNTS.clear()
    BY_PHASE.clear()
    SECONDS.clear()


def print_counts() -> None:
    """The per-grid, per-phase table of what :func:`install_counters` counted (seconds: in those passes)."""
    print("| grid | views | phase | forward | adjoint | derivative marches | seconds in them |")
    print("|---|---|---|---|---|---|---|")
    for (size, views, phase), c in sorted(BY_PHASE.items(), key=lambda kv: (-kv[0][0], -kv[0][1], kv[0][2])):
        print(
            f"| {size}³ | {views} | {phase} | {c['forward']} | {c['adjoint']} | {c['derivative marches']} "
            f"| {SECONDS[f'{size} {views} {phase}']:.1f} |"
        )
    print(f"passes took {sum(SECONDS.values()):.1f} s in all")


def finest_equivalents() -> float:
    """Forward and adjoint projections on the finest grid, each weighted by its share of the views (a projection of
    every 2nd view counts one half): what the finest level costs in full-size passes."""
    if not BY_PHASE:
        return 0.0
    size = max(k[0] for k in BY_PHASE)
    views = max(k[1] for k in BY_PHASE if k[0] == size)
    return sum((c["forward"] + c["adjoint"]) * k[1] / views for k, c in BY_PHASE.items() if k[0] == size)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=24)
    p.add_argument("--views", type=int, default=48)
    p.add_argument("--iterations", default="4,2")
    p.add_argument("--levels", default="2,1")
    p.add_argument("--diagnostics", default="off", choices=("warn", "raise", "off"))
    p.add_argument("--strides", default=None, help="view_strides, e.g. 2,1 (default: calibrate's)")
    p.add_argument("--phases", action="store_true", help="also print the counts per grid and phase")
    args = p.parse_args()
    install_counters()
    vg, pg, pixel, mag = setup(args.size, args.views)
    pixel = 2.5
    truth = {
        "det_shift_u": 3.7 * pixel,
        "det_shift_v": -2.1 * pixel,
        "det_roll": np.deg2rad(1.2),
        "cor_offset": 1.5 * pixel / mag,
    }
    y = add_noise(ct.phantoms.shepp_logan_projections(pg.perturb(**truth), vg=vg), 1e5, 0)
    extra: dict[str, Any] = {}
    if "diagnostics" in inspect.signature(ct.calibrate).parameters:
        extra["diagnostics"] = args.diagnostics
    if args.strides:
        extra["view_strides"] = [int(v) for v in args.strides.split(",")]
    clear_counters()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ct.calibrate(
            y,
            pg,
            list(truth),
            vg=vg,
            levels=[int(v) for v in args.levels.split(",")],
            iterations=[int(v) for v in args.iterations.split(",")],
            progress=False,
            **extra,
        )
    runtime = time.perf_counter() - start
    axis = (res.params["det_shift_u"] + mag * res.params["cor_offset"] - truth["det_shift_u"]) / pixel
    axis -= mag * truth["cor_offset"] / pixel
    print(f"drct from {Path(ct.__file__).parent}")
    names = ["projectors built", "forward", "adjoint", "derivative marches"]
    print(
        "| runtime (s) | outer iterations | "
        + " | ".join(names)
        + " | finest-grid passes (full-view equivalents) | axis err (px) | v err (px) | roll err (°) |"
    )
    print("|---|---|" + "---|" * len(names) + "---|---|---|---|")
    print(
        f"| {runtime:.1f} | {res.iterations} | "
        + " | ".join(str(COUNTS[n]) for n in names)
        + f" | {finest_equivalents():.0f} | {abs(axis):.4f}"
        + f" | {abs(res.params['det_shift_v'] - truth['det_shift_v']) / pixel:.4f} "
        f"| {abs(np.rad2deg(res.params['det_roll'] - truth['det_roll'])):.4f} |"
    )
    if args.phases:
        print_counts()


if __name__ == "__main__":
    main()
