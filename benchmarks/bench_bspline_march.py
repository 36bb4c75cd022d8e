"""The B-spline march before and after issue 15's per-cell cuts: forward, adjoint and gradient, old and new
alternated in one process (the old kernels are the slow reference twin in ``tests/bspline_reference.py``; with
``--old masked``, today's kernels on the volume itself with masks instead of on its padded copy,
:mod:`drct.kernels.padding`).

Run:  python benchmarks/bench_bspline_march.py [--workloads cone128,parallel2d] [--bases linear,bspline2,bspline3]
                                               [--views 20] [--repeat 5] [--passes forward,adjoint,gradient,jvp]
                                               [--no-gradient] [--ablate] [--old reference|masked]

GVU/s = voxels x views / s (wall, median of ``--repeat`` after a first call); CPU s is this process's user + system
time per call (median), which a shared machine disturbs less than wall time. ``--views`` thins the scans' views
(GVU/s is per voxel-view, so a thinner scan measures the same rate in less time). "gradient" is one reverse-mode
gradient of 0.5 |A(pose) x - y|² w.r.t. the volume and a rigid pose per view; "jvp" (only when asked for) the
derivative of ``A x`` along one geometry tangent (``det_shift_u``), ``A.geometry_jvps``: the derivative march
alone, as a calibration's Jacobian runs it.

``--ablate`` instead splits the new kernels' CPU time per pass by removing one part at a time (the results are
wrong; only the time counts): forward without the face gathers (an arithmetic stand-in of the same index), without
the window slide, without the contraction, and with neither (the march alone); adjoint without the scatters (an
arithmetic stand-in) and without the weights.

Measured 2026-12-06 (AMD EPYC, 2 cores shared, load 4-7; CPU ms, ``--ablate --views 6`` cone, ``--views 256`` 2D):
cone 128³ bspline2 forward 240 = face gathers 89 + slide 36 + contraction 45 + march alone 29 + the rest 41
(the face index arithmetic is not in it: a stand-in index gave the same time); adjoint 619, of which scatters 490
and weights 127. 2D parallel 256² bspline2 forward 75 = gathers 24 + contraction 27 + march 24; adjoint 187, of
which scatters 129. The gathers run at about 0.7 ns per lane (each coefficient is gathered once per ray already),
so the exact ray-driven march cannot reach issue 15's 3x forward / 7x adjoint by cutting per-cell arithmetic.
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
from _common import load, pose_gradient, wall_and_cpu, workload

import drct as ct
from drct.backend import drjit_module
from drct.kernels import derivatives, grid, march, scatter
from drct.transform import Transform

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import bspline_reference as old  # the slow twin lives with the tests

KERNELS = {
    "reference": (old.project, old.backproject, old.ray_derivatives),
    "masked": (march.project, march.backproject, derivatives.ray_derivatives),
    "new": (march.project, march.backproject, derivatives.ray_derivatives),
}


@contextmanager
def kernels(name: str) -> Iterator[None]:
    """Run drct's operators on the march kernels ``name`` of :data:`KERNELS` (``reference`` and ``masked`` on the
    volume itself, with masks: no padded copies)."""
    saved = (march.project, march.backproject, derivatives.ray_derivatives, Transform.pads)
    march.project, march.backproject, derivatives.ray_derivatives = KERNELS[name]
    if name in ("reference", "masked"):
        Transform.pads = lambda self, batch: False
    try:
        yield
    finally:
        march.project, march.backproject, derivatives.ray_derivatives, Transform.pads = saved


def ablated_project(part: str) -> Callable[..., Any]:
    """:func:`drct.kernels.march.project` (degree >= 1) without ``part``: "gathers", "slide", "contraction" or
    "both" (contraction and window advance)."""

    def project(grid: grid.KnotGrid, t: Any, segs: grid.Segments, coeffs: Any, padded: bool = False) -> Any:
        win = march.Window(grid, t, segs, padded)

        def visit(acc: Any, cell: grid.Cell) -> Any:
            total, window = acc
            if part in ("contraction", "both"):
                total = dr.fma(window[0], cell.length, total)
            else:
                total = total + march.contract_cell(grid, cell, window, win.flip)
            if part == "both":
                return total, window
            index, inside = win.face_entries(cell, far=True)
            if part == "gathers":
                face = [dr.select(m, t.Float(i) * 1e-9, 0.0) for i, m in zip(index, inside, strict=True)]
            else:
                face = [dr.gather(t.Float, coeffs, win.index(i, coeffs), m) for i, m in zip(index, inside, strict=True)]
            if part == "slide":
                return total, [w + f for w, f in zip(window, face + [0.0] * len(window), strict=False)]
            return total, win.slid(window, cell, face)

        width = dr.width(segs.length)
        return march.march(grid, t, segs, visit, (dr.zeros(t.Float, width), win.first(coeffs, segs)))[0]

    return project


def ablated_backproject(part: str) -> Callable[..., Any]:
    """:func:`drct.kernels.march.backproject` (degree >= 1) without ``part``: "scatters" or "weights"."""

    def backproject(
        grid: grid.KnotGrid, t: Any, segs: grid.Segments, values: Any, target: Any, spread: bool, padded: bool = False
    ) -> None:
        mode = scatter.scatter_mode(target, spread)
        win = march.Window(grid, t, segs, padded)

        def visit(acc: Any, cell: grid.Cell) -> Any:
            window, sink = acc
            if part == "weights":
                window = [w + cell.length for w in window]
            else:
                window = march.cell_weights(grid, cell, win.flip, window)
            if part != "scatters":
                return win.flush(window, cell, values, target, mode), sink
            index, inside = win.face_entries(cell, far=False)
            for slot, (i, m) in enumerate(zip(index, inside, strict=True)):
                value = window[win.near[-1][slot]]
                for a in reversed(range(grid.ndim - 1)):
                    value = dr.select(cell.leaving[a], window[win.near[a][slot]], value)
                sink = sink + dr.select(m, value * values * t.Float(i), 0.0)
            return win.slid(window, cell, None), sink

        width = dr.width(segs.length)
        state = ([dr.zeros(t.Float, width)] * len(win.span), dr.zeros(t.Float, width))
        (window, sink), coords = march.march(grid, t, segs, visit, state, return_cell=True)
        win.flush_all(window, coords, values + sink * 1e-30, target, segs.length > 0, mode)

    return backproject


def ablate(names: list[str], bases: list[str], views: int, repeat: int) -> None:
    """CPU ms per pass of the new kernels with one part removed at a time, variants alternated."""
    mod = drjit_module()
    print(
        "| workload | basis | pass | full | "
        + " | ".join(f"no {p}" for p in ("gathers", "slide", "contraction"))
        + " |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names:
        vg, pg = workload(name, views)
        rng = np.random.default_rng(0)
        x = mod.TensorXf(rng.random(vg.shape, dtype=np.float32))
        y = mod.TensorXf(rng.random(pg.shape, dtype=np.float32))
        for basis in bases:
            A = ct.Projector(vg, pg, basis=basis)
            forward = {p: ablated_project(p) for p in ("gathers", "slide", "contraction", "both")}
            forward["full"] = march.project
            backward = {p: ablated_backproject(p) for p in ("scatters", "weights")}
            backward["full"] = march.backproject
            cpu: dict[str, list[float]] = {k: [] for k in [*forward, *(f"adj {k}" for k in backward)]}
            for i in range(repeat + 1):
                for k, fn in forward.items():
                    KERNELS["ablated"] = (fn, march.backproject, derivatives.ray_derivatives)
                    cpu[k].append(_cpu(lambda A=A, x=x: A.forward_tensor(x), i))
                for k, fn in backward.items():
                    KERNELS["ablated"] = (march.project, fn, derivatives.ray_derivatives)
                    cpu[f"adj {k}"].append(_cpu(lambda A=A, y=y: A.adjoint_tensor(y), i))
            ms = {k: 1e3 * statistics.median(v[1:]) for k, v in cpu.items()}
            label = f"| {name} {vg.shape} x {pg.num_views} | {basis}"
            print(
                f"{label} | forward | {ms['full']:.0f} | {ms['gathers']:.0f} | {ms['slide']:.0f} | "
                f"{ms['contraction']:.0f} (march alone: {ms['both']:.0f}) |"
            )
            print(
                f"{label} | adjoint | {ms['adj full']:.0f} | no scatters: {ms['adj scatters']:.0f} | - | "
                f"no weights: {ms['adj weights']:.0f} |",
                flush=True,
            )


def _cpu(fn: Callable[[], Any], i: int) -> float:
    with kernels("ablated"):
        start = time.process_time()
        dr.eval(fn())
        dr.sync_thread()
        return time.process_time() - start if i else 0.0


def alternated(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, tuple[float, float]]:
    """Per variant (:data:`KERNELS`): (median wall s, median CPU s); the variants take turns."""
    return wall_and_cpu(fns, repeat, kernels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="cone128,parallel2d")
    parser.add_argument("--bases", default="linear,bspline2,bspline3")
    parser.add_argument("--views", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--passes", default="forward,adjoint,gradient")
    parser.add_argument("--no-gradient", action="store_true")
    parser.add_argument("--ablate", action="store_true")
    parser.add_argument("--old", default="reference", choices=("reference", "masked"), help="what 'old' runs")
    args = parser.parse_args()
    mod = drjit_module()
    print(f"load before: {load()}\n")
    if args.ablate:
        ablate(args.workloads.split(","), args.bases.split(","), args.views, args.repeat)
        print(f"\nload after: {load()}")
        return
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
            if "jvp" in args.passes.split(","):
                shift = mod.Float64(0.0)
                dr.enable_grad(shift)
                dr.set_grad(shift, 1.0)
                tangent = pg.perturb(det_shift_u=shift)
                passes["jvp"] = lambda A=A, x=x, tangent=tangent: A.geometry_jvps(x, [tangent])
            for what, fn in passes.items():
                if what not in args.passes.split(","):
                    continue
                r = alternated({args.old: fn, "new": fn}, args.repeat)
                (wo, co), (wn, cn) = r[args.old], r["new"]
                print(
                    f"| {name} {vg.shape} x {pg.num_views} | {basis} | {what} | {voxel_views / wo:.3f} | "
                    f"{voxel_views / wn:.3f} | {wo / wn:.2f}x | {co:.3f} | {cn:.3f} |",
                    flush=True,
                )
    print(f"\nload after: {load()}")


if __name__ == "__main__":
    main()
