"""Wire formats of keyvalue batches: DVID's protobuf messages, tar files and JSON objects.

The protobuf messages are DVID's (``datatype/keyvalue``)::

    message KeyValue  { string key = 1; bytes value = 2; }
    message KeyValues { repeated KeyValue kvs = 1; }
    message KeyRange  { string key = 1; int64 byte_start = 2; int64 byte_end = 3; }
    message Keys      { repeated string keys = 1; repeated KeyRange key_ranges = 2; }

They are built from descriptors at import time (:mod:`dvidql.codec.protobuf`).
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson
from google.protobuf.message import DecodeError

from dvidql.codec.jsonbody import decode_json
from dvidql.codec.protobuf import build_messages
from dvidql.errors import BadRequest

__all__ = [
    "KeyRequest",
    "decode_key_values",
    "decode_keys",
    "encode_json_object",
    "encode_key_values",
    "encode_tar",
    "parse_json_keys",
]


_MESSAGES = build_messages("keyvalue", {
    "KeyValue": [("key", 1, "string"), ("value", 2, "bytes")],
    "KeyValues": [("kvs", 1, "repeated KeyValue")],
    "KeyRange": [("key", 1, "string"), ("byte_start", 2, "int64"), ("byte_end", 3, "int64")],
    "Keys": [("keys", 1, "repeated string"), ("key_ranges", 2, "repeated KeyRange")],
})
KeyValuesMessage, KeysMessage = _MESSAGES["KeyValues"], _MESSAGES["Keys"]


@dataclass(frozen=True, slots=True)
class KeyRequest:
    """One key of a batch read, optionally a byte range of its value (inclusive end)."""

    key: str
    byte_start: int | None = None
    byte_end: int | None = None

    def cut(self, value: bytes) -> bytes:
        if self.byte_start is None and self.byte_end is None:
            return value
        start = self.byte_start or 0
        return value[start : None if self.byte_end is None else self.byte_end + 1]


def encode_key_values(items: Iterable[tuple[str, bytes | None]]) -> bytes:
    msg = KeyValuesMessage()
    for key, value in items:
        kv = msg.kvs.add()
        kv.key = key
        if value is not None:
            kv.value = value
    return msg.SerializeToString()


def decode_key_values(data: bytes) -> list[tuple[str, bytes]]:
    msg = KeyValuesMessage()
    try:
        msg.ParseFromString(data)
    except (DecodeError, UnicodeDecodeError, RuntimeWarning) as exc:
        raise BadRequest(f"body is not a valid protobuf KeyValues message: {exc}") from exc
    return [(kv.key, kv.value) for kv in msg.kvs]


def decode_keys(data: bytes) -> list[KeyRequest]:
    msg = KeysMessage()
    try:
        msg.ParseFromString(data)
    except (DecodeError, UnicodeDecodeError, RuntimeWarning) as exc:
        raise BadRequest(f"body is not a valid protobuf Keys message: {exc}") from exc
    requests = [KeyRequest(k) for k in msg.keys]
    requests += [KeyRequest(r.key, r.byte_start, r.byte_end) for r in msg.key_ranges]
    return requests


def parse_json_keys(data: bytes) -> list[KeyRequest]:
    """A JSON list of keys, each a string or ``{"key", "byte_start", "byte_end"}``."""
    parsed = decode_json(data, list, "a JSON list of keys")
    out = []
    for item in parsed:
        if isinstance(item, str):
            out.append(KeyRequest(item))
        elif isinstance(item, dict) and isinstance(item.get("key"), str):
            start, end = item.get("byte_start"), item.get("byte_end")
            for bound in (start, end):
                if bound is not None and (not isinstance(bound, int) or bound < 0):
                    raise BadRequest("byte_start and byte_end must be non-negative integers")
            out.append(KeyRequest(item["key"], start, end))
        else:
            raise BadRequest(
                'each key must be a string or {"key": ..., "byte_start": ..., "byte_end": ...}'
            )
    return out


def encode_tar(items: Iterable[tuple[str, bytes]]) -> bytes:
    """A tar file with one member per key, named by the key."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for key, value in items:
            info = tarfile.TarInfo(name=key)
            info.size = len(value)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(value))
    return buffer.getvalue()


def encode_json_object(items: Sequence[tuple[str, bytes]], *, check: bool) -> bytes:
    """``{"key": <value as JSON>, ...}`` as DVID writes it: values must be JSON themselves;
    empty values become ``{}``. With ``check`` each value is validated first."""
    parts = []
    for key, value in items:
        if not value:
            value = b"{}"
        elif check:
            try:
                orjson.loads(value)
            except orjson.JSONDecodeError:
                raise BadRequest(
                    f"value of key {key!r} is not valid JSON; ask for tar or protobuf output"
                ) from None
        parts.append(orjson.dumps(key) + b":" + value)
    return b"{" + b",".join(parts) + b"}"
