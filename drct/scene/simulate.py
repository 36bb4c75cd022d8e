"""Scene simulation: object line integrals → source/detector physics (:mod:`drct.physics`) → projections.

This module is the one place where scenes call the physics.

Example:
    >>> import drct as ct
    >>> scene = ct.load_scene("scenes/shepp_logan_2d.toml", scale=0.25)
    >>> readings = ct.scene.expected_readings(scene)  # noise-free, differentiable
    >>> tuple(readings.shape) == scene.projection_geometry().shape
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import drjit as dr
import numpy as np
from tqdm.auto import tqdm

from ..backend import types
from ..geometry.factories import from_vectors
from ..geometry.projection import ProjectionGeometry
from ..geometry.volume import VolumeGeometry
from ..physics import expected_readings as physics_readings
from ..physics import flat_field, log_transform, simulate_counts, transmitted
from ..physics.forward import line_integrals
from .geometry import det_arg

if TYPE_CHECKING:
    from .scene import Scene


class Simulation:
    """The result of :meth:`Scene.simulate` (numpy arrays of shape ``pg.shape`` unless noted).

    Attributes:
        line_integrals: the clean line integrals ``Σ μ L`` (float32).
        projections: what a scanner delivers after flat/dark correction and the log transform (float32);
            equal to ``line_integrals`` for an ideal detector and a monochromatic source.
        readings: the detector readings (digital units), or None for an ideal detector.
        flat, dark: the flat and dark fields the projections were corrected with (None if ideal).
        geometry: the exact projection geometry (misalignment applied; numpy vectors).
        volume: the scene's reconstruction grid, or None.
        seed: the noise seed used.

    Example:
        >>> import drct as ct
        >>> sim = ct.load_scene("shepp_logan_2d", scale=0.25).simulate(seed=0)  # a Simulation
        >>> sim.projections.shape, sim.line_integrals.shape, sim.readings is not None, sim.seed
        ((90, 80), (90, 80), True, 0)
    """

    def __init__(
        self,
        line_integrals: np.ndarray,
        projections: np.ndarray,
        readings: np.ndarray | None,
        flat: Any,
        dark: Any,
        geometry: ProjectionGeometry,
        volume: VolumeGeometry | None,
        seed: int | None,
    ) -> None:
        self.line_integrals, self.projections, self.readings = line_integrals, projections, readings
        self.flat, self.dark, self.geometry, self.volume, self.seed = flat, dark, geometry, volume, seed

    def __repr__(self) -> str:
        return f"Simulation(projections {self.projections.shape}, seed={self.seed})"


def _spectrum(scene: Scene, paths: Mapping[Any, Any]) -> Any:
    return scene.source.spectrum() if any(k is not None for k in paths) else None


def expected_readings(scene: Scene, backend: str | None = None) -> Any:
    """Noise-free detector readings of ``scene`` (digital units) as a Dr.Jit float64 tensor of shape ``pg.shape``,
    differentiable w.r.t. the scene's Dr.Jit parameters (object, geometry) through the polychromatic physics.

    Example:
        >>> import drct as ct
        >>> scene = ct.load_scene("shepp_logan_2d", scale=0.25)
        >>> r = ct.scene.expected_readings(scene)  # noise-free, differentiable in the scene's Dr.Jit parameters
        >>> type(r).__name__, r.shape
        ('TensorXf64', (90, 80))
    """
    pg = scene.projection_geometry()
    t = types("float64", backend)
    paths = {k: t.Tensor(v, pg.shape) for k, v in scene._paths(pg, backend, False).items()}
    if not paths:
        paths = {None: dr_zeros(t, pg.shape)}
    det = scene.detector.physics(scene.source.params["photons"], _pixels(pg))
    return physics_readings(paths, _spectrum(scene, paths), det, det_ndim=_det_ndim(pg))


def dr_zeros(t: Any, shape: tuple[int, ...]) -> Any:
    return t.Tensor(dr.zeros(t.Float64, int(np.prod(shape))), shape)


def simulate(scene: Scene, seed: int | None = 0, backend: str | None = None, progress: bool = False) -> Simulation:
    """See :meth:`Scene.simulate`."""
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (1 << 63))  # type: ignore[operator]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    with tqdm(total=3, desc=f"simulating {scene.name}", disable=not progress) as bar:
        pg = scene.projection_geometry()
        raw = scene._paths(pg, backend, progress)
        paths = {k: np.asarray(v.numpy(), dtype=np.float64).reshape(pg.shape) for k, v in raw.items()}
        if not paths:
            paths = {None: np.zeros(pg.shape)}
        bar.update()
        energy = scene.source.reference_energy if any(k is not None for k in paths) else 0.0
        clean = line_integrals(paths, energy)
        bar.update()
        spectrum = _spectrum(scene, paths)
        readings = flat = dark = None
        if not scene.detector.noisy:
            projections = clean if spectrum is None else -np.log(transmitted(paths, spectrum, 1.0))
        else:
            det = scene.detector.physics(scene.source.params["photons"], _pixels(pg))
            readings = simulate_counts(paths, spectrum, det, seed=int(seed), det_ndim=_det_ndim(pg))
            frames = int(getattr(scene.detector, "flat_frames", 0))
            flat = flat_field(det, _pixels(pg), seed=int(seed) + 1, frames=frames) if frames else flat_field(det)
            dark = det.dark_array()
            brightest = float(np.max(flat_field(det)))
            if det.max_reading is not None and brightest > det.max_reading:
                warnings.warn(
                    f"scene {scene.name!r}: the flat field ({brightest:g} units) exceeds the detector's maximum "
                    f"reading {det.max_reading} (bits = {det.bits}): the readings saturate; raise gain or bits",
                    stacklevel=3,
                )
            projections = log_transform(readings, flat=flat, dark=dark)
        bar.update()
    exact = pg if not pg.differentiable else _detached(pg)
    return Simulation(
        clean.astype(np.float32),
        np.asarray(projections, dtype=np.float32),
        readings,
        flat,
        dark,
        exact,
        scene.volume,
        int(seed),
    )


def _pixels(pg: Any) -> tuple[int, ...]:
    """The shape of one view's readings: the detector's (rows, cols) or (cols,); all rays for a ray list."""
    return tuple(pg.det_shape) if hasattr(pg, "det_shape") else tuple(pg.shape)


def _det_ndim(pg: Any) -> int:
    """Detector axes of the sinogram (for the blur): 2 in 3D, 1 in 2D and for ray lists."""
    return len(pg.det_shape) if hasattr(pg, "det_shape") else 1


def _detached(pg: Any) -> Any:
    return from_vectors(pg.to_vectors(), det_arg(pg.det_shape), pg.beam, pg.curved)
