"""Shared helpers of the calibration examples: noisy simulation, PSNR, a small result table."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def parser(doc: str | None, size: int, views: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=size, help="volume size per axis (detector matches)")
    p.add_argument("--views", type=int, default=views, help="number of projections")
    p.add_argument("--basis", default="bspline2", help="volume basis: voxel, linear, bspline2, bspline3")
    p.add_argument("--compare", action="store_true", help="also run the voxel basis and print a table")
    p.add_argument("--optimizer", default="lm", choices=("lm", "adam"))
    p.add_argument("--photons", type=float, default=1e5, help="incident photons per pixel (Poisson noise)")
    p.add_argument("--iterations", default="6,4,2", help="outer iterations per level, coarse to fine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", type=Path, default=None, help="write the calibration outputs here")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return p


def levels_for(size: int) -> list[int]:
    levels = [1]
    while size // (levels[0] * 2) >= 24 and len(levels) < 3:
        levels.insert(0, levels[0] * 2)
    return levels


def iterations_for(text: str, n: int) -> list[int]:
    values = [int(v) for v in text.split(",")]
    return (values + [values[-1]] * n)[-n:] if len(values) < n else values[:n]


def add_noise(y: np.ndarray, photons: float, seed: int) -> np.ndarray:
    """Poisson noise on transmitted counts ``photons * exp(-y * k)``, with ``k`` scaling the largest line integral
    to 3 (so the noise is realistic whatever the phantom's units), returned in the units of ``y``."""
    if photons <= 0:
        return y
    k = 3.0 / max(float(np.max(y)), 1e-12)
    counts = np.random.default_rng(seed).poisson(photons * np.exp(-k * np.asarray(y, np.float64)))
    return (-np.log(np.maximum(counts, 1) / photons) / k).astype(np.float32)


def psnr(x: np.ndarray, ref: np.ndarray) -> float:
    """Peak signal-to-noise ratio of ``x`` against ``ref`` (peak = ref's range)."""
    mse = float(np.mean((np.asarray(x, np.float64) - ref) ** 2))
    return 10 * np.log10(float(np.ptp(ref)) ** 2 / max(mse, 1e-300))


def report(truth: dict, estimate: dict, std: dict | None, pixel: float) -> dict[str, float]:
    """Print truth / estimate / error per scalar parameter (lengths in detector pixels, angles in degrees) and
    return the errors."""
    angles = ("det_roll", "det_pitch", "det_yaw", "axis_tilt", "axis_tilt_beam")
    errors = {}
    for name, true in truth.items():
        if name not in estimate or np.ndim(estimate[name]) != 0:
            continue
        f, unit = (np.rad2deg, "°") if name in angles else ((lambda v: v / pixel), "px")
        sd = "" if std is None else f" ± {float(f(std[name])):.4f}"
        err = abs(float(f(estimate[name] - np.asarray(true).reshape(-1)[0])))
        errors[name] = err
        print(
            f"  {name:14s} true {float(f(true)):+9.4f} {unit}  estimated {float(f(estimate[name])):+9.4f}{sd} {unit}"
            f"  error {err:.4f}"
        )
    return errors


def scene_case(path: Path, misalignment: dict | None, params: list[str] | None, args) -> None:
    """Simulate a scene (with its noise) at ``args.scale``, calibrate, print errors and runtime."""
    import time

    import drct as ct

    scene = ct.load_scene(path, scale=args.scale)
    if misalignment is not None:
        scene.misalignment = dict(misalignment)
    pg, vg = scene.nominal_geometry(), scene.volume
    if vg is None:
        raise SystemExit(f"{path} has no [volume] table: the calibration needs a reconstruction grid")
    y = scene.simulate(seed=args.seed).projections
    from drct.geometry.perturb import PARAMETERS

    names = params or [n for n in PARAMETERS if n in scene.misalignment]  # of a gauge pair, the last is fixed
    pixel = float(np.linalg.norm(np.asarray(pg.det_u)[0]))
    print(f"{scene.name}: {pg!r}, volume {vg.shape}, parameters {names}")
    start = time.perf_counter()
    from drct.calibration.levels import default_factors

    levels = default_factors(vg)
    iterations = iterations_for(args.iterations, len(levels))
    res = ct.calibrate(
        y, pg, names, basis=args.basis, vg=vg, levels=levels, iterations=iterations, optimizer=args.optimizer
    )
    runtime = time.perf_counter() - start
    report(scene.misalignment, res.params, res.std, pixel)
    truth = scene.misalignment
    if {"det_shift_u", "cor_offset"} <= set(truth) and {"det_shift_u", "cor_offset"} <= set(res.params):
        src, det = np.asarray(pg.src), np.asarray(pg.det)
        mag = float(np.mean(np.linalg.norm(det - src, axis=1) / np.linalg.norm(src, axis=1)))
        column = (res.params["det_shift_u"] + mag * res.params["cor_offset"]) / pixel
        true_column = (float(truth["det_shift_u"]) + mag * float(truth["cor_offset"])) / pixel
        print(
            f"  axis column det_shift_u + M cor_offset (what the data determine): true {true_column:+.4f} px, "
            f"estimated {column:+.4f} px, error {abs(column - true_column):.4f} px"
        )
    print(f"  fixed by gauge handling: {res.fixed}; loss {res.loss[0]:.3e} -> {res.loss[-1]:.3e}")
    print(f"  runtime {runtime:.1f} s ({res.iterations} outer iterations, levels {res.factors}, {ct.get_backend()})")
    if args.out is not None:
        res.save(args.out, overwrite=args.force)
        print(f"  outputs in {args.out}")
