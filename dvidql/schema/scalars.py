"""Custom scalars: ``UInt64`` (decimal strings, since GraphQL's Int is 32-bit) and a strict
``Base64`` for binary values. ``JSON`` is Strawberry's own."""

from __future__ import annotations

import base64
import binascii
from typing import NewType

import strawberry
from strawberry.scalars import JSON, Base64
from strawberry.types.scalar import ScalarDefinition

from dvidql.errors import BadRequest

__all__ = ["JSON", "SCALAR_MAP", "UINT64_MAX", "Base64", "UInt64"]

UINT64_MAX = 2**64 - 1

UInt64 = NewType("UInt64", int)
"""An unsigned 64-bit integer, sent and received as a decimal string (ints are accepted)."""


def _check_range(value: int) -> int:
    if not 0 <= value <= UINT64_MAX:
        raise BadRequest(f"UInt64 must be between 0 and {UINT64_MAX}, not {value}")
    return value


def serialize_uint64(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"UInt64 cannot represent {value!r}")
    return str(_check_range(value))


def parse_uint64(value: object) -> int:
    """Accept a decimal string or an integer; reject anything else with a clear message."""
    if isinstance(value, bool):
        raise BadRequest(f"UInt64 must be a decimal string or an integer, not {value!r}")
    if isinstance(value, int):
        return _check_range(value)
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if not digits.isascii() or not digits.isdigit():
            raise BadRequest(f"UInt64 must be a decimal string, not {value!r}")
        return _check_range(int(text))
    raise BadRequest(f"UInt64 must be a decimal string or an integer, not {value!r}")


def serialize_base64(value: object) -> str:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"Base64 cannot represent {type(value).__name__}")
    return base64.b64encode(value).decode("ascii")


def parse_base64(value: object) -> bytes:
    if not isinstance(value, str):
        raise BadRequest("Base64 values must be strings")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise BadRequest("value is not valid base64 (standard alphabet, with padding)") from None


SCALAR_MAP: dict[object, ScalarDefinition] = {
    UInt64: strawberry.scalar(
        name="UInt64",
        description=(
            "An unsigned 64-bit integer (0 to 18446744073709551615) such as a mutation id or "
            "a label, written as a decimal string since GraphQL's Int has 32 bits. Inputs "
            "may also be given as integers."
        ),
        serialize=serialize_uint64,
        parse_value=parse_uint64,
    ),
    Base64: strawberry.scalar(
        name="Base64",
        description="Binary data as a Base64 string (standard alphabet, padded).",
        specified_by_url="https://datatracker.ietf.org/doc/html/rfc4648.html#section-4",
        serialize=serialize_base64,
        parse_value=parse_base64,
    ),
}
