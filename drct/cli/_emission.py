"""The emission (SPECT) paths of ``drct simulate`` and ``drct reconstruct``.

``drct simulate`` on a scene with a ``[scanner]`` table (:mod:`drct.emission.scene`) writes into ``OUT``:
``counts.npy`` (Poisson photopeak counts, float32, ``(views, rows, cols)``), ``expected.npy`` (their mean),
``activity.npy`` and ``mu.npy`` (the true activity and the attenuation map, 1/mm, on the volume grid),
``spect.json`` (views, grid, collimator and sensitivity; it names ``mu.npy``), ``scene.toml`` (the scene as
read, overrides applied) and ``preview.png``.

``drct reconstruct OUT/counts.npy --geometry OUT/spect.json --method osem`` reconstructs the activity with the
attenuation map and collimator response of ``spect.json``; ``--scatter S.npy`` adds known scatter counts (e.g.
:func:`drct.emission.tew_scatter`) as OSEM's additive term.

Example:
    $ drct simulate scenes/emission/spect_torso.toml -o out/spect
    $ drct reconstruct out/spect/counts.npy --geometry out/spect/spect.json --method osem -o out/spect/osem.tif
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

SIM_OUTPUTS = ("counts.npy", "expected.npy", "activity.npy", "mu.npy", "spect.json", "scene.toml", "preview.png")
EMISSION_METHODS = ("mlem", "osem")


def simulate(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from ..emission.files import save_spect
    from ..emission.scene import load_emission_scene
    from ..io import check_output_folder, output_folder, write_atomically
    from ..memory import require_memory
    from ..scene.tomlwrite import dumps

    scene = load_emission_scene(
        args.scene, overrides=overrides, scale=args.scale, allow_outside=args.allow_outside_files
    )
    check_output_folder(args.output, args.force, SIM_OUTPUTS)
    require_memory(
        8 * 4 * (scene.volume.size + int(np.prod(scene.geometry.shape))), f"simulating emission scene {scene.name!r}"
    )
    sim = scene.simulate(seed=args.seed)
    with output_folder(args.output, args.force, SIM_OUTPUTS) as out:
        for name, value in (("counts", sim.counts), ("expected", sim.expected), ("activity", sim.activity)):
            write_atomically(out / f"{name}.npy", lambda tmp, value=value: np.save(tmp, value))
        save_spect(
            out / "spect.json", scene.geometry, scene.volume, scene.collimator, sim.mu, sim.sensitivity, "mu.npy"
        )
        text = f"# {scene.name}, as read (scale {args.scale:g})\n" + dumps(scene.data)
        write_atomically(out / "scene.toml", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        write_atomically(out / "preview.png", lambda tmp: _preview(tmp, sim, scene.name))
    if not args.no_progress:
        print(
            f"{scene.name}: counts {sim.counts.shape}, {sim.counts.sum():.4g} in all (seed {sim.seed}) written to "
            f"{args.output}/",
            file=sys.stderr,
        )
    return 0


def _preview(path: str, sim: Any, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = sim.counts
    z = sim.activity.shape[0] // 2
    panels = [
        ("counts, view 0", y[0]),
        (f"counts, view {y.shape[0] // 4}", y[y.shape[0] // 4]),
        ("sinogram (central row)", y[:, y.shape[1] // 2, :]),
        (f"activity, slice {z}", sim.activity[z]),
        (f"μ (1/mm), slice {z}", sim.mu[z]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6), squeeze=False)
    for ax, (name, image) in zip(axes[0], panels, strict=True):
        shown = ax.imshow(image, cmap="gray", origin="lower", aspect="auto")
        ax.set_title(name)
        fig.colorbar(shown, ax=ax, shrink=0.7)
    fig.suptitle(f"{title} (seed {sim.seed})")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=80, format="png")
    finally:
        plt.close(fig)


def reconstruct(args: argparse.Namespace) -> np.ndarray:
    """The activity from SPECT counts (``args.projections``) and ``args.geometry`` (a ``spect.json``)."""
    from .. import recon
    from ..emission.files import load_spect
    from ..errors import require_finite
    from ..io import read_array

    if args.method not in EMISSION_METHODS:
        raise ValueError(
            f"SPECT data ({args.geometry}) are reconstructed with --method mlem or osem, not {args.method}"
        )
    for flag, value in (("--nonneg", args.nonneg), ("--lam", args.lam), ("--flat", args.flat), ("--dark", args.dark)):
        if value:
            raise ValueError(f"{flag} does not apply to SPECT data")
    acq = load_spect(args.geometry)
    counts = np.asarray(read_array(Path(args.projections), "counts"), dtype=np.float64)
    if counts.shape != acq.geometry.shape:
        raise ValueError(
            f"{args.projections}: counts have shape {counts.shape}; {args.geometry} expects {acq.geometry.shape}"
        )
    require_finite(counts, f"{args.projections} (counts)")
    additive = None
    if args.scatter is not None:
        additive = np.asarray(read_array(Path(args.scatter), "scatter estimate"), dtype=np.float64)
        if additive.shape != counts.shape:
            raise ValueError(f"{args.scatter}: scatter has shape {additive.shape}, the counts {counts.shape}")
    A = acq.projector(args.dtype)
    kwargs: dict[str, Any] = {
        "niter": args.iterations if args.iterations is not None else (10 if args.method == "osem" else 50),
        "progress": not args.no_progress,
        "additive": additive,
    }
    if args.method == "osem":
        kwargs["subsets"] = args.subsets if args.subsets is not None else _default_subsets(acq.geometry.num_views)
    elif args.subsets is not None:
        raise ValueError("--subsets applies to osem, not mlem")
    # counts ~ Poisson(sensitivity A f + s): EM on counts / sensitivity gives f in the scene's activity units
    scale = acq.sensitivity
    rec = getattr(recon, args.method)(A, counts / scale, **{**kwargs, "additive": _scaled(additive, scale)})
    return np.asarray(rec, dtype=np.float32)


def _scaled(additive: np.ndarray | None, scale: float) -> np.ndarray | None:
    return None if additive is None else additive / scale


def _default_subsets(views: int) -> int:
    """The largest divisor of ``views`` up to 8 (equal subsets)."""
    return max(d for d in range(1, min(8, views) + 1) if views % d == 0)
