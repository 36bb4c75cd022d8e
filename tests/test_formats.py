"""drct.formats: every reader and writer round-trips files the tests write themselves (h5py, pydicom, tifffile),
the conversions to drct geometries hold, raw readings are normalised in one place and ``drct reconstruct``
refuses raw counts that were never log-transformed."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import drct as ct
from drct import formats
from drct.cli import main
from drct.errors import NonFiniteError
from drct.physics import log_transform

ANGLES = np.linspace(0, 2 * np.pi, 8, endpoint=False)


def cone_scan(views: int = 8) -> ct.ProjectionGeometry:
    return ct.cone(np.linspace(0, 2 * np.pi, views, endpoint=False), (4, 6), (0.5, 0.25), 80.0, 200.0)


# ------------------------------------------------------------------------------------------- normalisation
def test_normalize_is_the_physics_log_transform_where_readings_are_valid() -> None:
    rng = np.random.default_rng(0)
    readings = rng.uniform(150, 900, (3, 4, 5))
    flat, dark = rng.uniform(950, 1000, (4, 5)), rng.uniform(90, 100, (4, 5))
    got = formats.normalize(readings, flat, dark)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, -np.log((readings - dark) / (flat - dark)), rtol=1e-6)
    np.testing.assert_allclose(got, log_transform(readings, flat, dark), rtol=1e-6)


@pytest.mark.parametrize(
    ("readings", "flat", "dark", "message"),
    [
        (
            np.array([[5.0, 50.0], [60.0, 70.0]]),
            100.0,
            10.0,
            r"readings - dark .* 1 pixel\(s\), the first at index \(0, 0\)",
        ),
        (np.array([[50.0, 60.0]]), np.array([100.0, 10.0]), 10.0, r"flat - dark .* index \(1,\)"),
        (np.array([[50.0, 60.0]]), 100.0, np.array([10.0, 10.0, 10.0]), "must be numbers or detector images"),
    ],
)
def test_normalize_refuses_what_a_clamp_would_hide(readings, flat, dark, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        formats.normalize(readings, flat, dark)


def test_normalize_refuses_non_finite_input() -> None:
    with pytest.raises(NonFiniteError, match="flat field"):
        formats.normalize(np.ones((2, 2)), np.array([np.nan, 2.0]), 0.0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (np.full((3, 4), 1200, np.uint16), "integer values"),
        (np.full((3, 4), 1200.0, np.float32), "median"),
    ],
)
def test_raw_counts_are_refused(values: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        formats.require_line_integrals(values, "y")


def test_line_integrals_pass() -> None:
    formats.require_line_integrals(np.full((3, 4), 3.0, np.float32), "y")


# ------------------------------------------------------------------------------------------------ NXtomo
@pytest.mark.parametrize("beam", ["cone", "parallel"])
def test_nxtomo_round_trip(tmp_path: Path, beam: str) -> None:
    pytest.importorskip("h5py")
    pg = cone_scan() if beam == "cone" else ct.parallel(ANGLES, (4, 6), (0.5, 0.25))
    rng = np.random.default_rng(1)
    y = rng.integers(100, 4000, pg.shape).astype(np.uint16)
    flats = rng.integers(5000, 6000, (3, 4, 6)).astype(np.uint16)
    dark = rng.integers(50, 60, (4, 6)).astype(np.uint16)
    path = formats.write_nxtomo(tmp_path / "scan.nxs", y, pg, flat=flats, dark=dark)
    scan = formats.read(path)
    assert scan.projections.dtype == np.uint16 and np.array_equal(scan.projections, y)
    np.testing.assert_allclose(scan.flat, flats.mean(axis=0))
    np.testing.assert_allclose(scan.dark, dark)
    assert scan.geometry is not None and scan.geometry.beam == pg.beam
    np.testing.assert_allclose(scan.geometry.to_vectors(), pg.to_vectors(), atol=1e-9)
    np.testing.assert_allclose(scan.line_integrals(), formats.normalize(y, flats.mean(axis=0), dark), rtol=1e-6)
    with pytest.raises(FileExistsError):
        formats.write_nxtomo(path, y, pg)


def test_nxtomo_written_by_hand_with_other_units_and_frame_order(tmp_path: Path) -> None:
    """A file as a beamline writes it: darks and flats first, an invalid frame, radians and micrometres."""
    h5py = pytest.importorskip("h5py")
    pg = ct.parallel(ANGLES, (4, 6), (0.5, 0.25))
    y = np.random.default_rng(2).uniform(100, 900, pg.shape)
    data = np.concatenate([np.full((2, 4, 6), 10.0), np.full((1, 4, 6), 1000.0), y[:3], np.zeros((1, 4, 6)), y[3:]])
    keys = np.array([2, 2, 1, 0, 0, 0, 3, 0, 0, 0, 0, 0])
    angles = np.concatenate([[0, 0, 0], ANGLES[:3], [9.0], ANGLES[3:]])
    path = tmp_path / "beamline.h5"
    with h5py.File(path, "w") as f:
        det = f.create_group("tomo/instrument/detector")
        det["data"], det["image_key"] = data, keys
        det["x_pixel_size"], det["y_pixel_size"] = 250.0, 500.0
        det["x_pixel_size"].attrs["units"] = det["y_pixel_size"].attrs["units"] = "um"
        f["tomo/sample/rotation_angle"] = angles
        f["tomo/sample/rotation_angle"].attrs["units"] = "rad"
    scan = formats.read_nxtomo(path)
    np.testing.assert_array_equal(scan.projections, y)
    assert np.all(scan.flat == 1000.0) and np.all(scan.dark == 10.0)
    assert scan.geometry is not None
    np.testing.assert_allclose(scan.geometry.to_vectors(), pg.to_vectors(), atol=1e-12)
    mirrored = formats.read_nxtomo(path, angle_sign=-1)
    assert mirrored.geometry is not None
    np.testing.assert_allclose(mirrored.geometry.to_vectors(), ct.parallel(-ANGLES, (4, 6), (0.5, 0.25)).to_vectors())


def test_nxtomo_damaged_files_are_named(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    (tmp_path / "text.nxs").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        formats.read(tmp_path / "text.nxs")
    with h5py.File(tmp_path / "keys.nxs", "w") as f:
        f["entry/instrument/detector/data"] = np.ones((3, 2, 2))
        f["entry/instrument/detector/image_key"] = [0, 1, 7]
        f["entry/sample/rotation_angle"] = [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match=r"image_key values must be .* got \[7\]"):
        formats.read(tmp_path / "keys.nxs")
    with h5py.File(tmp_path / "short.nxs", "w") as f:
        f["entry/instrument/detector/data"] = np.ones((3, 2, 2))
        f["entry/instrument/detector/image_key"] = [0, 0]
        f["entry/sample/rotation_angle"] = [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="3 frames but 2 image_key"):
        formats.read(tmp_path / "short.nxs")


@pytest.mark.parametrize(
    ("node", "value", "unit", "error", "message"),
    [
        ("sample/rotation_angle", [0.0, 1.0], "gradian", ValueError, "unknown angle unit 'gradian'"),
        ("instrument/detector/x_pixel_size", 0.1, "furlong", ValueError, "unknown length unit 'furlong'"),
        ("instrument/detector/x_pixel_size", np.nan, "mm", NonFiniteError, "x_pixel_size"),
        ("sample/rotation_angle", [0.0, np.inf], "rad", NonFiniteError, "rotation_angle"),
    ],
)
def test_nxtomo_bad_units_and_values_are_named(tmp_path: Path, node, value, unit, error, message) -> None:
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "u.nxs", "w") as f:
        f["entry/instrument/detector/data"] = np.ones((2, 2, 2))
        f["entry/instrument/detector/image_key"] = [0, 0]
        f["entry/sample/rotation_angle"] = [0.0, 1.0]
        if node in f["entry"]:
            del f["entry"][node]
        f["entry"][node] = value
        f["entry"][node].attrs["units"] = unit
    with pytest.raises(error, match=message):
        formats.read(tmp_path / "u.nxs")


def test_nxtomo_writer_refuses_a_geometry_it_cannot_store(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    pg = ct.helix(ANGLES, 10.0, (4, 6), 0.5, 80.0, 200.0)
    with pytest.raises(ValueError, match="not a centred circular orbit"):
        formats.write_nxtomo(tmp_path / "helix.nxs", np.ones(pg.shape), pg)
    assert not (tmp_path / "helix.nxs").exists()


# ------------------------------------------------------------------------------------------------- TIFF
def test_tiff_folder_with_flats_and_darks(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(200, 800, (5, 4, 6)).astype(np.uint16)
    flats, darks = rng.integers(900, 1000, (2, 4, 6)), rng.integers(10, 20, (3, 4, 6))
    for sub, frames in (("projections", y), ("flats", flats), ("darks", darks)):
        (tmp_path / sub).mkdir()
        for i, frame in enumerate(frames):
            tifffile.imwrite(tmp_path / sub / f"img_{i:04d}.tif", frame.astype(np.uint16))
    scan = formats.read(tmp_path)
    assert np.array_equal(scan.projections, y) and scan.geometry is None
    np.testing.assert_allclose(scan.flat, flats.mean(axis=0))
    np.testing.assert_allclose(scan.dark, darks.mean(axis=0))
    # a multi-page TIFF with explicit flat and dark files is the same scan
    tifffile.imwrite(tmp_path / "stack.tif", y)
    tifffile.imwrite(tmp_path / "flat.tif", flats.astype(np.uint16))
    other = formats.read_tiff_stack(tmp_path / "stack.tif", flat=tmp_path / "flat.tif", dark=darks.mean(axis=0))
    np.testing.assert_allclose(other.line_integrals(), scan.line_integrals())
    tifffile.imwrite(tmp_path / "small_flat.tif", np.ones((3, 3), np.uint16))
    with pytest.raises(ValueError, match=r"flat field has shape \(3, 3\)"):
        formats.read_tiff_stack(tmp_path / "stack.tif", flat=tmp_path / "small_flat.tif")


# ------------------------------------------------------------------------------------------------ Nikon
def write_xtek(root: Path, y: np.ndarray, extra: dict[str, str] | None = None, name: str = "part") -> Path:
    """A Nikon scan as the scanner leaves it: ``<Name>.xtekct`` and ``<Name>_0001.tif`` ... beside it."""
    views, rows, cols = y.shape
    keys = {
        "Name": name, "SrcToObject": "80", "SrcToDetector": "200", "DetectorPixelsX": str(cols),
        "DetectorPixelsY": str(rows), "DetectorPixelSizeX": "0.25", "DetectorPixelSizeY": "0.5",
        "Projections": str(views), "InitialAngle": "30", "AngularStep": str(360 / views), "WhiteLevel": "60000",
        "ObjectOffsetX": "0", "ObjectRoll": "0", "ObjectTilt": "0",
    }  # fmt: skip
    keys.update(extra or {})
    path = root / f"{name}.xtekct"
    path.write_text("[XTekCT]\n" + "\n".join(f"{k}={v}" for k, v in keys.items()) + "\n")
    for k, frame in enumerate(y):
        tifffile.imwrite(root / f"{name}_{k + 1:04d}.tif", frame)
    return path


def test_xtek_geometry_is_drcts_cone_turned_and_with_the_image_flipped(tmp_path: Path) -> None:
    """The documented mapping: θ = φ − 180°, first pixel at the top right (both image axes reversed)."""
    y = np.full((8, 4, 6), 30000, np.uint16)
    scan = formats.read(write_xtek(tmp_path, y))
    phi = np.radians(30 + 45 * np.arange(8))
    reference = ct.cone(phi - np.pi, (4, 6), (0.5, 0.25), 80.0, 200.0)
    assert scan.geometry is not None
    vg = ct.VolumeGeometry((6, 8, 8), voxel_size=0.4)
    x = np.zeros(vg.shape, np.float32)
    x[1:3, 2:4, 5:7] = 1.0  # off-centre and asymmetric: a flip or a wrong turn moves its shadow
    got = ct.Projector(vg, scan.geometry, basis="voxel")(x)
    want = ct.Projector(vg, reference, basis="voxel")(x)[:, ::-1, ::-1]
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(scan.line_integrals(), np.log(2.0), rtol=1e-6)  # WhiteLevel is the flat field


def test_xtek_object_offset_and_ctdata_angles(tmp_path: Path) -> None:
    y = np.full((4, 2, 3), 100, np.uint16)
    path = write_xtek(tmp_path, y, {"ObjectOffsetX": "1.5"})
    angles = [0.0, 91.0, 180.0, 271.0]
    (tmp_path / "_ctdata.txt").write_text(
        "Angular data\nProjection\tAngle(deg)\tAngle(rad)\n\n"
        + "".join(f"{k + 1}\t{a}\t{np.radians(a)}\n" for k, a in enumerate(angles))
    )
    scan = formats.read_xtek(path, angles="ctdata")
    assert scan.geometry is not None
    theta = np.radians(np.array(angles) - 180)
    src = np.asarray(scan.geometry.src)
    # the source turns about the axis at distance sqrt(offset² + SrcToObject²), offset 1.5 mm sideways
    np.testing.assert_allclose(np.hypot(src[:, 0], src[:, 1]), np.hypot(1.5, 80.0))
    np.testing.assert_allclose(src[:, 0], np.cos(theta) * 1.5 + np.sin(theta) * 80.0, atol=1e-9)


def test_xtek_writer_round_trips_a_drct_cone_scan(tmp_path: Path) -> None:
    """write_xtek then read_xtek: the same rays for every pixel (projecting a volume with the geometry read back
    gives the images read back), the readings kept bit for bit, WhiteLevel as the flat field."""
    pg = ct.cone(np.radians(10 + 45 * np.arange(8)), (4, 6), (0.5, 0.25), 80.0, 200.0)
    vg = ct.VolumeGeometry((6, 8, 8), voxel_size=0.4)
    x = np.zeros(vg.shape, np.float32)
    x[1:3, 2:4, 5:7] = 1.0  # off-centre and asymmetric: a flip or a wrong turn moves its shadow
    p = np.asarray(ct.Projector(vg, pg, basis="voxel")(x))
    counts = np.rint(50000 * np.exp(-p)).astype(np.uint16)
    path = formats.write_xtek(tmp_path / "part", counts, pg, white_level=50000, name="part")
    scan = formats.read(path.parent)  # the folder: found by its .xtekct file
    assert scan.geometry is not None and scan.flat == 50000.0
    np.testing.assert_array_equal(scan.projections, counts[:, ::-1, ::-1])  # as the scanner stores them
    np.testing.assert_allclose(ct.Projector(vg, scan.geometry, basis="voxel")(x), p[:, ::-1, ::-1], atol=1e-5)
    np.testing.assert_allclose(scan.line_integrals(), p[:, ::-1, ::-1], atol=2e-4)  # uint16 rounding
    with pytest.raises(FileExistsError):
        formats.write_xtek(tmp_path / "part", counts, pg)
    uneven = ct.cone(np.radians([0.0, 10.0, 30.0]), (4, 6), 0.5, 80.0, 200.0)
    with pytest.raises(ValueError, match="not evenly spaced"):
        formats.write_xtek(tmp_path / "u", np.ones(uneven.shape), uneven)
    with pytest.raises(ValueError, match="cone beam"):
        formats.write_xtek(tmp_path / "p", np.ones((8, 4, 6)), ct.parallel(ANGLES, (4, 6)))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"ObjectRoll": "0.5"}, "tilted rotation axis"),
        ({"Projections": "5"}, "4 projection TIFFs named part_NNNN.tif, but the .xtekct file declares 5"),
        ({"DetectorPixelsX": "7"}, "declares 2 rows x 7 columns"),
        ({"SrcToDetector": "50"}, "SrcToObject < SrcToDetector"),
    ],
)
def test_xtek_inconsistent_files_are_refused(tmp_path: Path, extra: dict[str, str], message: str) -> None:
    path = write_xtek(tmp_path, np.full((4, 2, 3), 100, np.uint16), extra)
    with pytest.raises(ValueError, match=message):
        formats.read(path)


# ------------------------------------------------------------------------------------------------ DICOM
def test_dicom_round_trip_and_slice_order_by_position(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    vg = ct.VolumeGeometry((5, 6, 7), voxel_size=(1.25, 0.5, 0.75), center=(10.0, -4.0, 30.0))
    volume = np.random.default_rng(4).uniform(-0.01, 0.05, vg.shape).astype(np.float32)
    folder = formats.write_dicom_series(tmp_path / "recon", volume, vg)
    files = sorted(folder.iterdir())
    for k, f in enumerate(files):  # names now run against the positions: order must come from positions
        f.rename(folder / f"x{len(files) - k:03d}.dcm")
    got, vg2 = formats.read_dicom_series(folder)
    assert np.allclose(vg2.center, vg.center) and vg2.voxel_size == vg.voxel_size
    assert vg2.shape == vg.shape
    step = np.abs(volume).max() / 32767
    assert np.abs(got - volume).max() <= 0.51 * step + 1e-9
    # rescale slope and intercept as a scanner writes them (Hounsfield units: intercept -1024)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.RescaleIntercept = "-1024"
        ds.save_as(f)
    shifted, _ = formats.read_dicom_series(folder)
    np.testing.assert_allclose(shifted, got - 1024, atol=1e-3)


def test_dicom_series_problems_are_named(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    vg = ct.VolumeGeometry((3, 4, 4), voxel_size=1.0)
    folder = formats.write_dicom_series(tmp_path / "s", np.ones(vg.shape), vg)
    first = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(first)
    ds.ImagePositionPatient = [str(v) for v in pydicom.dcmread(sorted(folder.iterdir())[1]).ImagePositionPatient]
    ds.save_as(first)
    with pytest.raises(ValueError, match="two slices at the same position"):
        formats.read_dicom_series(folder)
    ds.ImageOrientationPatient = ["0", "1", "0", "0", "0", "-1"]
    ds.save_as(first)
    with pytest.raises(ValueError, match="not axial"):
        formats.read_dicom_series(folder)
    with pytest.raises(ValueError, match="no DICOM image"):
        (tmp_path / "empty").mkdir()
        formats.read_dicom_series(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("not a slice")  # other files beside a series are skipped
    good = formats.write_dicom_series(tmp_path / "t", np.ones(vg.shape), vg)
    (good / "notes.txt").write_text("scanned on Tuesday")
    assert formats.read_dicom_series(good)[0].shape == vg.shape
    last = sorted(good.glob("*.dcm"))[-1]
    whole = last.read_bytes()
    for cut, message in ((200, "damaged DICOM file"), (len(whole) - 10, "cannot decode the pixel data")):
        last.write_bytes(whole[:cut])  # a damaged slice is named, never silently dropped
        with pytest.raises(ValueError, match=f"{last.name}: {message}"):
            formats.read_dicom_series(good)


# ------------------------------------------------------------------------------------------------ registry
def test_the_registry_picks_by_extension_then_content(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    pg = cone_scan()
    formats.write_nxtomo(tmp_path / "scan.nxs", np.ones(pg.shape), pg, flat=2.0)
    shutil.copy(tmp_path / "scan.nxs", tmp_path / "scan.dat")
    assert formats.detect(tmp_path / "scan.dat") == "nxtomo"
    assert formats.read(tmp_path / "scan.dat").geometry is not None
    (tmp_path / "notes.dat").write_text("hello")
    with pytest.raises(ValueError, match="cannot tell its format"):
        formats.read(tmp_path / "notes.dat")
    with pytest.raises(ValueError, match="unknown format 'dicom'"):
        formats.read(tmp_path / "scan.nxs", "dicom")
    if importlib.util.find_spec("pydicom") is not None:
        vg = ct.VolumeGeometry((2, 3, 3))
        series = formats.write_dicom_series(tmp_path / "series", np.zeros(vg.shape), vg)
        with pytest.raises(ValueError, match="DICOM series: a volume, not projections"):
            formats.read(series)


# ------------------------------------------------------------------------------------------------ the CLI
def simulated_scan(tmp_path: Path) -> tuple[ct.VolumeGeometry, ct.ProjectionGeometry, np.ndarray]:
    vg = ct.VolumeGeometry((12, 16, 16), voxel_size=0.5)
    pg = ct.cone(np.linspace(0, 2 * np.pi, 48, endpoint=False), (16, 24), 0.75, 60.0, 120.0)
    x = np.zeros(vg.shape, np.float32)
    x[3:9, 4:12, 4:12] = 0.2
    x[5:7, 6:9, 7:10] = 0.5
    p = ct.Projector(vg, pg, basis="voxel")(x)
    ct.save_geometry(tmp_path / "scan.json", pg, vg)
    np.save(tmp_path / "line_integrals.npy", p)
    return vg, pg, np.asarray(p)


def test_raw_nxtomo_through_drct_reconstruct_matches_the_line_integral_reconstruction(tmp_path: Path) -> None:
    pytest.importorskip("h5py")
    _, pg, p = simulated_scan(tmp_path)
    flat, dark = 50000.0, 300.0
    counts = np.rint(dark + (flat - dark) * np.exp(-p)).astype(np.uint16)
    formats.write_nxtomo(tmp_path / "raw.nxs", counts, pg, flat=np.full((2, 16, 24), flat), dark=dark)
    common = ["--method", "fdk", "--no-progress", "--shape", "12", "16", "16", "--voxel-size", "0.5"]
    assert main(["reconstruct", str(tmp_path / "line_integrals.npy"), "--geometry", str(tmp_path / "scan.json"),
                 *common, "-o", str(tmp_path / "ref.tif")]) == 0  # fmt: skip
    assert main(["reconstruct", str(tmp_path / "raw.nxs"), *common, "-o", str(tmp_path / "raw.tif")]) == 0
    ref, raw = tifffile.imread(tmp_path / "ref.tif"), tifffile.imread(tmp_path / "raw.tif")
    assert np.abs(ref).max() > 0.1
    assert np.linalg.norm(raw - ref) <= 0.01 * np.linalg.norm(ref)
    # the same counts as .npy with --flat/--dark files give the same volume
    np.save(tmp_path / "counts.npy", counts)
    np.save(tmp_path / "flat.npy", np.full((16, 24), flat))
    np.save(tmp_path / "dark.npy", np.full((16, 24), dark))
    assert main(["reconstruct", str(tmp_path / "counts.npy"), "--geometry", str(tmp_path / "scan.json"),
                 "--flat", str(tmp_path / "flat.npy"), "--dark", str(tmp_path / "dark.npy"), *common,
                 "-o", str(tmp_path / "npy.tif")]) == 0  # fmt: skip
    np.testing.assert_allclose(tifffile.imread(tmp_path / "npy.tif"), raw, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_raw_counts_without_normalisation_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dtype: type
) -> None:
    _, _, p = simulated_scan(tmp_path)
    np.save(tmp_path / "counts.npy", (40000 * np.exp(-p)).astype(dtype))
    argv = ["reconstruct", str(tmp_path / "counts.npy"), "--geometry", str(tmp_path / "scan.json"), "--no-progress"]
    assert main([*argv, "-o", str(tmp_path / "out.tif")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--flat/--dark" in err and "--raw-is-line-integrals" in err
    assert not (tmp_path / "out.tif").exists()
    # the user's override: reconstructed as given
    assert main([*argv, "--raw-is-line-integrals", "-o", str(tmp_path / "out.tif")]) == 0


def test_raw_nxtomo_without_flat_fields_is_refused_by_drct_reconstruct(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file path of the acceptance: raw counts in an NXtomo file with no flat frames are not line integrals."""
    pytest.importorskip("h5py")
    _, pg, p = simulated_scan(tmp_path)
    counts = np.rint(50000 * np.exp(-p)).astype(np.uint16)
    formats.write_nxtomo(tmp_path / "raw.nxs", counts, pg)  # no flat, no dark
    argv = ["reconstruct", str(tmp_path / "raw.nxs"), "--shape", "12", "16", "16", "--no-progress"]
    assert main([*argv, "-o", str(tmp_path / "out.tif")]) == 2
    err = capsys.readouterr().err
    assert "raw detector counts, not line integrals" in err and "--flat/--dark" in err
    assert not (tmp_path / "out.tif").exists()
    flat = tmp_path / "flat.npy"
    np.save(flat, np.full((16, 24), 50000.0))
    assert main([*argv, "--flat", str(flat), "-o", str(tmp_path / "out.tif")]) == 0  # the user's flat field


