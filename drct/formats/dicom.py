"""DICOM CT image series: read one into a volume and its :class:`~drct.geometry.volume.VolumeGeometry`, write a
reconstruction as one.

Reading (:func:`read_dicom_series`): every file of a folder that parses as DICOM with pixel data and the same
``SeriesInstanceUID``; slices ordered by their position along the slice normal (``ImagePositionPatient``
projected on the cross product of the two ``ImageOrientationPatient`` directions), not by file name or
``InstanceNumber``; values ``stored * RescaleSlope + RescaleIntercept`` (Hounsfield units for CT); spacing
``PixelSpacing`` (row, column) in-plane and the distance between consecutive positions across (which must be
even: ``SliceThickness`` is not the spacing). Only axial series (rows along x, columns along y) map onto a
:class:`VolumeGeometry`, which has no rotation: other orientations are refused.

Mapping: array ``[k, j, i]`` (z, y, x) is slice ``k`` in position order, row ``j``, column ``i``; the
geometry's ``center`` is the patient-coordinate (mm) point at the middle of the grid.

Writing (:func:`write_dicom_series`): one CT Image Storage file per slice, 16-bit signed integers with a
``RescaleSlope`` chosen so that the largest magnitude fills the range (precision ``max|v| / 32767``), so that
reading it back gives the volume to that precision.

Example:
    >>> import numpy as np, os, tempfile, drct as ct
    >>> from drct.formats import read_dicom_series, write_dicom_series
    >>> vg = ct.VolumeGeometry((3, 4, 5), voxel_size=(2.0, 0.5, 0.5), center=(1.0, 2.0, 3.0))
    >>> folder = os.path.join(tempfile.mkdtemp(), "recon")
    >>> _ = write_dicom_series(folder, np.arange(60, dtype=np.float32).reshape(3, 4, 5) / 100, vg)
    >>> volume, vg2 = read_dicom_series(folder)
    >>> volume.shape, vg2.voxel_size, vg2.center, bool(np.abs(volume.max() - 0.59) < 1e-4)
    ((3, 4, 5), (2.0, 0.5, 0.5), (1.0, 2.0, 3.0), True)
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import require_finite
from ..extras import require
from ..geometry.volume import VolumeGeometry
from ..io import output_folder, regular_file
from ..memory import require_memory

AXIAL = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MAX_SLICE_FILE = 1 << 30
PREVIEW = "preview.png"  # beside the slices in an output folder: the DICOM reader skips it


def _pydicom() -> Any:
    return require("pydicom", "reading and writing DICOM series")


def _floats(ds: Any, key: str, n: int, where: Path) -> np.ndarray:
    value = ds.get(key)
    if value is None:
        raise ValueError(f"{where}: DICOM attribute {key} is missing")
    arr = np.asarray([float(v) for v in (value if n > 1 else [value])], dtype=np.float64)
    if arr.size != n or not np.isfinite(arr).all():
        raise ValueError(f"{where}: DICOM attribute {key} must be {n} finite numbers, got {value!r}")
    return arr


def _sop_class(ds: Any) -> str:
    """The name of a dataset's SOP class (``"CT Image Storage"``, ...), or ``""``."""
    meta = getattr(ds, "file_meta", None)
    uid = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    return str(getattr(uid, "name", "")) if uid is not None else ""


def _plane(ds: Any, key: str, where: Path) -> np.ndarray:
    """ImagePositionPatient (3) or ImageOrientationPatient (6) of a dataset: its own, or (NM images keep them
    there) the first item's of its DetectorInformationSequence."""
    n = 3 if key == "ImagePositionPatient" else 6
    if key not in ds and "DetectorInformationSequence" in ds and len(ds.DetectorInformationSequence):
        return _floats(ds.DetectorInformationSequence[0], key, n, where)
    return _floats(ds, key, n, where)


