"""DVID's label index (§4.6): for one body, the supervoxel voxel counts in every block it
touches, plus who changed it last. The protobuf messages are DVID's::

    message SVCount { map<uint64,uint32> counts = 1;  uint64 surface_mutid = 2; }
    message LabelIndex {
      map<uint64, SVCount> blocks = 1;   // key = packed block coord
      uint64 label = 2; uint64 last_mutid = 3;
      string last_mod_time = 4;  string last_mod_user = 5;  string last_mod_app = 6;
    }
    message LabelIndices { repeated LabelIndex indices = 1; }

A packed block coordinate holds x in bits 0-20, y in 21-41 and z in 42-62, each 21 bits in
sign-magnitude (bit 20 of the field set for negatives). Stored, an index is the protobuf in
DVID's LZ4 serialization.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from google.protobuf.message import DecodeError
from typing_extensions import Buffer

from dvidql.codec.protobuf import build_messages
from dvidql.codec.serialization import LZ4, deserialize, serialize

__all__ = [
    "LabelIndex",
    "decode_label_index",
    "decode_label_indices",
    "encode_label_index",
    "encode_label_indices",
    "load_label_index",
    "pack_block_coords",
    "store_label_index",
    "unpack_block_coords",
]

_MESSAGES = build_messages("labelmap", {
    "SVCount": [("counts", 1, "map<uint64, uint32>"), ("surface_mutid", 2, "uint64")],
    "LabelIndex": [("blocks", 1, "map<uint64, SVCount>"), ("label", 2, "uint64"),
                   ("last_mutid", 3, "uint64"), ("last_mod_time", 4, "string"),
                   ("last_mod_user", 5, "string"), ("last_mod_app", 6, "string")],
    "LabelIndices": [("indices", 1, "repeated LabelIndex")],
})
_FIELD = 21
_MAGNITUDE = (1 << (_FIELD - 1)) - 1  # 2^20 - 1: the largest block coordinate
_SIGN = 1 << (_FIELD - 1)
_MASK = (1 << _FIELD) - 1

Coord = tuple[int, int, int]  # block x, y, z


def pack_block_coords(coords: np.ndarray) -> np.ndarray:
    """Packed uint64 keys of an (n, 3) array of block x, y, z."""
    coords = np.asarray(coords, np.int64).reshape(-1, 3)
    if coords.size and np.abs(coords).max() > _MAGNITUDE:
        raise ValueError(f"block coordinates must lie within ±{_MAGNITUDE} to be packed")
    fields = np.where(coords < 0, _SIGN | -coords, coords).astype(np.uint64)
    return fields[:, 0] | (fields[:, 1] << np.uint64(_FIELD)) | (
        fields[:, 2] << np.uint64(2 * _FIELD))


def unpack_block_coords(packed: np.ndarray) -> np.ndarray:
    """The (n, 3) int64 block x, y, z of packed keys."""
    packed = np.asarray(packed, np.uint64).reshape(-1)
    fields = np.stack([(packed >> np.uint64(shift)) & np.uint64(_MASK)
                       for shift in (0, _FIELD, 2 * _FIELD)], axis=1).astype(np.int64)
    magnitude = fields & _MAGNITUDE
    return np.where(fields & _SIGN, -magnitude, magnitude)


@dataclass
class LabelIndex:
    """One body's index: ``blocks`` maps a block coordinate to its supervoxel counts."""

    label: int
    blocks: dict[Coord, dict[int, int]] = field(default_factory=dict)
    last_mutid: int = 0
    last_mod_time: str = ""
    last_mod_user: str = ""
    last_mod_app: str = ""

    @property
    def num_voxels(self) -> int:
        return sum(n for counts in self.blocks.values() for n in counts.values())

    def supervoxels(self) -> set[int]:
        return {sv for counts in self.blocks.values() for sv in counts}


def _to_message(index: LabelIndex) -> object:
    message = _MESSAGES["LabelIndex"](
        label=index.label, last_mutid=index.last_mutid, last_mod_time=index.last_mod_time,
        last_mod_user=index.last_mod_user, last_mod_app=index.last_mod_app)
    coords = list(index.blocks)
    for key, coord in zip(pack_block_coords(np.array(coords, np.int64)).tolist(), coords,
                          strict=True):
        counts = index.blocks[coord]
        if any(not 0 <= n < 2**32 for n in counts.values()):
            raise ValueError(f"supervoxel counts of block {coord} must fit in 32 bits")
        message.blocks[key].counts.update(counts)  # type: ignore[attr-defined]
    return message


def _from_message(message: object) -> LabelIndex:
    keys = list(message.blocks)  # type: ignore[attr-defined]
    coords = unpack_block_coords(np.array(keys, np.uint64)).tolist() if keys else []
    return LabelIndex(
        label=message.label,  # type: ignore[attr-defined]
        blocks={tuple(c): dict(message.blocks[k].counts)  # type: ignore[attr-defined,misc]
                for k, c in zip(keys, coords, strict=True)},
        last_mutid=message.last_mutid,  # type: ignore[attr-defined]
        last_mod_time=message.last_mod_time,  # type: ignore[attr-defined]
        last_mod_user=message.last_mod_user,  # type: ignore[attr-defined]
        last_mod_app=message.last_mod_app)  # type: ignore[attr-defined]


def _parse(name: str, data: Buffer) -> object:
    message = _MESSAGES[name]()
    try:
        message.ParseFromString(bytes(data))
    except DecodeError as exc:
        raise ValueError(f"not a {name} protobuf: {exc}") from None
    return message


def encode_label_index(index: LabelIndex) -> bytes:
    """The protobuf wire form (``GET .../index/<label>``)."""
    return _to_message(index).SerializeToString(deterministic=True)  # type: ignore[attr-defined]


def decode_label_index(data: Buffer) -> LabelIndex:
    return _from_message(_parse("LabelIndex", data))


def encode_label_indices(indices: Iterable[LabelIndex]) -> bytes:
    """A ``LabelIndices`` message (``GET/POST .../indices``)."""
    message = _MESSAGES["LabelIndices"]()
    message.indices.extend(_to_message(i) for i in indices)
    return message.SerializeToString(deterministic=True)


def decode_label_indices(data: Buffer) -> list[LabelIndex]:
    return [_from_message(m) for m in _parse("LabelIndices", data).indices]  # type: ignore[attr-defined]


def store_label_index(index: LabelIndex) -> bytes:
    """The stored form: the protobuf in DVID's LZ4 serialization."""
    return serialize(encode_label_index(index), LZ4)


def load_label_index(stored: Buffer) -> LabelIndex:
    return decode_label_index(deserialize(stored))

