"""Acquisition physics: X-ray spectra, materials, detector response and noise, the log transform.

Example:
    >>> import numpy as np
    >>> from drct import physics
    >>> det = physics.Detector(i0=1e4, gain=1.0, sigma=3.0, bits=16)
    >>> paths = {"water": np.full((2, 8), 20.0)}  # 20 mm of water along every ray
    >>> r = physics.simulate_counts(paths, physics.Spectrum.tube(80.0, {"aluminium": 2.0}), det, seed=0)
    >>> y = physics.log_transform(r, flat=physics.flat_field(det))
    >>> bool(0.5 < y.mean() < 0.8)  # beam hardening: above the 0.55 of 39 keV photons
    True
"""

from .detector import Detector as Detector
from .forward import blur as blur
from .forward import dark_field as dark_field
from .forward import expected_counts as expected_counts
from .forward import expected_readings as expected_readings
from .forward import flat_field as flat_field
from .forward import log_transform as log_transform
from .forward import noise_factor as noise_factor
from .forward import sample_counts as sample_counts
from .forward import simulate_counts as simulate_counts
from .forward import transmitted as transmitted
from .materials import Material as Material
from .materials import get_material as get_material
from .materials import material_names as material_names
from .materials import register_material as register_material
from .spectrum import Spectrum as Spectrum

__all__ = [
    "Detector",
    "Material",
    "Spectrum",
    "blur",
    "dark_field",
    "expected_counts",
    "expected_readings",
    "flat_field",
    "get_material",
    "log_transform",
    "material_names",
    "noise_factor",
    "register_material",
    "sample_counts",
    "simulate_counts",
    "transmitted",
]
