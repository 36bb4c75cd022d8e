"""The LLVM backend's packet width and gather lowering against kernel speed: is Dr.Jit's default the fastest here?

Dr.Jit sizes its CPU packets by the widest vector extension (16 float32 lanes with AVX-512, 8 with AVX2) and lowers
gathers to the hardware's gather instructions. This script re-targets Dr.Jit's LLVM backend in a fresh child
process per setting (``jit_llvm_set_target``, a symbol of ``libdrjit-core.so`` that the Python module does not
wrap; the script says so and stops if a Dr.Jit build lacks it) and times the cone forward and adjoint of the voxel
and bspline2 bases: medians of ``--repeat`` calls after a first one (the two passes taking turns), CPU
kernels only; the scan is the benchmarks' ``coneN`` (``_common.cone_workload``).

Run:  python benchmarks/bench_vector_width.py [--size 128] [--views 45] [--repeat 3] [--widths 4,8,16]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys

from _common import cone_workload, timed

SET_TARGET = "_Z19jit_llvm_set_targetPKcS0_j"  # jit_llvm_set_target(const char *cpu, const char *features, uint32)
TARGET_CPU = "_Z19jit_llvm_target_cpuv"
TARGET_FEATURES = "_Z24jit_llvm_target_featuresv"
VECTOR_WIDTH = "_Z21jit_llvm_vector_widthv"
NO_GATHER = ",+prefer-no-gather,+prefer-no-scatter"  # LLVM: scalar loads and stores instead of gathers / scatters


def core() -> ctypes.CDLL:
    import drjit as dr

    lib = ctypes.CDLL(os.path.join(os.path.dirname(dr.__file__), "libdrjit-core.so"))
    for name, restype in ((TARGET_CPU, ctypes.c_char_p), (TARGET_FEATURES, ctypes.c_char_p)):
        getattr(lib, name).restype = restype
    getattr(lib, VECTOR_WIDTH).restype = ctypes.c_uint32
    getattr(lib, SET_TARGET).argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint32]
    return lib


def measure(size: int, views: int, repeat: int, width: int, no_gather: bool) -> dict:
    """In this process: re-target (width 0: Dr.Jit's default) and time the forward and adjoint per basis."""
    import drjit as dr
    import numpy as np

    import drct as ct

    ct.set_backend("llvm")
    dr.eval(dr.llvm.Float(1.0))  # initialise the backend (the target is known from here on)
    lib = core()
    cpu, features = getattr(lib, TARGET_CPU)(), getattr(lib, TARGET_FEATURES)()
    default = int(getattr(lib, VECTOR_WIDTH)())
    if width or no_gather:
        getattr(lib, SET_TARGET)(cpu, features + (NO_GATHER.encode() if no_gather else b""), width or default)
    vg, pg = cone_workload(size, views)
    x = ct.phantoms.shepp_logan(vg).astype(np.float32)
    row: dict = {"cpu": cpu.decode(), "width": int(getattr(lib, VECTOR_WIDTH)()), "default": default}
    for basis in ("voxel", "bspline2"):
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
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        width, no_gather = json.loads(args.child)
        print(json.dumps(measure(args.size, args.views, args.repeat, width, no_gather)))
        return
    try:
        core()
    except (OSError, AttributeError) as err:
        raise SystemExit(f"this Dr.Jit build does not export jit_llvm_set_target ({err}): nothing to measure") from err
    from drct.cli.info import info

    settings = [(0, False)] + [(int(w), False) for w in args.widths.split(",")] + [(0, True)]
    print(f"{info()['device']}; cone {args.size}³ x {args.views} views x {args.size}², medians of {args.repeat}\n")
    print("| packets | gathers | voxel forward s | voxel adjoint s | bspline2 forward s | bspline2 adjoint s |")
    print("|---|---|---|---|---|---|")
    base = None
    for width, no_gather in settings:
        cmd = [sys.executable, __file__, "--size", str(args.size), "--views", str(args.views)]
        cmd += ["--repeat", str(args.repeat), "--child", json.dumps([width, no_gather])]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        keys = ["voxel forward", "voxel adjoint", "bspline2 forward", "bspline2 adjoint"]
        base = base or row
        label = f"{row['width']} lanes ({row['cpu']})" + (" = default" if row["width"] == row["default"] else "")
        cells = " | ".join(f"{row[k]:.3f} ({row[k] / base[k]:.2f}×)" for k in keys)
        print(f"| {label} | {'scalar loads' if no_gather else 'hardware'} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
