"""Shared parts of the seed-paper examples (``end_to_end.py``, ``fdk_weights.py``, ``filter_learning.py``).

Training data are :func:`drct.phantoms.random_body` phantoms (CT-like: a body ellipse of soft tissue, lungs,
bones, low-contrast lesions; 1/mm) rasterised as voxel averages, with their exact analytic projections
(:func:`drct.phantoms.project_ellipsoids`), so no inverse crime: the data are not made by the operator that
reconstructs them. Quality is PSNR and SSIM against those voxel averages (scikit-image, the ``learn-examples``
extra), outputs are written atomically and kept unless ``--force``.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import drct as ct
from drct import physics
from drct.io import refuse_overwrite, write_atomically, write_json

RADIUS = 100.0
"""Radius (mm) of the disc or sphere the phantoms lie in; the image grids span ``2 * RADIUS``."""


def outputs(out: Path, names: Sequence[str], force: bool) -> list[Path]:
    """The output paths ``out / name``; exits with a clear message when one exists and not ``force``."""
    paths = [out / name for name in names]
    try:
        refuse_overwrite(paths, force)
    except FileExistsError as err:
        raise SystemExit(str(err)) from None
    return paths


def body_pairs(
    n: int, rng: np.random.Generator, vg: ct.VolumeGeometry, pg: ct.ProjectionGeometry, desc: str = "phantoms"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random bodies (voxel averages on ``vg``, float32) and their exact line integrals on ``pg``."""
    xs, ys = [], []
    for _ in tqdm(range(n), desc=desc, leave=False):
        items = ct.phantoms.random_body(rng, RADIUS, ndim=vg.ndim)
        xs.append(ct.phantoms.rasterize(items, vg, supersample=2))
        ys.append(ct.phantoms.project_ellipsoids(items, pg))
    return torch.tensor(np.array(xs)), torch.tensor(np.array(ys), dtype=torch.float32)


def noisy_line_integrals(
    y: torch.Tensor, rng: np.random.Generator, i0_min: float, i0_max: float, sigma: float, bits: int
) -> torch.Tensor:
    """The end-to-end paper's readings of each sinogram of line integrals ``y``, log-transformed:
    ``r = clamp(round((Poisson(i0 e^{-y}) + Normal(0, σ²)) / k), 0, 2^b − 1)`` by :mod:`drct.physics`, with ``i0``
    log-uniform in ``[i0_min, i0_max]`` per sample and ``k`` such that an unattenuated ray reads 90% of full
    scale; returns ``−log(r / flat)`` (:func:`drct.physics.log_transform`)."""
    out = []
    full_scale = (1 << bits) - 1
    for yi in y.numpy():
        i0 = float(np.exp(rng.uniform(np.log(i0_min), np.log(i0_max))))
        det = physics.Detector(i0=i0, gain=i0 / (0.9 * full_scale), sigma=sigma, bits=bits)
        readings = physics.simulate_counts(yi, None, det, seed=rng)
        out.append(physics.log_transform(readings, flat=physics.flat_field(det)))
    return torch.tensor(np.array(out), dtype=torch.float32)


def fit(
    opt: torch.optim.Optimizer,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    steps: int,
    batch: int,
    desc: str,
    schedule: Any = None,
) -> tuple[list[float], float]:
    """``steps`` optimiser steps on shuffled mini-batches of ``n`` samples (``loss_of(indices)`` gives the
    batch loss); returns the losses and the wall time in seconds."""
    losses: list[float] = []
    begin = time.perf_counter()
    with tqdm(total=steps, desc=desc) as bar:
        while len(losses) < steps:
            for pick in torch.randperm(n).split(batch):
                opt.zero_grad()
                loss = loss_of(pick)
                loss.backward()
                opt.step()
                if schedule is not None:
                    schedule.step()
                losses.append(float(loss.detach()))
                bar.update()
                bar.set_postfix(mse=f"{losses[-1]:.3g}")
                if len(losses) == steps:
                    break
    return losses, time.perf_counter() - begin


def psnr(x: torch.Tensor, ref: torch.Tensor, peak: float) -> float:
    """Mean over the batch of ``10 log10(peak² / MSE)`` (one ``peak`` for all: the phantoms' value range)."""
    mse = (x - ref).square().flatten(1).mean(dim=1)
    return float((10 * torch.log10(peak**2 / mse)).mean())


def ssim(x: torch.Tensor, ref: torch.Tensor, peak: float) -> float:
    """Mean SSIM over the batch (scikit-image, 2D images or 3D volumes, ``data_range = peak``)."""
    try:
        from skimage.metrics import structural_similarity
    except ImportError:
        raise SystemExit("SSIM needs scikit-image: pip install 'drct[learn-examples]'") from None
    pairs = zip(x.detach().numpy(), ref.detach().numpy(), strict=True)
    return float(np.mean([structural_similarity(a, b, data_range=peak) for a, b in pairs]))


def relative_error(x: torch.Tensor, ref: torch.Tensor) -> float:
    """``‖x − ref‖ / ‖ref‖`` over the whole batch."""
    return float((x - ref).norm() / ref.norm())


def load() -> str:
    """The machine's 1-minute load average (timings on shared machines are noisy: report it beside them)."""
    return f"{os.getloadavg()[0]:.1f}"


def median_time(fn: Callable[[], Any], repeats: int = 5) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after a first (warm-up) call, seconds."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (floats with 4 significant digits)."""

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def save(png: Path, fig: Any, npz: Path, arrays: dict[str, Any], json_path: Path, results: dict[str, Any]) -> None:
    """Write the figure, the arrays and the results atomically."""

    def save_npz(tmp: str) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
        Path(tmp).write_bytes(buffer.getvalue())

    png.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(png, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    write_atomically(npz, save_npz)
    write_json(json_path, results)
    print(f"wrote {png}, {npz} and {json_path}")
