"""The embedded store keeps acknowledged writes across a killed process, and one process only."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dvidql.errors import Unavailable
from dvidql.storage.lmdb import open_embedded
from dvidql.storage.versioned import VersionedKV
from dvidql.testing.storage import VersionedWorld
from dvidql.versions.repos import RepoManager

BIG = b"durable blob " * 10_000

# Writes through both the raw metadata store and the service's versioned write path, says
# "ok" once every transaction is acknowledged, then dies without any chance to flush.
CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys

    from dvidql.storage.lmdb import open_embedded
    from dvidql.testing.storage import VersionedWorld

    BIG = b"durable blob " * 10_000

    async def main():
        meta, blobs = open_embedded(sys.argv[1])
        async with meta.transaction() as txn:
            txn.put(b"\\x00durable", b"acknowledged")
        world = VersionedWorld(meta, blobs, inline_limit=64)
        root = await world.start()
        await world.put(root, "a", b"small", b"inline value")
        await world.put(root, "a", b"big", BIG)
        await world.commit(root)
        print("ok", root.version_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


def _run_child(script: str, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    child = await asyncio.to_thread(_run_child, CHILD, directory)
    assert child.returncode == -signal.SIGKILL, child.stderr
    word, version = child.stdout.split()
    assert word == "ok"

    meta, blobs = open_embedded(directory)  # the dead process's lock is gone
    try:
        assert await meta.get(b"\x00durable") == b"acknowledged"
        kv = VersionedKV(meta, blobs, inline_limit=64)
        repos = RepoManager(meta, kv)
        await repos.load()
        (repo,) = repos.repos.values()
        root = repo.nodes[int(version)]
        assert root.locked
        a = repo.instances["a"].instance_id
        lineage = repos.lineage(repo, root.version_id)
        assert await kv.get(a, b"small", lineage) == b"inline value"
        assert await kv.get(a, b"big", lineage) == BIG
    finally:
        await meta.close()


async def test_second_open_in_the_same_process_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    meta, blobs = open_embedded(directory)
    try:
        async with meta.transaction() as txn:
            txn.put(b"\x00k", b"v")
        with pytest.raises(Unavailable):
            open_embedded(directory)
        # The refused open left the first one working.
        assert await meta.get(b"\x00k") == b"v"
        world = VersionedWorld(meta, blobs)
        root = await world.start()
        await world.put(root, "a", b"k", b"still writable")
        assert await world.get(root, "a", b"k") == b"still writable"
    finally:
        await meta.close()
    meta, _ = open_embedded(directory)  # free again once closed
    try:
        assert await meta.get(b"\x00k") == b"v"
    finally:
        await meta.close()


async def test_second_process_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    script = textwrap.dedent(
        """
        import sys
        from dvidql.errors import Unavailable
        from dvidql.storage.lmdb import open_embedded
        try:
            open_embedded(sys.argv[1])
        except Unavailable as exc:
            print(exc.code)
        else:
            print("opened")
        """
    )
    meta, _ = open_embedded(directory)
    try:
        child = await asyncio.to_thread(_run_child, script, directory)
    finally:
        await meta.close()
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "UNAVAILABLE"
