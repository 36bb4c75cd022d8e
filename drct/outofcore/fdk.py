"""Streaming FDK/FBP of 3D scans larger than memory: projections read from disk a chunk of views at a time, the
volume backprojected and written a z-slab at a time, resumable after an interruption.

Two passes over the data, both with bounded memory (:func:`plan` chooses the chunk and slab sizes from a memory
budget):

1. *filter*: each chunk of views is read, weighted and ramp-filtered exactly as :func:`drct.fdk` does
   (:func:`drct.recon.weights.fbp_weights` of those views of the whole scan, :func:`drct.recon.filters.filter_rows`)
   and written to a float32 scratch array on disk;
2. *backproject*: for each z-slab of the volume, every chunk of filtered views is read back and backprojected
   into the slab (the voxel-driven FDK backprojector of :mod:`drct.recon.backproject`, views added in scan
   order, as in memory), and the slab is written to the output.

The work lives in a folder beside the output, ``.<name>.ooc-partial/`` (the scratch array, the volume so far and
``manifest.json``, rewritten atomically after each chunk or slab is durable on disk). A run that is interrupted
(an exception, Ctrl-C, a kill) and started again with the same inputs continues after the last finished chunk or
slab and writes the same bytes as an uninterrupted run; at the end the volume is moved into place (``.npy``,
``.zarr``) or copied into a TIFF stack (``.tif``), and the work folder removed.

Example:
    >>> import numpy as np, os, tempfile, drct as ct
    >>> from drct.outofcore import create_array, fdk, open_array
    >>> vg = ct.VolumeGeometry((8, 16, 16))
    >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 24, endpoint=False), (12, 24), 1.5, 60.0, 90.0)
    >>> x = np.zeros(vg.shape, np.float32); x[2:6, 4:12, 4:12] = 0.02
    >>> y = ct.Projector(vg, pg, basis="voxel")(x)
    >>> root = tempfile.mkdtemp()
    >>> create_array(os.path.join(root, "y.npy"), pg.shape).write(0, y)
    >>> out = fdk(vg, pg, os.path.join(root, "y.npy"), os.path.join(root, "x.npy"), memory="64MiB", progress=False)
    >>> reference = ct.fdk(ct.Projector(vg, pg, basis="voxel"), y, progress=False)
    >>> bool(np.allclose(open_array(out).read(0, 8), reference, rtol=0, atol=1e-6))
    True
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import drjit as dr
import numpy as np
from tqdm.auto import tqdm

from ..backend import types, upload
from ..errors import MemoryBudgetError, require_finite
from ..geometry.projection import ProjectionGeometry
from ..geometry.volume import VolumeGeometry
from ..io import _swap_in, check_output_folder, refuse_overwrite, write_atomically
from ..memory import available_bytes, format_bytes, require_memory
from ..recon.backproject import make_backprojector
from ..recon.filters import FILTERS, filter_rows
from ..recon.weights import fbp_weights
from .store import ChunkedArray, create_array, open_array, write_tiff_stack
from .work import WorkFolder, fingerprint, geometry_key, parse_memory, require_budget

FILTER_BYTES_PER_PIXEL = 160
"""Host memory one detector pixel of a chunk needs while it is weighted and filtered (float64 ray geometry and
weights, the padded complex FFT, the float32 input and result): an upper estimate."""

BACKPROJECT_BYTES_PER_VOXEL = 40
"""Memory one voxel of a slab needs while it is backprojected (its float64 centres while they are made, their
float32 copies, the running sum and its next value, the host copy written out)."""

BACKPROJECT_BYTES_PER_PIXEL = 28
"""Memory one detector pixel of a chunk needs while it is backprojected (read from disk, uploaded, and its four
bilinear interpolation cell stored as four coefficients for the kernel's packet gathers,
:mod:`drct.recon.backproject`)."""

ZARR_NAMES = ("zarr.json", "c")  # what a zarr array drct writes holds: refused to replace anything else


@dataclass(frozen=True)
class Plan:
    """How a streaming FDK cuts the work: ``views`` per chunk, ``slab`` z-planes per slab of the volume.

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.outofcore import plan
        >>> vg = ct.VolumeGeometry((512, 512, 512))
        >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 720, endpoint=False), (512, 512), 0.4, 500.0, 800.0)
        >>> p = plan(vg, pg, "1GiB")
        >>> p, p.peak_bytes(vg, pg) <= 2**30
        (Plan(views=6, slab=98), True)
    """

    views: int
    slab: int

    def peak_bytes(self, vg: VolumeGeometry, pg: ProjectionGeometry) -> int:
        """The most memory the run holds at once, estimated (the larger of its two passes)."""
        pixels = math.prod(pg.det_shape)
        filtering = FILTER_BYTES_PER_PIXEL * self.views * pixels
        backprojecting = BACKPROJECT_BYTES_PER_PIXEL * self.views * pixels
        backprojecting += BACKPROJECT_BYTES_PER_VOXEL * self.slab * vg.shape[1] * vg.shape[2]
        return max(filtering, backprojecting)


def plan(vg: VolumeGeometry, pg: ProjectionGeometry, memory: Any = None) -> Plan:
    """The chunk and slab sizes of a streaming FDK within ``memory`` (bytes or ``"4GiB"``; default half the
    available memory): the largest slab that leaves room for a chunk of views, a quarter of the budget.

    Raises:
        MemoryBudgetError: not even one view and one z-plane fit in ``memory``.

    Example:
        >>> import numpy as np, drct as ct
        >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 720, endpoint=False), (1024, 1024), 0.2, 500.0, 800.0)
        >>> plan(ct.VolumeGeometry((1024, 1024, 1024)), pg, "3GiB")
        Plan(views=4, slab=74)
    """
    budget = available_bytes() // 2 if memory is None else parse_memory(memory)
    pixels = math.prod(pg.det_shape)
    plane = vg.shape[1] * vg.shape[2]
    views = min(pg.num_views, (budget // 4) // (FILTER_BYTES_PER_PIXEL * pixels))
    slab = (
        0
        if views < 1
        else (budget - BACKPROJECT_BYTES_PER_PIXEL * views * pixels) // (BACKPROJECT_BYTES_PER_VOXEL * plane)
    )
    if views < 1 or slab < 1:
        least = Plan(1, 1).peak_bytes(vg, pg)
        raise MemoryBudgetError(
            f"streaming FDK of a {'x'.join(map(str, vg.shape))} volume from {pg.shape} projections needs at least "
            f"{format_bytes(max(least, 4 * FILTER_BYTES_PER_PIXEL * pixels))} (one view, one z-plane), "
            f"but the memory budget is {format_bytes(budget)}"
        )
    return Plan(int(views), int(min(slab, vg.shape[0])))


def _slab(vg: VolumeGeometry, start: int, depth: int) -> VolumeGeometry:
    """The z-planes ``start .. start + depth - 1`` of ``vg`` as a grid of their own (same centres)."""
    hz = vg.voxel_size[0]
    offset = (start + (depth - 1) / 2 - (vg.shape[0] - 1) / 2) * hz
    cx, cy, cz = vg.center
    return VolumeGeometry((depth, vg.shape[1], vg.shape[2]), vg.voxel_size, (cx, cy, cz + offset))


def _filter_views(
    run: WorkFolder,
    cuts: Plan,
    source: ChunkedArray,
    scratch: ChunkedArray,
    vg: VolumeGeometry,
    pg: ProjectionGeometry,
    args: Any,
) -> Any:
    """Pass 1, one chunk at a time: ``post ⊙ filter(pre ⊙ y)`` of the chunk's views into the scratch array."""
    filter_, cutoff, bar, callback = args
    step = cuts.views
    for start in range(run.done["filtered"], pg.num_views, step):
        stop = min(pg.num_views, start + step)
        y = np.asarray(source.read(start, stop), dtype=np.float32)
        require_finite(y, f"{source.path} (projections {start}..{stop - 1})")
        w = fbp_weights(pg, vg, np.arange(start, stop))
        pre = np.broadcast_to(w.pre.astype(np.float32), y.shape)
        q = filter_rows(y * pre if np.any(w.pre != 1) else y, w.spacing, filter_, cutoff, w.curved)
        q = q.astype(np.float32) * np.broadcast_to(w.post.astype(np.float32), y.shape)
        scratch.write(start, q)
        scratch.flush()
        run.done["filtered"] = stop
        run.save()
        bar.update(1)
        if callback is not None:
            callback("filtered", stop)


