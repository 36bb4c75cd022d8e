"""``drct simulate SCENE -o OUT``: simulate a scan from a TOML scene file or a bundled scene (by name).

Writes into ``OUT``: ``projections.npy`` and ``projections.tif`` (noisy projections after the log transform,
float32, ``(views, rows, cols)`` or ``(views, cols)``), ``line_integrals.npy`` (the clean ones),
``readings.npy``, ``flat.npy`` and ``dark.npy`` (raw detector readings and the flat and dark fields per
pixel, for noisy detectors: ``projections = -log((readings - dark) / (flat - dark))``), ``geometry.json``
(the exact geometry and volume grid, :func:`drct.load_geometry`), ``scene.toml`` (a copy of the scene) and
``preview.png`` (a few projections and a sinogram).

The folder is written as one unit: it is built in a temporary sibling ``.OUT.partial-*`` and renamed into place
at the end, so a reader never sees files of two runs side by side; a run that fails or is killed leaves an
existing ``OUT`` untouched. An existing non-empty ``OUT`` is replaced only with ``--force``, and only if it holds
nothing but the files of an earlier run. Data files named by the scene must lie in the scene's folder unless
``--allow-outside-files``.

Example:
    $ drct simulate scenes/shepp_logan_2d.toml -o out/shepp_logan_2d
    $ drct simulate shepp_logan_2d -o out/shepp_logan_2d  # the bundled scene, from any folder
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ._flags import add_output, add_progress, add_seed, add_threads

OUTPUTS = ("projections.npy", "projections.tif", "line_integrals.npy", "geometry.json", "scene.toml", "preview.png")
RAW = ("readings.npy", "flat.npy", "dark.npy")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "simulate",
        help="simulate a scan from a TOML scene file",
        description="Simulate projections, the exact geometry and a preview from a TOML scene file (see scenes/).",
    )
    parser.add_argument("scene", help="a scene file (.toml) or a bundled scene's name (e.g. shepp_logan_2d)")
    add_output(parser, "output folder")
    add_seed(parser, "noise seed (default 0)")
    parser.add_argument("--scale", type=float, default=1.0, help="reduce views/pixels by this factor, in (0, 1]")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a scene key (TOML value), e.g. --set geometry.det_shape=128 (repeatable)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing output folder (of an earlier run)")
    parser.add_argument(
        "--allow-outside-files",
        action="store_true",
        help="let the scene read data files outside its own folder (absolute paths, '..', symlinks leading out)",
    )
    add_threads(parser)
    add_progress(parser, old=("--quiet",))
    parser.set_defaults(func=run)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (VALUE in TOML syntax; bare words are strings) as a dict."""
    import tomllib

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        out[key.strip()] = value
    return out


BYTES_PER_RAY = 64  # estimate of the peak: float32 outputs and noise fields, and the kernels' ray set-up
MAX_RAYS = 2**32 - 1  # Dr.Jit indexes the rays of one launch with uint32


def check_size(scene: Any) -> None:
    """Refuse a scene with more rays than one simulation can index, or than the memory can hold, before
    anything is allocated (``--set geometry.det_count=1048576`` must not end in a segfault)."""
    from ..memory import require_memory

    pg = scene.nominal_geometry()
    rays = int(pg.num_rays)
    if rays > MAX_RAYS:
        raise ValueError(
            f"scene {scene.name!r}: {rays} rays (projections of shape {pg.shape}) exceed the {MAX_RAYS} rays one "
            "simulation can index (uint32); use fewer views or detector pixels"
        )
    require_memory(rays * BYTES_PER_RAY, f"simulating scene {scene.name!r} ({rays} rays, shape {pg.shape})")


