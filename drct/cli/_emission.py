"""The emission (SPECT and PET) paths of ``drct simulate`` and ``drct reconstruct``.

``drct simulate`` on a scene with a ``[scanner]`` table (:mod:`drct.emission.scene`) writes into ``OUT``:
``counts.npy`` (Poisson counts, float32: SPECT ``(views, rows, cols)``, PET ``(views, planes, radial[, tof])``),
``expected.npy`` (their mean), ``activity.npy`` and ``mu.npy`` (the true activity and the attenuation map, 1/mm,
on the volume grid), ``spect.json`` or ``pet.json`` (the acquisition and the counts' sensitivity; it names
``mu.npy`` and, for PET with randoms, ``randoms.npy``: the expected randoms per bin), ``scene.toml`` (the scene as
read, overrides applied) and ``preview.png``.

``drct reconstruct OUT/counts.npy --geometry OUT/spect.json --method osem`` (or ``pet.json``) reconstructs the
activity with the attenuation map (and collimator response, SPECT) of the file and its randoms as the additive
term (PET); ``--scatter S.npy`` adds known scatter counts (e.g. :func:`drct.emission.tew_scatter`) to it.
``--method mlem|osem|bsrem``; ``bsrem`` takes ``--beta``, the weight of the relative-difference prior against the
Poisson log-likelihood of the counts.

Example:
    $ drct simulate scenes/emission/spect_torso.toml -o out/spect
    $ drct reconstruct out/spect/counts.npy --geometry out/spect/spect.json --method osem -o out/spect/osem.tif
    $ drct simulate scenes/emission/pet_iq.toml -o out/pet
    $ drct reconstruct out/pet/counts.npy --geometry out/pet/pet.json --method bsrem --beta 0.05 -o out/pet/b.tif
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

COMMON_OUTPUTS = ("counts.npy", "expected.npy", "activity.npy", "mu.npy", "scene.toml", "preview.png")
SIM_OUTPUTS = {"spect": (*COMMON_OUTPUTS, "spect.json"), "pet": (*COMMON_OUTPUTS, "pet.json", "randoms.npy")}
EMISSION_METHODS = ("mlem", "osem", "bsrem")
DEFAULT_ITERATIONS = {"mlem": 50, "osem": 10, "bsrem": 10}


def is_emission_file(path: str | Path) -> bool:
    """True for a ``spect.json`` or ``pet.json`` written by ``drct simulate``."""
    from ..emission.files import is_spect_file
    from ..pet.files import is_pet_file

    return is_spect_file(path) or is_pet_file(path)


def emission_volume(path: str | Path) -> Any:
    """The reconstruction grid (a :class:`drct.VolumeGeometry`) of a ``spect.json`` or ``pet.json``."""
    from ..emission.files import load_spect
    from ..pet.files import is_pet_file, load_pet

    return load_pet(path).volume if is_pet_file(path) else load_spect(path).volume


def simulate(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from tomli_w import dumps

    from ..emission.files import save_spect
    from ..emission.scene import load_emission_scene
    from ..io import check_output_folder, output_folder, write_atomically
    from ..memory import require_memory
    from ..pet.files import PetSetup, save_pet

    scene = load_emission_scene(
        args.scene, overrides=overrides, scale=args.scale, allow_outside=args.allow_outside_files
    )
    outputs = SIM_OUTPUTS[scene.kind]
    check_output_folder(args.output, args.force, outputs)
    require_memory(
        8 * 4 * (scene.volume.size + int(np.prod(scene.geometry.shape))), f"simulating emission scene {scene.name!r}"
    )
    sim = scene.simulate(seed=args.seed)
    with output_folder(args.output, args.force, outputs) as out:
        for name, value in (("counts", sim.counts), ("expected", sim.expected), ("activity", sim.activity)):
            write_atomically(out / f"{name}.npy", lambda tmp, value=value: np.save(tmp, value))
        if isinstance(scene.geometry, PetSetup):
            setup, vg = scene.geometry, scene.volume
            save_pet(out / "pet.json", setup, vg, sim.mu, sim.sensitivity, sim.randoms, "mu.npy", "randoms.npy")
        else:
            save_spect(
                out / "spect.json", scene.geometry, scene.volume, scene.collimator, sim.mu, sim.sensitivity, "mu.npy"
            )
        text = f"# {scene.name}, as read (scale {args.scale:g})\n" + dumps(scene.data)
        write_atomically(out / "scene.toml", lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        write_atomically(out / "preview.png", lambda tmp: _preview(tmp, sim, scene.name, scene.kind == "pet"))
    if not args.no_progress:
        print(
            f"{scene.name}: counts {sim.counts.shape}, {sim.counts.sum():.4g} in all (seed {sim.seed}) written to "
            f"{args.output}/",
            file=sys.stderr,
        )
    return 0


def _preview(path: str, sim: Any, title: str, pet: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = sim.counts
    z = sim.activity.shape[0] // 2
    if pet:  # (views, planes, radial[, tof])
        y = y.sum(axis=3) if y.ndim == 4 else y
        k = int(np.argmax(y.sum(axis=(0, 2))))
        data = [("counts, view 0 (planes x radial)", y[0]), (f"sinogram, plane {k}", y[:, k, :])]
    else:
        data = [
            ("counts, view 0", y[0]),
            (f"counts, view {y.shape[0] // 4}", y[y.shape[0] // 4]),
            ("sinogram (central row)", y[:, y.shape[1] // 2, :]),
        ]
    panels = [
        *data,
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
    """The activity from SPECT or PET counts (``args.projections``) and ``args.geometry`` (a ``spect.json`` or
    ``pet.json``)."""
    from .. import recon
    from ..emission.files import load_spect
    from ..errors import require_finite
    from ..io import read_array
    from ..pet.files import is_pet_file, load_pet

    if args.method not in EMISSION_METHODS:
        raise ValueError(
            f"emission data ({args.geometry}) are reconstructed with --method mlem, osem or bsrem, not {args.method}"
        )
    for flag, value in (("--nonneg", args.nonneg), ("--lam", args.lam), ("--flat", args.flat), ("--dark", args.dark)):
        if value:
            raise ValueError(f"{flag} does not apply to emission data")
    if is_pet_file(args.geometry):
        pet = load_pet(args.geometry)
        A, shape, scale, randoms = pet.projector(args.dtype), pet.setup.shape, pet.sensitivity, pet.randoms
        views = shape[0]
    else:
        acq = load_spect(args.geometry)
        A, shape, scale, randoms = acq.projector(args.dtype), acq.geometry.shape, acq.sensitivity, None
        views = acq.geometry.num_views
    counts = np.asarray(read_array(Path(args.projections), "counts"), dtype=np.float64)
    if counts.shape != shape:
        raise ValueError(f"{args.projections}: counts have shape {counts.shape}; {args.geometry} expects {shape}")
    require_finite(counts, f"{args.projections} (counts)")
    additive = None if randoms is None else np.asarray(randoms, dtype=np.float64)
    if args.scatter is not None:
        scatter = np.asarray(read_array(Path(args.scatter), "scatter estimate"), dtype=np.float64)
        if scatter.shape != counts.shape:
            raise ValueError(f"{args.scatter}: scatter has shape {scatter.shape}, the counts {counts.shape}")
        additive = scatter if additive is None else additive + scatter
    kwargs: dict[str, Any] = {
        "niter": DEFAULT_ITERATIONS[args.method] if args.iterations is None else args.iterations,
        "progress": not args.no_progress,
    }
    if args.method in ("osem", "bsrem"):
        kwargs["subsets"] = args.subsets if args.subsets is not None else _default_subsets(views)
    elif args.subsets is not None:
        raise ValueError(f"--subsets applies to osem and bsrem, not {args.method}")
    beta = getattr(args, "beta", None)
    if args.method == "bsrem":
        # EM runs on counts / sensitivity, whose log-likelihood is the counts' divided by the sensitivity: the
        # prior's weight is divided by it too, so that --beta weighs the prior against the counts' likelihood
        kwargs["beta"] = (1.0 if beta is None else beta) / scale
    elif beta is not None:
        raise ValueError(f"--beta applies to bsrem, not {args.method}")
    # counts ~ Poisson(sensitivity A f + s): EM on counts / sensitivity gives f in the scene's activity units
    try:
        rec = getattr(recon, args.method)(A, counts / scale, additive=_scaled(additive, scale), **kwargs)
    except ValueError as err:
        if "bsrem: every coefficient" not in str(err):
            raise
        given = 1.0 if beta is None else beta
        raise ValueError(f"--beta {given:g}: too large for BSREM's steps on these counts ({err})") from None
    return np.asarray(rec, dtype=np.float32)


def _scaled(additive: np.ndarray | None, scale: float) -> np.ndarray | None:
    return None if additive is None else additive / scale


def _default_subsets(views: int) -> int:
    """The largest divisor of ``views`` up to 8 (equal subsets)."""
    return max(d for d in range(1, min(8, views) + 1) if views % d == 0)
