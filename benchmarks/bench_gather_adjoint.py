"""The gather (voxel-driven) adjoint against the scatter adjoint and the forward, in one process.

For each workload the operations take turns (forward ``A x``, the scatter adjoint of
:func:`drct.kernels.march.backproject`, the gather adjoint of :mod:`drct.kernels.footprints` (2D parallel beams)
or :mod:`drct.kernels.fan_footprints` / :mod:`drct.kernels.fan_hat` (2D fan beams, box / linear and quadratic
bases; the quadratic's, and the box's below ``fan_hat.MIN_WORK`` pixels x views, are not dispatched by ``A.T``:
built here by hand) in each of the ``--layouts``: views per loop iteration x pixels per lane, ``group`` x
``block``; ``default`` is each operator's own); the table gives the
median CPU seconds (user + system of this process) and wall seconds of ``--repeat`` turns after a first one, GVU/s
(voxels × views per wall second) and each adjoint's CPU and wall time as multiples of the forward's.
Print ``uptime`` beside the numbers: the machine is shared.

Run:  python benchmarks/bench_gather_adjoint.py [--repeat 5] [--dtype float32] [--quick] [--layouts default,2x8]
      [--workloads parallel,fan]   (fan: 256² x 360 x 512 and bench_projector.py's fan2d, 512² x 720 x 725)
      [--fan-sizes 32,64,128]      (fan: n² x 360n/256 x 2n instead, the same magnification at every size)
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

import drjit as dr
import numpy as np
from _common import load

import drct as ct
from drct.backend import drjit_module
from drct.kernels import fan_footprints, fan_hat
from drct.kernels.fan_hat import FanQuadraticFootprints


def turns(fns: list[Callable[[], Any]], repeat: int) -> list[tuple[float, float]]:
    """Per function: the medians (CPU s, wall s) of ``repeat`` calls after a first one, the functions taking turns."""
    cpu: list[list[float]] = [[] for _ in fns]
    wall: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat + 1):
        for fn, c, w in zip(fns, cpu, wall, strict=True):
            c0, w0 = time.process_time(), time.perf_counter()
            dr.eval(fn())
            dr.sync_thread()
            c.append(time.process_time() - c0)
            w.append(time.perf_counter() - w0)
    return [(statistics.median(c[1:]), statistics.median(w[1:])) for c, w in zip(cpu, wall, strict=True)]


def fan_family(n: int) -> tuple[int, int, int, float, float]:
    """The fan workload of size ``n``: ``n²`` pixels, ``360 n / 256`` views, ``2 n`` columns of 1.5 mm, source
    and detector at ``500 n / 256`` and ``1000 n / 256`` mm (256: the default 256² x 360 x 512; 64: ``--quick``'s;
    every size sees the same magnification and fan angle)."""
    return n, max(1, round(360 * n / 256)), 2 * n, 500.0 * n / 256, 1000.0 * n / 256


def workloads(
    quick: bool, kinds: list[str], fan_sizes: list[int] | None = None
) -> dict[str, tuple[ct.VolumeGeometry, ct.ProjectionGeometry]]:
    out = {}
    if "parallel" in kinds:
        n, views, cols = (64, 64, 92) if quick else (256, 256, 367)
        half = np.linspace(0, np.pi, views, endpoint=False)
        out[f"parallel2d {n}² x {views} x {cols}"] = (ct.VolumeGeometry((n, n)), ct.parallel(half, cols))
        out[f"parallel2d {n}² x {views} x {2 * cols} (det 0.5)"] = (
            ct.VolumeGeometry((n, n)),
            ct.parallel(half, 2 * cols, 0.5),
        )
    if "fan" in kinds:
        # 256² x 360 x 512 with a close source (magnification 1.5-3.1); bench_projector.py's fan2d
        if fan_sizes:
            sizes = [fan_family(n) for n in fan_sizes]
        elif quick:
            sizes = [fan_family(64)]
        else:
            sizes = [fan_family(256), (512, 720, 725, 1000.0, 1500.0)]
        for n, views, cols, so, sd in sizes:
            full = np.linspace(0, 2 * np.pi, views, endpoint=False)
            label = f"fan2d {n}² x {views} x {cols} (source {so:g}, detector {sd:g})"
            out[label] = (ct.VolumeGeometry((n, n)), ct.fan(full, cols, 1.5, so, sd))
    return out


def gather_of(engine: Any) -> Any:
    """``engine``'s gather adjoint (:attr:`drct.transform.Transform.footprints`), or for fan beams the gather that
    is not dispatched (the quadratic basis's :class:`drct.kernels.fan_hat.FanQuadraticFootprints`; the box's
    below :data:`drct.kernels.fan_hat.MIN_WORK`), built here by hand where its closed form holds, or None."""
    if engine.footprints is not None:
        return engine.footprints
    degree = engine.grid.degree
    if degree in (0, 1, 2) and fan_footprints.fits(engine.vg, engine.pg, degree):
        kind = fan_hat.FAN_FOOTPRINTS.get(degree, FanQuadraticFootprints)
        return kind(engine.grid, engine.vg, engine.pg, engine.t)
    return None


def operations(engine: Any, fp: Any, x: Any, y: Any, layouts: list[tuple[int, int]]) -> list[Callable[[], Any]]:
    """The forward, the scatter adjoint and the gather adjoint ``fp`` in each layout (``group``, ``block``) of
    ``engine`` (a :class:`drct.transform.Transform`)."""
    vectors = engine.vectors()
    default = fp.group, fp.block  # the operator's own (the fan gathers' block depends on the size)

    def gather(group: int, block: int) -> Callable[[], Any]:
        def run() -> Any:
            fp.group, fp.block = group or default[0], block or default[1]  # the kept plans are per group
            return engine._backproject_gather(fp, y, vectors, 1)  # what backproject runs, for fp

        return run

    return [
        lambda: engine.project(x, vectors),
        lambda: engine.backproject(y, vectors, scatter=True),
        *(gather(group, block) for group, block in layouts),
    ]


def layout(text: str) -> tuple[int, int]:
    """``"2x8"`` -> ``(2, 8)``: views per loop iteration, pixels per lane; ``"default"`` -> ``(0, 0)``."""
    if text == "default":
        return 0, 0
    group, block = (int(v) for v in text.lower().split("x"))
    if group < 1 or block < 1:
        raise argparse.ArgumentTypeError(f"a layout is GROUPxBLOCK of positive integers, not {text!r}")
    return group, block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--quick", action="store_true", help="small workloads (a smoke test)")
    parser.add_argument(
        "--bases", default="voxel,linear,bspline2", help="comma-separated bases the gather adjoint covers"
    )
    parser.add_argument(
        "--layouts",
        default="default",
        help="comma-separated gather layouts GROUPxBLOCK (views per loop iteration x pixels per lane) or default",
    )
    parser.add_argument("--workloads", default="parallel,fan", help="comma-separated: parallel, fan")
    parser.add_argument(
        "--fan-sizes",
        default="",
        help="comma-separated n: the fan workloads n² x 360n/256 x 2n instead of the defaults (e.g. 32,64,128,256)",
    )
    args = parser.parse_args()
    fan_sizes = [int(v) for v in args.fan_sizes.split(",") if v]
    layouts = [layout(v) for v in args.layouts.split(",")]
    mod = drjit_module()
    print(f"load before: {load()}")
    rng = np.random.default_rng(0)
    names = [f"gather {f'{g}x{b}' if g else 'default'} GVU/s (x fwd CPU, wall)" for g, b in layouts]
    print(f"| workload | basis | forward GVU/s | scatter adjoint GVU/s (x fwd CPU, wall) | {' | '.join(names)} |")
    print("|---|---|---|---|" + "---|" * len(layouts))
    chosen = workloads(args.quick, args.workloads.split(","), fan_sizes)
    for (label, (vg, pg)), basis in itertools.product(chosen.items(), args.bases.split(",")):
        A = ct.Projector(vg, pg, basis=basis, dtype=args.dtype)
        fp = gather_of(A._engine)
        if fp is None:
            continue  # no gather adjoint for this basis and geometry (parallel bspline2, bspline3: none yet)
        if A._engine.footprints is None:
            basis += " (gather not dispatched)"
        tensor = mod.TensorXf if args.dtype == "float32" else mod.TensorXf64
        x = tensor(rng.random(vg.shape).astype(args.dtype))
        y = tensor(rng.random(pg.shape).astype(args.dtype))
        (fc, fw), *adjoints = turns(operations(A._engine, fp, x.array, y.array, layouts), args.repeat)
        work = vg.size * pg.num_views / 1e9
        cells = [f"{work / w:.3f} ({c / fc:.2f}x, {w / fw:.2f}x)" for c, w in adjoints]
        print(f"| {label} | {basis} | {work / fw:.3f} | {' | '.join(cells)} |", flush=True)

    print(f"load after: {load()}")


if __name__ == "__main__":
    main()
