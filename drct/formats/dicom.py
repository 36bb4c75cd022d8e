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


def read_dicom_series(folder: str | os.PathLike[str]) -> tuple[np.ndarray, VolumeGeometry]:
    """A DICOM image series as a float32 ``(z, y, x)`` volume (rescaled) and its geometry (module docstring).

    Raises:
        ValueError: no DICOM image in the folder, several series, non-axial or differing orientations,
            uneven or repeated slice positions, slices of different sizes.
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
    slices = []
    for q in sorted(root.iterdir()):
        if q.name.startswith(".") or not q.is_file():
            continue
        regular_file(q, "DICOM file")
        if q.stat().st_size > MAX_SLICE_FILE:
            raise ValueError(f"{q}: {q.stat().st_size} bytes is too large for one DICOM slice")
        with open(q, "rb") as f:
            looks_dicom = q.suffix.lower() in (".dcm", ".dicom") or f.read(132)[128:] == b"DICM"
        try:
            ds = pydicom.dcmread(q, force=False)
        except Exception as err:  # pydicom raises many kinds; a damaged slice must not silently go missing
            if looks_dicom:
                raise ValueError(f"{q}: damaged DICOM file ({type(err).__name__}: {err})") from None
            continue  # another kind of file (notes, a checksum list): not part of the series
        if "PixelData" in ds:
            slices.append((q, ds))
        elif "Image Storage" in _sop_class(ds):  # an image without its pixels: cut short, not a side file
            raise ValueError(f"{q}: damaged DICOM file (an image without pixel data: truncated?)")
    if not slices:
        raise ValueError(f"{root}: no DICOM image files in this folder")
    series = {str(ds.get("SeriesInstanceUID", "")) for _, ds in slices}
    if len(series) > 1:
        raise ValueError(f"{root}: {len(series)} DICOM series are mixed in this folder; give each its own folder")
    first_path, first = slices[0]
    orientation = _floats(first, "ImageOrientationPatient", 6, first_path)
    if not np.allclose(orientation, AXIAL, atol=1e-4):
        raise ValueError(
            f"{first_path}: ImageOrientationPatient {orientation.tolist()} is not axial ({AXIAL.tolist()}): "
            "drct volumes have no rotation"
        )
    normal = np.cross(orientation[:3], orientation[3:])
    rows, cols = int(first.Rows), int(first.Columns)
    require_memory(len(slices) * rows * cols * 12, f"reading the DICOM series {root} ({len(slices)} slices)")
    placed = []
    for q, ds in slices:
        if not np.allclose(_floats(ds, "ImageOrientationPatient", 6, q), orientation, atol=1e-4):
            raise ValueError(f"{q}: ImageOrientationPatient differs from {first_path}'s")
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            raise ValueError(f"{q}: {ds.Rows}x{ds.Columns} pixels, {first_path} has {rows}x{cols}")
        position = _floats(ds, "ImagePositionPatient", 3, q)
        placed.append((float(position @ normal), position, q, ds))
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
    for _, _, q, ds in placed:
        if not np.allclose(_floats(ds, "PixelSpacing", 2, q), (dy, dx), rtol=1e-6):
            raise ValueError(f"{q}: PixelSpacing differs from {first_path}'s ({dy:g}, {dx:g})")
    volume = np.empty((len(placed), rows, cols), dtype=np.float32)
    for k, (_, _, q, ds) in enumerate(placed):
        slope = float(ds.get("RescaleSlope", 1.0))
        intercept = float(ds.get("RescaleIntercept", 0.0))
        try:
            pixels = ds.pixel_array
        except Exception as err:  # pydicom: unsupported transfer syntax, missing handler, damaged data
            raise ValueError(f"{q}: cannot decode the pixel data ({err})") from None
        volume[k] = pixels.astype(np.float64) * slope + intercept
    corner = placed[0][1]
    extent = np.array([(cols - 1) * dx, (rows - 1) * dy, (len(placed) - 1) * dz])
    center = corner + 0.5 * extent  # axial: columns along +x, rows along +y, slices along +z
    return volume, VolumeGeometry(volume.shape, voxel_size=(dz, float(dy), float(dx)), center=tuple(center))


def write_dicom_series(
    folder: str | os.PathLike[str],
    volume: Any,
    vg: VolumeGeometry,
    description: str = "drct reconstruction",
    unit: str = "1/mm",
    overwrite: bool = False,
) -> Path:
    """Write a ``(z, y, x)`` volume as a DICOM CT series, one file per slice, in a new folder (built beside it and
    renamed into place: :func:`drct.io.output_folder`).

    Args:
        folder: the output folder (FileExistsError if it holds files, unless ``overwrite``).
        volume: the values, e.g. attenuation in 1/mm; any finite float array of ``vg.shape``.
        vg: its 3D geometry (spacing and centre go to PixelSpacing/ImagePositionPatient).
        description: SeriesDescription.
        unit: RescaleType (DICOM's name for the unit of the rescaled values).

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
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    v = np.asarray(volume, dtype=np.float64)
    if vg.ndim != 3 or v.shape != vg.shape:
        raise ValueError(f"volume of shape {v.shape} does not match the 3D geometry {vg.shape}")
    require_finite(v, "volume")
    peak = float(np.abs(v).max())
    slope_text = f"{peak / 32767.0 if peak > 0 else 1.0:.10g}"
    slope = float(slope_text)  # as stored (a decimal string): the quantisation uses this very value
    dz, dy, dx = vg.voxel_size
    first = np.asarray(vg.first_center)  # (x, y, z) of voxel [0, 0, 0]
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    now = datetime.datetime.now(datetime.timezone.utc)
    with output_folder(folder, force=overwrite) as staging:
        for k in range(v.shape[0]):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = UID(CT_IMAGE_STORAGE)
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = FileDataset(str(staging / f"slice_{k:05d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
            ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
            ds.Modality, ds.SeriesDescription = "CT", description
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
            ds.PatientName, ds.PatientID = "drct", "drct"
            ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
            ds.InstanceNumber = k + 1
            ds.ImageOrientationPatient = [f"{x:g}" for x in AXIAL]
            ds.ImagePositionPatient = [f"{x:.6f}" for x in (first[0], first[1], first[2] + k * dz)]
            ds.PixelSpacing = [f"{dy:.6g}", f"{dx:.6g}"]
            ds.SliceThickness = f"{dz:.6g}"
            ds.Rows, ds.Columns = v.shape[1], v.shape[2]
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope_text, "0", unit
            stored = np.clip(np.rint(v[k] / slope), -32768, 32767).astype("<i2")
            ds.PixelData = stored.tobytes()
            pydicom.dcmwrite(staging / f"slice_{k:05d}.dcm", ds, enforce_file_format=True)
    return Path(folder)
