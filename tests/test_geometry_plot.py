"""Geometry pictures (``pg.plot()``, ``drct info --plot``): what is drawn is where the geometry says it is.

Coordinates are read back from the matplotlib artists (by gid) and compared with values computed here from the
geometry's vectors, independently of the drawing code.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

import drct as ct
from drct.cli import main

ANGLES = np.linspace(0, 2 * np.pi, 24, endpoint=False)


@pytest.fixture(autouse=True)
def _close_figures() -> Any:
    yield
    plt.close("all")


def drawn(ax: Any) -> dict[str, list[np.ndarray]]:
    """``{gid: [points (n, ndim) of each artist with that gid]}`` read back from the axes."""
    out: dict[str, list[np.ndarray]] = {}
    for line in ax.get_lines():
        pts = np.stack(line.get_data_3d(), axis=1) if ax.name == "3d" else np.asarray(line.get_xydata())
        out.setdefault(line.get_gid(), []).append(np.asarray(pts, dtype=np.float64))
    return out


def one(art: dict[str, list[np.ndarray]], gid: str) -> np.ndarray:
    assert len(art[gid]) == 1, gid
    return art[gid][0]


def flat_corners(pg: ct.ProjectionGeometry, i: int) -> np.ndarray:
    """The detector's corners (2D: ends), outer pixel edges, from the vectors."""
    half_u = pg.det_shape[-1] / 2
    if pg.ndim == 2:
        return np.array([pg.det[i] - half_u * pg.det_u[i], pg.det[i] + half_u * pg.det_u[i]])
    assert pg.det_v is not None
    half_v = pg.det_shape[0] / 2
    signs = itertools.product((-1, 1), (-1, 1))
    return np.array([pg.det[i] + su * half_u * pg.det_u[i] + sv * half_v * pg.det_v[i] for su, sv in signs])


def same_points(a: np.ndarray, b: np.ndarray) -> None:
    """Equal as sets of points (order free)."""
    a, b = np.unique(a.round(9), axis=0), np.unique(b.round(9), axis=0)
    np.testing.assert_allclose(a, b, atol=1e-9)


def check_rays(art: dict[str, list[np.ndarray]], pg: ct.ProjectionGeometry, i: int, ends: np.ndarray) -> None:
    """Centre ray ends on ``det``, corner rays on the detector's corners ``ends``; cone rays start at the source,
    parallel rays run along the ray direction."""
    centre = one(art, f"ray {i} centre")
    np.testing.assert_allclose(centre[-1], pg.det[i], atol=1e-9)
    corners = np.array([one(art, f"ray {i} corner {k}")[-1] for k in range(len(ends))])
    same_points(corners, ends)
    for gid in [f"ray {i} centre", *(f"ray {i} corner {k}" for k in range(len(ends)))]:
        seg = one(art, gid)
        if pg.beam == "cone":
            np.testing.assert_allclose(seg[0], pg.src[i], atol=1e-9)
        else:
            step = (seg[1] - seg[0]) / np.linalg.norm(seg[1] - seg[0])
            np.testing.assert_allclose(step, pg.src[i] / np.linalg.norm(pg.src[i]), atol=1e-12)


@pytest.mark.parametrize(
    "pg",
    [
        ct.parallel(ANGLES[:12] / 2, 16, 1.5),
        ct.fan(ANGLES, 16, 1.5, 60.0, 100.0),
        ct.cone(ANGLES, (8, 12), (1.0, 1.5), 60.0, 100.0),
        ct.helix(np.linspace(-2 * np.pi, 2 * np.pi, 40), 20.0, (8, 12), 1.0, 60.0, 100.0),
    ],
    ids=["parallel", "fan", "cone", "helix"],
)
def test_flat_detectors_sources_and_rays_are_drawn_where_the_geometry_puts_them(pg: ct.ProjectionGeometry) -> None:
    views = [0, 5, pg.num_views - 1]
    ax = pg.plot(views=views)
    assert ax.name == ("3d" if pg.ndim == 3 else "rectilinear")
    art = drawn(ax)
    if pg.beam == "cone":
        np.testing.assert_allclose(one(art, "sources"), pg.src)  # the whole path: a circle, or a helix
    else:
        assert not any(g.startswith("source") for g in art)  # a parallel beam has no source point
    for i in views:
        ends = flat_corners(pg, i)
        outline = one(art, f"detector {i}")
        same_points(outline, ends)
        if pg.beam == "cone":
            np.testing.assert_allclose(one(art, f"source {i}"), pg.src[i : i + 1])
        check_rays(art, pg, i, ends)
    assert {g.split()[1] for g in art if g.startswith("detector")} == {str(i) for i in views}


