"""The adjoint, the volume+pose gradient and the pose gradient as multiples of the forward projection, in CPU seconds.

CPU seconds of this process (user + system: median of ``--repeat`` calls after a first one) stay comparable on a
shared, loaded machine, where wall-clock GVU/s do not; the ratios are what the speed issue is about (an adjoint
≤ 1.3x and a gradient ≤ 2x the forward). ``--tree`` imports drct from another checkout, so that an older commit
is measured by the same script::

    git worktree add /tmp/drct-base <commit>
    python benchmarks/bench_adjoint_ratio.py --tree /tmp/drct-base
    python benchmarks/bench_adjoint_ratio.py

``--torch`` adds one torch training step (``ct.torch.project`` forward and ``backward`` of a squared error, with
gradients to the volume and a detector shift), also as a multiple of the forward.

Run:  python benchmarks/bench_adjoint_ratio.py [--bases voxel,linear,bspline2,bspline3] [--repeat 5] [--tree DIR]
                                              [--torch]
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bases", default="voxel,linear,bspline2,bspline3")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tree", help="import drct from this checkout instead of the installed one")
    parser.add_argument("--torch", action="store_true", help="also a torch training step (needs torch)")
    args = parser.parse_args()
    if args.tree:
        sys.path.insert(0, args.tree)
    import numpy as np

    import drct as ct
    from drct.backend import drjit_module

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import cone_workload, cpu_seconds, parallel2d_workload, pose_gradient

    mod = drjit_module()

    workloads = {"cone 40³ x 60 x 40²": cone_workload(40, 60), "parallel2d 256² x 256 x 367": parallel2d_workload()}
    print(f"drct from {ct.__file__}")
    extra = " torch step (volume + shift) |" if args.torch else ""
    print(f"| workload | basis | forward CPU s | adjoint | gradient (volume + pose) | gradient (pose) |{extra}")
    print("|---|---|---|---|---|---|" + ("---|" if args.torch else ""))
    rng = np.random.default_rng(0)
    for label, (vg, pg) in workloads.items():
        for basis in args.bases.split(","):
            x = mod.TensorXf(rng.random(vg.shape, dtype=np.float32))
            y = mod.TensorXf(rng.random(pg.shape, dtype=np.float32))
            A = ct.Projector(vg, pg, basis=basis)

            forward = cpu_seconds(lambda A=A, x=x: A.forward_tensor(x), args.repeat)
            adjoint = cpu_seconds(lambda A=A, y=y: A.adjoint_tensor(y), args.repeat)
            few = max(1, args.repeat // 2 + 1)
            grad = cpu_seconds(lambda vg=vg, pg=pg, A=A, x=x, y=y: pose_gradient(vg, pg, A.basis, x, y), few)
            pose = cpu_seconds(
                lambda vg=vg, pg=pg, A=A, x=x, y=y: pose_gradient(vg, pg, A.basis, x, y, volume=False), few
            )
            step = ""
            if args.torch:
                step = f" {cpu_seconds(lambda A=A, x=x, y=y: torch_step(A, x, y), few) / forward:.2f}x |"
            print(
                f"| {label} | {basis} | {forward:.4f} | {adjoint / forward:.2f}x | {grad / forward:.2f}x "
                f"| {pose / forward:.2f}x |{step}",
                flush=True,
            )


def torch_step(A: object, x: object, y: object) -> None:
    """Forward and backward of ``|A(x; det_shift_u) - y|²`` in torch, gradients to ``x`` and the shift."""
    import torch

    import drct as ct
    import drct.torch  # registers ct.torch

    volume = x.torch().clone().requires_grad_(True)  # type: ignore[attr-defined]
    shift = torch.zeros((), requires_grad=True)
    out = ct.torch.project(volume, A, det_shift_u=shift)  # type: ignore[arg-type]
    ((out - y.torch()) ** 2).sum().backward()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
