"""Safe output files: never half-written, never overwritten unless asked."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path


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