def _frames(q: Path, ds: Any) -> list[tuple[np.ndarray, int | None]]:
    """The slices one file holds, as (ImagePositionPatient, frame index): one, or for an NM ``RECON TOMO``
    multi-frame image one per frame, ``SpacingBetweenSlices`` apart along the slice normal."""
    position = _plane(ds, "ImagePositionPatient", q)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        return [(position, None)]
    kind = [str(v).upper() for v in ds.get("ImageType", [])]
    if ds.get("Modality") != "NM" or len(kind) < 3 or kind[2] not in ("RECON TOMO", "RECON GATED TOMO"):
        raise ValueError(
            f"{q}: a multi-frame image ({frames} frames) that is not an NM RECON TOMO volume "
            f"(Modality {ds.get('Modality')}, ImageType {'/'.join(kind)}): not read as a series"
        )
    if kind[2] == "RECON GATED TOMO":
        raise ValueError(f"{q}: a gated reconstruction (RECON GATED TOMO) is not one volume")
    orientation = _plane(ds, "ImageOrientationPatient", q)
    normal = np.cross(orientation[:3], orientation[3:])
    key = "SpacingBetweenSlices" if "SpacingBetweenSlices" in ds else "SliceThickness"
    spacing = float(_floats(ds, key, 1, q)[0])
    return [(position + k * spacing * normal, k) for k in range(frames)]


def read_dicom_series(folder: str | os.PathLike[str]) -> tuple[np.ndarray, VolumeGeometry]:
    """A DICOM image series as a float32 ``(z, y, x)`` volume (rescaled) and its geometry (module docstring).

    Reads single-frame slices (CT, PET, MR, ...: one file per slice) and NM ``RECON TOMO`` multi-frame images
    (one file, one frame per slice: :func:`drct.formats.write_dicom_nm` writes these).

    Raises:
        ValueError: no DICOM image in the folder, several series, non-axial or differing orientations,
            uneven or repeated slice positions, slices of different sizes, a multi-frame image that is no
            reconstructed volume.
        ImportError: pydicom is not installed (``pip install "drct[formats]"``).

    Example:
        >>> import numpy as np, os, tempfile, drct as ct
        >>> from drct.formats import read_dicom_series, write_dicom_series
        >>> folder = os.path.join(tempfile.mkdtemp(), "series")
        >>> _ = write_dicom_series(folder, np.ones((2, 3, 3), np.float32), ct.VolumeGeometry((2, 3, 3), voxel_size=0.5))
        >>> volume, vg = read_dicom_series(folder)
        >>> volume.shape, vg.voxel_size
        ((2, 3, 3), (0.5, 0.5, 0.5))
    """
    pydicom = _pydicom()
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{root}: a DICOM series is read from a folder of slice files")
    files = []
    for q in sorted(root.iterdir()):
        if q.name.startswith(".") or not q.is_file():
            continue
        regular_file(q, "DICOM file")
        if q.stat().st_size > MAX_SLICE_FILE:
            raise ValueError(f"{q}: {q.stat().st_size} bytes is too large for one DICOM file")
        with open(q, "rb") as f:
            looks_dicom = q.suffix.lower() in (".dcm", ".dicom") or f.read(132)[128:] == b"DICM"
        try:
            ds = pydicom.dcmread(q, force=False)
        except Exception as err:  # pydicom raises many kinds; a damaged slice must not silently go missing
            if looks_dicom:
                raise ValueError(f"{q}: damaged DICOM file ({type(err).__name__}: {err})") from None
            continue  # another kind of file (notes, a checksum list, a preview): not part of the series
        if "PixelData" in ds:
            files.append((q, ds))
        elif "Image Storage" in _sop_class(ds):  # an image without its pixels: cut short, not a side file
            raise ValueError(f"{q}: damaged DICOM file (an image without pixel data: truncated?)")
    if not files:
        raise ValueError(f"{root}: no DICOM image files in this folder")
    series = {str(ds.get("SeriesInstanceUID", "")) for _, ds in files}
    if len(series) > 1:
        raise ValueError(f"{root}: {len(series)} DICOM series are mixed in this folder; give each its own folder")
    first_path, first = files[0]
    orientation = _plane(first, "ImageOrientationPatient", first_path)
    if not np.allclose(orientation, AXIAL, atol=1e-4):
        raise ValueError(
            f"{first_path}: ImageOrientationPatient {orientation.tolist()} is not axial ({AXIAL.tolist()}): "
            "drct volumes have no rotation"
        )
    normal = np.cross(orientation[:3], orientation[3:])
    rows, cols = int(first.Rows), int(first.Columns)
    placed = []
    for q, ds in files:
        if not np.allclose(_plane(ds, "ImageOrientationPatient", q), orientation, atol=1e-4):
            raise ValueError(f"{q}: ImageOrientationPatient differs from {first_path}'s")
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            raise ValueError(f"{q}: {ds.Rows}x{ds.Columns} pixels, {first_path} has {rows}x{cols}")
        placed += [(float(position @ normal), position, q, ds, k) for position, k in _frames(q, ds)]
    require_memory(len(placed) * rows * cols * 12, f"reading the DICOM series {root} ({len(placed)} slices)")
    placed.sort(key=lambda item: item[0])
    heights = np.array([h for h, *_ in placed])
    steps = np.diff(heights)
    if len(placed) > 1:
        if (steps <= 1e-6).any():
            raise ValueError(f"{root}: two slices at the same position {heights[np.argmin(steps)]:g} mm")
        if np.ptp(steps) > 1e-3 * steps.mean():
            raise ValueError(f"{root}: uneven slice spacing ({steps.min():g} to {steps.max():g} mm)")
    dz = float(steps.mean()) if len(placed) > 1 else float(first.get("SliceThickness", 1.0) or 1.0)
    dy, dx = _floats(first, "PixelSpacing", 2, first_path)  # row spacing (along y), column spacing (along x)
    for q, ds in files:
        if not np.allclose(_floats(ds, "PixelSpacing", 2, q), (dy, dx), rtol=1e-6):
            raise ValueError(f"{q}: PixelSpacing differs from {first_path}'s ({dy:g}, {dx:g})")
    volume = np.empty((len(placed), rows, cols), dtype=np.float32)
    decoded: dict[Path, np.ndarray] = {}
    for index, (_, _, q, ds, k) in enumerate(placed):
        if q not in decoded:
            try:
                decoded[q] = ds.pixel_array
            except Exception as err:  # pydicom: unsupported transfer syntax, missing handler, damaged data
                raise ValueError(f"{q}: cannot decode the pixel data ({err})") from None
        pixels = decoded[q] if k is None else decoded[q][k]
        slope = float(ds.get("RescaleSlope", 1.0))
        intercept = float(ds.get("RescaleIntercept", 0.0))
        volume[index] = pixels.astype(np.float64) * slope + intercept
    corner = placed[0][1]
    extent = np.array([(cols - 1) * dx, (rows - 1) * dy, (len(placed) - 1) * dz])
    center = corner + 0.5 * extent  # axial: columns along +x, rows along +y, slices along +z
    return volume, VolumeGeometry(volume.shape, voxel_size=(dz, float(dy), float(dx)), center=tuple(center))


