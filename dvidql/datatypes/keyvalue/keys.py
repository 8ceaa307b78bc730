"""keyvalue tkeys: the key's UTF-8 bytes and a 0x00 terminator, so the family is prefix-free."""

from __future__ import annotations

from dvidql.errors import BadRequest

__all__ = ["MAX_KEY_BYTES", "decode_tkey", "encode_tkey"]

MAX_KEY_BYTES = 4096


def encode_tkey(key: str) -> bytes:
    if not key:
        raise BadRequest("a key must not be empty")
    raw = key.encode()
    if b"\x00" in raw:
        raise BadRequest("a key must not contain the NUL character")
    if len(raw) > MAX_KEY_BYTES:
        raise BadRequest(f"a key may be at most {MAX_KEY_BYTES} bytes long")
    return raw + b"\x00"


def decode_tkey(tkey: bytes) -> str:
    return tkey[:-1].decode()
