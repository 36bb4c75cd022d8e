"""drct's SPECT operator against PyTomography in the same run: the same phantom and geometry as
``bench_spect.py`` (64 x 64 x 40 voxels of 4.8 mm, 60 views of 40 x 64 on a 25 cm orbit, LEHR response, a water
cylinder μ-map), CPU.

Prints (1) the relative difference ``|a - p| / |a|`` of the projections and of the back projections for no
physics, μ, PSF and μ + PSF (different discretisations: bilinear rays vs rotated voxel grids); (2) the median of
``--repeat`` (>= 5) forward and back calls of each after a first call timed apart, and drct's speed-up; (3) both
against the analytic cases: a point source in a water cylinder (max |counts ratio / exp(-μL) - 1| over 16 views)
and a line source's FWHM against the collimator model at 3 distances. The machine's load (``uptime``) before and
after.

Run:  python benchmarks/bench_spect_peers.py [--repeat 5] [--threads N]
Needs PyTomography (``pip install pytomography``; the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import drjit as dr
import numpy as np
from _common import load, timed

import drct as ct
from drct.emission import Collimator, SPECTProjector

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from spect_reference import (  # the adapter lives with the tests that check it
    PyTomographySPECT,
    disk_fraction,
    line_source_fwhm,
    point_source_attenuation,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="Dr.Jit and torch threads (0: their defaults)")
    parser.add_argument(
        "--cases", default="none,mu,PSF,mu + PSF", help="comma-separated subset of: none, mu, PSF, mu + PSF"
    )
    args = parser.parse_args()
    if args.repeat < 5:
        parser.error("--repeat must be at least 5")
    import torch

    if args.threads:
        dr.set_thread_count(args.threads)
        torch.set_num_threads(args.threads)
    import pytomography

    vg = ct.VolumeGeometry((40, 64, 64), voxel_size=4.8)
    g = ct.spect(np.linspace(0, 2 * np.pi, 60, endpoint=False), 250.0, (40, 64), 4.8)
    zz, yy, xx = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in vg.shape), indexing="ij")
    body = disk_fraction(vg, 26 * 4.8)
    x = (body * (1 + 4 * ((xx - 8) ** 2 + yy**2 + zz**2 <= 36))).astype(np.float32)
    mu = (0.0154 * body).astype(np.float32)
    lehr = Collimator.lehr()
    y = np.random.default_rng(0).random(g.shape).astype(np.float32)
    print(f"load before: {load()}")
    print(
        f"Dr.Jit threads: {dr.thread_count()}, torch threads: {torch.get_num_threads()}, PyTomography "
        f"{pytomography.__version__} on {pytomography.device}"
    )
    print(
        f"{'case':<10} {'|A-P|/|A|':>10} {'|AT-PT|/|AT|':>13} {'drct A':>9} {'PyT A':>9} {'ratio':>6} "
        f"{'drct AT':>9} {'PyT AT':>9} {'ratio':>6}"
    )
    cases = {"none": (None, None), "mu": (mu, None), "PSF": (None, lehr), "mu + PSF": (mu, lehr)}
    chosen = [c.strip() for c in args.cases.split(",")]
    if unknown := [c for c in chosen if c not in cases]:
        parser.error(f"unknown --cases {unknown}; choose from {list(cases)}")
    for name in chosen:
        m, c = cases[name]
        A, P = SPECTProjector(vg, g, mu=m, collimator=c), PyTomographySPECT(vg, g, m, c)
        a, p = A(x), P.forward(x)
        b, q = A.T(y), P.back(y)
        diff_f = np.linalg.norm(a - p) / np.linalg.norm(a)
        diff_b = np.linalg.norm(b - q) / np.linalg.norm(b)
        fns = [lambda A=A: A(x), lambda P=P: P.forward(x), lambda A=A: A.T(y), lambda P=P: P.back(y)]
        (_, da), (_, pa), (_, db), (_, pb) = timed(fns, args.repeat)
        print(
            f"{name:<10} {diff_f:10.4f} {diff_b:13.4f} {da * 1e3:7.0f}ms {pa * 1e3:7.0f}ms {pa / da:6.1f} "
            f"{db * 1e3:7.0f}ms {pb * 1e3:7.0f}ms {pb / db:6.1f}"
        )
    print("analytic checks (float64 drct, float32 PyTomography):")
    makers = {
        "drct": lambda vg, g, mu, c: SPECTProjector(vg, g, mu=mu, collimator=c, dtype="float64"),
        "PyTomography": lambda vg, g, mu, c: PyTomographySPECT(vg, g, mu, c).forward,
    }
    for name, make in makers.items():
        measured, expected = point_source_attenuation(make)
        rows = line_source_fwhm(make)
        fwhm = ", ".join(
            f"d={d:.0f} mm: {got:.3f}/{model:.3f} ({100 * (got / model - 1):+.3f}%)" for d, got, model in rows
        )
        print(
            f"  {name:<13} point in water: max |ratio/exp(-muL) - 1| = {np.abs(measured / expected - 1).max():.4f};"
            f" line FWHM measured/model {fwhm}"
        )
    print(f"load after: {load()}")


if __name__ == "__main__":
    main()
