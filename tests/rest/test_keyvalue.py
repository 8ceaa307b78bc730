"""keyvalue over HTTP against a live server, checked against DVID's formats."""

from __future__ import annotations

import io
import tarfile

import httpx

from dvidql.codec.keyvalues import KeysMessage, KeyValuesMessage
from tests.rest.conftest import child


def kv(uuid: str, path: str) -> str:
    return f"/api/node/{uuid}/kv/{path}"


def test_post_get_head_delete(client: httpx.Client, root: str) -> None:
    assert client.post(kv(root, "key/a"), content=b"\x00\x01binary").status_code == 200
    got = client.get(kv(root, "key/a"))
    assert got.status_code == 200 and got.content == b"\x00\x01binary"
    assert got.headers["content-type"] == "application/octet-stream"
    assert client.head(kv(root, "key/a")).status_code == 200
    assert client.head(kv(root, "key/missing")).status_code == 404
    missing = client.get(kv(root, "key/missing"))
    assert missing.status_code == 404 and "missing" in missing.json()["error"]
    assert client.delete(kv(root, "key/a")).status_code == 200
    assert client.get(kv(root, "key/a")).status_code == 404


def test_keys_with_slashes_and_unicode(client: httpx.Client, root: str) -> None:
    assert client.post(kv(root, "key/dir/sub/file.json"), content=b"1").status_code == 200
    assert client.post(kv(root, "key/é%20x"), content=b"2").status_code == 200
    assert client.get(kv(root, "key/dir/sub/file.json")).content == b"1"
    assert client.get(kv(root, "keys")).json() == ["dir/sub/file.json", "é x"]


def test_range_header_and_byte_params(client: httpx.Client, root: str) -> None:
    client.post(kv(root, "key/r"), content=b"0123456789")
    part = client.get(kv(root, "key/r"), headers={"Range": "bytes=2-5"})
    assert part.status_code == 206 and part.content == b"2345"
    assert part.headers["content-range"] == "bytes 2-5/10"
    assert client.get(kv(root, "key/r"), headers={"Range": "bytes=7-"}).content == b"789"
    assert client.get(kv(root, "key/r"), headers={"Range": "bytes=-3"}).content == b"789"
    assert client.get(kv(root, "key/r"), headers={"Range": "bytes=20-"}).status_code == 416
    assert client.get(kv(root, "key/r"), headers={"Range": "bytes=a-b"}).status_code == 400
    assert client.get(kv(root, "key/r?byte_start=3&byte_end=4")).content == b"34"
    assert client.get(kv(root, "key/r?byte_start=8")).content == b"89"
    assert client.get(kv(root, "key/r?byte_start=5&byte_end=2")).status_code == 400
    assert client.get(kv(root, "key/r?byte_start=x")).status_code == 400


def test_keyrange_and_keyrangevalues(client: httpx.Client, root: str) -> None:
    for key, value in [("a", b'{"n":1}'), ("b", b'{"n":2}'), ("c", b""), ("d", b"[4]")]:
        client.post(kv(root, f"key/{key}"), content=value)
    assert client.get(kv(root, "keyrange/b/d")).json() == ["b", "c", "d"]
    assert client.get(kv(root, "keyrange/b/bz")).json() == ["b"]
    as_json = client.get(kv(root, "keyrangevalues/a/c?json=true"))
    assert as_json.json() == {"a": {"n": 1}, "b": {"n": 2}, "c": {}}
    tar = tarfile.open(fileobj=io.BytesIO(client.get(kv(root, "keyrangevalues/a/b?tar=true"))
                                          .content))
    assert {m.name: tar.extractfile(m).read() for m in tar.getmembers()} == {
        "a": b'{"n":1}', "b": b'{"n":2}'}
    msg = KeyValuesMessage()
    msg.ParseFromString(client.get(kv(root, "keyrangevalues/c/d")).content)
    assert [(p.key, p.value) for p in msg.kvs] == [("c", b""), ("d", b"[4]")]
    assert client.get(kv(root, "keyrangevalues/a/d?json=true&tar=true")).status_code == 400
    assert client.get(kv(root, "keyrange/d/a")).status_code == 400


def test_keyrangevalues_json_check(client: httpx.Client, root: str) -> None:
    client.post(kv(root, "key/bad"), content=b"not json")
    bad = client.get(kv(root, "keyrangevalues/a/z?json=true&check=true"))
    assert bad.status_code == 400 and "bad" in bad.json()["error"]


def test_keyvalues_protobuf_and_json(client: httpx.Client, root: str) -> None:
    batch = KeyValuesMessage()
    for i in range(5):
        item = batch.kvs.add()
        item.key, item.value = f"k{i}", f"value-{i}".encode()
    assert client.post(kv(root, "keyvalues"), content=batch.SerializeToString()).status_code == 200

    keys = KeysMessage()
    keys.keys.extend(["k1", "nope", "k3"])
    part = keys.key_ranges.add()
    part.key, part.byte_start, part.byte_end = "k4", 2, 4
    got = KeyValuesMessage()
    got.ParseFromString(client.request("GET", kv(root, "keyvalues"),
                                       content=keys.SerializeToString()).content)
    assert [(p.key, p.value) for p in got.kvs] == [
        ("k1", b"value-1"), ("nope", b""), ("k3", b"value-3"), ("k4", b"lue")]

    body = b'["k0", "k2", "nope", {"key": "k1", "byte_start": 0, "byte_end": 4}]'
    for method in ("GET", "POST"):  # POST for proxies that drop GET bodies
        response = client.request(method, kv(root, "keyvalues?json=true"), content=body)
        assert response.status_code == 200
    assert client.post(kv(root, "keyvalues?jsontar=true"), content=b'["k0"]').status_code == 200
    # values are not JSON here, so only the tar form can carry them
    tar = tarfile.open(fileobj=io.BytesIO(
        client.request("GET", kv(root, "keyvalues?jsontar=true"), content=b'["k0", "x"]').content))
    assert {m.name: tar.extractfile(m).read() for m in tar.getmembers()} == {
        "k0": b"value-0", "x": b""}


