"""A PET acquisition as a JSON file: the scanner, the sinogram layout, time of flight, the volume grid and the
counts' scale, with the attenuation map and the expected randoms beside it (``.npy``): what ``drct reconstruct
--method osem|bsrem`` needs for PET counts.

Example:
    >>> import tempfile, numpy as np, drct as ct
    >>> from pathlib import Path
    >>> from drct.pet.files import PetSetup, load_pet, save_pet
    >>> setup = PetSetup(ct.pet.scanner(rings=2, crystals_per_ring=16, radius=50.0), span=1)
    >>> vg = ct.VolumeGeometry((2, 8, 8), voxel_size=4.0)
    >>> folder = Path(tempfile.mkdtemp())
    >>> path = save_pet(folder / "pet.json", setup, vg, np.zeros(vg.shape), 2.5, np.ones(setup.shape))
    >>> acq = load_pet(path)
    >>> acq.setup.shape, acq.sensitivity, acq.randoms.shape
    ((8, 4, 15), 2.5, (8, 4, 15))
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import require_finite
from ..geometry.volume import VolumeGeometry
from ..io import read_array, write_atomically
from .scanner import Scanner, scanner
from .sinogram import SinogramGeometry, sinogram
from .tof import TOF

FORMAT = "drct.pet/1"


@dataclass(frozen=True)
class PetSetup:
    """A scanner and how its counts are binned: a sinogram (span, maximum ring difference, mashing, radial bins)
    with or without time of flight."""

    scanner: Scanner
    span: int = 1
    max_ring_difference: int | None = None
    mash: int = 1
    radial_bins: int | None = None
    tof: TOF | None = None

    def sinogram(self) -> SinogramGeometry:
        return sinogram(self.scanner, self.span, self.max_ring_difference, self.mash, self.radial_bins)

    @property
    def shape(self) -> tuple[int, ...]:
        """The counts' shape: ``(views, planes, radial[, tof bins])``."""
        shape = self.sinogram().shape
        return shape if self.tof is None else (*shape, self.tof.bins)

    def projector(self, vg: VolumeGeometry, mu: Any = None, dtype: str = "float32") -> Any:
        """The :class:`~drct.pet.PETProjector` of this layout on ``vg`` with the μ-map ``mu`` (1/mm, or None)."""
        from .projector import PETProjector

        return PETProjector(vg, self.sinogram(), tof=self.tof, mu=mu, dtype=dtype)


@dataclass
class PetAcquisition:
    """What PET counts need besides themselves: ``counts ≈ Poisson(sensitivity · A f + randoms)``."""

    setup: PetSetup
    volume: VolumeGeometry
    mu: np.ndarray | None
    sensitivity: float
    randoms: np.ndarray | None

    def projector(self, dtype: str = "float32") -> Any:
        return self.setup.projector(self.volume, self.mu, dtype)


def _beside(path: Path, name: str, value: np.ndarray, shape: tuple[int, ...], what: str) -> str:
    if Path(name).name != name or not name.endswith(".npy"):
        raise ValueError(f"save_pet: the {what} file must be a plain .npy file name, got {name!r}")
    arr = np.asarray(value, dtype=np.float32)
    if arr.shape != shape:
        raise ValueError(f"save_pet: {what} has shape {arr.shape}, expected {shape}")
    require_finite(arr, what)
    write_atomically(path.parent / name, lambda tmp: np.save(tmp, arr))
    return name


