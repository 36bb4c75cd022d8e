"""Volume objects: voxel or B-spline coefficient grids read from ``.npy``, TIFF stacks or Mitsuba ``.vol`` files,
projected with :class:`drct.Projector`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import drjit as dr
import numpy as np

from ..backend import Types
from ..errors import require_finite
from ..geometry.projection import ProjectionGeometry
from ..geometry.volume import VolumeGeometry
from ..io import read_array, read_tiff_slices
from ..projector import Projector
from ..volume import BASES
from .objects import SceneObject, is_drjit, read_weight, scalar
from .registry import register
from .schema import Table, relative_path
from .volfile import read_vol

SUFFIXES = (".npy", ".tif", ".tiff", ".vol")


def read_grid(path: Path) -> tuple[np.ndarray, tuple[tuple[float, ...], tuple[float, ...]] | None]:
    """A coefficient array from ``.npy``, a (multi-page) TIFF file or a folder of TIFF slices, or ``.vol``;
    the bounding box for ``.vol`` files. Raises ValueError for unreadable or non-float content.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> from drct.scene.volumes import read_grid
        >>> path = Path(tempfile.mkdtemp()) / "cube.npy"
        >>> np.save(path, np.ones((4, 5, 6), dtype=np.int16))
        >>> data, bbox = read_grid(path)
        >>> data.dtype, data.shape, bbox
        (dtype('float32'), (4, 5, 6), None)
        >>> read_grid(path.with_suffix(".txt"))
        Traceback (most recent call last):
            ...
        ValueError: unknown volume file type '.txt'; expected one of ('.npy', '.tif', '.tiff', '.vol')
    """
    name = path.name.lower()
    bbox = None
    try:
        if path.is_dir():
            data = read_tiff_slices(path, "volume slice folder")
        elif name.endswith((".npy", ".tif", ".tiff")):
            data = read_array(path, "volume file")  # regular files only, header checked before reading
        elif name.endswith(".vol"):
            data, bbox = read_vol(path)
        else:
            raise ValueError(f"unknown volume file type {path.suffix!r}; expected one of {SUFFIXES}")
    except (OSError, EOFError) as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    data = np.asarray(data)
    if data.dtype.kind not in "fiu" or data.ndim not in (2, 3) or data.size == 0:
        raise ValueError(f"{path}: expected a 2D or 3D array of numbers, got {data.dtype} of shape {data.shape}")
    require_finite(data, f"volume file {path}")
    return data.astype(np.float32), bbox


@register("object", "volume")
class Volume(SceneObject):
    """A voxel or B-spline volume from a file, scaled by ``mu`` (or a ``material`` with ``density``).

    TOML: ``file`` (``.npy``, ``.tif``/``.tiff`` stack or folder of slices, Mitsuba ``.vol``), ``voxel_size``
    (mm; one or per array axis; default from a ``.vol`` bounding box, else 1 mm), ``center`` (mm; default the
    origin or the ``.vol`` box centre), ``basis`` (``voxel``, ``linear``, ``bspline2``, ``bspline3``), and
    ``mu``: the attenuation (1/mm) of a coefficient of value 1 (default 1). Parameters: ``data`` (the
    coefficient array) and ``mu`` (or ``density``).
    """

    def __init__(
        self,
        name: str,
        data: Any,
        vg: VolumeGeometry,
        basis: str = "voxel",
        mu: Any = 1.0,
        material: str | None = None,
        density: Any = None,
        file: Path | None = None,
    ) -> None:
        params: dict[str, Any] = {"data": data}
        params.update({"density": density} if material is not None else {"mu": mu})
        super().__init__(name, params, material)
        if basis not in BASES:
            raise ValueError(f"basis must be one of {tuple(BASES)}, got {basis!r}")
        self.vg, self.basis, self.file = vg, basis, file
        self._loaded = data
        self._cache: dict[Any, Projector] = {}

    @property
    def ndim(self) -> int | None:
        return self.vg.ndim

    @classmethod
    def from_table(cls, t: Table, name: str) -> Volume:
        path = t.get("file")
        if isinstance(path, str) and (t.base / path).is_dir():
            file = t.confine("file", t.base / path)
            for entry in file.iterdir():  # a symlinked slice must not lead out either
                t.confine("file", entry)
        else:
            file = t.file_path("file", SUFFIXES)
        try:
            data, bbox = read_grid(file)
        except ValueError as err:
            t.fail("file", str(err))
        dims = data.ndim
        shape_xyz = data.shape[::-1]
        default_size: Any = (1.0,)
        default_center: Any = (0.0,) * dims
        if bbox is not None:
            lo, hi = np.array(bbox[0]), np.array(bbox[1])
            default_size = tuple(((hi - lo) / np.array(shape_xyz))[::-1].tolist())
            default_center = tuple(((lo + hi) / 2).tolist())
        size = t.quantities("voxel_size", "length", (1, dims), default_size, positive=True)
        center = t.quantities("center", "length", (dims,), default_center)
        basis = t.string("basis", "voxel", choices=tuple(BASES))
        weight, material = read_weight(t, default_mu=1.0)
        vg = VolumeGeometry(data.shape, size if len(size) > 1 else size[0], center)
        return cls(name, data, vg, basis, weight.get("mu"), material, weight.get("density"), file)

    def project(self, pg: ProjectionGeometry, t: Types) -> Any:
        if pg.ndim != self.vg.ndim:
            raise ValueError(f"volume {self.name!r} is {self.vg.ndim}D but the geometry is {pg.ndim}D")
        key = (t.dtype, t.backend)
        if self._cache.get(key) is None or self._cache[key].pg is not pg:
            self._cache = {key: Projector(self.vg, pg, self.basis, dtype=t.dtype, backend=t.backend)}
        op = self._cache[key]
        data = self.params["data"]
        if is_drjit(data):
            x = data if type(data) is t.Tensor else t.Tensor(data)
        else:
            from ..backend import upload_tensor

            x = upload_tensor(t, data, self.vg.shape)
        y = op.forward_tensor(x)
        return t.Float64(y.array) * scalar(self.weight, t)

    def changed(self) -> bool:
        """True when ``data`` is no longer the array read from ``file`` (set through :func:`traverse`)."""
        return self.file is None or self.params["data"] is not self._loaded

    def files_to_write(self, folder: Path) -> dict[Path, np.ndarray]:
        if not self.changed():
            return {}
        data = self.params["data"]
        arr = np.asarray(dr.detach(data).numpy() if is_drjit(data) else data, dtype=np.float32)
        return {folder / f"{self.name}.npy": arr.reshape(self.vg.shape)}

    def to_table(self, folder: Path) -> dict[str, Any]:
        table: dict[str, Any] = {"type": self.type_name, "name": self.name}
        assert self.file is not None or self.changed()
        table["file"] = f"{self.name}.npy" if self.changed() else relative_path(self.file, folder)  # type: ignore[arg-type]
        table.update({"voxel_size": list(self.vg.voxel_size), "center": list(self.vg.center), "basis": self.basis})
        return table | self._weight_table()
