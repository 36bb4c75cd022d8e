"""Safe files: inputs checked before they are read, outputs never half-written and never overwritten unless asked.

Reading: :func:`read_array` (and :func:`read_projections`) accept only regular files (a FIFO or a device would
block or never end), inspect a ``.npy`` header or a TIFF's pages for shape and dtype *before* allocating, refuse
files that are truncated or too large for the available memory (:func:`drct.memory.require_memory`), and turn
every parser failure into a ``ValueError`` naming the file.

Writing: :func:`write_atomically` (one file), :func:`write_together` (a set of files whose members must never
come from two different runs) and :func:`output_folder` (a whole folder built beside its destination and renamed
into place at the end).

Example:
    >>> import numpy as np, os, tempfile
    >>> from drct.io import output_folder, read_array
    >>> out = os.path.join(tempfile.mkdtemp(), "run")
    >>> with output_folder(out, force=False) as staging:
    ...     np.save(staging / "a.npy", np.arange(3.0))
    >>> read_array(os.path.join(out, "a.npy"), "a").tolist()
    [0.0, 1.0, 2.0]
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import math
import os
import shutil
import stat
import struct
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .memory import require_memory

_STAGING = ".partial-"  # the staging folder of output_folder: ".<name>.partial-<random>" beside the output


def _refuse_file_in_the_way(path: Path) -> None:
    """NotADirectoryError if a regular file stands where a folder above ``path`` must be created."""
    for above in path.absolute().parents:
        if above.exists():
            if not above.is_dir():
                raise NotADirectoryError(f"cannot write {path}: {above} is a file, not a folder")
            return


def refuse_overwrite(paths: Iterable[str | os.PathLike[str]], force: bool) -> None:
    """Raise FileExistsError naming every existing path, unless ``force``; IsADirectoryError for a path that is
    a folder and NotADirectoryError for one below a regular file (whatever ``force``): these are files to write.
    """
    paths = [Path(p) for p in paths]
    for p in paths:
        if p.is_dir():
            raise IsADirectoryError(f"{p} is a folder, but a file is to be written there: choose a file path")
        _refuse_file_in_the_way(p)
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise FileExistsError(
            f"refusing to overwrite {', '.join(existing)}: pass force/--force or choose another output"
        )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_together(writers: Mapping[Any, Callable[[str], object] | None], overwrite: bool = False) -> list[Path]:
    """Write a set of files so that no reader ever sees members of two different writes side by side.

    Every ``write(tmp)`` first writes a temporary file beside its target (``.<name>.<random><suffix>``); only when
    all succeeded are the old companions (every target but the first) removed, the first target (the primary)
    renamed into place and then the companions. A reader therefore sees the old set, the primary without
    companions, or the new set; an error or a kill while writing leaves the old set untouched.

    Args:
        writers: ``{target path: write(tmp_path)}``, the primary first; a companion whose writer is None is not
            part of the new set: an old file there is removed with the other old companions.
        overwrite: replace existing targets (otherwise FileExistsError naming them).

    Returns:
        The targets written.

    Example:
        >>> import os, tempfile
        >>> from pathlib import Path
        >>> from drct.io import write_together
        >>> d = Path(tempfile.mkdtemp())
        >>> [p.name for p in write_together({d / "a.txt": lambda t: Path(t).write_text("a"),
        ...                                  d / "a.md": lambda t: Path(t).write_text("b")})]
        ['a.txt', 'a.md']
    """
    targets = [Path(p) for p in writers]
    refuse_overwrite(targets, overwrite)
    temps: dict[Path, str] = {}
    mode = 0o666 & ~_umask()
    try:
        for target, write in zip(targets, writers.values(), strict=True):
            if write is None:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
            os.close(fd)
            temps[target] = tmp
            write(tmp)
            os.chmod(tmp, mode)
        primary, *companions = targets
        for target in companions:  # no old companion may outlive the switch of the primary
            target.unlink(missing_ok=True)
        for target in (primary, *companions):
            if target in temps:
                os.replace(temps.pop(target), target)
    finally:
        for tmp in temps.values():
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return targets


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
    return write_together({path: write}, overwrite=True)[0]


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically (numpy scalars become floats)."""
    text = json.dumps(data, indent=1, default=float) + "\n"
    return write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_tiff(path: str | os.PathLike[str], array: Any) -> None:
    """Write ``array`` as a grey-value TIFF stack (one page per leading index), never read as colour: tifffile
    otherwise takes a last axis of 3 or 4 as RGB(A) samples. Not atomic by itself: a writer for
    :func:`write_atomically` / :func:`write_together`.

    Example:
        >>> import numpy as np, os, tempfile, tifffile
        >>> from drct.io import save_tiff
        >>> path = os.path.join(tempfile.mkdtemp(), "v.tif")
        >>> save_tiff(path, np.zeros((2, 5, 3), np.float32))  # 3 columns: still grey values, not RGB
        >>> tifffile.imread(path).shape, tifffile.TiffFile(path).pages[0].photometric.name
        ((2, 5, 3), 'MINISBLACK')
    """
    import tifffile

    tifffile.imwrite(path, np.asarray(array), photometric="minisblack")


