"""Server-wide information."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dvidql.schema.context import Context

__all__ = ["server_info"]


def server_info(ctx: Context) -> tuple[dict[str, str], dict[str, str]]:
    """DVID's server info document, and the datatypes (name -> type URL)."""
    return ctx.service.server_info(), ctx.service.types()
