"""The march before and after issue 15's march work, alternated in one process: GVU/s (voxels x views / s).

"old" is the reference twin (tests/march_reference.py for the voxel basis: the general march with
``dr.minimum``, a mask per coefficient, one axis per step; for the other bases the general march with
``dr.minimum``/``dr.maximum`` restored; every basis marching view by view); "new" is what drct runs now
(drct/kernels/box.py for the voxel basis, 3D scans marched detector row by row across the views). For the 2D
voxel forward a third row, "cells", is the box march stepping one cell per iteration (``box.project_cells``, the
reference twin of the column walk ``box.project`` runs in 2D).
Each call is timed in wall seconds, CPU seconds of this process (all threads) and Dr.Jit kernel execution
time; medians of ``--repeat`` rounds, old and new alternating within a round, the first call of each apart.

Run:  python benchmarks/bench_march.py [--workloads parallel2d,fan2d,cone128] [--bases voxel,linear,bspline2]
                                       [--views N] [--repeat 5]

Workloads as in bench_projector.py: parallel2d (256² x 256 views x 367), fan2d (512² x 720 x 725), cone128
(128³ x 180 views x 128²);
``--views`` takes fewer views for a quick comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import drjit as dr
import numpy as np
from _common import workload

import drct as ct
from drct.backend import drjit_module
from drct.kernels import box, march
from drct.transform import Transform

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import march_reference  # the reference twin lives with the tests


@contextmanager
def old_march() -> Iterator[None]:
    """Run the reference twin: the old voxel march, and the old minimum/maximum in the general march."""
    saved = (march.project, march.backproject, march.smaller, march.larger, Transform.pads, Transform.rows_first)
    march.smaller, march.larger = dr.minimum, dr.maximum
    march.project = lambda grid, t, segs, coeffs: (
        march_reference.project(grid, t, segs, coeffs) if grid.degree == 0 else saved[0](grid, t, segs, coeffs)
    )
    march.backproject = lambda grid, t, segs, values, target, spread=False: (
        march_reference.backproject if grid.degree == 0 else saved[1]
    )(grid, t, segs, values, target, spread)
    Transform.pads = lambda self, batch: False
    Transform.rows_first = False  # view by view
    try:
        yield
    finally:
        march.project, march.backproject, march.smaller, march.larger, Transform.pads, Transform.rows_first = saved


@contextmanager
def new_march() -> Iterator[None]:
    yield


@contextmanager
def cell_walk() -> Iterator[None]:
    """The box march one cell per iteration in 2D too (instead of one column of the major axis)."""
    saved = box.project
    box.project = box.project_cells
    try:
        yield
    finally:
        box.project = saved


def timed(fn: Callable[[], Any]) -> tuple[float, float, float]:
    """(wall, CPU, kernel execution) seconds of one call."""
    dr.kernel_history()
    wall, cpu = time.perf_counter(), time.process_time()
    dr.eval(fn())
    dr.sync_thread()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    run = sum(k.get("execution_time", 0.0) for k in dr.kernel_history()) / 1e3
    return wall, cpu, run


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workloads", default="parallel2d,cone128")
    parser.add_argument("--bases", default="voxel")
    parser.add_argument("--views", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    dr.set_flag(dr.JitFlag.KernelHistory, True)
    mod = drjit_module()
    two = {"old": old_march, "new": new_march}
    three = {"old": old_march, "cells": cell_walk, "new": new_march}
    print(f"# {os.uname().nodename}, {os.cpu_count()} CPUs, Dr.Jit {dr.__version__}")
    print(f"# load before: {os.getloadavg()}")
    header = ("workload", "basis", "op", "march", "wall ms", "CPU ms", "exec ms", "GVU/s")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (10, 9, 7, 5, 9, 9, 9, 7), strict=True)))
    for name in args.workloads.split(","):
        vg, pg = workload(name, args.views)
        voxel_views = float(np.prod(vg.shape)) * pg.shape[0]
        rng = np.random.default_rng(0)
        x = mod.TensorXf(rng.random(vg.shape, dtype=np.float32))
        y = mod.TensorXf(rng.random(pg.shape, dtype=np.float32))
        for basis in args.bases.split(","):
            A = ct.Projector(vg, pg, basis=basis)
            calls = {"forward": lambda A=A, x=x: A.forward_tensor(x), "adjoint": lambda A=A, y=y: A.adjoint_tensor(y)}
            for op, fn in calls.items():
                variants = three if (basis == "voxel" and len(vg.shape) == 2 and op == "forward") else two
                results: dict[str, list[tuple[float, float, float]]] = {v: [] for v in variants}
                outputs = {}
                for v, context in variants.items():  # first calls apart (tracing, compiling)
                    with context():
                        outputs[v] = np.asarray(fn().numpy())
                scale = np.abs(outputs["old"]).max()
                for _ in range(args.repeat):
                    for v, context in variants.items():
                        with context():
                            results[v].append(timed(fn))
                for v in variants:
                    wall, cpu, run = (statistics.median(r[i] for r in results[v]) for i in range(3))
                    print(
                        f"{name:>10} {basis:>9} {op:>7} {v:>5} {wall * 1e3:9.1f} {cpu * 1e3:9.1f} {run * 1e3:9.1f} "
                        f"{voxel_views / wall / 1e9:7.3f}",
                        flush=True,
                    )
                for v in variants:
                    if v != "old":
                        diff = np.abs(outputs[v] - outputs["old"]).max() / scale
                        print(f"{'':>10} {'':>9} {op:>7} max |{v} - old| / max |old| = {diff:.1e}")
    print(f"# load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
