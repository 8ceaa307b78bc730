"""``dvidql gc``: blobs left unreferenced by overwrites and deletes go; nothing a version can
still read does, on either store backend."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import LiveServer, Store

BIG = 80 * 1024  # over the inline limit, so every value is a blob
BLOCK = 32


def _gc(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dvidql", "gc", *store.args, *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **store.env})


def _counts(run: subprocess.CompletedProcess[str]) -> tuple[int, int, int]:
    assert run.returncode == 0, run.stderr
    found = re.search(r"(\d+) unreferenced: (?:would delete|deleted) (\d+), spared (\d+)",
                      run.stdout)
    assert found, run.stdout
    unreferenced, deleted, spared = map(int, found.groups())
    return unreferenced, deleted, spared


def _fill(http: httpx.Client) -> tuple[str, str, dict[str, bytes]]:
    """Three unreferenced blobs (an overwritten value, a deleted one, an overwritten block)
    and data at two versions; returns (root, child, what each should read)."""
    root = http.post("/api/repos", json={}).json()["root"]
    for body in ({"typename": "keyvalue", "dataname": "kv"},
                 {"typename": "uint8blk", "dataname": "g", "BlockSize": str(BLOCK),
                  "Compression": "none"}):
        assert http.post(f"/api/repo/{root}/instance", json=body).status_code == 200
    block = f"/api/node/{root}/g/raw/0_1_2/{BLOCK}_{BLOCK}_{BLOCK}/0_0_0"
    for path, value in ((f"/api/node/{root}/kv/key/a", b"a" * BIG),
                        (f"/api/node/{root}/kv/key/b", b"b" * BIG),
                        (f"/api/node/{root}/kv/key/b", b"B" * BIG),  # b's first blob: garbage
                        (f"/api/node/{root}/kv/key/c", b"c" * BIG),
                        (block, bytes([1]) * BLOCK**3),
                        (block, bytes([2]) * BLOCK**3)):  # the first block: garbage
        assert http.post(path, content=value).status_code == 200
    assert http.delete(f"/api/node/{root}/kv/key/c").status_code == 200  # c's blob: garbage
    assert http.post(f"/api/node/{root}/commit").status_code == 200
    child = http.post(f"/api/node/{root}/newversion", json={}).json()["child"]
    assert http.post(f"/api/node/{child}/kv/key/a", content=b"A" * BIG).status_code == 200
    expected = {f"/api/node/{root}/kv/key/a": b"a" * BIG,  # the parent still reads it
                f"/api/node/{child}/kv/key/a": b"A" * BIG,
                f"/api/node/{child}/kv/key/b": b"B" * BIG,
                block: bytes([2]) * BLOCK**3}
    return root, child, expected


def _check(live: LiveServer, expected: dict[str, bytes], gone: list[str]) -> None:
    with httpx.Client(base_url=live.url, timeout=30) as http:
        for path, value in expected.items():
            response = http.get(path)
            assert response.status_code == 200 and response.content == value, path
        for path in gone:
            assert http.get(path).status_code == 404, path


def test_gc(backend: str, new_store: Callable[[], Store], tmp_path: Path) -> None:
    store = new_store()
    live = LiveServer(tmp_path / "unused", store=store)
    live.start()
    try:
        with httpx.Client(base_url=live.url, timeout=30) as http:
            root, _, expected = _fill(http)
        gone = [f"/api/node/{root}/kv/key/c"]
        if backend == "embedded":  # one process per directory: not while it is served
            refused = _gc(store, "--min-age", "0")
            assert refused.returncode == 1 and "in use" in refused.stderr, refused.stderr
            live.stop()
        else:  # the distributed store is collected while it serves
            assert _counts(_gc(store)) == (3, 0, 3)  # all three written just now: spared
        assert _counts(_gc(store, "--min-age", "0", "--dry-run")) == (3, 3, 0)
        assert _counts(_gc(store, "--min-age", "0")) == (3, 3, 0)
        assert _counts(_gc(store, "--min-age", "0")) == (0, 0, 0)
        if backend == "embedded":
            live.start()
        _check(live, expected, gone)
    finally:
        live.stop()
