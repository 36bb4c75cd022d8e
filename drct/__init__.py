"""drct: differentiable X-ray transforms for computed tomography on Dr.Jit.

``import drct`` needs neither torch nor Mitsuba: the torch layers (:mod:`drct.torch`, ``pip install
"drct[torch]"``) and triangle meshes (``drct[meshes]``) import them where they are used (:mod:`drct.extras`).

Example:
    >>> import numpy as np, drct as ct
    >>> vg = ct.VolumeGeometry((128, 128))
    >>> pg = ct.parallel(np.linspace(0, np.pi, 180, endpoint=False), 192)
    >>> A = ct.Projector(vg, pg, basis="bspline2")
    >>> y = A(ct.phantoms.shepp_logan(vg))
    >>> y.shape
    (180, 192)
    >>> ct.__version__  # doctest: +ELLIPSIS
    '0...'
"""

from importlib.metadata import PackageNotFoundError, version

from .backend import BackendError as BackendError  # first of all: it picks a libLLVM before Dr.Jit loads one

# isort: split

from . import emission as emission
from . import formats as formats  # h5py and pydicom are imported only when a reader needs them
from . import pet as pet
from . import phantoms as phantoms
from . import physics as physics
from . import recon as recon
from . import scene as scene  # Mitsuba is imported only when a scene has a mesh
from . import scenes as scenes  # the bundled scene files: ct.scenes.names(), ct.scenes.path(name)
from .backend import get_backend as get_backend
from .backend import set_backend as set_backend
from .calibration import CalibrationResult as CalibrationResult
from .calibration import calibrate as calibrate
from .concurrency import deterministic as deterministic
from .concurrency import get_deterministic as get_deterministic
from .concurrency import set_deterministic as set_deterministic
from .emission import spect as spect
from .errors import MemoryBudgetError as MemoryBudgetError
from .errors import NonFiniteError as NonFiniteError
from .extras import MissingExtraError as MissingExtraError
from .geometry import ProjectionGeometry as ProjectionGeometry
from .geometry import RayGeometry as RayGeometry
from .geometry import VolumeGeometry as VolumeGeometry
from .geometry import cone as cone
from .geometry import fan as fan
from .geometry import from_vectors as from_vectors
from .geometry import helix as helix
from .geometry import parallel as parallel
from .geometry import rays as rays
from .geometry.astra import from_astra as from_astra
from .geometry.astra import to_astra as to_astra
from .geometry.files import load_geometry as load_geometry
from .geometry.files import save_geometry as save_geometry
from .projector import Projector as Projector
from .recon import fbp as fbp
from .recon import fdk as fdk
from .scene import Scene as Scene
from .scene import SceneError as SceneError
from .scene import load_scene as load_scene

try:
    __version__ = version("drct")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+local"

__all__ = [
    "BackendError",
    "CalibrationResult",
    "MemoryBudgetError",
    "MissingExtraError",
    "NonFiniteError",
    "ProjectionGeometry",
    "Projector",
    "RayGeometry",
    "Scene",
    "SceneError",
    "VolumeGeometry",
    "__version__",
    "calibrate",
    "cone",
    "deterministic",
    "emission",
    "fan",
    "fbp",
    "fdk",
    "formats",
    "from_astra",
    "from_vectors",
    "get_backend",
    "get_deterministic",
    "helix",
    "load_geometry",
    "load_scene",
    "parallel",
    "pet",
    "phantoms",
    "physics",
    "rays",
    "recon",
    "save_geometry",
    "scene",
    "scenes",
    "set_backend",
    "set_deterministic",
    "spect",
    "to_astra",
]
