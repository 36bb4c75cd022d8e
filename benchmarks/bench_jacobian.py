"""Geometry Jacobian of a calibration level: every column from one derivative march (``Projector.geometry_jvps``)
against one forward-mode pass per column (the reference the tests compare with), in the same run.

Run:  python benchmarks/bench_jacobian.py [--size 64] [--views 180] [--basis bspline2] [--repeat 5]

The model is the cone-beam example's: det_shift_u, det_shift_v, det_roll, cor_offset and the object pose
(10 columns). Prints medians of ``--repeat`` timed calls after one untimed call, wall and process CPU seconds, and
the load average, since CPU time is the steadier number on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from drjit.llvm.ad import TensorXf

import drct as ct
from drct.calibration import linalg
from drct.calibration.model import PerturbModel


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--views", type=int, default=180)
    parser.add_argument("--basis", default="bspline2")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    n = args.size
    vg = ct.VolumeGeometry((n, n, n))
    pg = ct.cone(np.linspace(0, 2 * np.pi, args.views, endpoint=False), (n, n), 1.5, 2.0 * n, 4.0 * n)
    model = PerturbModel(pg, ["det_shift_u", "det_shift_v", "det_roll", "cor_offset"], pose=True)
    theta = model.theta0.copy()
    x = TensorXf(ct.phantoms.shepp_logan(vg))
    groups = linalg.seed_groups(model)

    def one_pass_per_column() -> list[np.ndarray]:
        out = []
        for idx in groups:
            seed = np.zeros(model.size)
            seed[idx] = 1.0
            out.append(linalg.jvp(vg, args.basis, model.geometry(theta, seed), x))
        return out

    print(f"{n}³ x {args.views} views x {n}², {args.basis}, {len(groups)} columns, load {os.getloadavg()[0]:.1f}")
    print("| method | median wall s | median CPU s |")
    print("|---|---|---|")
    rows = [
        ("one march (geometry_jvps)", lambda: linalg.jacobian(model, theta, vg, args.basis, x, groups)),
        ("one pass per column", one_pass_per_column),
    ]
    for name, fn in rows:
        wall, cpu = timed(fn, args.repeat)
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
