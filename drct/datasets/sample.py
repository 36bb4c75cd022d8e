"""One sample of a simulated dataset: the scene with drawn parameter values, simulated with a derived seed.

Sample ``i`` of a run with master seed ``S`` uses ``numpy.random.SeedSequence(S, spawn_key=(i,))`` (the ``i``-th
child of ``SeedSequence(S).spawn``), split into two: one child seeds the parameter draws, the other gives the
noise seed passed to :meth:`drct.scene.Scene.simulate`. A sample therefore depends only on the recipe, ``S`` and
``i`` — not on which process computes it, in what order, or how often it was retried.

The phantom is the attenuation (1/mm) at the source's reference energy, voxel-averaged on the scene's
``[volume]`` grid (:func:`drct.phantoms.rasterize`); scenes whose objects are all ellipsoids or Shepp-Logan
phantoms have one. A scene with volume or mesh objects, or without a ``[volume]``, must be generated with
``phantom=False``.

Example:
    >>> from drct.datasets.sample import Recipe, simulate_sample
    >>> recipe = Recipe.from_file("scenes/shepp_logan_2d.toml", ["object.*.mu=uniform(0.01,0.03)"], seed=7, scale=0.1)
    >>> a, b = simulate_sample(recipe, 3), simulate_sample(recipe, 3)
    >>> a["projections"].shape, bool((a["projections"] == b["projections"]).all())
    ((36, 32), True)
    >>> a["phantom"].shape, a["parameters"].shape
    ((26, 26), (1,))
"""

from __future__ import annotations

import functools
import hashlib
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..geometry.projection import ProjectionGeometry
from ..phantoms import Ellipsoid, rasterize, shepp_logan_ellipses
from ..physics import get_material
from ..scene import Scene, load_scene, traverse
from ..scene.objects import Ellipsoid as EllipsoidObject
from ..scene.objects import SheppLogan, plain
from .vary import Variations

SUPERSAMPLE = 2  # phantom sample lines per voxel and axis (see drct.phantoms.rasterize)
FAULT_ENV = "DRCT_GENERATE_FAULT"  # fault injection for tests: "INDEX:MARKER_FILE" kills sample INDEX's first try


@dataclass(frozen=True)
class Recipe:
    """Everything a worker needs to make any sample: the scene file (and its SHA-256, checked on every load),
    how it was loaded, the variations, the master seed and whether to rasterize a phantom.

    Example:
        >>> from drct.datasets import Recipe
        >>> vary = ["object.*.mu=uniform(0.01,0.03)"]
        >>> recipe = Recipe.from_file("scenes/shepp_logan_2d.toml", vary, seed=1, scale=0.1)
        >>> recipe.vary, recipe.seed, len(recipe.digest)  # the digest is the scene file's SHA-256
        (('object.*.mu=uniform(0.01,0.03)',), 1, 64)
    """

    scene: str
    digest: str
    vary: tuple[str, ...] = ()
    seed: int = 0
    scale: float = 1.0
    overrides: tuple[tuple[str, Any], ...] = field(default=(), hash=False)  # TOML values: lists, tables
    allow_outside: bool = False
    phantom: bool = True
    fault: str = field(default="", compare=False)

    @classmethod
    def from_file(
        cls,
        scene: str | os.PathLike[str],
        vary: list[str] | tuple[str, ...] = (),
        seed: int = 0,
        scale: float = 1.0,
        overrides: dict[str, Any] | None = None,
        allow_outside: bool = False,
        phantom: bool = True,
    ) -> Recipe:
        """A recipe for the scene file ``scene`` (read once here for its digest), validated by loading it."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        path = os.path.realpath(scene)
        digest = _digest(path) if os.path.isfile(path) else ""
        recipe = cls(
            path,
            digest,
            tuple(vary),
            int(seed),
            float(scale),
            tuple(sorted((overrides or {}).items())),
            allow_outside,
            phantom,
            os.environ.get(FAULT_ENV, ""),
        )
        base = recipe.load()  # the scene, the variations and the phantom are checked before any sample is made
        if phantom:
            check_phantom(base)
        return recipe

    def load(self) -> Scene:
        """The scene as the recipe describes it, before variations; refuses a scene file changed since."""
        scene = load_scene(self.scene, dict(self.overrides), self.scale, self.allow_outside)
        if self.digest and _digest(self.scene) != self.digest:
            raise ValueError(f"the scene file {self.scene} changed while the dataset was being generated")
        Variations.parse(self.vary, scene)
        return scene


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=4)
def _base(recipe: Recipe) -> tuple[Scene, Variations]:
    """The recipe's scene and variations, loaded once per process."""
    scene = recipe.load()
    return scene, Variations.parse(recipe.vary, scene)


def sample_seeds(seed: int, index: int) -> tuple[np.random.SeedSequence, int]:
    """The parameter seed sequence and the noise seed of sample ``index`` (see the module docstring).

    Example:
        >>> import numpy as np
        >>> from drct.datasets.sample import sample_seeds
        >>> ss, noise = sample_seeds(7, 2)
        >>> ss.spawn_key, noise == sample_seeds(7, 2)[1], noise != sample_seeds(7, 3)[1]
        ((2, 0), True, True)
    """
    params, noise = np.random.SeedSequence(seed, spawn_key=(index,)).spawn(2)
    return params, int(noise.generate_state(1, np.uint32)[0])


