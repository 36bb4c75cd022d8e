"""Pictures of a scan geometry, as tomosipo and TIGRE draw them: sources, detector outlines, a few rays, the volume.

:func:`plot_geometry` draws a :class:`~drct.geometry.ProjectionGeometry` (also
:meth:`ProjectionGeometry.plot <drct.geometry.ProjectionGeometry.plot>`) on 2D axes for 2D geometries and on
``mpl_toolkits`` 3D axes for 3D ones:

* the source path of all views (cone/fan beams; a helix shows as a helix), and a marker on each drawn view's source;
* each drawn view's detector outline — a segment or arc in 2D, a rectangle or a cylinder patch in 3D — through
  the outer edges of the edge pixels;
* each drawn view's central ray and corner rays (2D: the two edge rays): from the source to the detector, or, for
  parallel beams, a stretch of the line ending on the detector;
* the volume's box when a :class:`~drct.geometry.VolumeGeometry` is given.

:func:`plot_rays` draws a :class:`~drct.geometry.RayGeometry` (a few of its lines) and the volume's box.

Every artist has a ``gid`` saying what it is, so that programs (and the tests) can read the picture back:
``"sources"``, ``"source {view}"``, ``"detector {view}"``, ``"ray {view} centre"``, ``"ray {view} corner {k}"``,
``"line {ray}"`` and ``"volume"``. Coordinates are those of the geometry, in mm, points ``(x, y[, z])``.

Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, drct as ct
    >>> pg = ct.cone(np.linspace(0, 2 * np.pi, 90, endpoint=False), (32, 48), 1.0, 100.0, 150.0)
    >>> ax = pg.plot(vg=ct.VolumeGeometry((32, 32, 32), 1.0), views=[0, 30])
    >>> ax.name, sorted({a.get_gid().split()[0] for a in ax.get_lines()})
    ('3d', ['detector', 'ray', 'source', 'sources', 'volume'])
    >>> import os, tempfile
    >>> ax.figure.savefig(os.path.join(tempfile.mkdtemp(), "cone.png"))
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .detector import detector_frame
from .projection import ProjectionGeometry, RayGeometry, host_rows
from .volume import VolumeGeometry

if TYPE_CHECKING:
    from matplotlib.axes import Axes

DEFAULT_VIEWS = 4  # views drawn when none are named: views 0, N/4, N/2, 3N/4 (4 directions of a full circle)
DEFAULT_LINES = 24  # lines of a ray list drawn when none are named
ARC_POINTS = 33  # points of a curved detector's edge

COLORS = {"source": "tab:red", "detector": "tab:blue", "ray": "tab:orange", "volume": "tab:green", "line": "tab:purple"}


def _rows(value: Any) -> np.ndarray:
    return np.asarray(host_rows(value), dtype=np.float64)


def _axes(ax: Axes | None, ndim: int) -> Axes:
    """``ax`` checked against the geometry's dimension, or new axes (3D ones for 3D) on a new pyplot figure."""
    if ax is None:
        import matplotlib.pyplot as plt

        fig = plt.figure()
        return fig.add_subplot(projection="3d") if ndim == 3 else fig.add_subplot()
    if (ax.name == "3d") != (ndim == 3):
        want = "3D axes (fig.add_subplot(projection='3d'))" if ndim == 3 else "2D axes"
        raise ValueError(f"a {ndim}D geometry is drawn on {want}, got axes of kind {ax.name!r}")
    return ax


def _line(ax: Axes, points: np.ndarray, gid: str, kind: str, label: str | None = None, **style: Any) -> None:
    """One polyline through ``points`` ``(n, ndim)``, tagged with ``gid``."""
    style.setdefault("color", COLORS[kind])
    (artist,) = ax.plot(*points.T, label=label, **style)
    artist.set_gid(gid)


def _view_indices(views: int | Sequence[int] | np.ndarray | None, count: int, default: int) -> np.ndarray:
    """The indices to draw: None (``default`` evenly spread), a number of evenly spread ones, or explicit ones."""
    if views is None or isinstance(views, (int, np.integer)):
        n = default if views is None else int(views)
        if n < 1:
            raise ValueError(f"the number of views/rays to draw must be >= 1, got {n}")
        n = min(n, count)  # strides of count / n: a full circle (or helix) shows n distinct angles
        return np.arange(n, dtype=np.int64) * count // n
    idx = np.asarray(views).reshape(-1)
    if idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"views must be a count or a non-empty sequence of integer indices, got {views!r}")
    bad = (idx < -count) | (idx >= count)
    if np.any(bad):
        raise ValueError(f"index {int(idx[bad][0])} is out of range for {count} views/rays")
    return np.where(idx < 0, idx + count, idx)


