"""The S3 blob store against a real S3 server (Ceph's radosgw, from the ``services``
fixture): the conformance suites, ranged and many concurrent reads, and outages of the
server. Failures that radosgw does not produce on demand (throttling, 5xx, stalls, bodies
cut short, refused credentials, bucket races) come from a scripted stand-in endpoint."""

from __future__ import annotations

import asyncio
import random
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from dvidql.errors import Unavailable
from dvidql.storage.base import ByteRange, content_ref
from dvidql.storage.memory import memory_meta_store
from dvidql.storage.s3 import Retry, S3BlobStore
from dvidql.testing.storage import BlobStoreTests, VersionedKVTests, overridden_tests
from tests.services import Services, fresh_bucket, s3_client

MIB = 1 << 20
# What a person waits at most for an answer while S3 is down, with the default retries.
OUTAGE_ANSWER_SECONDS = 15


async def open_store(services: Services, bucket: str, prefix: str = "blocks/",
                     **options: Any) -> S3BlobStore:
    return await S3BlobStore.open(
        bucket, prefix, endpoint=services.s3_endpoint, access_key=services.s3_access_key,
        secret_key=services.s3_secret_key, region=services.s3_region, **options)


class TestS3BlobStore(BlobStoreTests):
    @pytest.fixture
    async def store(self, services: Services) -> AsyncIterator[S3BlobStore]:
        self.raw = s3_client(services)
        store = await open_store(services, fresh_bucket(services))
        yield store
        await store.close()

    def raw_put(self, store: S3BlobStore, ref: str, data: bytes) -> None:
        self.raw.put_object(Bucket=store.bucket, Key=store.prefix + ref, Body=data)

    def raw_get(self, store: S3BlobStore, ref: str) -> bytes | None:
        try:
            response = self.raw.get_object(Bucket=store.bucket, Key=store.prefix + ref)
        except self.raw.exceptions.NoSuchKey:
            return None
        return response["Body"].read()


class TestS3VersionedKV(VersionedKVTests):
    """Versioned data with its blobs on S3 (the metadata in memory)."""

    @pytest.fixture
    async def store(self, services: Services) -> AsyncIterator[tuple[Any, S3BlobStore]]:
        meta, blobs = memory_meta_store(), await open_store(services, fresh_bucket(services))
        yield meta, blobs
        await blobs.close()
        await meta.close()


@pytest.mark.parametrize("suite", [TestS3BlobStore, TestS3VersionedKV])
def test_subclasses_override_no_test(suite: type) -> None:
    assert overridden_tests(suite) == []


@pytest.fixture
async def store(services: Services) -> AsyncIterator[S3BlobStore]:
    store = await open_store(services, fresh_bucket(services))
    yield store
    await store.close()


# ----- against radosgw ---------------------------------------------------------------------


async def test_from_url_reads_bucket_and_prefix(services: Services) -> None:
    bucket = fresh_bucket(services)
    creds = {"endpoint": services.s3_endpoint, "access_key": services.s3_access_key,
             "secret_key": services.s3_secret_key, "region": services.s3_region}
    for url, prefix in [(f"s3://{bucket}", ""), (f"s3://{bucket}/", ""),
                        (f"s3://{bucket}/em/blocks", "em/blocks/"), (f"s3://{bucket}/x/", "x/")]:
        store = await S3BlobStore.from_url(url, **creds)
        try:
            assert (store.bucket, store.prefix) == (bucket, prefix)
            ref = await store.put(b"under " + prefix.encode())
            raw = s3_client(services).get_object(Bucket=bucket, Key=prefix + ref)
            assert raw["Body"].read() == b"under " + prefix.encode()
        finally:
            await store.close()
    for bad in ["http://bucket/x", "s3:///x", "s3://bucket/x?y=1", "bucket/x"]:
        with pytest.raises(ValueError, match="s3://bucket"):
            await S3BlobStore.from_url(bad, **creds)


async def test_bucket_is_created_at_open_also_by_two_at_once(services: Services) -> None:
    bucket = f"dvidql-test-{uuid.uuid4().hex[:16]}"  # nobody created it
    one, two = await asyncio.gather(open_store(services, bucket), open_store(services, bucket))
    try:
        ref = await one.put(b"shared")
        assert await two.get(ref) == b"shared"
        again = await open_store(services, bucket)  # the bucket exists now
        assert [r async for r in again.list()] == [ref]
        await again.close()
    finally:
        await one.close()
        await two.close()


async def test_a_put_of_stored_bytes_renews_their_time(store: S3BlobStore) -> None:
    """Garbage collection spares recently written blobs; a put that finds its bytes stored
    already must count as a write too, or a racing collection could take them."""
    ref = await store.put(b"shared block")
    first = await store.written_at(ref)
    assert first is not None and abs(first - time.time()) < 60
    (listed,) = [(r, t) async for r, t in store.list_with_times()]
    assert listed[0] == ref and listed[1] is not None and abs(listed[1] - first) < 1
    await asyncio.sleep(1.1)  # S3 times have one-second resolution
    assert await store.put(b"shared block") == ref
    renewed = await store.written_at(ref)
    assert renewed is not None and renewed > first
    assert await store.get(ref) == b"shared block"
    assert await store.written_at("0" * 32) is None


