"""PYRO-NN's filter-learning experiment in 2D fan and 3D cone beams: learn the FBP/FDK filter from noisy data.

The layer is ``ct.torch.FBP(A, learnable=True)`` (as ``examples/torch/learned_fbp_filter.py`` uses it for 2D
parallel beams): a per-frequency gain on the ramp filter is the only ``nn.Parameter``; the cosine weights,
the angular weights and the (voxel-driven, for FDK) backprojection are the known operators. Full 2π scans of
the geometry of ``fdk_weights.py``; training pairs are CT-like phantoms (``common_paper.py``) with readings
under the end-to-end paper's noise model (Poisson + electronic noise, b-bit quantisation; ``i0`` in
``[--i0-min, --i0-max]``; drawn afresh for every batch). Adam minimises the image MSE. On held-out phantoms the
script compares the ramp, the Hann window and the learned filter (PSNR, SSIM) and writes
``filter_learning_<beam>.png`` (responses, reconstructions, training curve), ``.npz`` and ``.json``.

Measured at the defaults (fan 48², cone 24³, 96 views, 60 Adam steps; 2 CPU cores shared, load 27-28), held-out
PSNR (dB) / SSIM:

    beam  ramp           Hann           learned        training
    fan   27.96 / 0.709  30.10 / 0.849  30.85 / 0.824  39 s
    cone  31.44 / 0.970  27.77 / 0.949  31.73 / 0.972  161 s

Run:  python examples/learned/filter_learning.py [--beam fan|cone|both] [--size 48] [--steps 60] [--quick]
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
from common_paper import body_pairs, fit, load, noisy_line_integrals, outputs, psnr, save, ssim, table
from fdk_weights import geometry

import drct as ct
import drct.torch as ctt


def run(beam: str, args: argparse.Namespace) -> dict[str, Any]:
    """Learn the filter for one beam; returns the measured numbers."""
    png, npz, js = outputs(args.out, [f"filter_learning_{beam}.{e}" for e in ("png", "npz", "json")], args.force)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    vg, pg, _, _ = geometry(beam, args.size, args.views, full=True)
    A = ct.Projector(vg, pg, basis="voxel")
    x_train, y_train = body_pairs(args.train, rng, vg, pg, f"{beam} training phantoms")
    x_test, y_test = body_pairs(args.test, rng, vg, pg, f"{beam} held-out phantoms")
    noise = (args.i0_min, args.i0_max, args.sigma, args.bits)
    noisy_test = noisy_line_integrals(y_test, np.random.default_rng(args.seed + 2), *noise)

    learned = ctt.FBP(A, learnable=True)
    opt = torch.optim.Adam(learned.parameters(), lr=args.lr)
    noise_rng = np.random.default_rng(args.seed + 1)

    def loss_of(pick: torch.Tensor) -> torch.Tensor:
        return (learned(noisy_line_integrals(y_train[pick], noise_rng, *noise)) - x_train[pick]).square().mean()

    losses, seconds = fit(opt, loss_of, args.train, args.steps, args.batch, f"learn the {beam}-beam filter")
    layers = {"ramp": ctt.FBP(A), "Hann": ctt.FBP(A, filter="hann"), "learned": learned}
    peak = float(x_test.max())
    with torch.no_grad():
        images = {name: layer(noisy_test) for name, layer in layers.items()}
    results: dict[str, Any] = {"beam": beam, "grid": list(vg.shape), "views": pg.num_views, "steps": args.steps}
    results.update(train_seconds=seconds, load=load(), loss_first=losses[0])
    results.update(loss_last=float(np.mean(losses[-max(1, len(losses) // 10) :])))
    for name, image in images.items():
        results[f"psnr_{name}"] = psnr(image, x_test, peak)
        results[f"ssim_{name}"] = ssim(image, x_test, peak)

    fig, axes = plt.subplots(1, 6, figsize=(26, 4))
    freq = np.fft.rfftfreq(learned.padded)
    for name, layer in layers.items():
        axes[0].plot(freq, layer.filter_response().detach().numpy(), label=name)
    axes[0].set(title="frequency response (1/mm²)", xlabel="cycles per detector pixel")
    axes[0].legend()
    middle = (lambda v: v[v.shape[0] // 2]) if beam == "cone" else (lambda v: v)
    shown = [("truth", x_test[0])] + [(f"{k}: {results[f'psnr_{k}']:.1f} dB", v[0]) for k, v in images.items()]
    for ax, (title, image) in zip(axes[1:5], shown, strict=True):
        ax.imshow(middle(image).numpy(), cmap="gray", origin="lower", vmin=0.0, vmax=0.035)
        ax.set(title=title, xticks=[], yticks=[])
    axes[5].semilogy(losses)
    axes[5].set(title="training MSE per mini-batch", xlabel="Adam step")
    fig.suptitle(
        f"learned filter, {beam} beam, full scan: grid {vg.shape}, {pg.num_views} views, {args.bits}-bit readings"
    )
    fig.tight_layout()
    arrays = {f"response_{k}": v.filter_response().detach().numpy() for k, v in layers.items()}
    save(png, fig, npz, {**arrays, "losses": losses}, js, results)
    plt.close(fig)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", type=Path, default=Path("out/learned/filter_learning"))
    parser.add_argument("--beam", choices=("fan", "cone", "both"), default="both")
    parser.add_argument("--size", type=int, default=48, help="2D grid n² (3D: (n/2)³), spanning 200 mm")
    parser.add_argument("--views", type=int, default=96, help="views over 2π")
    parser.add_argument("--train", type=int, default=32, help="training phantoms")
    parser.add_argument("--test", type=int, default=8, help="held-out phantoms")
    parser.add_argument("--steps", type=int, default=60, help="Adam steps")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--i0-min", type=float, default=1e3, help="fewest photons per unattenuated ray")
    parser.add_argument("--i0-max", type=float, default=1e4, help="most photons per unattenuated ray")
    parser.add_argument("--sigma", type=float, default=5.0, help="electronic noise σ (photons)")
    parser.add_argument("--bits", type=int, default=8, help="detector bit depth b")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="CI size: 24², 32 views, 8 steps")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 suits loaded machines)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.size, args.views, args.train, args.test, args.steps, args.batch = 24, 32, 6, 2, 8, 2
    rows = []
    for beam in ("fan", "cone") if args.beam == "both" else (args.beam,):
        r = run(beam, args)
        rows.append([beam] + [f"{r[f'psnr_{k}']:.2f} / {r[f'ssim_{k}']:.3f}" for k in ("ramp", "Hann", "learned")])
        rows[-1].append(f"{r['train_seconds']:.0f} s (load {r['load']})")
    print(table(["beam", "ramp PSNR/SSIM", "Hann PSNR/SSIM", "learned PSNR/SSIM", "training"], rows))


if __name__ == "__main__":
    main()
