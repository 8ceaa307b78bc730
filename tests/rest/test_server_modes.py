"""Restarts, crashes, read-only and full-write modes, the admin token and body limits."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.conftest import LiveServer
from tests.rest.conftest import child, new_repo


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_data_survives_restart(make_server, sig: int) -> None:  # type: ignore[no-untyped-def]
    live: LiveServer = make_server()
    with httpx.Client(base_url=live.url) as http:
        root = new_repo(http)
        http.post(f"/api/node/{root}/kv/key/a", content=b"before")
        version = child(http, root, note="after commit")
        http.post(f"/api/node/{version}/kv/key/a", content=b"acknowledged")
    live.restart(sig)
    with httpx.Client(base_url=live.url) as http:
        assert http.get(f"/api/node/{root}/kv/key/a").content == b"before"
        assert http.get(f"/api/node/{version}/kv/key/a").content == b"acknowledged"
        assert http.get(f"/api/node/{root[:6]}:master/note").json() == {"note": "after commit"}
        assert http.get(f"/api/node/{root}/status").json() == {"Locked": True}
        # counters continue after the restart instead of reusing ids
        again = child(http, version)
        info = http.get(f"/api/repo/{root}/info").json()["DAG"]["Nodes"]
        assert len({n["VersionID"] for n in info.values()}) == 3 and again in info


def test_second_server_on_the_same_store(make_server, backend: str) -> None:  # type: ignore[no-untyped-def]
    """The embedded store serves one process; the distributed one is for several."""
    live: LiveServer = make_server()
    if backend == "embedded":
        with pytest.raises(RuntimeError):
            make_server(like=live)
        return
    with httpx.Client(base_url=live.url) as http:
        root = new_repo(http)
    other: LiveServer = make_server(like=live)
    with httpx.Client(base_url=other.url) as http:
        assert root in http.get("/api/repos/info").json()


def test_read_only_mode(make_server) -> None:  # type: ignore[no-untyped-def]
    writable: LiveServer = make_server()
    with httpx.Client(base_url=writable.url) as http:
        root = new_repo(http)
        http.post(f"/api/node/{root}/kv/key/a", content=b"1")
    writable.stop()
    read_only: LiveServer = make_server("--read-only", like=writable)
    with httpx.Client(base_url=read_only.url) as http:
        assert http.get(f"/api/node/{root}/kv/key/a").content == b"1"
        for response in (
            http.post(f"/api/node/{root}/kv/key/a", content=b"2"),
            http.delete(f"/api/node/{root}/kv/key/a"),
            http.post("/api/repos", json={}),
            http.post(f"/api/node/{root}/commit"),
            http.post(f"/api/node/{root}/note", json={"note": "x"}),
            http.post(f"/api/repo/{root}/instance", json={"typename": "keyvalue",
                                                          "dataname": "b"}),
        ):
            assert response.status_code == 403 and response.json()["code"] == "READ_ONLY"
        assert http.post(f"/api/node/{root}/kv/keyvalues?json=true",
                         content=b'["a"]').json() == {"a": 1}
        assert http.get("/api/server/info").json()["Mode"] == "readonly"
        assert http.get(f"/api/node/{root}/kv/key/a").content == b"1"


def test_admin_token(make_server) -> None:  # type: ignore[no-untyped-def]
    live: LiveServer = make_server("--admin-token", "s3cret")
    with httpx.Client(base_url=live.url) as http:
        refused = http.post("/api/repos", json={})
        assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
        assert http.post("/api/repos?admintoken=wrong", json={}).status_code == 403
        assert http.get("/api/repos/info").json() == {}
        root = http.post("/api/repos?admintoken=s3cret", json={}).json()["root"]
        bearer = {"Authorization": "Bearer s3cret"}
        assert http.post("/api/repos", json={}, headers=bearer).status_code == 200
        http.post(f"/api/repo/{root}/instance", json={"typename": "keyvalue", "dataname": "kv"})
        http.post(f"/api/node/{root}/commit")
        # the admin may write to committed versions, as in DVID; others may not
        assert http.post(f"/api/node/{root}/kv/key/a", content=b"x").status_code == 409
        assert http.post(f"/api/node/{root}/kv/key/a?admintoken=s3cret",
                         content=b"x").status_code == 200


def test_full_write_mode(make_server) -> None:  # type: ignore[no-untyped-def]
    live: LiveServer = make_server("--full-write")
    with httpx.Client(base_url=live.url) as http:
        root = new_repo(http)
        http.post(f"/api/node/{root}/commit")
        assert http.post(f"/api/node/{root}/kv/key/a", content=b"x").status_code == 200
        assert http.get("/api/server/info").json()["Mode"] == "fullwrite"


def test_body_limit(make_server) -> None:  # type: ignore[no-untyped-def]
    live: LiveServer = make_server(env={"DVIDQL_MAX_BODY_BYTES": "1000"})
    with httpx.Client(base_url=live.url) as http:
        root = new_repo(http)
        too_big = http.post(f"/api/node/{root}/kv/key/a", content=b"x" * 1001)
        assert too_big.status_code == 413 and too_big.json()["code"] == "PAYLOAD_TOO_LARGE"
        assert http.get(f"/api/node/{root}/kv/key/a").status_code == 404

        def chunks():  # no Content-Length: the limit applies while streaming
            for _ in range(5):
                yield b"y" * 300

        assert http.post(f"/api/node/{root}/kv/key/b", content=chunks()).status_code == 413
        assert http.post(f"/api/node/{root}/kv/key/c", content=b"z" * 1000).status_code == 200


def test_config_file(make_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "dvidql.toml"
    config.write_text('[server]\nnote = "from toml"\nmode = "readonly"\n')
    live: LiveServer = make_server("--config", str(config))
    with httpx.Client(base_url=live.url) as http:
        info = http.get("/api/server/info").json()
        assert info["Note"] == "from toml" and info["Mode"] == "readonly"
        assert info["TOML location"].endswith("dvidql.toml")


def test_branch_ref_without_uuid_on_one_repo_server(make_server) -> None:  # type: ignore[no-untyped-def]
    live: LiveServer = make_server()
    with httpx.Client(base_url=live.url) as http:
        root = new_repo(http)
        http.post(f"/api/node/{root}/kv/key/a", content=b"root")
        leaf = child(http, root)
        http.post(f"/api/node/{leaf}/kv/key/a", content=b"leaf")
        assert http.get("/api/node/:master/kv/key/a").content == b"leaf"
        assert http.get("/api/node/:master~1/kv/key/a").content == b"root"
        http.post("/api/repos", json={})  # a second repo makes ':master' ambiguous
        response = http.get("/api/node/:master/kv/key/a")
        assert response.status_code == 400 and "exactly one repo" in response.json()["error"]
