"""keyvalue reads and writes through the datatype's operations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.keyvalue import KeyValueType, ops
from dvidql.errors import BadRequest

if TYPE_CHECKING:
    from dvidql.schema.context import Context

__all__ = ["delete", "entries", "keys", "open_instance", "put", "text", "value"]


def open_instance(ctx: Context, ref: str, name: str, *, write: bool = False) -> DataHandle:
    """The keyvalue instance ``name`` at version ``ref``, with the write policy if ``write``."""
    handle = ctx.service.handle(ref, name, ctx.caller, write=write)
    if handle.instance.type_name != KeyValueType.type_name:
        raise BadRequest(f"data instance {name!r} is a {handle.instance.type_name} instance, "
                         f"not {KeyValueType.type_name}")
    return handle


async def value(handle: DataHandle, key: str) -> bytes | None:
    return (await ops.get_many(handle, [key]))[0]


async def text(handle: DataHandle, key: str) -> str | None:
    raw = await value(handle, key)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"the value of key {key!r} is not UTF-8 text; "
                         "read it with 'value' (base64)") from None


async def keys(handle: DataHandle, first: str | None, last: str | None) -> list[str]:
    return await ops.keys(handle, first, last)


async def entries(handle: DataHandle, names: Sequence[str]) -> list[tuple[str, bytes | None]]:
    return list(zip(names, await ops.get_many(handle, names), strict=True))


async def put(
    ctx: Context, ref: str, name: str, key: str, data: bytes | None, text: str | None
) -> int:
    """Store ``data`` or the UTF-8 of ``text`` (exactly one); returns the mutation id."""
    if (data is None) == (text is None):
        raise BadRequest("give exactly one of 'value' (base64) and 'text'")
    payload = data if data is not None else (text or "").encode()
    return await ops.put(open_instance(ctx, ref, name, write=True), key, payload)


async def delete(ctx: Context, ref: str, name: str, key: str) -> int:
    return await ops.delete(open_instance(ctx, ref, name, write=True), key)
