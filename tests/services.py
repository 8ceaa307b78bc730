"""Throwaway PostgreSQL, S3 (Ceph radosgw) and Kafka-protocol (Tansu) servers for the tests.

The session fixture :func:`services` starts them with ``scripts/services up`` the first time
a test asks for them and stops them when the session ends. They are stopped as well when
pytest is interrupted (the finalizer, then ``atexit``), and when it is killed outright
(``up --watch`` leaves a watcher that stops them once this process is gone).

To reuse servers across runs, start them once and put their settings in the environment;
with ``DVIDQL_TEST_PG`` set, the fixture starts and stops nothing::

    DIR=$(mktemp -d); scripts/services up "$DIR"
    set -a; . "$DIR/env"; set +a
    .venv/bin/python -m pytest tests/storage/test_s3.py   # as often as wanted
    scripts/services down "$DIR"
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import boto3
import pytest
from botocore.config import Config

__all__ = ["Services", "fresh_bucket", "fresh_database", "s3_client", "services"]

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "services"
SCRIPT_TIMEOUT = 180  # seconds; `up` takes about 2 s, `install` may download packages


@dataclass(frozen=True)
class Services:
    """Where the test servers listen; the methods stop and restart one of them for fault
    tests (same port, same data)."""

    pg: str  # postgresql:// DSN of the cluster's ``postgres`` database (trust auth)
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_region: str
    kafka: str  # host:port
    directory: Path | None  # the servers' directory, None when it is not known

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Services:
        """From the ``DVIDQL_TEST_*`` variables that ``scripts/services up`` writes."""
        def need(name: str) -> str:
            value = env.get(name)
            if not value:
                raise RuntimeError(f"{name} is not set: set every DVIDQL_TEST_* variable of "
                                   "the file DIR/env that scripts/services up DIR writes")
            return value

        directory = env.get("DVIDQL_TEST_SERVICES_DIR")
        return cls(
            pg=need("DVIDQL_TEST_PG"),
            s3_endpoint=need("DVIDQL_TEST_S3_ENDPOINT"),
            s3_access_key=need("DVIDQL_TEST_S3_ACCESS_KEY"),
            s3_secret_key=need("DVIDQL_TEST_S3_SECRET_KEY"),
            s3_region=need("DVIDQL_TEST_S3_REGION"),
            kafka=need("DVIDQL_TEST_KAFKA"),
            directory=Path(directory) if directory else None,
        )

    def stop_s3(self) -> None:
        self._control("stop-s3")

    def start_s3(self) -> None:
        self._control("start-s3")

    def stop_pg(self) -> None:
        self._control("stop-pg")

    def start_pg(self) -> None:
        self._control("start-pg")

    def _control(self, command: str) -> None:
        if self.directory is None:
            pytest.fail("the servers came from the environment without "
                        "DVIDQL_TEST_SERVICES_DIR, so the fault tests cannot stop and restart "
                        "them: set it to the directory given to scripts/services up")
        run_script(command, self.directory)


def run_script(command: str, *args: str | Path) -> None:
    """Run ``scripts/services COMMAND ARGS``; its stderr says what failed and where the log is.

    If this process is interrupted meanwhile, the script is asked to stop (it then stops
    whatever it had started) and waited for."""
    # Output to a file, not a pipe: a daemon that kept a pipe open would hang the reader.
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen([str(SCRIPT), command, *map(str, args)],
                                   stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            returncode = process.wait(SCRIPT_TIMEOUT)
        except BaseException:
            process.terminate()
            process.wait(60)
            raise
        if returncode != 0:
            output.seek(0)
            raise RuntimeError(f"scripts/services {command} failed (exit {returncode}):\n"
                               f"{output.read()}")


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def _down(directory: Path) -> None:
    run_script("down", directory)


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """The test servers, started once per session (or taken from the environment)."""
    if os.environ.get("DVIDQL_TEST_PG"):
        yield Services.from_env(os.environ)
        return
    # Directly under the temporary directory: PostgreSQL's user must be able to enter it.
    directory = Path(tempfile.mkdtemp(prefix="dvidql-services-"))
    run_script("up", directory, "--watch", str(os.getpid()))
    atexit.register(_down, directory)  # in case the session's teardown never runs
    try:
        yield Services.from_env(_read_env(directory / "env"))
    finally:
        atexit.unregister(_down)
        _down(directory)


@functools.cache
def s3_client(services: Services) -> Any:
    """A plain (synchronous) boto3 client for the test S3 server, to set up and inspect
    buckets around the code under test."""
    return boto3.client(
        "s3",
        endpoint_url=services.s3_endpoint,
        aws_access_key_id=services.s3_access_key,
        aws_secret_access_key=services.s3_secret_key,
        region_name=services.s3_region,
        config=Config(s3={"addressing_style": "path"}),
    )


def fresh_bucket(services: Services) -> str:
    """The name of a new, empty bucket, so that tests do not see each other's objects."""
    name = f"dvidql-test-{uuid.uuid4().hex[:16]}"
    s3_client(services).create_bucket(Bucket=name)
    return name


def fresh_database(services: Services) -> str:
    """The DSN of a new, empty database in the test cluster.

    Synchronous so that sync and async tests and fixtures can call it alike; asyncpg runs on
    its own event loop in a helper thread."""
    name = f"dvidql_test_{uuid.uuid4().hex[:16]}"

    async def create() -> None:
        conn = await asyncpg.connect(services.pg, timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create()).result()
    return urlsplit(services.pg)._replace(path=f"/{name}").geturl()
