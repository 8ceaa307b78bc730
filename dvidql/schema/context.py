"""The per-request context every resolver receives as ``info.context``."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection

from dvidql.service import Caller, Service

__all__ = ["Context", "admin_token"]


@dataclass
class Context:
    """What a request may use: the service and who is calling. Over WebSockets the caller
    can still change when ``connection_init`` carries ``{"adminToken": ...}``. ``loaders``
    holds the request's DataLoaders (one WebSocket context serves many operations, so they
    must not cache across them)."""

    service: Service
    caller: Caller
    request: Any = None
    response: Any = None
    connection_params: Mapping[str, Any] | None = None
    loaders: dict[Hashable, Any] = field(default_factory=dict)


def admin_token(connection: HTTPConnection) -> str | None:
    """The admin token of a request or WebSocket handshake: ``Authorization: Bearer``, then
    ``X-Admin-Token``, then DVID's ``?admintoken=``."""
    auth = connection.headers.get("authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return connection.headers.get("x-admin-token") or connection.query_params.get("admintoken")
