"""Streaming SIRT: projections larger than memory read from disk a chunk of views at a time, the volume in memory,
resumable after an interruption.

The iteration of :func:`drct.recon.sirt`, ``x ← x + λ C Aᵀ R (y - A x)`` with ``R = 1/(A 1)`` and
``C = 1/(Aᵀ 1)``, with ``A`` split into chunks of views: each iteration reads every chunk's projections and
row sums, projects the current volume onto the chunk's views and backprojects the weighted residual, summing
over the chunks. A first pass stores the row sums ``A 1`` beside the data (a float32 array of the projections'
shape) and keeps ``Aᵀ 1``. After every iteration the volume is saved to the work folder with a manifest
(:mod:`drct.outofcore.work`): a run started again with the same inputs continues after the last finished
iteration.

Memory: a few copies of the volume (the iterate, ``C``, the sum of the chunks' backprojections, and Dr.Jit's
per-thread copies while it scatter-adds) plus one chunk of views; :func:`plan_views` sizes the chunk.

Example:
    >>> import numpy as np, os, tempfile, drct as ct
    >>> from drct.outofcore import sirt
    >>> vg = ct.VolumeGeometry((8, 16, 16))
    >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 24, endpoint=False), (12, 24), 1.5, 60.0, 90.0)
    >>> A = ct.Projector(vg, pg)
    >>> x = np.zeros(vg.shape, np.float32); x[2:6, 4:12, 4:12] = 0.02
    >>> path = os.path.join(tempfile.mkdtemp(), "y.npy"); np.save(path, A(x))
    >>> streamed = sirt(vg, pg, path, niter=5, memory="2MiB", progress=False)
    >>> reference = ct.recon.sirt(A, A(x), niter=5, progress=False)
    >>> bool(np.abs(streamed - reference).max() <= 1e-5 * np.abs(reference).max())
    True
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import drjit as dr
import numpy as np
from tqdm.auto import tqdm

from ..backend import upload
from ..errors import MemoryBudgetError, require_finite
from ..geometry.projection import ProjectionGeometry
from ..geometry.volume import VolumeGeometry
from ..io import read_npy, write_atomically
from ..memory import available_bytes, format_bytes, require_memory
from ..projector import Projector
from ..recon._common import check_niter, check_positive, safe_inverse
from ..recon.solvers import _project
from .fdk import parse_memory
from .store import open_array
from .work import WorkFolder, fingerprint, geometry_key

SOLVER_BYTES_PER_RAY = 48
"""Memory one ray of a chunk needs in an iteration (its data, row sum and weight, the chunk's projection and
residual, the projector's temporaries), float32: an upper estimate."""

SOLVER_VOLUME_COPIES = 6
"""Volumes an iteration holds besides Dr.Jit's per-thread scatter copies (the iterate and its update, ``C``, the
running sum of backprojections and its next value, a host copy)."""


def _volume_bytes(vg: VolumeGeometry) -> int:
    return 4 * vg.size * (SOLVER_VOLUME_COPIES + dr.thread_count())


def plan_views(vg: VolumeGeometry, pg: ProjectionGeometry, memory: Any = None) -> int:
    """Views per chunk of a streaming solver within ``memory`` (bytes or ``"4GiB"``; default half the available
    memory): what the volume's copies leave, divided among rays.

    Raises:
        MemoryBudgetError: the volume's copies and one view do not fit.
    """
    budget = available_bytes() // 2 if memory is None else parse_memory(memory)
    rays = math.prod(pg.det_shape)
    views = (budget - _volume_bytes(vg)) // (SOLVER_BYTES_PER_RAY * rays)
    if views < 1:
        raise MemoryBudgetError(
            f"a streaming solver for a {'x'.join(map(str, vg.shape))} volume needs at least "
            f"{format_bytes(_volume_bytes(vg) + SOLVER_BYTES_PER_RAY * rays)} (copies of the volume and one view), "
            f"but the memory budget is {format_bytes(budget)}; the volume must fit in memory"
        )
    return int(min(views, pg.num_views))


Callback = Callable[[int, np.ndarray], None]


def sirt(
    vg: VolumeGeometry,
    pg: ProjectionGeometry,
    projections: str | os.PathLike[str],
    *,
    niter: int = 100,
    basis: str = "linear",
    memory: Any = None,
    relaxation: float = 1.0,
    nonneg: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: bool = True,
    callback: Callback | None = None,
) -> np.ndarray:
    """SIRT of projections stored on disk, streamed a chunk of views at a time (module docstring); the same
    iterates as :func:`drct.recon.sirt` (from zeros, without a mask) to float32 rounding.

    Args:
        vg: the volume grid (2D or 3D).
        pg: the scan's geometry.
        projections: line integrals of shape ``pg.shape`` on disk (:func:`drct.outofcore.open_array`).
        niter: iterations in all (a resumed run does the ones left).
        basis: the projector's basis.
        memory: the memory budget (bytes or ``"4GiB"``; default half the available memory).
        relaxation: ``λ`` in (0, 2).
        nonneg: clip negative values after every update.
        checkpoint: the work folder (resumable: the row sums, the last iterate and the manifest stay there,
            also after the run, to continue with more iterations); None: a temporary folder, removed at the end.
        resume: continue a run saved in ``checkpoint`` with the same inputs (False: start over).
        progress: a tqdm bar over the iterations.
        callback: ``callback(k, x)`` after iteration ``k`` is saved; an exception it raises interrupts the run.

    Returns:
        The reconstruction, float32 of ``vg.shape``.
    """
    niter = check_niter(niter, "sirt")
    lam = check_positive(relaxation, "sirt", "relaxation")
    if lam >= 2:
        raise ValueError(f"sirt: relaxation must be in (0, 2) for convergence, got {relaxation!r}")
    source = open_array(projections)
    if source.shape != pg.shape:
        raise ValueError(f"{projections}: projections have shape {source.shape}, the geometry expects {pg.shape}")
    work = Path(checkpoint) if checkpoint is not None else Path(tempfile.mkdtemp(prefix="drct-sirt-"))
    key = {
        "projections": {**fingerprint(source.path), "shape": list(source.shape), "dtype": str(source.dtype)},
        "geometry": geometry_key(vg, pg),
        "options": [basis, lam, bool(nonneg)],
    }
    views = plan_views(vg, pg, memory)
    run = WorkFolder(work, key, {"views": views}, resume and checkpoint is not None, ("prepared", "iterations"))
    views = int(run.plan["views"])
    require_memory(_volume_bytes(vg) + SOLVER_BYTES_PER_RAY * views * math.prod(pg.det_shape), "streaming sirt")
    chunks = [(a, min(pg.num_views, a + views)) for a in range(0, pg.num_views, views)]
    ops = [Projector(vg, pg.select_views(np.arange(a, b)), basis) for a, b in chunks]
    t = ops[0].types
    rows = run.array("row_sums.npy", pg.shape)
    try:
        if run.done["prepared"] < pg.num_views:
            _prepare(run, source, rows, chunks, ops)
        col = safe_inverse(upload(t.Float, read_npy(work / "col_sums.npy").reshape(-1)), t.Float) * lam
        peak = t.Float(float(run.plan["row_peak"]))
        x = (
            upload(t.Float, read_npy(work / "x.npy").reshape(-1))
            if run.done["iterations"]
            else dr.zeros(t.Float, vg.size)
        )
        x = _project(x, nonneg, None)
        for k in tqdm(range(run.done["iterations"] + 1, niter + 1), desc="sirt", disable=not progress):
            total = dr.zeros(t.Float, vg.size)
            for (a, b), op in zip(chunks, ops, strict=True):
                y = upload(t.Float, np.asarray(source.read(a, b), np.float32).reshape(-1))
                row = safe_inverse(upload(t.Float, rows.read(a, b).reshape(-1)), t.Float, lambda _: peak)
                r = y - op.forward_tensor(t.Tensor(x, vg.shape)).array
                total = total + op.adjoint_tensor(t.Tensor(row * r, op.range_shape)).array
                dr.eval(total)
            x = _project(x + col * total, nonneg, None)
            dr.eval(x)
            image = np.asarray(x.numpy(), dtype=np.float32).reshape(vg.shape)
            write_atomically(work / "x.npy", lambda tmp, image=image: np.save(tmp, image))
            run.done["iterations"] = k
            run.save()
            if callback is not None:
                callback(k, image)
        result = np.asarray(x.numpy(), dtype=np.float32).reshape(vg.shape)
    finally:
        if checkpoint is None:
            shutil.rmtree(work, ignore_errors=True)
    return result


def _prepare(run: WorkFolder, source: Any, rows: Any, chunks: list[tuple[int, int]], ops: list[Projector]) -> None:
    """The first pass: the data checked for NaN/Inf, the row sums ``A 1`` stored, ``Aᵀ 1`` and the rows' peak."""
    t, vg = ops[0].types, ops[0].vg
    ones = t.Tensor(dr.full(t.Float, 1.0, vg.size), vg.shape)
    col = dr.zeros(t.Float, vg.size)
    peak = 0.0
    for (a, b), op in zip(chunks, ops, strict=True):
        require_finite(source.read(a, b), f"{source.path} (projections {a}..{b - 1})")
        sums = np.asarray(op.forward_tensor(ones).numpy(), dtype=np.float32)
        rows.write(a, sums)
        peak = max(peak, float(sums.max()))
        col = col + op.adjoint_tensor(t.Tensor(dr.full(t.Float, 1.0, op.pg.num_rays), op.range_shape)).array
        dr.eval(col)
    rows.flush()
    sums = np.asarray(col.numpy(), dtype=np.float32)
    write_atomically(run.work / "col_sums.npy", lambda tmp: np.save(tmp, sums))
    run.plan["row_peak"] = peak
    run.done["prepared"] = chunks[-1][1]
    run.save()