@pytest.mark.parametrize(
    "pg",
    [ct.fan(ANGLES, 16, 2.0, 60.0, 100.0, curved=True), ct.cone(ANGLES, (8, 16), 2.0, 60.0, 100.0, curved=True)],
    ids=["fan", "cone"],
)
def test_curved_detectors_are_drawn_on_their_cylinder(pg: ct.ProjectionGeometry) -> None:
    radius, cols = 100.0, pg.det_shape[-1]  # the detector's cylinder is centred on the source axis
    art = drawn(pg.plot(views=[3]))
    outline = one(art, "detector 3")
    rel = outline - pg.src[3]
    if pg.ndim == 3:
        np.testing.assert_allclose(np.unique(rel[:, 2].round(9)), [-8.0, 8.0])  # rows x pitch / 2 either side
        rel = rel[:, :2]
    np.testing.assert_allclose(np.linalg.norm(rel, axis=1), radius, rtol=1e-12)
    angles = np.arctan2(rel[:, 1], rel[:, 0])
    centre = np.arctan2(*(pg.det[3] - pg.src[3])[1::-1])
    span = np.angle(np.exp(1j * (angles - centre)))
    np.testing.assert_allclose([span.min(), span.max()], np.array([-1, 1]) * cols * 2.0 / 2 / radius, atol=1e-12)
    assert len(np.unique(span.round(9))) > 10  # an arc, not a chord
    corners = np.array([one(art, f"ray 3 corner {k}")[-1] for k in range(2 ** (pg.ndim - 1))])
    np.testing.assert_allclose(np.linalg.norm((corners - pg.src[3])[:, :2], axis=1), radius, rtol=1e-12)
    np.testing.assert_allclose(one(art, "ray 3 centre"), np.stack([pg.src[3], pg.det[3]]), atol=1e-9)


@pytest.mark.parametrize("ndim", [2, 3])
def test_volume_box_is_the_volume_extent(ndim: int) -> None:
    vg = ct.VolumeGeometry((6, 8, 10)[3 - ndim :], (0.5, 1.0, 2.0)[3 - ndim :], center=(1.0, -2.0, 3.0)[:ndim])
    pg = ct.fan(ANGLES, 16, 1.0, 60.0, 100.0) if ndim == 2 else ct.cone(ANGLES, (8, 8), 1.0, 60.0, 100.0)
    edges = drawn(pg.plot(vg, views=1))["volume"]
    assert len(edges) == (4 if ndim == 2 else 12)
    corners = np.array(list(itertools.product(*zip(vg.extent_min, vg.extent_max, strict=True))))
    same_points(np.concatenate(edges), corners)
    for edge in edges:  # each edge runs along one axis
        assert np.count_nonzero(np.abs(edge[1] - edge[0]) > 1e-12) == 1


def drawn_views(ax: Any) -> list[int]:
    return sorted(int(g.split()[1]) for g in drawn(ax) if g.startswith("detector"))


def test_default_views_are_a_few_spread_over_the_scan() -> None:
    pg = ct.fan(ANGLES, 16, 1.0, 60.0, 100.0)  # 24 views on a full circle
    assert drawn_views(pg.plot()) == [0, 6, 12, 18]  # 4 directions, not the first and last (the same one)
    assert drawn_views(pg.plot(views=2)) == [0, 12]
    assert drawn_views(pg.plot(views=100)) == list(range(24))


