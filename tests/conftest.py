"""Live servers for the tests: real uvicorn processes on loopback, each on its own store.

Every test that starts servers through the ``server`` and ``make_server`` fixtures runs twice,
once per store backend: the embedded store (a fresh directory) and the distributed one (a
fresh PostgreSQL database and S3 bucket on the session's test services).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.services import (
    Services,
    fresh_bucket,
    fresh_database,
    services,  # noqa: F401 - the session fixture, for every test
)

BACKENDS = ("embedded", "distributed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Store:
    """Where a server keeps its data: the command-line options and environment naming it."""

    args: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def embedded(cls, directory: Path) -> Store:
        return cls(("--data", str(directory)))

    @classmethod
    def distributed(cls, running: Services) -> Store:
        """A new, empty PostgreSQL database and S3 bucket."""
        return cls(("--meta", fresh_database(running),
                    "--blobs", f"s3://{fresh_bucket(running)}/blocks",
                    "--s3-endpoint", running.s3_endpoint),
                   {"DVIDQL_S3_ACCESS_KEY": running.s3_access_key,
                    "DVIDQL_S3_SECRET_KEY": running.s3_secret_key,
                    "DVIDQL_S3_REGION": running.s3_region})


@dataclass
class LiveServer:
    """A ``dvidql serve`` process; ``restart`` keeps the store and port. Its store is the
    embedded one in ``data`` unless ``store`` names another."""

    data: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=_free_port)
    output: Path | None = None  # where the server's stdout and stderr go (appended)
    store: Store | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        store = self.store or Store.embedded(self.data)
        cmd = [sys.executable, "-m", "dvidql", "serve", *store.args,
               "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
               *self.args]
        env = {**os.environ, **store.env, **self.env}
        if self.output is None:
            self.process = subprocess.Popen(cmd, env=env)
        else:
            with self.output.open("ab") as sink:
                self.process = subprocess.Popen(cmd, env=env, stdout=sink,
                                                stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dvidql serve exited with {self.process.returncode}")
            try:
                httpx.get(f"{self.url}/api/server/info", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("dvidql serve did not answer within 30 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self, sig: int = signal.SIGTERM) -> None:
        self.stop(sig)
        self.start()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The store backend of the servers this test starts."""
    return str(request.param)


@pytest.fixture(scope="session")
def new_store(backend: str, request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Store]:
    """Makes fresh, empty stores of the session's backend."""
    if backend == "embedded":
        return lambda: Store.embedded(tmp_path_factory.mktemp("store"))
    running: Services = request.getfixturevalue("services")
    return lambda: Store.distributed(running)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory,
           new_store: Callable[[], Store]) -> Iterator[LiveServer]:
    """One shared server for tests that create their own repos."""
    live = LiveServer(tmp_path_factory.mktemp("shared-store"), store=new_store())
    live.start()
    yield live
    live.stop()


@pytest.fixture
def make_server(tmp_path: Path, new_store: Callable[[], Store]) -> Iterator[object]:
    """Start servers with particular flags (read-only, admin token...) for one test, each on
    a fresh store unless ``like`` names a server whose store it shares."""
    started: list[LiveServer] = []

    def make(*args: str, env: dict[str, str] | None = None,
             like: LiveServer | None = None) -> LiveServer:
        store = like.store if like is not None else new_store()
        live = LiveServer(tmp_path / f"store{len(started)}", list(args), env or {},
                          store=store)
        live.start()
        started.append(live)
        return live

    yield make
    for live in started:
        live.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http
