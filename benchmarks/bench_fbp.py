"""FBP/FDK wall time: old vs new in the same run, taking turns call by call, medians of ``--repeat`` (at least 5)
calls after a first call timed apart, with the machine's load (``uptime``) before and after.

Run:  python benchmarks/bench_fbp.py [--repeat 7] [--cases parallel,fan,fan_curved,fan512,fdk,filter]
      [--table-bytes 2097152,4194304] [--engines-against 7f94bd4]

Cases: 2D parallel 256² x 360 views x 367 (nothing changed there: the reference line); 2D fan 256² x 360 x 367 of 2 mm
(flat and curved; bases linear and voxel): ``old`` backprojects with ``A.T`` and the ``D/r`` weight
(:func:`drct.recon.fbp.backproject_fan`, views in launches of 64 MiB of images; what :func:`drct.fbp` still does
for Dr.Jit geometry vectors), ``new`` is :func:`drct.fbp` (the voxel-driven backprojection of
:mod:`drct.recon.backproject`); FDK 128³ x 180 views of 128 x 192: ``old`` is the first voxel-driven kernel (one
launch per view, ``tests/fbp_reference.py``), ``new`` :func:`drct.fdk`; and the row filter alone on 360 x 367 and
180 x 128 x 128: numpy's FFT on the host vs the Dr.Jit convolution on the device (here the CPU). ``fan512`` is the
flat fan case at 512² x 720 views x 735 of 1 mm (voxels of 0.5 mm), linear basis.

``--engines-against REV`` times the backprojection engine alone (``apply`` of filtered data, no filter or weights)
against the one of git revision ``REV`` of :mod:`drct.recon.backproject` (e.g. ``7f94bd4``: 8 views unrolled per
launch), call by call in turns, wall and CPU medians: 2D fan 256² x 360 x 367 (flat, curved), 512² x 720 x 735,
cone 128³ x 180 x 128² (flat, curved) and 3D parallel 128³ x 180.

``--table-bytes 2D,3D`` sets :data:`drct.recon.backproject.TABLE_BYTES` (the interpolation cells one kernel of the
voxel-driven backprojection reads: they should stay in the caches) to measure it on another machine.

The fan and FDK cases print ``max |new - old| / max |old|``: the fan's differ by the basis smoothing of ``A.T``
(not the same numbers at the phantom's sharp edges: the PSNR against the phantom is printed for both), FDK's by
float32 rounding.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import drjit as dr
import numpy as np

import drct as ct
from drct.arrays import to_tensor
from drct.backend import types as drct_types
from drct.recon.backproject import make_backprojector
from drct.recon.fbp import backproject_fan, weights_for
from drct.recon.filters import filter_tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fbp_reference import ReferenceBackprojector

fbp_module: Any = importlib.import_module("drct.recon.fbp")  # the module (drct.recon.fbp is also the function)
backproject_module: Any = importlib.import_module("drct.recon.backproject")


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


def fan_fbp_adjoint(A: ct.Projector, y: np.ndarray) -> np.ndarray:
    """The previous 2D fan FBP: the same weights and filter, backprojected by ``A.T`` with ``D/r`` and ``Δ/h²``."""
    w = weights_for(A)
    tensor, _ = to_tensor(y, A.range_shape, A.types, "y")
    pre = tensor * A.types.Tensor(np.broadcast_to(w.pre, A.range_shape).astype(np.float32))
    q = filter_tensor(pre, w.spacing, "ram-lak", 1.0, w.curved)
    return backproject_fan(A, q * (w.spacing / float(np.prod(A.vg.voxel_size)))).numpy()


@contextlib.contextmanager
def per_view_kernel() -> Iterator[None]:
    """FDK with the first voxel-driven kernel (one launch per view)."""
    fbp_module.make_backprojector = ReferenceBackprojector
    try:
        yield
    finally:
        fbp_module.make_backprojector = make_backprojector
        fbp_module._BP_CACHE.clear()


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def row(case: str, old: tuple[float, float] | None, new: tuple[float, float], note: str = "") -> None:
    first_old, med_old = old if old is not None else (float("nan"), float("nan"))
    speedup = med_old / new[1] if old is not None else float("nan")
    print(f"{case:42s} {first_old:9.3f} {med_old:9.3f} {new[0]:9.3f} {new[1]:9.3f} {speedup:8.2f}  {note}", flush=True)


def psnr(rec: np.ndarray, truth: np.ndarray) -> float:
    return float(20 * np.log10(truth.max() / np.sqrt(np.mean((rec - truth) ** 2))))


def fbp_case(
    name: str,
    A: ct.Projector,
    y: np.ndarray,
    repeat: int,
    old_fn: Callable[[], Any] | None,
    truth: np.ndarray | None = None,
) -> None:
    def new() -> np.ndarray:
        return ct.fbp(A, y, progress=False)

    if old_fn is None:
        row(name, None, timed([new], repeat)[0])
        return
    (t_old, t_new), ref, rec = timed([old_fn, new], repeat), np.asarray(old_fn()), new()
    note = f"max |new - old| / max |old| = {float(np.abs(rec - ref).max() / np.abs(ref).max()):.1e}"
    if truth is not None:
        note += f"; PSNR old {psnr(ref, truth):.2f} dB, new {psnr(rec, truth):.2f} dB"
    row(name, t_old, t_new, note)


def fdk_old(A: ct.Projector, y: np.ndarray) -> Callable[[], Any]:
    def old() -> np.ndarray:
        fbp_module._BP_CACHE.pop(A, None)  # each call builds its kernel state, as the new one does below
        with per_view_kernel():
            return ct.fbp(A, y, progress=False)

    return old


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--cases", default="parallel,fan,fan_curved,fdk,filter")
    parser.add_argument("--table-bytes", default=None, help="2D,3D bytes of cells per backprojection kernel")
    parser.add_argument("--engines-against", default=None, help="git revision of the backprojection to time against")
    args = parser.parse_args()
    if args.table_bytes is not None:
        two, three = (int(v) for v in args.table_bytes.split(","))
        backproject_module.TABLE_BYTES = {2: two, 3: three}
    print(f"backprojection kernels read {backproject_module.TABLE_BYTES} bytes of cells (by dimension)")
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
        fbp_case("2D parallel 256² x 360, linear", ct.Projector(vg, pg, basis="linear"), y, repeat, None)
    for curved in (False, True):
        if ("fan_curved" if curved else "fan") not in cases:
            continue
        pg = ct.fan(angles, 367, 2.0, 500.0, 1000.0, curved=curved)  # covers the 256 mm field
        y = ct.phantoms.shepp_logan_projections(pg, vg=vg).astype(np.float32)
        for basis in ("linear", "voxel"):
            name = f"2D fan {'curved' if curved else 'flat'} 256² x 360, {basis}"
            A = ct.Projector(vg, pg, basis=basis)
            fbp_case(name, A, y, repeat, lambda A=A, y=y: fan_fbp_adjoint(A, y), ct.phantoms.shepp_logan(vg))
    if "fan512" in cases:
        vg5 = ct.VolumeGeometry((512, 512), voxel_size=0.5)
        pg5 = ct.fan(np.linspace(0, 2 * np.pi, 720, endpoint=False), 735, 1.0, 500.0, 1000.0)
        y5 = ct.phantoms.shepp_logan_projections(pg5, vg=vg5).astype(np.float32)
        A5 = ct.Projector(vg5, pg5, basis="linear")
        name = "2D fan flat 512² x 720, linear"
        fbp_case(name, A5, y5, repeat, lambda: fan_fbp_adjoint(A5, y5), ct.phantoms.shepp_logan(vg5))
    if "fdk" in cases:
        vg3 = ct.VolumeGeometry((128, 128, 128))
        pg3 = ct.cone(angles[::2], (128, 192), 1.5, 300.0, 600.0)
        y3 = rng.random(pg3.shape).astype(np.float32)
        A3 = ct.Projector(vg3, pg3, basis="voxel")
        fbp_case("FDK 128³ x 180 (128 x 192), voxel", A3, y3, repeat, fdk_old(A3, y3))
    if "filter" in cases:
        t = ct.Projector(vg, ct.parallel([0.0], 4)).types
        for shape in [(360, 367), (180, 128, 128)]:
            p = t.Tensor(rng.random(shape).astype(np.float32))
            host, device = timed(
                [lambda p=p: filter_tensor(p, 1.0, device=False), lambda p=p: filter_tensor(p, 1.0, device=True)],
                repeat,
            )
            label = " x ".join(map(str, shape))
            row(f"filter {label}: host FFT -> device", host, device, "old = scipy FFT, new = dr.convolve")
    if args.engines_against is not None:
        engines_against(args.engines_against, repeat)
    print(f"load after:  {load()}")


def module_at(revision: str) -> Any:
    """:mod:`drct.recon.backproject` as it was at git ``revision`` (its relative imports made absolute)."""
    root = Path(__file__).resolve().parents[1]
    show = ["git", "show", f"{revision}:drct/recon/backproject.py"]
    source = subprocess.run(show, capture_output=True, text=True, check=True, cwd=root).stdout
    module = types.ModuleType(f"backproject_{revision}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source.replace("from ..", "from drct."), f"{revision}:backproject.py", "exec"), module.__dict__)
    return module


def engines_against(revision: str, repeat: int) -> None:
    """The backprojection engine of ``revision`` against this one (see the module docstring)."""
    old_module = module_at(revision)
    t = drct_types("float32")
    angles = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    fine = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    cases = {
        "fan 256² x 360 x 367": (ct.fan(angles, 367, 2.0, 500.0, 1000.0), (256, 256), 1.0),
        "fan curved 256² x 360 x 367": (ct.fan(angles, 367, 2.0, 500.0, 1000.0, curved=True), (256, 256), 1.0),
        "fan 512² x 720 x 735": (ct.fan(fine, 735, 1.0, 500.0, 1000.0), (512, 512), 0.5),
        "cone 128³ x 180 x 128²": (ct.cone(angles[::2], (128, 128), 1.5, 300.0, 600.0), (128, 128, 128), 1.0),
        "cone curved 128³ x 180 x 128²": (
            ct.cone(angles[::2], (128, 128), 1.5, 300.0, 600.0, curved=True),
            (128, 128, 128),
            1.0,
        ),
        "parallel 3D 128³ x 180 x 128²": (ct.parallel(angles[::2] / 2, (128, 128), 1.0), (128, 128, 128), 1.0),
    }
    print(f"\nbackprojection engine alone, {revision} -> this tree, ms (wall / CPU), float32")
    for name, (pg, shape, voxel) in cases.items():
        vg = ct.VolumeGeometry(shape, voxel_size=voxel)
        q = t.Float(np.random.default_rng(0).random(pg.num_rays).astype(np.float32))
        engines = [old_module.make_backprojector(pg, vg, t), make_backprojector(pg, vg, t)]
        times: list[list[tuple[float, float]]] = [[], []]
        for _ in range(repeat + 1):
            for engine, record in zip(engines, times, strict=True):
                wall, cpu = time.perf_counter(), time.process_time()
                dr.eval(engine.apply(q))
                dr.sync_thread()
                record.append((1e3 * (time.perf_counter() - wall), 1e3 * (time.process_time() - cpu)))
        old, new = (engine.apply(q).numpy() for engine in engines)
        medians = [[statistics.median(x[k] for x in record[1:]) for k in (0, 1)] for record in times]
        (ow, oc), (nw, nc) = medians
        print(
            f"{name:30s} first {times[0][0][0]:7.0f} -> {times[1][0][0]:7.0f}; median {ow:7.1f} / {oc:7.1f} -> "
            f"{nw:7.1f} / {nc:7.1f} (x{nw / ow:.2f} wall, x{nc / oc:.2f} CPU); "
            f"max |new - old| / max |old| {float(np.abs(new - old).max() / np.abs(old).max()):.1e}",
            flush=True,
        )


if __name__ == "__main__":
    main()
