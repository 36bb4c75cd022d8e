"""How close each projector pass comes to the device's memory limits: the issue's "fraction of the card's
memory-bandwidth/texture limit", measured the same way on the CPU (LLVM) and on a GPU (CUDA).

The exact ray-driven march touches every coefficient of every cell a ray crosses, the knot grid's zero border
included: a ray that enters the volume reads its first cell's ``(n + 1)^d`` coefficients, and then for each cell
the ``(n + 1)^(d-1)`` of the face it enters next (the last cell's too: the window gathers it before it knows the
ray ends; degree 0, the voxel: one per cell); the adjoint adds into the same entries. Those **touches** are
counted here exactly, by a march over the projector's own clipped rays that only counts its cells: they are the
B-spline window's gathers and scatter-adds. Some kernels do a little more or fewer memory operations (the box
march steps through an edge diagonally, the 2D voxel forward reads two cells per column, the gather adjoints of
2D parallel and fan beams read candidate columns instead of scattering), but the touches are the march's work,
the same for every implementation, and so the fair numerator.

The device's limits are measured in the same process on the same backend, ``2^24`` operations each (``2^27`` on
CUDA):

- **stream**: ``y = 2 x + 1`` over ``2^25`` floats (``2^28`` on CUDA), bytes read and written per second (the
  memory bandwidth);
- **gather, cached**: eight gathers per lane from a table that stays in cache (4 KB on the CPU, its first-level
  cache; 4 MB on a GPU, its L2), neighbouring lanes at neighbouring entries: the device's gather (texture) limit,
  the instruction's own throughput;
- **gather, hashed**: the same from a table of the padded volume's size (rounded up to a power of two), every
  lane at its own cache line (Fibonacci hashing: a large constant stride modulo the table): what reads that miss
  the nearest caches cost;
- **scatter-add, cached / hashed**: the same with the scatter-add the adjoint uses
  (:func:`drct.kernels.scatter.add` in the mode :func:`~drct.kernels.scatter.scatter_mode` picks for it).

For each pass the table gives the touches per second, the bytes they move (a read ``itemsize`` bytes, a
scatter-add twice that: it reads and writes) as a share of the stream bandwidth, and the share of the pass's time
its touches would take at the cached and at the hashed rates. The forward reads each touch once; the adjoint adds
into it once; the gradient reads it once (a forward that keeps its rays' derivatives) or twice (the voxel basis:
a forward, then a derivative march) and adds into it once (the 2D gather adjoints read instead: see above). The
cached share is the fraction of the device's gather (and scatter-add) limit the pass reaches: near 100% it is
bound by its memory instructions; below, by arithmetic and control (on the CPU: instructions) or by cache misses,
which the hashed share bounds.

Run:  python benchmarks/bench_roofline.py [--workloads cone128,parallel2d] [--bases voxel,linear,bspline2,bspline3]
                                          [--passes forward,adjoint,gradient] [--views N] [--repeat 5]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import drjit as dr
import numpy as np
from _common import load, machine, pose_gradient, timed, workload

import drct as ct
from drct.backend import drjit_module
from drct.kernels import padding, scatter
from drct.kernels.march import march

PER_LANE = 8
SIZES = {"llvm": (1 << 24, 1 << 25, 1 << 10), "cuda": (1 << 27, 1 << 28, 1 << 20)}
"""Per backend: gathers or scatter-adds per primitive, floats streamed (a GPU does 2^24 in ~0.1 ms), and the cached
table's entries: 4 KB for a CPU core's first-level cache; 4 MB on a GPU, within its L2 and large enough that
its atomics do not all contend for a few addresses."""
HASH = 2654435769  # 2^32 / golden ratio, odd: Fibonacci hashing
ORDERS = ("cached", "hashed")


def touches(A: ct.Projector) -> int:
    """The coefficient touches of one exact march over ``A``'s rays (see the module docstring)."""
    engine = A._engine  # the benchmark counts over the projector's own clipped rays
    grid, t = engine.grid, engine.t
    vectors = engine.vectors()
    hits = steps = 0
    for start, count in engine.chunks(1, linear=True):
        segs = engine._ray_segments(vectors, start, count, 1)
        counted = march(grid, t, segs, lambda acc, cell: acc + 1, dr.zeros(t.UInt, count))
        steps += int(counted.numpy().astype(np.int64).sum())
        hits += int(np.count_nonzero(segs.length.numpy() > 0))
    n, d = grid.degree, grid.ndim
    return steps if n == 0 else hits * (n + 1) ** d + steps * (n + 1) ** (d - 1)


def _fibonacci(x: Any, bits: int) -> Any:
    """``bits`` well-spread bits of ``x`` (Fibonacci hashing: the top bits of ``x`` times ``HASH``)."""
    return (x * HASH) >> (32 - bits)


def _indices(mod: Any, lanes: int, k: int, table: int, order: str) -> Any:
    """The ``k``-th of a lane's addresses in a ``table`` of a power of two entries: ``cached`` (neighbouring lanes
    at neighbouring entries) or ``hashed`` (every lane at its own cache line)."""
    i, bits = dr.arange(mod.UInt, lanes), table.bit_length() - 1
    if order == "cached":
        return (i + k * PER_LANE) & (table - 1)
    return _fibonacci(i * PER_LANE + k, bits)


