"""PYRO-NN's known-operator experiment: learn the short-scan (redundancy) weights of FBP/FDK from data.

A fan-beam (2D) or cone-beam (3D, FDK) short scan covers π plus the fan angle: rays near the start and the end of
the orbit are measured twice, and FBP must weight each pair to a sum of one (Parker's weights do it smoothly).
Here the weights are an ``nn.Parameter`` of ``ct.torch.FBP(A, learnable="redundancy")`` (one per view and
detector column; the cosine and angular weights, the ramp filter and the backprojection stay the known
operators), started at ones (no redundancy handling: the overlap counted twice) and trained with Adam on
CT-like phantoms (``common_paper.py``: exact analytic projections, no noise) to minimise the image MSE.

Reported, per beam: the relative L2 distance of the weights to Parker's (:func:`drct.recon.weights.parker_weights`)
before and after training, over the rays that can meet the object (the rest get no gradient); the RMS of the
redundancy residual ``w(β, γ) + w(β + π + 2γ, −γ) − 1`` (0 for Parker, 1 in the overlap at the start); and on
held-out phantoms the relative error of the reconstructions with ones, the learned weights and Parker's weights
(FDK with Parker weights is the reference), plus the learned-vs-Parker difference. Writes
``fdk_weights_<beam>.png`` (weights, profiles, reconstructions, training curve), ``.npz`` and ``.json`` to ``--out``.

Measured at the defaults (fan 48², cone 24³, 72 views, 150 Adam steps; 2 CPU cores shared, load 19-30):

    beam  distance to Parker   residual RMS     held-out rel. error ones / learned / Parker   training
    fan   0.426 → 0.296        0.607 → 0.232    0.332 / 0.0960 / 0.0948                        352 s
    cone  0.426 → 0.316        0.607 → 0.250    0.323 / 0.139 / 0.152                          866 s

The learned weights reconstruct as well as Parker's but are not Parker's: the data fix only the sum of each pair
of conjugate weights, and from the symmetric start both fall towards 1/2 in the overlap (see the PNG).

Run:  python examples/learned/fdk_weights.py [--beam fan|cone|both] [--size 48] [--steps 150] [--quick]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from common_paper import RADIUS, body_pairs, fit, load, outputs, psnr, relative_error, save, table

import drct as ct
import drct.torch as ctt
from drct.recon.weights import fbp_weights

SOD, SDD = 400.0, 800.0  # source-origin and source-detector distances, mm (magnification 2)


def geometry(
    beam: str, n: int, views: int, full: bool = False
) -> tuple[ct.VolumeGeometry, ct.ProjectionGeometry, float, float]:
    """The grid (``n²`` in 2D, ``(n/2)³`` in 3D, spanning the phantoms' disc) and a short scan over π plus the
    fan angle (``full``: a full 2π scan; the detector is 300 mm wide at the rotation axis); returns the column
    spacing and angular step too."""
    m = n if beam == "fan" else n // 2
    h = 2 * RADIUS / m
    cols = int(1.5 * m)
    du = 2 * h  # 1.5 m pixels of 2 h at magnification 2: 1.5 m h = 300 mm at the axis
    delta = np.arctan(0.5 * cols * du / SDD)  # half fan angle
    angles = np.linspace(0, 2 * np.pi if full else np.pi + 2 * delta, views, endpoint=False)
    step = float(angles[1] - angles[0])
    if beam == "fan":
        return ct.VolumeGeometry((m, m), voxel_size=h), ct.fan(angles, cols, du, SOD, SDD), du, step
    return ct.VolumeGeometry((m, m, m), voxel_size=h), ct.cone(angles, (cols, cols), du, SOD, SDD), du, step


def redundancy_residual(w: np.ndarray, gamma: np.ndarray, step: float, mask: np.ndarray) -> float:
    """RMS over the rays of ``mask`` of ``w(β, γ) + w(β', −γ) − 1``, where ``β' = β ± π + 2γ`` are the sources of
    the ray's conjugates (``w = 0`` outside the scan; ``β`` of view ``i`` is ``(i + 1/2) step``; ``γ`` in the
    sign convention of :func:`drct.recon.weights.parker_weights`). Rays whose conjugate falls within one view of
    the scan's ends are left out (no neighbour to interpolate from)."""
    views, cols = w.shape
    beta = (np.arange(views)[:, None] + 0.5) * step
    mirror = w[:, ::-1]  # the column of -γ
    cols_idx = np.broadcast_to(np.arange(cols), w.shape)
    total, keep = w - 1.0, np.broadcast_to(mask[None, :], w.shape).copy()
    for turn in (np.pi, -np.pi):
        k = (beta + turn + 2 * gamma[None, :]) / step - 0.5  # fractional view of the conjugate
        inside = (k >= 0) & (k <= views - 1)
        k0 = np.clip(np.floor(k).astype(int), 0, views - 2)
        frac = np.clip(k - k0, 0.0, 1.0)
        conj = (1 - frac) * mirror[k0, cols_idx] + frac * mirror[k0 + 1, cols_idx]
        total = total + np.where(inside, conj, 0.0)
        keep &= inside | (k < -1) | (k > views)
    return float(np.sqrt(np.mean(total[keep] ** 2)))


def fan_angles(cols: int, du: float) -> np.ndarray:
    """Fan angle of each column's centre (flat centred detector), in Parker's convention: ``γ > 0`` at column 0
    for drct's fan and cone beams (asserted by :func:`run` through Parker's residual)."""
    return -np.arctan((np.arange(cols) - (cols - 1) / 2) * du / SDD)


def run(beam: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train the redundancy weights for one beam; returns the measured numbers."""
    png, npz, js = outputs(args.out, [f"fdk_weights_{beam}.{e}" for e in ("png", "npz", "json")], args.force)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    vg, pg, du, step = geometry(beam, args.size, args.views)
    A = ct.Projector(vg, pg, basis="voxel")
    x_train, y_train = body_pairs(args.train, rng, vg, pg, f"{beam} training phantoms")
    x_test, y_test = body_pairs(args.test, rng, vg, pg, f"{beam} held-out phantoms")

    layer = ctt.FBP(A, learnable="redundancy")
    assert layer.redundancy is not None
    parker_full = fbp_weights(pg, vg).redundancy
    assert parker_full is not None
    parker = parker_full if beam == "fan" else parker_full[:, 0, :]  # a flat detector: the same in every row
    start = layer.redundancy.detach().reshape(parker.shape).numpy().copy()
    opt = torch.optim.Adam(layer.parameters(), lr=args.lr)

    def loss_of(pick: torch.Tensor) -> torch.Tensor:
        return (layer(y_train[pick]) - x_train[pick]).square().mean()

    desc = f"learn the {beam}-beam redundancy weights"
    losses, seconds = fit(opt, loss_of, args.train, args.steps, args.batch, desc)
    learned = layer.redundancy.detach().reshape(parker.shape).numpy().copy()

    gamma = fan_angles(parker.shape[-1], du)
    mask = SOD * np.sin(np.abs(gamma)) < RADIUS  # columns whose rays can meet the phantoms' disc
    res_parker = redundancy_residual(parker, gamma, step, mask)
    if res_parker > 0.05:  # the conjugate-ray bookkeeping must hold for Parker's weights themselves
        raise RuntimeError(f"Parker's weights miss the redundancy condition by {res_parker:.3g}: a bookkeeping bug")

    def distance(w: np.ndarray) -> float:
        return float(np.linalg.norm((w - parker)[:, mask]) / np.linalg.norm(parker[:, mask]))

    with torch.no_grad():
        recon_learned = layer(y_test)
        recon_parker = ctt.FBP(A)(y_test)
        layer.redundancy.fill_(1.0)
        recon_ones = layer(y_test)
    peak = float(x_test.max())
    results = {
        "beam": beam,
        "grid": list(vg.shape),
        "views": pg.num_views,
        "steps": args.steps,
        "train_seconds": seconds,
        "load": load(),
        "loss_first": losses[0],
        "loss_last": float(np.mean(losses[-max(1, len(losses) // 10) :])),
        "distance_to_parker_initial": distance(start),
        "distance_to_parker_learned": distance(learned),
        "residual_initial": redundancy_residual(start, gamma, step, mask),
        "residual_learned": redundancy_residual(learned, gamma, step, mask),
        "residual_parker": res_parker,
        "error_ones": relative_error(recon_ones, x_test),
        "error_learned": relative_error(recon_learned, x_test),
        "error_parker": relative_error(recon_parker, x_test),
        "learned_vs_parker": relative_error(recon_learned, recon_parker),
        "psnr_ones": psnr(recon_ones, x_test, peak),
        "psnr_learned": psnr(recon_learned, x_test, peak),
        "psnr_parker": psnr(recon_parker, x_test, peak),
    }

    fig, grid = plt.subplots(2, 4, figsize=(20, 8))
    axes = grid.ravel()
    maps = [("learned", learned), ("Parker", parker), ("learned − Parker", learned - parker)]
    for ax, (title, w) in zip(axes[:3], maps, strict=True):
        image = ax.imshow(w, aspect="auto", cmap="viridis" if "−" not in title else "coolwarm")
        fig.colorbar(image, ax=ax)
        ax.set(title=f"{title} weights", xlabel="detector column", ylabel="view")
    for col, colour in ((parker.shape[1] // 2, "C0"), (int(parker.shape[1] * 0.3), "C1")):
        axes[3].plot(learned[:, col], colour, label=f"learned, column {col}")
        axes[3].plot(parker[:, col], colour + "--", label=f"Parker, column {col}")
    axes[3].set(title="weights along the orbit", xlabel="view")
    axes[3].legend(fontsize=7)
    middle = (lambda v: v[v.shape[0] // 2]) if beam == "cone" else (lambda v: v)
    shown = [("truth", x_test[0]), ("ones", recon_ones[0]), ("learned", recon_learned[0]), ("Parker", recon_parker[0])]
    for ax, (title, image) in zip(axes[4:7], shown[1:], strict=True):
        err = relative_error(image, x_test[0])
        ax.imshow(middle(image).numpy(), cmap="gray", origin="lower", vmin=0.0, vmax=0.03)
        ax.set(title=f"{title} weights: rel. error {err:.3f}", xticks=[], yticks=[])
    axes[7].semilogy(losses)
    axes[7].set(title="training MSE per mini-batch", xlabel="Adam step")
    fig.suptitle(
        f"learned short-scan weights, {beam} beam: grid {vg.shape}, {pg.num_views} views over π + fan angle, "
        f"{args.train} training / {args.test} held-out phantoms"
    )
    fig.tight_layout()
    save(png, fig, npz, {"learned": learned, "parker": parker, "losses": losses}, js, results)
    plt.close(fig)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", type=Path, default=Path("out/learned/fdk_weights"))
    parser.add_argument("--beam", choices=("fan", "cone", "both"), default="both")
    parser.add_argument("--size", type=int, default=48, help="2D grid n² (3D: (n/2)³), spanning 200 mm")
    parser.add_argument("--views", type=int, default=72, help="views over the short scan")
    parser.add_argument("--train", type=int, default=32, help="training phantoms")
    parser.add_argument("--test", type=int, default=8, help="held-out phantoms")
    parser.add_argument("--steps", type=int, default=150, help="Adam steps")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="CI size: 24², 24 views, 10 steps")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 suits loaded machines)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.size, args.views, args.train, args.test, args.steps, args.batch = 24, 24, 6, 2, 10, 2
    beams = ("fan", "cone") if args.beam == "both" else (args.beam,)
    rows = []
    for beam in beams:
        r = run(beam, args)
        rows.append(
            [
                beam,
                f"{r['distance_to_parker_initial']:.3f} → {r['distance_to_parker_learned']:.3f}",
                f"{r['residual_initial']:.3f} → {r['residual_learned']:.3f} (Parker {r['residual_parker']:.3f})",
                f"{r['error_ones']:.4f} / {r['error_learned']:.4f} / {r['error_parker']:.4f}",
                f"{r['learned_vs_parker']:.4f}",
                f"{r['train_seconds']:.0f} s (load {r['load']})",
            ]
        )
    headers = [
        "beam",
        "rel. L2 distance to Parker (start → learned)",
        "redundancy residual RMS (start → learned)",
        "held-out rel. error: ones / learned / Parker",
        "learned vs Parker FDK",
        "training",
    ]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
