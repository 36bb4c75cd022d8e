"""DICOM nuclear medicine (NM) images: SPECT projections in (:func:`read_dicom_spect`, :func:`write_dicom_spect`),
reconstructed activity out (:func:`write_dicom_nm`).

A SPECT acquisition is one NM Image Storage file, ``ImageType`` ``.../TOMO/EMISSION``, holding every frame:
``FrameIncrementPointer`` names the vectors that label each frame (``EnergyWindowVector``, ``DetectorVector``,
``RotationVector``, ``AngularViewVector``, 1-based), ``RotationInformationSequence`` describes each rotation and
``DetectorInformationSequence`` each detector head.

Conversion to :func:`drct.spect` (DICOM PS3.3 C.8.4.12, the NM TOMO Acquisition module):

- ``StartAngle`` is the detector's position about the patient: 0° behind the patient (the detector at ``+y``,
  patient coordinates: ``x`` to the patient's left, ``y`` posterior, ``z`` to the head), increasing
  counter-clockwise seen from the feet (towards the patient's left, ``+x``). ``RotationDirection`` ``CC``
  increases it by ``AngularStep`` per view, ``CW`` decreases it. View ``a`` of detector ``d`` is at
  ``φ = StartAngle_d ± (a - 1) · AngularStep``; the detector start angle comes from
  ``DetectorInformationSequence`` (needed for several heads), else from the rotation.
- drct's camera at angle ``θ`` sits at ``(-sin θ, cos θ)``: so ``θ = -φ`` (radians), and drct's patient
  coordinates are DICOM's.
- ``RadialPosition`` (one per view, or one for all) is drct's ``radius``: the detector's distance from the
  rotation axis. From ``DetectorInformationSequence``, else ``RotationInformationSequence``, else the
  ``radius`` argument; none at all is refused (it sets the collimator blur and where attenuation starts).
- ``PixelSpacing`` (row, column) is ``det_spacing``.
- The image axes: ``ImageOrientationPatient`` of the detector (its first row's and first column's directions at
  the start angle; they turn with the detector) must be a view of the axis: the rows along ``±z``, the columns
  across the detector. drct's images run columns along ``(cos θ, sin θ)`` and rows along ``+z``, so the frames
  are flipped where the file's directions are the opposite ones. A file without one is taken as seen from the
  camera with the head up (the way NM views are shown): both axes flipped.
- The volume's in-plane origin is the rotation axis; :meth:`SpectScan.volume_geometry` places the ``z`` slices
  at the detector rows (from ``ImagePositionPatient`` where the file has one).

Not modelled, so refused rather than reconstructed wrongly: fan- or cone-beam collimators (``FocalDistance`` >
0), a ``CenterOfRotationOffset``, a tilted detector (``GantryDetectorTilt``), gated frames (``GATED TOMO``),
several rotations of several heads. A file with several energy windows needs ``energy_window=`` (1-based).

Writing (:func:`write_dicom_spect`): one detector, one rotation with evenly spaced angles, the frames as seen
from the camera (with ``ImageOrientationPatient`` saying so), unsigned 16-bit counts (with ``RescaleSlope``
where they are no integers up to 65535). :func:`write_dicom_nm` writes a reconstruction as an NM
``RECON TOMO`` image (one multi-frame file, one frame per slice), which :func:`drct.formats.read_dicom_series`
reads back.

``drct reconstruct`` reconstructs SPECT counts with a ``spect.json`` (:mod:`drct.emission.files`); from an NM
file: ``scan = read_dicom_spect(path)``, ``np.save("counts.npy", scan.counts)``,
``save_spect("spect.json", scan.geometry, scan.volume_geometry(), collimator, mu, sensitivity)`` with the
collimator and the μ-map (on that grid) the file does not hold, then
``drct reconstruct counts.npy --geometry spect.json --method osem -o out/`` (an NM image out).

No scanner's own file is checked here: the tests check the conversion above against drct's projector on
files written by hand. A reconstruction of real data that comes out mirrored means a file that does not say
which way its images run.

Example:
    >>> import numpy as np, os, tempfile, drct as ct
    >>> from drct.formats import read_dicom_spect, write_dicom_spect
    >>> g = ct.spect(np.radians(np.arange(0, 360, 30)), 200.0, (4, 8), 4.0)
    >>> path = os.path.join(tempfile.mkdtemp(), "spect.dcm")
    >>> _ = write_dicom_spect(path, np.arange(12 * 4 * 8).reshape(12, 4, 8), g)
    >>> scan = read_dicom_spect(path)
    >>> scan.counts.shape, float(scan.counts[1, 2, 3]), bool(np.allclose(scan.geometry.radius, 200.0))
    ((12, 4, 8), 51.0, True)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..emission.geometry import SpectGeometry, spect
from ..errors import require_finite
from ..geometry.volume import VolumeGeometry
from ..io import output_folder, refuse_overwrite, regular_file, write_atomically
from ..memory import require_memory
from .dicom import (
    AXIAL,
    MAX_SLICE_FILE,
    PREVIEW,
    SeriesIds,
    _earlier_output,
    _floats,
    _pydicom,
    new_dataset,
    quantise,
    set_pixels,
)

NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
VECTORS = ("EnergyWindowVector", "DetectorVector", "RotationVector", "AngularViewVector")
COUNTS = ("NumberOfEnergyWindows", "NumberOfDetectors", "NumberOfRotations", None)
RECON_FILE = "nm_recon.dcm"


@dataclass
class SpectScan:
    """SPECT projections from a file, with their geometry.

    Attributes:
        counts: ``(views, rows, cols)`` float32 counts in drct's layout (frames flipped as the file requires).
        geometry: the camera's views (:func:`drct.spect`), in the file's frame order.
        axial_center: the patient ``z`` (mm) of the middle of the detector rows, or None if the file has no
            ``ImagePositionPatient``.
        notes: how the file's quantities were converted (a line per fact).

    Example:
        >>> import numpy as np, drct as ct
        >>> from drct.formats import SpectScan
        >>> g = ct.spect(np.linspace(0, 2 * np.pi, 6, endpoint=False), 150.0, (10, 32), (3.0, 4.0))
        >>> SpectScan(np.zeros(g.shape, np.float32), g, axial_center=-40.0).volume_geometry()
        VolumeGeometry(shape=(10, 32, 32), voxel_size=(3.0, 4.0, 4.0), center=(0.0, 0.0, -40.0))
    """

    counts: np.ndarray
    geometry: SpectGeometry
    axial_center: float | None = None
    notes: list[str] = field(default_factory=list)

    def volume_geometry(self, cols: int | None = None) -> VolumeGeometry:
        """The reconstruction grid :class:`~drct.emission.SPECTProjector` expects: one ``z`` slice per detector
        row (same pitch), ``cols x cols`` voxels of the column pitch in-plane (or ``cols``), centred on the
        rotation axis and at :attr:`axial_center`."""
        rows, det_cols = self.geometry.det_shape
        dz, dx = self.geometry.det_spacing
        n = det_cols if cols is None else int(cols)
        z = 0.0 if self.axial_center is None else self.axial_center
        return VolumeGeometry((rows, n, n), voxel_size=(dz, dx, dx), center=(0.0, 0.0, z))


def _item(ds: Any, sequence: str, index: int) -> Any:
    items = ds.get(sequence)
    return None if items is None or index >= len(items) else items[index]


def _number(node: Any, key: str, where: str) -> float | None:
    if node is None or key not in node or node.get(key) in (None, ""):
        return None
    try:
        value = float(node.get(key))
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {key} {node.get(key)!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: {key} must be finite, got {value}")
    return value


def _radial(node: Any, views: int, where: str) -> np.ndarray | None:
    """RadialPosition of a sequence item: one value for all views or one per view (mm), else None."""
    if node is None or node.get("RadialPosition") in (None, ""):
        return None
    try:
        values = np.atleast_1d(np.asarray(node.RadialPosition, dtype=np.float64))
    except (TypeError, ValueError):
        raise ValueError(f"{where}: RadialPosition {node.RadialPosition!r} must be numbers") from None
    if values.size not in (1, views):
        raise ValueError(f"{where}: RadialPosition has {values.size} values; expected 1 or one per view ({views})")
    require_finite(values, f"{where}: RadialPosition")
    return np.broadcast_to(values, (views,)).copy()


def _vector(ds: Any, name: str, count_key: str | None, frames: int, where: str) -> np.ndarray:
    if name in ds:
        v = np.atleast_1d(np.asarray(ds.get(name), dtype=np.int64))
        if v.size != frames:
            raise ValueError(f"{where}: {name} has {v.size} values for {frames} frames")
        if v.size and v.min() < 1:
            raise ValueError(f"{where}: {name} values are 1-based, got {int(v.min())}")
        return v
    declared = 1 if count_key is None else int(ds.get(count_key, 1) or 1)
    if name == "AngularViewVector":
        return np.arange(1, frames + 1)  # without it: the frames in order (checked against the rotation below)
    if declared != 1:
        raise ValueError(f"{where}: {count_key} is {declared} but {name} is missing: cannot tell the frames apart")
    return np.ones(frames, dtype=np.int64)


def _image_flips(item: Any, phi0: float, where: str) -> tuple[bool, bool, str]:
    """Whether drct's layout reverses the rows and the columns of a detector's frames (module docstring)."""
    theta0 = -math.radians(phi0)
    across = np.array([math.cos(theta0), math.sin(theta0), 0.0])  # drct's column direction at the start angle
    if item is None or "ImageOrientationPatient" not in item:
        return True, True, "no ImageOrientationPatient: frames taken as seen from the camera, head up"
    iop = _floats(item, "ImageOrientationPatient", 6, Path(where))
    row_dir, col_dir = iop[:3], iop[3:]  # along a row (the columns' direction), down a column (the rows')
    along, up = float(row_dir @ across), float(col_dir[2])
    if abs(abs(along) - 1) > 1e-3 or abs(abs(up) - 1) > 1e-3:
        raise ValueError(
            f"{where}: ImageOrientationPatient {iop.tolist()} is no view of the rotation axis at the start angle "
            f"{phi0:g}°: expected rows along ±{np.round(across, 4).tolist()} and columns along ±z"
        )
    return up < 0, along < 0, f"ImageOrientationPatient {iop.round(4).tolist()}"


def read_dicom_spect(path: str | os.PathLike[str], energy_window: int | None = None, radius: Any = None) -> SpectScan:
    """A SPECT acquisition from a DICOM NM ``TOMO`` file (see the module docstring for the conversion).

    Args:
        path: the NM image file.
        energy_window: which energy window (1-based, as ``EnergyWindowVector``) to read; needed when the file
            holds several (e.g. a triple-energy-window scan: read each window on its own).
        radius: the detector's distance from the axis (mm, one number or one per view) where the file gives no
            ``RadialPosition``, or to replace it.

    Raises:
        ValueError: not an NM TOMO image, inconsistent frame vectors or counts, something not modelled (module
            docstring), a missing start angle, angular step or radius.
        ImportError: pydicom is not installed (``pip install "drct[formats]"``).

    Example:
        >>> import numpy as np, os, tempfile, drct as ct
        >>> from drct.formats import read_dicom_spect, write_dicom_spect
        >>> g = ct.spect(np.radians([0.0, -90.0, -180.0]), 120.0, (2, 3), 4.0)   # DICOM: 0°, 90°, 180° CC
        >>> path = write_dicom_spect(os.path.join(tempfile.mkdtemp(), "nm.dcm"), np.ones(g.shape), g)
        >>> scan = read_dicom_spect(path)
        >>> np.round(np.degrees(scan.geometry.angles), 6).tolist()
        [-0.0, -90.0, -180.0]
        >>> scan.notes[1]
        'detector 1: start 0°, CC steps of 90° (θ = -φ), ImageOrientationPatient [-1.0, 0.0, 0.0, 0.0, 0.0, -1.0]'
    """
    pydicom = _pydicom()
    p = regular_file(path, "DICOM NM file")
    if p.stat().st_size > MAX_SLICE_FILE * 4:
        raise ValueError(f"{p}: {p.stat().st_size} bytes is too large for one NM acquisition")
    try:
        ds = pydicom.dcmread(p)
    except Exception as err:  # pydicom raises many kinds
        raise ValueError(f"{p}: not a readable DICOM file ({type(err).__name__}: {err})") from None
    where = str(p)
    kind = [str(v).upper() for v in ds.get("ImageType", [])]
    if ds.get("Modality") != "NM" or len(kind) < 3:
        raise ValueError(f"{p}: not a nuclear medicine image (Modality {ds.get('Modality')!r}, ImageType {kind})")
    if kind[2] != "TOMO":
        hint = {
            "RECON TOMO": "a reconstructed volume: read it with ct.formats.read_dicom_series(folder)",
            "GATED TOMO": "gated frames are not read (one time slot per reconstruction is not modelled)",
        }.get(kind[2], "not a tomographic acquisition")
        raise ValueError(f"{p}: ImageType {'/'.join(kind)}: {hint}")
    if "PixelData" not in ds:
        raise ValueError(f"{p}: no pixel data (a truncated file?)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    rows, cols = int(ds.Rows), int(ds.Columns)
    require_memory(frames * rows * cols * 12, f"reading {p} ({frames} frames of {rows}x{cols})")
    try:
        pixels = np.asarray(ds.pixel_array).reshape(frames, rows, cols)
    except Exception as err:  # unsupported transfer syntax, damaged data, wrong frame count
        raise ValueError(f"{p}: cannot decode the pixel data as {frames} frames of {rows}x{cols} ({err})") from None
    window, detector, rotation, view = (
        _vector(ds, name, key, frames, where) for name, key in zip(VECTORS, COUNTS, strict=True)
    )
    windows = sorted(set(window.tolist()))
    if energy_window is None:
        if len(windows) > 1:
            names = [
                str(getattr(_item(ds, "EnergyWindowInformationSequence", w - 1), "EnergyWindowName", "") or w)
                for w in windows
            ]
            raise ValueError(f"{p}: {len(windows)} energy windows ({', '.join(names)}): pass energy_window=1..")
        energy_window = windows[0]
    if energy_window not in windows:
        raise ValueError(f"{p}: energy window {energy_window} is not in the file (it has {windows})")
    chosen = window == energy_window
    detector, rotation, view, pixels = detector[chosen], rotation[chosen], view[chosen], pixels[chosen]
    heads, turns = sorted(set(detector.tolist())), sorted(set(rotation.tolist()))
    if len(heads) > 1 and len(turns) > 1:
        raise ValueError(f"{p}: {len(heads)} detectors over {len(turns)} rotations is not modelled")
    for g in [ds, *ds.get("DetectorInformationSequence", [])]:
        for key, what in (("FocalDistance", "a converging collimator"), ("CenterOfRotationOffset", "a shifted axis"),
                          ("GantryDetectorTilt", "a tilted detector")):  # fmt: skip
            value = _number(g, key, where)
            if value not in (None, 0.0):
                raise ValueError(f"{p}: {key} {value:g} ({what}) is not modelled by drct.spect")
    notes = [f"DICOM NM {p.name}: {int(chosen.sum())} frames of energy window {energy_window}"]
    phi = np.empty(view.size)
    radii = np.full(view.size, np.nan)
    flip_rows = np.zeros(view.size, bool)
    flip_cols = np.zeros(view.size, bool)
    axial: float | None = None
    for d in heads:
        for r in turns:
            sel = (detector == d) & (rotation == r)
            if not sel.any():
                continue
            head = _item(ds, "DetectorInformationSequence", d - 1)
            turn = _item(ds, "RotationInformationSequence", r - 1)
            tag = f"{p}: detector {d}, rotation {r}"
            if turn is None:
                raise ValueError(f"{tag}: no RotationInformationSequence item: no start angle and angular step")
            start = _number(head, "StartAngle", tag) if len(heads) > 1 else None
            start = _number(turn, "StartAngle", tag) if start is None else start
            if start is None or (len(heads) > 1 and _number(head, "StartAngle", tag) is None):
                raise ValueError(f"{tag}: no StartAngle{' for this detector' if len(heads) > 1 else ''}")
            step = _number(turn, "AngularStep", tag)
            if step is None:
                raise ValueError(f"{tag}: no AngularStep")
            direction = str(turn.get("RotationDirection", "")).upper()
            direction = "CC" if direction == "CCW" else direction  # CCW: a common spelling of the standard's CC
            if direction not in ("CW", "CC"):
                raise ValueError(f"{tag}: RotationDirection {direction!r} must be CW or CC")
            per_turn = int(turn.get("NumberOfFramesInRotation", 0) or 0) or int(view[sel].max())
            if view[sel].max() > per_turn:
                raise ValueError(f"{tag}: angular view {int(view[sel].max())} of a {per_turn}-frame rotation")
            phi[sel] = start + (1 if direction == "CC" else -1) * step * (view[sel] - 1)
            given = _radial(head, per_turn, tag)
            given = _radial(turn, per_turn, tag) if given is None else given
            if given is not None:
                radii[sel] = given[view[sel] - 1]
            flip_rows[sel], flip_cols[sel], how = _image_flips(head, start, tag)
            notes.append(f"detector {d}: start {start:g}°, {direction} steps of {step:g}° (θ = -φ), {how}")
            if head is not None and "ImagePositionPatient" in head and axial is None:
                first_row = _floats(head, "ImagePositionPatient", 3, p)[2]
                iop = _floats(head, "ImageOrientationPatient", 6, p) if "ImageOrientationPatient" in head else None
                down = -1.0 if iop is None else float(np.sign(iop[5]) or -1.0)
                axial = float(first_row + down * 0.5 * (rows - 1) * _floats(ds, "PixelSpacing", 2, p)[0])
    if radius is not None:
        r_given = np.asarray(radius, dtype=np.float64)
        radii = np.broadcast_to(r_given, radii.shape).astype(np.float64) if r_given.ndim == 0 else r_given
        notes.append("radius from the caller")
    elif np.isnan(radii).any():
        raise ValueError(f"{p}: no RadialPosition for {int(np.isnan(radii).sum())} views: pass radius= (mm)")
    counts = pixels.astype(np.float64) * float(ds.get("RescaleSlope", 1.0)) + float(ds.get("RescaleIntercept", 0.0))
    counts = np.where(flip_rows[:, None, None], counts[:, ::-1, :], counts)
    counts = np.where(flip_cols[:, None, None], counts[:, :, ::-1], counts)
    pitch = _floats(ds, "PixelSpacing", 2, p)
    geometry = spect(-np.radians(phi), radii, (rows, cols), (float(pitch[0]), float(pitch[1])))
    return SpectScan(counts.astype(np.float32), geometry, axial, notes)


def _orbit(geometry: SpectGeometry) -> tuple[float, float, str]:
    """(start angle, angular step, direction) of evenly spaced views in DICOM's terms; ValueError otherwise."""
    theta = np.unwrap(geometry.angles)
    delta = float(theta[1] - theta[0]) if theta.size > 1 else 0.0
    if theta.size > 2 and not np.allclose(np.diff(theta), delta, rtol=0, atol=1e-9):
        raise ValueError("the views are not evenly spaced: a DICOM rotation stores a start angle and a step")
    phi0 = float(np.degrees(-theta[0])) % 360.0
    return phi0, abs(math.degrees(delta)), "CC" if delta < 0 else "CW"


