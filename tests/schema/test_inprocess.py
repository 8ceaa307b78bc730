"""The schema executed in-process on an in-memory store: cases a live server cannot stage
(another datatype, a failing service), the scalars and the token parsing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLError
from starlette.requests import Request

from dvidql.config import Settings
from dvidql.errors import BadRequest, MergeConflict
from dvidql.ids import new_uuid
from dvidql.schema import schema
from dvidql.schema.context import Context, admin_token
from dvidql.schema.errors import classify
from dvidql.schema.scalars import UINT64_MAX, parse_base64, parse_uint64, serialize_uint64
from dvidql.service import Service
from dvidql.storage.memory import MemoryBlobStore, memory_meta_store
from dvidql.versions.dag import Instance


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    svc = Service(Settings(data=tmp_path), memory_meta_store(), MemoryBlobStore())
    yield svc
    await svc.close()


async def execute(service: Service, query: str, **variables: Any) -> Any:
    context = Context(service=service, caller=service.caller(None))
    return await schema.execute(query, variable_values=variables, context_value=context)


async def test_keyvalue_read_of_another_datatype_is_bad_request(service: Service) -> None:
    repo = await service.repos.create_repo(alias="x")
    await service.repos.add_instance(repo, lambda i: Instance(
        name="labels", type_name="labelmap", data_uuid=new_uuid(), instance_id=i))
    result = await execute(service, """query($v: String!) {
        version(ref: $v) { uuid keyvalue(instance: "labels") { keys } } }""", v=repo.root)
    assert result.data == {"version": {"uuid": repo.root, "keyvalue": None}}
    [error] = result.errors
    assert error.extensions == {"code": "BAD_REQUEST", "status": 400}
    assert "labelmap" in error.message
    put = await execute(service, """mutation($v: String!) {
        putKey(version: $v, instance: "labels", key: "k", text: "t") { key } }""", v=repo.root)
    assert put.errors[0].extensions["code"] == "BAD_REQUEST"
    assert await service.repos.mutation_id(repo) == 2  # newrepo and newinstance only


async def test_unexpected_exceptions_are_internal_and_masked(
    service: Service, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, str]:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(service, "server_info", broken)
    with caplog.at_level(logging.ERROR, logger="dvidql.graphql"):
        result = await execute(service, "{ serverInfo { version } }")
    [error] = result.errors
    assert error.extensions == {"code": "INTERNAL", "status": 500}
    assert "secret" not in error.message
    assert "secret detail" in caplog.text  # the server log keeps the cause


async def test_merge_conflict_details_would_be_reported(service: Service) -> None:
    """DvidqlError.details() lands in the extensions next to code and status."""


    error = GraphQLError("refused", original_error=MergeConflict(
        "refused", [{"instance": "kv", "key": "a"}]))
    assert classify(error) == {"code": "MERGE_CONFLICT", "status": 409,
                               "conflicts": [{"instance": "kv", "key": "a"}]}


def test_uint64_scalar() -> None:
    assert serialize_uint64(0) == "0"
    assert serialize_uint64(UINT64_MAX) == "18446744073709551615"
    assert parse_uint64("18446744073709551615") == UINT64_MAX
    assert parse_uint64(" 42 ") == 42
    assert parse_uint64(7) == 7
    for bad in ("-1", str(UINT64_MAX + 1), -1, UINT64_MAX + 1, "0x10", "1e3", "", "١٢",
                1.0, True, None, []):
        with pytest.raises(BadRequest):
            parse_uint64(bad)
    for bad_out in (-1, UINT64_MAX + 1):
        with pytest.raises(BadRequest):
            serialize_uint64(bad_out)
    with pytest.raises(TypeError):
        serialize_uint64("12")


def test_base64_scalar_is_strict() -> None:
    assert parse_base64("AAE=") == b"\x00\x01"
    for bad in ("AAE", "A$E=", "é", 12):
        with pytest.raises(BadRequest):
            parse_base64(bad)


def _request(headers: dict[str, str], query: str = "") -> Request:
    return Request({"type": "http", "method": "POST", "path": "/graphql",
                    "query_string": query.encode(),
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})


def test_admin_token_sources() -> None:
    assert admin_token(_request({})) is None
    assert admin_token(_request({"Authorization": "Bearer abc"})) == "abc"
    assert admin_token(_request({"Authorization": "bearer  abc "})) == "abc"
    assert admin_token(_request({"Authorization": "Basic xyz"})) is None
    assert admin_token(_request({"X-Admin-Token": "def"})) == "def"
    assert admin_token(_request({}, "admintoken=ghi")) == "ghi"
    assert admin_token(_request({"Authorization": "Bearer abc"}, "admintoken=ghi")) == "abc"
