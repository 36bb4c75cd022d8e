"""Safe output files: never half-written, never overwritten unless asked."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np


def refuse_overwrite(paths: Iterable[str | os.PathLike[str]], force: bool) -> None:
    """Raise FileExistsError naming every existing path, unless ``force``."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not force:
        raise FileExistsError(
            f"refusing to overwrite {', '.join(existing)}: pass force/--force or choose another output"
        )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: str | os.PathLike[str], write: Callable[[str], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place (with the permissions
    a plain ``open`` would give it: 0666 less the umask).

    Example:
        >>> import numpy as np, tempfile, os
        >>> from drct.io import write_atomically
        >>> out = os.path.join(tempfile.mkdtemp(), "a.npy")
        >>> write_atomically(out, lambda tmp: np.save(tmp, np.zeros(3))).name
        'a.npy'
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically (numpy scalars become floats)."""
    text = json.dumps(data, indent=1, default=float) + "\n"
    return write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_projections(path: str | os.PathLike[str]) -> np.ndarray:
    """A projection array from ``.npy`` or a TIFF stack, as float32, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"projections file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        data = np.load(path, allow_pickle=False)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        data = tifffile.imread(path)
    else:
        raise ValueError(f"{path}: projections must be a .npy file or a .tif/.tiff stack, got {suffix!r}")
    if not np.issubdtype(data.dtype, np.number):
        raise ValueError(f"{path}: projections must be numeric, got dtype {data.dtype}")
    return np.asarray(data, dtype=np.float32)