def _earlier_output(folder: str | os.PathLike[str]) -> list[str]:
    """The names in ``folder`` a drct DICOM writer writes (slices, NM volume, preview): what ``overwrite`` may
    replace; anything else there makes :func:`drct.io.output_folder` refuse."""
    p = Path(folder)
    if not p.is_dir():
        return []
    return [q.name for q in p.iterdir() if q.name == PREVIEW or re.fullmatch(r"(slice_\d{5}|nm_\w+)\.dcm", q.name)]


def new_dataset(path: Path, sop_class: str, modality: str, ids: SeriesIds, description: str) -> Any:
    """A DICOM dataset with its file meta (explicit VR little endian) and the study/series/frame of reference,
    patient, date and SOP fields every drct writer sets; the caller adds the image attributes."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesDescription = modality, description
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = ids.study, ids.series, ids.frame
    ds.PatientName, ds.PatientID = "drct", "drct"
    ds.ContentDate, ds.ContentTime = ids.when.strftime("%Y%m%d"), ids.when.strftime("%H%M%S")
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    return ds


@dataclass(frozen=True)
class SeriesIds:
    """The identifiers one written series shares: study, series and frame-of-reference UIDs, and the time."""

    study: str
    series: str
    frame: str
    when: datetime.datetime

    @classmethod
    def new(cls) -> SeriesIds:
        from pydicom.uid import generate_uid

        return cls(generate_uid(), generate_uid(), generate_uid(), datetime.datetime.now(datetime.timezone.utc))


def quantise(values: np.ndarray, signed: bool = True) -> tuple[np.ndarray, str]:
    """16-bit integers and the ``RescaleSlope`` (as the decimal string stored) with ``stored * slope ≈ values``:
    the largest magnitude fills the range, so the error is at most half a step, ``max|v| / 32767 / 2``
    (unsigned: ``max v / 65535 / 2``; negative values are then refused)."""
    if not signed and values.size and float(values.min()) < 0:
        raise ValueError(f"values must be >= 0 for unsigned 16-bit pixels, got min {float(values.min()):g}")
    top = 32767.0 if signed else 65535.0
    peak = float(np.abs(values).max()) if values.size else 0.0
    slope_text = f"{peak / top if peak > 0 else 1.0:.10g}"
    slope = float(slope_text)  # as stored (a decimal string): the quantisation uses this very value
    stored = np.clip(np.rint(values / slope), -32768 if signed else 0, top)
    return stored.astype("<i2" if signed else "<u2"), slope_text


def set_pixels(ds: Any, stored: np.ndarray) -> None:
    """Pixel data and the pixel-module attributes of 16-bit ``stored`` (``(rows, cols)`` or frames of them)."""
    ds.Rows, ds.Columns = stored.shape[-2], stored.shape[-1]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if stored.dtype.kind == "i" else 0
    ds.PixelData = np.ascontiguousarray(stored).tobytes()


def write_dicom_series(
    folder: str | os.PathLike[str],
    volume: Any,
    vg: VolumeGeometry,
    description: str = "drct reconstruction",
    unit: str = "1/mm",
    overwrite: bool = False,
    preview: Callable[[str], object] | None = None,
) -> Path:
    """Write a ``(z, y, x)`` volume as a DICOM CT series, one file per slice, in a new folder (built beside it and
    renamed into place: :func:`drct.io.output_folder`).

    Args:
        folder: the output folder (FileExistsError if it holds files, unless ``overwrite``; with it, a folder
            holding files drct did not write is still refused).
        volume: the values, e.g. attenuation in 1/mm; any finite float array of ``vg.shape``.
        vg: its 3D geometry (spacing and centre go to PixelSpacing/ImagePositionPatient).
        description: SeriesDescription.
        unit: RescaleType (DICOM's name for the unit of the rescaled values).
        preview: writes a picture of the volume to the path it is given: saved as ``preview.png`` in the folder
            (the DICOM reader skips it), so that the series and its preview are replaced together.

    Returns:
        The folder.

    Example:
        >>> import numpy as np, os, tempfile, drct as ct
        >>> from drct.formats import write_dicom_series
        >>> folder = os.path.join(tempfile.mkdtemp(), "recon")
        >>> written = write_dicom_series(folder, np.zeros((2, 4, 4), np.float32), ct.VolumeGeometry((2, 4, 4)))
        >>> len(os.listdir(folder))  # one file per slice
        2
    """
    pydicom = _pydicom()
    v = np.asarray(volume, dtype=np.float64)
    if vg.ndim != 3 or v.shape != vg.shape:
        raise ValueError(f"volume of shape {v.shape} does not match the 3D geometry {vg.shape}")
    require_finite(v, "volume")
    dz, dy, dx = vg.voxel_size
    first = np.asarray(vg.first_center)  # (x, y, z) of voxel [0, 0, 0]
    stored, slope_text = quantise(v, signed=True)  # one slope for the series
    ids = SeriesIds.new()
    with output_folder(folder, force=overwrite, expected=_earlier_output(folder)) as staging:
        for k in range(v.shape[0]):
            name = staging / f"slice_{k:05d}.dcm"
            ds = new_dataset(name, CT_IMAGE_STORAGE, "CT", ids, description)
            ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
            ds.InstanceNumber = k + 1
            ds.ImageOrientationPatient = [f"{x:g}" for x in AXIAL]
            ds.ImagePositionPatient = [f"{x:.6f}" for x in (first[0], first[1], first[2] + k * dz)]
            ds.PixelSpacing = [f"{dy:.6g}", f"{dx:.6g}"]
            ds.SliceThickness = f"{dz:.6g}"
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope_text, "0", unit
            set_pixels(ds, stored[k])
            pydicom.dcmwrite(name, ds, enforce_file_format=True)
        if preview is not None:
            preview(str(staging / PREVIEW))
    return Path(folder)