def _box_edges(vg: VolumeGeometry) -> list[np.ndarray]:
    """The edges of the volume's box, as ``(2, ndim)`` point pairs (4 in 2D, 12 in 3D)."""
    lo, hi = np.array(vg.extent_min), np.array(vg.extent_max)
    corners = np.array(list(itertools.product(*zip(lo, hi, strict=True))))
    return [
        corners[[a, b]]
        for a, b in itertools.combinations(range(len(corners)), 2)
        if np.count_nonzero(corners[a] != corners[b]) == 1
    ]


def _check_volume(vg: VolumeGeometry | None, ndim: int) -> None:
    if vg is not None and vg.ndim != ndim:
        raise ValueError(f"the volume is {vg.ndim}D but the geometry is {ndim}D")


def _draw_volume(ax: Axes, vg: VolumeGeometry | None) -> None:
    if vg is None:
        return
    for i, edge in enumerate(_box_edges(vg)):
        _line(ax, edge, "volume", "volume", label="volume" if i == 0 else None)


def _finish(ax: Axes, ndim: int) -> Axes:
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    if ndim == 3:
        ax.set_zlabel("z (mm)")  # type: ignore[attr-defined]
    ax.set_aspect("equal")
    ax.legend(loc="best", fontsize="small")
    return ax


def _scene_radius(points: list[np.ndarray], vg: VolumeGeometry | None) -> tuple[np.ndarray, float]:
    """A centre and radius that hold ``points`` and the volume: how long to draw lines that have no ends."""
    pts = np.concatenate([p.reshape(-1, p.shape[-1]) for p in points])
    if vg is not None:
        pts = np.concatenate([pts, np.array([vg.extent_min, vg.extent_max])])
    centre = np.array(vg.center) if vg is not None else pts.mean(axis=0)
    radius = float(np.max(np.linalg.norm(pts - centre, axis=1)))
    return centre, radius if radius > 0 else 1.0


def detector_points(pg: ProjectionGeometry, view: int, u: np.ndarray, v: np.ndarray | float) -> np.ndarray:
    """Points ``(n, ndim)`` of view ``view``'s detector at pixel offsets ``u`` (columns) and ``v`` (rows) from its
    centre (flat or curved, see :mod:`drct.geometry.detector`).

    Example:
        >>> import numpy as np, drct as ct
        >>> pg = ct.fan([0.0], 8, 1.0, 50.0, 100.0)
        >>> detector_points(pg, 0, np.array([-4.0, 4.0]), 0.0).round(9).tolist()
        [[-4.0, 50.0], [4.0, 50.0]]
    """
    det_v = None if pg.det_v is None else list(_rows(pg.det_v)[view])
    frame = detector_frame(
        list(_rows(pg.src)[view]), list(_rows(pg.det)[view]), list(_rows(pg.det_u)[view]), det_v, pg.curved
    )
    pos, _ = frame.pixel(np.asarray(u, dtype=np.float64), v if pg.ndim == 3 else 0.0)
    return np.stack(np.broadcast_arrays(*pos), axis=-1)


def _outline(pg: ProjectionGeometry, view: int) -> np.ndarray:
    """The closed outline of a view's detector (2D: its segment or arc), through the outer pixel edges."""
    half_u = pg.det_shape[-1] / 2
    u = np.linspace(-half_u, half_u, ARC_POINTS if pg.curved else 2)
    if pg.ndim == 2:
        return detector_points(pg, view, u, 0.0)
    half_v = pg.det_shape[0] / 2
    return np.concatenate(
        [
            detector_points(pg, view, u, -half_v),
            detector_points(pg, view, u[::-1], half_v),
            detector_points(pg, view, u[:1], -half_v),
        ]
    )


def _corners(pg: ProjectionGeometry, view: int) -> np.ndarray:
    """The detector's corners (2D: its two ends), the outer edges of the corner pixels."""
    half_u = pg.det_shape[-1] / 2
    if pg.ndim == 2:
        return detector_points(pg, view, np.array([-half_u, half_u]), 0.0)
    half_v = pg.det_shape[0] / 2
    u = np.array([-half_u, half_u, half_u, -half_u])
    return np.concatenate([detector_points(pg, view, u[i : i + 1], s * half_v) for i, s in enumerate((-1, -1, 1, 1))])


