"""Error reporting, written once: every GraphQL error gets ``extensions.code`` and
``extensions.status``.

* a :class:`~dvidql.errors.DvidqlError` (raised by a resolver, or by a scalar while parsing an
  argument) keeps its message and reports its ``code`` / ``status`` and ``details()``;
* errors GraphQL itself finds in a request (syntax, validation, variable coercion) keep
  graphql-core's message and report ``GRAPHQL_VALIDATION`` / 400;
* anything else is a bug: it is logged with its traceback and reported as ``INTERNAL`` / 500
  without the exception text.
"""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionContext

from dvidql.errors import DvidqlError

__all__ = ["DvidqlSchema", "classify"]

log = logging.getLogger("dvidql.graphql")

VALIDATION = "GRAPHQL_VALIDATION"
INTERNAL_MESSAGE = "internal server error (logged on the server)"
_REQUEST_ERRORS = (CannotGetOperationTypeError, InvalidOperationTypeError)


def _root_cause(error: GraphQLError) -> BaseException | None:
    cause: BaseException | None = error.original_error
    while isinstance(cause, GraphQLError) and cause.original_error is not None:
        cause = cause.original_error
    return cause


def classify(error: GraphQLError) -> dict[str, Any]:
    """Set the error's extensions (and, for internal errors, its message); returns them."""
    extensions = dict(error.extensions or {})
    if "code" in extensions:  # already classified (errors may be processed twice)
        return extensions
    cause = _root_cause(error)
    if isinstance(cause, DvidqlError):
        extensions.update(cause.details(), code=cause.code, status=cause.status)
    elif (cause is None or isinstance(cause, (GraphQLError, *_REQUEST_ERRORS))
          or (error.path is None and error.nodes)):
        # found by graphql-core or Strawberry in the request (an operation the transport
        # does not carry...), or raised by a scalar parsing a literal or a variable
        extensions.update(code=VALIDATION, status=400)
    else:
        where = ".".join(map(str, error.path or ())) or "(operation)"
        log.error("GraphQL execution failed at %s", where, exc_info=cause)
        error.message = INTERNAL_MESSAGE
        extensions.update(code="INTERNAL", status=500)
    error.extensions = extensions
    return extensions


class DvidqlSchema(strawberry.Schema):
    """Strawberry's schema with dvidql's error classification (see the module docstring);
    Strawberry calls ``process_errors`` on every error list, for every transport."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            extensions = classify(error)
            if extensions["status"] >= 500 and extensions["code"] != "INTERNAL":
                log.error("GraphQL error %s: %s", extensions["code"], error.message)
