"""``drct info [SCENE]``: versions, backend, LLVM and device; with a scene file, the scene and its parameters.

Example:
    $ drct info
    $ drct info scenes/shepp_logan_2d.toml
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
        rows["device"] = f"{_cpu_name()}, {os.cpu_count()} logical cores"
    return rows


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("info", help="print version, backend, LLVM version and device (or a scene file)")
    parser.add_argument(
        "scene", nargs="?", help="a scene file (.toml) or a bundled scene's name: print the scene and its parameters"
    )
    parser.add_argument(
        "--allow-outside-files", action="store_true", help="let the scene read data files outside its own folder"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "scene", None):
        from ..scene import load_scene

        print(load_scene(args.scene, allow_outside=args.allow_outside_files).describe())
        return 0
    for key, value in info().items():
        print(f"{key:8s} {value}")
    return 0
