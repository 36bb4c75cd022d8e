"""ASTRA interoperability: ``from_astra``/``to_astra`` round trips, axis conventions, and peer cross-checks.

The first part needs no ASTRA (the dicts are built by hand, as ``astra.create_vol_geom``/``create_proj_geom``
make them). The second part projects the same arrays with ASTRA's CPU 2D projectors and compares; it is
skipped without astra-toolbox. ASTRA's 3D projectors need CUDA, so the 3D conventions are checked against
ASTRA's own geometry helpers (``geom_2vec``, ``geom_size``) and against its documented kernel conventions
(pixel ``[z, y, x]`` centred at ``WindowMin + (index + 0.5) * size`` on every axis; sinograms
``(rows, views, cols)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import drct as ct
from drct.geometry.astra import sino_from_astra, sino_to_astra

TYPES_2D = ("parallel", "parallel_vec", "fanflat", "fanflat_vec")
TYPES = (*TYPES_2D, "parallel3d", "parallel3d_vec", "cone", "cone_vec")


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b))


def geom_2vec(proj: dict[str, Any]) -> np.ndarray:
    """``astra.geom_2vec(proj)['Vectors']``, written out (ASTRA's own frame)."""
    th = np.asarray(proj["ProjectionAngles"], np.float64)
    s, c, z = np.sin(th), np.cos(th), np.zeros_like(th)
    if proj["type"] in ("parallel", "fanflat"):
        u = np.stack([c, s], 1) * proj["DetectorWidth"]
        if proj["type"] == "parallel":
            return np.concatenate([np.stack([s, -c], 1), np.zeros((th.size, 2)), u], 1)
        so, od = proj["DistanceOriginSource"], proj["DistanceOriginDetector"]
        return np.concatenate([np.stack([s, -c], 1) * so, np.stack([-s, c], 1) * od, u], 1)
    u = np.stack([c, s, z], 1) * proj["DetectorSpacingX"]
    v = np.stack([z, z, z + proj["DetectorSpacingY"]], 1)
    if proj["type"] == "parallel3d":
        return np.concatenate([np.stack([s, -c, z], 1), np.zeros((th.size, 3)), u, v], 1)
    so, od = proj["DistanceOriginSource"], proj["DistanceOriginDetector"]
    return np.concatenate([np.stack([s, -c, z], 1) * so, np.stack([-s, c, z], 1) * od, u, v], 1)


def astra_dicts(kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Hand-made ASTRA dicts: off-centre windows with non-square pixels, and general ``*_vec`` vectors."""
    rng = np.random.default_rng(3)
    angles = np.linspace(0, 2 * np.pi, 7, endpoint=False) + 0.2
    vol: dict[str, Any] = {"GridRowCount": 12, "GridColCount": 10, "option": {}}
    vol["option"].update(WindowMinX=-4.0, WindowMaxX=6.0, WindowMinY=-7.0, WindowMaxY=5.6)
    if kind in TYPES_2D:
        proj: dict[str, Any] = {"type": kind.replace("_vec", ""), "DetectorWidth": 0.8, "DetectorCount": 21}
        proj.update(ProjectionAngles=angles, DistanceOriginSource=30.0, DistanceOriginDetector=20.0)
        if kind == "parallel":
            del proj["DistanceOriginSource"], proj["DistanceOriginDetector"]
    else:
        vol["GridSliceCount"] = 6
        vol["option"].update(WindowMinZ=-2.0, WindowMaxZ=5.5)
        proj = {"type": kind.replace("_vec", ""), "DetectorSpacingX": 0.9, "DetectorSpacingY": 1.3}
        proj.update(DetectorRowCount=8, DetectorColCount=11, ProjectionAngles=angles)
        proj.update(DistanceOriginSource=30.0, DistanceOriginDetector=20.0)
        if kind == "parallel3d":
            del proj["DistanceOriginSource"], proj["DistanceOriginDetector"]
    if kind.endswith("_vec"):
        vectors = geom_2vec(proj) + rng.normal(scale=0.3, size=(7, 6 if "DetectorCount" in proj else 12))
        counts = {k: proj[k] for k in ("DetectorCount", "DetectorRowCount", "DetectorColCount") if k in proj}
        proj = {"type": kind, **counts, "Vectors": vectors}
    return vol, proj


def assert_same(vg: ct.VolumeGeometry, pg: ct.ProjectionGeometry, vg2: Any, pg2: Any) -> None:
    assert vg2.shape == vg.shape
    np.testing.assert_allclose(vg2.voxel_size, vg.voxel_size, rtol=1e-12)
    np.testing.assert_allclose(vg2.center, vg.center, rtol=1e-12, atol=1e-12)
    assert (pg2.beam, pg2.det_shape, pg2.curved) == (pg.beam, pg.det_shape, pg.curved)
    np.testing.assert_array_equal(pg2.to_vectors(), pg.to_vectors())


# --------------------------------------------------------------------------------------- no ASTRA needed
@pytest.mark.parametrize("kind", TYPES)
def test_round_trip_of_astra_dicts(kind: str) -> None:
    vol, proj = astra_dicts(kind)
    vg, pg = ct.from_astra(vol, proj)
    vol2, proj2 = ct.to_astra(vg, pg)
    assert proj2["type"] == (kind if kind.endswith("_vec") else kind + "_vec")
    expected = proj["Vectors"] if kind.endswith("_vec") else geom_2vec(proj)
    np.testing.assert_allclose(proj2["Vectors"], expected, rtol=0, atol=1e-12)
    assert set(vol2) == set(vol) and set(vol2["option"]) == set(vol["option"])
    for key, value in vol["option"].items():
        assert vol2["option"][key] == pytest.approx(value, abs=1e-12), key
    for key in ("GridRowCount", "GridColCount", "GridSliceCount"):
        assert vol2.get(key) == vol.get(key), key
    for key in ("DetectorCount", "DetectorRowCount", "DetectorColCount"):
        assert proj2.get(key) == proj.get(key), key
    assert_same(vg, pg, *ct.from_astra(vol2, proj2))
    flip = np.tile([1.0, -1.0], 3) if vg.ndim == 2 else np.ones(12)  # 2D: drct's y is ASTRA's -y
    np.testing.assert_allclose(pg.to_vectors(), expected * flip, atol=1e-12)


def drct_cases() -> dict[str, tuple[ct.VolumeGeometry, ct.ProjectionGeometry]]:
    rng = np.random.default_rng(5)
    angles = np.linspace(0, 2 * np.pi, 9, endpoint=False) + 0.1
    v2 = ct.VolumeGeometry((13, 16), voxel_size=(1.1, 0.9), center=(0.3, -0.7))
    v3 = ct.VolumeGeometry((9, 11, 10), voxel_size=(1.2, 0.9, 1.0), center=(0.2, -0.1, 0.3))
    cone_vec = ct.cone(angles, (10, 12), 1.5, 40.0, 80.0).to_vectors() + rng.normal(scale=0.2, size=(9, 12))
    fan_vec = ct.fan(angles, 20, 1.5, 40.0, 80.0).to_vectors() + rng.normal(scale=0.2, size=(9, 6))
    return {
        "parallel2d": (v2, ct.parallel(angles, 25, 0.9)),
        "fan": (v2, ct.fan(angles, 20, 1.5, 40.0, 80.0)),
        "fan_vectors": (v2, ct.from_vectors(fan_vec, 20, beam="cone")),
        "parallel3d": (v3, ct.parallel(angles, (14, 17), (1.1, 0.9))),
        "cone": (v3, ct.cone(angles, (10, 12), 1.5, 40.0, 80.0)),
        "helix": (v3, ct.helix(np.linspace(-2 * np.pi, 2 * np.pi, 9), 6.0, (8, 12), 1.5, 40.0, 80.0)),
        "cone_vectors": (v3, ct.from_vectors(cone_vec, (10, 12), beam="cone")),
    }


@pytest.mark.parametrize("case", sorted(drct_cases()))
def test_round_trip_of_drct_geometries(case: str) -> None:
    vg, pg = drct_cases()[case]
    vol, proj = ct.to_astra(vg, pg)
    assert proj["type"].endswith("_vec")
    assert proj["Vectors"].shape == (pg.num_views, 6 if pg.ndim == 2 else 12)
    assert_same(vg, pg, *ct.from_astra(vol, proj))


def test_2d_rows_run_downwards() -> None:
    """ASTRA's measured answer: pixel [0, 0] of a 4x4 image lands on column 0 at θ=0, column 3 at θ=π/2."""
    vol = {"GridRowCount": 4, "GridColCount": 4, "option": {}}
    proj = {"type": "parallel", "DetectorWidth": 1.0, "DetectorCount": 4, "ProjectionAngles": [0, np.pi / 2]}
    vg, pg = ct.from_astra(vol, proj)
    x = np.zeros((4, 4), np.float32)
    x[0, 0] = 1.0
    y = ct.Projector(vg, pg, basis="voxel")(x)
    np.testing.assert_allclose(y, [[1, 0, 0, 0], [0, 0, 0, 1]], atol=1e-6)


def test_2d_window_centre_is_mirrored() -> None:
    vol = {"GridRowCount": 4, "GridColCount": 5, "option": {}}
    vol["option"].update(WindowMinX=1.0, WindowMaxX=6.0, WindowMinY=0.0, WindowMaxY=8.0)
    proj = {"type": "parallel", "DetectorWidth": 1, "DetectorCount": 9, "ProjectionAngles": [0]}
    vg, _ = ct.from_astra(vol, proj)
    assert vg.voxel_size == (2.0, 1.0) and vg.center == (3.5, -4.0)


def test_3d_axes_are_not_flipped() -> None:
    """ASTRA 3D: voxel [z, y, x] sits at WindowMin + (index + 0.5) * size on every axis.

    ASTRA's 3D sinograms are (rows, views, cols)."""
    vol = {"GridRowCount": 6, "GridColCount": 6, "GridSliceCount": 5, "option": {}}
    proj = {"type": "parallel3d", "DetectorSpacingX": 1.0, "DetectorSpacingY": 1.0, "DetectorRowCount": 5}
    proj.update(DetectorColCount=6, ProjectionAngles=[0.0, np.pi / 2])
    vg, pg = ct.from_astra(vol, proj)
    assert vg.shape == (5, 6, 6) and pg.shape == (2, 5, 6)
    x = np.zeros(vg.shape, np.float32)
    x[4, 0, 1] = 1.0  # at (x, y, z) = (-1.5, -2.5, 2): column 1 at θ=0, column 0 at θ=π/2, row 4
    sino = sino_to_astra(ct.Projector(vg, pg, basis="voxel")(x))
    expected = np.zeros((5, 2, 6))
    expected[4, 0, 1] = expected[4, 1, 0] = 1.0
    np.testing.assert_allclose(sino, expected, atol=1e-6)


def test_sinogram_axis_helpers() -> None:
    y = np.arange(2 * 3 * 4.0).reshape(2, 3, 4)  # drct (views, rows, cols)
    a = sino_to_astra(y)
    assert a.shape == (3, 2, 4) and a[1, 0, 2] == y[0, 1, 2]
    np.testing.assert_array_equal(sino_from_astra(a), y)
    flat = np.ones((5, 7))
    assert sino_to_astra(flat).shape == sino_from_astra(flat).shape == (5, 7)
    with pytest.raises(ValueError, match="sinogram"):
        sino_from_astra(np.ones(4))


def _set(target: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        del target[key]
    else:
        target[key] = value


def _broken(kind: str, change: dict[str, Any], vol_change: dict[str, Any] | None = None) -> tuple[dict, dict]:
    """``astra_dicts(kind)`` with keys replaced (None deletes; Window* keys live in vol['option'])."""
    vol, proj = astra_dicts(kind)
    for key, value in change.items():
        _set(proj, key, value)
    for key, value in (vol_change or {}).items():
        _set(vol["option"] if key.startswith("Window") else vol, key, value)
    return vol, proj


BAD = {
    "unknown type": (("parallel", {"type": "fan"}), "'type'.* must be one of"),
    "curved ASTRA type": (("cone_vec", {"type": "cyl_cone_vec"}), "curved"),
    "missing DetectorWidth": (("parallel", {"DetectorWidth": None}), "DetectorWidth"),
    "missing Vectors": (("cone_vec", {"Vectors": None}), "Vectors"),
    "missing distance": (("cone", {"DistanceOriginSource": None}), "DistanceOriginSource"),
    "missing GridColCount": (("parallel", {}, {"GridColCount": None}), "GridColCount"),
    "vectors of 3D width in 2D": (("fanflat_vec", {"Vectors": np.ones((3, 12))}), "Vectors"),
    "vectors of 2D width in 3D": (("cone_vec", {"Vectors": np.ones((3, 6))}), "Vectors"),
    "2D angles": (("parallel", {"ProjectionAngles": np.zeros((2, 3))}), "ProjectionAngles"),
    "no angles": (("fanflat", {"ProjectionAngles": []}), "ProjectionAngles"),
    "NaN angle": (("cone", {"ProjectionAngles": [0.0, np.nan]}), "ProjectionAngles"),
    "inf vector": (("parallel3d_vec", {"Vectors": np.full((2, 12), np.inf)}), "Vectors"),
    "zero width": (("parallel", {"DetectorWidth": 0.0}), "DetectorWidth"),
    "fractional count": (("fanflat", {"DetectorCount": 2.5}), "DetectorCount"),
    "negative rows": (("cone", {"DetectorRowCount": -3}), "DetectorRowCount"),
    "text spacing": (("parallel3d", {"DetectorSpacingX": "wide"}), "DetectorSpacingX"),
    "NaN window": (("parallel", {}, {"WindowMaxX": np.nan}), "WindowMaxX"),
    "empty window": (("cone", {}, {"WindowMaxZ": -2.0}), "WindowMaxZ"),
    "half a window": (("parallel", {}, {"WindowMinX": None}), "WindowMinX"),
    "3D volume, 2D type": (("parallel", {}, {"GridSliceCount": 4}), "GridSliceCount"),
    "2D volume, 3D type": (("cone", {}, {"GridSliceCount": None}), "vol_geom is 2D"),
    "degenerate vectors": (("fanflat_vec", {"Vectors": np.zeros((2, 6))}), "degenerate"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_astra_dicts_name_the_key(case: str) -> None:
    args, word = BAD[case]
    kind, change, *rest = args
    vol, proj = _broken(kind, change, rest[0] if rest else None)
    with pytest.raises(ValueError, match=word):
        ct.from_astra(vol, proj)


def test_to_astra_refuses_what_astra_cannot_hold() -> None:
    vg2, vg3 = ct.VolumeGeometry((8, 8)), ct.VolumeGeometry((4, 8, 8))
    with pytest.raises(ValueError, match="curved"):
        ct.to_astra(vg2, ct.fan([0.0, 1.0], 16, 1.0, 50.0, 100.0, curved=True))
    with pytest.raises(ValueError, match="curved"):
        ct.to_astra(vg3, ct.cone([0.0, 1.0], (4, 16), 1.0, 50.0, 100.0, curved=True))
    with pytest.raises(ValueError, match="ray list"):
        ct.to_astra(vg2, ct.rays([[0.0, -50.0]], [[0.0, 1.0]]))
    with pytest.raises(ValueError, match="3D"):
        ct.to_astra(vg3, ct.parallel([0.0], 16))
    with pytest.raises(TypeError):
        ct.to_astra("volume", ct.parallel([0.0], 16))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ct.from_astra([], {})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- peer checks with ASTRA
@pytest.fixture(scope="module")
def astra() -> Any:
    return pytest.importorskip(
        "astra", reason="astra-toolbox not installed: pip install astra-toolbox to run the peer cross-checks"
    )


def astra_forward(astra: Any, vol: dict, proj: dict, x: np.ndarray, kind: str) -> np.ndarray:
    pid = astra.create_projector(kind, proj, vol)
    try:
        sid, y = astra.create_sino(np.ascontiguousarray(x, np.float32), pid)
        astra.data2d.delete(sid)
    finally:
        astra.projector.delete(pid)
    return y


def astra_backward(astra: Any, vol: dict, proj: dict, y: np.ndarray, kind: str) -> np.ndarray:
    pid = astra.create_projector(kind, proj, vol)
    try:
        bid, x = astra.create_backprojection(np.ascontiguousarray(y, np.float32), pid)
        astra.data2d.delete(bid)
    finally:
        astra.projector.delete(pid)
    return x


NY, NX = 40, 48
VOL = {"GridRowCount": NY, "GridColCount": NX, "option": {}}  # 0.5 mm pixels, off centre
VOL["option"].update(WindowMinX=-13.0, WindowMaxX=11.0, WindowMinY=-9.0, WindowMaxY=11.0)


def images() -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:NY, 0:NX].astype(np.float64)
    blob = np.exp(-((xx - 30) ** 2 / 60 + (yy - 14) ** 2 / 30))
    blob += 0.5 * np.exp(-((xx - 15) ** 2 / 20 + (yy - 25) ** 2 / 40))
    shape_l = np.zeros((NY, NX))
    shape_l[5:30, 8:12] = 1.0
    shape_l[26:30, 8:30] = 1.0
    shape_l[8, 38] = 2.0  # one off-centre bright pixel
    return {"blob": blob.astype(np.float32), "L": shape_l.astype(np.float32)}


def peer_geometries() -> dict[str, dict[str, Any]]:
    rng = np.random.default_rng(0)
    half = np.linspace(0, np.pi, 45, endpoint=False) + 0.05
    full = np.linspace(0, 2 * np.pi, 45, endpoint=False) + 0.05
    par = {"type": "parallel", "DetectorWidth": 0.6, "DetectorCount": 70, "ProjectionAngles": half}
    fan = {"type": "fanflat", "DetectorWidth": 0.9, "DetectorCount": 80, "ProjectionAngles": full}
    fan.update(DistanceOriginSource=60.0, DistanceOriginDetector=40.0)
    pv = geom_2vec(par)  # shifted detector centres, detector axes rotated and stretched
    pv[:, 2:4] += rng.normal(scale=1.0, size=(45, 2))
    pv[:, 4:6] = pv[:, 4:6] @ np.array([[1.05, 0.1], [-0.1, 1.05]])
    fv = geom_2vec(fan) + rng.normal(size=(45, 6)) * np.array([1, 1, 1, 1, 0.05, 0.05])
    return {
        "parallel": par,
        "fanflat": fan,
        "parallel_vec": {"type": "parallel_vec", "DetectorCount": 70, "Vectors": pv},
        "fanflat_vec": {"type": "fanflat_vec", "DetectorCount": 80, "Vectors": fv},
    }


# (geometry, drct basis, ASTRA projector, image): tolerance on the relative L2 difference.
# Measured (float32): voxel vs line(_fanflat) 1.4e-6 (blob) to 6e-6 (L); linear vs ASTRA's Joseph 'linear'
# 8.7e-4 (blob) and 7e-3 (L). ASTRA's 'linear' samples the bilinear interpolant once per pixel row (Joseph)
# while drct integrates it exactly, so their difference is a second-order quadrature error (see
# test_linear_difference_is_second_order), not a geometry error. A y-flip or a column reversal gives > 0.7.
FORWARD = {
    (geom, "voxel", "line_fanflat" if geom.startswith("fan") else "line", image): 2e-5
    for geom in ("parallel", "fanflat", "parallel_vec", "fanflat_vec")
    for image in ("blob", "L")
}
FORWARD.update({(geom, "linear", "linear", "blob"): 2.5e-3 for geom in ("parallel", "parallel_vec")})
FORWARD.update({(geom, "linear", "linear", "L"): 2e-2 for geom in ("parallel", "parallel_vec")})


@pytest.mark.parametrize("case", sorted(FORWARD), ids=lambda c: "-".join(c))
def test_forward_matches_astra(astra: Any, case: tuple[str, str, str, str]) -> None:
    geom, basis, kind, image = case
    proj, x = peer_geometries()[geom], images()[image]
    vg, pg = ct.from_astra(VOL, proj)
    A = ct.Projector(vg, pg, basis=basis)
    reference = astra_forward(astra, VOL, proj, x, kind)
    err = rel(A(x), reference)
    flipped, mirrored = rel(A(x[::-1].copy()), reference), rel(A(x[:, ::-1].copy()), reference)
    print(f"{geom} {basis} vs {kind} on {image}: rel {err:.2e}", end=" ")
    print(f"(y-flipped {flipped:.2f}, x-mirrored {mirrored:.2f})")
    assert err < FORWARD[case]
    assert min(flipped, mirrored) > 0.3  # the image is asymmetric enough to catch a flipped axis


def test_linear_difference_is_second_order(astra: Any) -> None:
    """drct 'linear' vs ASTRA 'linear' on Gaussians: the gap shrinks like 1/sigma^2.

    Measured: 2.5e-3 at sigma = 3 pixels, 6.0e-4 at sigma = 6."""
    yy, xx = np.mgrid[0:NY, 0:NX].astype(np.float64)
    errors = []
    for name in ("parallel", "parallel_vec"):
        proj = peer_geometries()[name]
        A = ct.Projector(*ct.from_astra(VOL, proj), basis="linear")
        for sigma in (3.0, 6.0):
            g = np.exp(-((xx - 27) ** 2 / (2 * sigma**2) + (yy - 18) ** 2 / (2 * (0.8 * sigma) ** 2)))
            g = g.astype(np.float32)
            errors.append(rel(A(g), astra_forward(astra, VOL, proj, g, "linear")))
    print("linear vs ASTRA linear, sigma 3 then 6 (parallel, parallel_vec):", [f"{e:.2e}" for e in errors])
    assert errors[0] / errors[1] > 3.0 and errors[2] / errors[3] > 3.0  # second order: 4 expected
    assert max(errors) < 6e-3


def test_non_square_pixels_match_astra_strip(astra: Any) -> None:
    """Pixels 0.5 x 0.6 mm, off centre. ASTRA's CPU 'line' mis-weights non-square pixels, and its 'strip'
    does at oblique angles, so compare 'strip' (detector-pixel average) at axis-aligned views against drct's
    voxel projection averaged over 64 sub-rays per detector pixel (measured 1.9e-3 on the L image; a swapped
    voxel size or an un-mirrored centre gives > 0.7)."""
    vol = {"GridRowCount": NY, "GridColCount": NX, "option": {}}
    vol["option"].update(WindowMinX=-13.0, WindowMaxX=11.0, WindowMinY=-9.0, WindowMaxY=15.0)
    angles = np.array([0.0, np.pi / 2, np.pi, 1.5 * np.pi])
    proj = {"type": "parallel", "DetectorWidth": 0.7, "DetectorCount": 64, "ProjectionAngles": angles}
    vg, pg = ct.from_astra(vol, proj)
    assert vg.voxel_size == pytest.approx((0.6, 0.5))
    n = 64
    fine = ct.ProjectionGeometry("parallel", pg.src, pg.det, pg.det_u / n, None, (64 * n,))
    x = images()["L"]
    ours = ct.Projector(vg, fine, basis="voxel")(x).reshape(4, 64, n).mean(axis=2)
    err = rel(ours, astra_forward(astra, vol, proj, x, "strip"))
    print(f"non-square pixels, voxel (64 sub-rays) vs strip: rel {err:.2e}")
    assert err < 5e-3


@pytest.mark.parametrize("geom", ["parallel", "fanflat_vec"])
def test_backprojection_matches_astra(astra: Any, geom: str) -> None:
    """ASTRA's CPU backprojection is the exact transpose of its 'line' projector: compare with A.T."""
    proj = peer_geometries()[geom]
    vg, pg = ct.from_astra(VOL, proj)
    y = np.random.default_rng(1).uniform(size=pg.shape).astype(np.float32)
    kind = "line_fanflat" if geom.startswith("fan") else "line"
    err = rel(ct.Projector(vg, pg, basis="voxel").T(y), astra_backward(astra, VOL, proj, y, kind))
    print(f"{geom} A.T vs ASTRA backprojection ({kind}): rel {err:.2e}")
    assert err < 5e-5  # measured 1.0e-5 (parallel), 1.4e-5 (fanflat_vec): ASTRA accumulates in float32


@pytest.mark.parametrize("kind", TYPES)
def test_astra_made_dicts(astra: Any, kind: str) -> None:
    """Dicts from ASTRA's own creators are accepted, give geom_2vec's vectors and geom_size's shapes."""
    vol_hand, proj_hand = astra_dicts(kind)
    axes = "XYZ" if "GridSliceCount" in vol_hand else "XY"
    window = [vol_hand["option"][f"Window{m}{axis}"] for axis in axes for m in ("Min", "Max")]
    counts = (12, 10, 6) if "GridSliceCount" in vol_hand else (12, 10)
    vol = astra.create_vol_geom(*counts, *window)
    p = proj_hand
    angles_3d = "DetectorSpacingX DetectorSpacingY DetectorRowCount DetectorColCount ProjectionAngles"
    args = {  # astra.create_proj_geom's argument order
        "parallel": "DetectorWidth DetectorCount ProjectionAngles",
        "fanflat": "DetectorWidth DetectorCount ProjectionAngles DistanceOriginSource DistanceOriginDetector",
        "parallel3d": angles_3d,
        "cone": angles_3d + " DistanceOriginSource DistanceOriginDetector",
        "parallel_vec": "DetectorCount Vectors",
        "fanflat_vec": "DetectorCount Vectors",
        "parallel3d_vec": "DetectorRowCount DetectorColCount Vectors",
        "cone_vec": "DetectorRowCount DetectorColCount Vectors",
    }[kind].split()
    proj = astra.create_proj_geom(kind, *(p[a] for a in args))
    vg, pg = ct.from_astra(vol, proj)
    vg_hand, pg_hand = ct.from_astra(vol_hand, proj_hand)
    assert_same(vg_hand, pg_hand, vg, pg)
    _, proj2 = ct.to_astra(vg, pg)
    np.testing.assert_allclose(proj2["Vectors"], astra.geom_2vec(proj)["Vectors"], atol=1e-12)
    assert tuple(astra.functions.geom_size(vol)) == vg.shape
    assert tuple(astra.functions.geom_size(proj)) == sino_to_astra(np.empty(pg.shape)).shape


def test_astra_projects_to_astra_output(astra: Any) -> None:
    """The other direction: ASTRA, given to_astra's dicts, projects x as drct does (2D); 3D dicts load."""
    vg = ct.VolumeGeometry((NY, NX), voxel_size=(0.5, 0.5), center=(-1.0, 2.0))
    x = images()["L"]
    angles = np.linspace(0, 2 * np.pi, 30, endpoint=False) + 0.3
    for pg, kind in (
        (ct.parallel(angles, 70, 0.6), "line"),
        (ct.fan(angles, 80, 0.9, 60.0, 100.0), "line_fanflat"),
    ):
        vol, proj = ct.to_astra(vg, pg)
        err = rel(ct.Projector(vg, pg, basis="voxel")(x), astra_forward(astra, vol, proj, x, kind))
        print(f"to_astra {proj['type']}: rel {err:.2e}")
        assert err < 2e-5
    vg3 = ct.VolumeGeometry((5, 6, 7), voxel_size=(1.0, 0.5, 0.5), center=(0.5, -1.0, 2.0))
    for pg3 in (ct.parallel(angles, (4, 9), 1.0), ct.cone(angles, (4, 9), 1.0, 60.0, 100.0)):
        vol, proj = ct.to_astra(vg3, pg3)
        ids = astra.data3d.create("-vol", vol), astra.data3d.create("-sino", proj)
        try:
            assert astra.data3d.get(ids[0]).shape == vg3.shape
            assert astra.data3d.get(ids[1]).shape == sino_to_astra(np.empty(pg3.shape)).shape
        finally:
            astra.data3d.delete(list(ids))
