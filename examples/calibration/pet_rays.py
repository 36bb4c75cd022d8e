"""PET-like ray-list geometry: lines of response between the crystals of a 2D ring of detector modules, some
modules displaced. The unknowns are one shift per module (an :class:`drct.calibration.EndpointModel`), estimated
jointly with the image. A common shift of all modules is a translation of the object (the gauge): it is detected
and one module's shift is fixed; a common rotation is nearly one too. Errors are compared after removing the
best-fitting rigid motion of the ring.

Run:  python examples/calibration/pet_rays.py [--size 64] [-o out/pet] [--force]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import add_noise, parser

import drct as ct
from drct.calibration import EndpointModel


def main() -> None:
    p = parser(__doc__, 64, 0)
    p.add_argument("--modules", type=int, default=8)
    p.add_argument("--shift", type=float, default=1.5, help="standard deviation of the module shifts (mm)")
    args = p.parse_args()
    n, modules = args.size, args.modules
    vg = ct.VolumeGeometry((n, n), voxel_size=64.0 / n)
    crystals = modules * max(4, (3 * n) // modules)
    phi = 2 * np.pi * (np.arange(crystals) + 0.5) / crystals
    ring = 60.0 * np.stack([np.cos(phi), np.sin(phi)], axis=1)
    module = np.arange(crystals) * modules // crystals
    i, j = np.triu_indices(crystals, 1)
    keep = module[i] != module[j]
    model = EndpointModel(ring[i[keep]], ring[j[keep]], module[i[keep]], module[j[keep]], modules)
    rng = np.random.default_rng(args.seed)
    shift = rng.normal(0, args.shift, (modules, 2))  # mm
    true = model.final_geometry(np.ascontiguousarray(shift.T).reshape(-1))
    y = add_noise(ct.phantoms.shepp_logan_projections(true, vg=vg), args.photons, args.seed)
    print(f"{modules} modules, {crystals} crystals, {model.a.shape[0]} lines of response, image {vg.shape}")
    start = time.perf_counter()
    res = ct.calibrate(
        y,
        model.nominal_geometry(),
        vg=vg,
        model=model,
        basis=args.basis,
        levels=[1],
        iterations=int(args.iterations.split(",")[-1]) + 4,
        optimizer=args.optimizer,
    )
    runtime = time.perf_counter() - start
    est = np.asarray(res.params["module_shift"])
    before = model.without_rigid_motion(shift)
    after = model.without_rigid_motion(est - shift)
    print(
        f"module shifts (rigid motion of the ring removed: the gauge): RMS {np.sqrt(np.mean(before**2)):.4f} mm "
        f"before, {np.sqrt(np.mean(after**2)):.4f} mm after"
    )
    print(f"  gauge: {[(g['action'], list(g['parameters'])[:3]) for g in res.gauge]}")
    print(f"  runtime {runtime:.1f} s ({res.iterations} outer iterations, {ct.get_backend()})")
    if args.out is not None:
        res.save(args.out, overwrite=args.force)


if __name__ == "__main__":
    main()
