"""Projector throughput: forward, adjoint and one gradient; GVU/s (voxels x views / s), medians, first call
apart, peak memory, the adjoint's and the gradient's time as multiples of the same projector's forward ("x forward");
peers measured in the same run when installed: ASTRA's CPU projectors (astra-toolbox, 2D) and RTK's CPU Joseph
forward/back projectors (itk-rtk, cone beam).

Run:  python benchmarks/bench_projector.py [--workloads parallel2d,cone128] [--bases voxel,linear,bspline2,bspline3]
                                           [--repeat 5] [--no-gradient]

Workloads: parallel2d (256² x 256 views x 367), fan2d (512² x 720 x 725), cone128 (128³ x 180 x 128²),
cone256 (256³ x 360 x 256²; minutes per basis on 2 cores). Each projector is measured in a fresh child process,
so "peak MB" is that process's peak resident memory (VmHWM) and "first" is the first call on a new operator
(tracing, plus compiling unless Dr.Jit's kernel cache in ~/.drjit already holds the kernels). "gradient" is one
reverse-mode gradient of 0.5 |A(pose) x - y|² w.r.t. the volume and a rigid pose per view.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import drjit as dr
import numpy as np
from _common import machine, peak_rss_mb, pose_gradient, workload

import drct as ct
from drct.backend import drjit_module


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """(first call seconds, median of the next ``repeat`` calls)."""
    times = []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        dr.eval(fn())
        dr.sync_thread()
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:])


def measure_drct(name: str, basis: str, repeat: int, gradient: bool) -> dict[str, Any]:
    vg, pg = workload(name)
    mod = drjit_module()
    rng = np.random.default_rng(0)
    x = mod.TensorXf(rng.random(vg.shape, dtype=np.float32))
    y = mod.TensorXf(rng.random(pg.shape, dtype=np.float32))
    A = ct.Projector(vg, pg, basis=basis)
    out = {"forward": timed(lambda: A.forward_tensor(x), repeat), "adjoint": timed(lambda: A.adjoint_tensor(y), repeat)}
    if gradient:
        out["gradient"] = timed(lambda: pose_gradient(vg, pg, basis, x, y), max(1, repeat // 2))
    out["peak_mb"] = peak_rss_mb()
    return out


def measure_astra(name: str, repeat: int) -> dict[str, Any]:
    try:
        import astra
    except ImportError:
        return {}
    vg, pg = workload(name)
    if vg.ndim != 2:
        return {}
    vol_geom, proj_geom = ct.to_astra(vg, pg)
    rng = np.random.default_rng(0)
    x = rng.random(vg.shape, dtype=np.float32)
    y = rng.random(pg.shape, dtype=np.float32)
    out = {}
    for kind in ("line", "linear", "strip"):
        try:
            pid = astra.create_projector(kind if pg.beam == "parallel" else f"{kind}_fanflat", proj_geom, vol_geom)
        except Exception:
            continue  # ASTRA has no CPU 'linear' fan projector
        W = astra.OpTomo(pid)
        out[kind] = {"forward": timed(lambda W=W: W.FP(x), repeat), "adjoint": timed(lambda W=W: W.BP(y), repeat)}
        astra.projector.delete(pid)
    return out


def measure_rtk(name: str, repeat: int) -> dict[str, Any]:
    """RTK's CPU Joseph projector pair on the same cone scan (its own circular geometry: same distances, angles,
    detector and volume grid)."""
    try:
        import itk
        from itk import RTK as rtk
    except ImportError:
        return {}
    vg, pg = workload(name)
    if pg.ndim != 3 or pg.beam != "cone":
        return {}
    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(max(1, dr.thread_count()))
    n, views = vg.shape[0], pg.num_views
    image_type = itk.Image[itk.F, 3]
    geometry = rtk.ThreeDCircularProjectionGeometry.New()
    for angle in np.linspace(0.0, 360.0, views, endpoint=False):
        geometry.AddProjection(2.0 * n, 4.0 * n, float(angle))

    def image(values: np.ndarray, spacing: tuple[float, float, float]) -> Any:
        img = itk.image_from_array(np.ascontiguousarray(values, dtype=np.float32))
        size = values.shape[::-1]
        img.SetSpacing(spacing)
        img.SetOrigin([-(k - 1) * h / 2 for k, h in zip(size, spacing, strict=True)])
        return img

    rng = np.random.default_rng(0)
    volume = image(rng.random(vg.shape, dtype=np.float32), (1.0, 1.0, 1.0))
    stack = image(rng.random(pg.shape, dtype=np.float32), (1.5, 1.5, 1.0))

    def forward() -> None:
        f = rtk.JosephForwardProjectionImageFilter[image_type, image_type].New()
        f.SetInput(0, image(np.zeros(pg.shape, np.float32), (1.5, 1.5, 1.0)))
        f.SetInput(1, volume)
        f.SetGeometry(geometry)
        f.Update()

    def adjoint() -> None:
        b = rtk.JosephBackProjectionImageFilter[image_type, image_type].New()
        b.SetInput(0, image(np.zeros(vg.shape, np.float32), (1.0, 1.0, 1.0)))
        b.SetInput(1, stack)
        b.SetGeometry(geometry)
        b.Update()

    return {"Joseph": {"forward": timed(forward, repeat), "adjoint": timed(adjoint, repeat)}}


def child(args: list[str]) -> dict[str, Any]:
    result = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="parallel2d,cone128")
    parser.add_argument("--bases", default="voxel,linear,bspline2,bspline3")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per measurement (median reported)")
    parser.add_argument("--no-gradient", action="store_true", help="skip the gradient column")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, name, *rest = args.child
        if kind == "astra":
            result = measure_astra(name, args.repeat)
        elif kind == "rtk":
            result = measure_rtk(name, args.repeat)
        else:
            result = measure_drct(name, rest[0], args.repeat, not args.no_gradient)
        print(json.dumps(result))
        return

    print(machine() + "\n")
    print("| workload | projector | op | GVU/s | median s | first s | peak MB | x forward | vs peer |")
    print("|---|---|---|---|---|---|---|---|---|")
    flags = ["--repeat", str(args.repeat)] + (["--no-gradient"] if args.no_gradient else [])
    for name in args.workloads.split(","):
        vg, pg = workload(name)
        work = vg.size * pg.num_views / 1e9
        if vg.ndim == 2:
            peers, peer = child(["astra", name, *flags]), "ASTRA CPU"
        else:
            peers, peer = child(["rtk", name, *flags]), "RTK CPU"
        peers.pop("error", None)
        reference_kind = "linear" if "linear" in peers else "line" if "line" in peers else "Joseph"
        reference = peers.get(reference_kind, {})
        rows = [(f"{peer} {kind}", ops, None) for kind, ops in peers.items()]
        for basis in args.bases.split(","):
            result = child(["drct", name, basis, *flags])
            if "error" in result:
                print(f"| {name} | drct {basis} | failed: {result['error']} ||||||")
                continue
            rows.append((f"drct {basis}", {k: v for k, v in result.items() if k != "peak_mb"}, result["peak_mb"]))
        for who, ops, peak in rows:
            for op, (first, median) in ops.items():
                ratio = f"{reference[op][1] / median:.1f}x {reference_kind}" if op in reference else "-"
                peak_text = f"{peak:.0f}" if peak is not None else "-"
                # the rows: the adjoint and the gradient as multiples of the same projector's forward
                own = f"{median / ops['forward'][1]:.2f}" if op != "forward" and "forward" in ops else "-"
                cells = [name, who, op, f"{work / median:.3f}", f"{median:.4f}", f"{first:.3f}", peak_text, own, ratio]
                print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
