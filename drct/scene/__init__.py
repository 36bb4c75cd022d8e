"""Scene files: TOML descriptions of a scan (geometry, objects, source, detector) and their simulation.

``ct.load_scene(path)`` reads one into a :class:`Scene`; ``scene.simulate(seed)`` gives clean line integrals,
noisy projections and the exact geometry; ``scene.save(path)`` writes it back; :func:`traverse` lists its
differentiable parameters by flat key. New object, geometry, source and detector kinds plug in with
:func:`register`. The format is described in ``scenes/README.md``.

Example:
    >>> import drct as ct
    >>> scene = ct.load_scene("scenes/shepp_logan_2d.toml", scale=0.25)
    >>> [key for key in ct.scene.traverse(scene) if key.startswith("object.")]
    ['object.phantom.center', 'object.phantom.radius', 'object.phantom.mu']
"""

from . import detectors, geometry, mesh_objects, objects, sources, volumes  # noqa: F401  (the kinds register themselves)
from .errors import SceneError as SceneError
from .files import load_scene as load_scene
from .files import parse_scene as parse_scene
from .parameters import SceneParameters as SceneParameters
from .registry import kinds as kinds
from .registry import register as register
from .scene import Scene as Scene
from .simulate import Simulation as Simulation
from .simulate import expected_readings as expected_readings
from .traverse import traverse as traverse
from .volfile import read_vol as read_vol
from .volfile import write_vol as write_vol
from .writer import save_scene as save_scene

__all__ = [
    "Scene",
    "SceneError",
    "SceneParameters",
    "Simulation",
    "expected_readings",
    "kinds",
    "load_scene",
    "parse_scene",
    "read_vol",
    "register",
    "save_scene",
    "traverse",
    "write_vol",
]