def _backproject_slabs(
    run: WorkFolder,
    cuts: Plan,
    scratch: ChunkedArray,
    volume: ChunkedArray,
    vg: VolumeGeometry,
    pg: ProjectionGeometry,
    args: Any,
) -> None:
    """Pass 2, one z-slab at a time: every chunk of filtered views backprojected into it, then written."""
    _, _, bar, callback = args
    t = types("float32")
    step, depth = cuts.views, cuts.slab
    chunks = [(s, min(pg.num_views, s + step)) for s in range(0, pg.num_views, step)]
    views = [pg.select_views(np.arange(a, b)) for a, b in chunks]
    for z0 in range(run.done["planes"], vg.shape[0], depth):
        z1 = min(vg.shape[0], z0 + depth)
        engine = make_backprojector(views[0], _slab(vg, z0, z1 - z0), t)
        out = None
        for (a, b), sub in zip(chunks, views, strict=True):
            q = upload(t.Float, scratch.read(a, b).reshape(-1))
            out = engine.with_views(sub).apply(q, out=out)
            bar.update(1)
        assert out is not None
        volume.write(z0, np.asarray(out.numpy(), dtype=np.float32).reshape(z1 - z0, *vg.shape[1:]))
        volume.flush()
        del engine, out
        dr.flush_malloc_cache()
        run.done["planes"] = z1
        run.save()
        if callback is not None:
            callback("planes", z1)


