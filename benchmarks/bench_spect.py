"""SPECT operator wall time: forward ``A`` and back ``A.T`` at 64 x 64 x 40 voxels (4.8 mm), 60 views of 40 x 64,
LEHR collimator response and a water-cylinder μ-map; the median of ``--repeat`` (at least 5) calls after a first
call timed apart, with the machine's load (``uptime``) before and after.

Run:  python benchmarks/bench_spect.py [--repeat 5] [--threads N] [--cases "mu + LEHR incremental,..."]

The issue's target is <= 150 ms each on 2 CPU cores (SPECTrecon.jl reports 290-794 ms forward, 208-379 ms back on
a CPU); the table prints the direct method's widest kernel (rows x cols taps) so that the "19 x 19-equivalent" case
can be read off; the incremental method (psf_method="incremental") uses small kernels between neighbouring planes.
Cases marked "(per-view tables)" are the reference twins: the same operator reading its response from one table
per view (``engine.uniform = False``, how every orbit was computed before) instead of one table for the circular
orbit (by depth for the direct method, kernel parameters for the incremental one). Besides the wall-clock medians
the table gives the CPU seconds of this process per call (median), less sensitive to other jobs on the machine.
"""

from __future__ import annotations

import argparse

import drjit as dr
import numpy as np
from _common import cpu_seconds, load, timed

import drct as ct
from drct.emission import Collimator, SPECTProjector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="Dr.Jit worker threads (0: Dr.Jit's default)")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    args = parser.parse_args()
    if args.repeat < 5:
        parser.error("--repeat must be at least 5")
    if args.threads:
        dr.set_thread_count(args.threads)
    vg = ct.VolumeGeometry((40, 64, 64), voxel_size=4.8)
    g = ct.spect(np.linspace(0, 2 * np.pi, 60, endpoint=False), 250.0, (40, 64), 4.8)
    zz, yy, xx = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in vg.shape), indexing="ij")
    body = (xx**2 + yy**2 <= 26**2).astype(np.float32)
    x = (body * (1 + 4 * ((xx - 8) ** 2 + yy**2 + zz**2 <= 36))).astype(np.float32)
    mu = 0.0154 * body
    wide = Collimator(hole_diameter=2.5, hole_length=24.05, intrinsic_fwhm=3.8)
    cases = {
        "no mu, no PSF": SPECTProjector(vg, g),
        "mu": SPECTProjector(vg, g, mu=mu),
        "mu + LEHR direct": SPECTProjector(vg, g, mu=mu, collimator=Collimator.lehr()),
        "mu + LEHR incremental": SPECTProjector(vg, g, mu=mu, collimator=Collimator.lehr(), psf_method="incremental"),
        "mu + wide direct": SPECTProjector(vg, g, mu=mu, collimator=wide),
        "mu + wide incremental": SPECTProjector(vg, g, mu=mu, collimator=wide, psf_method="incremental"),
    }
    for method in ("direct", "incremental"):
        twin = SPECTProjector(vg, g, mu=mu, collimator=Collimator.lehr(), psf_method=method)
        twin._engine.uniform = False
        cases[f"mu + LEHR {method} (per-view tables)"] = twin
    if args.cases:
        chosen = [c.strip() for c in args.cases.split(",")]
        if unknown := [c for c in chosen if c not in cases]:
            parser.error(f"unknown --cases {unknown}; choose from {list(cases)}")
        cases = {c: cases[c] for c in chosen}
    print(f"load before: {load()}")
    print(f"Dr.Jit threads: {dr.thread_count()}")
    print(
        f"{'case':<44} {'kernel':>8} {'A first':>9} {'A median':>9} {'A CPU':>8} {'A.T first':>10} "
        f"{'A.T median':>11} {'A.T CPU':>8}"
    )
    for name, A in cases.items():
        y = A(x)
        (fa, ma), (fb, mb) = timed([lambda A=A: A(x), lambda A=A, y=y: A.T(y)], args.repeat)
        ca, cb = cpu_seconds(lambda A=A: A(x), args.repeat), cpu_seconds(lambda A=A, y=y: A.T(y), args.repeat)
        r = A.psf_radius
        taps = f"{2 * r[0] + 1}x{2 * r[1] + 1}"
        print(
            f"{name:<44} {taps:>8} {fa * 1e3:7.0f}ms {ma * 1e3:7.0f}ms {ca * 1e3:6.0f}ms {fb * 1e3:8.0f}ms "
            f"{mb * 1e3:9.0f}ms {cb * 1e3:6.0f}ms"
        )
    print(f"load after: {load()}")


if __name__ == "__main__":
    main()
