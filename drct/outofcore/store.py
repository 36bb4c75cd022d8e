"""Arrays on disk, read and written a block of the first axis at a time: ``.npy`` files, zarr arrays, TIFF stacks.

Projections ``(views, rows, cols)`` are read a chunk of views at a time and volumes ``(z, y, x)`` written a slab
of ``z`` at a time, so neither needs to fit in memory. :func:`open_array` opens an existing array (kind from the
path), :func:`create_array` a new one to write:

- ``.npy``: read and written in place with plain file reads and writes at the block's offset (the memory-map
  layout of ``numpy.load(mmap_mode="r")``, without keeping pages mapped: the process's RSS stays bounded);
- ``.zarr``: a zarr array (the optional extra ``drct[zarr]``), chunked along the first axis;
- ``.tif``/``.tiff``: a multi-page TIFF (one page per block entry; read only), or a folder of single-image TIFFs
  sorted by name (read only; a ``projections/`` sub-folder is used when there is one).

Every block read is a fresh numpy array of the store's dtype; non-finite values are the caller's to refuse
(:func:`drct.errors.require_finite`).

Example:
    >>> import numpy as np, os, tempfile
    >>> from drct.outofcore.store import create_array, open_array
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> out = create_array(path, (4, 2, 3), "float32")
    >>> out.write(1, np.ones((2, 2, 3), np.float32))
    >>> out.flush()
    >>> a = open_array(path)
    >>> a.shape, a.read(0, 4)[:, 0, 0].tolist()
    ((4, 2, 3), [0.0, 1.0, 1.0, 0.0])
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from ..formats.tiffstack import SUBFOLDERS, SUFFIXES
from ..io import read_tiff, regular_file

ZARR_EXTRA = "the zarr extra (pip install 'drct[zarr]')"


def _zarr() -> Any:
    try:
        import zarr
    except ImportError:
        raise ImportError(f"reading and writing .zarr arrays needs {ZARR_EXTRA}") from None
    return zarr


class ChunkedArray(ABC):
    """An array on disk, read and written in blocks of its first axis.

    Attributes:
        path: where it lives.
        shape: its shape.
        dtype: its element type.

    Example:
        >>> import numpy as np, os, tempfile
        >>> from drct.outofcore import create_array
        >>> a = create_array(os.path.join(tempfile.mkdtemp(), "a.npy"), (3, 2, 2))  # a ChunkedArray of zeros
        >>> a.write(1, np.ones((2, 2, 2)))
        >>> a.kind, a.shape, a.read(0, 3)[:, 0, 0].tolist()
        ('npy', (3, 2, 2), [0.0, 1.0, 1.0])
    """

    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def kind(self) -> str:
        """``"npy"``, ``"zarr"`` or ``"tiff"``."""
        return type(self).__name__.removesuffix("Array").lower()

    def _check_block(self, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= self.shape[0]:
            raise IndexError(f"{self.path}: block [{start}, {stop}) outside its first axis of {self.shape[0]}")

    def read(self, start: int, stop: int) -> np.ndarray:
        """Entries ``start .. stop - 1`` of the first axis, a new array of shape ``(stop - start, *shape[1:])``."""
        self._check_block(start, stop)
        return self._read(start, stop)

    def write(self, start: int, block: np.ndarray) -> None:
        """Store ``block`` (cast to the store's dtype) at ``start`` along the first axis."""
        block = np.asarray(block, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:]:
            raise ValueError(f"{self.path}: a block of shape {block.shape} does not fit an array of {self.shape}")
        self._check_block(start, start + block.shape[0])
        self._write(start, block)

    @abstractmethod
    def flush(self) -> None:
        """Make what was written durable (``fsync``) before a manifest says it is done."""

    @abstractmethod
    def _read(self, start: int, stop: int) -> np.ndarray: ...

    def _write(self, start: int, block: np.ndarray) -> None:
        raise ValueError(f"{self.path}: {self.kind} arrays are read-only here; write .npy or .zarr")


class NpyArray(ChunkedArray):
    """A C-ordered ``.npy`` file, blocks read and written at their byte offsets."""

    def __init__(self, path: str | os.PathLike[str], writable: bool = False) -> None:
        self.path = regular_file(path, "array file")
        try:
            mapped = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:  # a bad header, a truncated file, an .npz archive
            raise ValueError(f"{self.path}: not a readable .npy file ({err})") from None
        if not isinstance(mapped, np.memmap):
            raise ValueError(f"{self.path}: not a .npy array file")
        self.shape, self.dtype, self.offset = tuple(mapped.shape), mapped.dtype, int(mapped.offset)
        fortran = bool(mapped.flags.f_contiguous and not mapped.flags.c_contiguous)
        del mapped  # unmapped: reads below copy through the page cache
        if fortran:
            raise ValueError(f"{self.path}: a Fortran-ordered .npy file; save it C-ordered (np.ascontiguousarray)")
        if self.dtype.hasobject or self.dtype.kind not in "biuf" or not self.shape:
            raise ValueError(f"{self.path}: must hold an array of numbers, got {self.shape} of {self.dtype}")
        self._file = open(self.path, "r+b" if writable else "rb")  # closed by __del__

    @property
    def _row_bytes(self) -> int:
        return math.prod(self.shape[1:]) * self.dtype.itemsize

    def _read(self, start: int, stop: int) -> np.ndarray:
        count = (stop - start) * math.prod(self.shape[1:])
        self._file.seek(self.offset + start * self._row_bytes)
        data = np.fromfile(self._file, dtype=self.dtype, count=count)
        if data.size != count:
            raise ValueError(f"{self.path}: truncated: block [{start}, {stop}) is not all in the file")
        return data.reshape((stop - start, *self.shape[1:]))

    def _write(self, start: int, block: np.ndarray) -> None:
        if self._file.mode == "rb":
            raise ValueError(f"{self.path}: opened for reading only")
        self._file.seek(self.offset + start * self._row_bytes)
        np.ascontiguousarray(block).tofile(self._file)

    def flush(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def __del__(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()


class ZarrArray(ChunkedArray):
    """A zarr array (a ``.zarr`` folder)."""

    def __init__(self, path: str | os.PathLike[str], writable: bool = False) -> None:
        zarr = _zarr()
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"zarr array {self.path} does not exist (a .zarr folder)")
        try:
            self._array = zarr.open_array(self.path, mode="r+" if writable else "r")
        except Exception as err:  # zarr raises many kinds for a folder that is not an array
            raise ValueError(f"{self.path}: not a readable zarr array ({type(err).__name__}: {err})") from None
        self.shape, self.dtype = tuple(int(n) for n in self._array.shape), np.dtype(self._array.dtype)
        if self.dtype.kind not in "biuf" or not self.shape:
            raise ValueError(f"{self.path}: must hold an array of numbers, got {self.shape} of {self.dtype}")

    def _read(self, start: int, stop: int) -> np.ndarray:
        return np.array(self._array[start:stop], dtype=self.dtype)

    def _write(self, start: int, block: np.ndarray) -> None:
        self._array[start : start + block.shape[0]] = block

    def flush(self) -> None:
        """Nothing to do: zarr writes each chunk's file when it is assigned."""


class TiffArray(ChunkedArray):
    """A multi-page TIFF file or a folder of single-image TIFFs (sorted by name): one page or file per entry."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import tifffile

        self.path = Path(path)
        if self.path.is_dir():
            fields = [n for kind in ("flat", "dark") for n in SUBFOLDERS[kind] if (self.path / n).is_dir()]
            if fields:
                raise ValueError(
                    f"{self.path} holds flat/dark fields ({', '.join(fields)}): blocks are read as they are stored; "
                    "normalise the readings to line integrals first (drct.formats)"
                )
            root = next((self.path / n for n in SUBFOLDERS["projections"] if (self.path / n).is_dir()), self.path)
            self.files = sorted(q for q in root.iterdir() if q.suffix.lower() in SUFFIXES)
            if not self.files:
                raise ValueError(f"no .tif/.tiff images in folder {root}")
            first = read_tiff(self.files[0], "TIFF image")
            self.shape, self.dtype = (len(self.files), *first.shape), first.dtype
            return
        self.files = []
        regular_file(self.path, "TIFF stack")
        try:
            with tifffile.TiffFile(self.path) as tif:
                page = tif.pages.first
                self.shape = (len(tif.pages), *(int(n) for n in page.shape))
                self.dtype = np.dtype(page.dtype)
                samples = int(page.samplesperpixel)
        except (ValueError, OSError, EOFError, IndexError, KeyError, TypeError) as err:
            raise ValueError(f"{self.path}: not a readable TIFF file ({err})") from None
        if samples != 1:
            raise ValueError(f"{self.path}: pages of {samples} samples (colour?); expected grey images, one a page")

    def flush(self) -> None:
        """Nothing to do: read-only."""

    def _read(self, start: int, stop: int) -> np.ndarray:
        import tifffile

        if self.files:
            images = [read_tiff(q, "TIFF image") for q in self.files[start:stop]]
        else:
            with tifffile.TiffFile(self.path) as tif:
                images = [np.asarray(tif.pages[i].asarray()) for i in range(start, stop)]  # type: ignore[union-attr]
        for image, index in zip(images, range(start, stop), strict=True):
            if image.shape != self.shape[1:]:
                raise ValueError(f"{self.path}: image {index} has shape {image.shape}, the first {self.shape[1:]}")
        return np.stack(images).astype(self.dtype, copy=False) if images else np.empty((0, *self.shape[1:]))


def kind_of(path: str | os.PathLike[str]) -> str:
    """The store kind a path names: ``"npy"``, ``"zarr"`` or ``"tiff"`` (a ``.tif``/``.tiff`` file or a folder).

    Example:
        >>> from drct.outofcore import kind_of
        >>> kind_of("y.npy"), kind_of("volume.zarr"), kind_of("projections.tif")
        ('npy', 'zarr', 'tiff')
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return "npy"
    if suffix == ".zarr":
        return "zarr"
    if suffix in SUFFIXES or (p.is_dir() and suffix == ""):
        return "tiff"
    raise ValueError(f"{p}: an array store must be a .npy file, a .zarr folder, a .tif/.tiff stack or a TIFF folder")


def open_array(path: str | os.PathLike[str], writable: bool = False) -> ChunkedArray:
    """Open an existing array on disk for block reads (and writes with ``writable``; ``.npy`` and zarr only).

    Example:
        >>> import numpy as np, os, tempfile
        >>> from drct.outofcore import open_array
        >>> path = os.path.join(tempfile.mkdtemp(), "y.npy")
        >>> np.save(path, np.arange(6, dtype=np.float32).reshape(3, 2))
        >>> open_array(path).read(1, 3).tolist()
        [[2.0, 3.0], [4.0, 5.0]]
    """
    kind = kind_of(path)
    if kind == "npy":
        return NpyArray(path, writable)
    if kind == "zarr":
        return ZarrArray(path, writable)
    if writable:
        raise ValueError(f"{path}: TIFF stacks are read-only here; write .npy or .zarr")
    return TiffArray(path)


def create_array(
    path: str | os.PathLike[str], shape: tuple[int, ...], dtype: Any = "float32", block: int = 1
) -> ChunkedArray:
    """A new array of zeros on disk (``.npy``: a sparse file; ``.zarr``: chunks of ``block`` entries of the first
    axis, absent chunks read as zeros). An existing file or folder there is replaced.

    Args:
        path: ``.npy`` or ``.zarr``.
        shape: its shape.
        dtype: its element type.
        block: zarr's chunk length along the first axis (the slab depth written at once).

    Example:
        >>> import os, tempfile
        >>> from drct.outofcore import create_array
        >>> a = create_array(os.path.join(tempfile.mkdtemp(), "x.npy"), (64, 128, 128), "float32")  # sparse on disk
        >>> a.shape, a.dtype.name, float(a.read(63, 64).max())
        ((64, 128, 128), 'float32', 0.0)
    """
    p, dtype, shape = Path(path), np.dtype(dtype), tuple(int(n) for n in shape)
    kind = kind_of(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    if kind == "npy":
        mapped = np.lib.format.open_memmap(p, mode="w+", dtype=dtype, shape=shape)  # header + a sparse file
        del mapped
        return NpyArray(p, writable=True)
    if kind == "zarr":
        zarr = _zarr()
        chunks = (max(1, min(int(block), shape[0])), *shape[1:])
        zarr.create_array(store=p, shape=shape, chunks=chunks, dtype=dtype, fill_value=0, overwrite=True)
        return ZarrArray(p, writable=True)
    raise ValueError(f"{p}: arrays are written as .npy or .zarr (a TIFF stack is written from one at the end)")


def write_tiff_stack(source: ChunkedArray, path: str | os.PathLike[str], block: int = 16) -> None:
    """Copy ``source`` into a multi-page TIFF at ``path`` (one page per entry of the first axis), ``block`` entries
    in memory at a time.

    Example:
        >>> import numpy as np, os, tempfile
        >>> from drct.outofcore import create_array, open_array, write_tiff_stack
        >>> root = tempfile.mkdtemp()
        >>> a = create_array(os.path.join(root, "a.npy"), (3, 2, 2))
        >>> a.write(0, np.arange(12).reshape(3, 2, 2))
        >>> write_tiff_stack(a, os.path.join(root, "a.tif"))
        >>> tif = open_array(os.path.join(root, "a.tif"))
        >>> tif.kind, tif.shape, float(tif.read(2, 3)[0, 1, 1])
        ('tiff', (3, 2, 2), 11.0)
    """
    import tifffile

    with tifffile.TiffWriter(path, bigtiff=source.dtype.itemsize * math.prod(source.shape) > 2**31) as tif:
        for start in range(0, source.shape[0], block):
            for page in source.read(start, min(source.shape[0], start + block)):
                tif.write(page, contiguous=True)
