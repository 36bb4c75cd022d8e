"""The B-spline march before and after issue 15's per-cell cuts: forward, adjoint and gradient, old and new
alternated in one process (the old kernels are the slow reference twin in ``tests/bspline_reference.py``).

Run:  python benchmarks/bench_bspline_march.py [--workloads cone128,parallel2d] [--bases linear,bspline2,bspline3]
                                               [--views 20] [--repeat 5] [--no-gradient]

GVU/s = voxels x views / s (wall, median of ``--repeat`` after a first call); CPU s is this process's user + system
time per call (median), which a shared machine disturbs less than wall time. ``--views`` thins the scans' views
(GVU/s is per voxel-view, so a thinner scan measures the same rate in less time). "gradient" is one reverse-mode
gradient of 0.5 |A(pose) x - y|² w.r.t. the volume and a rigid pose per view.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import drjit as dr
import numpy as np
from _common import load, pose_gradient

import drct as ct
from drct.backend import drjit_module
from drct.kernels import derivatives, march

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import bspline_reference as old  # the slow twin lives with the tests

KERNELS = {
    "old": (old.project, old.backproject, old.ray_derivatives),
    "new": (march.project, march.backproject, derivatives.ray_derivatives),
}


@contextmanager
def kernels(name: str) -> Iterator[None]:
    """Run drct's operators on the ``old`` or ``new`` march kernels."""
    saved = (march.project, march.backproject, derivatives.ray_derivatives)
    march.project, march.backproject, derivatives.ray_derivatives = KERNELS[name]
    try:
        yield
    finally:
        march.project, march.backproject, derivatives.ray_derivatives = saved


def workload(name: str, views: int) -> tuple[ct.VolumeGeometry, ct.ProjectionGeometry]:
    if name == "parallel2d":
        return ct.VolumeGeometry((256, 256)), ct.parallel(np.linspace(0, np.pi, views, endpoint=False), 367)
    if name.startswith("cone"):
        n = int(name[4:])
        orbit = np.linspace(0, 2 * np.pi, views, endpoint=False)
        return ct.VolumeGeometry((n, n, n)), ct.cone(orbit, (n, n), 1.5, 2.0 * n, 4.0 * n)
    raise SystemExit(f"unknown workload {name!r}: expected parallel2d or coneN (e.g. cone128)")


def alternated(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, tuple[float, float]]:
    """Per variant: (median wall s, median CPU s) over ``repeat`` calls after a first one; the variants take turns."""
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(repeat + 1):
        for name, fn in fns.items():
            with kernels(name):
                w0, c0 = time.perf_counter(), time.process_time()
                dr.eval(fn())
                dr.sync_thread()
                if i:
                    wall[name].append(time.perf_counter() - w0)
                    cpu[name].append(time.process_time() - c0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="cone128,parallel2d")
    parser.add_argument("--bases", default="linear,bspline2,bspline3")
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-gradient", action="store_true")
    args = parser.parse_args()
    mod = drjit_module()
    print(f"load before: {load()}\n")
    print("| workload | basis | pass | old GVU/s | new GVU/s | speed-up | old CPU s | new CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.workloads.split(","):
        vg, pg = workload(name, args.views)
        voxel_views = float(np.prod(vg.shape)) * pg.num_views / 1e9
        rng = np.random.default_rng(0)
        x = mod.TensorXf(rng.random(vg.shape, dtype=np.float32))
        y = mod.TensorXf(rng.random(pg.shape, dtype=np.float32))
        for basis in args.bases.split(","):
            A = ct.Projector(vg, pg, basis=basis)
            passes: dict[str, Callable[[], Any]] = {
                "forward": lambda A=A, x=x: A.forward_tensor(x),
                "adjoint": lambda A=A, y=y: A.adjoint_tensor(y),
            }
            if not args.no_gradient:
                passes["gradient"] = lambda b=basis, v=vg, p=pg, x=x, y=y: pose_gradient(v, p, b, x, y)
            for what, fn in passes.items():
                r = alternated({"old": fn, "new": fn}, args.repeat)
                (wo, co), (wn, cn) = r["old"], r["new"]
                print(
                    f"| {name} {vg.shape} x {pg.num_views} | {basis} | {what} | {voxel_views / wo:.3f} | "
                    f"{voxel_views / wn:.3f} | {wo / wn:.2f}x | {co:.2f} | {cn:.2f} |",
                    flush=True,
                )
    print(f"\nload after: {load()}")


if __name__ == "__main__":
    main()
