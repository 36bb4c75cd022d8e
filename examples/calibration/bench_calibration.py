"""What one calibration costs: projectors built, forward and adjoint projections, derivative marches and the run
time, on the cone-beam example's problem at a small size (levels 2, 1). Run it once per implementation (e.g. with
``PYTHONPATH`` pointing at an older checkout) on the same machine at the same time to compare them; the counts do
not depend on the machine.

Run:  python examples/calibration/bench_calibration.py [--size 24] [--views 48] [--iterations 4,2]
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import add_noise
from cone_beam import setup

import drct as ct
from drct import projector

COUNTS: Counter[str] = Counter()


def counting(name: str, method):  # type: ignore[no-untyped-def]
    def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        COUNTS[name] += 1
        return method(self, *args, **kwargs)

    return wrapper


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=24)
    p.add_argument("--views", type=int, default=48)
    p.add_argument("--iterations", default="4,2")
    args = p.parse_args()
    P = projector.Projector
    for name, attr in [
        ("projectors built", "__init__"),
        ("forward", "forward_tensor"),
        ("adjoint", "adjoint_tensor"),
        ("derivative marches", "geometry_jvps"),
    ]:
        setattr(P, attr, counting(name, getattr(P, attr)))
    vg, pg, pixel, mag = setup(args.size, args.views)
    pixel = 2.5
    truth = {
        "det_shift_u": 3.7 * pixel,
        "det_shift_v": -2.1 * pixel,
        "det_roll": np.deg2rad(1.2),
        "cor_offset": 1.5 * pixel / mag,
    }
    y = add_noise(ct.phantoms.shepp_logan_projections(pg.perturb(**truth), vg=vg), 1e5, 0)
    extra = {"diagnostics": "off"} if "diagnostics" in inspect.signature(ct.calibrate).parameters else {}
    COUNTS.clear()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ct.calibrate(
            y,
            pg,
            list(truth),
            vg=vg,
            levels=[2, 1],
            iterations=[int(v) for v in args.iterations.split(",")],
            progress=False,
            **extra,
        )
    runtime = time.perf_counter() - start
    axis = (res.params["det_shift_u"] + mag * res.params["cor_offset"] - truth["det_shift_u"]) / pixel
    axis -= mag * truth["cor_offset"] / pixel
    print(f"drct from {Path(ct.__file__).parent}")
    print("| runtime (s) | outer iterations | " + " | ".join(COUNTS) + " | axis err (px) | v err (px) | roll err (°) |")
    print("|---|---|" + "---|" * len(COUNTS) + "---|---|---|")
    print(
        f"| {runtime:.1f} | {res.iterations} | "
        + " | ".join(str(v) for v in COUNTS.values())
        + f" | {abs(axis):.4f} | {abs(res.params['det_shift_v'] - truth['det_shift_v']) / pixel:.4f} "
        f"| {abs(np.rad2deg(res.params['det_roll'] - truth['det_roll'])):.4f} |"
    )


if __name__ == "__main__":
    main()
