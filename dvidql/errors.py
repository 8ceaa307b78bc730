"""The one exception tree of dvidql, mapped once to HTTP statuses and GraphQL error codes.

Every layer raises these; the REST layer turns them into a status and a JSON body, the GraphQL
layer into an error whose ``extensions.code`` is the machine-readable code::

    DvidqlError                      500 INTERNAL
    ├── BadRequest                   400 BAD_REQUEST
    │   ├── InvalidRef               400 INVALID_REF        malformed or ambiguous UUID / ref
    │   └── MergeConflict            409 MERGE_CONFLICT     carries the conflicting keys
    ├── NotFound                     404 NOT_FOUND
    ├── Forbidden                    403 FORBIDDEN          admin token missing or wrong
    ├── ReadOnly                     403 READ_ONLY          server runs read-only
    ├── Locked                       409 VERSION_LOCKED     write to a committed version
    ├── Conflict                     409 CONFLICT           name taken, parent has a child...
    ├── PayloadTooLarge              413 PAYLOAD_TOO_LARGE
    ├── RangeNotSatisfiable          416 RANGE_NOT_SATISFIABLE
    ├── KeyConflict                  409 KEY_CONFLICT       ambiguous read through a merge
    └── Unavailable                  503 UNAVAILABLE        a backend cannot be reached
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BadRequest",
    "Conflict",
    "DvidqlError",
    "Forbidden",
    "InvalidRef",
    "KeyConflict",
    "Locked",
    "MergeConflict",
    "NotFound",
    "PayloadTooLarge",
    "RangeNotSatisfiable",
    "ReadOnly",
    "Unavailable",
]


class DvidqlError(Exception):
    """Base of every error a client may see; ``status`` and ``code`` say how to report it."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, Any]:
        """Extra machine-readable fields for the error body (none by default)."""
        return {}


class BadRequest(DvidqlError):
    status = 400
    code = "BAD_REQUEST"


class InvalidRef(BadRequest):
    code = "INVALID_REF"


class NotFound(DvidqlError):
    status = 404
    code = "NOT_FOUND"


class Forbidden(DvidqlError):
    status = 403
    code = "FORBIDDEN"


class ReadOnly(DvidqlError):
    status = 403
    code = "READ_ONLY"


class Locked(DvidqlError):
    status = 409
    code = "VERSION_LOCKED"


class Conflict(DvidqlError):
    status = 409
    code = "CONFLICT"


class PayloadTooLarge(DvidqlError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class RangeNotSatisfiable(DvidqlError):
    status = 416
    code = "RANGE_NOT_SATISFIABLE"


class KeyConflict(DvidqlError):
    status = 409
    code = "KEY_CONFLICT"


class Unavailable(DvidqlError):
    status = 503
    code = "UNAVAILABLE"


class MergeConflict(BadRequest):
    """A merge refused because parents changed the same keys differently."""

    status = 409
    code = "MERGE_CONFLICT"

    def __init__(self, message: str, conflicts: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.conflicts = conflicts

    def details(self) -> dict[str, Any]:
        return {"conflicts": self.conflicts}