def finish_output(work: Path, volume: ChunkedArray, target: Path, force: bool, block: int = 16) -> None:
    """Move (``.npy``, ``.zarr``) or copy (``.tif``; ``.zarr`` from ``.npy``, ``block`` planes at a time) the
    finished volume in the work folder to ``target``, then remove the work folder."""
    suffix = target.suffix.lower()
    if suffix == ".zarr":
        if volume.kind != "zarr":
            copy = create_array(work / "volume.zarr", volume.shape, volume.dtype, block)
            for start in range(0, volume.shape[0], block):
                copy.write(start, volume.read(start, min(volume.shape[0], start + block)))
            volume = copy
        check_output_folder(target, force, expected=ZARR_NAMES)
        _swap_in(volume.path, target)
    else:
        refuse_overwrite([target], force)
        if suffix == ".npy":
            os.replace(volume.path, target)
        else:
            write_atomically(target, lambda tmp: write_tiff_stack(volume, tmp))
    shutil.rmtree(work, ignore_errors=True)


Callback = Callable[[str, int], None]


def fbp(
    vg: VolumeGeometry,
    pg: ProjectionGeometry,
    projections: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    memory: Any = None,
    filter: str = "ram-lak",
    cutoff: float = 1.0,
    force: bool = False,
    resume: bool = True,
    progress: bool = True,
    callback: Callback | None = None,
) -> Path:
    """Filtered backprojection of a 3D scan stored on disk into a volume on disk, in bounded memory.

    The same reconstruction as :func:`drct.fbp`/:func:`drct.fdk` (circular cone beams with flat or cylindrical
    detectors, full or short scans, and 3D parallel beams), streamed (module docstring).

    Args:
        vg: the volume grid (3D).
        pg: the scan's geometry (3D cone or parallel beam; a helical orbit is refused as by :func:`drct.fdk`).
        projections: line integrals ``pg.shape`` = ``(views, rows, cols)``: ``.npy``, ``.zarr``, a ``.tif`` stack
            or a folder of TIFF images (:func:`drct.outofcore.open_array`). NaN/±Inf are refused.
        output: ``.npy``, ``.zarr`` or ``.tif``/``.tiff`` (float32, ``vg.shape``).
        memory: the memory budget (bytes or a string such as ``"4GiB"``; default half the available memory):
            chunk and slab sizes follow from it (:func:`plan`), with estimates meant as upper bounds: the
            whole process (the interpreter and libraries included) peaked at 0.23 GiB with 256MiB (256³ from
            180 x 256²), 0.44 GiB with 1GiB (512³, 90 x 512²), but 3.47 GiB with 3GiB after the first slab of
            1024³ from 720 x 1024²: the backprojection pass grows by about one chunk of views per chunk
            (1.28 GiB after 32 chunks of 4 x 1024², 0.85 GiB after 4), with this kernel and the first one
            (``benchmarks/bench_outofcore.py``; not yet explained).
        filter: ``"ram-lak"``, ``"shepp-logan"``, ``"cosine"``, ``"hamming"`` or ``"hann"``.
        cutoff: the filter's cut-off, a fraction of the Nyquist frequency in (0, 1].
        force: replace an existing output.
        resume: continue an interrupted run with the same inputs (False: start over).
        progress: a tqdm bar over chunks and slabs.
        callback: called as ``callback(stage, done)`` after each durable step (``"filtered"``, views done;
            ``"planes"``, z-planes done); an exception it raises interrupts the run, which can then be resumed.

    Returns:
        The output's path.

    Raises:
        MemoryBudgetError: ``memory`` is too small for one view and one z-plane, or more than is available.
        ValueError: the projections' shape differs from ``pg.shape``, a geometry FBP cannot reconstruct, an
            interrupted run with other inputs in the way.
        FileExistsError: the output exists and ``force`` is not set.

    Example:
        >>> import numpy as np, os, tempfile, drct as ct
        >>> from drct.outofcore import fbp, open_array
        >>> vg = ct.VolumeGeometry((4, 8, 8))
        >>> A = ct.Projector(vg, ct.parallel(np.linspace(0, np.pi, 12, endpoint=False), (4, 12)), basis="voxel")
        >>> x = np.zeros(vg.shape, np.float32); x[1:3, 2:6, 2:6] = 0.02
        >>> root = tempfile.mkdtemp(); np.save(os.path.join(root, "y.npy"), A(x))
        >>> y_path, x_path = os.path.join(root, "y.npy"), os.path.join(root, "x.npy")
        >>> out = fbp(vg, A.pg, y_path, x_path, memory="64MiB", progress=False)
        >>> bool(np.allclose(open_array(out).read(0, 4), ct.fbp(A, A(x), progress=False), atol=1e-6))
        True
    """
    if not isinstance(vg, VolumeGeometry) or vg.ndim != 3:
        raise ValueError(f"streaming FBP needs a 3D VolumeGeometry, got {vg!r}; 2D images fit in memory: ct.fbp")
    if not isinstance(pg, ProjectionGeometry) or pg.ndim != 3:
        raise ValueError(f"streaming FBP needs a 3D detector geometry (ct.cone, ct.parallel), got {pg!r}")
    if not isinstance(filter, str) or filter.lower() not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {filter!r}")
    target = Path(output)
    if target.suffix.lower() not in (".npy", ".zarr", ".tif", ".tiff"):
        raise ValueError(f"output must be a .npy, .zarr or .tif/.tiff path, got {target.name!r}")
    if target.suffix.lower() == ".zarr":
        check_output_folder(target, force, expected=ZARR_NAMES)
    else:
        refuse_overwrite([target], force)
    source = open_array(projections)
    if source.shape != pg.shape:
        raise ValueError(
            f"{projections}: projections have shape {source.shape}, but the geometry expects {pg.shape} "
            "(views, rows, cols)"
        )
    fbp_weights(pg, vg, np.arange(1))  # refuses helical orbits and other geometries FBP cannot reconstruct
    cuts = plan(vg, pg, memory)
    key = {
        "projections": {**fingerprint(source.path), "shape": list(source.shape), "dtype": str(source.dtype)},
        "geometry": geometry_key(vg, pg),
        "filter": [filter.lower(), float(cutoff)],
        "output": target.suffix.lower(),
    }
    work = target.parent / f".{target.name}.ooc-partial"
    run = WorkFolder(work, key, asdict(cuts), resume, ("filtered", "planes"))
    cuts = Plan(**run.plan)
    require_budget(cuts.peak_bytes(vg, pg), memory, f"the interrupted streaming FDK ({cuts})")
    require_memory(cuts.peak_bytes(vg, pg), f"streaming FDK with {cuts}")
    scratch = run.array("filtered.npy", pg.shape, cuts.views)
    volume_name = "volume.zarr" if target.suffix.lower() == ".zarr" else "volume.npy"
    volume = run.array(volume_name, vg.shape, cuts.slab)
    run.save()
    chunks = math.ceil(pg.num_views / cuts.views)
    slabs = math.ceil(vg.shape[0] / cuts.slab)
    done = math.ceil(run.done["filtered"] / cuts.views) + chunks * math.ceil(run.done["planes"] / cuts.slab)
    with tqdm(total=chunks * (1 + slabs), initial=done, desc="streaming FDK", disable=not progress) as bar:
        args = (filter.lower(), float(cutoff), bar, callback)
        _filter_views(run, cuts, source, scratch, vg, pg, args)
        _backproject_slabs(run, cuts, scratch, volume, vg, pg, args)
    finish_output(work, volume, target, force)
    return target


