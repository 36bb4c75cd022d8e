"""The on-disk layout of a simulated dataset: one HDF5 file, ``dataset.h5``, chunked one sample per chunk.

Datasets (first axis: the sample index ``0..N-1``):

* ``projections`` ``(N, *pg.shape)`` float32 — noisy projections after the log transform;
* ``line_integrals`` ``(N, *pg.shape)`` float32 — the clean ones;
* ``phantom`` ``(N, *vg.shape)`` float32 — attenuation (1/mm) on the ``[volume]`` grid (absent without one);
* ``geometry`` ``(N, views, 6 | 12)`` float64 — the exact geometry's ASTRA-style vector rows;
* ``seeds`` ``(N,)`` uint32 — the noise seed of each sample;
* ``parameters`` ``(N, P)`` float64 — the drawn values, column names in the attribute ``columns``.

File attributes: ``format`` (:data:`FORMAT`), ``scene`` (the scene's name), ``seed`` (the master seed),
``vary`` (the variations, as given), ``scale`` (as loaded; ``scene.toml`` beside the file is already at that
scale), ``beam``, ``curved``, ``det_shape``, and the volume grid
(``volume_shape``, ``voxel_size``, ``volume_center``) when there is a phantom.

The writer adds samples strictly in index order, with HDF5's object timestamps off, so the same samples give
the same bytes whoever computed them and in whatever order they finished.

Example:
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> from drct.datasets.store import Writer, open_file
    >>> path = Path(tempfile.mkdtemp()) / "dataset.h5"
    >>> sample = {"projections": np.ones((2, 3), np.float32), "seed": np.uint32(5), "parameters": np.zeros(1)}
    >>> with Writer(path, 2, sample, {"scene": "demo"}) as w:
    ...     w.append(0, sample)
    ...     w.append(1, sample)
    >>> with open_file(path) as f:
    ...     f["projections"].shape, int(f["seeds"][1]), f.attrs["scene"]
    ((2, 2, 3), 5, 'demo')
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import numpy as np

from ..extras import require

FORMAT = "drct-simulated-dataset-1"
FILE = "dataset.h5"
ARRAYS = ("projections", "line_integrals", "phantom", "geometry", "parameters")  # per-sample arrays, in file order


def optional(module: str, purpose: str) -> ModuleType:
    """Import an optional dependency of the ``ray`` extra, or :class:`~drct.extras.MissingExtraError` naming it."""
    return require(module, purpose, extra="ray")


def open_file(path: str | os.PathLike[str]) -> Any:
    """A dataset file opened read-only; ValueError if it is not one drct wrote."""
    h5 = optional("h5py", "a simulated dataset (HDF5)")
    try:
        f = h5.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({err})") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise ValueError(f"{path}: not a drct simulated dataset (format attribute {FORMAT!r} missing)")
    return f


class Writer:
    """Writes ``count`` samples shaped like ``first`` into a new HDF5 file at ``path``, in index order."""

    def __init__(self, path: Path, count: int, first: dict[str, Any], attrs: dict[str, Any]) -> None:
        h5 = optional("h5py", "a simulated dataset (HDF5)")
        self.count, self.next = count, 0
        self.file = h5.File(path, "w", libver=("earliest", "v110"), track_order=False)
        self.file.attrs["format"] = FORMAT
        for key, value in attrs.items():
            self.file.attrs[key] = value
        self.shapes: dict[str, tuple[int, ...]] = {}
        for name in ARRAYS:
            if name in first:
                a = np.asarray(first[name])
                self.shapes[name] = a.shape
                chunks = (1, *a.shape) if a.size else None
                self.file.create_dataset(name, (count, *a.shape), a.dtype, chunks=chunks, track_times=False)
        self.file.create_dataset("seeds", (count,), np.uint32, track_times=False)

    def append(self, index: int, sample: dict[str, Any]) -> None:
        """Write sample ``index``, which must be the next one; ValueError if its shapes differ from the first's."""
        if index != self.next:
            raise RuntimeError(f"samples must be written in order: expected {self.next}, got {index}")
        for name, shape in self.shapes.items():
            a = np.asarray(sample[name])
            if a.shape != shape:
                raise ValueError(f"sample {index}: {name} has shape {a.shape}, the first sample's is {shape}")
            self.file[name][index] = a
        self.file["seeds"][index] = sample["seed"]
        self.next += 1

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
        if kind is None and self.next != self.count:
            raise RuntimeError(f"the dataset has {self.next} of its {self.count} samples")
