"""``drct info [SCENE] [--plot PICTURE]``: versions, backend, LLVM and device; with a scene file, the scene and its
parameters, and with ``--plot`` a picture of its geometry (:func:`drct.geometry.plot.plot_geometry`: sources,
detector outlines, a few views' rays, the volume box), written atomically and never over an existing file
unless ``--force``.

Example:
    >>> import contextlib, io, os, tempfile
    >>> from drct.cli import main
    >>> out = os.path.join(tempfile.mkdtemp(), "geometry.png")
    >>> with contextlib.redirect_stdout(io.StringIO()):  # the scene's description
    ...     codes = [main(["info", "shepp_logan_2d", "--plot", out]) for _ in range(2)]
    >>> codes, os.path.getsize(out) > 0  # the second run refuses to overwrite the picture
    ([0, 2], True)
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..io import refuse_overwrite, write_together


def _cpuinfo(key: str, path: str = "/proc/cpuinfo") -> str | None:
    """The value of the first ``key`` line of the CPU description (Linux), or None where there is none."""
    try:
        with open(path) as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(key)), None)
    except OSError:
        return None


def _cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def _simd(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The widest x86 vector extension the CPU reports (Dr.Jit's LLVM backend sizes its packets by it: 16 lanes of
    float32 with AVX-512, 8 with AVX2): kernel timings differ by up to 3× between the two (README, Benchmarks)."""
    flags = (_cpuinfo("flags", cpuinfo) or "").split()
    return next(
        (label for flag, label in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX")) if flag in flags), ""
    )


def _gpu_name() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "CUDA GPU"
    except (OSError, subprocess.SubprocessError):
        return "CUDA GPU"


def info() -> dict[str, str]:
    """Version, backend, LLVM version and device, as printed by ``drct info``."""
    from importlib.metadata import version

    import drjit as dr

    from .. import __version__
    from ..backend import BackendError, get_backend, llvm_version
    from ..cpu_target import FLAG, llvm_target

    rows = {"drct": __version__, "drjit": version("drjit"), "python": platform.python_version()}
    try:
        backend = get_backend()
    except BackendError as err:
        backend = f"unavailable ({err})"
    rows["backend"] = backend
    version = llvm_version()
    rows["llvm"] = ".".join(map(str, version)) if version else "not found"
    rows["libllvm"] = os.environ.get("DRJIT_LIBLLVM_PATH", "(Dr.Jit's default search)")
    if backend == "cuda":
        rows["device"] = f"{_gpu_name()} (CUDA {'.'.join(map(str, dr.detail.cuda_version()))})"
    else:
        simd = _simd()
        rows["device"] = f"{_cpu_name()}, {os.cpu_count()} logical cores" + (f", {simd}" if simd else "")
        target = llvm_target()
        if target is not None:  # what Dr.Jit compiles for (drct.cpu_target: hardware gathers or split ones)
            cpu, features, width = target
            rows["llvm target"] = f"{cpu}, {width} lanes" + (", fast-gather" if FLAG in features.split(",") else "")
    return rows


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("info", help="print version, backend, LLVM version and device (or a scene file)")
    parser.add_argument(
        "scene", nargs="?", help="a scene file (.toml) or a bundled scene's name: print the scene and its parameters"
    )
    parser.add_argument(
        "--allow-outside-files", action="store_true", help="let the scene read data files outside its own folder"
    )
    parser.add_argument(
        "--plot",
        metavar="PICTURE",
        help="draw the scene's geometry (sources, detector, a few views' rays, volume) into this picture (.png, .pdf)",
    )
    parser.add_argument("--views", type=int, default=4, help="with --plot: how many views to draw (default 4)")
    parser.add_argument("--force", action="store_true", help="with --plot: replace an existing picture")
    parser.set_defaults(func=run)


def picture_format(path: str, force: bool) -> str:
    """The picture format of ``path`` (its suffix; ``png`` without one), checked before any work: ValueError for
    a format matplotlib cannot write, FileExistsError for an existing file unless ``force``."""
    from matplotlib.figure import Figure

    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    supported = Figure().canvas.get_supported_filetypes()
    if fmt not in supported:
        raise ValueError(f"--plot {path}: cannot write .{fmt} pictures; use one of .{', .'.join(sorted(supported))}")
    refuse_overwrite([path], force)
    return fmt


def plot_scene(scene: Any, path: str, views: int, force: bool) -> Path:
    """Draw ``scene``'s exact geometry (misalignment included) and its volume box into ``path``, atomically;
    FileExistsError for an existing file unless ``force``."""
    from matplotlib.figure import Figure

    from ..geometry.projection import ProjectionGeometry

    fmt = picture_format(path, force)
    pg = scene.projection_geometry()
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.add_subplot(projection="3d") if pg.ndim == 3 else fig.add_subplot()
    if isinstance(pg, ProjectionGeometry):
        pg.plot(scene.volume, views, ax)
    else:
        pg.plot(scene.volume, None, ax)
    ax.set_title(f"{scene.name or Path(scene.file or 'scene').stem}: {pg!r}", fontsize="small")
    return write_together({path: lambda tmp: fig.savefig(tmp, format=fmt, dpi=120)}, overwrite=force)[0]


def run(args: argparse.Namespace) -> int:
    if getattr(args, "scene", None):
        from ..scene import load_scene

        scene = load_scene(args.scene, allow_outside=args.allow_outside_files)
        if args.plot:
            picture_format(args.plot, args.force)  # before any work
        print(scene.describe())
        if args.plot:
            print(f"geometry drawn in {plot_scene(scene, args.plot, args.views, args.force)}", file=sys.stderr)
        return 0
    if getattr(args, "plot", None):
        raise ValueError("--plot draws a scene's geometry: name a scene file or bundled scene")
    rows = info()
    width = max(map(len, rows))
    for key, value in rows.items():
        print(f"{key:{width}s} {value}")
    return 0
