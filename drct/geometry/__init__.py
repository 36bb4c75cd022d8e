"""Volume and projection geometries."""

from .factories import cone as cone
from .factories import fan as fan
from .factories import from_vectors as from_vectors
from .factories import helix as helix
from .factories import parallel as parallel
from .factories import rays as rays
from .projection import ProjectionGeometry as ProjectionGeometry
from .projection import RayGeometry as RayGeometry
from .volume import VolumeGeometry as VolumeGeometry
