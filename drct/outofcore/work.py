"""The work folder of a resumable out-of-core run: its scratch arrays and a manifest of what is done.

A run keeps its state in a folder beside its output (``.<output name>.ooc-partial``): array stores and
``manifest.json``, which holds the run's *key* (what identifies its inputs: the data's path, size and
modification time, the geometry's digest, the options), its *plan* (chunk sizes) and per stage how far it got.
The manifest is rewritten atomically (:func:`drct.io.write_json`) only after the data it counts are flushed to
disk, so after a kill it never claims more than is there. Started again with the same key the run resumes from
there, with the same plan (the same bytes as an uninterrupted run); with another key it is refused, unless
``resume=False``, which starts over.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from drct.outofcore.work import WorkFolder
    >>> folder = Path(tempfile.mkdtemp()) / ".x.npy.ooc-partial"
    >>> run = WorkFolder(folder, {"input": "a"}, {"views": 4}, resume=True, stages=("chunks",))
    >>> run.done["chunks"] = 3
    >>> run.save()
    >>> WorkFolder(folder, {"input": "a"}, {"views": 8}, resume=True, stages=("chunks",)).done, run.plan
    ({'chunks': 3}, {'views': 4})
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MemoryBudgetError
from ..geometry.projection import ProjectionGeometry
from ..geometry.volume import VolumeGeometry
from ..io import write_json
from ..memory import format_bytes
from .store import ChunkedArray, create_array, open_array

MANIFEST = "manifest.json"
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_memory(value: Any) -> int:
    """A memory size in bytes from an int or a string such as ``"4GiB"``, ``"512M"``, ``"2.5 GB"``.

    ``K``, ``M``, ``G``, ``T`` with or without ``iB`` are binary (``2**30`` for ``G``); ``KB``, ``MB``, ``GB``,
    ``TB`` decimal (``10**9`` for ``GB``).

    Example:
        >>> parse_memory("4GiB"), parse_memory("1.5G"), parse_memory("2GB"), parse_memory(1024)
        (4294967296, 1610612736, 2000000000, 1024)
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        size = int(value)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b?)\s*", str(value), re.IGNORECASE)
        if match is None or isinstance(value, bool):
            raise ValueError(f"memory must be a size such as 4GiB, 512MiB or a number of bytes, got {value!r}")
        number, prefix, suffix = match.groups()
        decimal = suffix.lower() == "b" and prefix != ""
        unit = 1000 ** "bkmgt".index(prefix.lower()) if decimal else _UNITS[prefix.lower()]
        size = int(float(number) * unit)
    if size <= 0:
        raise ValueError(f"memory must be positive, got {value!r}")
    return size


def require_budget(need: int, memory: Any, what: str) -> None:
    """Refuse (:class:`~drct.errors.MemoryBudgetError`) a resumed run whose saved plan needs more than an explicit
    ``memory`` budget (None: no budget was given, nothing to check)."""
    if memory is not None and need > parse_memory(memory):
        raise MemoryBudgetError(
            f"{what} was planned for about {format_bytes(need)}, more than memory={memory!r}: resume it with that "
            "budget (it keeps its chunk sizes, to write the same bytes), or pass resume=False (--restart)"
        )


def fingerprint(path: Path) -> dict[str, Any]:
    """What identifies input data on disk: its real path, size and latest modification time (a folder: its
    files')."""
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    stats = [f.stat() for f in files if f.is_file()]
    return {
        "path": os.path.realpath(path),
        "bytes": sum(s.st_size for s in stats),
        "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
    }


def geometry_key(vg: VolumeGeometry, pg: ProjectionGeometry) -> str:
    """A digest of a volume grid and a scan geometry (every view's vectors)."""
    digest = hashlib.sha256(np.ascontiguousarray(pg.to_vectors(), dtype=np.float64).tobytes())
    digest.update(repr((pg.beam, bool(pg.curved), pg.det_shape, vg.shape, vg.voxel_size, vg.center)).encode())
    return digest.hexdigest()


class WorkFolder:
    """A run's work folder: resumed (its saved plan and progress adopted) when its manifest has the same key.

    Args:
        work: the folder.
        key: what identifies the run's inputs (JSON-serialisable).
        plan: the run's chunk sizes (JSON-serialisable); a resumed run keeps the saved one.
        resume: adopt a saved run with the same key (False: remove any saved run and start over).
        stages: the names of the counters in ``done`` (each starts at 0).

    Raises:
        ValueError: a saved run with another key is in the way and ``resume`` is set.
    """

    def __init__(self, work: Path, key: dict[str, Any], plan: dict[str, Any], resume: bool, stages: Sequence[str]):
        self.work, self.key, self.plan = work, key, dict(plan)
        self.done = dict.fromkeys(stages, 0)
        manifest = work / MANIFEST
        if work.exists() and resume and manifest.is_file():
            saved = json.loads(manifest.read_text(encoding="utf-8"))
            differ = sorted(k for k in key if saved.get("key", {}).get(k) != key[k])
            if differ:
                raise ValueError(
                    f"{work} holds an interrupted run with other {', '.join(differ)}: rerun with the same inputs "
                    "to resume it, or pass resume=False (--restart) to start over"
                )
            self.plan = dict(saved["plan"])
            self.done = {k: int(saved["done"][k]) for k in self.done}
        elif work.exists():
            shutil.rmtree(work)

    def save(self) -> None:
        """Record the progress (call after the data it counts are flushed)."""
        write_json(self.work / MANIFEST, {"key": self.key, "plan": self.plan, "done": self.done})

    def array(self, name: str, shape: tuple[int, ...], block: int = 1) -> ChunkedArray:
        """The work folder's float32 array ``name`` (``.npy`` or ``.zarr``): the saved one when resuming, else new."""
        path = self.work / name
        if path.exists() and (self.work / MANIFEST).is_file():
            store = open_array(path, writable=True)
            if store.shape == shape:
                return store
        self.work.mkdir(parents=True, exist_ok=True)
        return create_array(path, shape, np.float32, block)
