"""``drct reconstruct``: projections + a geometry → a TIFF stack and a PNG of slices.

Inputs: line integrals as ``.npy`` or a TIFF stack with a geometry file, or a scanner's files
(:mod:`drct.formats`: NXtomo ``.nx/.nxs/.h5``, Nikon ``.xtekct``, TIFF folders with flats/darks) that carry
raw readings, flat and dark fields and their geometry. Raw readings are normalised with the flat and dark fields
(from the file, or ``--flat/--dark``); readings that look raw (an integer dtype, or a median far above any line
integral) and come without flats are refused unless ``--raw-is-line-integrals``.

Example:
    $ drct reconstruct scan.npy --geometry scan.json --method fdk -o out/recon.tif
    $ drct reconstruct scan.nxs --shape 128 128 128 --voxel-size 0.1 --method fdk -o out/recon.tif
    $ drct reconstruct counts.npy --flat flat.npy --dark dark.npy --geometry scan.json -o out/recon.tif
    $ drct reconstruct scan.nxs --shape 128 128 128 --voxel-size 0.1 --method fdk -o out/dicom/
    $ drct reconstruct sino.tif --geometry vectors.txt --beam cone --det-shape 512 --shape 256 256 \\
          --voxel-size 0.5 --method sirt --iterations 200 --nonneg -o out/sirt.tif --force
    $ drct reconstruct out/spect/counts.npy --geometry out/spect/spect.json --method osem -o out/spect/osem.tif

SPECT counts with a ``spect.json`` (written by ``drct simulate`` on an emission scene) are reconstructed by
MLEM/OSEM with its attenuation map and collimator response (:mod:`drct.cli._emission`).

    $ drct reconstruct scan.zarr --geometry scan.json --method fdk --memory 4GiB -o out/recon.zarr

Out of core (:mod:`drct.outofcore`): with ``--memory``, a ``.zarr`` input or a ``.npy``/``.zarr`` output, FBP/FDK
(of a 3D scan), SIRT and CGLS stream the projections from disk in chunks of views within the memory budget
(FBP/FDK writes the volume in z-slabs; SIRT and CGLS hold it in memory); an interrupted run resumes when it is
started again with the same arguments (``--restart``: start over).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import add_determinism_flag
from ._flags import add_iterations, add_output, add_progress, add_threads

METHODS = ("fbp", "fdk", "sirt", "cgls", "os_sart", "fista_tv", "mlem", "osem", "bsrem")
_ITERATIVE_DEFAULTS = {"sirt": 100, "cgls": 20, "os_sart": 10, "fista_tv": 50, "mlem": 50, "osem": 10}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "reconstruct",
        help="reconstruct a volume from projections (FBP/FDK or an iterative solver)",
        description="Reconstruct projections (line integrals, .npy or TIFF stack shaped (views, [rows,] cols), "
        "with a drct geometry file; or a scanner's files: NXtomo .nx/.nxs/.h5, Nikon .xtekct, a TIFF folder with "
        "flats/ and darks/) whose raw readings are normalised with flat and dark fields; writes a TIFF stack and a "
        "PNG of the central slices.",
    )
    parser.add_argument(
        "projections", help="projections: .npy, .tif/.tiff stack, NXtomo .nx/.nxs/.h5, .xtekct, or a TIFF folder"
    )
    parser.add_argument(
        "--geometry",
        default=None,
        help="geometry file: drct .json, or ASTRA vector rows (.txt/.npy); needed unless the input stores one",
    )
    parser.add_argument(
        "--format",
        choices=("npy", "tiff", "nxtomo", "xtek"),
        default=None,
        help="input format (default: from the extension or the content)",
    )
    parser.add_argument("--flat", default=None, help="flat field (source on, no object): .npy/.tif file or TIFF folder")
    parser.add_argument("--dark", default=None, help="dark field (source off): .npy/.tif file or TIFF folder")
    parser.add_argument(
        "--raw-is-line-integrals",
        action="store_true",
        help="use the projections as they are, even where they look like raw counts (no normalisation)",
    )
    parser.add_argument("--method", choices=METHODS, default="fbp", help="reconstruction method (default fbp)")
    add_output(
        parser,
        "output TIFF path (.tif/.tiff; the PNG goes beside it), or a folder ending in / for a DICOM series "
        "(CT slices; emission: an NM image) with preview.png in it",
    )
    add_iterations(parser, "iterations (iterative methods)", old=("--niter",), type=int, default=None)
    parser.add_argument("--basis", default="linear", choices=("voxel", "linear", "bspline2", "bspline3"))
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument(
        "--filter", default="ram-lak", help="FBP/FDK filter: ram-lak, shepp-logan, cosine, hamming, hann"
    )
    parser.add_argument("--cutoff", type=float, default=1.0, help="FBP/FDK filter cut-off, fraction of Nyquist")
    parser.add_argument("--subsets", type=int, default=None, help="ordered subsets (os_sart, osem, bsrem)")
    parser.add_argument("--lam", type=float, default=None, help="TV weight (fista_tv)")
    parser.add_argument("--beta", type=float, default=None, help="relative-difference prior weight (bsrem, emission)")
    parser.add_argument("--nonneg", action="store_true", help="non-negativity (sirt, os_sart; fista_tv always)")
    parser.add_argument(
        "--layout",
        choices=("drct", "astra"),
        default="drct",
        help="3D projection axes: drct (views, rows, cols) or astra (rows, views, cols)",
    )
    parser.add_argument(
        "--shape",
        type=int,
        nargs="+",
        default=None,
        help="volume shape (z y x | y x) if the geometry file has no volume",
    )
    parser.add_argument("--voxel-size", type=float, nargs="+", default=None, help="voxel size in mm (with --shape)")
    parser.add_argument("--beam", choices=("parallel", "cone"), default=None, help="beam of a plain vector file")
    parser.add_argument("--det-shape", type=int, nargs="+", default=None, help="detector shape of a vector file")
    parser.add_argument("--curved", action="store_true", help="curved detector (plain vector files)")
    parser.add_argument(
        "--scatter", default=None, help="SPECT: known scatter counts (.npy, like the counts) as OSEM's additive term"
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument(
        "--memory",
        default=None,
        help="stream the projections from disk within this memory budget (e.g. 4GiB), in chunks of views (.npy, "
        ".zarr, TIFF): FBP/FDK of a 3D scan writes the volume in z-slabs, SIRT/CGLS keep it in memory; outputs .npy, "
        ".zarr, .tif; an interrupted run resumes",
    )
    parser.add_argument("--restart", action="store_true", help="streaming: start over, not resume an interrupted run")
    add_determinism_flag(parser)
    add_threads(parser)
    add_progress(parser)
    parser.set_defaults(func=run)


def _volume(args: argparse.Namespace, vg: Any, ndim: int) -> Any:
    from ..geometry.volume import VolumeGeometry

    if args.shape is not None:
        if len(args.shape) != ndim:
            raise ValueError(f"--shape needs {ndim} integers for this {ndim}D geometry, got {args.shape}")
        return VolumeGeometry(args.shape, voxel_size=args.voxel_size or 1.0)
    if vg is None:
        raise ValueError(
            "the geometry file stores no volume: pass --shape (and --voxel-size), or save the geometry with a "
            "volume (drct.save_geometry(path, pg, vg))"
        )
    return vg


def _solve(args: argparse.Namespace, A: Any, y: np.ndarray) -> np.ndarray:
    from .. import recon

    if args.method in ("fbp", "fdk"):
        return getattr(recon, args.method)(A, y, filter=args.filter, cutoff=args.cutoff, progress=not args.no_progress)
    kwargs: dict[str, Any] = {
        "niter": _ITERATIVE_DEFAULTS[args.method] if args.iterations is None else args.iterations,
        "progress": not args.no_progress,
    }
    if args.subsets is not None:
        if args.method not in ("os_sart", "osem"):
            raise ValueError(f"--subsets applies to os_sart and osem, not {args.method}")
        kwargs["subsets"] = args.subsets
    if args.lam is not None:
        if args.method != "fista_tv":
            raise ValueError(f"--lam applies to fista_tv, not {args.method}")
        kwargs["lam"] = args.lam
    if args.nonneg:
        if args.method not in ("sirt", "os_sart", "fista_tv"):
            raise ValueError(f"--nonneg applies to sirt, os_sart and fista_tv, not {args.method}")
        kwargs["nonneg"] = True
    return getattr(recon, args.method)(A, y, **kwargs)


def _read_scan(args: argparse.Namespace) -> Any:
    """The input as a :class:`drct.formats.Scan`: a plain ``.npy``/TIFF file keeps its dtype and has no geometry;
    ``--layout astra`` is undone here, before any normalisation."""
    from .. import formats
    from ..io import read_array

    path = Path(args.projections)
    fmt = args.format or ("npy" if path.suffix.lower() == ".npy" else formats.detect(path))
    if fmt == "npy" or (fmt == "tiff" and not path.is_dir()):
        scan = formats.Scan(read_array(path, "projections file"), None)
    else:
        try:
            scan = formats.read(path, fmt)
        except ImportError as err:  # h5py/pydicom missing: a user's error (install the extra), one line
            raise ValueError(str(err)) from None
    if args.layout == "astra":
        if scan.projections.ndim != 3:
            raise ValueError(
                f"--layout astra is for 3D projections (rows, views, cols), got shape {scan.projections.shape}"
            )
        scan.projections = np.ascontiguousarray(np.transpose(scan.projections, (1, 0, 2)))
    return scan


def _field(path: str, what: str, image_shape: tuple[int, ...]) -> np.ndarray:
    """A flat or dark field from a file or TIFF folder: one image, or frames averaged."""
    from ..formats.tiffstack import read_frames
    from ..io import read_array

    p = Path(path)
    field = read_frames(p, what) if p.is_dir() else read_array(p, what)
    if field.shape != image_shape:
        if field.shape[1:] != image_shape:
            raise ValueError(f"{p}: {what} has shape {field.shape}; expected one image {image_shape} or frames of it")
        field = field.astype(np.float64).mean(axis=0)
    return np.asarray(field, dtype=np.float64)


def _line_integrals(args: argparse.Namespace, scan: Any) -> np.ndarray:
    """Line integrals from the scan: normalised with flat/dark fields where there are any, else the projections
    as they are, refused if they look like raw counts (:func:`drct.formats.require_line_integrals`)."""
    from ..formats import normalize, require_line_integrals

    raw = scan.projections
    image = raw.shape[1:]
    flat = _field(args.flat, "flat field", image) if args.flat is not None else scan.flat
    dark = _field(args.dark, "dark field", image) if args.dark is not None else scan.dark
    if args.raw_is_line_integrals:
        if args.flat is not None or args.dark is not None:
            raise ValueError("--raw-is-line-integrals means no normalisation: drop --flat/--dark, or drop it")
        return np.asarray(raw, dtype=np.float32)
    if flat is not None:
        return normalize(raw, flat, 0.0 if dark is None else dark)
    if dark is not None:
        raise ValueError("a dark field without a flat field cannot normalise the readings: pass --flat too")
    require_line_integrals(raw, str(args.projections))
    return np.asarray(raw, dtype=np.float32)


def save_png(path: str | Path, volume: np.ndarray, title: str, label: str = "μ (1/mm)") -> None:
    """The central slices (3D: axial, coronal, sagittal) or the image (2D), with a colour bar, as a PNG
    (written directly: :func:`run` writes it and the TIFF together, see :func:`drct.io.write_together`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if volume.ndim == 2:
        panels = [("image (y, x)", volume)]
    else:
        z, yy, x = (n // 2 for n in volume.shape)
        panels = [
            (f"axial z={z}", volume[z]),
            (f"coronal y={yy}", volume[:, yy, :]),
            (f"sagittal x={x}", volume[:, :, x]),
        ]
    lo, hi = np.percentile(volume, [0.5, 99.5])
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    for ax, (name, image) in zip(axes[0], panels, strict=True):
        shown = ax.imshow(image, cmap="gray", origin="lower", vmin=lo, vmax=hi)
        ax.set_title(name)
        ax.axis("off")
        fig.colorbar(shown, ax=ax, fraction=0.046, label=label)
    fig.suptitle(title)
    fig.tight_layout()
    try:
        fig.savefig(path, format="png", dpi=100)
    finally:
        plt.close(fig)


def require_memory_for(vg: Any, pg: Any, dtype: str, what: str, copies: int = 4) -> None:
    """Refuse (:class:`~drct.errors.MemoryBudgetError`) a problem whose volume and projections, ``copies`` of
    each (a solver's iterate, residual, gradient and scratch), cannot fit in the available memory."""
    import math

    from ..memory import require_memory

    itemsize = np.dtype(dtype).itemsize
    nbytes = copies * itemsize * (math.prod(vg.shape) + math.prod(pg.shape))
    require_memory(nbytes, f"{what} of a {'x'.join(map(str, vg.shape))} volume from {pg.shape} projections")


def _streaming(args: argparse.Namespace) -> bool:
    """Out of core: asked for with --memory, or implied by a zarr input or a .npy/.zarr output."""
    suffixes = Path(args.projections).suffix.lower(), Path(args.output).suffix.lower()
    return args.memory is not None or suffixes[0] == ".zarr" or suffixes[1] in (".npy", ".zarr")


def run_streaming(args: argparse.Namespace) -> int:
    """FBP/FDK (:func:`drct.outofcore.fbp`), SIRT or CGLS (:mod:`drct.outofcore.solvers`) out of core: line
    integrals only, the layout (views, rows, cols); resumable from the work folder beside the output."""
    from ..geometry.files import load_geometry
    from ..io import write_atomically
    from ..outofcore import cgls, fbp, open_array, sirt
    from ..outofcore.fdk import finish_output

    if args.method not in ("fbp", "fdk", "sirt", "cgls"):
        raise ValueError(f"--memory streams fbp/fdk/sirt/cgls, not {args.method}: the others need the data in memory")
    if args.nonneg and args.method != "sirt":
        raise ValueError(f"--nonneg applies to sirt when streaming, not {args.method}")
    if args.flat is not None or args.dark is not None or args.layout != "drct" or args.dtype != "float32":
        raise ValueError(
            "streaming reads float32 line integrals (views, rows, cols): no --flat/--dark/--layout/--dtype"
        )
    if args.geometry is None:
        raise ValueError(f"streaming {args.projections} needs --geometry (a drct .json or ASTRA vector file)")
    det_shape = None if args.det_shape is None else tuple(args.det_shape)
    pg, vg = load_geometry(args.geometry, args.beam, det_shape, args.curved)
    vg = _volume(args, vg, pg.ndim)
    if args.method == "fdk" and pg.beam != "cone":
        raise ValueError(f"fdk needs a cone-beam geometry, got {pg.beam}; use --method fbp")
    source = open_array(args.projections)
    if source.dtype.kind in "iu" and not args.raw_is_line_integrals:
        raise ValueError(
            f"{args.projections} holds integers ({source.dtype}): raw readings? streaming needs line integrals "
            "(normalise first, or pass --raw-is-line-integrals)"
        )
    out, start = Path(args.output), time.perf_counter()
    if out.suffix.lower() not in (".npy", ".zarr", ".tif", ".tiff"):
        raise ValueError(f"--output must be .npy, .zarr or .tif/.tiff when streaming, got {out.name!r}")
    if args.method in ("sirt", "cgls"):
        work = out.parent / f".{out.name}.ooc-partial"
        niter = _ITERATIVE_DEFAULTS[args.method] if args.iterations is None else args.iterations
        if args.method == "sirt":
            x = sirt(vg, pg, args.projections, niter=niter, basis=args.basis, memory=args.memory, nonneg=args.nonneg,
                     checkpoint=work, resume=not args.restart, progress=not args.no_progress)  # fmt: skip
        else:
            x = cgls(vg, pg, args.projections, niter=niter, basis=args.basis, memory=args.memory, checkpoint=work,
                     resume=not args.restart, progress=not args.no_progress)  # fmt: skip
        write_atomically(work / "x.npy", lambda tmp: np.save(tmp, x))
        finish_output(work, open_array(work / "x.npy"), out, args.force)
    else:
        fbp(vg, pg, args.projections, out, memory=args.memory, filter=args.filter, cutoff=args.cutoff,
            force=args.force, resume=not args.restart, progress=not args.no_progress)  # fmt: skip
    print(f"{args.method} (streamed): {vg.shape} volume in {time.perf_counter() - start:.2f} s -> {out}")
    return 0


def run(args: argparse.Namespace) -> int:

    from .. import formats
    from ..errors import require_finite
    from ..geometry.files import load_geometry
    from ..io import refuse_overwrite, save_tiff, write_together
    from ..projector import Projector
    from ._emission import emission_volume, is_emission_file
    from ._emission import reconstruct as reconstruct_emission

    if _streaming(args):
        return run_streaming(args)
    out = Path(args.output)
    dicom = formats.is_dicom_folder(args.output)  # out/: a DICOM series (drct.formats.output)
    if not dicom and out.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError(f"--output must end in .tif/.tiff (a TIFF stack) or / (a DICOM folder), got {out.name!r}")
    png = out / "preview.png" if dicom else out.with_suffix(".png")
    if dicom:
        formats.check_dicom_folder(out, args.force)
    else:
        refuse_overwrite([out, png], args.force)
    if args.geometry is not None and is_emission_file(args.geometry):  # counts + spect.json / pet.json
        start = time.perf_counter()
        volume = reconstruct_emission(args)
        elapsed = time.perf_counter() - start
        title = f"{args.method} (emission), {Path(args.projections).name}"
        if dicom:
            formats.write_reconstruction(out, volume, emission_volume(args.geometry), True, title,
                                         lambda tmp: save_png(tmp, volume, title, "activity"), args.force)  # fmt: skip
        else:
            write_together(
                {
                    out: lambda tmp: save_tiff(tmp, volume),
                    png: lambda tmp: save_png(tmp, volume, title, "activity"),
                },
                overwrite=args.force,
            )
        print(f"{args.method}: {volume.shape} activity in {elapsed:.2f} s -> {out}, {png}")
        return 0
    if args.scatter is not None:
        raise ValueError("--scatter applies to SPECT data (a spect.json geometry)")
    if args.method == "bsrem" or args.beta is not None:
        raise ValueError("--method bsrem and --beta are for emission data (a spect.json or pet.json geometry)")
    det_shape = None
    if args.det_shape is not None:
        det_shape = args.det_shape[0] if len(args.det_shape) == 1 else tuple(args.det_shape)
    scan = _read_scan(args)
    if args.geometry is not None:
        pg, vg = load_geometry(args.geometry, args.beam, det_shape, args.curved)
    elif scan.geometry is not None:
        pg, vg = scan.geometry, None
    else:
        raise ValueError(f"{args.projections} stores no geometry: pass --geometry (a drct .json or ASTRA vector file)")
    vg = _volume(args, vg, pg.ndim)
    require_memory_for(vg, pg, args.dtype, f"reconstructing ({args.method})")
    y = _line_integrals(args, scan)
    if y.shape != pg.shape:
        raise ValueError(
            f"{args.projections}: projections have shape {y.shape}, but the geometry expects {pg.shape} "
            "(views, [rows,] cols); for ASTRA's (rows, views, cols) pass --layout astra"
        )
    require_finite(y, f"{args.projections} (projections)")
    A = Projector(vg, pg, basis=args.basis, dtype=args.dtype)
    start = time.perf_counter()
    volume = np.asarray(_solve(args, A, y), dtype=np.float32)
    elapsed = time.perf_counter() - start
    title = f"{args.method} ({args.basis}), {Path(args.projections).name}"
    # the TIFF and its PNG are one set: never a new image beside an old preview (drct.io.write_together)
    if dicom:
        formats.write_reconstruction(
            out, volume, vg, False, title, lambda tmp: save_png(tmp, volume, title), args.force
        )
    else:
        write_together(
            {out: lambda tmp: save_tiff(tmp, volume), png: lambda tmp: save_png(tmp, volume, title)},
            overwrite=args.force,
        )
    print(f"{args.method}: {volume.shape} volume in {elapsed:.2f} s -> {out}, {png}")
    return 0
