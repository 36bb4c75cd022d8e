"""The end-to-end sinogram-to-image network ("End-to-end sinogram reconstruction", TorchRadon) with drct inside.

Readings follow the paper's noise model, simulated by :mod:`drct.physics` (``Detector`` + ``simulate_counts``)::

    z ~ Poisson(exp(s − y)) + Normal(0, σ²)        shot and electronic noise (photons), exp(s) = i0
    r = clamp(round(z / k), 0, 2^b − 1)             b-bit quantisation, k photons per digital unit

with ``y`` the exact line integrals of :func:`drct.phantoms.random_body` phantoms (CT-like, 200 mm field of
view, soft tissue 0.02/mm: ``y`` up to about 4), ``i0`` drawn log-uniformly in ``[--i0-min, --i0-max]`` per
sample (several noise levels, as in the paper), ``σ = --sigma`` photons, ``b = --bits`` and ``k`` set so that
an unattenuated ray reads 90% of full scale. The noise is drawn afresh for every training batch (the paper's
"sensor readings are randomly simulated before each training iteration"). Every method sees the same input,
the log-transformed readings ``ŷ = −log(r / flat)`` (:func:`drct.physics.log_transform`).

Three reconstructions, 2D parallel beam, the projector ``A = ct.Projector(vg, pg)``:

* **FBP**: ``ct.torch.FBP(A)`` of ``ŷ`` (ramp; the Hann window too).
* **FBP + U-Net** (post-processing): ``g(FBP(ŷ))``, one U-Net.
* **end-to-end**: ``g2(FBP_c(g1(ŷ)))``: ``g1`` a U-Net on the sinogram with ``C`` output channels, each
  filtered and backprojected by drct (``ct.torch.FBP``: filter then ``A.T``, all channels of the batch in
  one launch), ``g2`` a U-Net on the ``C`` images. Trained jointly through drct's backprojection.

Both learned models use the same FBP inside (``--filter``, Hann by default: with the ramp, 300 steps left both
below the Hann FBP alone) and are residual: they start from that FBP and learn a correction.

The U-Nets follow the paper's design at a small size: down-sampling by a strided convolution and a residual block,
up-sampling by bilinear interpolation, concatenation with the skip, channel attention (squeeze-and-excitation),
a 1×1 convolution and a residual block; the image networks see a 4-channel positional embedding (x, y, radius,
the field-of-view disc). The post-processing U-Net's width is chosen to match the end-to-end model's parameter
count. Training: RAdam, MSE to the phantoms' voxel averages, linear warm-up then cosine decay. Evaluation on
held-out phantoms (fixed noise): PSNR (peak = the phantoms' maximum) and SSIM (scikit-image), parameters, and
inference time per image (median of 5 repeats after a first call). Writes ``end_to_end.png`` (examples and
training curves), ``.npz`` and ``.json`` to ``--out``.

Measured at the defaults (64², 64 views, 300 RAdam steps of 8, 256 training / 32 held-out phantoms; 2 CPU cores
shared, load 17; training 171 s end-to-end, 95 s post-processing)::

    method              parameters  PSNR (dB)  SSIM    inference (ms/image)
    FBP (ramp)                   0      27.33  0.606                    4.9
    FBP (Hann)                   0      31.81  0.843                    4.0
    FBP (Hann) + U-Net       70909      31.86  0.842                   16.5
    end-to-end               75497      32.85  0.847                   29.2

With ``--steps 1000`` (training 583 s + 228 s, load 8): FBP (Hann) + U-Net 34.20 dB / 0.869, end-to-end
38.55 dB / 0.960 (inference 12.0 and 16.0 ms/image); the paper's ordering, end-to-end ahead of post-processing
at matched parameters, holds at both lengths.

Run:  python examples/learned/end_to_end.py [--size 64] [--steps 300] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from common_paper import (
    RADIUS,
    body_pairs,
    fit,
    load,
    median_time,
    noisy_line_integrals,
    outputs,
    psnr,
    save,
    ssim,
    table,
)
from torch import nn
from torch.nn import functional as F

import drct as ct
import drct.torch as ctt

SCALE = 50.0
"""Images in 1/mm (soft tissue 0.02) times ``SCALE`` are of order one: the networks and the loss work in them."""


# ---- U-Nets ---------------------------------------------------------------------------------------------------
class Residual(nn.Module):
    """conv 3×3 → PReLU → conv 3×3, plus the input."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.PReLU(ch), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: each channel scaled by a gate computed from the channels' means."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        hidden = max(2, ch // 4)
        self.gate = nn.Sequential(nn.Linear(ch, hidden), nn.ReLU(), nn.Linear(hidden, ch), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean(dim=(-2, -1)))[..., None, None]


class UNet(nn.Module):
    """A small U-Net of ``depth`` down-sampling steps (widths ``width · 2^i``); ``positional`` adds the 4-channel
    positional embedding to the input."""

    def __init__(self, c_in: int, c_out: int, width: int, depth: int = 2, positional: bool = False) -> None:
        super().__init__()
        self.positional = positional
        widths = [width * 2**i for i in range(depth + 1)]
        self.stem = nn.Sequential(nn.Conv2d(c_in + 4 * positional, width, 3, padding=1), nn.PReLU(width))
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, stride=2, padding=1), nn.PReLU(b), Residual(b))
            for a, b in itertools.pairwise(widths)
        )
        self.up = nn.ModuleList(
            nn.Sequential(ChannelAttention(a + b), nn.Conv2d(a + b, a, 1), Residual(a))
            for a, b in itertools.pairwise(widths)
        )
        self.head = nn.Conv2d(width, c_out, 1)

    @staticmethod
    def embedding(x: torch.Tensor) -> torch.Tensor:
        """(x, y, radius, disc) on [-1, 1]², broadcast over the batch."""
        h, w = x.shape[-2:]
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        r = torch.sqrt(xx**2 + yy**2)
        return torch.stack([xx, yy, r, (r <= 1).float()]).expand(x.shape[0], 4, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(torch.cat([x, self.embedding(x)], dim=1) if self.positional else x)
        skips = []
        for block in self.down:
            skips.append(h)
            h = block(h)
        for block, skip in zip(reversed(self.up), reversed(skips), strict=True):
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = block(torch.cat([skip, h], dim=1))
        return self.head(h)


def count(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class EndToEnd(nn.Module):
    """``g2(FBP_c(g1(ŷ)))``: ``g1`` maps the sinogram to ``channels`` sinograms (residually: each channel starts
    as ``ŷ``), drct filters and backprojects each, ``g2`` maps the images to the reconstruction (residually:
    the mean of the channel images plus a correction)."""

    def __init__(self, A: ct.Projector, channels: int, width: int, filter: str = "hann") -> None:
        super().__init__()
        self.g1 = UNet(1, channels, width)
        self.fbp = ctt.FBP(A, filter=filter)
        self.g2 = UNet(channels, 1, width, positional=True)
        self.scale = SCALE

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        s = y[:, None]
        images = self.fbp(s + self.g1(s)) * self.scale  # (B, C, n, n): the whole batch in one launch
        return (images.mean(dim=1, keepdim=True) + self.g2(images))[:, 0] / self.scale


class PostProcessing(nn.Module):
    """``g(FBP(ŷ))`` with a residual U-Net ``g``."""

    def __init__(self, A: ct.Projector, width: int, filter: str = "hann") -> None:
        super().__init__()
        self.fbp = ctt.FBP(A, filter=filter)
        self.g = UNet(1, 1, width, positional=True)
        self.scale = SCALE

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        image = self.fbp(y)[:, None] * self.scale
        return (image + self.g(image))[:, 0] / self.scale


def matched_width(A: ct.Projector, target: int, filter: str) -> int:
    """The post-processing U-Net width whose parameter count is closest to ``target``."""
    return min(range(2, 65), key=lambda w: abs(count(PostProcessing(A, w, filter)) - target))


# ---- training -------------------------------------------------------------------------------------------------
def train(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace, name: str
) -> tuple[list[float], float]:
    """RAdam on the MSE, noise simulated afresh per batch; returns the losses and the training time."""
    rng = np.random.default_rng(args.seed + 1)
    opt = torch.optim.RAdam(model.parameters(), lr=args.lr)
    warm = max(1, args.steps // 10)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, args.steps - warm)))

    schedule = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    noise = (args.i0_min, args.i0_max, args.sigma, args.bits)

    def loss_of(pick: torch.Tensor) -> torch.Tensor:  # images in units of 0.02/mm: gradients far above Adam's eps
        return (SCALE * (model(noisy_line_integrals(y[pick], rng, *noise)) - x[pick])).square().mean()

    return fit(opt, loss_of, x.shape[0], args.steps, args.batch, f"train {name}", schedule)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", type=Path, default=Path("out/learned/end_to_end"))
    parser.add_argument("--size", type=int, default=64, help="image n² pixels over 200 mm")
    parser.add_argument("--views", type=int, default=64, help="parallel-beam views over π")
    parser.add_argument("--train", type=int, default=256, help="training phantoms")
    parser.add_argument("--test", type=int, default=32, help="held-out phantoms")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps per model")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=int, default=8, help="U-Net width of g1 and g2")
    parser.add_argument("--channels", type=int, default=4, help="sinogram channels g1 hands to g2")
    parser.add_argument("--filter", default="hann", help="the FBP filter inside both learned models")
    parser.add_argument("--i0-min", type=float, default=1e3, help="fewest photons per unattenuated ray")
    parser.add_argument("--i0-max", type=float, default=1e4, help="most photons per unattenuated ray")
    parser.add_argument("--sigma", type=float, default=5.0, help="electronic noise σ (photons)")
    parser.add_argument("--bits", type=int, default=8, help="detector bit depth b")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="CI size: 32², 32 views, 20 steps")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 suits loaded machines)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.size, args.views, args.train, args.test, args.steps, args.batch = 32, 32, 16, 4, 20, 8
    png, npz, js = outputs(args.out, ["end_to_end.png", "end_to_end.npz", "end_to_end.json"], args.force)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    n, h = args.size, 2 * RADIUS / args.size
    vg = ct.VolumeGeometry((n, n), voxel_size=h)
    pg = ct.parallel(np.linspace(0, np.pi, args.views, endpoint=False), int(1.5 * n), h)
    A = ct.Projector(vg, pg, basis="voxel")
    x_train, y_train = body_pairs(args.train, rng, vg, pg, "training phantoms")
    x_test, y_test = body_pairs(args.test, rng, vg, pg, "held-out phantoms")
    noise = (args.i0_min, args.i0_max, args.sigma, args.bits)
    noisy_test = noisy_line_integrals(y_test, np.random.default_rng(args.seed + 2), *noise)

    e2e = EndToEnd(A, args.channels, args.width, args.filter)
    post = PostProcessing(A, matched_width(A, count(e2e), args.filter), args.filter)
    loss_e2e, time_e2e = train(e2e, x_train, y_train, args, "end-to-end g2(FBP(g1(y)))")
    loss_post, time_post = train(post, x_train, y_train, args, "FBP + U-Net")

    models: dict[str, Any] = {
        "FBP (ramp)": ctt.FBP(A),
        "FBP (Hann)": ctt.FBP(A, filter="hann"),
        "FBP + U-Net": post.eval(),
        "end-to-end": e2e.eval(),
    }
    peak = float(x_test.max())
    rows, images, results = [], {}, {"load": load(), "train_seconds": {"end-to-end": time_e2e, "post": time_post}}
    with torch.no_grad():
        for name, model in models.items():
            image = model(noisy_test)
            seconds = median_time(lambda model=model: model(noisy_test)) / args.test
            score = {
                "params": count(model),
                "psnr": psnr(image, x_test, peak),
                "ssim": ssim(image, x_test, peak),
                "ms_per_image": 1e3 * seconds,
            }
            results[name] = score
            images[name] = image
            rows.append([name, score["params"], score["psnr"], score["ssim"], score["ms_per_image"]])
    results.update(loss_first={"end-to-end": loss_e2e[0], "post": loss_post[0]})
    tail = max(1, args.steps // 10)
    results.update(
        loss_last={"end-to-end": float(np.mean(loss_e2e[-tail:])), "post": float(np.mean(loss_post[-tail:]))}
    )
    print(
        f"{n}² parallel beam, {args.views} views, i0 {args.i0_min:g}-{args.i0_max:g}, σ {args.sigma:g}, "
        f"{args.bits} bits; {args.train} training / {args.test} held-out phantoms, {args.steps} steps; load {load()}"
    )
    print(table(["method", "parameters", "PSNR (dB)", "SSIM", "inference (ms/image)"], rows))

    fig, axes = plt.subplots(2, 6, figsize=(24, 8))
    for row in range(2):
        k = row * (args.test // 2)
        shown = [("truth", x_test[k])] + [
            (f"{m}: {psnr(v[k : k + 1], x_test[k : k + 1], peak):.1f} dB", v[k]) for m, v in images.items()
        ]
        for ax, (title, image) in zip(axes[row, :5], shown, strict=True):
            ax.imshow(image.numpy(), cmap="gray", origin="lower", vmin=0.0, vmax=0.035)
            ax.set(title=title, xticks=[], yticks=[])
    axes[0, 5].semilogy(loss_e2e, label="end-to-end")
    axes[0, 5].semilogy(loss_post, label="FBP + U-Net")
    axes[0, 5].set(title=f"training MSE per batch (images × {SCALE:g} mm)", xlabel="step")
    axes[0, 5].legend()
    axes[1, 5].imshow(noisy_test[0].numpy(), cmap="gray", aspect="auto")
    axes[1, 5].set(title="input: log-transformed readings", xlabel="detector column", ylabel="view")
    fig.suptitle(
        f"end-to-end vs post-processing vs FBP, {n}² parallel beam, {args.views} views, {args.bits}-bit readings"
    )
    fig.tight_layout()
    arrays = {f"recon_{i}": v.numpy() for i, v in enumerate(images.values())}
    arrays.update(truth=x_test.numpy(), loss_e2e=loss_e2e, loss_post=loss_post)
    save(png, fig, npz, arrays, js, results)


if __name__ == "__main__":
    main()
