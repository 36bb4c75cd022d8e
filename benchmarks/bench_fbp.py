"""FBP/FDK wall time: old vs new in the same run, taking turns call by call, medians of ``--repeat`` (at least 5)
calls after a first call timed apart, with the machine's load (``uptime``) before and after.

Run:  python benchmarks/bench_fbp.py [--repeat 7] [--cases parallel,fan,fan_curved,fdk,filter]

Cases: 2D parallel 256² x 360 views x 367 (nothing changed there: the reference line), 2D fan 256² x 360 x 367
(flat and curved; bases linear and voxel): ``old`` backprojects view by view (one ``A.T`` launch per view and
a host-computed ``D/r``, :func:`drct.recon.fbp.backproject_fan_per_view`), ``new`` is :func:`drct.fbp` (views in
one launch, :func:`drct.recon.fbp.backproject_fan`); FDK 128³ x 180 views of 128 x 192; and the row filter alone
on 360 x 367 and 180 x 128 x 128: numpy's FFT on the host vs the Dr.Jit convolution on the device (here the
CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import drjit as dr
import numpy as np

import drct as ct
from drct.recon.fbp import backproject_fan, backproject_fan_per_view
from drct.recon.filters import filter_tensor

fbp_module: Any = importlib.import_module("drct.recon.fbp")  # the module (drct.recon.fbp is also the function)


def once(fn: Callable[[], Any]) -> float:
    """Seconds of one call; Dr.Jit results are waited for."""
    start = time.perf_counter()
    out = fn()
    if not isinstance(out, np.ndarray):
        dr.eval(out)
        dr.sync_thread()
    return time.perf_counter() - start


def timed(fns: list[Callable[[], Any]], repeat: int) -> list[tuple[float, float]]:
    """Per function: (first call seconds, median of the next ``repeat`` calls). The functions take turns in each
    repeat, so that a change of the machine's load hits all of them alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat + 1):
        for fn, record in zip(fns, times, strict=True):
            record.append(once(fn))
    return [(t[0], statistics.median(t[1:])) for t in times]


@contextlib.contextmanager
def view_by_view() -> Iterator[None]:
    """FBP with the old view-by-view 2D fan backprojection."""
    fbp_module.backproject_fan = backproject_fan_per_view
    try:
        yield
    finally:
        fbp_module.backproject_fan = backproject_fan


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def row(case: str, old: tuple[float, float] | None, new: tuple[float, float], note: str = "") -> None:
    first_old, med_old = old if old is not None else (float("nan"), float("nan"))
    speedup = med_old / new[1] if old is not None else float("nan")
    print(f"{case:42s} {first_old:9.3f} {med_old:9.3f} {new[0]:9.3f} {new[1]:9.3f} {speedup:8.2f}  {note}", flush=True)


def fbp_case(name: str, A: ct.Projector, y: np.ndarray, repeat: int, compare: bool) -> None:
    def new() -> np.ndarray:
        return ct.fbp(A, y, progress=False)

    if not compare:
        row(name, None, timed([new], repeat)[0])
        return

    def old() -> np.ndarray:
        with view_by_view():
            return ct.fbp(A, y, progress=False)

    (t_old, t_new), ref = timed([old, new], repeat), old()
    diff = float(np.abs(new() - ref).max() / np.abs(ref).max())
    row(name, t_old, t_new, f"max |new - old| / max |old| = {diff:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--cases", default="parallel,fan,fan_curved,fdk,filter")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    repeat = max(5, args.repeat)
    print(f"load before: {load()}")
    print(f"{'case':42s} {'old 1st':>9s} {'old med':>9s} {'new 1st':>9s} {'new med':>9s} {'speedup':>8s}  (seconds)")
    rng = np.random.default_rng(0)
    vg = ct.VolumeGeometry((256, 256))
    angles = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    if "parallel" in cases:
        pg = ct.parallel(angles / 2, 367, 1.0)
        y = ct.phantoms.shepp_logan_projections(pg, vg=vg).astype(np.float32)
        fbp_case("2D parallel 256² x 360, linear", ct.Projector(vg, pg, basis="linear"), y, repeat, False)
    for curved in (False, True):
        if ("fan_curved" if curved else "fan") not in cases:
            continue
        pg = ct.fan(angles, 367, 1.0, 500.0, 1000.0, curved=curved)
        y = ct.phantoms.shepp_logan_projections(pg, vg=vg).astype(np.float32)
        for basis in ("linear", "voxel"):
            name = f"2D fan {'curved' if curved else 'flat'} 256² x 360, {basis}"
            fbp_case(name, ct.Projector(vg, pg, basis=basis), y, repeat, True)
    if "fdk" in cases:
        vg3 = ct.VolumeGeometry((128, 128, 128))
        pg3 = ct.cone(angles[::2], (128, 192), 1.5, 300.0, 600.0)
        y3 = rng.random(pg3.shape).astype(np.float32)
        fbp_case("FDK 128³ x 180 (128 x 192), voxel", ct.Projector(vg3, pg3, basis="voxel"), y3, repeat, False)
    if "filter" in cases:
        t = ct.Projector(vg, ct.parallel([0.0], 4)).types
        for shape in [(360, 367), (180, 128, 128)]:
            p = t.Tensor(rng.random(shape).astype(np.float32))
            host, device = timed(
                [lambda p=p: filter_tensor(p, 1.0, device=False), lambda p=p: filter_tensor(p, 1.0, device=True)],
                repeat,
            )
            label = " x ".join(map(str, shape))
            row(f"filter {label}: host FFT -> device", host, device, "old = numpy FFT, new = dr.convolve")
    print(f"load after:  {load()}")


if __name__ == "__main__":
    main()
