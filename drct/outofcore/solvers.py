"""Streaming SIRT and CGLS: projections larger than memory read from disk a chunk of views at a time, the volume
in memory, resumable after an interruption.

The iteration of :func:`drct.recon.sirt`, ``x ← x + λ C Aᵀ R (y - A x)`` with ``R = 1/(A 1)`` and
``C = 1/(Aᵀ 1)``, with ``A`` split into chunks of views: each iteration reads every chunk's projections and
row sums, projects the current volume onto the chunk's views and backprojects the weighted residual, summing
over the chunks. A first pass stores the row sums ``A 1`` beside the data (a float32 array of the projections'
shape) and keeps ``Aᵀ 1``. After every iteration the volume is saved to the work folder with a manifest
(:mod:`drct.outofcore.work`): a run started again with the same inputs continues after the last finished
iteration.

CGLS (:func:`cgls`: :mod:`drct.krylov`'s iteration, as :func:`drct.recon.cgls` runs it in memory) keeps its
residual ``r = y - A x`` on disk in two arrays of the projections' shape, written in turn (the one being updated is
never the one a resumed run starts from), and the projection ``q = A d`` of the search direction in a third.

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
    >>> from drct.outofcore import cgls
    >>> streamed = cgls(vg, pg, path, niter=5, memory="2MiB", progress=False)
    >>> reference = ct.recon.cgls(A, A(x), niter=5, progress=False)
    >>> bool(np.abs(streamed - reference).max() <= 1e-4 * np.abs(reference).max())
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
from ..krylov import CGLSOperations, CGLSState, cgls_iterate
from ..memory import available_bytes, format_bytes, require_memory
from ..projector import Projector
from ..recon._common import check_niter, check_positive, safe_inverse
from ..recon.solvers import _project
from .store import ChunkedArray, open_array
from .work import WorkFolder, fingerprint, geometry_key, parse_memory, require_budget

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

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.outofcore import plan_views
        >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 720, endpoint=False), (512, 512), 0.4, 500.0, 800.0)
        >>> plan_views(ct.VolumeGeometry((512, 512, 512)), pg, "8GiB")  # views per chunk beside the volume's copies
        341
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


class _Streamed:
    """A streamed least-squares problem: the data on disk, chunks of views with their projectors, and the work
    folder (a temporary one when ``checkpoint`` is None) whose manifest counts ``stages``."""

    def __init__(
        self,
        name: str,
        vg: VolumeGeometry,
        pg: ProjectionGeometry,
        projections: str | os.PathLike[str],
        options: dict[str, Any],
        memory: Any,
        checkpoint: str | os.PathLike[str] | None,
        resume: bool,
        stages: tuple[str, ...],
    ) -> None:
        self.source = open_array(projections)
        if self.source.shape != pg.shape:
            raise ValueError(
                f"{projections}: projections have shape {self.source.shape}, the geometry expects {pg.shape}"
            )
        self.temporary = checkpoint is None
        self.work = Path(tempfile.mkdtemp(prefix=f"drct-{name}-")) if checkpoint is None else Path(checkpoint)
        key = {
            "solver": name,
            "projections": {**fingerprint(self.source.path), "shape": list(self.source.shape)},
            "geometry": geometry_key(vg, pg),
            "options": options,
        }
        views = plan_views(vg, pg, memory)
        self.run = WorkFolder(self.work, key, {"views": views}, resume and not self.temporary, stages)
        views = int(self.run.plan["views"])
        need = _volume_bytes(vg) + SOLVER_BYTES_PER_RAY * views * math.prod(pg.det_shape)
        require_budget(need, memory, f"the interrupted streaming {name} ({views} views per chunk)")
        require_memory(need, f"streaming {name}")
        self.vg, self.pg = vg, pg
        self.chunks = [(a, min(pg.num_views, a + views)) for a in range(0, pg.num_views, views)]
        self.ops = [Projector(vg, pg.select_views(np.arange(a, b)), options["basis"]) for a, b in self.chunks]
        self.t = self.ops[0].types

    def data(self, i: int) -> Any:
        a, b = self.chunks[i]
        return upload(self.t.Float, np.asarray(self.source.read(a, b), np.float32).reshape(-1))

    def check_data(self) -> None:
        for a, b in self.chunks:
            require_finite(self.source.read(a, b), f"{self.source.path} (projections {a}..{b - 1})")

    def forward(self, i: int, x: Any) -> Any:
        return self.ops[i].forward_tensor(self.t.Tensor(x, self.vg.shape)).array

    def adjoint(self, i: int, r: Any) -> Any:
        return self.ops[i].adjoint_tensor(self.t.Tensor(r, self.ops[i].range_shape)).array

    def read(self, store: ChunkedArray, i: int) -> Any:
        return upload(self.t.Float, store.read(*self.chunks[i]).reshape(-1))

    def write(self, store: ChunkedArray, i: int, values: Any) -> None:
        a, b = self.chunks[i]
        store.write(a, np.asarray(values.numpy(), np.float32).reshape(b - a, *self.pg.shape[1:]))

    def save(self, **volumes: Any) -> None:
        """Volumes (flat Dr.Jit arrays) into the work folder, each atomically."""
        for name, values in volumes.items():
            image = np.asarray(values.numpy(), dtype=np.float32).reshape(self.vg.shape)
            write_atomically(self.work / f"{name}.npy", lambda tmp, image=image: np.save(tmp, image))

    def iteration_done(self, k: int, callback: Callback | None, **volumes: Any) -> None:
        """Save the volumes, then record iteration ``k`` as done, then call ``callback(k, x)``."""
        self.save(**volumes)
        self.run.done["iterations"] = k
        self.run.save()
        if callback is not None:
            callback(k, self.volume(volumes["x"]))

    def load(self, name: str) -> Any:
        return upload(self.t.Float, read_npy(self.work / f"{name}.npy").reshape(-1))

    def volume(self, x: Any) -> np.ndarray:
        return np.asarray(x.numpy(), dtype=np.float32).reshape(self.vg.shape)

    def close(self) -> None:
        if self.temporary:
            shutil.rmtree(self.work, ignore_errors=True)


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

    Example:
        >>> import numpy as np, os, tempfile, drct as ct
        >>> from drct.outofcore import sirt
        >>> vg = ct.VolumeGeometry((4, 8, 8))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 12, endpoint=False), (4, 12)))
        >>> path = os.path.join(tempfile.mkdtemp(), "y.npy"); np.save(path, A(np.full(vg.shape, 0.02, np.float32)))
        >>> sirt(vg, A.pg, path, niter=3, memory="1MiB", progress=False).shape  # a few views at a time
        (4, 8, 8)
    """
    niter = check_niter(niter, "sirt")
    lam = check_positive(relaxation, "sirt", "relaxation")
    if lam >= 2:
        raise ValueError(f"sirt: relaxation must be in (0, 2) for convergence, got {relaxation!r}")
    options = {"basis": basis, "relaxation": lam, "nonneg": bool(nonneg)}
    p = _Streamed("sirt", vg, pg, projections, options, memory, checkpoint, resume, ("prepared", "iterations"))
    t, run = p.t, p.run
    try:
        rows = run.array("row_sums.npy", pg.shape)
        if run.done["prepared"] < pg.num_views:
            _prepare(p, rows)
        col = safe_inverse(p.load("col_sums"), t.Float) * lam
        peak = t.Float(float(run.plan["row_peak"]))
        x = _project(p.load("x") if run.done["iterations"] else dr.zeros(t.Float, vg.size), nonneg, None)
        for k in tqdm(range(run.done["iterations"] + 1, niter + 1), desc="sirt", disable=not progress):
            total = dr.zeros(t.Float, vg.size)
            for i in range(len(p.chunks)):
                row = safe_inverse(p.read(rows, i), t.Float, lambda _: peak)
                total = total + p.adjoint(i, row * (p.data(i) - p.forward(i, x)))
                dr.eval(total)
            x = _project(x + col * total, nonneg, None)
            dr.eval(x)
            p.iteration_done(k, callback, x=x)
        return p.volume(x)
    finally:
        p.close()


