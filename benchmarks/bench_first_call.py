"""First call of a new operator: compile time with a cold and a warm Dr.Jit kernel cache.

Run:  python benchmarks/bench_first_call.py

Dr.Jit caches compiled kernels in ``$HOME/.drjit``; the cold run re-executes this script with ``HOME`` pointing
at an empty temporary folder. Compile and execution times come from Dr.Jit's kernel history.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import drjit as dr
import numpy as np

import drct as ct


def measure(label: str) -> None:
    workloads = {
        "2D parallel 256² x 256 x 367": (
            ct.VolumeGeometry((256, 256)),
            ct.parallel(np.linspace(0, np.pi, 256, endpoint=False), 367),
        ),
        "cone 128³ x 180 x 128²": (
            ct.VolumeGeometry((128, 128, 128)),
            ct.cone(np.linspace(0, 2 * np.pi, 180, endpoint=False), (128, 128), 1.5, 256.0, 512.0),
        ),
    }
    dr.set_flag(dr.JitFlag.KernelHistory, True)
    for name, (vg, pg) in workloads.items():
        for basis in ("voxel", "linear", "bspline2", "bspline3"):
            A = ct.Projector(vg, pg, basis=basis)
            x = A.types.Tensor(np.ones(vg.shape, np.float32))
            dr.eval(x)
            dr.kernel_history()
            start = time.perf_counter()
            A.forward_tensor(x)
            dr.sync_thread()
            seconds = time.perf_counter() - start
            kernels = [k for k in dr.kernel_history() if k["type"] == dr.KernelType.JIT]
            compile_s = sum(k.get("backend_time", 0) + k.get("codegen_time", 0) for k in kernels) / 1e3
            run_s = sum(k.get("execution_time", 0) for k in kernels) / 1e3
            print(f"| {label} | {name} | {basis} | {seconds:.3f} | {compile_s:.3f} | {run_s:.3f} |", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        measure(sys.argv[2])
        return
    print("| cache | workload | basis | first call s | compile s | execution s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, HOME=home)
        subprocess.run([sys.executable, __file__, "--measure", "cold"], env=env, check=True)
        subprocess.run([sys.executable, __file__, "--measure", "warm"], env=env, check=True)


if __name__ == "__main__":
    main()
