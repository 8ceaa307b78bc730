"""labelmap tkeys beyond the shared block keys: the versioned supervoxel→body mapping, the
per-body label index and last modification, the per-version max label, and the repo-wide
label counter."""

from __future__ import annotations

import struct

from dvidql.storage import keys as K
from dvidql.versions.dag import Instance, Repo

__all__ = [
    "INDEX",
    "LASTMOD",
    "MAPPING",
    "MAXLABEL",
    "counter_key",
    "decode_label",
    "describe",
    "index_tkey",
    "lastmod_tkey",
    "mapping_tkey",
]

MAPPING = 40  # + supervoxel: the body it belongs to (absent: itself; 0: split away or reserved)
INDEX = 41  # + body: its label index (absent: no such body)
LASTMOD = 42  # + body: who changed it last, in which mutation
MAXLABEL = bytes([43]) + b"maxlabel"  # the largest label at this version and its ancestors
_COUNTER = bytes([44]) + b"labels"  # repo-wide: the largest label ever, the next-label counter
_LABEL = struct.Struct(">Q")


def mapping_tkey(supervoxel: int) -> bytes:
    return bytes([MAPPING]) + _LABEL.pack(supervoxel)


def index_tkey(body: int) -> bytes:
    return bytes([INDEX]) + _LABEL.pack(body)


def lastmod_tkey(body: int) -> bytes:
    return bytes([LASTMOD]) + _LABEL.pack(body)


def decode_label(tkey: bytes) -> int:
    """The label of a mapping, index or lastmod tkey."""
    return int(_LABEL.unpack_from(tkey, 1)[0])


def counter_key(repo: Repo, instance: Instance) -> bytes:
    """The full store key of the repo-wide label counter, kept at the root so that labels
    allocated on any branch never collide."""
    return K.data_key(instance.instance_id, _COUNTER, repo.root_version)


def describe(tkey: bytes) -> str | None:
    """A readable form of these tkeys (None for others)."""
    kind = {MAPPING: "mapping of supervoxel", INDEX: "label index of body",
            LASTMOD: "last modification of body"}.get(tkey[0])
    if kind is not None and len(tkey) == 9:
        return f"{kind} {decode_label(tkey)}"
    if tkey == MAXLABEL:
        return "max label"
    return None