async def test_ranged_reads_of_a_large_object(store: S3BlobStore) -> None:
    data = random.Random(7).randbytes(3 * MIB + 17)
    ref = await store.put(data)
    rng = random.Random(8)
    cases = [(0, None), (0, 1), (MIB, 2 * MIB), (len(data) - 1, None), (len(data), None),
             (len(data) - 5, len(data) + 100), (123, 123)]
    for _ in range(20):
        start = rng.randrange(len(data) + 10)
        cases.append((start, rng.choice([None, start + rng.randrange(2 * MIB)])))
    got = await asyncio.gather(*(store.get(ref, ByteRange(a, b)) for a, b in cases))
    for (start, stop), part in zip(cases, got, strict=True):
        assert part == data[start:stop], (start, stop)


async def test_many_concurrent_reads_stay_within_the_bound(services: Services) -> None:
    store = await open_store(services, fresh_bucket(services), concurrency=16)
    try:
        datas = [b"object %d " % i * (1 + i % 50) for i in range(500)]
        refs = await store.put_many(datas)
        assert refs == [content_ref(d) for d in datas]
        in_flight = peak = 0
        get_object = store._client.get_object

        async def counted(**kwargs: Any) -> Any:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await get_object(**kwargs)
            finally:
                in_flight -= 1

        store._client.get_object = counted
        order = refs[::-1] + refs[:50]  # duplicates are read once
        assert await store.get_many(order) == datas[::-1] + datas[:50]
        assert peak == 16
        found = await store.visit_many(refs[:100], lambda i, data: None)
        assert found == [True] * 100
        assert peak == 16
        pages = 0
        list_objects = store._client.list_objects_v2

        async def small_pages(**kwargs: Any) -> Any:
            nonlocal pages
            pages += 1
            return await list_objects(MaxKeys=64, **kwargs)

        store._client.list_objects_v2 = small_pages
        assert [ref async for ref in store.list()] == sorted(refs)
        assert pages == 8
    finally:
        await store.close()


async def test_outage_is_unavailable_then_the_same_store_works_again(
        services: Services, store: S3BlobStore) -> None:
    ref = await store.put(b"before the outage")
    impatient = await open_store(services, store.bucket, store.prefix,
                                 retry=Retry(attempts=2, base=0.01))
    services.stop_s3()
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            await store.get(ref)
        waited = time.monotonic() - started
        assert waited < OUTAGE_ANSWER_SECONDS
        message = str(caught.value)
        assert store.endpoint in message and "get" in message and ref in message
        assert "after 6 attempts" in message and "reachable" in message
        operations: list[Callable[[], Awaitable[Any]]] = [
            lambda: impatient.get(ref), lambda: impatient.get(ref, ByteRange(1, 3)),
            lambda: impatient.get_many([ref, content_ref(b"x")]),
            lambda: impatient.visit_many([ref], lambda i, data: None),
            lambda: impatient.put(b"during the outage"), lambda: impatient.put_many([b"a"]),
            lambda: impatient.exists(ref), lambda: impatient.delete(ref),
            lambda: anext(impatient.list()),
            lambda: open_store(services, store.bucket, retry=Retry(attempts=1)),
        ]
        for operation in operations:
            with pytest.raises(Unavailable, match=re.escape(f"S3 at {store.endpoint} failed")):
                await operation()
    finally:
        services.start_s3()
    assert await store.get(ref) == b"before the outage"
    new = await store.put(b"after the outage")
    assert await impatient.get(new) == b"after the outage"
    assert sorted([r async for r in store.list()]) == sorted([ref, new])
    await impatient.close()


async def test_retries_ride_out_a_restart(services: Services) -> None:
    patient = await open_store(services, fresh_bucket(services),
                               retry=Retry(attempts=100, base=0.1, cap=0.1))  # ~5 s
    try:
        ref = await patient.put(b"still there")
        services.stop_s3()
        try:
            reading = asyncio.ensure_future(patient.get(ref))
            await asyncio.sleep(0.3)
            assert not reading.done()
        finally:
            await asyncio.to_thread(services.start_s3)
        assert await reading == b"still there"
    finally:
        await patient.close()


# ----- against a scripted endpoint ------------------------------------------------------

Answer = Callable[[web.Request], Awaitable[web.StreamResponse]]


def s3_error(status: int, code: str) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>scripted</Message>" \
               "</Error>"
        return web.Response(status=status, body=body.encode(),
                            content_type="application/xml")
    return answer


def s3_ok(body: bytes = b"") -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body)
    return answer


def s3_stall(seconds: float) -> Answer:
    async def answer(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.Response(body=b"too late")
    return answer


def s3_cut_short(body: bytes) -> Answer:
    """Promises more bytes than it sends, then drops the connection."""
    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(body) + 100)})
        await response.prepare(request)
        await response.write(body)
        assert request.transport is not None
        request.transport.close()
        return response
    return answer