def test_keyvalues_json_ingest(client: httpx.Client, root: str) -> None:
    response = client.post(kv(root, "keyvalues"), json={"body-1": {"status": "traced"},
                                                        "body-2": [1, 2]})
    assert response.status_code == 200
    assert client.request("GET", kv(root, "keyvalues?json=true"),
                          content=b'["body-1", "body-2"]').json() == {
        "body-1": {"status": "traced"}, "body-2": [1, 2]}


def test_large_values_round_trip(client: httpx.Client, root: str) -> None:
    big = bytes(range(256)) * 4096  # 1 MiB, stored as a blob
    assert client.post(kv(root, "key/big"), content=big).status_code == 200
    assert client.get(kv(root, "key/big")).content == big
    tail = client.get(kv(root, "key/big"), headers={"Range": "bytes=1048570-"})
    assert tail.content == big[-6:]


def test_versioning_and_branch_isolation(client: httpx.Client, root: str) -> None:
    client.post(kv(root, "key/shared"), content=b"root")
    client.post(kv(root, "key/gone"), content=b"root")
    master = child(client, root)
    dev = child(client, root, "branch", branch="dev")
    client.post(kv(master, "key/shared"), content=b"master")
    client.delete(kv(master, "key/gone"))
    client.post(kv(dev, "key/shared"), content=b"dev")
    assert client.get(kv(root, "key/shared")).content == b"root"
    assert client.get(kv(master, "key/shared")).content == b"master"
    assert client.get(kv(dev, "key/shared")).content == b"dev"
    assert client.get(kv(master, "key/gone")).status_code == 404
    assert client.get(kv(dev, "key/gone")).content == b"root"
    assert client.get(kv(f"{root[:8]}:dev", "key/shared")).content == b"dev"
    assert client.get(kv(f"{root[:8]}:master", "keys")).json() == ["shared"]


def test_diamond_read_through_merge(client: httpx.Client, root: str) -> None:
    client.post(kv(root, "key/base"), content=b"root")
    left = child(client, root)
    right = child(client, root, "branch", branch="right")
    client.post(kv(left, "key/l"), content=b"left")
    client.post(kv(right, "key/r"), content=b"right")
    for uuid in (left, right):
        client.post(f"/api/node/{uuid}/commit")
    merged = client.post(f"/api/repo/{root}/merge",
                         json={"mergeType": "conflict-free", "parents": [left, right]})
    assert merged.status_code == 200, merged.text
    m = merged.json()["child"]
    assert client.get(kv(m, "keys")).json() == ["base", "l", "r"]
    assert client.get(kv(m, "key/base")).content == b"root"


def test_merge_conflict_refused_then_resolved(client: httpx.Client, root: str) -> None:
    client.post(kv(root, "key/x"), content=b"root")
    left = child(client, root)
    right = child(client, root, "branch", branch="other")
    client.post(kv(left, "key/x"), content=b"left")
    client.post(kv(right, "key/x"), content=b"right")
    client.delete(kv(right, "key/x2"))
    for uuid in (left, right):
        client.post(f"/api/node/{uuid}/commit")
    before = client.get(f"/api/repo/{root}/info").json()["DAG"]["Nodes"]
    refused = client.post(f"/api/repo/{root}/merge", json={"parents": [left, right]})
    assert refused.status_code == 409
    assert refused.json()["code"] == "MERGE_CONFLICT"
    assert refused.json()["conflicts"] == [{"instance": "kv", "key": "x"}]
    assert client.get(f"/api/repo/{root}/info").json()["DAG"]["Nodes"].keys() == before.keys()
    resolved = client.post(f"/api/repo/{root}/resolve",
                           json={"data": ["kv"], "parents": [right, left], "note": "right wins"})
    assert resolved.status_code == 200, resolved.text
    assert client.get(kv(resolved.json()["child"], "key/x")).content == b"right"


def test_unversioned_instance_is_repo_wide(client: httpx.Client) -> None:
    root = client.post("/api/repos", json={}).json()["root"]
    client.post(f"/api/repo/{root}/instance",
                json={"typename": "keyvalue", "dataname": "kv", "versioned": "false"})
    version = child(client, root)  # root is now committed
    assert client.post(kv(version, "key/k"), content=b"v").status_code == 200
    assert client.post(kv(root, "key/k2"), content=b"v2").status_code == 200
    assert client.get(kv(root, "key/k")).content == b"v"
    assert client.get(kv(version, "keys")).json() == ["k", "k2"]
    info = client.get(f"/api/node/{root}/kv/info").json()
    assert info["Base"]["Versioned"] is False