# ---------------------------------------------------------------------------------------------- output folders
def check_output_folder(path: str | os.PathLike[str], force: bool, expected: Iterable[str] | None = None) -> Path:
    """The checks of :func:`output_folder`, to run before a long computation; returns the folder's real path."""
    target = Path(os.path.realpath(path))
    _refuse_file_in_the_way(target)
    if not target.exists():
        return target
    if not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder: choose another output folder")
    entries = sorted(p.name for p in target.iterdir())
    if not entries:
        return target
    if not force:
        shown = ", ".join(str(target / n) for n in entries[:6]) + (", ..." if len(entries) > 6 else "")
        raise FileExistsError(f"refusing to overwrite {shown}: pass force/--force or choose another output")
    if expected is not None:
        foreign = [n for n in entries if n not in set(expected)]
        if foreign:
            raise FileExistsError(
                f"refusing to replace the folder {target}: it holds files drct did not write there "
                f"({', '.join(foreign[:6])}{', ...' if len(foreign) > 6 else ''}); choose another output folder"
            )
    return target


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the OS cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):  # not glibc >= 2.28 (macOS, Windows, musl)
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _swap_in(staging: Path, target: Path) -> None:
    if not target.exists():
        os.rename(staging, target)
        return
    if _exchange(staging, target):  # one atomic step: readers see the old folder, then the new one
        shutil.rmtree(staging, ignore_errors=True)  # now the old one
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def output_folder(
    path: str | os.PathLike[str], force: bool = False, expected: Iterable[str] | None = None
) -> Iterator[Path]:
    """Build an output folder as one unit: yield an empty staging folder beside ``path``, rename it into place
    when the block ends without an error.

    A reader never sees a mix of two runs: until the end ``path`` is untouched (or absent); then the staging
    folder replaces it (on Linux in one atomic exchange; elsewhere the old folder is renamed away just before,
    and removed after). An error inside the block removes the staging folder; a kill leaves it, named
    ``.<name>.partial-<random>``, beside ``path`` and ``path`` untouched.

    Args:
        path: the output folder.
        force: replace an existing non-empty folder (otherwise FileExistsError naming its files). An empty
            folder is always replaced.
        expected: with ``force``, the names an existing folder may hold (the files of an earlier run): a folder
            holding anything else is refused rather than deleted. None: no such check.

    Raises:
        FileExistsError: ``path`` is a file, or a non-empty folder without ``force``, or holds foreign files.
    """
    target = check_output_folder(path, force, expected)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}{_STAGING}"))
    os.chmod(staging, 0o777 & ~_umask())
    try:
        yield staging
        check_output_folder(target, force, expected)  # again: the folder may have changed meanwhile
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------------- reading
def regular_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` if it is a regular file (after following symlinks); FileNotFoundError or ValueError otherwise.

    Checked with ``stat``, which never blocks: opening a FIFO would wait for a writer forever.
    """
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {p} does not exist") from None
    except (OSError, ValueError) as err:  # ValueError: an embedded NUL byte
        raise ValueError(f"{what} {p}: cannot access it ({err})") from None
    if not stat.S_ISREG(mode):
        kind = "folder" if stat.S_ISDIR(mode) else "FIFO" if stat.S_ISFIFO(mode) else "special file"
        raise ValueError(f"{what} {p} is a {kind}, not a regular file")
    return p


def _array_bytes(shape: tuple[int, ...], dtype: np.dtype[Any]) -> int:
    return math.prod(shape) * dtype.itemsize  # Python ints: no overflow


def read_npy(path: str | os.PathLike[str], what: str = "array file") -> np.ndarray:
    """A ``.npy`` file, its header checked first: the magic string (an ``.npz`` archive is named as such), a
    numeric dtype, and a declared size that the file holds and the memory can take."""
    p = regular_file(path, what)
    fmt = np.lib.format
    with open(p, "rb") as f:
        try:
            version = fmt.read_magic(f)
        except ValueError:
            f.seek(0)
            head = f.read(4)
            kind = "empty" if not head else "a zip archive (an .npz?)" if head.startswith(b"PK") else "no NumPy header"
            raise ValueError(f"{p}: not a .npy file ({kind}); save one array with numpy.save") from None
        try:
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(f)
            else:
                shape, _, dtype = fmt.read_array_header_2_0(f)
        except (ValueError, SyntaxError, TypeError) as err:
            raise ValueError(f"{p}: invalid .npy header ({err})") from None
        if any(n < 0 for n in shape):
            raise ValueError(f"{p}: invalid .npy header (negative shape {shape})")
        if dtype.hasobject or dtype.kind not in "biuf":
            raise ValueError(f"{p}: {what} must hold numbers, got dtype {dtype}")
        nbytes = _array_bytes(shape, dtype)
        held = os.fstat(f.fileno()).st_size - f.tell()
        if held < nbytes:
            raise ValueError(
                f"{p}: truncated .npy file: the header declares shape {shape} of {dtype} ({nbytes} bytes) "
                f"but only {held} bytes follow"
            )
        require_memory(nbytes + math.prod(shape) * 4, f"reading {p} (shape {shape}, {dtype})")
        f.seek(0)
        return fmt.read_array(f, allow_pickle=False)


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """tifffile logs what it skips in a damaged file: the caller raises one clear error instead."""
    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def read_tiff(path: str | os.PathLike[str], what: str = "TIFF file") -> np.ndarray:
    """The first series of a TIFF file (a multi-page stack: ``(pages, rows, cols)``), its shape and dtype
    checked against the available memory before the pixels are read."""
    import tifffile

    p = regular_file(path, what)
    try:
        with _quiet_tifffile(), tifffile.TiffFile(p) as tif:
            if not tif.series:
                raise ValueError("no image data")
            series = tif.series[0]
            shape, dtype = tuple(int(n) for n in series.shape), np.dtype(series.dtype)
            require_memory(_array_bytes(shape, dtype) + math.prod(shape) * 4, f"reading {p} (shape {shape})")
            data = np.asarray(tif.asarray())
    except MemoryError:
        raise
    except (ValueError, OSError, EOFError, IndexError, KeyError, TypeError, struct.error) as err:
        raise ValueError(f"{p}: not a readable TIFF file ({err})") from None
    if data.shape != shape:
        raise ValueError(f"{p}: damaged TIFF file: its pages give {data.shape}, its header {shape}")
    return data


def read_tiff_slices(folder: str | os.PathLike[str], what: str = "slice folder") -> np.ndarray:
    """A folder of single-image TIFF slices (sorted by name), stacked along the first axis."""
    root = Path(folder)
    files = sorted(q for q in root.iterdir() if q.suffix.lower() in (".tif", ".tiff"))
    if not files:
        raise ValueError(f"no .tif/.tiff slices in folder {root}")
    slices = [read_tiff(q, f"{what} slice") for q in files]  # each a regular file, checked before it is opened
    if len({s.shape for s in slices}) != 1:
        raise ValueError(f"{root}: the slices differ in shape: {sorted({s.shape for s in slices})}")
    return np.stack(slices)


def read_array(path: str | os.PathLike[str], what: str = "array file") -> np.ndarray:
    """A numeric array from ``.npy`` or a TIFF file (:func:`read_npy`, :func:`read_tiff`), errors naming it."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return read_npy(p, what)
    if suffix in (".tif", ".tiff"):
        return read_tiff(p, what)
    raise ValueError(f"{p}: {what} must be a .npy file or a .tif/.tiff stack, got {suffix!r}")


def read_projections(path: str | os.PathLike[str]) -> np.ndarray:
    """A projection array from ``.npy`` or a TIFF stack, as float32, with errors that name the file."""
    data = read_array(path, "projections file")
    if not np.issubdtype(data.dtype, np.number):
        raise ValueError(f"{path}: projections must be numeric, got dtype {data.dtype}")
    return np.asarray(data, dtype=np.float32)
