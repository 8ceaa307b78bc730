"""Bad input gets a clear 4xx with a JSON message and changes nothing."""

from __future__ import annotations

import httpx
import pytest

from tests.rest.conftest import child


def snapshot(http: httpx.Client, root: str) -> object:
    info = http.get(f"/api/repo/{root}/info").json()
    return info["DAG"], sorted(info["DataInstances"]), info["MutationID"]


def assert_error(response: httpx.Response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    for word in words:
        assert word in body["error"], body


def test_unknown_and_malformed_refs(client: httpx.Client, root: str) -> None:
    assert_error(client.get("/api/node/0123456789abcdef0123/kv/keys"), 404, "NOT_FOUND")
    assert_error(client.get("/api/node/bad$ref/kv/keys"), 400, "INVALID_REF")
    assert_error(client.get(f"/api/node/{root}:nobranch/kv/keys"), 404, "NOT_FOUND", "nobranch")
    assert_error(client.get(f"/api/node/{root}:master~x/kv/keys"), 400, "INVALID_REF")
    assert_error(client.get(f"/api/node/{root}:master~5/kv/keys"), 404, "NOT_FOUND")
    assert_error(client.get(f"/api/node/{root}/nosuch/keys"), 404, "NOT_FOUND", "nosuch")
    assert_error(client.get(f"/api/node/{root}/kv/nosuchendpoint"), 404, "NOT_FOUND")
    assert_error(client.put(f"/api/node/{root}/kv/keys"), 405, "HTTP_405")


def test_ambiguous_prefix(client: httpx.Client) -> None:
    a = client.post("/api/repos", json={"root": "abcd" + "0" * 28}).json()["root"]
    b = client.post("/api/repos", json={"root": "abcd" + "1" * 28}).json()["root"]
    assert_error(client.get("/api/repo/abcd/info"), 400, "INVALID_REF", "ambiguous")
    assert client.get(f"/api/repo/{a[:5]}/info").json()["Root"] == a
    assert client.get(f"/api/repo/{b[:5]}/info").json()["Root"] == b
    assert_error(client.post("/api/repos", json={"root": a}), 409, "CONFLICT")
    assert_error(client.post("/api/repos", json={"root": "xyz"}), 400, "BAD_REQUEST")


def test_instance_creation_errors(client: httpx.Client, root: str) -> None:
    before = snapshot(client, root)
    url = f"/api/repo/{root}/instance"
    assert_error(client.post(url, json={"typename": "nosuch", "dataname": "x"}), 404,
                 "NOT_FOUND", "nosuch")
    assert_error(client.post(url, json={"typename": "keyvalue", "dataname": "kv"}), 409,
                 "CONFLICT", "already exists")
    for name in ("log", "commit", "bad/name", "", "-x"):
        assert_error(client.post(url, json={"typename": "keyvalue", "dataname": name}), 400,
                     "BAD_REQUEST")
    assert_error(client.post(url, json={"typename": "keyvalue", "dataname": "y",
                                        "bogus": "1"}), 400, "BAD_REQUEST", "bogus")
    assert_error(client.post(url, json={"typename": "keyvalue", "dataname": "y",
                                        "Compression": "zip"}), 400, "BAD_REQUEST")
    assert_error(client.post(url, content=b"{not json"), 400, "BAD_REQUEST", "JSON")
    assert_error(client.post(url, content=b"[1]"), 400, "BAD_REQUEST", "object")
    assert snapshot(client, root) == before


def test_writes_to_committed_versions(client: httpx.Client, root: str) -> None:
    client.post(f"/api/node/{root}/kv/key/a", content=b"1")
    client.post(f"/api/node/{root}/commit")
    before = snapshot(client, root)
    kv = f"/api/node/{root}/kv"
    assert_error(client.post(f"{kv}/key/a", content=b"2"), 409, "VERSION_LOCKED", "committed")
    assert_error(client.delete(f"{kv}/key/a"), 409, "VERSION_LOCKED")
    assert_error(client.post(f"{kv}/keyvalues", json={"b": 1}), 409, "VERSION_LOCKED")
    assert_error(client.post(f"/api/repo/{root}/instance",
                             json={"typename": "keyvalue", "dataname": "late"}),
                 409, "VERSION_LOCKED")
    assert client.get(f"{kv}/key/a").content == b"1"
    # reads by POST stay allowed on committed versions
    assert client.post(f"{kv}/keyvalues?json=true", content=b'["a"]').json() == {"a": 1}
    assert snapshot(client, root) == before


def test_dag_rule_errors(client: httpx.Client, root: str) -> None:
    assert_error(client.post(f"/api/node/{root}/newversion"), 409, "VERSION_LOCKED",
                 "committed")
    assert_error(client.post(f"/api/node/{root}/branch", json={"branch": "b"}), 409,
                 "VERSION_LOCKED")
    v1 = child(client, root)
    assert_error(client.post(f"/api/node/{root}/newversion"), 409, "CONFLICT", "already has")
    b = child(client, root, "branch", branch="feature")
    assert_error(client.post(f"/api/node/{root}/branch", json={"branch": "feature"}), 409,
                 "CONFLICT", "already used")
    assert_error(client.post(f"/api/node/{root}/branch", json={"branch": "master"}), 400,
                 "BAD_REQUEST")
    assert_error(client.post(f"/api/node/{root}/branch", json={"branch": ""}), 400,
                 "BAD_REQUEST")
    assert_error(client.post(f"/api/node/{root}/newversion", json={"uuid": "nothex"}), 400,
                 "BAD_REQUEST")
    before = snapshot(client, root)
    assert_error(client.post(f"/api/repo/{root}/merge", json={"parents": [v1, b]}), 409,
                 "VERSION_LOCKED", "committed")
    assert_error(client.post(f"/api/repo/{root}/merge", json={"parents": [v1]}), 400,
                 "BAD_REQUEST", "two")
    assert_error(client.post(f"/api/repo/{root}/merge",
                             json={"parents": [v1, b], "mergeType": "auto"}), 400, "BAD_REQUEST")
    assert_error(client.post(f"/api/repo/{root}/merge", json={"parents": "x"}), 404, "NOT_FOUND")
    assert snapshot(client, root) == before
    other = client.post("/api/repos", json={}).json()["root"]
    client.post(f"/api/node/{other}/commit")
    client.post(f"/api/node/{v1}/commit")
    before = snapshot(client, root)
    assert_error(client.post(f"/api/repo/{root}/merge", json={"parents": [v1, other]}), 400,
                 "BAD_REQUEST", "another repo")
    assert_error(client.post(f"/api/node/{root}/tag", json={"tag": "has space"}), 400,
                 "BAD_REQUEST")
    assert snapshot(client, root) == before


@pytest.mark.parametrize("body", [b"\x0a\x05\x0a\x03", b"\xff\xff\xff\xff"])
def test_malformed_protobuf(client: httpx.Client, root: str, body: bytes) -> None:
    before = snapshot(client, root)
    assert_error(client.post(f"/api/node/{root}/kv/keyvalues", content=body), 400,
                 "BAD_REQUEST", "protobuf")
    assert_error(client.request("GET", f"/api/node/{root}/kv/keyvalues", content=body), 400,
                 "BAD_REQUEST", "protobuf")
    assert snapshot(client, root) == before


def test_malformed_json_key_lists(client: httpx.Client, root: str) -> None:
    url = f"/api/node/{root}/kv/keyvalues?json=true"
    assert_error(client.request("GET", url, content=b"{"), 400, "BAD_REQUEST", "JSON")
    assert_error(client.request("GET", url, content=b'{"a": 1}'), 400, "BAD_REQUEST", "list")
    assert_error(client.request("GET", url, content=b"[1]"), 400, "BAD_REQUEST")
    assert_error(client.request("GET", url, content=b'[{"key": "a", "byte_start": -1}]'), 400,
                 "BAD_REQUEST")


def test_bad_keys(client: httpx.Client, root: str, backend: str) -> None:
    assert_error(client.post(f"/api/node/{root}/kv/key/a%00b", content=b"x"), 400,
                 "BAD_REQUEST", "NUL")
    assert_error(client.post(f"/api/node/{root}/kv/key/" + "k" * 5000, content=b"x"), 400,
                 "BAD_REQUEST")
    # Keys longer than the store's index can hold: LMDB's 511 bytes, PostgreSQL's 2048.
    too_long = "k" * (600 if backend == "embedded" else 2100)
    assert_error(client.post(f"/api/node/{root}/kv/key/{too_long}", content=b"x"), 400,
                 "BAD_REQUEST", "at most")
    assert client.get(f"/api/node/{root}/kv/key/{too_long}").status_code == 404
    assert_error(client.post(f"/api/node/{root}/kv/keyvalues", json={}), 400, "BAD_REQUEST")
