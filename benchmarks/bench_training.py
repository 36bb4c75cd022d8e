"""Training throughput with the CT operator inside a network: drct vs deepinv's own ``Tomography``, same run.

Workload (issue 17): a batch of 32 images of 256², 2D parallel beam, float32. One training step of a small
network that uses the operator twice,

    out = g2(Aᵀ g1(A x)),   g1, g2: conv(1→8, 3×3) → PReLU → conv(8→1, 3×3) with a residual connection,

i.e. the forward pass runs ``A`` and ``A.T`` and the backward pass runs them again (``Aᵀ`` and ``A``), then an
MSE loss and an SGD step. Samples/s = batch / median step time over ``--repeat`` steps (default 5), the first
step timed apart (it compiles drct's kernels / builds deepinv's grids). drct and deepinv steps alternate, so
load from other processes hits both alike; the CPU time of the process per step (``time.process_time``, all
threads) is printed beside the wall time: on a shared, oversubscribed machine it is the steadier measure.

Equal geometry: deepinv's ``Tomography(angles=V, img_width=256, circle=False)`` samples ``ceil(√2·256) = 363``
detector bins of one pixel over ``V`` angles in [0°, 180°) (``--views``, default 90) with ``grid_sample``
(bilinear); drct's operator has the same scan (:func:`drct.deepinv.deepinv_geometry`: ``ct.parallel(-θ, 363,
1.0)``, the object moved by (−½, −½) pixel as deepinv turns about its padded grid's centre). The script prints the
relative difference of the two sinograms of a Shepp–Logan phantom (about 0.4% with drct's ``linear`` basis;
its layout is ``(views, bins)``, deepinv's ``(bins, views)``). The rows:

* ``drct <basis>``: :class:`drct.deepinv.Tomography` (``A``/``A_adjoint`` = drct's exact pair);
* ``deepinv (adjoint by autograd)``: deepinv's default, ``adjoint_via_backprop=True`` (the exact adjoint of
  its ``grid_sample`` Radon);
* ``deepinv (IRadon adjoint)`` (``--iradon``): ``adjoint_via_backprop=False`` (its unfiltered inverse-Radon
  backprojection, which is not the exact adjoint).

Run:  python benchmarks/bench_training.py [--batch 32] [--size 256] [--views 90] [--repeat 5] [--device cpu]
      [--bases linear,voxel] [--iradon] [--threads 1]
(``--device cuda`` runs both on a GPU: drct's CUDA backend, deepinv on torch's CUDA device.)
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import drjit as dr
import torch
from _common import peak_rss_mb
from torch import nn
from tqdm import tqdm

import drct as ct
import drct.deepinv as ctd


class Block(nn.Module):
    """conv(1→8) → PReLU → conv(8→1), residual."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.PReLU(), nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return v + self.body(v)


class Net(nn.Module):
    """``g2(Aᵀ g1(A x))`` for a deepinv physics (drct's or deepinv's)."""

    def __init__(self, physics: Any, scale: float) -> None:
        super().__init__()
        self.physics, self.scale = physics, scale
        self.g1, self.g2 = Block(), Block()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g2(self.physics.A_adjoint(self.g1(self.physics.A(x))) * self.scale)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def step_fn(net: Net, x: torch.Tensor, target: torch.Tensor, device: str) -> Callable[[], tuple[float, float]]:
    """One training step (forward, backward, SGD update) of ``net``; returns its wall time and the CPU time of
    the process (all threads) in seconds."""
    opt = torch.optim.SGD(net.parameters(), lr=1e-6)

    def step() -> tuple[float, float]:
        _sync(device)
        start, cpu = time.perf_counter(), time.process_time()
        opt.zero_grad()
        loss = (net(x) - target).square().mean()
        loss.backward()
        opt.step()
        _sync(device)
        return time.perf_counter() - start, time.process_time() - cpu

    return step


