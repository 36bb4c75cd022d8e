"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any


def cone_workload(n: int, views: int) -> tuple[Any, Any]:
    """The benchmarks' cone scan (``coneN``): an ``n``³ volume of 1 mm voxels, ``views`` over a full circle, an
    ``n`` x ``n`` detector of 1.5 mm pixels, the source ``2 n`` mm from the axis and ``4 n`` mm from the detector."""
    import numpy as np

    import drct as ct

    orbit = np.linspace(0, 2 * np.pi, views, endpoint=False)
    return ct.VolumeGeometry((n, n, n)), ct.cone(orbit, (n, n), 1.5, 2.0 * n, 4.0 * n)


def parallel2d_workload(views: int = 256) -> tuple[Any, Any]:
    """The benchmarks' 2D parallel scan (``parallel2d``): a 256² volume of 1 mm pixels, ``views`` over half a
    circle, 367 detector pixels of 1 mm (the diagonal)."""
    import numpy as np

    import drct as ct

    return ct.VolumeGeometry((256, 256)), ct.parallel(np.linspace(0, np.pi, views, endpoint=False), 367)


def fan2d_workload(views: int = 720) -> tuple[Any, Any]:
    """The benchmarks' 2D fan scan (``fan2d``): a 512² volume of 1 mm pixels, ``views`` over a full circle, 725
    detector pixels of 1.5 mm, the source 1000 mm from the axis and 1500 mm from the detector."""
    import numpy as np

    import drct as ct

    orbit = np.linspace(0, 2 * np.pi, views, endpoint=False)
    return ct.VolumeGeometry((512, 512)), ct.fan(orbit, 725, 1.5, 1000.0, 1500.0)


def workload(name: str, views: int | None = None) -> tuple[Any, Any]:
    """The scan called ``name`` (``parallel2d``, ``fan2d`` or ``coneN``, e.g. ``cone128``) with ``views`` views, or
    its default number: 256, 720, and 180 for ``cone128``, 360 for the other cones."""
    if name == "parallel2d":
        return parallel2d_workload(views or 256)
    if name == "fan2d":
        return fan2d_workload(views or 720)
    if name.startswith("cone") and name[4:].isdigit():
        n = int(name[4:])
        return cone_workload(n, views or (180 if n == 128 else 360))
    raise SystemExit(f"unknown workload {name!r}: expected parallel2d, fan2d or coneN (e.g. cone128)")


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) in MB, or NaN where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def machine() -> str:
    """One line naming what ran: drct's version, the backend and device, LLVM and its target (``drct info``)."""
    from drct.cli.info import info as machine_info

    info = machine_info()
    target = f", target {info['llvm target']}" if "llvm target" in info else ""
    return f"drct {info['drct']} on {info['backend']} ({info['device']}), LLVM {info['llvm']}{target}"


def load() -> str:
    """The machine's ``uptime`` line (its load average belongs beside every timing)."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def timed(fns: list[Callable[[], Any]], repeat: int) -> list[tuple[float, float]]:
    """Per function: (first call seconds, median of the next ``repeat``); the functions take turns."""
    import drjit as dr

    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat + 1):
        for fn, record in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            dr.sync_thread()
            record.append(time.perf_counter() - start)
    return [(t[0], statistics.median(t[1:])) for t in times]


def wall_and_cpu(
    fns: dict[str, Callable[[], Any]], repeat: int, around: Callable[[str], AbstractContextManager[Any]] | None = None
) -> dict[str, tuple[float, float]]:
    """Per variant: (median wall s, median CPU s) over ``repeat`` calls after a first one, the variants taking
    turns (each call inside ``around(name)`` if given)."""
    import drjit as dr

    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(repeat + 1):
        for name, fn in fns.items():
            with around(name) if around is not None else nullcontext():
                w0, c0 = time.perf_counter(), time.process_time()
                dr.eval(fn())
                dr.sync_thread()
                if i:
                    wall[name].append(time.perf_counter() - w0)
                    cpu[name].append(time.process_time() - c0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in fns}


def cpu_seconds(fn: Callable[[], Any], repeat: int) -> float:
    """CPU seconds of this process (user + system) for ``fn``, median of ``repeat`` calls after a first one:
    comparable between runs on a loaded machine, where wall time is not."""
    import drjit as dr

    dr.eval(fn())
    dr.sync_thread()
    times = []
    for _ in range(repeat):
        start = time.process_time()
        dr.eval(fn())
        dr.sync_thread()
        times.append(time.process_time() - start)
    return statistics.median(times)


def pose_gradient(vg: Any, pg: Any, basis: str, x: Any, y: Any, volume: bool = True) -> Any:
    """One reverse-mode gradient of ``0.5 |A(pose) x - y|²`` w.r.t. the volume ``x`` and a rigid pose per view
    (zero rotation and shift), the benchmarks' "gradient": returns the two gradients (Dr.Jit tensors ``x``, ``y``).
    ``volume=False``: w.r.t. the pose alone (the volume's gradient is then None)."""
    import drjit as dr

    import drct as ct
    from drct.backend import drjit_module

    mod = drjit_module()
    views = [0.0] * pg.num_views
    rotation = mod.Float64(views) if pg.ndim == 2 else mod.Array3f64(views, views, views)
    shift = mod.Array2f64(views, views) if pg.ndim == 2 else mod.Array3f64(views, views, views)
    image = mod.TensorXf(x)
    dr.enable_grad(rotation, shift)
    if volume:
        dr.enable_grad(image)
    B = ct.Projector(vg, pg.perturb(motion_rotation=rotation, motion_shift=shift), basis=basis)
    r = B(image).array - y.array
    dr.backward(0.5 * dr.sum(r * r))
    return (dr.grad(image) if volume else None), dr.grad(shift)
