"""keyvalue: arbitrary versioned blobs under string keys (DVID's generic key-value type)."""

from __future__ import annotations

from dvidql.datatypes.base import Datatype
from dvidql.datatypes.keyvalue.keys import decode_tkey

__all__ = ["KeyValueType"]


class KeyValueType(Datatype):
    type_name = "keyvalue"
    type_url = "github.com/janelia-flyem/dvid/datatype/keyvalue"
    type_version = "0.2"
    default_compression = "none"

    def describe_key(self, tkey: bytes) -> str:
        return decode_tkey(tkey)