def simulate_sample(recipe: Recipe, index: int) -> dict[str, Any]:
    """Sample ``index`` of ``recipe``: a dict of numpy arrays ``phantom`` (if the recipe has one),
    ``projections``, ``line_integrals``, ``geometry`` (the exact geometry's vector rows), ``seed`` (the noise
    seed) and ``parameters`` (the drawn values, flat as :meth:`Variations.columns`).

    Example:
        >>> import numpy as np
        >>> from drct.datasets import Recipe, simulate_sample
        >>> vary = ["object.*.mu=uniform(0.01,0.03)"]
        >>> recipe = Recipe.from_file("scenes/shepp_logan_2d.toml", vary, seed=1, scale=0.1)
        >>> sample = simulate_sample(recipe, 0)
        >>> sorted(sample), sample["projections"].shape
        (['geometry', 'line_integrals', 'parameters', 'phantom', 'projections', 'seed'], (36, 32))
        >>> again = simulate_sample(recipe, 0)  # the index alone fixes the sample
        >>> bool(np.array_equal(sample["projections"], again["projections"]))
        True
    """
    _inject_fault(recipe.fault, index)
    base, variations = _base(recipe)
    scene = base.copy()
    param_ss, noise_seed = sample_seeds(recipe.seed, index)
    values = variations.draw(scene, np.random.default_rng(param_ss))
    params = traverse(scene)
    for key, value in values.items():
        params[key] = value
    try:
        sim = scene.simulate(seed=noise_seed)
        phantom = rasterize_scene(scene) if recipe.phantom else None
    except (ValueError, TypeError, ArithmeticError) as err:
        shown = ", ".join(f"{k}={np.round(v, 6).tolist()}" for k, v in values.items())
        raise ValueError(f"sample {index} ({shown or 'no variations'}): {err}") from err
    out = {
        "projections": np.ascontiguousarray(sim.projections, dtype=np.float32),
        "line_integrals": np.ascontiguousarray(sim.line_integrals, dtype=np.float32),
        "geometry": np.ascontiguousarray(sim.geometry.to_vectors(), dtype=np.float64),
        "seed": np.uint32(noise_seed),
        "parameters": variations.flatten(values),
    }
    if phantom is not None:
        out["phantom"] = phantom
    return out


def check_phantom(scene: Scene) -> None:
    """ValueError unless :func:`rasterize_scene` can make a phantom of ``scene``."""
    if scene.volume is None:
        raise ValueError(f"scene {scene.name!r} has no [volume] grid for the phantom; add one or generate without it")
    other = [o.name for o in scene.objects if not isinstance(o, (EllipsoidObject, SheppLogan))]
    if other:
        raise ValueError(
            f"scene {scene.name!r}: the objects {other} are not ellipsoids or Shepp-Logan phantoms, which are the "
            "kinds drct can voxelize; generate without the phantom (--no-phantom)"
        )
    if not isinstance(scene.nominal_geometry(), ProjectionGeometry):
        raise ValueError(f"scene {scene.name!r} is a ray list; generate without the phantom (--no-phantom)")


def rasterize_scene(scene: Scene) -> np.ndarray:
    """The scene's attenuation (1/mm) at the source's reference energy on its ``[volume]`` grid (float32):
    the sum of its objects' voxel averages, the analogue of the line integrals the simulation computes."""
    check_phantom(scene)
    vg = scene.volume
    assert vg is not None
    energy = scene.source.reference_energy
    items: list[Ellipsoid] = []
    for obj in scene.objects:
        weight = float(plain(obj.weight))
        if obj.material is not None:
            material = get_material(obj.material)
            weight *= float(material.mu(energy)[0]) / material.density
        center = np.asarray(plain(obj.params["center"]), dtype=np.float64)
        if isinstance(obj, SheppLogan):
            table = shepp_logan_ellipses(vg.ndim, float(plain(obj.params["radius"])), tuple(center[: vg.ndim].tolist()))
            items.extend(
                Ellipsoid(e.center, e.axes, e.mu * weight, e.angles[: 1 if vg.ndim == 2 else 3]) for e in table
            )
        else:
            assert isinstance(obj, EllipsoidObject)
            axes = np.asarray(plain(obj.params["axes"]), dtype=np.float64)
            items.append(Ellipsoid(center, axes, weight, obj.angles))
    return rasterize(items, vg, SUPERSAMPLE)


def _inject_fault(fault: str, index: int) -> None:
    """Kill this process (SIGKILL, as the OOM killer would) on sample ``INDEX``'s first attempt, for tests of
    the retries: the marker file records that the first attempt happened."""
    if not fault:
        return
    target, _, marker = fault.partition(":")
    if str(index) != target or not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return  # a retry: run normally
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
