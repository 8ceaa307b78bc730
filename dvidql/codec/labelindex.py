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
sign-magnitude (bit 20 of the field set for negatives). Stored, an index keeps its columns in
DVID's LZ4 serialization.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from google.protobuf.message import DecodeError
from typing_extensions import Buffer

from dvidql.codec.protobuf import build_messages
from dvidql.codec.serialization import LZ4, deserialize, serialize

__all__ = [
    "LabelIndex",
    "decode_label_index",
    "decode_label_indices",
    "decode_mapping_ops",
    "encode_label_index",
    "encode_label_indices",
    "encode_mapping_ops",
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
    "MappingOp": [("mutid", 1, "uint64"), ("mapped", 2, "uint64"),
                  ("original", 3, "repeated uint64")],
    "MappingOps": [("mappings", 1, "repeated MappingOp")],
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


_ENTRY = np.dtype([("block", "<u8"), ("sv", "<u8"), ("count", "<u4")])


@dataclass(eq=False)
class LabelIndex:
    """One body's index as three aligned columns sorted by (block, supervoxel): packed block
    coordinates, supervoxel ids and their voxel counts in that block. Columns, not nested
    dicts, so that merges, cleaves and sizes of bodies with 100,000 blocks are numpy work."""

    label: int
    blocks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    svs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    last_mutid: int = 0
    last_mod_time: str = ""
    last_mod_user: str = ""
    last_mod_app: str = ""

    @classmethod
    def of(cls, label: int, blocks: np.ndarray, svs: np.ndarray, counts: np.ndarray,
           **mod: Any) -> LabelIndex:
        """An index of possibly unsorted, repeated (block, sv, count) rows: repeats are summed
        and zero counts dropped."""
        blocks, svs = np.asarray(blocks, np.uint64), np.asarray(svs, np.uint64)
        counts = np.asarray(counts, np.int64)
        if len(blocks):
            order = np.lexsort((svs, blocks))
            blocks, svs, counts = blocks[order], svs[order], counts[order]
            new = np.ones(len(blocks), bool)
            new[1:] = (blocks[1:] != blocks[:-1]) | (svs[1:] != svs[:-1])
            starts = np.flatnonzero(new)
            blocks, svs = blocks[starts], svs[starts]
            counts = np.add.reduceat(counts, starts)
            if counts.min() < 0:
                raise ValueError(f"label {label}: a supervoxel count would become negative")
            keep = counts > 0
            blocks, svs, counts = blocks[keep], svs[keep], counts[keep]
        return cls(label, blocks, svs, counts.astype(np.uint64), **mod)

    @classmethod
    def from_dict(cls, label: int, blocks: dict[Coord, dict[int, int]], **mod: Any
                  ) -> LabelIndex:
        """From ``{(x, y, z): {supervoxel: count}}`` (tests and small hand-made indices)."""
        rows = [(c, sv, n) for c, per in blocks.items() for sv, n in per.items()]
        coords = np.array([r[0] for r in rows], np.int64).reshape(-1, 3)
        return cls.of(label, pack_block_coords(coords), np.array([r[1] for r in rows], np.uint64),
                      np.array([r[2] for r in rows], np.int64), **mod)

    def as_dict(self) -> dict[Coord, dict[int, int]]:
        out: dict[Coord, dict[int, int]] = {}
        coords = unpack_block_coords(self.blocks).tolist()
        for c, sv, n in zip(coords, self.svs.tolist(), self.counts.tolist(), strict=True):
            out.setdefault(tuple(c), {})[sv] = n  # type: ignore[index]
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelIndex) and self.mod_info() == other.mod_info() and (
            self.label == other.label and np.array_equal(self.blocks, other.blocks)
            and np.array_equal(self.svs, other.svs)
            and np.array_equal(self.counts, other.counts))

    def mod_info(self) -> tuple[int, str, str, str]:
        return self.last_mutid, self.last_mod_time, self.last_mod_user, self.last_mod_app

    @property
    def num_voxels(self) -> int:
        return int(self.counts.sum())

    def supervoxels(self) -> np.ndarray:
        """The sorted distinct supervoxel ids."""
        return np.unique(self.svs)

    def supervoxel_sizes(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted supervoxel ids and their total voxel counts."""
        ids, inverse = np.unique(self.svs, return_inverse=True)
        return ids, np.bincount(inverse.reshape(-1), self.counts, len(ids)).astype(np.uint64)

    def block_coords(self) -> np.ndarray:
        """The (n, 3) x, y, z of the distinct blocks, in packed-key order."""
        return unpack_block_coords(np.unique(self.blocks))

    def select(self, keep: np.ndarray, label: int | None = None) -> LabelIndex:
        """The rows where ``keep`` is true, as the index of ``label`` (default: this one's)."""
        return LabelIndex(self.label if label is None else label, self.blocks[keep],
                          self.svs[keep], self.counts[keep], *self.mod_info())


def _to_message(index: LabelIndex) -> object:
    message = _MESSAGES["LabelIndex"](
        label=index.label, last_mutid=index.last_mutid, last_mod_time=index.last_mod_time,
        last_mod_user=index.last_mod_user, last_mod_app=index.last_mod_app)
    if len(index.counts) and int(index.counts.max()) >= 2**32:
        raise ValueError("supervoxel counts of a block must fit in 32 bits")
    bounds = np.flatnonzero(np.diff(index.blocks)) + 1
    svs, counts = index.svs.tolist(), index.counts.tolist()
    for lo, hi in zip([0, *bounds.tolist()], [*bounds.tolist(), len(svs)], strict=True):
        if hi > lo:
            message.blocks[int(index.blocks[lo])].counts.update(  # type: ignore[attr-defined]
                zip(svs[lo:hi], counts[lo:hi], strict=True))
    return message


def _from_message(message: object) -> LabelIndex:
    blocks, svs, counts = [], [], []
    for key, entry in message.blocks.items():  # type: ignore[attr-defined]
        for sv, n in entry.counts.items():
            blocks.append(key)
            svs.append(sv)
            counts.append(n)
    return LabelIndex.of(
        message.label,  # type: ignore[attr-defined]
        np.array(blocks, np.uint64), np.array(svs, np.uint64), np.array(counts, np.int64),
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


_HEADER = struct.Struct("<QQI")  # label, last mutation id, rows


def encode_mapping_ops(mappings: Iterable[tuple[int, Iterable[int]]]) -> bytes:
    """DVID's ``MappingOps`` (``POST .../mappings``): per body, the supervoxels mapped to it."""
    message = _MESSAGES["MappingOps"]()
    for body, originals in mappings:
        message.mappings.add(mapped=body, original=list(originals))
    return message.SerializeToString(deterministic=True)


def decode_mapping_ops(data: Buffer) -> list[tuple[int, list[int]]]:
    return [(op.mapped, list(op.original))
            for op in _parse("MappingOps", data).mappings]  # type: ignore[attr-defined]


def store_label_index(index: LabelIndex) -> bytes:
    """The stored form: label, mod info and the three columns, in DVID's LZ4 serialization
    (columns rather than the protobuf, so loading a large index is a copy, not a parse)."""
    mod = orjson.dumps([index.last_mod_time, index.last_mod_user, index.last_mod_app])
    rows = np.empty(len(index.blocks), _ENTRY)
    rows["block"], rows["sv"], rows["count"] = index.blocks, index.svs, index.counts
    payload = b"".join([_HEADER.pack(index.label, index.last_mutid, len(rows)),
                        struct.pack("<I", len(mod)), mod, rows.tobytes()])
    return serialize(payload, LZ4)


def load_label_index(stored: Buffer) -> LabelIndex:
    payload = memoryview(deserialize(stored))
    label, mutid, n = _HEADER.unpack_from(payload)
    (mod_len,) = struct.unpack_from("<I", payload, _HEADER.size)
    start = _HEADER.size + 4
    when, user, app = orjson.loads(payload[start:start + mod_len])
    rows = np.frombuffer(payload, _ENTRY, n, start + mod_len)
    return LabelIndex(label, rows["block"].copy(), rows["sv"].copy(),
                      rows["count"].astype(np.uint64), mutid, when, user, app)
