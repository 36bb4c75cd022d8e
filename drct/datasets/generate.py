"""Generate a simulated dataset, serially or on a Ray cluster, into one output folder.

:func:`generate` makes samples ``0..N-1`` of a :class:`~drct.datasets.sample.Recipe` and writes them, in index
order, into ``OUT/dataset.h5`` (:mod:`drct.datasets.store`) beside the scene before its variations, with
overrides and scale applied (``OUT/scene.toml``: ``ct.load_scene`` of it and the dataset's seeds redo any sample).
With ``workers=0`` it runs in this process; otherwise each sample is a Ray task (``ray.init()`` starts a local
cluster of ``workers`` CPUs, or joins the one at ``address``). A task whose worker dies (killed, out of memory)
or that raises an ``OSError`` or ``MemoryError`` is retried up to ``retries`` times; any other error stops the
run with a message naming the sample. Because every sample depends only on the recipe and its index
(:mod:`drct.datasets.sample`) and the writer adds them in order, the file has the same bytes however the run
was spread out.

The folder is built beside ``OUT`` and renamed into place at the end (:func:`drct.io.output_folder`); an
existing non-empty ``OUT`` is replaced only with ``force`` and only if it holds nothing but an earlier run's
files.

Example:
    >>> import tempfile, os
    >>> from drct.datasets import Recipe, generate
    >>> recipe = Recipe.from_file("scenes/shepp_logan_2d.toml", ["object.*.mu=uniform(0.01,0.03)"], seed=1, scale=0.1)
    >>> out = generate(recipe, 3, os.path.join(tempfile.mkdtemp(), "data"), workers=0)
    >>> sorted(p.name for p in out.iterdir())
    ['dataset.h5', 'scene.toml']
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import math
import os
import shutil
import socket
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..io import check_output_folder, output_folder
from .sample import Recipe, simulate_sample
from .store import FILE, Writer, optional
from .vary import Variations

OUTPUTS = (FILE, "scene.toml")
RETRIED = (OSError, MemoryError)  # task errors worth another try; a dead worker is always retried


class GenerationError(RuntimeError):
    """A sample could not be made on the cluster even after its retries (its worker kept dying).

    Example:
        >>> from drct.datasets import GenerationError
        >>> issubclass(GenerationError, RuntimeError)  # generate(..., workers=K) raises it naming the sample
        True
    """


def generate(
    recipe: Recipe,
    samples: int,
    output: str | os.PathLike[str],
    workers: int = 0,
    address: str | None = None,
    retries: int = 3,
    force: bool = False,
    progress: bool = False,
) -> Path:
    """Make ``samples`` samples of ``recipe`` into the folder ``output`` (see the module docstring); returns
    the folder's path.

    Args:
        recipe: what to simulate (:meth:`Recipe.from_file`).
        samples: how many (>= 1).
        output: the dataset folder.
        workers: 0: in this process; K >= 1: on Ray, at most K samples at a time (a local cluster of K CPUs
            unless ``address`` is given).
        address: a running Ray cluster (``ray start --head`` prints it; ``"auto"`` finds a local one); refused
            if this process's Ray is already connected (``ray.init``) to another cluster.
        retries: tries after the first for a task whose worker died or that hit an OSError/MemoryError.
        force: replace an existing dataset folder.
        progress: a tqdm bar over the samples.

    Example:
        >>> import os, tempfile
        >>> from drct.datasets import Recipe, generate
        >>> vary = ["object.*.mu=uniform(0.01,0.03)"]
        >>> recipe = Recipe.from_file("scenes/shepp_logan_2d.toml", vary, seed=1, scale=0.1)
        >>> out = generate(recipe, 2, os.path.join(tempfile.mkdtemp(), "data"))  # workers=0: in this process
        >>> sorted(p.name for p in out.iterdir())
        ['dataset.h5', 'scene.toml']
    """
    for name, value, low in (("samples", samples, 1), ("workers", workers, 0), ("retries", retries, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if address is not None and workers == 0:
        raise ValueError("an address needs workers >= 1 (workers=0 generates in this process)")
    scene = recipe.load()
    # what --force may replace: an earlier run's files (the scene's changed volume data is saved beside it)
    expected = [*OUTPUTS, *(p.name for obj in scene.objects for p in obj.files_to_write(Path(".")))]
    target = check_output_folder(output, force, expected)
    require_disk(target, samples * sample_bytes(scene, recipe.phantom), f"{samples} samples of {scene.name!r}")
    variations = Variations.parse(recipe.vary, scene)
    made = _parallel(recipe, samples, workers, address, retries) if workers else _serial(recipe, samples)
    with (
        contextlib.closing(made),
        output_folder(output, force, expected) as staging,
        tqdm(total=samples, desc="generating", unit="sample", disable=not progress) as bar,
    ):
        scene.save(staging / "scene.toml", overwrite=True)  # as simulated: --set and --scale applied
        writer: Writer | None = None
        for index, sample in made:
            if writer is None:
                writer = Writer(staging / FILE, samples, sample, _attrs(recipe, scene, variations, sample))
            writer.append(index, sample)
            bar.update()
        assert writer is not None
        writer.close()
        if writer.next != samples:
            raise RuntimeError(f"the dataset has {writer.next} of its {samples} samples")
    return Path(os.path.realpath(output))


def sample_bytes(scene: Any, phantom: bool) -> int:
    """Bytes one sample takes in the file: two float32 sinograms, the float64 geometry rows, the phantom."""
    pg = scene.nominal_geometry()
    voxels = math.prod(scene.volume.shape) if phantom and scene.volume is not None else 0
    columns = 6 if getattr(pg, "ndim", 3) == 2 else 12  # vector rows (src|ray, det, u[, v]), float64
    return 8 * int(pg.num_rays) + 8 * columns * int(pg.shape[0]) + 4 * voxels


def require_disk(folder: Path, needed: int, what: str) -> None:
    """OSError (ENOSPC) before a run whose output could not fit on the disk holding ``folder``."""
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise OSError(
            errno.ENOSPC,
            f"{what} need about {needed / 2**30:.2f} GiB but {existing} has {free / 2**30:.2f} GiB free",
            str(folder),
        )


def _attrs(recipe: Recipe, scene: Any, variations: Variations, first: dict[str, Any]) -> dict[str, Any]:
    pg = scene.nominal_geometry()
    attrs: dict[str, Any] = {
        "scene": scene.name,
        "seed": recipe.seed,
        "vary": list(recipe.vary) or [""],
        "scale": recipe.scale,
        "columns": variations.columns(scene) or [""],
        "beam": getattr(pg, "beam", "rays"),
        "curved": bool(getattr(pg, "curved", False)),
        "det_shape": list(getattr(pg, "det_shape", pg.shape)),
    }
    if "phantom" in first and scene.volume is not None:
        vg = scene.volume
        attrs |= {"volume_shape": list(vg.shape), "voxel_size": list(vg.voxel_size), "volume_center": list(vg.center)}
    return attrs


def _serial(recipe: Recipe, samples: int) -> Generator[tuple[int, dict[str, Any]], None, None]:
    quiet = dataclasses.replace(recipe, fault="")  # fault injection targets Ray workers, never this process
    for index in range(samples):
        yield index, simulate_sample(quiet, index)


def _task(ray: Any, retries: int) -> Callable[..., Any]:
    def run(recipe: Recipe, index: int) -> dict[str, Any]:
        import drjit as dr

        dr.set_thread_count(1)  # one CPU per task: Ray runs as many tasks as the cluster has CPUs
        return simulate_sample(recipe, index)

    return ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=list(RETRIED))(run)


def _parallel(
    recipe: Recipe, samples: int, workers: int, address: str | None, retries: int
) -> Generator[tuple[int, dict[str, Any]], None, None]:
    """Samples from Ray tasks, yielded in index order; at most ``2 * workers`` computed and not yet yielded."""
    ray = optional("ray", "generating on several workers (--workers >= 1)")
    started = not ray.is_initialized()
    if not started and address is not None:
        _require_joined(ray, address)
    if started:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address is None:
            options["num_cpus"] = workers
        ray.init(address=address, **options)
    try:
        task = _task(ray, retries)
        shared = ray.put(recipe)
        window = 2 * workers
        pending: dict[Any, int] = {}
        done: dict[int, dict[str, Any]] = {}
        submitted = written = 0
        while written < samples:
            while submitted < samples and submitted < written + window and len(pending) < workers:
                pending[task.remote(shared, submitted)] = submitted
                submitted += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                index = pending.pop(ref)
                done[index] = _result(ray, ref, index, retries)
            while written in done:
                yield written, done.pop(written)
                written += 1
    finally:
        if started:
            ray.shutdown()


def _require_joined(ray: Any, address: str) -> None:
    """Refuse ``address`` when this process's Ray is already connected to another cluster (``ray.init`` called
    before): the tasks would run there, not on the cluster asked for."""
    current = str(ray.get_runtime_context().gcs_address)
    if address != "auto" and _endpoint(address) != _endpoint(current):
        raise ValueError(
            f"this process is already connected to the Ray cluster at {current}, so it cannot generate on "
            f"{address!r}: call ray.shutdown() first, or pass {current!r} (or 'auto')"
        )


def _endpoint(address: str) -> tuple[str, str]:
    """``(IP, port)`` of a ``HOST:PORT`` address (the host name resolved where it can be)."""
    host, _, port = address.rpartition(":")
    try:
        return socket.gethostbyname(host), port
    except OSError:
        return host, port


def _result(ray: Any, ref: Any, index: int, retries: int) -> dict[str, Any]:
    """The value of a finished task; its error as drct raised it (not Ray's wrapper), or :class:`GenerationError`
    when its worker died on every try."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = err.cause
        if isinstance(cause, Exception):
            raise cause from None
        raise
    except ray.exceptions.RayError as err:
        raise GenerationError(
            f"sample {index}: its worker died on all {retries + 1} tries ({type(err).__name__}); "
            "see the Ray logs (/tmp/ray/session_latest/logs) — out of memory?"
        ) from None