def write_dicom_spect(
    path: str | os.PathLike[str],
    counts: Any,
    geometry: SpectGeometry,
    description: str = "drct SPECT projections",
    overwrite: bool = False,
) -> Path:
    """Write SPECT projections as a DICOM NM ``TOMO`` file (atomically; FileExistsError unless ``overwrite``) that
    :func:`read_dicom_spect` reads back to the same counts and geometry (angles modulo 360°).

    Args:
        path: the file to write.
        counts: ``(views, rows, cols)`` counts, >= 0, in drct's layout.
        geometry: from :func:`drct.spect`, with evenly spaced angles (one detector, one rotation).
        description: SeriesDescription.

    Example:
        >>> import numpy as np, os, tempfile, drct as ct
        >>> from drct.formats import read_dicom_spect, write_dicom_spect
        >>> g = ct.spect(np.radians(np.arange(0, 360, 90)), 150.0, (2, 4), 3.0)
        >>> path = write_dicom_spect(os.path.join(tempfile.mkdtemp(), "nm.dcm"), np.full(g.shape, 7.0), g)
        >>> path.name, float(read_dicom_spect(path).counts.sum())
        ('nm.dcm', 224.0)
    """
    pydicom = _pydicom()
    y = np.asarray(counts, dtype=np.float64)
    if y.shape != geometry.shape:
        raise ValueError(f"counts have shape {y.shape}, the geometry expects {geometry.shape}")
    require_finite(y, "counts")
    phi0, step, direction = _orbit(geometry)
    integral = bool(np.all(y == np.rint(y)) and y.min(initial=0) >= 0 and y.max(initial=0) <= 65535)
    stored, slope = (y.astype("<u2"), "1") if integral else quantise(y, signed=False)
    theta0 = -math.radians(phi0)
    as_seen = [-math.cos(theta0), -math.sin(theta0), 0.0, 0.0, 0.0, -1.0]  # both image axes reversed
    views = y.shape[0]
    refuse_overwrite([path], overwrite)

    def write(tmp: str) -> None:
        ds = new_dataset(Path(tmp), NM_IMAGE_STORAGE, "NM", SeriesIds.new(), description)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"]
        ds.NumberOfFrames = views
        ds.FrameIncrementPointer = [pydicom.tag.Tag(name) for name in VECTORS]
        ds.EnergyWindowVector, ds.NumberOfEnergyWindows = [1] * views, 1
        ds.DetectorVector, ds.NumberOfDetectors = [1] * views, 1
        ds.RotationVector, ds.NumberOfRotations = [1] * views, 1
        ds.AngularViewVector = list(range(1, views + 1))
        ds.PixelSpacing = [f"{v:.6g}" for v in geometry.det_spacing]
        ds.RescaleSlope, ds.RescaleIntercept = slope, "0"
        turn = pydicom.Dataset()
        turn.StartAngle, turn.AngularStep, turn.RotationDirection = f"{phi0:.8g}", f"{step:.8g}", direction
        turn.ScanArc = f"{min(360.0, step * views):.8g}"
        turn.NumberOfFramesInRotation = views
        turn.RadialPosition = [f"{r:.6f}" for r in geometry.radius]
        ds.RotationInformationSequence = pydicom.Sequence([turn])
        head = pydicom.Dataset()
        head.StartAngle = turn.StartAngle
        head.ImageOrientationPatient = [f"{v:.8g}" for v in as_seen]
        ds.DetectorInformationSequence = pydicom.Sequence([head])
        set_pixels(ds, stored[:, ::-1, ::-1])
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)

    return write_atomically(path, write)


