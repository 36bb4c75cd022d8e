"""The LLVM backend's packet width and gather lowering against kernel speed: is drct's default the fastest here?

Dr.Jit sizes its CPU packets by the widest vector extension (16 float32 lanes with AVX-512, 8 with AVX2); LLVM
lowers a gather to the hardware's gather instruction only where its tuning for the CPU calls gathers fast, and
drct adds that tuning (``fast-gather``) on AMD Zen 3 (:mod:`drct.cpu_target`). This script re-targets Dr.Jit's
LLVM backend in a fresh child process per setting (``jit_llvm_set_target`` through :mod:`drct.cpu_target`; it
says so and stops if a Dr.Jit build lacks it) and times the cone forward and adjoint of the voxel and bspline2
bases: medians of ``--repeat`` calls after a first one (the two passes taking turns), CPU kernels only; the scan
is the benchmarks' ``coneN`` (``_common.cone_workload``). Gather settings: drct's default, LLVM's own tuning
(``DRCT_FAST_GATHER=0``), hardware gathers (``DRCT_FAST_GATHER=1``) and scalar loads (``+prefer-no-gather``).

Run:  python benchmarks/bench_vector_width.py [--size 128] [--views 45] [--repeat 3] [--widths 4,8,16]
                                               [--bases voxel,bspline2]  (--widths '': the gather settings only)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _common import cone_workload, timed

NO_GATHER = ",+prefer-no-gather,+prefer-no-scatter"  # LLVM: scalar loads and stores instead of gathers / scatters
GATHERS = {  # DRCT_FAST_GATHER per gather setting (drct.cpu_target), and whether to add NO_GATHER
    "drct's default": ("auto", False),
    "LLVM's tuning": ("0", False),
    "hardware (fast-gather)": ("1", False),
    "scalar loads": ("0", True),
}


def measure(size: int, views: int, repeat: int, width: int, no_gather: bool, bases: list[str]) -> dict:
    """In this process: re-target (width 0: Dr.Jit's default) and time the forward and adjoint per basis."""
    import numpy as np

    import drct as ct
    from drct.cpu_target import llvm_target, set_llvm_target

    ct.set_backend("llvm")  # initialises the backend and applies DRCT_FAST_GATHER (drct.cpu_target)
    target = llvm_target()
    assert target is not None
    cpu, features, default = target
    if width or no_gather:
        set_llvm_target(cpu, features + (NO_GATHER if no_gather else ""), width or default)
    vg, pg = cone_workload(size, views)
    x = ct.phantoms.shepp_logan(vg).astype(np.float32)
    row: dict = {"cpu": cpu, "width": llvm_target()[2], "default": default}  # type: ignore[index]
    for basis in bases:
        A = ct.Projector(vg, pg, basis=basis)
        y = A(x)
        (_, forward), (_, adjoint) = timed([lambda A=A: A(x), lambda A=A, y=y: A.T(y)], repeat)
        row[f"{basis} forward"], row[f"{basis} adjoint"] = forward, adjoint
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--views", type=int, default=45)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--widths", default="4,8,16", help="packet widths to try besides Dr.Jit's default")
    p.add_argument("--bases", default="voxel,bspline2")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        width, no_gather = json.loads(args.child)
        print(json.dumps(measure(args.size, args.views, args.repeat, width, no_gather, args.bases.split(","))))
        return
    import drct as ct
    from drct.cli.info import info
    from drct.cpu_target import llvm_target

    ct.set_backend("llvm")
    if llvm_target() is None:  # readable means settable: drct.cpu_target binds the getters and the setter together
        raise SystemExit("this Dr.Jit build does not export jit_llvm_set_target (libdrjit-core.so): nothing to measure")
    settings = [(0, "drct's default")] + [(int(w), "drct's default") for w in args.widths.split(",") if w]
    settings += [(0, name) for name in GATHERS if name != "drct's default"]
    print(f"{info()['device']}; cone {args.size}³ x {args.views} views x {args.size}², medians of {args.repeat}\n")
    keys = [f"{basis} {op}" for basis in args.bases.split(",") for op in ("forward", "adjoint")]
    print("| packets | gathers | " + " | ".join(f"{k} s" for k in keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    base = None
    for width, gathers in settings:
        fast_gather, no_gather = GATHERS[gathers]
        cmd = [sys.executable, __file__, "--size", str(args.size), "--views", str(args.views)]
        cmd += ["--repeat", str(args.repeat), "--bases", args.bases, "--child", json.dumps([width, no_gather])]
        env = {**os.environ, "DRCT_FAST_GATHER": fast_gather}
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        base = base or row
        label = f"{row['width']} lanes ({row['cpu']})" + (" = default" if row["width"] == row["default"] else "")
        cells = " | ".join(f"{row[k]:.3f} ({row[k] / base[k]:.2f}×)" for k in keys)
        print(f"| {label} | {gathers} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
