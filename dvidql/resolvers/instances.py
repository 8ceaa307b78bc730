"""Data instances: creation and the DVID info document."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dvidql.errors import BadRequest
from dvidql.versions.dag import Instance, Repo

if TYPE_CHECKING:
    from dvidql.schema.context import Context

__all__ = ["create_instance", "instance", "instance_info"]


async def create_instance(
    ctx: Context,
    ref: str,
    type_name: str,
    name: str,
    versioned: bool,
    settings: object,
) -> tuple[Repo, Instance]:
    """Create an instance in the repo of ``ref`` (at that version, which must be
    uncommitted). ``settings`` holds DVID's creation settings (``Compression``, ``Tags``,
    the type's own...); the explicit arguments take precedence over same-named settings."""
    if settings is not None and not isinstance(settings, Mapping):
        raise BadRequest("settings must be a JSON object such as {\"Compression\": \"none\"}")
    repo, node = ctx.service.repos.resolve(ref)
    config: dict[str, Any] = {**(settings or {}), "typename": type_name, "dataname": name,
                              "versioned": versioned}
    instance = await ctx.service.create_instance(ctx.caller, repo, node, config)
    return ctx.service.repos.repos[repo.repo_id], instance


async def instance_info(ctx: Context, repo: Repo, instance: Instance) -> dict[str, Any]:
    return await ctx.service.instance_info(repo, instance)


def instance(ctx: Context, repo: Repo, name: str) -> Instance:
    return ctx.service.repos.instance(repo, name)
