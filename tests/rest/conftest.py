from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from dvidql.config import Settings
from dvidql.datatypes.base import DataHandle
from dvidql.service import Service
from dvidql.storage.memory import MemoryBlobStore, memory_meta_store
from dvidql.versions.dag import Node, Repo


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


@dataclass
class InProcess:
    """A service on an in-memory store with one repo holding an annotation instance 'syn',
    and a writing handle on it at the root, for tests that call operations directly."""

    service: Service
    repo: Repo
    node: Node
    syn: DataHandle


@pytest.fixture
async def in_process(tmp_path: Path) -> AsyncIterator[InProcess]:
    service = Service(Settings(data=tmp_path), memory_meta_store(), MemoryBlobStore())
    repo = await service.repos.create_repo(alias="log")
    repo, node = service.repos.resolve(repo.root)
    await service.create_instance(service.caller(None), repo, node,
                                  {"typename": "annotation", "dataname": "syn"})
    repo, node = service.repos.resolve(repo.root)
    syn = service.handle_at(repo, node, service.repos.instance(repo, "syn"),
                            service.caller(None), write=True)
    yield InProcess(service, repo, node, syn)
    await service.close()
