"""Small values shared by every layer: timestamps and UUIDs."""

from __future__ import annotations

import re
import uuid as uuidlib
from datetime import UTC, datetime

from dvidql.errors import BadRequest

__all__ = ["new_uuid", "now", "validate_uuid"]

_HEX32 = re.compile(r"^[0-9a-f]{32}$")


def now() -> str:
    """An RFC 3339 timestamp with microseconds, in UTC."""
    return datetime.now(UTC).isoformat()


def new_uuid() -> str:
    return uuidlib.uuid4().hex


def validate_uuid(value: str) -> str:
    """A caller-chosen UUID must be 32 hexadecimal characters (stored lowercase)."""
    value = value.strip().lower()
    if not _HEX32.match(value):
        raise BadRequest(f"uuid {value!r} is not 32 hexadecimal characters")
    return value
