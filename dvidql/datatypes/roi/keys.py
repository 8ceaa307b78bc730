"""roi tkeys, as DVID lays them out: one key per run of blocks along x, class 90, the run's
first block as IZYX and its length as uint32 BE. The value is empty: the key is the data.

Keys sort by z, then y, then x0, so the runs of a range of z are one range scan."""

from __future__ import annotations

import struct

from dvidql.datatypes.imageblk.keys import decode_izyx, izyx
from dvidql.datatypes.voxels import INT32_MAX, INT32_MIN

__all__ = ["RUN", "decode_run", "encode_run", "z_range"]

RUN = 90
_LENGTH = struct.Struct(">I")


def encode_run(z: int, y: int, x0: int, x1: int) -> bytes:
    """The key of the blocks x0..x1 (inclusive) of row (y, z)."""
    return bytes([RUN]) + izyx((x0, y, z)) + _LENGTH.pack(x1 - x0 + 1)


def decode_run(tkey: bytes) -> tuple[int, int, int, int]:
    """(z, y, x0, x1) of a run key."""
    x0, y, z = decode_izyx(tkey[1:13])
    return z, y, x0, x0 + _LENGTH.unpack(tkey[13:17])[0] - 1


def z_range(z0: int = INT32_MIN, z1: int = INT32_MAX) -> tuple[bytes, bytes]:
    """Inclusive scan bounds of the runs whose z is from z0 to z1."""
    return (bytes([RUN]) + izyx((INT32_MIN, INT32_MIN, z0)),
            bytes([RUN]) + izyx((INT32_MAX, INT32_MAX, z1)) + b"\xff" * 4)