def write_dicom_nm(
    folder: str | os.PathLike[str],
    volume: Any,
    vg: VolumeGeometry,
    description: str = "drct SPECT reconstruction",
    overwrite: bool = False,
    preview: Callable[[str], object] | None = None,
) -> Path:
    """Write a reconstructed activity ``(z, y, x)`` as a DICOM NM ``RECON TOMO`` image: one multi-frame file
    ``nm_recon.dcm`` (one frame per slice, unsigned 16-bit with a ``RescaleSlope``: precision
    ``max / 65535``) in a new folder, built beside it and renamed into place, with ``preview.png`` (from
    ``preview``) beside it; :func:`drct.formats.read_dicom_series` reads the folder back.

    Example:
        >>> import numpy as np, os, tempfile, drct as ct
        >>> from drct.formats import read_dicom_series, write_dicom_nm
        >>> vg = ct.VolumeGeometry((3, 4, 4), voxel_size=4.0, center=(0.0, 0.0, 20.0))
        >>> folder = write_dicom_nm(os.path.join(tempfile.mkdtemp(), "osem"), np.ones(vg.shape) * 2.5, vg)
        >>> volume, vg2 = read_dicom_series(folder)
        >>> float(volume.max()), vg2.center
        (2.5, (0.0, 0.0, 20.0))
    """
    pydicom = _pydicom()
    v = np.asarray(volume, dtype=np.float64)
    if vg.ndim != 3 or v.shape != vg.shape:
        raise ValueError(f"volume of shape {v.shape} does not match the 3D geometry {vg.shape}")
    require_finite(v, "activity")
    stored, slope = quantise(v, signed=False)
    dz, dy, dx = vg.voxel_size
    first = np.asarray(vg.first_center)
    with output_folder(folder, force=overwrite, expected=_earlier_output(folder)) as staging:
        target = staging / RECON_FILE
        ds = new_dataset(target, NM_IMAGE_STORAGE, "NM", SeriesIds.new(), description)
        ds.ImageType = ["DERIVED", "PRIMARY", "RECON TOMO", "EMISSION"]
        ds.NumberOfFrames = v.shape[0]
        ds.FrameIncrementPointer = pydicom.tag.Tag("SliceVector")
        ds.SliceVector, ds.NumberOfSlices = list(range(1, v.shape[0] + 1)), v.shape[0]
        ds.ImageOrientationPatient = [f"{x:g}" for x in AXIAL]
        ds.ImagePositionPatient = [f"{x:.6f}" for x in first]
        ds.PixelSpacing = [f"{dy:.6g}", f"{dx:.6g}"]
        ds.SliceThickness = ds.SpacingBetweenSlices = f"{dz:.6g}"
        ds.RescaleSlope, ds.RescaleIntercept = slope, "0"
        head = pydicom.Dataset()
        head.ImageOrientationPatient, head.ImagePositionPatient = ds.ImageOrientationPatient, ds.ImagePositionPatient
        ds.DetectorInformationSequence = pydicom.Sequence([head])
        set_pixels(ds, stored)
        pydicom.dcmwrite(target, ds, enforce_file_format=True)
        if preview is not None:
            preview(str(staging / PREVIEW))
    return Path(folder)
