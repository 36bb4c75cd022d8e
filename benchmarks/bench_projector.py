"""Projector throughput: forward and adjoint, GVU/s (voxels x views / s), medians, first call apart.

Run:  python benchmarks/bench_projector.py [--repeat 5] [--bases voxel,linear,bspline2,bspline3] [--quick]

ASTRA's CPU 2D projectors are measured in the same run when astra-toolbox is installed (ASTRA has no CPU
3D projector). "first" is the first call on a fresh operator, which includes tracing and compiling (or
loading from Dr.Jit's kernel cache in ~/.drjit: delete it to measure a cold compile).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import drjit as dr
import numpy as np

import drct as ct
from drct.cli import info as machine_info


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """(first call seconds, median of the next ``repeat`` calls)."""
    start = time.perf_counter()
    fn()
    dr.sync_thread()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        dr.sync_thread()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def workloads(quick: bool) -> dict[str, tuple[ct.VolumeGeometry, ct.ProjectionGeometry]]:
    scale = 2 if quick else 1
    n2, n3 = 256 // scale, 128 // scale
    return {
        f"2D parallel {n2}² x {256 // scale} x {367 // scale}": (
            ct.VolumeGeometry((n2, n2)),
            ct.parallel(np.linspace(0, np.pi, 256 // scale, endpoint=False), 367 // scale),
        ),
        f"cone {n3}³ x {180 // scale} x {n3}²": (
            ct.VolumeGeometry((n3, n3, n3)),
            ct.cone(np.linspace(0, 2 * np.pi, 180 // scale, endpoint=False), (n3, n3), 1.5, 2.0 * n3, 4.0 * n3),
        ),
    }


def bench_drct(vg: ct.VolumeGeometry, pg: ct.ProjectionGeometry, basis: str, repeat: int) -> list[dict[str, Any]]:
    A = ct.Projector(vg, pg, basis=basis)
    rng = np.random.default_rng(0)
    x = A.types.Tensor(rng.uniform(size=vg.shape).astype(np.float32))
    y = A.types.Tensor(rng.uniform(size=pg.shape).astype(np.float32))
    rows = []
    for op, fn in (("forward", lambda: A.forward_tensor(x)), ("adjoint", lambda: A.adjoint_tensor(y))):
        first, median = timed(fn, repeat)
        rows.append({"who": f"drct {basis}", "op": op, "first": first, "median": median})
    return rows


def bench_astra(vg: ct.VolumeGeometry, pg: ct.ProjectionGeometry, repeat: int) -> list[dict[str, Any]]:
    try:
        import astra
    except ImportError:
        return []
    vol_geom, proj_geom = ct.to_astra(vg, pg)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=vg.shape).astype(np.float32)
    y = rng.uniform(size=pg.shape).astype(np.float32)
    rows = []
    for kind in ("line", "linear", "strip"):
        kind_name = kind if pg.beam == "parallel" else f"{kind}_fanflat"
        try:
            pid = astra.create_projector(kind_name, proj_geom, vol_geom)
        except Exception:
            continue
        W = astra.OpTomo(pid)
        for op, fn in (("forward", lambda W=W: W.FP(x)), ("adjoint", lambda W=W: W.BP(y))):
            first, median = timed(fn, repeat)
            rows.append({"who": f"ASTRA CPU {kind}", "op": op, "first": first, "median": median})
        astra.projector.delete(pid)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per measurement (median reported)")
    parser.add_argument("--bases", default="voxel,linear,bspline2,bspline3")
    parser.add_argument("--quick", action="store_true", help="halve every dimension (a smoke run)")
    args = parser.parse_args()
    info = machine_info()
    print(f"drct {info['drct']} on {info['backend']} ({info['device']}), LLVM {info['llvm']}\n")
    print("| workload | projector | op | GVU/s | median s | first call s | vs ASTRA linear |")
    print("|---|---|---|---|---|---|---|")
    for name, (vg, pg) in workloads(args.quick).items():
        rows = []
        if vg.ndim == 2:
            rows += bench_astra(vg, pg, args.repeat)
        for basis in args.bases.split(","):
            rows += bench_drct(vg, pg, basis, args.repeat)
        reference = {r["op"]: r["median"] for r in rows if r["who"] == "ASTRA CPU linear"}
        work = vg.size * pg.num_views / 1e9
        for r in rows:
            ratio = f"{reference[r['op']] / r['median']:.1f}x" if r["op"] in reference else "-"
            print(
                f"| {name} | {r['who']} | {r['op']} | {work / r['median']:.3f} | {r['median']:.4f} | "
                f"{r['first']:.3f} | {ratio} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