def run(args: argparse.Namespace) -> int:
    from ..emission.scene import is_emission_scene
    from ..geometry.files import save_geometry
    from ..geometry.projection import ProjectionGeometry
    from ..io import check_output_folder, output_folder, write_atomically
    from ..scene import load_scene
    from ._emission import simulate as simulate_emission

    if is_emission_scene(args.scene):  # a [scanner] table: SPECT counts and the attenuation map
        return simulate_emission(args, parse_overrides(args.set))
    scene = load_scene(
        args.scene, overrides=parse_overrides(args.set), scale=args.scale, allow_outside=args.allow_outside_files
    )
    data_files = [p.name for obj in scene.objects for p in obj.files_to_write(Path("."))]
    expected = [*OUTPUTS, *RAW, "rays.npy", *data_files]  # what --force may replace: the files of an earlier run
    check_output_folder(args.output, args.force, expected)
    check_size(scene)
    sim = scene.simulate(seed=args.seed, progress=not args.no_progress)
    # the folder is built beside its destination and renamed into place at the end (drct.io.output_folder)
    with output_folder(args.output, args.force, expected) as out:
        np.save(out / "projections.npy", sim.projections)
        np.save(out / "line_integrals.npy", sim.line_integrals)
        if sim.readings is not None:
            pixels = sim.readings.shape[1:]
            np.save(out / "readings.npy", sim.readings)
            np.save(out / "flat.npy", _per_pixel(sim.flat, pixels))
            np.save(out / "dark.npy", _per_pixel(sim.dark, pixels))
        write_tiff(out / "projections.tif", sim.projections)
        if isinstance(sim.geometry, ProjectionGeometry):
            save_geometry(out / "geometry.json", sim.geometry, sim.volume, overwrite=True)
        else:  # a ray list: rows (origin, unit direction), the form ct.rays takes
            rows = sim.geometry.to_vectors()
            write_atomically(out / "rays.npy", lambda tmp: np.save(tmp, rows))
        scene.save(out / "scene.toml", overwrite=True)
        write_preview(out / "preview.png", sim, scene.name)
    if not args.no_progress:
        print(
            f"{scene.name}: projections {sim.projections.shape} (seed {sim.seed}) written to {args.output}/",
            file=sys.stderr,
        )
    return 0


def _per_pixel(value: Any, pixels: tuple[int, ...]) -> np.ndarray:
    """A flat or dark field (a number or a per-pixel map) as a float32 array of the detector's shape."""
    return np.ascontiguousarray(np.broadcast_to(np.asarray(value, dtype=np.float32), pixels))


def write_tiff(path: Path, projections: np.ndarray) -> None:
    """A float32 TIFF stack, one page per view (2D sinograms: one page; ray lists: one row)."""

    from ..io import save_tiff, write_atomically

    data = np.asarray(projections, dtype=np.float32)
    data = data[None] if data.ndim == 1 else data  # a ray list: one row
    write_atomically(path, lambda tmp: save_tiff(tmp, data))


def write_preview(path: Path, sim: Any, title: str) -> None:
    """A PNG with a few projections and a sinogram (3D: of the central detector row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import write_atomically

    y = sim.projections
    views = y.shape[0]
    if y.ndim == 1:  # a ray list
        fig, axes = plt.subplots(1, 1, figsize=(8, 4), squeeze=False)
        axes[0, 0].plot(y, ".", markersize=2)
        axes[0, 0].set_xlabel("ray")
        axes[0, 0].set_ylabel("line integral")
        fig.suptitle(f"{title}: line integrals (seed {sim.seed})")
        fig.tight_layout()
        write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
        plt.close(fig)
        return
    if y.ndim == 3:
        picks = sorted({round(i) for i in np.linspace(0, views - 1, min(3, views))})
        fig, axes = plt.subplots(1, len(picks) + 1, figsize=(4 * (len(picks) + 1), 4), squeeze=False)
        for ax, v in zip(axes[0], picks, strict=False):
            im = ax.imshow(y[v], cmap="gray", origin="lower")
            ax.set_title(f"view {v}")
            fig.colorbar(im, ax=ax, shrink=0.7)
        sino = y[:, y.shape[1] // 2, :]
        ax = axes[0, -1]
        ax.set_title("sinogram (central row)")
    else:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4), squeeze=False)
        picks = sorted({round(i) for i in np.linspace(0, views - 1, min(3, views))})
        for v in picks:
            axes[0, 0].plot(y[v], label=f"view {v}")
        axes[0, 0].legend()
        axes[0, 0].set_xlabel("detector column")
        axes[0, 0].set_title("projections")
        sino = y
        ax = axes[0, 1]
        ax.set_title("sinogram")
    im = ax.imshow(sino, cmap="gray", aspect="auto", origin="lower")
    ax.set_xlabel("detector column")
    ax.set_ylabel("view")
    fig.colorbar(im, ax=ax, shrink=0.7)
    fig.suptitle(f"{title}: line integrals (seed {sim.seed})")
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    plt.close(fig)
