"""The adjoint of volumes too large for ``Expand``'s per-worker copies: scattered slab by slab, or with the atomics.

Run:  python benchmarks/bench_slabs.py [--sizes 512] [--views 8] [--bases voxel,linear,bspline2] [--repeat 5]
                                        [--budget-mb 512] [--gradient]

A cone scan of n³ coefficients and ``--views`` views of n² pixels. ``A.T`` runs alternately with the slabs of
:mod:`drct.kernels.slabs` (the default wherever the volume's copies exceed the budget) and without them (every
launch scatters into the whole volume with the atomics, as before), and ``A`` for the ratio; medians of ``--repeat``
calls after a first one, wall and CPU seconds. ``--gradient`` adds one reverse-mode gradient of
``0.5 |A(pose) x - y|²`` w.r.t. the volume and a pose per view, whose march scatters through the same slabs.
``--budget-mb`` sets :data:`drct.kernels.scatter.EXPAND_BUDGET`: the copies are one per pool worker, so 64 MB on
this machine's 2 workers meets what 512 MB meets on a 16-core machine. Prints a table.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

import drjit as dr
import numpy as np
from _common import load, peak_rss_mb, pose_gradient, wall_and_cpu

import drct as ct
from drct.kernels import scatter
from drct.transform import Transform


@contextmanager
def variant(name: str) -> Iterator[None]:
    """``atomics``: every launch scatters into the whole volume (slabs off, the behaviour before them)."""
    slabbed = Transform._slabbed
    if name.endswith("atomics"):
        Transform._slabbed = lambda self, batch: False  # type: ignore[method-assign]
    try:
        yield
    finally:
        Transform._slabbed = slabbed  # type: ignore[method-assign]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="512")
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--bases", default="voxel,linear,bspline2")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--budget-mb", type=float, default=scatter.EXPAND_BUDGET / 2**20)
    p.add_argument("--gradient", action="store_true", help="also the volume + pose gradient")
    args = p.parse_args()
    scatter.EXPAND_BUDGET = int(args.budget_mb * 2**20)
    print(f"load before: {load()}; Expand budget {args.budget_mb:g} MB, {dr.thread_count()} pool workers\n")
    print("| volume | views | basis | pass | forward s | slabs s (CPU) | atomics s (CPU) | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        vg = ct.VolumeGeometry((n, n, n))
        orbit = np.linspace(0, 2 * np.pi, args.views, endpoint=False)
        pg = ct.cone(orbit, (n, n), 1.5, 2.0 * n, 4.0 * n)
        rng = np.random.default_rng(0)
        for basis in args.bases.split(","):
            A = ct.Projector(vg, pg, basis=basis)
            x = A.types.Tensor(rng.random(vg.shape, dtype=np.float32))
            y = A.types.Tensor(rng.random(pg.shape, dtype=np.float32))
            fns = {"forward": lambda A=A, x=x: A.forward_tensor(x)}
            for name in ("adjoint slabs", "adjoint atomics"):
                fns[name] = lambda A=A, y=y: A.adjoint_tensor(y)
            if args.gradient:
                for name in ("gradient slabs", "gradient atomics"):
                    fns[name] = lambda b=basis, x=x, y=y, vg=vg, pg=pg: pose_gradient(vg, pg, b, x, y)
            res = wall_and_cpu(fns, args.repeat, variant)
            fw = res["forward"][0]
            for kind in ("adjoint", "gradient"):
                if f"{kind} slabs" not in res:
                    continue
                (sw, sc), (aw, ac) = res[f"{kind} slabs"], res[f"{kind} atomics"]
                print(
                    f"| {n}³ | {args.views} × {n}² | {basis} | {kind} | {fw:.2f} | {sw:.2f} ({sc:.2f}) = "
                    f"{sw / fw:.2f}× fwd | {aw:.2f} ({ac:.2f}) = {aw / fw:.2f}× fwd | {aw / sw:.2f}× |",
                    flush=True,
                )
    print(f"\nload after: {load()}; peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
