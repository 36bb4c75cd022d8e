"""The adjoint of volumes too large for ``Expand``'s per-worker copies: scattered slab by slab, or with the atomics.

Run:  python benchmarks/bench_slabs.py [--sizes 512] [--views 8] [--bases voxel,linear,bspline2] [--repeat 5]
                                        [--budget-mb 512]

A cone scan of n³ coefficients and ``--views`` views of n² pixels. ``A.T`` runs alternately with the slabs of
:mod:`drct.kernels.slabs` (the default wherever the volume's copies exceed the budget) and without them (every
launch scatters into the whole volume with the atomics, as before), and ``A`` for the ratio; medians of ``--repeat``
calls after a first one, wall and CPU seconds. ``--budget-mb`` sets :data:`drct.kernels.scatter.EXPAND_BUDGET`:
the copies are one per pool worker, so the default 512 MB on this machine's 2 workers stands for 64 MB on a
16-core machine (``--budget-mb 64`` shows what 16 cores' copies of a smaller volume would meet). Prints a table.
"""

from __future__ import annotations

import argparse
from typing import Any

import drjit as dr
import numpy as np
from _common import load, peak_rss_mb, wall_and_cpu

import drct as ct
from drct.kernels import scatter
from drct.transform import Transform


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="512")
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--bases", default="voxel,linear,bspline2")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--budget-mb", type=float, default=scatter.EXPAND_BUDGET / 2**20)
    args = p.parse_args()
    scatter.EXPAND_BUDGET = int(args.budget_mb * 2**20)
    slabbed = Transform._slabbed
    print(f"load before: {load()}; Expand budget {args.budget_mb:g} MB, {dr.thread_count()} pool workers\n")
    print("| volume | views | basis | forward s | adjoint, slabs s (CPU) | adjoint, atomics s (CPU) | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        vg = ct.VolumeGeometry((n, n, n))
        orbit = np.linspace(0, 2 * np.pi, args.views, endpoint=False)
        pg = ct.cone(orbit, (n, n), 1.5, 2.0 * n, 4.0 * n)
        rng = np.random.default_rng(0)
        for basis in args.bases.split(","):
            A = ct.Projector(vg, pg, basis=basis)
            x = A.types.Tensor(rng.random(vg.shape, dtype=np.float32))
            y = A.types.Tensor(rng.random(pg.shape, dtype=np.float32))

            def atomics(A: Any = A, y: Any = y) -> Any:
                Transform._slabbed = lambda self, batch: False  # type: ignore[method-assign]
                try:
                    return A.adjoint_tensor(y)
                finally:
                    Transform._slabbed = slabbed  # type: ignore[method-assign]

            res = wall_and_cpu(
                {
                    "forward": lambda A=A, x=x: A.forward_tensor(x),
                    "slabs": lambda A=A, y=y: A.adjoint_tensor(y),
                    "atomics": atomics,
                },
                args.repeat,
            )
            (fw, _), (sw, sc), (aw, ac) = res["forward"], res["slabs"], res["atomics"]
            print(
                f"| {n}³ | {args.views} × {n}² | {basis} | {fw:.2f} | {sw:.2f} ({sc:.2f}) = {sw / fw:.2f}× fwd | "
                f"{aw:.2f} ({ac:.2f}) = {aw / fw:.2f}× fwd | {aw / sw:.2f}× |",
                flush=True,
            )
    print(f"\nload after: {load()}; peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
