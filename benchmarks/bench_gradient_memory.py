"""Peak memory and time of one reverse-mode gradient w.r.t. the volume and all per-view pose parameters.

Run:  python benchmarks/bench_gradient_memory.py [--size 256] [--views 360] [--basis linear]

The loss is ``0.5 * |A(pose) x - y|^2`` for a cone scan of ``views x size^2`` pixels through a ``size^3`` volume,
with a rigid pose (3 rotations + 3 translations) per view. The budget asked for is
``3 x (volume + projections, bytes) + 300 MB`` of peak resident memory (VmHWM, read from /proc).
"""

from __future__ import annotations

import argparse
import time

import drjit as dr
import numpy as np
from _common import peak_rss_mb

import drct as ct
from drct.backend import drjit_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=360)
    parser.add_argument("--basis", default="linear")
    parser.add_argument("--chunk-rays", type=int, default=1 << 18, help="rays per derivative launch")
    args = parser.parse_args()
    n, views = args.size, args.views
    mod = drjit_module()
    vg = ct.VolumeGeometry((n, n, n))
    pg = ct.cone(np.linspace(0, 2 * np.pi, views, endpoint=False), (n, n), 1.6, 2.0 * n, 4.0 * n)
    rng = np.random.default_rng(0)
    x = mod.TensorXf(rng.random(vg.shape, dtype=np.float32))
    y = mod.TensorXf(rng.random(pg.shape, dtype=np.float32))
    rotation = mod.Array3f64(*[np.zeros(views)] * 3)
    shift = mod.Array3f64(*[np.zeros(views)] * 3)
    dr.enable_grad(x, rotation, shift)
    dr.eval(x, y)
    base = peak_rss_mb()
    start = time.perf_counter()
    A = ct.Projector(
        vg, pg.perturb(motion_rotation=rotation, motion_shift=shift), basis=args.basis, chunk_rays=args.chunk_rays
    )
    residual = A(x) - y
    loss = 0.5 * dr.sum(residual.array * residual.array)
    dr.backward(loss)
    grads = dr.grad(x), dr.grad(rotation), dr.grad(shift)
    dr.eval(grads)
    dr.sync_thread()
    seconds = time.perf_counter() - start
    data_mb = (vg.size + int(np.prod(pg.shape))) * 4 / 2**20
    budget = 3 * data_mb + 300
    peak = peak_rss_mb()
    print(f"cone {n}^3 x {views} x {n}^2, basis {args.basis}, backend {ct.get_backend()}")
    print(
        f"| gradient (volume + {6 * views} pose parameters) | {seconds:.1f} s | peak RSS {peak:.0f} MB "
        f"(before: {base:.0f} MB) | budget 3 x {data_mb:.0f} MB + 300 MB = {budget:.0f} MB | "
        f"{'within' if peak <= budget else 'OVER'} |"
    )


if __name__ == "__main__":
    main()