def plot_geometry(
    pg: ProjectionGeometry,
    vg: VolumeGeometry | None = None,
    views: int | Sequence[int] | np.ndarray | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Draw a projection geometry: source path and sources, detector outlines and rays of a few views, volume box.

    Args:
        pg: the geometry (numpy or Dr.Jit vectors; gradients are not touched).
        vg: a volume whose box is drawn, or None.
        views: which views get a detector, source marker and rays: None (4 evenly spread), a count (evenly
            spread), or view indices.
        ax: matplotlib axes to draw on (3D axes, ``projection="3d"``, for a 3D geometry); None: a new figure.

    Returns:
        The axes drawn on (``ax.figure`` is the figure). Artists carry gids, see :mod:`drct.geometry.plot`.

    Raises:
        ValueError: axes of the wrong dimension, a volume of the wrong dimension, or a view out of range.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import numpy as np, drct as ct
        >>> ax = ct.fan(np.linspace(0, 2 * np.pi, 60), 64, 1.0, 100.0, 200.0, curved=True).plot(views=2)
        >>> [line.get_gid() for line in ax.get_lines()][:4]
        ['sources', 'source 0', 'detector 0', 'ray 0 centre']
    """
    ndim = pg.ndim
    _check_volume(vg, ndim)
    idx = _view_indices(views, pg.num_views, DEFAULT_VIEWS)
    ax = _axes(ax, ndim)
    src, det = _rows(pg.src), _rows(pg.det)
    outlines = {int(i): _outline(pg, int(i)) for i in idx}
    _, radius = _scene_radius([det, *outlines.values()], vg)
    if pg.beam == "cone":
        _line(ax, src, "sources", "source", label="source path", linewidth=0.8, alpha=0.6)
    for n, i in enumerate(outlines):
        first = n == 0
        if pg.beam == "cone":
            _line(ax, src[i : i + 1], f"source {i}", "source", "source" if first else None, marker="o", linestyle="")
        _line(ax, outlines[i], f"detector {i}", "detector", "detector" if first else None, linewidth=1.5)
        centre = detector_points(pg, i, np.zeros(1), 0.0)[0]
        targets = [("centre", centre), *((f"corner {k}", c) for k, c in enumerate(_corners(pg, i)))]
        for k, (name, point) in enumerate(targets):
            if pg.beam == "cone":
                start = src[i]
            else:  # a parallel ray has no start: draw the stretch that crosses the scene, ending on the detector
                start = point - 2 * radius * src[i] / np.linalg.norm(src[i])
            style = {"linewidth": 1.0 if name == "centre" else 0.6, "linestyle": "-" if name == "centre" else "--"}
            _line(ax, np.stack([start, point]), f"ray {i} {name}", "ray", "rays" if first and k == 0 else None, **style)
    _draw_volume(ax, vg)
    return _finish(ax, ndim)


def plot_rays(
    rg: RayGeometry,
    vg: VolumeGeometry | None = None,
    rays: int | Sequence[int] | np.ndarray | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Draw a few lines of a ray list (each as the stretch that crosses the scene, centred on the point of the
    line nearest the scene's centre) and the volume box.

    Args:
        rg: the ray list.
        vg: a volume whose box is drawn, or None.
        rays: None (24 evenly spread), a count, or ray indices.
        ax: matplotlib axes (3D for 3D rays); None: a new figure.

    Returns:
        The axes drawn on; line ``i`` has gid ``"line {i}"``.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import drct as ct
        >>> ax = ct.rays([[0.0, -50.0], [-50.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]).plot()
        >>> [line.get_gid() for line in ax.get_lines()]
        ['line 0', 'line 1']
    """
    ndim = rg.ndim
    _check_volume(vg, ndim)
    idx = _view_indices(rays, rg.num_rays, DEFAULT_LINES)
    ax = _axes(ax, ndim)
    origins = _rows(rg.origins)
    directions = _rows(rg.directions)
    directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    centre, radius = _scene_radius([origins[idx]], vg)
    for n, i in enumerate(int(i) for i in idx):
        middle = origins[i] + np.dot(centre - origins[i], directions[i]) * directions[i]
        ends = np.stack([middle - radius * directions[i], middle + radius * directions[i]])
        _line(ax, ends, f"line {i}", "line", "lines" if n == 0 else None, linewidth=0.7)
    _draw_volume(ax, vg)
    return _finish(ax, ndim)
