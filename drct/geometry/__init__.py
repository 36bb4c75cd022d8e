"""Volume and projection geometries.

Example:
    >>> import numpy as np
    >>> from drct.geometry import VolumeGeometry, parallel
    >>> VolumeGeometry((64, 64), voxel_size=0.5).shape
    (64, 64)
    >>> parallel(np.linspace(0, np.pi, 90, endpoint=False), 96, 0.5)
    ProjectionGeometry(parallel 2D, 90 views, det_shape=(96,))
"""

from .factories import cone as cone
from .factories import fan as fan
from .factories import from_vectors as from_vectors
from .factories import helix as helix
from .factories import parallel as parallel
from .factories import rays as rays
from .projection import ProjectionGeometry as ProjectionGeometry
from .projection import RayGeometry as RayGeometry
from .volume import VolumeGeometry as VolumeGeometry