def primitives(table: int, mode: dr.ReduceMode, repeat: int) -> dict[str, float]:
    """Operations (bytes for ``stream``) per second on this backend; ``table``: the hashed table's entries (a
    power of two)."""
    mod = drjit_module()
    operations, stream, cached = SIZES[ct.get_backend()]
    lanes = operations // PER_LANE
    rng = np.random.default_rng(0)  # stored values: a literal (dr.full) would be folded into the kernels
    sources = {
        "cached": mod.Float(rng.random(cached, dtype=np.float32)),
        "hashed": mod.Float(rng.random(table, dtype=np.float32)),
    }
    x = mod.Float(rng.random(stream, dtype=np.float32))
    dr.eval(sources, x)

    def gather(order: str) -> Callable[[], Any]:
        def run() -> None:
            acc = dr.zeros(mod.Float, lanes)
            for k in range(PER_LANE):
                source = sources[order]
                acc += dr.gather(mod.Float, source, _indices(mod, lanes, k, dr.width(source), order))
            dr.eval(acc)

        return run

    def scatter_add(order: str) -> Callable[[], Any]:
        def run() -> None:
            size = dr.width(sources[order])
            target = dr.zeros(mod.Float, size)
            value = mod.Float(dr.arange(mod.UInt, lanes)) * 1e-6
            for k in range(PER_LANE):
                scatter.add(target, value, _indices(mod, lanes, k, size, order), True, mode)
            dr.eval(target)

        return run

    runs: dict[str, Callable[[], Any]] = {"stream": lambda: dr.eval(x * 2.0 + 1.0)}
    runs.update({f"gather, {order}": gather(order) for order in ORDERS})
    runs.update({f"scatter-add, {order}": scatter_add(order) for order in ORDERS})
    seconds = dict(zip(runs, (median for _, median in timed(list(runs.values()), repeat)), strict=True))
    return {k: (stream * 8 if k == "stream" else operations) / s for k, s in seconds.items()}


def _rates(limits: dict[str, float]) -> str:
    return ", ".join(f"{k} {v / 1e9:.2f} {'GB' if k == 'stream' else 'G'}/s" for k, v in limits.items())


def work(engine: Any, op: str) -> tuple[int, int]:
    """(reads, scatter-adds) per touch of the pass ``op`` (see the module docstring)."""
    if op == "forward":
        return 1, 0
    if op == "adjoint":
        return 0, 1
    return (1 if engine.keeps_partials(1) else 2), 1


def passes(A: ct.Projector, vg: Any, pg: Any, basis: str, names: list[str]) -> dict[str, Callable[[], Any]]:
    mod = drjit_module()
    rng = np.random.default_rng(0)
    x = mod.TensorXf(rng.random(vg.shape, dtype=np.float32))
    y = mod.TensorXf(rng.random(pg.shape, dtype=np.float32))
    every = {
        "forward": lambda: dr.eval(A.forward_tensor(x)),
        "adjoint": lambda: dr.eval(A.adjoint_tensor(y)),
        "gradient": lambda: dr.eval(pose_gradient(vg, pg, basis, x, y)),
    }
    return {name: every[name] for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="cone128,parallel2d")
    parser.add_argument("--bases", default="voxel,linear,bspline2,bspline3")
    parser.add_argument("--passes", default="forward,adjoint,gradient")
    parser.add_argument("--views", type=int, default=None, help="views per workload (default: the workload's)")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per measurement (median reported)")
    args = parser.parse_args()
    print(f"{machine()}; {load()}\n")
    names = args.passes.split(",")
    for name in args.workloads.split(","):
        vg, pg = workload(name, args.views)
        print(f"## {name}: volume {vg.shape}, {pg.num_views} views, {pg.num_rays} rays\n")
        projectors = {basis: ct.Projector(vg, pg, basis=basis) for basis in args.bases.split(",")}
        engines = [A._engine for A in projectors.values()]
        table = 1 << int(np.ceil(np.log2(max(padding.padded_size(e.grid) for e in engines))))
        mode = scatter.scatter_mode(dr.zeros(engines[-1].t.Float, table), engines[-1].spread)
        limits = primitives(table, mode, args.repeat)
        print(f"limits (hashed: a table of 2^{table.bit_length() - 1} entries; scatter mode {mode.name}):")
        print("before the passes: " + _rates(limits))
        print(
            "\n| basis | pass | wall s | touches (G) | G touches/s | bytes / stream bandwidth | "
            "share of the time its touches take at the cached rate (of the limit) | at the hashed rate |"
        )
        print("|---|---|---|---|---|---|---|---|", flush=True)
        for basis, A in projectors.items():
            count, engine = touches(A), A._engine
            medians = timed(list(passes(A, vg, pg, basis, names).values()), args.repeat)
            for op, (_, seconds) in zip(names, medians, strict=True):
                reads, writes = work(engine, op)
                moved = count * engine.t.itemsize * (reads + 2 * writes) / seconds  # a scatter-add reads and writes
                share = [
                    count * (reads / limits[f"gather, {order}"] + writes / limits[f"scatter-add, {order}"]) / seconds
                    for order in ORDERS
                ]
                print(
                    f"| {basis} | {op} | {seconds:.4f} | {count / 1e9:.3f} | {count / seconds / 1e9:.3f} | "
                    f"{moved / limits['stream']:.0%} | " + " | ".join(f"{x:.0%}" for x in share) + " |",
                    flush=True,
                )
        after = primitives(table, mode, args.repeat)
        print("\nlimits after the passes: " + _rates(after))
        print("(the shares use the limits before the passes; a machine whose speed drifts shows it here)\n")


if __name__ == "__main__":
    main()