def drct_operator(size: int, views: int, basis: str, backend: str) -> ct.Projector:
    """drct's operator with deepinv's geometry (see the module docstring)."""
    vg, pg = ctd.deepinv_geometry(size, views)
    return ct.Projector(vg, pg, basis=basis, backend=backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--views", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--bases", default="linear", help="drct bases to time, comma-separated")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--iradon", action="store_true", help="add deepinv's IRadon-adjoint row")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of torch and Dr.Jit (0: their default)")
    args = parser.parse_args()
    import deepinv as dinv

    if args.threads:  # on a shared, oversubscribed machine spinning thread pools cost more than they bring
        torch.set_num_threads(args.threads)
        dr.set_thread_count(args.threads)

    torch.manual_seed(0)
    device, backend = args.device, ("cuda" if args.device == "cuda" else "llvm")
    n = args.size
    phantom = torch.as_tensor(ct.phantoms.shepp_logan(ct.VolumeGeometry((n, n))), dtype=torch.float32, device=device)
    x = phantom.expand(args.batch, 1, n, n).contiguous() * (0.5 + torch.rand(args.batch, 1, 1, 1, device=device))
    target = x.flip(-1)  # anything: the step's cost does not depend on it

    candidates: dict[str, Any] = {}
    for basis in args.bases.split(","):
        candidates[f"drct {basis}"] = ctd.Tomography(drct_operator(n, args.views, basis, backend))
    kw = {"angles": args.views, "img_width": n, "circle": False, "normalize": False, "device": device}
    candidates["deepinv (adjoint by autograd)"] = dinv.physics.Tomography(adjoint_via_backprop=True, **kw)
    if args.iradon:
        candidates["deepinv (IRadon adjoint)"] = dinv.physics.Tomography(adjoint_via_backprop=False, **kw)

    with torch.no_grad():  # equal geometry: the two sinograms of one phantom
        ref = candidates["deepinv (adjoint by autograd)"].A(phantom[None, None])[0, 0].T
        agreement = {
            name: float((p.A(phantom[None, None])[0, 0] - ref).norm() / ref.norm())
            for name, p in candidates.items()
            if name.startswith("drct")
        }

    # each network's output scale ~ the image's: Aᵀ A sums ~ views · size
    steps = {
        name: step_fn(Net(p, 1.0 / (args.views * n)).to(device), x, target, device) for name, p in candidates.items()
    }
    first = {name: step()[0] for name, step in tqdm(steps.items(), desc="first steps")}
    times: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for _ in tqdm(range(args.repeat), desc="timed rounds"):
        for name, step in steps.items():
            wall, used = step()
            times[name].append(wall)
            cpu[name].append(used)

    load = os.getloadavg()
    print(
        f"\nbatch {args.batch}, {n}² parallel, {args.views} views x {math.ceil(math.sqrt(2) * n)} bins, float32, "
        f"device {device} ({torch.get_num_threads()} torch / {dr.thread_count()} Dr.Jit threads), "
        f"load average {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}, median of {args.repeat} steps after the first"
    )
    for name, err in agreement.items():
        print(f"  sinogram of {name} vs deepinv's: relative difference {err:.2%}")
    base = statistics.median(times["deepinv (adjoint by autograd)"])
    base_cpu = statistics.median(cpu["deepinv (adjoint by autograd)"])
    print(
        "\n| operator | first step (s) | step (s), median | samples/s | vs deepinv default | CPU s per step | "
        "samples per CPU-s | vs deepinv default (CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, ts in times.items():
        med, med_cpu = statistics.median(ts), statistics.median(cpu[name])
        print(
            f"| {name} | {first[name]:.2f} | {med:.3f} | {args.batch / med:.2f} | {base / med:.2f}x | "
            f"{med_cpu:.2f} | {args.batch / med_cpu:.2f} | {base_cpu / med_cpu:.2f}x |"
        )
    print(f"\npeak RSS of the process: {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
