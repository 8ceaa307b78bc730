"""Parsing of the version references accepted wherever a UUID is: ``3fa2``, ``3fa2:master``,
``:master``, ``3fa2:dev~2`` (two versions back from the leaf of branch ``dev``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dvidql.errors import InvalidRef

__all__ = ["VersionRef", "parse_ref"]

_PREFIX = re.compile(r"^[A-Za-z0-9._-]*$")
_BRANCH = re.compile(r"^(?P<name>[^~/]+)(?:~(?P<back>\d+))?$")


@dataclass(frozen=True, slots=True)
class VersionRef:
    prefix: str  # UUID prefix or tag; empty only with a branch, on a one-repo server
    branch: str | None = None  # None: the prefix names the version itself
    back: int = 0


def parse_ref(text: str) -> VersionRef:
    """Split a reference into its parts, rejecting malformed ones with a clear message."""
    if not text:
        raise InvalidRef("empty version reference; give a UUID (or prefix), or 'uuid:branch'")
    prefix, sep, rest = text.partition(":")
    if not _PREFIX.match(prefix):
        raise InvalidRef(f"malformed version reference {text!r}: {prefix!r} is not a UUID prefix")
    if not sep:
        if "~" in text:
            raise InvalidRef(f"malformed version reference {text!r}: '~N' needs a branch")
        return VersionRef(prefix)
    match = _BRANCH.match(rest)
    if not match:
        raise InvalidRef(
            f"malformed version reference {text!r}: expected 'uuid:branch' or 'uuid:branch~N'"
        )
    return VersionRef(prefix, match["name"], int(match["back"] or 0))