def save_pet(
    path: str | Path,
    setup: PetSetup,
    volume: VolumeGeometry,
    mu: np.ndarray | None,
    sensitivity: float = 1.0,
    randoms: np.ndarray | None = None,
    mu_name: str | None = None,
    randoms_name: str | None = None,
) -> Path:
    """Write ``path`` (JSON) and, beside it, the μ-map (``mu_name``, default ``<stem>_mu.npy``) and the expected
    randoms per bin (``randoms_name``, default ``<stem>_randoms.npy``), all atomically; returns ``path``."""
    path = Path(path)
    s = float(sensitivity)
    if not np.isfinite(s) or s <= 0:
        raise ValueError(f"save_pet: sensitivity must be a finite number > 0, got {sensitivity!r}")
    sc = setup.scanner
    data: dict[str, Any] = {
        "format": FORMAT,
        "scanner": {
            "rings": sc.rings,
            "crystals_per_ring": sc.crystals_per_ring,
            "radius": sc.radius,
            "crystal_size": list(sc.crystal_size),
            "ring_spacing": sc.ring_spacing,
            "phase": sc.phase,
        },
        "sinogram": {
            "span": setup.span,
            "max_ring_difference": setup.max_ring_difference,
            "mash": setup.mash,
            "radial_bins": setup.radial_bins,
        },
        "tof": None if setup.tof is None else asdict(setup.tof),
        "volume": {"shape": list(volume.shape), "voxel_size": list(volume.voxel_size), "center": list(volume.center)},
        "sensitivity": s,
        "mu": None if mu is None else _beside(path, mu_name or f"{path.stem}_mu.npy", mu, volume.shape, "mu"),
        "randoms": None
        if randoms is None
        else _beside(path, randoms_name or f"{path.stem}_randoms.npy", randoms, setup.shape, "randoms"),
    }
    text = json.dumps(data, indent=1)
    write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return path


def has_format(path: str | Path, fmt: str) -> bool:
    """True for a ``.json`` file whose ``format`` entry is ``fmt``."""
    p = Path(path)
    if p.suffix.lower() != ".json" or not p.is_file():
        return False
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("format") == fmt
    except (ValueError, OSError, AttributeError):
        return False


def read_format(path: str | Path, fmt: str, what: str) -> dict[str, Any]:
    """The JSON object of ``path``, refused unless its ``format`` is ``fmt`` (``what`` names the kind of file)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{p}: not a JSON file ({err})") from None
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise ValueError(f"{p}: not a drct {what} file (expected format {fmt!r})")
    return data


def is_pet_file(path: str | Path) -> bool:
    """True for a JSON file written by :func:`save_pet`."""
    return has_format(path, FORMAT)


def _read_beside(p: Path, name: Any, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    if name is None:
        return None
    file = Path(str(name))
    if file.is_absolute() or file.name != str(file):
        raise ValueError(f"the {what} must be a file name beside the JSON file, got {name!r}")
    arr = np.asarray(read_array(p.parent / file, what), dtype=np.float32)
    if arr.shape != shape:
        raise ValueError(f"the {what} has shape {arr.shape}, expected {shape}")
    require_finite(arr, what)
    return arr


def load_pet(path: str | Path) -> PetAcquisition:
    """Read a file written by :func:`save_pet` (the μ-map and randoms from beside it)."""
    p = Path(path)
    data = read_format(p, FORMAT, "PET")
    try:
        t = data["tof"]
        setup = PetSetup(scanner(**data["scanner"]), **data["sinogram"], tof=None if t is None else TOF(**t))
        v = data["volume"]
        volume = VolumeGeometry(tuple(v["shape"]), tuple(v["voxel_size"]), tuple(v["center"]))
        sensitivity = float(data["sensitivity"])
        require_finite(sensitivity, "sensitivity")
        mu = _read_beside(p, data["mu"], volume.shape, "attenuation map")
        randoms = _read_beside(p, data["randoms"], setup.shape, "randoms")
    except (KeyError, TypeError) as err:
        raise ValueError(f"{p}: malformed PET file ({type(err).__name__}: {err})") from None
    if not sensitivity > 0:
        raise ValueError(f"{p}: sensitivity must be > 0, got {sensitivity}")
    if randoms is not None and randoms.min() < 0:
        raise ValueError(f"{p}: the randoms must be >= 0, got a minimum of {randoms.min():g}")
    return PetAcquisition(setup, volume, mu, sensitivity, randoms)
