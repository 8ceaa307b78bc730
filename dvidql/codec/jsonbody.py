"""JSON request bodies: one place that turns malformed JSON into a clear 400."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson

from dvidql.errors import BadRequest

__all__ = ["decode_json"]

T = TypeVar("T")


def decode_json(data: bytes, expected: type[T], shape: str) -> T:
    """Parse ``data`` as JSON that must be an ``expected`` (``shape`` describes it to people)."""
    try:
        parsed: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(parsed, expected):
        raise BadRequest(f"request body must be {shape}")
    return parsed
