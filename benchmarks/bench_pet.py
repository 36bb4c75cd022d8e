"""PET operator wall time: forward ``A`` and back ``A.T``, non-TOF and TOF, on a clinical-like ring.

The ring is clinical (radius 410 mm, 512 crystals of 4.9 mm, mCT-like TOF: 13 bins of 312 ps, 555 ps FWHM), the
axial extent is cut to ``--rings`` rings of 4 mm (all ring differences, span 1) so that it runs in seconds on 2
CPU cores; the activity grid is 120 x 120 voxels of 4 mm (480 mm) times the rings, and the sinogram keeps
``--radial`` radial bins. Every bin is one LOR here (span 1, no mashing): the cost is per LOR and voxel crossed,
which the table prints (ns per voxel length crossed by a LOR) so that other sizes can be read off. Each case
prints the first call apart and the median of ``--repeat`` (at least 5) more; ``uptime`` before and after.

Run:  python benchmarks/bench_pet.py [--rings 4] [--radial 201] [--repeat 5] [--threads N] [--dtype float32]
"""

from __future__ import annotations

import argparse

import drjit as dr
import numpy as np
from _common import load, peak_rss_mb, timed

import drct as ct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rings", type=int, default=4)
    parser.add_argument("--radial", type=int, default=201)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="Dr.Jit worker threads (0: Dr.Jit's default)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--backend", default=None, help="llvm (default) or cuda")
    args = parser.parse_args()
    if args.repeat < 5:
        parser.error("--repeat must be at least 5")
    if args.threads:
        dr.set_thread_count(args.threads)
    sc = ct.pet.scanner(rings=args.rings, crystals_per_ring=512, radius=410.0, crystal_size=(4.0, 4.9))
    g = ct.pet.sinogram(sc, radial_bins=args.radial)
    vg = ct.VolumeGeometry((args.rings, 120, 120), voxel_size=4.0)
    _, yy, xx = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in vg.shape), indexing="ij")
    body = (xx**2 + yy**2 <= 45**2).astype(np.float32)
    x = (body * (1 + 4 * ((xx - 15) ** 2 + yy**2 <= 36))).astype(np.float32)
    mu = 0.0096 * body
    tof = ct.pet.TOF.from_ps(fwhm_ps=555.0, bin_width_ps=312.0, bins=13)
    # the work: voxel lengths crossed by all LORs (a box of ones integrates to each LOR's chord through the grid)
    chords = ct.pet.PETProjector(vg, g, dtype=args.dtype, backend=args.backend)(np.ones(vg.shape, np.float32))
    steps = float(chords.sum()) / 4.0
    print(f"load before: {load()}")
    print(f"scanner: {sc!r}")
    print(
        f"sinogram {g.shape} = {int(np.prod(g.shape))} LORs; volume {vg.shape}; TOF {tof.bins} bins of "
        f"{tof.bin_width:.1f} mm, FWHM {tof.fwhm:.1f} mm; {args.dtype}, {dr.thread_count()} threads"
    )
    header = f"{'case':<10} {'op':<5} {'first (s)':>10} {'median (s)':>11} {'ns/voxel-len':>13}"
    print(header)
    print("-" * len(header))
    for name, model in (("non-TOF", None), ("TOF", tof)):
        A = ct.pet.PETProjector(vg, g, tof=model, mu=mu, dtype=args.dtype, backend=args.backend)
        y = A(x)
        (f_first, f_med), (b_first, b_med) = timed([lambda A=A: A(x), lambda A=A, y=y: A.T(y)], args.repeat)
        for op, first, med in (("A", f_first, f_med), ("A.T", b_first, b_med)):
            print(f"{name:<10} {op:<5} {first:>10.3f} {med:>11.3f} {med / steps * 1e9:>13.2f}")
    print(f"peak RSS: {peak_rss_mb():.0f} MB")
    print(f"load after: {load()}")


if __name__ == "__main__":
    main()