def test_default_views_of_a_helix_show_distinct_directions() -> None:
    pg = ct.helix(np.linspace(-3 * np.pi, 3 * np.pi, 360, endpoint=False), 20.0, (8, 12), 1.0, 60.0, 100.0)
    sources = np.concatenate([a for g, arts in drawn(pg.plot()).items() if g.startswith("source ") for a in arts])
    azimuths = np.degrees(np.arctan2(sources[:, 1], sources[:, 0])).round(6) % 360
    assert len(np.unique(azimuths)) == 4  # evenly spread indices of a 3-turn helix all sat at one angle before


def test_drjit_vectors_are_drawn_like_numpy_ones() -> None:
    pg = ct.cone(ANGLES, (8, 12), 1.0, 60.0, 100.0, curved=True)
    a, b = drawn(pg.plot(views=[2])), drawn(pg.with_drjit_vectors().plot(views=[2]))
    assert a.keys() == b.keys()
    for gid in a:
        for x, y in zip(a[gid], b[gid], strict=True):
            np.testing.assert_allclose(x, y, atol=1e-9)


@pytest.mark.parametrize("ndim", [2, 3])
def test_ray_list_lines_pass_through_their_origins_along_their_directions(ndim: int) -> None:
    rng = np.random.default_rng(0)
    origins, directions = rng.normal(0, 30, (40, ndim)), rng.normal(0, 1, (40, ndim))
    rg = ct.rays(origins, directions)
    art = drawn(rg.plot(rays=[0, 7, 39]))
    assert set(art) == {"line 0", "line 7", "line 39"}
    for i in (0, 7, 39):
        seg = one(art, f"line {i}")
        d = directions[i] / np.linalg.norm(directions[i])
        step = (seg[1] - seg[0]) / np.linalg.norm(seg[1] - seg[0])
        np.testing.assert_allclose(np.abs(step @ d), 1.0, atol=1e-12)  # along the direction
        off = origins[i] - seg[0]
        np.testing.assert_allclose(off - (off @ d) * d, 0.0, atol=1e-9)  # through the origin
    assert len(drawn(rg.plot())) == 24


def test_plot_refuses_mismatched_axes_volumes_and_views() -> None:
    pg3 = ct.cone(ANGLES, (8, 8), 1.0, 60.0, 100.0)
    with pytest.raises(ValueError, match="3D axes"):
        pg3.plot(ax=plt.figure().add_subplot())
    with pytest.raises(ValueError, match="2D axes"):
        ct.fan(ANGLES, 8, 1.0, 60.0, 100.0).plot(ax=plt.figure().add_subplot(projection="3d"))
    with pytest.raises(ValueError, match="volume is 2D but the geometry is 3D"):
        pg3.plot(ct.VolumeGeometry((8, 8)))
    with pytest.raises(ValueError, match="index 24 is out of range for 24"):
        pg3.plot(views=[1, 24])
    with pytest.raises(ValueError, match=">= 1"):
        pg3.plot(views=0)


def test_plot_draws_on_the_given_axes() -> None:
    fig = plt.figure()
    ax = fig.add_subplot(1, 2, 2, projection="3d")
    assert ct.cone(ANGLES, (8, 8), 1.0, 60.0, 100.0).plot(ax=ax) is ax
    assert ax.figure is fig and len(ax.get_lines()) > 0


def test_info_plot_writes_a_picture_and_refuses_to_overwrite(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "geometry.png"
    assert main(["info", "shepp_logan_2d", "--plot", str(out)]) == 0
    first = out.read_bytes()
    assert first.startswith(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in tmp_path.iterdir()] == ["geometry.png"]  # no temporary file left beside it
    capsys.readouterr()
    assert main(["info", "shepp_logan_2d", "--plot", str(out), "--views", "2"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert out.read_bytes() == first
    assert main(["info", "shepp_logan_2d", "--plot", str(out), "--views", "2", "--force"]) == 0
    assert out.read_bytes() != first  # fewer views drawn
    assert main(["info", "--plot", str(tmp_path / "x.png")]) == 2
    assert "name a scene" in capsys.readouterr().err
    assert main(["info", "shepp_logan_2d", "--plot", str(tmp_path / "g.xyz")]) == 2
    captured = capsys.readouterr()
    assert "cannot write .xyz pictures" in captured.err and not captured.out  # refused before any output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["geometry.png"]