def fdk(
    vg: VolumeGeometry,
    pg: ProjectionGeometry,
    projections: str | os.PathLike[str],
    output: str | os.PathLike[str],
    **kwargs: Any,
) -> Path:
    """:func:`fbp` restricted to circular cone beams (as :func:`drct.fdk` is to :func:`drct.fbp`).

    Example:
        >>> import numpy as np, os, tempfile, drct as ct
        >>> from drct.outofcore import fdk, open_array
        >>> vg = ct.VolumeGeometry((4, 8, 8))
        >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 12, endpoint=False), (6, 12), 1.5, 60.0, 90.0)
        >>> y = ct.Projector(vg, pg, basis="voxel")(np.full(vg.shape, 0.02, np.float32))
        >>> root = tempfile.mkdtemp(); np.save(os.path.join(root, "y.npy"), y)
        >>> out = fdk(vg, pg, os.path.join(root, "y.npy"), os.path.join(root, "x.npy"), memory="64MiB", progress=False)
        >>> open_array(out).shape
        (4, 8, 8)
    """
    if not isinstance(pg, ProjectionGeometry) or pg.ndim != 3 or pg.beam != "cone":
        raise ValueError(f"fdk needs a 3D cone-beam geometry (ct.cone), got {pg!r}; use fbp for parallel beams")
    return fbp(vg, pg, projections, output, **kwargs)
