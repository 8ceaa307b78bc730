"""Repos and versions: lookups and DAG operations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dvidql.errors import BadRequest, NotFound
from dvidql.service import MergeResult
from dvidql.versions.dag import Node, Repo

if TYPE_CHECKING:
    from dvidql.schema.context import Context

__all__ = [
    "Located",
    "all_repos",
    "append_log",
    "branch",
    "commit",
    "create_repo",
    "latest",
    "merge",
    "mutation_id",
    "new_version",
    "resolve",
    "set_note",
    "tag",
    "version_in",
]

Located = tuple[Repo, Node]
"""A version with the repo document it was read from."""


def latest(ctx: Context, repo: Repo) -> Repo:
    """The current document of ``repo`` (each DAG operation replaces the object)."""
    return ctx.service.repos.repos[repo.repo_id]


def _fresh(ctx: Context, repo: Repo, node: Node) -> Located:
    current = latest(ctx, repo)
    return current, current.nodes[node.version_id]


def resolve(ctx: Context, ref: str) -> Located:
    """Any reference RepoManager accepts: UUID or prefix, ``uuid:branch~N``, ``:branch``."""
    return ctx.service.repos.resolve(ref)


def all_repos(ctx: Context) -> list[Repo]:
    return [ctx.service.repos.repos[i] for i in sorted(ctx.service.repos.repos)]


def version_in(ctx: Context, repo: Repo, ref: str) -> Node:
    """A version of ``repo``; ``:branch`` refs are read relative to this repo."""
    if ref.startswith(":"):
        ref = repo.root + ref
    found, node = ctx.service.repos.resolve(ref)
    if found.repo_id != repo.repo_id:
        raise NotFound(f"version {node.uuid} is not in repo {repo.root}")
    return node


async def mutation_id(ctx: Context, repo: Repo) -> int:
    return await ctx.service.repos.mutation_id(repo)


# ----- mutations ---------------------------------------------------------------------------


async def create_repo(
    ctx: Context, alias: str, description: str, root: str | None
) -> Repo:
    return await ctx.service.create_repo(ctx.caller, alias=alias, description=description,
                                         root=root)


async def commit(ctx: Context, ref: str, note: str | None, log: Sequence[str] | None
                 ) -> Located:
    repo, node = resolve(ctx, ref)
    node = await ctx.service.commit(ctx.caller, repo, node, note=note, log=log or ())
    return _fresh(ctx, repo, node)


async def new_version(ctx: Context, parent: str, note: str, uuid: str | None) -> Located:
    repo, node = resolve(ctx, parent)
    child = await ctx.service.new_version(ctx.caller, repo, node, note=note, uuid=uuid)
    return _fresh(ctx, repo, child)


async def branch(ctx: Context, parent: str, name: str, note: str, uuid: str | None
                 ) -> Located:
    repo, node = resolve(ctx, parent)
    child = await ctx.service.branch(ctx.caller, repo, node, name, note=note, uuid=uuid)
    return _fresh(ctx, repo, child)


async def tag(ctx: Context, ref: str, name: str, note: str) -> Located:
    repo, node = resolve(ctx, ref)
    child = await ctx.service.tag(ctx.caller, repo, node, name, note=note)
    return _fresh(ctx, repo, child)


async def set_note(ctx: Context, ref: str, note: str) -> Located:
    repo, node = resolve(ctx, ref)
    await ctx.service.set_note(ctx.caller, repo, node, note)
    return _fresh(ctx, repo, node)


async def append_log(ctx: Context, ref: str, messages: Sequence[str]) -> Located:
    repo, node = resolve(ctx, ref)
    await ctx.service.append_node_log(ctx.caller, repo, node, messages)
    return _fresh(ctx, repo, node)


async def merge(
    ctx: Context, parents: Sequence[str], note: str, parent_priority: bool
) -> tuple[Repo, MergeResult]:
    """Merge the versions ``parents`` name (all in one repo). With ``parent_priority`` every
    versioned instance takes the first parent's value where the parents conflict; otherwise
    a conflict refuses the merge, which is reported in the result rather than raised."""
    if not parents:
        raise BadRequest("a merge needs at least two parent versions")
    located = [resolve(ctx, ref) for ref in parents]
    repo = located[0][0]
    priority = (frozenset(name for name, inst in repo.instances.items() if inst.versioned)
                if parent_priority else None)
    result = await ctx.service.merge(ctx.caller, repo, [node for _, node in located],
                                     note=note, priority_for=priority)
    return latest(ctx, repo), result
