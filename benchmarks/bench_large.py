"""A large cone-beam problem in bounded memory: one forward projection and one adjoint, with progress bars.

Run:  python benchmarks/bench_large.py [--n 512] [--views 720] [--basis voxel] [--chunk-rays 1048576]

Default: a 512³ volume and 720 projections of 512² pixels (the issue-4 target: it must fit in 24 GB of RAM on
the CPU). The projector works through chunks of ``16 * chunk_rays`` rays, so its working set is the volume, the
projections and one chunk. Prints seconds, GVU/s and this process's peak resident memory.
"""

from __future__ import annotations

import argparse
import time

import drjit as dr
import numpy as np
from _common import peak_rss_mb

import drct as ct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=512, help="volume size n³ and detector n² (default 512)")
    parser.add_argument("--views", type=int, default=720)
    parser.add_argument("--basis", default="voxel")
    parser.add_argument("--chunk-rays", type=int, default=1 << 20)
    args = parser.parse_args()
    n = args.n
    vg = ct.VolumeGeometry((n, n, n))
    pg = ct.cone(np.linspace(0, 2 * np.pi, args.views, endpoint=False), (n, n), 1.5, 2.0 * n, 4.0 * n)
    A = ct.Projector(vg, pg, basis=args.basis, chunk_rays=args.chunk_rays)
    work = vg.size * pg.num_views / 1e9
    x = A.types.Tensor(np.ones(vg.shape, np.float32))
    print(
        f"{n}³ volume, {args.views} x {n}² projections, basis {args.basis}: "
        f"{vg.size * 4 / 2**30:.2f} GiB volume, {pg.num_rays * 4 / 2**30:.2f} GiB projections"
    )
    start = time.perf_counter()
    y = A.forward_tensor(x)
    dr.sync_thread()
    forward = time.perf_counter() - start
    print(f"forward  {forward:8.1f} s  {work / forward:.3f} GVU/s  peak {peak_rss_mb() / 1024:.2f} GiB", flush=True)
    start = time.perf_counter()
    back = A.adjoint_tensor(y)
    dr.sync_thread()
    adjoint = time.perf_counter() - start
    print(f"adjoint  {adjoint:8.1f} s  {work / adjoint:.3f} GVU/s  peak {peak_rss_mb() / 1024:.2f} GiB", flush=True)
    middle = float(back.numpy()[n // 2, n // 2, n // 2])
    healthy = bool(np.isfinite(middle) and middle > 0)
    print(f"check: A.T A 1 at the centre voxel = {middle:.4g} (positive and finite: {healthy})")


if __name__ == "__main__":
    main()
