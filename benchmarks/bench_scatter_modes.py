"""The adjoint's scatter-add modes on the CPU: which one drct picks, and what each would cost.

Dr.Jit 1.5's LLVM backend turns every scalar ``scatter_add`` into a loop over the lanes of a SIMD packet; the
modes differ in how lanes that hit one address are combined: ``Direct`` (one atomic add per lane), ``Local`` (a
reduction within the packet, then atomics), ``Expand`` (a reduction within the packet into one copy of the
target per pool worker, no atomics). A *packet* scatter-add with ``Expand`` is another path: per lane one
vector load, add and store into the worker's copy. drct writes each value as such a pair (``drct.kernels.scatter
.add``: "Expand pairs") while it is the process's only thread, and falls back to ``Direct`` where neighbouring
rays cross the volume at least half a voxel apart (``drct.transform.rays_spread``) and ``Local`` where they are
denser; this script shows the choice against the alternatives, so that it can be re-checked on other machines
and Dr.Jit releases.

Times are **CPU seconds of this process** (user + system, median of ``--repeat`` calls after a first one), not
wall time: on a shared machine they stay comparable between modes. The first two columns of primitives
measure the operations themselves: 2^24 float gathers or scatter-adds into 2^21 entries, and the cost of the
per-view parameters a voxel-driven adjoint would gather inside its loop over views.

Run:  python benchmarks/bench_scatter_modes.py [--bases voxel,linear,bspline2] [--repeat 5]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import drjit as dr
import numpy as np
from _common import cone_workload, cpu_seconds, parallel2d_workload

import drct as ct
from drct.backend import drjit_module
from drct.cli.info import info as machine_info
from drct.kernels import scatter
from drct.transform import rays_spread

MODES = {"Direct": dr.ReduceMode.Direct, "Local": dr.ReduceMode.Local, "Expand": dr.ReduceMode.Expand}
ADJOINT_MODES = {"Direct": dr.ReduceMode.Direct, "Local": dr.ReduceMode.Local, "Expand pairs": dr.ReduceMode.Expand}


def workloads() -> dict[str, tuple[ct.VolumeGeometry, ct.ProjectionGeometry]]:
    orbit = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    return {
        "parallel2d 256² x 256 x 367": parallel2d_workload(),
        "cone 48³ x 60 x 48²": cone_workload(48, 60),
        "dense parallel2d 64² x 180 x 1024 (8 rays/voxel)": (
            ct.VolumeGeometry((64, 64)),
            ct.parallel(np.linspace(0, np.pi, 180, endpoint=False), 1024, 0.125),
        ),
        "dense cone 32³ x 60 x 192² (8 rays/voxel)": (
            ct.VolumeGeometry((32, 32, 32)),
            ct.cone(orbit, (192, 192), 0.25, 64.0, 128.0),
        ),
    }


def forced(mode: dr.ReduceMode | None) -> Callable[..., dr.ReduceMode]:
    """A stand-in for :func:`drct.kernels.scatter.scatter_mode` that always answers ``mode`` (None: drct's own)."""
    original = scatter.scatter_mode

    def choose(target: Any, spread: bool = False) -> dr.ReduceMode:
        return original(target, spread) if mode is None else mode

    return choose


def primitives(repeat: int) -> list[str]:
    mod = drjit_module()
    rng = np.random.default_rng(0)
    n, m = 1 << 24, 1 << 21
    values = mod.Float(rng.random(n, dtype=np.float32))
    source = dr.full(mod.Float, 1.0, m)
    rows = []
    for name, index in (
        ("random addresses", mod.UInt(rng.integers(0, m, n).astype(np.uint32))),
        ("sequential", mod.UInt((np.arange(n) % m).astype(np.uint32))),
        ("8 lanes per address", mod.UInt((np.arange(n) // 8 % m).astype(np.uint32))),
    ):
        dr.eval(values, source, index)
        cells = [f"{cpu_seconds(lambda index=index: dr.gather(mod.Float, source, index) * values, repeat):.3f}"]
        for mode in MODES.values():

            def scalar(index: Any = index, mode: dr.ReduceMode = mode) -> Any:
                target = dr.zeros(mod.Float, m)
                dr.scatter_add(target, values, index, mode=mode)
                return target

            cells.append(f"{cpu_seconds(scalar, repeat):.3f}")

        def pairs(index: Any = index) -> Any:
            target = dr.zeros(mod.Float, m)
            scatter.add(target, values, index, True, dr.ReduceMode.Expand)
            return target

        cells.append(f"{cpu_seconds(pairs, repeat):.3f}")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def _row_value(table: list[Any], view: Any, k: int, gathered: bool, float_type: Any) -> Any:
    return dr.gather(float_type, table[k], view) if gathered else float_type(1.0 + k)


@dr.syntax
def _view_loop(float_type: Any, uint_type: Any, table: list[Any], lanes: int, views: int, gathered: bool) -> Any:
    # module level with every input an argument: dr.syntax recompiles with the module's globals only
    x = float_type(dr.arange(uint_type, lanes)) * 1e-3
    acc = dr.zeros(float_type, lanes)
    view = dr.zeros(uint_type, lanes)
    while view < views:
        s = float_type(1.0)
        for k in range(len(table)):
            s = dr.fma(s, _row_value(table, view, k, gathered, float_type), x)
        acc += s
        view += 1
    return acc


def per_view_gathers(repeat: int) -> float:
    """CPU ns per gathered float per lane and loop step, for the per-view parameters a voxel-driven (gather)
    adjoint needs: 2^16 lanes (voxels) loop over 256 views, gathering 8 floats of the view's row each step (one
    address for all lanes), against the same loop with the 8 values as constants."""
    mod = drjit_module()
    lanes, views, floats = 1 << 16, 256, 8
    table = [mod.Float(np.random.default_rng(k).random(views, dtype=np.float32) + 1) for k in range(floats)]
    dr.eval(table)
    seconds = [
        cpu_seconds(lambda gathered=gathered: _view_loop(mod.Float, mod.UInt, table, lanes, views, gathered), repeat)
        for gathered in (True, False)
    ]
    return (seconds[0] - seconds[1]) / (lanes * views * floats) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bases", default="voxel,linear,bspline2")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if ct.get_backend() != "llvm":
        raise SystemExit("the scatter modes compared here are the CPU backend's (run without a GPU or set llvm)")
    print(machine_info())
    print("\nPrimitives, CPU s for 2^24 operations:\n")
    print("| addresses | gather | " + " | ".join(f"scatter_add {m}" for m in MODES) + " | Expand pairs |")
    print("|---|---|---|---|---|---|")
    for row in primitives(args.repeat):
        print(row)
    print(f"\nPer-view parameters gathered inside a voxel loop: {per_view_gathers(args.repeat):.2f} CPU ns per float")
    print("\nAdjoint A.T y, CPU s (ratio to the forward A x of the same run); drct's pick in bold:\n")
    print("| workload | basis | forward | " + " | ".join(ADJOINT_MODES) + " | drct picks |")
    print("|---|---|---|---|---|---|---|")
    mod = drjit_module()
    rng = np.random.default_rng(0)
    original = scatter.scatter_mode
    try:
        for label, (vg, pg) in workloads().items():
            for basis in args.bases.split(","):
                A = ct.Projector(vg, pg, basis=basis)
                x = mod.TensorXf(rng.random(vg.shape, dtype=np.float32))
                y = mod.TensorXf(rng.random(pg.shape, dtype=np.float32))
                forward = cpu_seconds(lambda A=A, x=x: A.forward_tensor(x), args.repeat)
                pick = original(dr.zeros(mod.Float, vg.size), rays_spread(vg, pg)).name
                pick = "Expand pairs" if pick == "Expand" else pick
                cells = []
                for name, mode in ADJOINT_MODES.items():
                    scatter.scatter_mode = forced(mode)
                    seconds = cpu_seconds(lambda A=A, y=y: A.adjoint_tensor(y), args.repeat)
                    cell = f"{seconds:.4f} ({seconds / forward:.2f}x)"
                    cells.append(f"**{cell}**" if name == pick else cell)
                scatter.scatter_mode = original
                print(f"| {label} | {basis} | {forward:.4f} | " + " | ".join(cells) + f" | {pick} |", flush=True)
    finally:
        scatter.scatter_mode = original


if __name__ == "__main__":
    main()
