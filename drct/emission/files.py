"""A SPECT acquisition as a JSON file: the camera's views, the volume grid, the collimator and the counts'
scale, with the attenuation map beside it (``.npy``): what ``drct reconstruct --method osem`` needs.

Example:
    >>> import json, tempfile, numpy as np, drct as ct
    >>> from pathlib import Path
    >>> from drct.emission.files import load_spect, save_spect
    >>> vg = ct.VolumeGeometry((4, 8, 8), voxel_size=4.0)
    >>> g = ct.spect(np.linspace(0, 2 * np.pi, 6, endpoint=False), 60.0, (4, 8), 4.0)
    >>> folder = Path(tempfile.mkdtemp())
    >>> path = save_spect(folder / "spect.json", g, vg, ct.emission.Collimator.lehr(), np.zeros(vg.shape), 2.5)
    >>> acq = load_spect(path)
    >>> acq.geometry.shape, acq.sensitivity, acq.mu.shape
    ((6, 4, 8), 2.5, (4, 8, 8))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import require_finite
from ..geometry.volume import VolumeGeometry
from ..io import read_array, write_atomically
from ..pet.files import has_format, read_format
from .collimator import Collimator
from .geometry import SpectGeometry, spect

FORMAT = "drct.spect/1"


@dataclass
class SpectAcquisition:
    """What a SPECT scan needs besides its counts.

    Attributes:
        geometry: the camera's views.
        volume: the reconstruction grid.
        collimator: the depth-dependent response (``None``: no blur).
        mu: the attenuation map on ``volume`` (1/mm) or ``None``.
        sensitivity: expected counts per unit of ``A f`` (``counts ≈ Poisson(sensitivity · A f + additive)``).
    """

    geometry: SpectGeometry
    volume: VolumeGeometry
    collimator: Collimator | None
    mu: np.ndarray | None
    sensitivity: float

    def projector(self, dtype: str = "float32") -> Any:
        """The :class:`~drct.emission.SPECTProjector` of this acquisition (attenuation and response included)."""
        from .projector import SPECTProjector

        return SPECTProjector(self.volume, self.geometry, mu=self.mu, collimator=self.collimator, dtype=dtype)


def save_spect(
    path: str | Path,
    geometry: SpectGeometry,
    volume: VolumeGeometry,
    collimator: Collimator | None,
    mu: np.ndarray | None,
    sensitivity: float = 1.0,
    mu_name: str | None = None,
) -> Path:
    """Write ``path`` (JSON) and, with a μ-map, ``mu_name`` (default ``<stem>_mu.npy``) beside it (both
    atomically); returns ``path``."""
    path = Path(path)
    s = float(sensitivity)
    if not np.isfinite(s) or s <= 0:
        raise ValueError(f"save_spect: sensitivity must be a finite number > 0, got {sensitivity!r}")
    data: dict[str, Any] = {
        "format": FORMAT,
        "angles": geometry.angles.tolist(),
        "radius": geometry.radius.tolist(),
        "offset": geometry.offset.tolist(),
        "det_shape": list(geometry.det_shape),
        "det_spacing": list(geometry.det_spacing),
        "volume": {"shape": list(volume.shape), "voxel_size": list(volume.voxel_size), "center": list(volume.center)},
        "collimator": None if collimator is None else _collimator_table(collimator),
        "sensitivity": s,
        "mu": None,
    }
    if mu is not None:
        arr = np.asarray(mu, dtype=np.float32)
        if arr.shape != volume.shape:
            raise ValueError(f"save_spect: mu has shape {arr.shape}, the volume {volume.shape}")
        name = mu_name or f"{path.stem}_mu.npy"
        if Path(name).name != name or not name.endswith(".npy"):
            raise ValueError(f"save_spect: mu_name must be a plain .npy file name, got {name!r}")
        write_atomically(path.parent / name, lambda tmp: np.save(tmp, arr))
        data["mu"] = name
    text = json.dumps(data, indent=1)
    write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def _collimator_table(c: Collimator) -> dict[str, Any]:
    return {
        "hole_diameter": c.hole_diameter,
        "hole_length": c.hole_length,
        "intrinsic_fwhm": c.intrinsic_fwhm,
        "gap": c.gap,
        "septal_mu": c.septal_mu,
    }


def is_spect_file(path: str | Path) -> bool:
    """True for a JSON file written by :func:`save_spect`."""
    return has_format(path, FORMAT)


def load_spect(path: str | Path) -> SpectAcquisition:
    """Read a file written by :func:`save_spect` (the μ-map from beside it)."""
    p = Path(path)
    data = read_format(p, FORMAT, "SPECT")
    try:
        geometry = spect(
            data["angles"], data["radius"], tuple(data["det_shape"]), data["det_spacing"], data.get("offset", 0.0)
        )
        v = data["volume"]
        volume = VolumeGeometry(tuple(v["shape"]), tuple(v["voxel_size"]), tuple(v["center"]))
        c = data["collimator"]
        collimator = None if c is None else Collimator(**c)
        sensitivity = float(data["sensitivity"])
        require_finite(sensitivity, "sensitivity")
        mu = None
        if data["mu"] is not None:
            name = Path(str(data["mu"]))
            if name.is_absolute() or name.name != str(name):
                raise ValueError(f"the μ-map must be a file name beside the JSON file, got {data['mu']!r}")
            mu = np.asarray(read_array(p.parent / name, "attenuation map"), dtype=np.float32)
            if mu.shape != volume.shape:
                raise ValueError(f"the μ-map has shape {mu.shape}, the volume {volume.shape}")
    except (KeyError, TypeError) as err:
        raise ValueError(f"{p}: malformed SPECT file ({type(err).__name__}: {err})") from None
    if not sensitivity > 0:
        raise ValueError(f"{p}: sensitivity must be > 0, got {sensitivity}")
    return SpectAcquisition(geometry, volume, collimator, mu, sensitivity)
