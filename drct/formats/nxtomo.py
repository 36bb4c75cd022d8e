"""NeXus NXtomo (HDF5): read and write projections, flat and dark fields, rotation angles and the geometry.

The NXtomo application definition stores all frames in ``/entry/instrument/detector/data`` (frames, rows,
cols) with ``image_key`` per frame: 0 projection, 1 flat field, 2 dark field, 3 invalid (skipped); the angles
in ``/entry/sample/rotation_angle`` (``units`` attribute, default degrees).

Conversion to a drct geometry:

- rotation angle -> drct angle ``θ`` (:func:`drct.parallel`/:func:`drct.cone`), unchanged. NXtomo does not fix
  the sense of rotation against the detector axes: if a reconstruction comes out mirrored, the scanner turned
  the other way; pass ``angle_sign=-1``.
- ``detector/x_pixel_size`` -> column pitch, ``detector/y_pixel_size`` -> row pitch (``units``, default mm).
- parallel beam, unless ``instrument/source/distance`` is given (NeXus: the source's distance from the sample,
  negative upstream): then a cone beam with ``src_orig_dist = -source/distance`` and
  ``src_det_dist = src_orig_dist + detector/distance``.
- ``data`` is read as ``(frames, rows, cols)``, row-major images as NXtomo files are written in practice
  (the definition names the axes ``[nFrames, xSize, ySize]``); rows go up the detector (drct's ``+v``), columns
  along drct's ``+u``; flats and darks are averaged over their frames.

Example:
    >>> import numpy as np, os, tempfile, drct as ct
    >>> from drct.formats import read_nxtomo, write_nxtomo
    >>> pg = ct.parallel(np.linspace(0, np.pi, 6, endpoint=False), (2, 3), 0.5)
    >>> path = os.path.join(tempfile.mkdtemp(), "scan.nx")
    >>> _ = write_nxtomo(path, np.full(pg.shape, 400, np.uint16), pg, flat=np.full((2, 3), 800), dark=0)
    >>> scan = read_nxtomo(path)
    >>> scan.geometry.shape, round(float(scan.line_integrals().max()), 4)
    ((6, 2, 3), 0.6931)
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..extras import require
from ..geometry.projection import ProjectionGeometry
from ..io import regular_file, write_atomically
from ..memory import require_memory
from .orbit import Orbit, circular_geometry, circular_orbit
from .scan import Scan, to_mm, to_radians

PROJECTION, FLAT, DARK, INVALID = 0, 1, 2, 3


def _h5py() -> Any:
    return require("h5py", "reading and writing NXtomo files")


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.reshape(-1)[0])
    return str(value)


def _unit(node: Any) -> str | None:
    unit = node.attrs.get("units")
    return None if unit is None else _text(unit)


def _entry(f: Any, path: Path) -> Any:
    """The NXtomo entry: the first group whose ``definition`` is NXtomo, else the first with detector data."""
    groups = [f[k] for k in f if hasattr(f[k], "keys")]
    for g in groups:
        if "definition" in g and _text(g["definition"][()]).strip() == "NXtomo":
            return g
    for g in groups:
        if "instrument/detector/data" in g:
            return g
    raise ValueError(f"{path}: no NXtomo entry (a group with instrument/detector/data) in this HDF5 file")


def _field(entry: Any, names: tuple[str, ...], path: Path, what: str) -> Any:
    for name in names:
        if name in entry:
            return entry[name]
    raise ValueError(f"{path}: NXtomo entry {entry.name} has no {what} (looked for {', '.join(names)})")


def _mean(frames: np.ndarray) -> np.ndarray | None:
    return None if frames.shape[0] == 0 else frames.astype(np.float64).mean(axis=0)


def read_nxtomo(path: str | os.PathLike[str], angle_sign: float = 1.0) -> Scan:
    """A scan from an NXtomo HDF5 file (see the module docstring for the conversion).

    Args:
        path: ``.nx``/``.nxs``/``.h5``/``.hdf5`` file.
        angle_sign: +1, or -1 for a scanner that turns the other way round.

    Raises:
        ValueError: not HDF5, no NXtomo entry, frames and keys/angles of different lengths, no projection
            frame, an unknown unit.
        ImportError: h5py is not installed (``pip install "drct[formats]"``).

    Example:
        >>> import numpy as np, os, tempfile, drct as ct
        >>> from drct.formats import read_nxtomo, write_nxtomo
        >>> pg = ct.parallel(np.linspace(0, np.pi, 4, endpoint=False), (2, 3), 0.5)
        >>> path = os.path.join(tempfile.mkdtemp(), "scan.nxs")
        >>> _ = write_nxtomo(path, np.full(pg.shape, 0.5, np.float32), pg)  # line integrals: no flat field
        >>> scan = read_nxtomo(path)
        >>> scan.flat is None, bool(np.allclose(scan.geometry.to_vectors(), pg.to_vectors()))
        (True, True)
    """
    h5py = _h5py()
    p = regular_file(path, "NXtomo file")
    if angle_sign not in (1, -1, 1.0, -1.0):
        raise ValueError(f"angle_sign must be +1 or -1, got {angle_sign!r}")
    try:
        f = h5py.File(p, "r")
    except OSError as err:
        raise ValueError(f"{p}: not a readable HDF5 file ({err})") from None
    with f:
        entry = _entry(f, p)
        data = _field(entry, ("instrument/detector/data", "data/data"), p, "detector data")
        if data.ndim != 3:
            raise ValueError(f"{p}: detector data must be (frames, rows, cols), got shape {data.shape}")
        frames = data.shape[0]
        key_node = _field(entry, ("instrument/detector/image_key", "data/image_key"), p, "image_key")
        keys = np.asarray(key_node[()], dtype=np.int64).reshape(-1)
        angle_node = _field(entry, ("sample/rotation_angle", "data/rotation_angle"), p, "rotation_angle")
        angles = to_radians(np.asarray(angle_node[()]).reshape(-1), _unit(angle_node), f"{p}: rotation_angle")
        if keys.size != frames or angles.size != frames:
            raise ValueError(f"{p}: {frames} frames but {keys.size} image_key and {angles.size} rotation_angle values")
        unknown = sorted(set(keys.tolist()) - {PROJECTION, FLAT, DARK, INVALID})
        if unknown:
            raise ValueError(
                f"{p}: image_key values must be 0 (projection), 1 (flat), 2 (dark), 3 (invalid), got {unknown}"
            )
        if not (keys == PROJECTION).any():
            raise ValueError(f"{p}: no projection frame (image_key 0) in the file")
        require_memory(math.prod(data.shape) * (data.dtype.itemsize + 8), f"reading {p} (shape {data.shape})")
        allframes = np.asarray(data[()])
        detector = entry["instrument/detector"]
        pitch = []
        for name in ("y_pixel_size", "x_pixel_size"):
            node = detector.get(name)
            pitch.append(1.0 if node is None else to_mm(node[()], _unit(node), f"{p}: detector/{name}"))
        notes = [
            f"NXtomo {p.name}: {int((keys == PROJECTION).sum())} projections, {int((keys == FLAT).sum())} "
            f"flat and {int((keys == DARK).sum())} dark frames"
        ]
        so = sd = None
        source = entry.get("instrument/source/distance")
        if source is not None:
            so = -to_mm(source[()], _unit(source), f"{p}: source/distance")
            det_node = detector.get("distance")
            if det_node is None:
                raise ValueError(f"{p}: a source distance but no detector/distance: cannot place the detector")
            sd = so + to_mm(det_node[()], _unit(det_node), f"{p}: detector/distance")
            notes.append(f"cone beam: source {so:g} mm before the axis, detector {sd:g} mm from the source")
        else:
            notes.append("parallel beam (no instrument/source/distance)")
    chosen = keys == PROJECTION
    rows, cols = allframes.shape[1:]
    geometry = circular_geometry(Orbit(angle_sign * angles[chosen], (rows, cols), (pitch[0], pitch[1]), so, sd))
    return Scan(
        allframes[chosen], geometry, _mean(allframes[keys == FLAT]), _mean(allframes[keys == DARK]), notes=notes
    )


def write_nxtomo(
    path: str | os.PathLike[str],
    projections: Any,
    geometry: ProjectionGeometry,
    flat: Any = None,
    dark: Any = None,
    overwrite: bool = False,
) -> Path:
    """Write a scan as an NXtomo file (atomically; FileExistsError unless ``overwrite``).

    Args:
        path: the file to write.
        projections: ``(views, rows, cols)`` raw readings (any numeric dtype, kept) or line integrals.
        geometry: a centred circular orbit (:func:`drct.cone` or :func:`drct.parallel`; anything else is refused).
        flat: flat field frames ``(n, rows, cols)``, one image ``(rows, cols)``, a number, or None.
        dark: dark field, likewise.

    Returns:
        The path written.

    Example:
        >>> import numpy as np, os, tempfile, drct as ct
        >>> from drct.formats import write_nxtomo
        >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 4, endpoint=False), (2, 3), 0.5, 50.0, 100.0)
        >>> path = os.path.join(tempfile.mkdtemp(), "scan.nxs")
        >>> written = write_nxtomo(path, np.full(pg.shape, 300, np.uint16), pg, flat=np.full((2, 3), 900), dark=100)
        >>> os.path.basename(written)
        'scan.nxs'
    """
    h5py = _h5py()
    orbit = circular_orbit(geometry)
    y = np.asarray(projections)
    if y.shape != geometry.shape:
        raise ValueError(f"projections have shape {y.shape}, the geometry expects {geometry.shape}")
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"projections must be numeric, got dtype {y.dtype}")
    blocks, keys, angles = [y], [np.full(len(y), PROJECTION)], [np.degrees(orbit.angles)]
    for field, key in ((flat, FLAT), (dark, DARK)):
        if field is None:
            continue
        name = "flat" if key == FLAT else "dark"
        frames = np.asarray(field)
        if frames.ndim < 3:
            frames = np.broadcast_to(frames, y.shape[1:])[None]
        if frames.shape[1:] != y.shape[1:]:
            raise ValueError(f"{name} frames {frames.shape} do not match the detector {y.shape[1:]}")
        blocks.append(frames.astype(y.dtype))
        keys.append(np.full(len(frames), key))
        angles.append(np.zeros(len(frames)))
    data, image_key, rotation = np.concatenate(blocks), np.concatenate(keys), np.concatenate(angles)

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["default"] = "entry"
            entry = f.create_group("entry")
            entry.attrs["NX_class"] = "NXentry"
            entry["definition"] = "NXtomo"
            instrument = entry.create_group("instrument")
            instrument.attrs["NX_class"] = "NXinstrument"
            source = instrument.create_group("source")
            source.attrs["NX_class"] = "NXsource"
            source["type"] = "X-ray"
            detector = instrument.create_group("detector")
            detector.attrs["NX_class"] = "NXdetector"
            detector["data"] = data
            detector["image_key"] = image_key.astype(np.int8)
            for name, value in (("y_pixel_size", orbit.det_spacing[0]), ("x_pixel_size", orbit.det_spacing[1])):
                detector[name] = value
                detector[name].attrs["units"] = "mm"
            if orbit.src_orig_dist is not None and orbit.src_det_dist is not None:
                source["distance"] = -orbit.src_orig_dist
                source["distance"].attrs["units"] = "mm"
                detector["distance"] = orbit.src_det_dist - orbit.src_orig_dist
                detector["distance"].attrs["units"] = "mm"
            sample = entry.create_group("sample")
            sample.attrs["NX_class"] = "NXsample"
            sample["rotation_angle"] = rotation
            sample["rotation_angle"].attrs["units"] = "degree"
            nxdata = entry.create_group("data")
            nxdata.attrs["NX_class"] = "NXdata"
            nxdata.attrs["signal"] = "data"
            for name, target in (
                ("data", detector["data"]),
                ("image_key", detector["image_key"]),
                ("rotation_angle", sample["rotation_angle"]),
            ):
                nxdata[name] = target  # hard links, as NXtomo's NXdata expects

    from ..io import refuse_overwrite

    refuse_overwrite([path], overwrite)
    return write_atomically(path, write)
