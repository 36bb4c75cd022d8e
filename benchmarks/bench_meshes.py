"""Mesh path lengths: Mrays/s of the Dr.Jit loop (drct.meshes) against the numpy-bookkeeping twin it replaced.

Run:  python benchmarks/bench_meshes.py [--repeats 5] [--compose replace add] [--scale 1.0]

Traces every ray of ``scenes/industrial_meshes.toml`` (120 views x 80 x 160 pixels, three meshes) through its
meshes. The first call of each implementation (kernel compilation, Mitsuba scene build) is reported apart; the
table gives the median of ``--repeats`` further calls, wall-clock and process CPU time (all threads), with the
load average before and after: the machine may be shared, so compare rows of one run only. The last column is
the largest difference between the two implementations' lengths, relative to the part's size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import drct as ct
from drct.meshes import Mesh, mesh_path_lengths
from drct.scene.mesh_objects import MeshObject

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from mesh_reference import reference_path_lengths  # noqa: E402  (the slow twin lives with the tests)


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall-clock seconds, process CPU seconds and the result of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after the first (median reported)")
    parser.add_argument("--compose", nargs="+", default=["replace"], choices=["replace", "add"])
    parser.add_argument("--scale", type=float, default=1.0, help="scene scale in (0, 1] (1: full size)")
    args = parser.parse_args()

    scene = ct.load_scene(ROOT / "scenes" / "industrial_meshes.toml", scale=args.scale)
    pg = scene.projection_geometry()
    meshes: list[Mesh] = [o.mesh for o in scene.objects if isinstance(o, MeshObject)]
    size = max(float(np.linalg.norm(m.bounds[1] - m.bounds[0])) for m in meshes)
    rays = pg.num_rays
    print(f"{scene.name}: {rays} rays ({pg.shape}), {len(meshes)} meshes, {sum(len(m.faces) for m in meshes)} faces")
    print(
        "| compose | implementation | load before | first call s | median s | Mrays/s | CPU s | Mrays/CPU-s "
        "| load after | max diff / size |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for compose in args.compose:
        results: dict[str, list[np.ndarray]] = {}
        for name, fn in (
            ("numpy twin (before)", lambda c=compose: reference_path_lengths(meshes, pg, c)[0]),
            ("Dr.Jit loop (drct.meshes)", lambda c=compose: mesh_path_lengths(meshes, pg, c)),
        ):
            before = load()
            first, _, out = timed(fn)
            runs = [timed(fn)[:2] for _ in range(args.repeats)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            results[name] = out
            diff = ""
            if len(results) == 2:
                old, new = results.values()
                diff = f"{max(float(np.abs(a - b).max()) for a, b in zip(old, new, strict=True)) / size:.1e}"
            print(
                f"| {compose} | {name} | {before} | {first:.2f} | {wall:.3f} | {rays / wall / 1e6:.2f} | {cpu:.3f} "
                f"| {rays / cpu / 1e6:.2f} | {load()} | {diff} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