def _prepare(p: _Streamed, rows: ChunkedArray) -> None:
    """SIRT's first pass: the data checked for NaN/Inf, the row sums ``A 1`` stored, ``Aᵀ 1`` and the rows' peak."""
    t, vg = p.t, p.vg
    ones = dr.full(t.Float, 1.0, vg.size)
    col = dr.zeros(t.Float, vg.size)
    peak = 0.0
    p.check_data()
    for i, op in enumerate(p.ops):
        sums = p.forward(i, ones)
        p.write(rows, i, sums)
        peak = max(peak, float(dr.max(sums)[0]))
        col = col + p.adjoint(i, dr.full(t.Float, 1.0, op.pg.num_rays))
        dr.eval(col)
    rows.flush()
    p.save(col_sums=col)
    p.run.plan["row_peak"] = peak
    p.run.done["prepared"] = p.pg.num_views
    p.run.save()


def cgls(
    vg: VolumeGeometry,
    pg: ProjectionGeometry,
    projections: str | os.PathLike[str],
    *,
    niter: int = 20,
    basis: str = "linear",
    memory: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: bool = True,
    callback: Callback | None = None,
) -> np.ndarray:
    """CGLS of projections stored on disk, streamed a chunk of views at a time (module docstring); the same
    iterates as :func:`drct.recon.cgls` (from zeros, without a mask) to float32 rounding.

    Args:
        vg, pg, projections, niter, basis, memory, checkpoint, resume, progress, callback: as in :func:`sirt`
            (the checkpoint also holds two residual arrays and one projection of the projections' shape).

    Returns:
        The reconstruction, float32 of ``vg.shape``.

    Example:
        >>> import numpy as np, os, tempfile, drct as ct
        >>> from drct.outofcore import cgls, create_array
        >>> vg, pg = ct.VolumeGeometry((4, 8, 8)), ct.cone(np.linspace(0, 2 * np.pi, 12), (6, 12), 1.5, 60.0, 90.0)
        >>> y = create_array(os.path.join(tempfile.mkdtemp(), "y.npy"), pg.shape)  # projections on disk
        >>> y.write(0, ct.Projector(vg, pg)(np.full(vg.shape, 0.02, np.float32)))
        >>> x = cgls(vg, pg, y.path, niter=3, memory="1MiB", progress=False)
        >>> x.shape, x.dtype.name
        ((4, 8, 8), 'float32')
    """
    niter = check_niter(niter, "cgls")
    p = _Streamed("cgls", vg, pg, projections, {"basis": basis}, memory, checkpoint, resume, ("prepared", "iterations"))
    t, run = p.t, p.run
    try:
        residuals = [run.array(f"residual{j}.npy", pg.shape) for j in (0, 1)]
        q_store = run.array("projection.npy", pg.shape)
        if run.done["prepared"] < pg.num_views:  # x = 0: r = y, s = d = Aᵀ y
            p.check_data()
            s = dr.zeros(t.Float, vg.size)
            for i in range(len(p.chunks)):
                y = p.data(i)
                p.write(residuals[0], i, y)
                s = s + p.adjoint(i, y)
                dr.eval(s)
            residuals[0].flush()
            p.save(x=dr.zeros(t.Float, vg.size), d=s)
            run.plan["gamma"] = float(dr.sum(s * s)[0])
            run.done["prepared"] = pg.num_views
            run.save()
        ops = _StreamedCGLS(p, residuals, q_store)
        done = int(run.done["iterations"])
        state = CGLSState(p.load("x"), done % 2, p.load("d"), float(run.plan["gamma"]))

        def after(k: int, state: CGLSState[Any, int]) -> None:
            dr.eval(state.x, state.p)
            run.plan["gamma"] = state.gamma
            p.iteration_done(k, callback, x=state.x, d=state.p)

        iterations = tqdm(range(done + 1, niter + 1), desc="cgls", disable=not progress)
        x = cgls_iterate(ops, state, iterations, after).x
        return p.volume(x)
    finally:
        p.close()


