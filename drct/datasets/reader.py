"""``SimulatedDataset``: a dataset written by :func:`drct.datasets.generate` as a ``torch.utils.data.Dataset``.

Each item is a dict of CPU tensors: ``projections``, ``line_integrals``, ``phantom`` (when the dataset has one),
``geometry`` (vector rows), ``parameters`` (the drawn values, named by :attr:`SimulatedDataset.columns`) and
``seed``. The HDF5 file is opened lazily in each process, so the dataset works with ``DataLoader`` workers.

Example:
    >>> import tempfile, os, torch
    >>> from drct.datasets import Recipe, SimulatedDataset, generate
    >>> recipe = Recipe.from_file("scenes/shepp_logan_2d.toml", ["object.*.mu=uniform(0.01,0.03)"], seed=1, scale=0.1)
    >>> data = SimulatedDataset(generate(recipe, 4, os.path.join(tempfile.mkdtemp(), "data")))
    >>> batch = next(iter(torch.utils.data.DataLoader(data, batch_size=2)))
    >>> tuple(batch["phantom"].shape), data.columns, data.projection_geometry(0).shape
    ((2, 26, 26), ['object.phantom.mu'], (36, 32))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..geometry.factories import from_vectors
from ..geometry.projection import ProjectionGeometry
from ..geometry.volume import VolumeGeometry
from .store import ARRAYS, FILE, open_file


class SimulatedDataset(Dataset[dict[str, torch.Tensor]]):
    """The samples of a dataset folder (or its ``dataset.h5``).

    Args:
        path: the folder :func:`~drct.datasets.generate` wrote, or the HDF5 file in it.
        fields: which arrays each item holds (default all of :data:`drct.datasets.store.ARRAYS` present, and
            ``seed``).

    Example:
        >>> import os, tempfile
        >>> from drct.datasets import Recipe, SimulatedDataset, generate
        >>> vary = ["object.*.mu=uniform(0.01,0.03)"]
        >>> recipe = Recipe.from_file("scenes/shepp_logan_2d.toml", vary, seed=1, scale=0.1)
        >>> folder = generate(recipe, 2, os.path.join(tempfile.mkdtemp(), "data"))
        >>> data = SimulatedDataset(folder, fields=("projections",))
        >>> len(data), list(data[0]), tuple(data[0]["projections"].shape)
        (2, ['projections'], (36, 32))
    """

    def __init__(self, path: str | os.PathLike[str], fields: tuple[str, ...] | None = None) -> None:
        p = Path(path)
        self.path = p / FILE if p.is_dir() else p
        with open_file(self.path) as f:
            present = [name for name in ARRAYS if name in f] + ["seed"]
            self.attrs = dict(f.attrs)
            self._len = int(f["seeds"].shape[0])
        unknown = [name for name in fields or () if name not in present]
        if unknown:
            raise ValueError(f"{self.path}: no field(s) {unknown}; it holds {present}")
        self.fields = tuple(fields) if fields is not None else tuple(present)
        self._file: Any = None
        self._pid = -1

    def _h5(self) -> Any:
        if self._file is None or self._pid != os.getpid():  # a DataLoader worker: its own handle
            self._file, self._pid = open_file(self.path), os.getpid()
        return self._file

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"a dataset index is an integer, got {index!r}")
        i = int(index) + (self._len if index < 0 else 0)
        if not 0 <= i < self._len:
            raise IndexError(f"sample {index} out of range for a dataset of {self._len}")
        f = self._h5()
        out = {}
        for name in self.fields:
            value = np.asarray(f["seeds" if name == "seed" else name][i])
            out[name] = torch.from_numpy(value.astype(np.int64) if name == "seed" else value)
        return out

    @property
    def columns(self) -> list[str]:
        """The names of the ``parameters`` columns."""
        return [str(c) for c in self.attrs["columns"] if str(c)]

    @property
    def volume(self) -> VolumeGeometry | None:
        """The phantom's grid, or None."""
        if "volume_shape" not in self.attrs:
            return None
        a = self.attrs
        shape = tuple(int(n) for n in a["volume_shape"])
        size, center = (tuple(float(v) for v in a[k]) for k in ("voxel_size", "volume_center"))
        return VolumeGeometry(shape, size, center)

    def projection_geometry(self, index: int) -> ProjectionGeometry:
        """The exact geometry of sample ``index`` (with its misalignment), e.g. to reconstruct it."""
        if self.attrs["beam"] == "rays":
            raise ValueError(f"{self.path}: a ray-list scene; its rows are in geometry[{index}] (origin, direction)")
        shape = tuple(int(n) for n in self.attrs["det_shape"])
        rows = np.asarray(self._h5()["geometry"][index])
        det = shape[0] if len(shape) == 1 else (shape[0], shape[1])
        return from_vectors(rows, det, str(self.attrs["beam"]), bool(self.attrs["curved"]))

    def close(self) -> None:
        """Close this process's file handle (reopened on the next access)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_file": None, "_pid": -1}

    def __repr__(self) -> str:
        return f"SimulatedDataset({str(self.path)!r}, {self._len} samples, fields={list(self.fields)})"
