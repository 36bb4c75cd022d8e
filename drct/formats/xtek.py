"""Nikon XTek CT (``.xtekct`` text geometry + one TIFF per projection), read into a drct cone-beam scan.

The ``.xtekct`` file is ``Key=Value`` lines (an ``[XTekCT]`` section). Keys used (lengths in mm, angles in
degrees): ``SrcToObject`` (source to rotation axis), ``SrcToDetector``, ``DetectorPixelsX``/``Y`` (columns,
rows), ``DetectorPixelSizeX``/``Y``, ``Projections``, ``InitialAngle``, ``AngularStep``, ``WhiteLevel`` (the
open-beam reading, used as the flat field; no dark: Nikon's projections are dark-corrected), ``ObjectOffsetX``
(or ``CentreOfRotationTop``/``Bottom`` in detector mm, scaled by the magnification), ``InputFolderName`` and
``Name`` (the projections are ``<Name>_NNNN.tif`` in that folder). ``ObjectRoll``/``ObjectTilt`` other than 0
(or unequal top and bottom centres of rotation) describe a tilted axis, which this reader does not model: it
refuses them rather than reconstruct a blurred volume.

Angles: the stage angle of projection ``k`` is ``φ_k = InitialAngle + k * AngularStep`` or, with
``angles="ctdata"``, the second column of ``_ctdata.txt`` beside the ``.xtekct`` file (projection number,
angle in degrees, ...).

Mapping to drct's cone geometry, following the format's conventions as CIL's public NikonDataReader reads them
(the stage turns clockwise seen from above; the first image pixel is at the detector's top right seen from the
source; ``ObjectOffsetX`` moves the axis sideways). TIGRE's public loader makes other choices (no image flip, the
axis offset from ``CentreOfRotationTop`` unscaled, and it says itself that it does not know that sign); neither
reader, nor this one, is checked here against a scanner's own file: the tests check the mapping below against
drct's own projections. A mirrored or turned reconstruction of real data means the sense is the other one.
With ``θ = φ - 180°`` (radians), ``R(θ)`` the turn by ``θ`` about ``z`` and ``o = ObjectOffsetX``:

- source ``R(θ)(o, -SrcToObject, 0)``, detector centre ``R(θ)(o, SrcToDetector - SrcToObject, 0)``;
- column step ``R(θ)(-DetectorPixelSizeX, 0, 0)``, row step ``(0, 0, -DetectorPixelSizeY)`` (first pixel at
  the top right), so the images are used as stored.

Writing (:func:`write_xtek`) is the inverse: a drct cone-beam circular orbit (:func:`drct.cone`, evenly
spaced angles) becomes ``InitialAngle = θ_0 + 180°``, ``AngularStep``, the distances and pitches, and the
images are stored flipped in both axes, so that :func:`read_xtek` gives back the same rays: the same sources and
detector centres, the detector axes reversed (``det_u``, ``det_v`` negated) and the images with them.

Example:
    >>> import numpy as np, os, tempfile, tifffile
    >>> from drct.formats import read_xtek
    >>> root = tempfile.mkdtemp()
    >>> lines = ["[XTekCT]", "Name=part", "SrcToObject=100", "SrcToDetector=400", "DetectorPixelsX=4",
    ...          "DetectorPixelsY=3", "DetectorPixelSizeX=0.2", "DetectorPixelSizeY=0.2", "Projections=2",
    ...          "InitialAngle=0", "AngularStep=90", "WhiteLevel=60000"]
    >>> _ = open(os.path.join(root, "part.xtekct"), "w").write("\\n".join(lines))
    >>> for k in range(2):
    ...     tifffile.imwrite(os.path.join(root, f"part_{k + 1:04d}.tif"), np.full((3, 4), 30000, np.uint16))
    >>> scan = read_xtek(os.path.join(root, "part.xtekct"))
    >>> scan.geometry.shape, round(float(scan.line_integrals()[0, 0, 0]), 4)
    ((2, 3, 4), 0.6931)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import require_finite
from ..geometry.factories import from_vectors
from ..geometry.projection import ProjectionGeometry
from ..io import output_folder, read_tiff, regular_file
from ..memory import require_memory
from .orbit import circular_orbit
from .scan import Scan

REQUIRED = (
    "SrcToObject",
    "SrcToDetector",
    "DetectorPixelsX",
    "DetectorPixelsY",
    "DetectorPixelSizeX",
    "DetectorPixelSizeY",
    "Projections",
)
MAX_TEXT = 1_000_000  # bytes: a .xtekct file is a few kB


def parse_xtekct(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``Key=Value`` pairs of a ``.xtekct`` file (section headers and blank lines skipped)."""
    p = regular_file(path, ".xtekct file")
    if p.stat().st_size > MAX_TEXT:
        raise ValueError(f"{p}: {p.stat().st_size} bytes is too large for a .xtekct text file")
    values: dict[str, str] = {}
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith(("[", ";", "#")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    missing = [k for k in REQUIRED if k not in values]
    if missing:
        raise ValueError(f"{p}: not a usable .xtekct file: missing {', '.join(missing)}")
    return values


def _number(values: dict[str, str], key: str, path: Path, default: float | None = None) -> float:
    if key not in values or values[key] == "":
        if default is None:
            raise ValueError(f"{path}: {key} is missing")
        return default
    try:
        number = float(values[key])
    except ValueError:
        raise ValueError(f"{path}: {key}={values[key]!r} is not a number") from None
    if not np.isfinite(number):
        raise ValueError(f"{path}: {key}={values[key]!r} must be finite")
    return number


def _count(values: dict[str, str], key: str, path: Path) -> int:
    number = _number(values, key, path)
    if number != int(number) or number < 1:
        raise ValueError(f"{path}: {key}={values[key]!r} must be a positive integer")
    return int(number)


def _ctdata_angles(path: Path, count: int) -> np.ndarray:
    """Degrees from ``_ctdata.txt``: rows ``projection angle ...`` after the header lines."""
    p = regular_file(path, "_ctdata.txt file")
    angles = []
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and re.fullmatch(r"\d+", parts[0]):
            try:
                angles.append(float(parts[1]))
            except ValueError:
                continue
    if len(angles) != count:
        raise ValueError(f"{p}: {len(angles)} angle rows, but the .xtekct file declares {count} projections")
    return np.asarray(angles)


def _projection_files(folder: Path, name: str | None, count: int) -> list[Path]:
    tiffs = sorted(q for q in folder.iterdir() if q.suffix.lower() in (".tif", ".tiff"))
    if name:
        pattern = re.compile(re.escape(name) + r"_(\d+)\.tiff?$", re.IGNORECASE)
        numbered = sorted((int(m.group(1)), q) for q in tiffs if (m := pattern.match(q.name)))
        tiffs = [q for _, q in numbered]
    if len(tiffs) != count:
        raise ValueError(
            f"{folder}: {len(tiffs)} projection TIFFs{f' named {name}_NNNN.tif' if name else ''}, "
            f"but the .xtekct file declares {count}"
        )
    return tiffs


def read_xtek(path: str | os.PathLike[str], angles: str = "xtekct") -> Scan:
    """A Nikon XTek scan: the ``.xtekct`` geometry and the projection TIFFs (see the module docstring).

    Args:
        path: the ``.xtekct`` file.
        angles: ``"xtekct"`` (``InitialAngle + k * AngularStep``) or ``"ctdata"`` (``_ctdata.txt``).

    Example:
        >>> import numpy as np, os, tempfile, tifffile
        >>> from drct.formats import read_xtek
        >>> root = tempfile.mkdtemp()
        >>> keys = {"SrcToObject": 100, "SrcToDetector": 400, "DetectorPixelsX": 4, "DetectorPixelsY": 3,
        ...         "DetectorPixelSizeX": 0.2, "DetectorPixelSizeY": 0.2, "Projections": 1, "AngularStep": 1,
        ...         "WhiteLevel": 60000}
        >>> _ = open(os.path.join(root, "a.xtekct"), "w").write("\\n".join(f"{k}={v}" for k, v in keys.items()))
        >>> tifffile.imwrite(os.path.join(root, "a_0001.tif"), np.full((3, 4), 15000, np.uint16))
        >>> scan = read_xtek(os.path.join(root, "a.xtekct"))
        >>> scan.geometry.shape, round(float(scan.line_integrals()[0, 0, 0]), 4)  # -log(15000 / 60000)
        ((1, 3, 4), 1.3863)
    """
    p = Path(path)
    values = parse_xtekct(p)
    cols, rows = _count(values, "DetectorPixelsX", p), _count(values, "DetectorPixelsY", p)
    count = _count(values, "Projections", p)
    px, py = _number(values, "DetectorPixelSizeX", p), _number(values, "DetectorPixelSizeY", p)
    so, sd = _number(values, "SrcToObject", p), _number(values, "SrcToDetector", p)
    if not (0 < so < sd) or px <= 0 or py <= 0:
        raise ValueError(
            f"{p}: need 0 < SrcToObject < SrcToDetector and positive pixel sizes, got "
            f"SrcToObject={so}, SrcToDetector={sd}, pixel sizes {px}, {py}"
        )
    for key in ("ObjectRoll", "ObjectTilt"):
        if _number(values, key, p, 0.0) != 0.0:
            raise ValueError(f"{p}: {key}={values[key]} (a tilted rotation axis) is not modelled by this reader")
    top, bottom = _number(values, "CentreOfRotationTop", p, 0.0), _number(values, "CentreOfRotationBottom", p, 0.0)
    if "ObjectOffsetX" in values and values["ObjectOffsetX"] != "":
        offset = _number(values, "ObjectOffsetX", p)
    else:
        if top != bottom:
            raise ValueError(f"{p}: CentreOfRotationTop {top} != Bottom {bottom} (a tilted axis) is not modelled")
        offset = 0.5 * (top + bottom) * so / sd
    if angles == "xtekct":
        phi = _number(values, "InitialAngle", p, 0.0) + np.arange(count) * _number(values, "AngularStep", p)
    elif angles == "ctdata":
        phi = _ctdata_angles(p.parent / "_ctdata.txt", count)
    else:
        raise ValueError(f"angles must be 'xtekct' or 'ctdata', got {angles!r}")
    folder = p.parent / values["InputFolderName"] if values.get("InputFolderName") else p.parent
    files = _projection_files(folder, values.get("Name"), count)
    require_memory(count * rows * cols * 8, f"reading {count} projections of {rows}x{cols} pixels from {folder}")
    data = np.stack([read_tiff(q, "projection") for q in files])
    if data.shape != (count, rows, cols):
        raise ValueError(
            f"{folder}: projections have shape {data.shape[1:]}, the .xtekct file declares {rows} rows x {cols} columns"
        )
    theta = np.radians(phi - 180.0)
    s, c = np.sin(theta), np.cos(theta)
    zero, one = np.zeros_like(theta), np.ones_like(theta)

    def turned(x: float, y: float) -> np.ndarray:
        return np.stack([c * x - s * y, s * x + c * y, zero], axis=1)

    vectors = np.concatenate(
        [turned(offset, -so), turned(offset, sd - so), turned(-px, 0.0), np.stack([zero, zero, -py * one], 1)], 1
    )
    geometry = from_vectors(vectors, (rows, cols), beam="cone")
    white = _number(values, "WhiteLevel", p, 0.0)
    notes = [f"Nikon XTek {p.name}: {count} projections, magnification {sd / so:.4g}, axis offset {offset:g} mm"]
    if white <= 0:
        notes.append("no WhiteLevel: pass a flat field")
    return Scan(data, geometry, white if white > 0 else None, 0.0, notes=notes)


def write_xtek(
    folder: str | os.PathLike[str],
    readings: Any,
    geometry: ProjectionGeometry,
    white_level: float | None = None,
    name: str = "scan",
    overwrite: bool = False,
) -> Path:
    """Write a scan as Nikon XTek files: ``<name>.xtekct`` and ``<name>_0001.tif``... in a new ``folder`` (built
    beside it and renamed into place: :func:`drct.io.output_folder`), so that :func:`read_xtek` reads it back.

    Args:
        folder: the output folder (FileExistsError if it holds files, unless ``overwrite``).
        readings: ``(views, rows, cols)`` detector readings in drct's layout (any numeric dtype, kept: Nikon
            scanners write uint16).
        geometry: a centred circular cone-beam orbit (:func:`drct.cone`) with evenly spaced angles.
        white_level: the open-beam reading (``WhiteLevel``, the reader's flat field), or None for none.
        name: the scan's ``Name`` (file names).

    Returns:
        The ``.xtekct`` file.

    Example:
        >>> import numpy as np, os, tempfile, drct as ct
        >>> from drct.formats import read_xtek, write_xtek
        >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 4, endpoint=False), (3, 4), 0.2, 100.0, 400.0)
        >>> folder = os.path.join(tempfile.mkdtemp(), "part")
        >>> path = write_xtek(folder, np.full(pg.shape, 30000, np.uint16), pg, white_level=60000)
        >>> scan = read_xtek(path)
        >>> g = scan.geometry
        >>> bool(np.allclose(g.src, pg.src) and np.allclose(g.det, pg.det) and np.allclose(g.det_u, -pg.det_u))
        True
        >>> scan.flat
        60000.0
    """
    if geometry.beam != "cone":
        raise ValueError(f"a Nikon XTek scan is a cone beam; got a {geometry.beam}-beam geometry")
    orbit = circular_orbit(geometry)
    y = np.asarray(readings)
    if y.shape != geometry.shape:
        raise ValueError(f"readings have shape {y.shape}, the geometry expects {geometry.shape}")
    if not np.issubdtype(y.dtype, np.number) or np.iscomplexobj(y):
        raise ValueError(f"readings must be real numbers, got dtype {y.dtype}")
    require_finite(y, "readings")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"name {name!r} must be letters, digits, '.', '_' or '-' (it names the files)")
    phi = np.degrees(orbit.angles) + 180.0
    step = float(phi[1] - phi[0]) if phi.size > 1 else 0.0
    if phi.size > 2 and not np.allclose(np.diff(phi), step, rtol=0, atol=1e-9 * max(1.0, abs(step))):
        raise ValueError("the angles are not evenly spaced: a .xtekct file stores InitialAngle and AngularStep only")
    if white_level is not None and not (np.isfinite(white_level) and white_level > 0):
        raise ValueError(f"white_level must be a positive number, got {white_level!r}")
    rows, cols = orbit.det_shape
    assert orbit.src_orig_dist is not None and orbit.src_det_dist is not None  # a cone beam: circular_orbit
    keys = {
        "Name": name, "InputFolderName": "", "SrcToObject": float(orbit.src_orig_dist),
        "SrcToDetector": float(orbit.src_det_dist), "DetectorPixelsX": cols, "DetectorPixelsY": rows,
        "DetectorPixelSizeX": float(orbit.det_spacing[1]), "DetectorPixelSizeY": float(orbit.det_spacing[0]),
        "Projections": len(y), "InitialAngle": float(phi[0]), "AngularStep": step, "ObjectOffsetX": 0.0,
        "ObjectRoll": 0.0, "ObjectTilt": 0.0, "WhiteLevel": "" if white_level is None else float(white_level),
    }  # fmt: skip
    text = "[XTekCT]\n" + "".join(f"{k}={v!r}\n" if isinstance(v, float) else f"{k}={v}\n" for k, v in keys.items())
    import tifffile

    with output_folder(folder, force=overwrite) as staging:
        (staging / f"{name}.xtekct").write_text(text, encoding="utf-8")
        for k, frame in enumerate(y):  # first pixel at the top right seen from the source: both axes reversed
            tifffile.imwrite(staging / f"{name}_{k + 1:04d}.tif", np.ascontiguousarray(frame[::-1, ::-1]))
    return Path(folder) / f"{name}.xtekct"
