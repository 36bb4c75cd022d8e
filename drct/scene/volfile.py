"""Mitsuba's ``.vol`` grid files: read and write, with no Mitsuba import.

The format (Mitsuba 3 documentation, "gridvolume"): the bytes ``VOL``, the version byte ``3``, then
little-endian int32 ``encoding`` (1 = float32), int32 ``xres, yres, zres, channels``, six float32 for the
bounding box ``xmin, ymin, zmin, xmax, ymax, zmax``, then ``xres*yres*zres*channels`` float32 values,
channels innermost, then x, y and z: value ``((z * yres + y) * xres + x) * channels + c``.

Why not Mitsuba's own ``mi.VolumeGrid``: its Python API (Mitsuba 3.9) neither returns the bounding box it reads
nor takes one to write (a grid made from an array is written with the unit cube; Mitsuba 3 places grids with
``to_world`` instead), while drct's volume objects take their voxel size and centre from that box; and Mitsuba is
the optional ``meshes`` extra, while the bundled ``micro_ct_misaligned`` scene reads a ``.vol`` on a plain
install. ``tests/test_scene.py`` checks that both read each other's files value for value.

Example:
    >>> import numpy as np, os, tempfile
    >>> from drct.scene.volfile import read_vol, write_vol
    >>> path = os.path.join(tempfile.mkdtemp(), "a.vol")
    >>> write_vol(path, np.arange(24, dtype=np.float32).reshape(2, 3, 4), bbox=((0, 0, 0), (4, 3, 2)))
    >>> data, bbox = read_vol(path)
    >>> data.shape, float(data[1, 2, 3]), bbox[1]
    ((2, 3, 4), 23.0, (4.0, 3.0, 2.0))
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence

import numpy as np

from ..io import write_atomically

HEADER = struct.Struct("<3sBiiiii6f")


def read_vol(path: str | os.PathLike[str]) -> tuple[np.ndarray, tuple[tuple[float, ...], tuple[float, ...]]]:
    """The grid of a ``.vol`` file as a float32 ``(z, y, x)`` array (single channel) and its bounding box.

    Raises:
        ValueError: when the file is not a single-channel float32 ``.vol`` file or is truncated.

    Example:
        >>> import numpy as np, os, tempfile, drct as ct
        >>> path = os.path.join(tempfile.mkdtemp(), "grid.vol")
        >>> ct.scene.write_vol(path, np.arange(24, dtype=np.float32).reshape(2, 3, 4), ((0, 0, 0), (4, 3, 2)))
        >>> data, box = ct.scene.read_vol(path)
        >>> data.shape, box, float(data[1, 2, 3])
        ((2, 3, 4), ((0.0, 0.0, 0.0), (4.0, 3.0, 2.0)), 23.0)
    """
    with open(path, "rb") as f:
        head = f.read(HEADER.size)
        if len(head) < HEADER.size:
            raise ValueError(f"{path}: not a Mitsuba .vol file (only {len(head)} bytes)")
        magic, version, encoding, nx, ny, nz, channels, *box = HEADER.unpack(head)
        if magic != b"VOL" or version != 3:
            raise ValueError(f"{path}: not a Mitsuba .vol file (magic {magic!r}, version {version})")
        if encoding != 1:
            raise ValueError(f"{path}: .vol encoding {encoding} is not supported (expected 1 = float32)")
        if channels != 1 or min(nx, ny, nz) < 1:
            raise ValueError(f"{path}: expected a single-channel grid, got {channels} channels and size {nx}x{ny}x{nz}")
        count = nx * ny * nz
        data = np.frombuffer(f.read(4 * count), dtype="<f4")
    if data.size != count:
        raise ValueError(f"{path}: truncated .vol file: {data.size} of {count} values")
    bbox = (tuple(float(b) for b in box[:3]), tuple(float(b) for b in box[3:]))
    return data.reshape(nz, ny, nx).astype(np.float32), bbox


def write_vol(
    path: str | os.PathLike[str],
    data: np.ndarray,
    bbox: tuple[Sequence[float], Sequence[float]] | None = None,
) -> None:
    """Write a ``(z, y, x)`` array as a single-channel float32 ``.vol`` file (atomically).

    Args:
        path: the output file.
        data: 3D array indexed ``(z, y, x)``.
        bbox: ``((xmin, ymin, zmin), (xmax, ymax, zmax))``; default the unit cube.

    Example:
        >>> import numpy as np, os, tempfile, drct as ct
        >>> path = os.path.join(tempfile.mkdtemp(), "grid.vol")
        >>> ct.scene.write_vol(path, np.ones((2, 3, 4)))  # bounding box: the unit cube
        >>> ct.scene.read_vol(path)[1]
        ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    """
    arr = np.asarray(data, dtype="<f4")
    if arr.ndim != 3:
        raise ValueError(f"a .vol grid is 3D (z, y, x), got shape {arr.shape}")
    lo, hi = bbox if bbox is not None else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    nz, ny, nx = arr.shape
    head = HEADER.pack(b"VOL", 3, 1, nx, ny, nz, 1, *[float(v) for v in (*lo, *hi)])

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(head)
            f.write(np.ascontiguousarray(arr).tobytes())

    write_atomically(path, write)
