"""Live servers for the tests: real uvicorn processes on loopback, each on its own store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.services import services  # noqa: F401 - the session fixture, for every test


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    """A ``dvidql serve`` process; ``restart`` keeps the data directory and port."""

    data: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=_free_port)
    output: Path | None = None  # where the server's stdout and stderr go (appended)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "dvidql", "serve", "--data", str(self.data),
               "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
               *self.args]
        if self.output is None:
            self.process = subprocess.Popen(cmd, env={**os.environ, **self.env})
        else:
            with self.output.open("ab") as sink:
                self.process = subprocess.Popen(cmd, env={**os.environ, **self.env},
                                                stdout=sink, stderr=subprocess.STDOUT)
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


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One shared server for tests that create their own repos."""
    live = LiveServer(tmp_path_factory.mktemp("shared-store"))
    live.start()
    yield live
    live.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[object]:
    """Start servers with particular flags (read-only, admin token...) for one test."""
    started: list[LiveServer] = []

    def make(*args: str, env: dict[str, str] | None = None, data: Path | None = None
             ) -> LiveServer:
        live = LiveServer(data or tmp_path / f"store{len(started)}", list(args), env or {})
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
