"""Per-view parameters as packets on the device, read in a symbolic loop over the views with its counter.

A Dr.Jit packet gather reads a row of ``size`` floats per lane at once (a power of two; it costs about one gather
whatever the size from 8 to 32): a loop over the views that reads each view's parameters so costs one gather per
lane and view, where one gather per parameter made such loops 1.5-2x slower than parameters baked into the code
as constants. Used by the gather adjoints (:mod:`drct.kernels.footprints`, :mod:`drct.kernels.fan_footprints`)
and the FDK backprojector (:mod:`drct.recon.backproject`).

Example:
    >>> import numpy as np
    >>> from drct.backend import types
    >>> t = types("float32")
    >>> p = upload_packets(t, np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
    >>> p.size, p.used, p.count
    (4, 3, 2)
    >>> [v.numpy().tolist() for v in gather_packet(t, p, t.UInt(1))]
    [[4.0], [5.0], [6.0]]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import drjit as dr
import numpy as np

from ..backend import Types, drjit_module, upload


def packet_type(t: Types, size: int | None) -> Any:
    """Dr.Jit's array type of ``size`` floats of ``t``'s precision (``None``: of a size given at each gather)."""
    name = "X" if size is None else str(size)
    return getattr(drjit_module(t.backend), f"Array{name}{'f' if t.dtype == 'float32' else 'f64'}")


@dataclass
class Packets:
    """Rows of parameters on the device, one packet of ``size`` floats per row (``used`` of them set)."""

    data: Any
    size: int
    used: int
    count: int


def upload_packets(t: Types, rows: np.ndarray) -> Packets:
    """``rows`` (one per loop iteration) on the device as packets of a power-of-two size, rounded to ``t``'s
    precision (``data`` is None for no rows: Dr.Jit has no empty arrays)."""
    size = 1 << max(int(np.ceil(np.log2(max(rows.shape[1], 1)))), 1)
    padded = np.zeros((rows.shape[0], size))
    padded[:, : rows.shape[1]] = rows
    data = upload(t.Float, padded.ravel().astype(t.dtype)) if len(rows) else None
    return Packets(data, size, rows.shape[1], rows.shape[0])


def gather_packet(t: Types, packets: Packets, index: Any) -> list[Any]:
    """The parameters of packet ``index`` (a loop counter: the same for every lane)."""
    row = dr.gather(packet_type(t, None), packets.data, index, shape=(packets.size, dr.width(index)))
    return list(row)[: packets.used]
