"""``drct calibrate``: estimate misalignment parameters jointly with the volume.

Measured data with a nominal geometry file, or a scene file (simulated with its noise; the scene's
``[geometry.misalignment]`` is the truth the estimates are compared with). Writes into ``-o OUT``:
``geometry.json`` (calibrated geometry and volume grid), ``reconstruction.tif``, ``calibration.json`` (estimates,
uncertainties, gauge report, history), ``report.png`` and, for a scene, ``scene.toml`` with the estimated
misalignment. The folder is written as one unit: it is built in a temporary sibling ``.OUT.partial-*`` and
renamed into place at the end, so a reader never sees files of two runs side by side and a killed run leaves an
existing ``OUT`` untouched. The JSON and geometry in the temporary folder are rewritten (each atomically) after every
outer iteration; Ctrl-C ends the run with the best result so far, renamed into place as usual.

It prints one line per parameter: the estimate ± σ (σ with the volume re-fitted and the residual's structure,
:mod:`drct.calibration.diagnostics`), for a scene the truth and the error (also in σ) beside it, and the verdict of
the diagnostics: ``NOT DETERMINED`` (the data cannot place it, or the gauge test held it) or ``NOT CONVERGED``.
``--diagnostics raise`` refuses such a result: the files are still written, the exit status is 3.

Example:
    $ drct calibrate scan.npy --geometry nominal.json --params det_shift_u,det_shift_v,det_roll -o calib
    $ drct calibrate scenes/micro_ct_misaligned.toml --scale 0.5 -o calib_micro
    $ drct calibrate micro_ct_misaligned --scale 0.5 -o calib_micro  # the bundled scene, from any folder
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import add_determinism_flag
from ._flags import add_iterations, add_output, add_progress, add_seed, add_threads

OUTPUTS = ("geometry.json", "reconstruction.tif", "calibration.json", "report.png")
SCENE_SUFFIXES = (".toml",)


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="estimate geometry misalignment jointly with the volume (projections + geometry, or a scene)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "input", type=Path, help="projections (.npy, .tif/.tiff), a scene file (.toml) or a bundled scene's name"
    )
    add_output(p, "output folder", old=("--out",), type=Path)
    p.add_argument("--geometry", type=Path, help="nominal geometry file (drct JSON; required for projections)")
    p.add_argument(
        "--params",
        help="comma-separated parameters, 'name:view' per view (default for a scene: its misalignment's names)",
    )
    p.add_argument("--basis", default="bspline2", help="volume basis (voxel, linear, bspline2, bspline3)")
    p.add_argument("--optimizer", default="lm", choices=("lm", "adam"))
    p.add_argument("--levels", help="coarsening factors, coarse to fine, e.g. 4,2,1 (default from the volume)")
    add_iterations(p, "outer iterations per level (one or comma-separated)", default="8")
    p.add_argument("--recon-iterations", type=int, default=20, help="CGLS iterations per outer iteration")
    p.add_argument(
        "--final-recon-iterations",
        type=int,
        default=10,
        help="CGLS iterations of the result (from the finest level's volume)",
    )
    p.add_argument("--regularization", type=float, default=1e-5, help="Tikhonov weight relative to |A^T A|")
    p.add_argument(
        "--lowpass",
        type=float,
        default=2.0,
        help="σ (detector pixels) of the Gaussian blur of data and model while calibrating; 0 = off",
    )
    p.add_argument("--gauge", default="fix", choices=("fix", "report", "off"))
    p.add_argument(
        "--diagnostics",
        default="warn",
        choices=("warn", "raise", "off"),
        help="when a parameter is not determined by the data: warn, or refuse (exit status 3, outputs still "
        "written), or skip the analysis",
    )
    p.add_argument("--fix", default="", help="comma-separated parameters to hold at nominal")
    p.add_argument("--volume-shape", help="z,y,x (or y,x) when the geometry file stores no volume")
    p.add_argument("--voxel-size", type=float, default=None, help="voxel size (mm) with --volume-shape")
    p.add_argument("--scale", type=float, default=1.0, help="scene only: simulate at this fraction of the size")
    add_seed(p, "scene only: noise seed (default 0)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder (of an earlier run)")
    add_determinism_flag(p)
    p.add_argument(
        "--allow-outside-files",
        action="store_true",
        help="scene only: let it read data files outside its own folder",
    )
    add_threads(p)
    add_progress(p)
    p.set_defaults(func=run)


def summary_lines(data: dict[str, Any], truth: dict[str, Any] | None) -> list[str]:
    """One line per parameter: estimate ± σ (px for lengths, degrees for angles), the truth and the error beside it
    when calibrating a scene, and what the diagnostics say about it (not determined, held by the gauge test)."""
    pixel = float(data.get("detector_pixel_mm") or 1.0)
    diagnostics = data.get("diagnostics") or {}
    undetermined = diagnostics.get("undetermined", {})
    unconverged = diagnostics.get("unconverged", [])
    partners: dict[str, list[str]] = {}  # parameters that carry a gauge-fixed partner's share
    for g in data.get("gauge") or []:
        held = g["action"][len("fixed ") :] if g["action"].startswith("fixed ") else None
        for other in g["parameters"]:
            if held is not None and other != held:
                partners.setdefault(other, []).append(held)
    from ..calibration.gauge import held_truth

    estimates = {k: v["value"] for k, v in data["parameters"].items()}
    moved_truth = {} if truth is None else held_truth(data.get("gauge") or [], estimates, truth)
    lines = []
    for name, entry in data["parameters"].items():
        unit = "deg" if "value_deg" in entry else "px" if "value_px" in entry else entry["unit"]

        def shown(v: Any, unit: str = unit) -> np.ndarray:
            a = np.asarray(v, dtype=np.float64)
            return np.rad2deg(a) if unit == "deg" else a / pixel if unit == "px" else a

        value = shown(entry["value"])
        std = None if entry.get("std") is None else shown(entry["std"])
        if value.ndim == 0:
            text = f"{name:16s} {float(value):+.4f}" + ("" if std is None else f" ± {float(std):.4f}") + f" {unit}"
            if truth is not None and name in truth and np.size(truth[name]) == 1:
                true = float(shown(np.asarray(truth[name]).reshape(-1)[0]))
                err = float(value) - true
                sig = "" if not std or float(std) <= 0 else f" = {abs(err) / float(std):.1f}σ"
                text += f"   truth {true:+.4f} {unit}, error {err:+.4f}{sig}"
                if name in moved_truth:  # the truth moved along the gauge to where the held partner sits
                    held, moved = moved_truth[name]
                    err = float(value) - float(shown(moved))
                    sig = "" if not std or float(std) <= 0 else f" = {abs(err) / float(std):.1f}σ"
                    text += f"; with {held} held: truth {float(shown(moved)):+.4f} {unit}, error {err:+.4f}{sig}"
        else:
            text = f"{name:16s} {np.size(value)} values, RMS {float(np.sqrt(np.mean(np.square(value)))):.4f} {unit}"
        if name in partners:
            text += f"   (carries the held {', '.join(partners[name])}'s share too: compare their combination)"
        if name in undetermined:
            text += f"   NOT DETERMINED: {undetermined[name]}"
        elif name in unconverged:
            text += "   NOT CONVERGED"
        lines.append(text)
    for entry in data.get("gauge") or []:
        combo = ", ".join(f"{k} {v:+.3f}" for k, v in entry["parameters"].items())
        lines.append(f"gauge: the data cannot tell apart ({combo}): {entry['action']}")
    if data.get("fixed"):
        lines.append(f"fixed: {', '.join(data['fixed'])}")
    return lines


def is_scene_input(path: Path) -> bool:
    """Whether ``drct calibrate``'s input is a scene: a ``.toml`` file, or a bundled scene's name where no file of
    that name exists (as ``drct simulate`` takes it).

    Example:
        >>> from pathlib import Path
        >>> from drct.cli.calibrate import is_scene_input
        >>> [is_scene_input(Path(p)) for p in ("scan.toml", "micro_ct_misaligned", "scan.npy")]
        [True, True, False]
    """
    from ..scenes import is_name

    return path.suffix.lower() in SCENE_SUFFIXES or (not path.exists() and is_name(str(path)))


def _volume(args: argparse.Namespace, vg: Any) -> Any:
    from ..geometry.volume import VolumeGeometry

    if args.volume_shape:
        return VolumeGeometry(tuple(_ints(args.volume_shape, "--volume-shape")), voxel_size=args.voxel_size or 1.0)
    return vg


def run(args: argparse.Namespace) -> int:
    from ..calibration import calibrate
    from ..errors import require_finite
    from ..io import check_output_folder, output_folder, read_projections, write_json
    from .reconstruct import require_memory_for
    from .simulate import check_size

    is_scene = is_scene_input(args.input)
    expected = [*OUTPUTS, "scene.toml"]  # what --force may replace: the files of an earlier run
    check_output_folder(args.output, args.force, expected)
    truth = None
    scene = None
    if is_scene:
        from ..scene import load_scene

        if args.geometry is not None:
            raise ValueError("--geometry is for projection files; a scene carries its own geometry")
        scene = load_scene(args.input, scale=args.scale, allow_outside=args.allow_outside_files)
        check_size(scene)
        sim = scene.simulate(seed=args.seed, progress=not args.no_progress)
        y, pg, vg = sim.projections, scene.nominal_geometry(), scene.volume
        truth = {k: np.asarray(v).tolist() for k, v in scene.misalignment.items()}
        from ..geometry.perturb import PARAMETERS

        # the model's order: of a gauge pair, the parameter listed last is the one fixed (cor_offset after shifts)
        params = args.params.split(",") if args.params else [n for n in PARAMETERS if n in scene.misalignment]
        if not params:
            raise ValueError(f"{args.input} has no [geometry.misalignment]: pass --params to choose what to calibrate")
    else:
        if args.geometry is None:
            raise ValueError("--geometry FILE is required with a projections file (the nominal geometry)")
        if not args.params:
            raise ValueError("--params is required with a projections file, e.g. --params det_shift_u,det_roll")
        from ..geometry.files import load_geometry

        y = read_projections(args.input)
        pg, vg = load_geometry(args.geometry)
        params = args.params.split(",")
    require_finite(y, f"{args.input} (projections)")
    vg = _volume(args, vg)
    if vg is not None:
        require_memory_for(vg, pg, "float32", "calibrating", copies=8)
    levels = _ints(args.levels, "--levels") if args.levels else None
    iterations = _ints(args.iterations, "--iterations")
    n_levels = len(levels) if levels else None
    if len(iterations) == 1:
        iterations_arg: Any = iterations[0]
    elif n_levels is not None and len(iterations) != n_levels:
        raise ValueError(f"--iterations has {len(iterations)} entries but --levels has {n_levels}")
    else:
        iterations_arg = iterations
    # the folder is built beside its destination (the checkpoints too) and renamed into place at the end,
    # interrupted or not (drct.io.output_folder): never files of two runs side by side
    with output_folder(args.output, args.force, expected) as out:
        if not args.no_progress:
            print(f"drct calibrate: writing into {out} (renamed to {args.output} at the end)", file=sys.stderr)

        def checkpoint(state: Any) -> None:  # best-so-far geometry and parameters after every outer iteration
            from ..geometry.files import save_geometry

            save_geometry(out / "geometry.json", state.geometry, vg, overwrite=True)
            data = {
                "parameters": state.params,
                "level": state.factor,
                "iteration": state.iteration,
                "loss": state.loss,
                "complete": False,
                "truth": truth,
            }
            write_json(out / "calibration.json", data)

        from ..calibration.diagnostics import UndeterminedParameterError

        refused = None
        try:
            result = calibrate(
                y,
                pg,
                [p.strip() for p in params if p.strip()],
                basis=args.basis,
                vg=vg,
                levels=levels,
                optimizer=args.optimizer,
                iterations=iterations_arg,
                recon_iterations=args.recon_iterations,
                final_recon_iterations=args.final_recon_iterations,
                regularization=args.regularization,
                lowpass=args.lowpass,
                fix=[f for f in args.fix.split(",") if f],
                gauge=args.gauge,
                callback=checkpoint,
                progress=not args.no_progress,
                diagnostics=args.diagnostics,
            )
        except UndeterminedParameterError as err:  # refused: the files are still written, the status says so
            result, refused = err.result, str(err)
        from ..calibration.interrupts import deferred_interrupts

        with deferred_interrupts() as late:  # Ctrl-C now waits until every promised file is written
            paths = result.save(out, overwrite=True)
            data = json.loads(paths["calibration"].read_text())
            data["truth"] = truth
            data["complete"] = not result.interrupted
            write_json(paths["calibration"], data)
            if scene is not None:
                scene.misalignment = {k: np.asarray(v, dtype=np.float64) for k, v in result.params.items()}
                scene.save(out / "scene.toml", overwrite=True)
    for line in summary_lines(data, truth):
        print(line)
    print(f"outputs in {args.output} ({result.runtime:.1f} s)")
    if result.interrupted or late.pending:
        print("drct calibrate: interrupted; the best result so far is on disk", file=sys.stderr)
        return 130
    if refused is not None:
        print(f"drct calibrate: refused (--diagnostics raise): {refused}", file=sys.stderr)
        return 3
    return 0
