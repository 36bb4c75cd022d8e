"""Learn the FBP filter from data (the PYRO-NN baseline) with ``ct.torch.FBP(A, learnable=True)``.

Training pairs are random ellipse phantoms (a body ellipse with brighter and darker inclusions, μ in 1/mm) and
their exact analytic parallel-beam projections (``ct.phantoms.project_ellipsoids``) plus Gaussian noise. The
network is one ``ct.torch.FBP`` layer whose per-frequency gain on the ramp filter is an ``nn.Parameter``;
Adam minimises the mean squared error to the phantoms (mini-batches in one launch each). On held-out phantoms
the script compares the ramp filter, the hand-tuned Hann window and the learned filter (PSNR), and writes
``learned_fbp.png`` (filter responses, one held-out reconstruction per filter, the training curve) and
``learned_fbp.npz`` (responses, PSNRs, losses) to ``--out`` (kept unless ``--force``).

Run:  python examples/torch/learned_fbp_filter.py [-o out/torch/learned_fbp] [--size 64] [--epochs 60] [--noise 0.05]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm import tqdm

import drct as ct
import drct.torch as ctt
from drct.io import refuse_overwrite, write_atomically


def make_pairs(
    n: int, rng: np.random.Generator, vg: ct.VolumeGeometry, pg: ct.ProjectionGeometry, noise: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` phantoms (voxel averages) and their analytic sinograms plus Gaussian noise of σ = ``noise``."""
    xs, ys = [], []
    radius = 0.5 * vg.shape[0] * vg.voxel_size[0]
    for _ in tqdm(range(n), desc="phantoms", leave=False):
        items = ct.phantoms.random_ellipses(rng, radius)
        xs.append(ct.phantoms.rasterize(items, vg, supersample=2))
        y = ct.phantoms.project_ellipsoids(items, pg)
        ys.append(y + rng.normal(scale=noise, size=y.shape))
    return torch.tensor(np.array(xs), dtype=torch.float32), torch.tensor(np.array(ys), dtype=torch.float32)


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean over the batch of 10 log10(max(ref)² / MSE)."""
    mse = (x - ref).square().mean(dim=(-2, -1))
    return float((10 * torch.log10(ref.amax(dim=(-2, -1)) ** 2 / mse)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", type=Path, default=Path("out/torch/learned_fbp"))
    parser.add_argument("--size", type=int, default=64, help="image size (pixels of 1 mm)")
    parser.add_argument("--views", type=int, default=90)
    parser.add_argument("--train", type=int, default=64, help="training phantoms")
    parser.add_argument("--test", type=int, default=16, help="held-out phantoms")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--noise", type=float, default=0.05, help="σ of the noise added to the line integrals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    args = parser.parse_args()
    png, npz = args.out / "learned_fbp.png", args.out / "learned_fbp.npz"
    try:
        refuse_overwrite([png, npz], args.force)
    except FileExistsError as err:
        raise SystemExit(str(err)) from None

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    n = args.size
    vg = ct.VolumeGeometry((n, n), voxel_size=1.0)
    pg = ct.parallel(np.linspace(0, np.pi, args.views, endpoint=False), int(1.5 * n), 1.0)
    A = ct.Projector(vg, pg, basis="voxel")
    x_train, y_train = make_pairs(args.train, rng, vg, pg, args.noise)
    x_test, y_test = make_pairs(args.test, rng, vg, pg, args.noise)

    ramp, hann = ctt.FBP(A), ctt.FBP(A, filter="hann")
    learned = ctt.FBP(A, learnable=True)
    opt = torch.optim.Adam(learned.parameters(), lr=args.lr)
    losses = []
    steps = args.epochs * (args.train // args.batch)
    with tqdm(total=steps, desc="train the filter") as bar:
        for _ in range(args.epochs):
            for pick in torch.randperm(args.train).split(args.batch):
                opt.zero_grad()
                loss = (learned(y_train[pick]) - x_train[pick]).square().mean()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                bar.update()
                bar.set_postfix(mse=f"{losses[-1]:.3g}")

    with torch.no_grad():
        results = {name: layer(y_test) for name, layer in (("ramp", ramp), ("hann", hann), ("learned", learned))}
    scores = {name: psnr(image, x_test) for name, image in results.items()}
    print("| filter | held-out PSNR (dB) |")
    print("|---|---|")
    for name, score in scores.items():
        print(f"| {name} | {score:.2f} |")

    fig, axes = plt.subplots(1, 6, figsize=(24, 4))
    freq = np.fft.rfftfreq(learned.padded)  # cycles per detector pixel
    for name, layer in (("ramp", ramp), ("hann", hann), ("learned", learned)):
        axes[0].plot(freq, layer.filter_response().detach().numpy(), label=name)
    axes[0].set(title="frequency response (1/mm²)", xlabel="cycles per detector pixel")
    axes[0].legend()
    shown = [("truth", x_test[0])] + [(f"{k} {scores[k]:.1f} dB", v[0]) for k, v in results.items()]
    for ax, (title, image) in zip(axes[1:5], shown, strict=True):
        ax.imshow(image.numpy(), cmap="gray", origin="lower", vmin=0.0, vmax=0.04)
        ax.set(title=title, xticks=[], yticks=[])
    axes[5].semilogy(losses)
    axes[5].set(title="training MSE per mini-batch", xlabel="Adam step")
    fig.suptitle(
        f"learned FBP filter: {n}², {args.views} parallel views, noise σ = {args.noise}, "
        f"{args.train} training / {args.test} held-out phantoms"
    )
    fig.tight_layout()

    def save_npz(tmp: str) -> None:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            response_ramp=ramp.filter_response().numpy(),
            response_learned=learned.filter_response().detach().numpy(),
            psnr=np.array([scores["ramp"], scores["hann"], scores["learned"]]),
            losses=np.array(losses),
        )
        Path(tmp).write_bytes(buffer.getvalue())

    write_atomically(png, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    write_atomically(npz, save_npz)
    print(f"wrote {png} and {npz}")


if __name__ == "__main__":
    main()
