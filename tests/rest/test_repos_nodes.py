"""Server, repo and version endpoints against a live server."""

from __future__ import annotations

import httpx

from tests.rest.conftest import child


def test_server_info_types_help(client: httpx.Client) -> None:
    info = client.get("/api/server/info").json()
    assert info["DVID Version"].startswith("v")
    assert all(isinstance(v, str) for v in info.values())
    for field in ("Cores", "Storage backend", "Server uptime", "Mode"):
        assert field in info
    assert client.get("/api/server/types").json() == {
        "annotation": "github.com/janelia-flyem/dvid/datatype/annotation",
        "keyvalue": "github.com/janelia-flyem/dvid/datatype/keyvalue",
        "labelmap": "github.com/janelia-flyem/dvid/datatype/labelmap",
        "labelsz": "github.com/janelia-flyem/dvid/datatype/labelsz",
        "roi": "github.com/janelia-flyem/dvid/datatype/roi",
        "uint8blk": "github.com/janelia-flyem/dvid/datatype/imageblk/uint8blk"}
    index = client.get("/api/help")
    assert index.status_code == 200 and "/api/repos" in index.text
    assert "keyrangevalues" in client.get("/api/help/keyvalue").text
    assert "subvolblocks" in client.get("/api/help/uint8blk").text
    assert "labels" in client.get("/api/help/labelmap").text
    assert client.get("/api/help/nosuchtype").status_code == 404


def test_cors_headers(client: httpx.Client, root: str) -> None:
    origin = {"Origin": "http://viewer.example"}
    response = client.get("/api/repos/info", headers=origin)
    assert response.headers["access-control-allow-origin"] == "*"
    preflight = client.options(f"/api/node/{root}/kv/key/a", headers={
        **origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type"})
    assert preflight.status_code == 200
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert client.get("/api/node/nope/kv/keys",
                      headers=origin).headers["access-control-allow-origin"] == "*"
    data = client.get(f"/api/node/{root}/kv/keys", headers=origin)  # served past the router
    assert data.status_code == 200 and data.headers["access-control-allow-origin"] == "*"
    assert "content-range" in data.headers["access-control-expose-headers"].lower()
    assert data.headers["vary"] == "Origin"
    refused = client.get(f"/api/node/{root}/kv/nosuchendpoint", headers=origin)
    assert refused.status_code == 404 and refused.headers["access-control-allow-origin"] == "*"
    plain = client.get(f"/api/node/{root}/kv/keys")  # no Origin: no CORS headers, as before
    assert "access-control-allow-origin" not in plain.headers
    assert plain.headers["vary"] == "Origin"
    assert client.options(f"/api/node/{root}/kv/keys").status_code == 405  # not a preflight


def test_repo_info_shape(client: httpx.Client, root: str) -> None:
    client.post(f"/api/repo/{root}/info", json={"alias": "fly", "description": "a fly brain"})
    client.post(f"/api/repo/{root}/log", json={"log": ["imaged", "aligned"]})
    version = child(client, root, note="second")
    info = client.get(f"/api/repo/{root[:10]}/info").json()
    assert info["Root"] == root and info["Alias"] == "fly" and info["Description"] == "a fly brain"
    assert info["Log"][-1].endswith("  aligned")
    nodes = info["DAG"]["Nodes"]
    assert info["DAG"]["Root"] == root and set(nodes) == {root, version}
    r, v = nodes[root], nodes[version]
    assert r["Locked"] and not v["Locked"] and v["Note"] == "second"
    assert v["Parents"] == [r["VersionID"]] and r["Children"] == [v["VersionID"]]
    assert v["Branch"] == "" and isinstance(info["MutationID"], int)
    base = info["DataInstances"]["kv"]["Base"]
    assert base["TypeName"] == "keyvalue" and base["Name"] == "kv" and base["RepoUUID"] == root
    assert isinstance(base["Compression"], str) and len(base["DataUUID"]) == 32
    assert client.get("/api/repos/info").json()[root]["Alias"] == "fly"
    assert client.head(f"/api/repo/{root}").status_code == 200
    assert client.head("/api/repo/ffffffffffff0000").status_code == 404


def test_notes_logs_status_commit(client: httpx.Client, root: str) -> None:
    assert client.post(f"/api/node/{root}/note", json={"note": "hello"}).status_code == 200
    assert client.get(f"/api/node/{root}/note").json() == {"note": "hello"}
    assert client.post(f"/api/node/{root}/log", json={"log": ["one"]}).status_code == 200
    assert client.get(f"/api/node/{root}/log").json()["log"][0].endswith("  one")
    assert client.get(f"/api/node/{root}/status").json() == {"Locked": False}
    done = client.post(f"/api/node/{root}/commit", json={"note": "final", "log": ["two"]})
    assert done.json() == {"committed": root}
    assert client.get(f"/api/node/{root}/commit").json() == {"Locked": True}
    assert client.get(f"/api/node/{root}/note").json() == {"note": "final"}
    # committed versions refuse even note and log changes
    assert client.post(f"/api/node/{root}/note", json={"note": "x"}).status_code == 409
    assert client.post(f"/api/node/{root}/log", json={"log": ["x"]}).status_code == 409
    assert client.post(f"/api/node/{root}/commit").status_code == 409


def test_refs_branches_tags(client: httpx.Client, root: str) -> None:
    v1 = child(client, root, uuid="a" * 24 + root[:8])
    assert v1 == "a" * 24 + root[:8]
    v2 = child(client, v1)
    dev = child(client, v1, "branch", branch="dev", note="side")
    prefix = root[:6]
    resolve = lambda ref: client.get(f"/api/node/{ref}/note")  # noqa: E731
    assert resolve(f"{prefix}:master").status_code == 200
    assert client.get(f"/api/node/{prefix}:master/status").json() == {"Locked": False}
    assert client.get(f"/api/repo/{prefix}:master~1/info").status_code == 200
    assert client.get(f"/api/repo/{root}/branch-versions/master").json() == [v2, v1, root]
    assert client.get(f"/api/repo/{root}/branch-versions/dev").json() == [dev, v1, root]
    assert client.get(f"/api/node/{prefix}:dev/note").json() == {"note": "side"}
    assert client.get(f"/api/node/{prefix}:dev~1/status").json() == {"Locked": True}
    tag_name = f"release-{root[:6]}"
    tagged = client.post(f"/api/node/{v1}/tag", json={"tag": tag_name})
    assert tagged.json() == {"child": tag_name}
    assert client.get(f"/api/node/{tag_name}/status").json() == {"Locked": True}
    assert "Tag of version" in client.get(f"/api/node/{tag_name}/note").json()["note"]


def test_instance_tags_and_info(client: httpx.Client, root: str) -> None:
    created = client.post(f"/api/repo/{root}/instance",
                          json={"typename": "keyvalue", "dataname": "tagged",
                                "Tags": "type=meshes,owner=lab"})
    assert created.json()["result"].startswith("Added tagged [keyvalue]")
    assert client.get(f"/api/node/{root}/tagged/tags").json() == {"type": "meshes",
                                                                  "owner": "lab"}
    client.post(f"/api/node/{root}/tagged/tags", json={"extra": "1"})
    assert client.get(f"/api/node/{root}/tagged/tags").json()["extra"] == "1"
    client.post(f"/api/node/{root}/tagged/tags?replace=true", json={})
    assert client.get(f"/api/node/{root}/tagged/tags").json() == {}
    assert "keyvalue" in client.get(f"/api/node/{root}/tagged/help").text
