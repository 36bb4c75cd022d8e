"""Memory of backpropagating through unrolled EM iterations on the SPECT operator (the unrolled-EM paper's point).

Run:  python benchmarks/bench_em_memory.py [--shape 80 128 128] [--views 128] [--iterations 10]
          [--psf-method incremental|direct]

``iterations`` EM steps ``x <- x / s · Aᵀ(y / A x)`` are unrolled in torch (``A``, ``Aᵀ``: drct's SPECT operator with
attenuation and the LEHR depth-dependent response, torch autograd through Dr.Jit), then ``loss = |x_K - f|²`` is
backpropagated to the data ``y`` (a tensor that requires grad). What is counted:

* **saved for backward**: the bytes of the tensors torch keeps for the backward pass while the unrolled graph is
  built (``torch.autograd.graph.saved_tensors_hooks``; each storage once; ``y`` and ``1/s``, shared by all
  iterations, apart), per iteration, against ``activity + projections`` (float32) of one iteration — the budget
  asked for is 3x. drct's bridge keeps only each operator call's input and re-runs the call under Dr.Jit's AD
  in the backward pass (:mod:`drct.autodiff`), so nothing of the ray program is kept between the passes.
* **resident memory** (VmRSS / VmHWM from /proc, the whole process: torch, Dr.Jit, numpy): growth while the
  graph is built (what the iterations keep, per iteration), and the peak over the backward pass above the
  resident memory before it (the transient working memory of the operator calls, one at a time, on top of the
  graph).

Measured (2026-12-06, 2 CPU cores shared with other jobs, load average 10 -> 16 during the run), command
``PYTHONPATH=. python benchmarks/bench_em_memory.py --views 32``: 80 x 128 x 128 voxels of 4.8 mm, 32 views,
μ-map and LEHR response (incremental), 10 iterations; activity + projections of one iteration 6.2 MB:

    | what | MB | per iteration | x (activity + projections) |
    |---|---|---|---|
    | torch saved for backward, 10 iterations | 181.2 | 18.1 | 2.90 |
    | resident growth while the graph is built | 187.3 | 18.7 | 3.00 |
    | backward peak above the graph's resident memory | 27.1 | one call at a time | - |
    | operator working memory, one call (drct's estimate) | 20.0 | - | - |

(forward 139 s, backward 353 s at that load). What an iteration keeps is torch's own EM step: ``x``, ``x / s``,
``Aᵀ(...)`` (three activity-sized tensors) and ``A x``, its clamp and the ratio (three projection-sized ones):
with 128 views that is 3.0x too, nothing of it from the projector.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import load

import drct as ct
from drct.emission import Collimator, SPECTProjector


def status_mb(key: str) -> float:
    """``VmRSS`` or ``VmHWM`` of this process in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> bool:
    """Reset VmHWM to the current resident memory (Linux: ``clear_refs`` 5); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(80, 128, 128), help="volume (nz, ny, nx)")
    parser.add_argument("--views", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--psf-method", default="incremental", choices=("incremental", "direct"))
    args = parser.parse_args()
    nz, ny, nx = args.shape
    vg = ct.VolumeGeometry((nz, ny, nx), voxel_size=4.8)
    radius = 0.5 * 4.8 * max(nx, ny) * 1.05
    g = ct.spect(np.linspace(0, 2 * np.pi, args.views, endpoint=False), radius, (nz, nx), 4.8)
    zz, yy, xx = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in vg.shape), indexing="ij")
    body = (xx / (0.45 * nx)) ** 2 + (yy / (0.35 * ny)) ** 2 <= 1
    lesion = (xx - 0.15 * nx) ** 2 + (yy + 0.1 * ny) ** 2 + zz**2 <= (0.06 * nx) ** 2
    f = (body * 1.0 + lesion * 4.0).astype(np.float32)
    mu = (0.0154 * body).astype(np.float32)
    A = SPECTProjector(vg, g, mu=mu, collimator=Collimator.lehr(), psf_method=args.psf_method)
    print(f"{A!r}\n{args.iterations} unrolled EM iterations; load: {load()}")
    truth = torch.tensor(f)
    counts = torch.tensor(A(f))
    sens = A.T(np.ones(A.range_shape, np.float32))
    inv_sens = torch.tensor(np.where(sens > 1e-6 * sens.max(), 1.0 / np.maximum(sens, 1e-30), 0.0).astype(np.float32))
    y = counts.clone().requires_grad_(True)
    x0 = torch.tensor(body.astype(np.float32))  # EM keeps zeros at zero: the body is the support
    A.T(A(x0))  # compile the kernels and cache the attenuation before measuring
    per_iteration_data = (vg.size + int(np.prod(A.range_shape))) * 4

    saved: dict[tuple[int, int], int] = {}
    shared = {t.untyped_storage().data_ptr() for t in (y, inv_sens)}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.untyped_storage().data_ptr() not in shared:
            saved[(t.untyped_storage().data_ptr(), t.numel())] = t.numel() * t.element_size()
        return t

    before = status_mb("VmRSS")
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        x = x0
        for _ in range(args.iterations):
            x = x * inv_sens * A.T(y / torch.clamp(A(x), min=1e-6))
        loss = torch.sum((x - truth) ** 2)
    forward_s = time.perf_counter() - start
    graph = status_mb("VmRSS")
    exact_peak = reset_peak()
    start = time.perf_counter()
    loss.backward()
    backward_s = time.perf_counter() - start
    peak = status_mb("VmHWM")
    assert y.grad is not None and bool(torch.isfinite(y.grad).all())
    saved_per_it = sum(saved.values()) / args.iterations
    mb = 2**20
    print(f"activity + projections of one iteration: {per_iteration_data / mb:.1f} MB (float32)")
    print("| what | MB | per iteration | x (activity + projections) |")
    print("|---|---|---|---|")
    print(
        f"| torch saved for backward, {args.iterations} iterations | {sum(saved.values()) / mb:.1f} | "
        f"{saved_per_it / mb:.1f} | {saved_per_it / per_iteration_data:.2f} |"
    )
    grown = graph - before
    print(
        f"| resident growth while the graph is built | {grown:.1f} | {grown / args.iterations:.1f} | "
        f"{grown * mb / args.iterations / per_iteration_data:.2f} |"
    )
    over = peak - graph
    label = "peak" if exact_peak else "peak (VmHWM not reset: whole-run peak)"
    print(f"| backward {label} above the graph's resident memory | {over:.1f} | one call at a time | - |")
    print(f"| operator working memory, one call (drct's estimate) | {A._engine.bytes_per_call() / mb:.1f} | - | - |")
    print(f"forward {forward_s:.1f} s, backward {backward_s:.1f} s; load: {load()}")


if __name__ == "__main__":
    main()
