"""How close each projector pass comes to the device's memory limits: the issue's "fraction of the card's
memory-bandwidth/texture limit", measured the same way on the CPU (LLVM) and on a GPU (CUDA).

The exact ray-driven march touches every coefficient of every cell a ray crosses, the knot grid's zero border
included: a ray that enters the volume reads its first cell's ``(n + 1)^d`` coefficients, and each step reads
the ``(n + 1)^(d-1)`` of the face it enters (degree 0, the voxel: one per cell); the adjoint adds into the same
entries. Those **touches** are counted here exactly, by a march over the projector's own clipped rays that only
counts its steps: they are the B-spline window's gathers and scatter-adds. Some kernels do a little more or fewer
memory operations (the box march steps through an edge diagonally, the 2D voxel forward reads two cells per
column, the gather adjoints of 2D parallel and fan beams read candidate columns instead of scattering), but the
touches are the march's work, the same for every implementation, and so the fair numerator.

The device's limits are measured in the same process on the same backend, with ``2^24`` operations (``2^27`` on
CUDA) into a table of the padded volume's size rounded up to a power of two:

- **stream**: ``y = 2 x + 1`` over ``2^25`` floats (``2^28`` on CUDA), bytes read and written per second (the
  memory bandwidth);
- **gather**: eight gathers per lane, per second, from addresses that run along the lanes (*sequential*: a
  packet or warp reads neighbouring entries, the packets one after the other: the device's gather or texture
  limit) or where every lane lands at its own place (*random*, spread by a hash: the worst case, each read a
  cache miss once the table outgrows the caches);
- **scatter-add**: the same with the scatter-add the adjoint uses (:func:`drct.kernels.scatter.add` in the mode
  :func:`~drct.kernels.scatter.scatter_mode` picks for this projector).

For each pass the table gives the touches per second, the bytes they move (``touches x itemsize``) as a share of
the stream bandwidth, and the share of the pass's time that its touches would take at each of the primitives'
rates (forward: gathers; adjoint: scatter-adds; gradient: both, one read and one write per touch). The first is
the fraction of the gather (or scatter) limit the pass reaches: near 100%, it is bound by its memory operations;
far below, by arithmetic and control (on the CPU: instructions), or by accesses less coherent than sequential
ones. A ray's cells are reused by its neighbours and its next steps, so its accesses fall between the two
orders; the random column bounds what cache misses alone could cost.

Run:  python benchmarks/bench_roofline.py [--workloads cone128,parallel2d] [--bases voxel,linear,bspline2,bspline3]
                                          [--passes forward,adjoint,gradient] [--views N] [--repeat 5]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import drjit as dr
import numpy as np
from _common import load, pose_gradient, timed, workload

import drct as ct
from drct.backend import drjit_module
from drct.cli.info import info as machine_info
from drct.kernels import padding, scatter
from drct.kernels.march import march

PER_LANE = 8
SIZES = {"llvm": (1 << 24, 1 << 25), "cuda": (1 << 27, 1 << 28)}
"""Per backend: gathers or scatter-adds per primitive, and floats streamed (a GPU does 2^24 in ~0.1 ms)."""
HASH = 2654435769  # 2^32 / golden ratio, odd: Fibonacci hashing
ORDERS = ("sequential", "random")


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
    """The ``k``-th of a lane's addresses in a ``table`` of a power of two entries: ``sequential`` (neighbouring
    lanes, the packets one after the other, each ``k`` in its own eighth of the table) or ``random`` (every lane
    at its own place, spread by a hash)."""
    i, bits = dr.arange(mod.UInt, lanes), table.bit_length() - 1
    if order == "sequential":
        return (i + k * (table // PER_LANE)) & (table - 1)
    return _fibonacci(i * PER_LANE + k, bits)


def primitives(table: int, mode: dr.ReduceMode, repeat: int) -> dict[str, float]:
    """Operations (bytes for ``stream``) per second on this backend; ``table`` entries (a power of two)."""
    mod = drjit_module()
    operations, stream = SIZES[ct.get_backend()]
    lanes = operations // PER_LANE
    rng = np.random.default_rng(0)  # stored values: a literal (dr.full) would be folded into the kernels
    source = mod.Float(rng.random(table, dtype=np.float32))
    x = mod.Float(rng.random(stream, dtype=np.float32))
    dr.eval(source, x)

    def gather(order: str) -> Callable[[], Any]:
        def run() -> None:
            acc = dr.zeros(mod.Float, lanes)
            for k in range(PER_LANE):
                acc += dr.gather(mod.Float, source, _indices(mod, lanes, k, table, order))
            dr.eval(acc)

        return run

    def scatter_add(order: str) -> Callable[[], Any]:
        def run() -> None:
            target = dr.zeros(mod.Float, table)
            value = mod.Float(dr.arange(mod.UInt, lanes)) * 1e-6
            for k in range(PER_LANE):
                scatter.add(target, value, _indices(mod, lanes, k, table, order), True, mode)
            dr.eval(target)

        return run

    runs: dict[str, Callable[[], Any]] = {"stream": lambda: dr.eval(x * 2.0 + 1.0)}
    runs.update({f"gather, {order}": gather(order) for order in ORDERS})
    runs.update({f"scatter-add, {order}": scatter_add(order) for order in ORDERS})
    seconds = dict(zip(runs, (median for _, median in timed(list(runs.values()), repeat)), strict=True))
    return {k: (stream * 8 if k == "stream" else operations) / s for k, s in seconds.items()}


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
    info = machine_info()
    target = f", target {info['llvm target']}" if "llvm target" in info else ""
    print(f"drct {info['drct']} on {info['backend']} ({info['device']}){target}; {load()}\n")
    names = args.passes.split(",")
    for name in args.workloads.split(","):
        vg, pg = workload(name, args.views)
        print(f"## {name}: volume {vg.shape}, {pg.num_views} views, {pg.num_rays} rays\n")
        rows, limits_seen = [], {}
        for basis in args.bases.split(","):
            A = ct.Projector(vg, pg, basis=basis)
            count = touches(A)
            engine = A._engine
            table = 1 << int(np.ceil(np.log2(padding.padded_size(engine.grid))))
            mode = scatter.scatter_mode(dr.zeros(engine.t.Float, table), engine.spread)
            if (table, mode) not in limits_seen:
                limits_seen[table, mode] = primitives(table, mode, args.repeat)
                limits = limits_seen[table, mode]
                print(
                    f"limits, table 2^{table.bit_length() - 1} entries, scatter mode {mode.name}: "
                    + ", ".join(f"{k} {v / 1e9:.2f} {'GB' if k == 'stream' else 'G'}/s" for k, v in limits.items())
                )
            limits = limits_seen[table, mode]
            medians = timed(list(passes(A, vg, pg, basis, names).values()), args.repeat)
            for op, (_, seconds) in zip(names, medians, strict=True):
                rate = count / seconds
                moved = count * engine.t.itemsize * (2 if op == "gradient" else 1) / seconds
                ops = {"forward": ("gather",), "adjoint": ("scatter-add",), "gradient": ("gather", "scatter-add")}[op]
                share = [sum(count / limits[f"{kind}, {order}"] for kind in ops) / seconds for order in ORDERS]
                rows.append(
                    f"| {basis} | {op} | {seconds:.4f} | {count / 1e9:.3f} | {rate / 1e9:.3f} | "
                    f"{moved / limits['stream']:.0%} | " + " | ".join(f"{x:.0%}" for x in share) + " |"
                )
        print(
            "\n| basis | pass | wall s | touches (G) | G touches/s | bytes / stream bandwidth | "
            "share of the time its touches take at the sequential rate (of the limit) | at the random rate |"
        )
        print("|---|---|---|---|---|---|---|---|")
        print("\n".join(rows) + "\n", flush=True)


if __name__ == "__main__":
    main()
