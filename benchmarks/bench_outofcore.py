"""Out-of-core FDK (drct.outofcore): time, rates and peak RSS of a large cone-beam FDK streamed from disk, a kill
and resume halfway, and the result compared with the in-memory ct.fdk on a central crop.

Steps (each FDK in a child process, so that its peak RSS is its own):

1. the projections store: exact line integrals of the 3D Shepp-Logan phantom (``ct.phantoms``), written a chunk
   of views at a time to ``WORK/y_<N>.npy`` (or ``.zarr``); kept for later runs;
2. the streaming FDK with ``--memory``, killed (SIGKILL) after ``--kill-after`` of its z-planes, then run again:
   it resumes; the table shows both runs' times and peak RSS and the rates of the filter and backprojection
   passes (the backprojection rate is voxel-views per second: volume voxels x views / seconds, wall clock and per
   second of the process's CPU time, less dependent on the machine's load);
3. the in-memory ``ct.fdk`` of the central ``--crop``³ voxels (same voxel size, the same projections) against the
   same voxels of the streamed volume: the largest difference relative to the crop's largest value.

With ``--stop-after K`` the FDK stops (and leaves its work folder) after K z-planes: a measurement of the rates and
the RSS of a run too long to finish (the extrapolation to the whole volume is printed).

With ``--compare`` the same FDK runs twice more, uninterrupted: with :mod:`drct.recon.backproject`'s kernel and with
the first voxel-driven kernel (one launch per view, ``tests/fbp_reference.py``): both backprojection rates in one
run, and the largest difference between the two volumes.

Measured (2 CPU cores shared with other jobs), the first kernel (one launch per view): 512³ from 720 x 512² with
--memory 3GiB, killed after its first 301-plane slab and resumed: filter pass 142 s, backprojection 58 M
voxel-views/s at load 20 and 105 M at load 10, 1130 s + 380 s, peak RSS 2.93 GiB, the central 128³ identical to
ct.fdk; 256³ from 180 x 256² with 256MiB: 38 M voxel-views/s at load 24, peak RSS 0.35 GiB, identical crop.
The kernel of :mod:`drct.recon.backproject` as it was then (8 views unrolled per launch, packet gathers; now one
loop over the views per kernel, 0.85-0.9x its CPU time on a cone), load 9-14: 256³ from 180 x 256²
(--compare) 188 M voxel-views/s, 665 M per CPU-second, against 74 M and 246 M for the first kernel in the same
run, peak RSS 0.23 GiB, identical crop; 512³ from 90 x 512² with 1GiB (--compare --stop-after 1) 294 M vs 118 M,
RSS 0.44 vs 1.06 GiB; 1024³ from 720 x 1024² with 3GiB (--stop-after 1): filter pass 155 s (4.9 Mpixel/s),
backprojection 212 M voxel-views/s (559 M per CPU-second), the whole 1024³ backprojection extrapolated to 61 min,
peak RSS 3.47 GiB (over the budget: the backprojection pass grows by about a chunk of views per chunk).

Usage:
    python benchmarks/bench_outofcore.py --quick                  # 64³ from 90 x 64² in 3 slabs, seconds
    nice python benchmarks/bench_outofcore.py --size 256 --views 180 --memory 256MiB --kill-after 100 --compare
    nice python benchmarks/bench_outofcore.py --size 512 --views 720 --memory 3GiB --kill-after 256 --crop 128
    nice python benchmarks/bench_outofcore.py --size 1024 --views 720 --memory 3GiB --stop-after 1 --crop 0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import drct as ct
from drct.outofcore import create_array, fdk, open_array, plan
from drct.phantoms import shepp_logan_projections

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fbp_reference import ReferenceBackprojector


def geometry(size: int, views: int) -> tuple[ct.VolumeGeometry, ct.ProjectionGeometry]:
    """An N³ volume of 1 mm voxels, a full circular cone-beam scan on an N² detector that covers it."""
    vg = ct.VolumeGeometry((size, size, size), voxel_size=1.0)
    sod, sdd = 4.0 * size, 6.0 * size
    spacing = 1.25 * sdd / sod  # the detector sees the volume with a margin
    pg = ct.cone(np.linspace(0, 2 * np.pi, views, endpoint=False), (size, size), spacing, sod, sdd)
    return vg, pg


def write_projections(path: Path, vg: ct.VolumeGeometry, pg: ct.ProjectionGeometry, chunk: int = 8) -> float:
    """Exact Shepp-Logan line integrals written a chunk of views at a time; seconds taken (0 when reused)."""
    if path.exists():
        if open_array(path).shape == pg.shape:
            return 0.0
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    start = time.perf_counter()
    partial = path.with_name(f".{path.name}.writing{path.suffix}")
    store = create_array(partial, pg.shape, np.float32, block=chunk)
    for first in range(0, pg.num_views, chunk):
        views = np.arange(first, min(pg.num_views, first + chunk))
        store.write(first, shepp_logan_projections(pg.select_views(views), vg=vg))
    store.flush()
    os.replace(partial, path)
    return time.perf_counter() - start


def child(args: argparse.Namespace) -> None:
    """One streaming FDK in this process; prints a JSON line with its times and peak RSS."""
    vg, pg = geometry(args.size, args.views)
    if args.reference:  # the first kernel, one launch per view
        sys.modules["drct.outofcore.fdk"].make_backprojector = ReferenceBackprojector  # type: ignore[attr-defined]
    marks: dict[str, float] = {}
    start = time.perf_counter()

    def callback(stage: str, done: int) -> None:
        now, cpu = time.perf_counter() - start, time.process_time()
        if stage == "filtered":
            marks["filtered_at"], marks["filtered_cpu"], marks["filtered_views"] = now, cpu, done
            marks["filtered_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        else:
            marks.setdefault("first_planes_at", now)
            marks["planes_at"], marks["planes_cpu"], marks["planes"] = now, cpu, done
        limit = args.kill_at or args.stop_at
        if stage == "planes" and limit and done >= limit:
            print(json.dumps({**marks, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)  # as a crash: no cleanup

    fdk(vg, pg, args.projections, args.output, memory=args.memory, progress=False, callback=callback)
    marks["total"] = time.perf_counter() - start
    print(json.dumps({**marks, "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}), flush=True)


def run_child(
    args: argparse.Namespace,
    projections: Path,
    output: Path,
    kill_at: int = 0,
    stop_at: int = 0,
    reference: bool = False,
) -> dict:
    argv = [sys.executable, __file__, "--child", "--size", str(args.size), "--views", str(args.views)]
    argv += ["--memory", args.memory, "--projections", str(projections), "--output", str(output)]
    argv += ["--kill-at", str(kill_at), "--stop-at", str(stop_at)] + (["--reference"] if reference else [])
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"the FDK child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1])
    result["wall"], result["returncode"] = wall, done.returncode
    return result


def backprojection_rows(name: str, run: dict, planes0: int, n: int, views: int) -> list[tuple[str, str, str, str]]:
    """The table's rows of one run's backprojection pass: time, rate, extrapolations (none if it did no planes)."""
    bp_time = run["planes_at"] - run.get("filtered_at", 0.0) if "planes_at" in run else float("nan")
    bp_cpu = run["planes_cpu"] - run.get("filtered_cpu", 0.0) if "planes_cpu" in run else float("nan")
    planes = run.get("planes", 0) - planes0
    if planes <= 0:
        return []
    rate = planes * n * n * views / bp_time
    per_cpu = f"{planes * n * n * views / bp_cpu / 1e6:.0f} M per CPU-second"
    return [
        (name, f"{bp_time:.1f} s for {planes} planes", f"{rate / 1e6:.1f} Mvoxel-views/s", per_cpu),
        (f"-> whole {n}³ backprojection", f"{n**3 * views / rate:.0f} s", "extrapolated", ""),
        ("-> 2048³ from 720 x 2048²", f"{2048**3 * 720 / rate / 3600:.1f} h", "extrapolated", ""),
    ]


def compare_kernels(args: argparse.Namespace, projections: Path, work: Path) -> list[tuple[str, str, str, str]]:
    """``--compare``: one uninterrupted FDK with the new kernel, then one with the first, taking turns under the
    same load; their backprojection rows and the largest difference between their volumes."""
    n, rows, outputs = args.size, [], []
    for name, reference in (("new kernel", False), ("first kernel", True)):
        output = work / f"x_{n}_{'first' if reference else 'new'}_kernel.npy"
        output.unlink(missing_ok=True)
        shutil.rmtree(work / f".{output.name}.ooc-partial", ignore_errors=True)
        run = run_child(args, projections, output, stop_at=args.stop_after, reference=reference)
        print(f"# FDK, {name}: {json.dumps(run)}", flush=True)
        rows.append((f"FDK, {name}, uninterrupted", f"{run['wall']:.1f} s", f"peak RSS {gib(run['rss'])}", ""))
        rows += backprojection_rows(f"backprojection, {name}", run, 0, n, args.views)[:1]
        outputs.append(output)
    if not args.stop_after:
        new, old = (open_array(path).read(0, n) for path in outputs)
        rows.append(
            ("new vs first kernel", "", f"max rel. difference {np.abs(new - old).max() / np.abs(old).max():.1e}", "")
        )
    return rows


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def crop_rows(crop_vg: ct.VolumeGeometry, pg: ct.ProjectionGeometry, margin: int = 3) -> tuple[int, int]:
    """The detector rows ``first .. last - 1`` that the corners of ``crop_vg`` project onto in any view of the flat
    detector ``pg``, widened by ``margin`` rows."""
    half = np.asarray(crop_vg.shape[::-1]) * np.asarray(crop_vg.voxel_size[::-1]) / 2
    corners = np.asarray(crop_vg.center[::-1]) + half * np.array(np.meshgrid(*[[-1, 1]] * 3)).reshape(3, -1).T
    src, det, du, dv = (np.asarray(a, dtype=np.float64) for a in (pg.src, pg.det, pg.det_u, pg.det_v))
    normal = np.cross(du, dv)
    ray = corners[None, :, :] - src[:, None, :]
    t = np.sum((det - src) * normal, axis=1)[:, None] / np.sum(ray * normal[:, None, :], axis=2)
    hit = src[:, None, :] + t[..., None] * ray
    v = np.sum((hit - det[:, None, :]) * dv[:, None, :], axis=2) / np.sum(dv * dv, axis=1)[:, None]
    rows = pg.det_shape[0]
    first = max(0, int(np.floor((rows - 1) / 2 + v.min())) - margin)
    last = min(rows, int(np.ceil((rows - 1) / 2 + v.max())) + 1 + margin)
    return first, last


def crop_row(
    args: argparse.Namespace, vg: ct.VolumeGeometry, pg: ct.ProjectionGeometry, projections: Path, output: Path
) -> tuple[str, str, str, str]:
    """The in-memory ``ct.fdk`` of the central crop³ voxels against the same voxels of the streamed volume.

    The in-memory FDK reads only the detector rows the crop projects onto (FDK filters along rows, weights each
    pixel by its own ray and reads a voxel's value from the pixels around its projection, so the other rows do
    not enter the crop's voxels): a 720 x 1024² scan does not fit in memory whole, its band of rows does."""
    n, c = vg.shape[0], args.crop
    lo = (n - c) // 2
    shift = lo + (c - 1) / 2 - (n - 1) / 2  # the crop's centre, in voxels (1 mm) from the volume's
    crop_vg = ct.VolumeGeometry((c, c, c), voxel_size=1.0, center=(shift, shift, shift))
    first, last = crop_rows(crop_vg, pg)
    band = ct.ProjectionGeometry(
        pg.beam, pg.src, pg.det + pg.det_v * ((first + last - 1) / 2 - (pg.det_shape[0] - 1) / 2), pg.det_u,
        pg.det_v, (last - first, pg.det_shape[1]),
    )  # fmt: skip
    scan = open_array(projections).read(0, args.views)
    y = np.ascontiguousarray(scan[:, first:last])
    small = math.prod(pg.shape) * 4 <= 2**28  # small enough for the whole detector in memory too
    if not small:
        del scan  # the band only: the whole scan would not fit beside the in-memory FDK
    start = time.perf_counter()
    reference = np.asarray(ct.fdk(ct.Projector(crop_vg, band), y, progress=False))
    elapsed = time.perf_counter() - start
    streamed = open_array(output).read(lo, lo + c)[:, lo : lo + c, lo : lo + c]
    error = float(np.abs(streamed - reference).max() / np.abs(reference).max())
    l2 = float(np.linalg.norm(streamed - reference) / np.linalg.norm(reference))
    difference = f"max rel. difference {error:.1e}, rel. L2 {l2:.1e} (rows {first}-{last - 1})"
    if small:
        whole = np.asarray(ct.fdk(ct.Projector(crop_vg, pg), scan, progress=False))
        difference += f"; whole detector: {float(np.abs(streamed - whole).max() / np.abs(whole).max()):.1e}"
    rss = gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return f"in-memory ct.fdk of the central {c}³", f"{elapsed:.1f} s", difference, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="volume N³ and detector N²")
    parser.add_argument("--views", type=int, default=720)
    parser.add_argument("--memory", default="3GiB", help="the FDK's memory budget")
    parser.add_argument("--format", choices=("npy", "zarr"), default="npy", help="the projections store")
    parser.add_argument("--work", default="/tmp/drct-bench-outofcore", help="folder for the stores")
    parser.add_argument("--kill-after", type=int, default=0, help="SIGKILL the FDK after this many z-planes, resume")
    parser.add_argument("--stop-after", type=int, default=0, help="stop after this many z-planes (rates only)")
    parser.add_argument("--crop", type=int, default=128, help="compare a central crop³ with ct.fdk (0: skip)")
    parser.add_argument("--quick", action="store_true", help="64³ from 90 x 64² (CI size)")
    parser.add_argument("--compare", action="store_true", help="also run the first (per-view) kernel")
    parser.add_argument(
        "--crop-only", action="store_true", help="only compare the crop of an earlier run's volume with ct.fdk"
    )
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--projections", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--kill-at", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--stop-at", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.quick:
        args.size, args.views, args.memory, args.crop = 64, 90, "4MiB", 32
        args.kill_after = args.kill_after or 25
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    vg, pg = geometry(args.size, args.views)
    n = args.size
    projections = work / f"y_{n}x{args.views}.{args.format}"
    output = work / f"x_{n}.npy"
    if args.crop_only:
        print(crop_row(args, vg, pg, projections, output))
        return
    for stale in (output, work / f".{output.name}.ooc-partial"):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    print(f"# load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")
    print(f"# {n}³ volume from {args.views} x {n}² projections, budget {args.memory}: {plan(vg, pg, args.memory)}",
          flush=True)  # fmt: skip
    written = write_projections(projections, vg, pg)
    size = math.prod(pg.shape) * 4
    rows = [("write projections", f"{written:.1f} s" if written else "reused", gib(size), "")]
    runs = []
    print(f"# projections: {written:.1f} s" if written else "# projections: reused", flush=True)
    if args.kill_after:
        runs.append(("FDK, killed", run_child(args, projections, output, kill_at=args.kill_after)))
        print(f"# killed run: {json.dumps(runs[-1][1])}", flush=True)
    runs.append(("FDK" + (", resumed" if runs else ""), run_child(args, projections, output, stop_at=args.stop_after)))
    print(f"# {runs[-1][0]}: {json.dumps(runs[-1][1])}", flush=True)
    for name, r in runs:
        rows.append((name, f"{r['wall']:.1f} s", f"peak RSS {gib(r['rss'])}", f"exit {r['returncode']}"))
    first = runs[0][1]
    if "filtered_at" in first:
        rate = first["filtered_views"] * math.prod(pg.det_shape) / first["filtered_at"]
        rows.append(("filter pass", f"{first['filtered_at']:.1f} s", f"{rate / 1e6:.1f} Mpixel/s", ""))
    planes0 = runs[0][1].get("planes", 0) if len(runs) > 1 else 0
    rows += backprojection_rows("backprojection", runs[-1][1], planes0, n, args.views)
    if args.compare:
        rows += compare_kernels(args, projections, work)
    if args.crop and not args.stop_after:
        rows.append(crop_row(args, vg, pg, projections, output))
    width = max(len(r[0]) for r in rows)
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:>24}  {r[2]:>26}  {r[3]}")
    print(f"# load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")


if __name__ == "__main__":
    main()
