"""Cost of the torch bridge: ``ct.torch.project`` / ``backproject`` / a gradient against the Dr.Jit operator.

Workload: 2D parallel beam, 256² volume, 256 views x 367 bins, a batch of 32 (one launch), float32. For each
operation the torch path (torch tensor in -> drct -> torch tensor out, with autograd bookkeeping) and the same
operator called on Dr.Jit tensors directly are timed alternately (so that load from other processes hits both
alike); the table gives medians and the overhead ``torch / direct - 1``.

* ``A x``: ``ct.torch.project(x, A)`` vs ``A.forward_tensor(x)``.
* ``A.T y``: ``ct.torch.backproject(y, A)`` vs ``A.adjoint_tensor(y)``.
* ``grad``: forward + backward of ``sum(w * A x)`` w.r.t. ``x`` in torch vs ``A.forward_tensor`` +
  ``A.adjoint_tensor(w)`` in Dr.Jit (what the gradient costs by hand).

On a loaded machine the big rows are noisy (seconds per call, other processes competing), so a last row
measures the bridge's fixed cost per call directly: ``A x`` on a tiny problem (8², 4 views), mean over many
calls, in µs; relative to the workload above it bounds the overhead independently of the noise.

Run:  python benchmarks/bench_torch_bridge.py [--batch 32] [--repeat 5] [--basis linear]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import drjit as dr
import numpy as np
import torch

import drct as ct
import drct.torch as ctt
from drct.cli.info import info as machine_info


def _seconds(fn: Callable[[], Any]) -> float:
    dr.sync_thread()
    start = time.perf_counter()
    fn()
    dr.sync_thread()
    return time.perf_counter() - start


def compare(direct: Callable[[], Any], bridged: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Medians (direct, bridged) over ``repeat`` alternating runs, after one warm-up call of each."""
    _seconds(direct), _seconds(bridged)
    a, b = [], []
    for _ in range(repeat):
        a.append(_seconds(direct))
        b.append(_seconds(bridged))
    return statistics.median(a), statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--basis", default="linear")
    args = parser.parse_args()

    vg = ct.VolumeGeometry((256, 256))
    pg = ct.parallel(np.linspace(0, np.pi, 256, endpoint=False), 367)
    A = ct.Projector(vg, pg, basis=args.basis, backend="llvm")
    t = A.types
    rng = np.random.default_rng(0)
    x_np = rng.uniform(size=(args.batch, *vg.shape)).astype(np.float32)
    w_np = rng.uniform(size=(args.batch, *pg.shape)).astype(np.float32)
    x_t, w_t = torch.from_numpy(x_np), torch.from_numpy(w_np)
    x_d, w_d = t.Tensor(x_np), t.Tensor(w_np)
    dr.eval(x_d, w_d)

    def torch_grad() -> None:
        x = x_t.clone().requires_grad_()
        (ctt.project(x, A) * w_t).sum().backward()

    def direct_grad() -> None:
        dr.eval(A.forward_tensor(x_d))
        dr.eval(A.adjoint_tensor(w_d))

    rows = [
        ("A x", lambda: A.forward_tensor(x_d), lambda: ctt.project(x_t, A)),
        ("A.T y", lambda: A.adjoint_tensor(w_d), lambda: ctt.backproject(w_t, A)),
        ("grad", direct_grad, torch_grad),
    ]
    info = machine_info()
    print(f"# drct {info['drct']}, drjit {info['drjit']}, torch {torch.__version__}, {info['device']}")
    print(
        f"2D parallel {vg.shape[0]}² x {pg.num_views} views x {pg.det_shape[0]}, batch {args.batch}, "
        f"basis {args.basis}, float32, medians of {args.repeat}"
    )
    print("| op | Dr.Jit direct (ms) | torch -> drct -> torch (ms) | overhead |")
    print("|---|---|---|---|")
    medians = {}
    for name, direct, bridged in rows:
        a, b = compare(direct, bridged, args.repeat)
        medians[name] = a
        print(f"| {name} | {1e3 * a:.1f} | {1e3 * b:.1f} | {100 * (b / a - 1):+.1f}% |", flush=True)

    tiny = ct.Projector(ct.VolumeGeometry((8, 8)), ct.parallel(np.linspace(0, np.pi, 4, endpoint=False), 12))
    xs_t = torch.rand(8, 8)
    xs_d = t.Tensor(xs_t.numpy().copy())
    calls = 300

    def many(fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(calls):
                fn()

        return run

    a, b = compare(many(lambda: tiny.forward_tensor(xs_d)), many(lambda: ctt.project(xs_t, tiny)), args.repeat)
    fixed = (b - a) / calls
    print(
        f"| A x, 8² x 4 views (per call) | {1e6 * a / calls:.0f} µs | {1e6 * b / calls:.0f} µs | "
        f"{1e6 * fixed:+.0f} µs per call = {100 * fixed / medians['A x']:+.3f}% of the batch-32 A x |"
    )


if __name__ == "__main__":
    main()