class ScriptedS3:
    """Answers each request with the next scripted answer for its method and target
    (``bucket`` or ``object``); with none left, 200 and an empty body."""

    def __init__(self) -> None:
        self.script: dict[tuple[str, str], list[Answer]] = {}
        self.seen: list[tuple[str, str]] = []
        self.conditions: list[str | None] = []  # If-None-Match of each request

    def then(self, method: str, target: str, *answers: Answer) -> None:
        self.script.setdefault((method, target), []).extend(answers)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        target = "object" if "/" in request.path.strip("/") else "bucket"
        self.seen.append((request.method, target))
        self.conditions.append(request.headers.get("If-None-Match"))
        answers = self.script.get((request.method, target))
        return await (answers.pop(0) if answers else s3_ok())(request)


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[ScriptedS3, str]]:
    fake = ScriptedS3()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    yield fake, f"http://127.0.0.1:{sock.getsockname()[1]}"
    await runner.cleanup()


async def open_scripted(endpoint: str, **options: Any) -> S3BlobStore:
    options = {"retry": Retry(attempts=4, base=0.01), **options}
    return await S3BlobStore.open("bucket", endpoint=endpoint, access_key="key",
                                  secret_key="secret", **options)


async def test_throttling_and_server_errors_are_retried(
        scripted: tuple[ScriptedS3, str]) -> None:
    fake, endpoint = scripted
    store = await open_scripted(endpoint)
    fake.then("GET", "object", s3_error(503, "SlowDown"), s3_error(500, "InternalError"),
              s3_error(502, "BadGateway"), s3_ok(b"third time lucky"))
    assert await store.get("ref") == b"third time lucky"
    fake.then("PUT", "object", s3_error(503, "ServiceUnavailable"),
              s3_error(409, "ConditionalRequestConflict"))
    assert await store.put(b"data") == content_ref(b"data")
    assert fake.seen == [("HEAD", "bucket")] + [("GET", "object")] * 4 + [("PUT", "object")] * 3
    await store.close()


async def test_servers_without_conditional_writes_get_plain_puts(
        scripted: tuple[ScriptedS3, str]) -> None:
    fake, endpoint = scripted
    store = await open_scripted(endpoint)
    fake.then("PUT", "object", s3_error(501, "NotImplemented"))
    await store.put(b"one")
    await store.put(b"two")
    assert fake.seen[1:] == [("PUT", "object")] * 3
    assert fake.conditions[1:] == ["*", None, None]
    await store.close()


async def test_stalls_and_bodies_cut_short_are_retried(
        scripted: tuple[ScriptedS3, str]) -> None:
    fake, endpoint = scripted
    store = await open_scripted(endpoint, read_timeout=0.2)
    fake.then("GET", "object", s3_stall(2), s3_cut_short(b"partial"), s3_ok(b"whole"))
    assert await store.get("ref") == b"whole"
    assert fake.seen.count(("GET", "object")) == 3
    await store.close()


async def test_persistent_throttling_becomes_unavailable(
        scripted: tuple[ScriptedS3, str]) -> None:
    fake, endpoint = scripted
    store = await open_scripted(endpoint)
    fake.then("GET", "object", *[s3_error(503, "SlowDown")] * 10)
    with pytest.raises(Unavailable, match=r"failed to get s3://bucket/ref after 4 attempts: "
                                          r"SlowDown \(HTTP 503\): scripted"):
        await store.get("ref")
    assert fake.seen.count(("GET", "object")) == 4
    await store.close()


async def test_refusals_are_not_retried(scripted: tuple[ScriptedS3, str]) -> None:
    fake, endpoint = scripted
    store = await open_scripted(endpoint)
    fake.then("GET", "object", s3_error(403, "InvalidAccessKeyId"))
    with pytest.raises(Unavailable, match=re.escape(f"S3 at {endpoint} failed to get "
                                                    "s3://bucket/ref: InvalidAccessKeyId")
                       + ".*check the access key"):
        await store.get("ref")
    assert fake.seen.count(("GET", "object")) == 1
    await store.close()


async def test_bucket_races_at_open(scripted: tuple[ScriptedS3, str]) -> None:
    fake, endpoint = scripted
    for code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
        fake.seen.clear()
        fake.then("HEAD", "bucket", s3_error(404, "NoSuchBucket"))
        fake.then("PUT", "bucket", s3_error(409, code))
        await (await open_scripted(endpoint)).close()
        assert fake.seen == [("HEAD", "bucket"), ("PUT", "bucket"), ("HEAD", "bucket")]
    # Taken by someone else: the second look is refused.
    fake.then("HEAD", "bucket", s3_error(404, "NoSuchBucket"), s3_error(403, "AccessDenied"))
    fake.then("PUT", "bucket", s3_error(409, "BucketAlreadyExists"))
    with pytest.raises(Unavailable, match="failed to look up bucket s3://bucket/: HTTP 403: "
                                          "Forbidden; check the access key, the secret key"):
        await open_scripted(endpoint)