def test_a_missing_extra_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "scan.nxs").write_bytes(b"\x89HDF\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if h5py were not installed
    assert main(["reconstruct", str(tmp_path / "scan.nxs"), "-o", str(tmp_path / "o.tif")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "drct[formats]"' in err


def test_dicom_output_without_pydicom_is_one_line_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    np.save(tmp_path / "y.npy", np.zeros((4, 6), np.float32))
    monkeypatch.setitem(sys.modules, "pydicom", None)  # as if pydicom were not installed
    import drct.recon

    monkeypatch.setattr(drct.recon, "fbp", None)  # reaching the reconstruction would fail differently
    argv = ["reconstruct", str(tmp_path / "y.npy"), "--geometry", "x.json", "-o", f"{tmp_path / 'out'}/"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "drct[formats]"' in err
    assert not (tmp_path / "out").exists()


def test_a_tiff_folder_needs_a_geometry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "scan").mkdir()
    for k in range(3):
        tifffile.imwrite(tmp_path / "scan" / f"{k}.tif", np.ones((2, 3), np.float32))
    assert main(["reconstruct", str(tmp_path / "scan"), "-o", str(tmp_path / "o.tif"), "--no-progress"]) == 2
    assert "stores no geometry: pass --geometry" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- DICOM NM
def spect_views() -> ct.SpectGeometry:
    """A body-contour orbit, turning the other way round from drct's angle 0 (DICOM CC)."""
    angles = np.radians(20.0 - 30.0 * np.arange(12))
    return ct.spect(angles, 150.0 + 10.0 * np.cos(angles), (5, 7), (4.0, 3.0))


@pytest.mark.parametrize("sense", [1, -1])
def test_dicom_spect_round_trip(tmp_path: Path, sense: int) -> None:
    pytest.importorskip("pydicom")
    g0 = spect_views()
    g = ct.spect(sense * g0.angles, g0.radius, g0.det_shape, g0.det_spacing)
    counts = np.random.default_rng(5).poisson(40.0, g.shape).astype(np.float32)
    path = formats.write_dicom_spect(tmp_path / "spect.dcm", counts, g)
    scan = formats.read_dicom_spect(path)
    np.testing.assert_array_equal(scan.counts, counts)  # integers up to 65535: stored exactly
    assert scan.geometry.det_shape == g.det_shape and scan.geometry.det_spacing == g.det_spacing
    np.testing.assert_allclose(np.exp(1j * scan.geometry.angles), np.exp(1j * g.angles), atol=1e-9)
    np.testing.assert_allclose(scan.geometry.radius, g.radius, atol=1e-6)
    fractional = counts * 0.37 + 0.01
    formats.write_dicom_spect(path, fractional, g, overwrite=True)
    step = fractional.max() / 65535
    assert np.abs(formats.read_dicom_spect(path).counts - fractional).max() <= 0.51 * step + 1e-6
    with pytest.raises(FileExistsError):
        formats.write_dicom_spect(path, counts, g)
    uneven = ct.spect(np.radians([0.0, 10.0, 30.0]), 100.0, (5, 7), 4.0)
    with pytest.raises(ValueError, match="not evenly spaced"):
        formats.write_dicom_spect(tmp_path / "u.dcm", np.ones(uneven.shape), uneven)


def nm_tomo_by_hand(path: Path, point: tuple[float, float, float], pitch: float = 4.0) -> Path:
    """An NM TOMO file built from DICOM's definitions alone (not by drct's writer): two heads 180° apart, each
    two CC views 90° apart, an image of a point source at ``point`` (patient x, y, z in mm) in each frame,
    head 1 as seen from the camera (no ImageOrientationPatient), head 2 with ImageOrientationPatient saying its
    rows run the other way; and a second, empty, energy window."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset

    from drct.formats.dicom import SeriesIds, new_dataset

    rows, cols = 7, 9
    x = np.asarray(point)
    frames, heads, views = [], [], []
    for head, start in ((1, 0.0), (2, 180.0)):
        for view in (1, 2):
            phi = np.radians(start + 90.0 * (view - 1))
            right = np.array([-np.cos(phi), np.sin(phi), 0.0])  # the camera's right, looking at the axis
            u, z = float(x @ right), float(x[2])
            if head == 2:  # its ImageOrientationPatient: first row along -right, first column along +z
                u, z = -u, -z
            image = np.zeros((rows, cols), np.uint16)
            image[round((rows - 1) / 2 - z / pitch), round((cols - 1) / 2 + u / pitch)] = 1000
            frames.append(image)
            heads.append(head)
            views.append(view)
    ds = new_dataset(path, "1.2.840.10008.5.1.4.1.1.20", "NM", SeriesIds.new(), "by hand")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"]
    ds.NumberOfFrames = 8
    ds.EnergyWindowVector, ds.NumberOfEnergyWindows = [1] * 4 + [2] * 4, 2
    ds.DetectorVector, ds.NumberOfDetectors = heads * 2, 2
    ds.RotationVector, ds.NumberOfRotations = [1] * 8, 1
    ds.AngularViewVector = views * 2
    ds.PixelSpacing = [str(pitch), str(pitch)]
    turn = Dataset()
    turn.StartAngle, turn.AngularStep, turn.RotationDirection, turn.NumberOfFramesInRotation = "0", "90", "CC", 2
    turn.RadialPosition = "120"
    ds.RotationInformationSequence = [turn]
    first, second = Dataset(), Dataset()
    first.StartAngle = "0"
    second.StartAngle = "180"
    second.ImageOrientationPatient = ["-1", "0", "0", "0", "0", "1"]  # at 180°: the camera's left, then up
    ds.DetectorInformationSequence = [first, second]
    windows = [Dataset(), Dataset()]
    windows[0].EnergyWindowName, windows[1].EnergyWindowName = "photopeak", "scatter"
    ds.EnergyWindowInformationSequence = windows
    pixels = np.concatenate([np.stack(frames), np.zeros((4, rows, cols), np.uint16)])
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = rows, cols, 16, 16, 15, 0
    ds.PixelData = pixels.tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def test_dicom_spect_follows_the_standards_angles_and_image_axes(tmp_path: Path) -> None:
    """DICOM: 0° behind the patient (+y), CC towards the patient's left (+x); images as each head states. drct's
    projector, given the geometry read, must put the point source where the hand-made frames have it."""
    point = (8.0, 4.0, 4.0)
    path = nm_tomo_by_hand(tmp_path / "nm.dcm", point)
    with pytest.raises(ValueError, match="2 energy windows \\(photopeak, scatter\\): pass energy_window"):
        formats.read_dicom_spect(path)
    scan = formats.read_dicom_spect(path, energy_window=1)
    g = scan.geometry
    camera = np.stack([-np.sin(g.angles), np.cos(g.angles)], 1)  # drct: the camera sits at (-sin θ, cos θ)
    np.testing.assert_allclose(camera, [[0, 1], [1, 0], [0, -1], [-1, 0]], atol=1e-12)  # back, left, front, right
    np.testing.assert_allclose(g.radius, 120.0)
    vg = scan.volume_geometry()
    f = np.zeros(vg.shape, np.float32)
    index = np.rint((np.asarray(point)[::-1] - np.asarray(vg.first_center)[::-1]) / 4.0).astype(int)
    f[tuple(index)] = 1.0
    y = np.asarray(ct.emission.SPECTProjector(vg, g)(f))
    for v in range(4):
        peak = np.unravel_index(np.argmax(y[v]), y[v].shape)
        assert peak == np.unravel_index(np.argmax(scan.counts[v]), scan.counts[v].shape), v
    assert np.all(formats.read_dicom_spect(path, energy_window=2).counts == 0)
    with pytest.raises(ValueError, match=r"is a DICOM file: SPECT projections .*read_dicom_spect"):
        formats.read(path)


def test_dicom_spect_what_is_not_modelled_is_refused(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    path = nm_tomo_by_hand(tmp_path / "nm.dcm", (0.0, 0.0, 0.0))
    ds = pydicom.dcmread(path)
    del ds.RotationInformationSequence[0].RadialPosition
    ds.save_as(path)
    with pytest.raises(ValueError, match="no RadialPosition for 4 views: pass radius="):
        formats.read_dicom_spect(path, energy_window=1)
    np.testing.assert_allclose(formats.read_dicom_spect(path, 1, radius=99.0).geometry.radius, 99.0)
    for change, message in (
        (lambda d: setattr(d.DetectorInformationSequence[0], "FocalDistance", "400"), "converging collimator"),
        (lambda d: setattr(d.DetectorInformationSequence[1], "ImageOrientationPatient", [0, 1, 0, 0, 0, -1]),
         "no view of the rotation axis"),
        (lambda d: delattr(d.DetectorInformationSequence[1], "StartAngle"), "no StartAngle for this detector"),
        (lambda d: setattr(d, "ImageType", ["DERIVED", "PRIMARY", "RECON TOMO", "EMISSION"]), "read_dicom_series"),
        (lambda d: setattr(d, "Modality", "CT"), "not a nuclear medicine image"),
        (lambda d: setattr(d.RotationInformationSequence[0], "RotationDirection", "UP"), "must be CW or CC"),
        (lambda d: setattr(d, "DetectorVector", [1, 2, 1]), "DetectorVector has 3 values for 8 frames"),
    ):  # fmt: skip
        ds = pydicom.dcmread(path)
        change(ds)
        ds.save_as(tmp_path / "bad.dcm")
        with pytest.raises(ValueError, match=message):
            formats.read_dicom_spect(tmp_path / "bad.dcm", 1, radius=99.0)


def test_dicom_nm_reconstruction_round_trips_through_the_series_reader(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    vg = ct.VolumeGeometry((4, 6, 5), voxel_size=(3.0, 2.0, 2.5), center=(5.0, -2.0, 40.0))
    activity = np.random.default_rng(6).uniform(0, 7.5, vg.shape)
    folder = formats.write_dicom_nm(tmp_path / "osem", activity, vg, preview=lambda p: Path(p).write_bytes(b"png"))
    assert sorted(q.name for q in folder.iterdir()) == ["nm_recon.dcm", "preview.png"]
    got, vg2 = formats.read_dicom_series(folder)
    assert vg2.shape == vg.shape and np.allclose(vg2.voxel_size, vg.voxel_size) and np.allclose(vg2.center, vg.center)
    assert np.abs(got - activity).max() <= 0.51 * activity.max() / 65535 + 1e-9
    ds = pydicom.dcmread(folder / "nm_recon.dcm")  # NM files may keep a plane attribute in the detector item only
    del ds.ImageOrientationPatient, ds.DetectorInformationSequence[0].ImagePositionPatient
    ds.save_as(folder / "nm_recon.dcm")
    again, vg3 = formats.read_dicom_series(folder)
    assert np.array_equal(again, got) and np.allclose(vg3.center, vg.center)
    with pytest.raises(ValueError, match="must be >= 0"):
        formats.write_dicom_nm(tmp_path / "neg", -activity, vg)
    (folder / "mine.txt").write_text("a note of the user's")
    with pytest.raises(FileExistsError, match="drct did not write"):
        formats.write_dicom_nm(folder, activity, vg, overwrite=True)


def test_drct_reconstruct_writes_a_dicom_series_that_reads_back_to_the_tiff_volume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``-o out/``: one CT file per slice (positions, spacing, slope as the geometry says) and preview.png, read
    back to the TIFF reconstruction within the rescale quantisation; an existing output needs --force."""
    pydicom = pytest.importorskip("pydicom")
    vg, _, _ = simulated_scan(tmp_path)
    common = ["reconstruct", str(tmp_path / "line_integrals.npy"), "--geometry", str(tmp_path / "scan.json"),
              "--method", "fdk", "--no-progress"]  # fmt: skip
    assert main([*common, "-o", str(tmp_path / "ref.tif")]) == 0
    assert main([*common, "-o", f"{tmp_path / 'dicom'}/"]) == 0
    files = sorted((tmp_path / "dicom").iterdir())
    assert [f.name for f in files] == ["preview.png"] + [f"slice_{k:05d}.dcm" for k in range(vg.shape[0])]
    ds = pydicom.dcmread(files[2])
    np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], np.add(vg.first_center, (0, 0, 0.5)))
    assert [float(v) for v in ds.PixelSpacing] == [0.5, 0.5] and float(ds.SliceThickness) == 0.5
    ref = tifffile.imread(tmp_path / "ref.tif")
    got, vg2 = formats.read_dicom_series(tmp_path / "dicom")
    assert vg2.shape == vg.shape and vg2.voxel_size == vg.voxel_size and np.allclose(vg2.center, vg.center)
    assert np.abs(ref).max() > 0.1
    assert np.abs(got - ref).max() <= 0.51 * float(ds.RescaleSlope) + 1e-7
    capsys.readouterr()
    assert main([*common, "-o", f"{tmp_path / 'dicom'}/"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main([*common, "-o", f"{tmp_path / 'dicom'}/", "--force"]) == 0
    assert main([*common, "-o", str(tmp_path / "recon")]) == 2  # neither .tif nor a folder: named
    assert "or / (a DICOM folder)" in capsys.readouterr().err


def test_spect_from_dicom_through_drct_reconstruct_to_a_dicom_nm_image(tmp_path: Path) -> None:
    """NM projections in (read_dicom_spect), MLEM by ``drct reconstruct`` with the geometry read, NM RECON TOMO
    out: the activity read back equals the TIFF output within the quantisation."""
    pytest.importorskip("pydicom")
    from drct.emission.files import save_spect

    g = ct.spect(np.linspace(0, 2 * np.pi, 16, endpoint=False), 60.0, (5, 12), 4.0)
    vg = ct.VolumeGeometry((5, 12, 12), voxel_size=4.0)
    f = np.zeros(vg.shape, np.float32)
    f[1:3, 3:7, 5:9] = 2.0
    counts = np.random.default_rng(7).poisson(np.asarray(ct.emission.SPECTProjector(vg, g)(f)) * 10)
    scan = formats.read_dicom_spect(formats.write_dicom_spect(tmp_path / "nm.dcm", counts, g))
    np.save(tmp_path / "counts.npy", scan.counts)
    save_spect(tmp_path / "spect.json", scan.geometry, scan.volume_geometry(), None, None, 10.0)
    common = ["reconstruct", str(tmp_path / "counts.npy"), "--geometry", str(tmp_path / "spect.json"),
              "--method", "mlem", "--niter", "5", "--no-progress"]  # fmt: skip
    assert main([*common, "-o", str(tmp_path / "mlem.tif")]) == 0
    assert main([*common, "-o", f"{tmp_path / 'nm'}/"]) == 0
    assert sorted(q.name for q in (tmp_path / "nm").iterdir()) == ["nm_recon.dcm", "preview.png"]
    ref = tifffile.imread(tmp_path / "mlem.tif")
    got, vg2 = formats.read_dicom_series(tmp_path / "nm")
    assert vg2.shape == vg.shape and np.allclose(vg2.center, vg.center)
    assert ref.max() > 0.5 and np.abs(got - ref).max() <= 0.51 * ref.max() / 65535 + 1e-7
