from __future__ import annotations

import httpx
import pytest


def new_repo(http: httpx.Client, **settings: str) -> str:
    """A fresh repo with a keyvalue instance 'kv'; returns its root UUID."""
    root = http.post("/api/repos", json={"alias": "t"}).json()["root"]
    body = {"typename": "keyvalue", "dataname": "kv", **settings}
    assert http.post(f"/api/repo/{root}/instance", json=body).status_code == 200
    return root


def child(http: httpx.Client, parent: str, action: str = "newversion", **body: str) -> str:
    """Commit ``parent`` if needed, then make a child with ``action``; returns its UUID."""
    if not http.get(f"/api/node/{parent}/status").json()["Locked"]:
        assert http.post(f"/api/node/{parent}/commit").status_code == 200
    response = http.post(f"/api/node/{parent}/{action}", json=body)
    assert response.status_code == 200, response.text
    return response.json()["child"]


@pytest.fixture
def root(client: httpx.Client) -> str:
    return new_repo(client)
