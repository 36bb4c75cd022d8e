"""Quick start: project the Shepp–Logan phantom with every basis and compare with its exact projections.

Run:  python examples/quickstart.py [-o out/quickstart] [--size 256] [--force]

Writes ``sinogram.npy`` (the ``bspline2`` projections), ``backprojection.npy`` and ``quickstart.png`` (phantom,
sinogram, error against the analytic line integrals, backprojection) into the output folder, and prints the
relative error and time of each basis.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import drct as ct
from drct.io import refuse_overwrite, write_atomically


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", type=Path, default=Path("out/quickstart"), help="output folder")
    parser.add_argument("--size", type=int, default=256, help="image size in pixels (the phantom is 256 mm wide)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    args = parser.parse_args()
    outputs = [args.out / name for name in ("sinogram.npy", "backprojection.npy", "quickstart.png")]
    try:
        refuse_overwrite(outputs, args.force)
    except FileExistsError as err:
        raise SystemExit(str(err)) from None

    vg = ct.VolumeGeometry((args.size, args.size), voxel_size=256.0 / args.size)
    pg = ct.parallel(np.linspace(0, np.pi, 360, endpoint=False), 384, det_spacing=1.0)
    image = ct.phantoms.shepp_logan(vg)
    exact = ct.phantoms.shepp_logan_projections(pg, vg=vg)
    print(f"backend {ct.get_backend()}: {vg.shape} image, {pg.shape} sinogram")
    sinograms = {}
    for basis in ("voxel", "linear", "bspline2", "bspline3"):
        A = ct.Projector(vg, pg, basis=basis)
        start = time.perf_counter()
        sinograms[basis] = A(image)
        seconds = time.perf_counter() - start
        error = np.linalg.norm(sinograms[basis] - exact) / np.linalg.norm(exact)
        print(f"  {basis:9s} relative L2 error vs analytic {error:.2e}   ({seconds * 1e3:.0f} ms incl. compile)")
    A = ct.Projector(vg, pg, basis="bspline2")
    backprojection = A.T(sinograms["bspline2"])

    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    panels = [
        (image, "phantom (y up)", {"origin": "lower"}),
        (sinograms["bspline2"], "bspline2 sinogram", {"aspect": "auto"}),
        (sinograms["linear"] - exact, "linear - analytic", {"aspect": "auto", "cmap": "coolwarm"}),
        (backprojection, "A.T(A x)", {"origin": "lower"}),
    ]
    for ax, (data, title, style) in zip(axes, panels, strict=True):
        im = ax.imshow(data, **{"cmap": "gray", **style})
        ax.set_title(title)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    write_atomically(outputs[0], lambda p: np.save(p, sinograms["bspline2"], allow_pickle=False))
    write_atomically(outputs[1], lambda p: np.save(p, backprojection, allow_pickle=False))
    write_atomically(outputs[2], lambda p: fig.savefig(p, dpi=100, format="png"))
    print(f"wrote {', '.join(str(p) for p in outputs)}")


if __name__ == "__main__":
    main()
