"""Short form for described arguments: ``key: Annotated[str, arg("The key.")]``."""

from __future__ import annotations

from typing import Any

import strawberry

__all__ = ["arg"]


def arg(description: str, *, name: str | None = None) -> Any:
    """``name`` gives the GraphQL name where the Python one must differ (Strawberry reserves
    ``root``, ``info`` and ``self`` for the resolver's own parameters)."""
    return strawberry.argument(description=description, name=name)
