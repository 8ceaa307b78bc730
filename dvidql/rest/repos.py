"""/api/repos and /api/repo/<uuid>/...: repos, instances, repo logs, merges."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dvidql.errors import BadRequest, MergeConflict, NotFound
from dvidql.rest.common import caller, json_body, json_response, service, string_list, text_field
from dvidql.versions.dag import MASTER

__all__ = ["routes"]


async def create_repo(request: Request) -> Response:
    body = await json_body(request)
    root = body.get("root")
    if root is not None and not isinstance(root, str):
        raise BadRequest("field 'root' must be a UUID string")
    repo = await service(request).create_repo(
        caller(request), alias=text_field(body, "alias"),
        description=text_field(body, "description"), root=root)
    return json_response({"root": repo.root})


async def all_repos_info(request: Request) -> Response:
    svc = service(request)
    return json_response({r.root: await svc.repo_info(r) for r in svc.repos.repos.values()})


async def repo_exists(request: Request) -> Response:
    try:
        service(request).repos.resolve(request.path_params["uuid"])
    except NotFound:
        return Response(status_code=404)
    return Response(status_code=200)


async def repo_info(request: Request) -> Response:
    svc = service(request)
    return json_response(await svc.repo_info(svc.repos.repo_of(request.path_params["uuid"])))


async def set_repo_info(request: Request) -> Response:
    svc = service(request)
    repo = svc.repos.repo_of(request.path_params["uuid"])
    body = await json_body(request, required=True)
    alias = text_field(body, "alias") if "alias" in body else None
    description = text_field(body, "description") if "description" in body else None
    await svc.set_repo_info(caller(request), repo, alias=alias, description=description)
    return json_response({"result": f"updated repo {repo.root}"})


async def create_instance(request: Request) -> Response:
    svc = service(request)
    repo, node = svc.repos.resolve(request.path_params["uuid"])
    body = await json_body(request, required=True)
    instance = await svc.create_instance(caller(request), repo, node, body)
    return json_response(
        {"result": f"Added {instance.name} [{instance.type_name}] to node {node.uuid}"})


async def repo_log(request: Request) -> Response:
    svc = service(request)
    repo = svc.repos.repo_of(request.path_params["uuid"])
    if request.method == "GET":
        return json_response({"log": repo.log})
    body = await json_body(request, required=True)
    await svc.append_repo_log(caller(request), repo, string_list(body, "log"))
    return json_response({"log": svc.repos.repos[repo.repo_id].log})


async def branch_versions(request: Request) -> Response:
    repo = service(request).repos.repo_of(request.path_params["uuid"])
    name = request.path_params["branch"]
    try:
        return json_response(repo.branch_versions(MASTER if name == "master" else name))
    except KeyError:
        raise NotFound(f"branch {name!r} not found in repo {repo.root}") from None


async def _merge(request: Request, *, resolve: bool) -> Response:
    svc = service(request)
    repo = svc.repos.repo_of(request.path_params["uuid"])
    body = await json_body(request, required=True)
    if not resolve:
        merge_type = text_field(body, "mergeType", "conflict-free")
        if merge_type != "conflict-free":
            raise BadRequest(f"mergeType {merge_type!r} is not supported; use 'conflict-free', "
                             "or /resolve to settle conflicts by parent priority")
    parent_refs = string_list(body, "parents")
    parents = []
    for ref in parent_refs:
        parent_repo, node = svc.repos.resolve(ref)
        if parent_repo.repo_id != repo.repo_id:
            raise BadRequest(f"parent {ref!r} belongs to another repo")
        parents.append(node)
    priority = frozenset(string_list(body, "data")) if resolve else None
    if resolve and not priority:
        raise BadRequest("/resolve needs 'data': the instances whose conflicts to resolve")
    result = await svc.merge(caller(request), repo, parents, note=text_field(body, "note"),
                             priority_for=priority)
    if result.child is None:
        raise MergeConflict(
            f"merge refused: {len(result.conflicts)} key(s) changed differently on the parents; "
            "POST /resolve with the instances in 'data' to take the first parent's values",
            result.conflicts)
    return json_response({"child": result.child.uuid})


async def merge(request: Request) -> Response:
    return await _merge(request, resolve=False)


async def resolve(request: Request) -> Response:
    return await _merge(request, resolve=True)


routes = [
    Route("/api/repos", create_repo, methods=["POST"]),
    Route("/api/repos/info", all_repos_info, methods=["GET"]),
    Route("/api/repo/{uuid}", repo_exists, methods=["HEAD"]),
    Route("/api/repo/{uuid}/info", repo_info, methods=["GET"]),
    Route("/api/repo/{uuid}/info", set_repo_info, methods=["POST"]),
    Route("/api/repo/{uuid}/instance", create_instance, methods=["POST"]),
    Route("/api/repo/{uuid}/log", repo_log, methods=["GET", "POST"]),
    Route("/api/repo/{uuid}/branch-versions/{branch}", branch_versions, methods=["GET"]),
    Route("/api/repo/{uuid}/merge", merge, methods=["POST"]),
    Route("/api/repo/{uuid}/resolve", resolve, methods=["POST"]),
]