class _StreamedCGLS(CGLSOperations[Any, int]):
    """CGLS (:mod:`drct.krylov`) with the data on disk: a residual is the index (0 or 1) of the work array
    holding it, ``A p`` is written to ``q_store`` while its norm is summed, and the residual's update and its
    backprojection are one pass over the chunks (into the other residual array)."""

    def __init__(self, p: _Streamed, residuals: list[ChunkedArray], q_store: ChunkedArray) -> None:
        super().__init__(self._forward, self._adjoint, self._dot)
        self.streamed, self.residuals, self.q_store = p, residuals, q_store

    @staticmethod
    def _dot(a: Any, b: Any) -> float:
        return float(dr.sum(a * b)[0])

    def _forward(self, d: Any) -> int:  # pragma: no cover - CGLS calls project()
        raise NotImplementedError

    def _adjoint(self, r: int) -> Any:  # pragma: no cover - CGLS calls descend()
        raise NotImplementedError

    def project(self, d: Any) -> tuple[None, float]:
        p, qq = self.streamed, 0.0
        for i in range(len(p.chunks)):  # q = A d, kept on disk for the residual's update
            q = p.forward(i, d)
            p.write(self.q_store, i, q)
            qq += float(dr.sum(q * q)[0])
        return None, qq

    def descend(self, r: int, alpha: Any, q: Any) -> tuple[int, Any]:
        p = self.streamed
        old, new = self.residuals[r], self.residuals[1 - r]
        s = dr.zeros(p.t.Float, p.vg.size)
        for i in range(len(p.chunks)):
            values = p.read(old, i) - alpha * p.read(self.q_store, i)
            p.write(new, i, values)
            s = s + p.adjoint(i, values)
            dr.eval(s)
        new.flush()
        return 1 - r, s
