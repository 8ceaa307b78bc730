"""S3 backend for blobs: each blob is one object named ``<prefix><content reference>``.

Content addressing makes every object immutable, so a put of bytes already stored sends
nothing twice (a conditional ``If-None-Match: *`` PUT, answered 412, then a server-side copy
onto itself that renews its modification time, which garbage collection reads as "in use";
with a server that has no conditional writes the store overwrites the same bytes, which is
as good), and readers need no coordination. Any S3 server works: AWS, Ceph's radosgw,
MinIO... (path-style addressing, a custom endpoint).

One long-lived client per store, with as many pooled connections as requests may be in
flight (a semaphore bounds them). Transient failures (throttling, 5xx, timeouts, dropped
connections) are retried here, with exponential backoff and full jitter, around the request
and the read of its body; whatever still fails is :class:`~dvidql.errors.Unavailable`, with
the endpoint and the operation in the message. Connections are made afresh as needed, so
the same store works again once the server is back.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aioboto3
import aiohttp
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from typing_extensions import Buffer

from dvidql.errors import Unavailable
from dvidql.storage.base import BlobStore, ByteRange, content_ref

__all__ = ["Retry", "S3BlobStore"]

T = TypeVar("T")
Item = TypeVar("Item")

DEFAULT_CONCURRENCY = 64

_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded",
    "RequestTimeout", "InternalError", "ServiceUnavailable",
    "ConditionalRequestConflict",  # AWS: a concurrent conditional write of the same key
})
_TRANSIENT_STATUS = frozenset({500, 502, 503, 504})
_TRANSIENT_EXCEPTIONS = (
    BotoConnectionError, HTTPClientError, IncompleteReadError, aiohttp.ClientError,
    asyncio.TimeoutError,
)
_HINTS = {  # by S3 error code, or exception name
    "AccessDenied": "check the access key's permissions on the bucket",
    "InvalidAccessKeyId": "check the access key",
    "SignatureDoesNotMatch": "check the secret key",
    "NoSuchBucket": "the bucket was removed while in use; restarting recreates it",
    "PermanentRedirect": "the bucket is in another region: check the region",
    "NoCredentialsError": "give an access key and secret key",
}
_STATUS_HINTS = {  # for answers without an error code (to HEAD requests)
    301: "the bucket is in another region: check the region",
    403: "check the access key, the secret key and their permissions on the bucket",
}


@dataclass(frozen=True, slots=True)
class Retry:
    """How often, and how patiently, a failing request is tried: ``attempts`` in all, the
    n-th retry after a random pause of up to ``min(cap, base * 2**n)`` seconds. The defaults
    ride out a restart of a second or two and give up within about 3 s of refusals."""

    attempts: int = 6
    base: float = 0.1
    cap: float = 2.0

    def pause(self, retry: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2**retry))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        return _code(exc) in _TRANSIENT_CODES or _status(exc) in _TRANSIENT_STATUS
    return isinstance(exc, _TRANSIENT_EXCEPTIONS)


def _describe(exc: BaseException) -> str:
    """What went wrong, for a person: the S3 error code or the connection failure, and a
    hint at what to check where there is one."""
    if isinstance(exc, ClientError):
        code, status = _code(exc), _status(exc)
        message = exc.response.get("Error", {}).get("Message")
        text = f"HTTP {status}" if code in ("", str(status)) else f"{code} (HTTP {status})"
        text += f": {message}" if message else ""
        hint = _HINTS.get(code) or _STATUS_HINTS.get(status)
    else:
        text = str(exc) or type(exc).__name__
        hint = ("is the server up and reachable?" if _is_transient(exc)
                else _HINTS.get(type(exc).__name__))
    return f"{text}; {hint}" if hint else text


@functools.cache
def _session() -> aioboto3.Session:
    """One session per process: it caches the parsed service model, which makes opening a
    store take milliseconds instead of a tenth of a second. Keys go to each client."""
    return aioboto3.Session()


class S3BlobStore(BlobStore):
    """Blobs in one bucket under a key prefix; open with :meth:`open` or :meth:`from_url`."""

    def __init__(self, client: Any, bucket: str, prefix: str, *, concurrency: int,
                 retry: Retry, resources: AsyncExitStack) -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint: str = client.meta.endpoint_url
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._retry = retry
        self._resources = resources
        self._if_absent = {"IfNoneMatch": "*"}  # emptied if the server does not know it

    @classmethod
    async def open(
        cls,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        concurrency: int = DEFAULT_CONCURRENCY,
        retry: Retry = Retry(),
        connect_timeout: float = 2.0,
        read_timeout: float = 15.0,
    ) -> S3BlobStore:
        """Connect, and create the bucket if it is missing. ``endpoint`` None means AWS;
        keys None mean the AWS default credential chain. The timeouts are per attempt (the
        read timeout bounds each wait for data, not a whole transfer)."""
        config = Config(
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "total_max_attempts": 1},  # retried by Retry
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=concurrency,
        )
        resources = AsyncExitStack()
        client = await resources.enter_async_context(_session().client(
            "s3", endpoint_url=endpoint, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key, region_name=region, config=config))
        store = cls(client, bucket, prefix, concurrency=concurrency, retry=retry,
                    resources=resources)
        try:
            await store._ensure_bucket(region)
        except BaseException:
            await resources.aclose()
            raise
        return store

    @classmethod
    async def from_url(
        cls,
        url: str,
        *,
        endpoint: str | None,
        access_key: str | None,
        secret_key: str | None,
        region: str = "us-east-1",
        **options: Any,
    ) -> S3BlobStore:
        """Open ``s3://bucket`` or ``s3://bucket/prefix`` (the prefix gets a trailing ``/``);
        ``options`` are :meth:`open`'s."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"an S3 blob store URL is s3://bucket/optional/prefix, not {url!r}")
        prefix = parts.path.strip("/")
        return await cls.open(parts.netloc, f"{prefix}/" if prefix else "", endpoint=endpoint,
                              access_key=access_key, secret_key=secret_key, region=region,
                              **options)

    async def close(self) -> None:
        await self._resources.aclose()

    # ----- requests ------------------------------------------------------------------------

    async def _request(self, what: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` holding a connection slot, retried while it fails transiently; every
        other failure, and the last one, becomes Unavailable."""
        retry = 0
        while True:
            try:
                async with self._slots:
                    return await call()
            except (BotoCoreError, ClientError, *_TRANSIENT_EXCEPTIONS) as exc:
                if not _is_transient(exc) or retry + 1 >= self._retry.attempts:
                    tries = f" after {retry + 1} attempts" if retry else ""
                    raise Unavailable(
                        f"S3 at {self.endpoint} failed to {what} s3://{self.bucket}/{key}"
                        f"{tries}: {_describe(exc)}") from exc
            await asyncio.sleep(self._retry.pause(retry))
            retry += 1

    async def _map(self, fn: Callable[[Item], Awaitable[T]], items: Sequence[Item]) -> list[T]:
        """``fn`` over ``items`` by at most ``concurrency`` workers, results in order; the
        first failure cancels the rest, so nothing is left running behind the caller."""
        results: dict[int, T] = {}
        pending = iter(enumerate(items))

        async def worker() -> None:
            for i, item in pending:
                results[i] = await fn(item)

        workers = [asyncio.ensure_future(worker())
                   for _ in range(min(self.concurrency, len(items)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            raise
        return [results[i] for i in range(len(items))]

    async def _ensure_bucket(self, region: str) -> None:
        """Create the bucket unless it exists; a concurrent creation by another process
        (BucketAlreadyOwnedByYou / BucketAlreadyExists) is fine if the bucket is usable."""
        async def exists() -> bool:
            try:
                await self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _status(exc) == 404:
                    return False
                raise
            return True

        async def create() -> bool:
            location = {} if region == "us-east-1" else {
                "CreateBucketConfiguration": {"LocationConstraint": region}}
            try:
                await self._client.create_bucket(Bucket=self.bucket, **location)
            except ClientError as exc:
                if _code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
                return False
            return True

        if await self._request("look up bucket", "", exists):
            return
        if not await self._request("create bucket", "", create):
            await self._request("look up bucket", "", exists)  # ours to use, or refused

    # ----- BlobStore ----------------------------------------------------------------------

    async def put(self, data: bytes) -> str:
        ref = content_ref(data)
        key = self.prefix + ref

        async def upload() -> None:
            try:
                await self._client.put_object(Bucket=self.bucket, Key=key, Body=data,
                                              **self._if_absent)
            except ClientError as exc:
                if _status(exc) == 412:  # stored already, and so the same bytes
                    await self._client.copy_object(
                        Bucket=self.bucket, Key=key, MetadataDirective="REPLACE",
                        CopySource={"Bucket": self.bucket, "Key": key})
                    return
                if _code(exc) != "NotImplemented" or not self._if_absent:
                    raise
                self._if_absent = {}
                await self._client.put_object(Bucket=self.bucket, Key=key, Body=data)

        await self._request("put", key, upload)
        return ref

    async def put_many(self, datas: Sequence[bytes]) -> list[str]:
        return await self._map(self.put, datas)

    async def get(self, ref: str, byte_range: ByteRange | None = None) -> bytes | None:
        key = self.prefix + ref
        extra: dict[str, str] = {}
        if byte_range is not None:
            start, stop = byte_range.start, byte_range.stop
            if stop is not None and stop <= start:  # S3 has no empty range
                return b"" if await self.exists(ref) else None
            if start > 0 or stop is not None:
                extra["Range"] = f"bytes={start}-{'' if stop is None else stop - 1}"
        ranged = bool(extra)

        async def download() -> bytes | None:
            try:
                response = await self._client.get_object(Bucket=self.bucket, Key=key, **extra)
            except ClientError as exc:
                if _code(exc) == "NoSuchKey":  # not NoSuchBucket: that is an error
                    return None
                if ranged and _status(exc) == 416:  # the object exists; the range is past it
                    return b""
                raise
            body = response["Body"]
            try:
                data: bytes = await body.read()
            finally:
                body.close()  # a connection broken mid-body is not reused
            return data

        return await self._request("get", key, download)

    async def get_many(self, refs: Sequence[str]) -> list[bytes | None]:
        """Each distinct reference is read once."""
        unique = list(dict.fromkeys(refs))
        found = dict(zip(unique, await self._map(self.get, unique), strict=True))
        return [found[r] for r in refs]

    async def visit_many(self, refs: Sequence[str],
                         visit: Callable[[int, Buffer], None]) -> list[bool]:
        """Visits each blob on a worker thread as soon as it has arrived, so that decoding
        overlaps the downloads still in flight; each distinct reference is read once."""
        where: dict[str, list[int]] = {}
        for i, ref in enumerate(refs):
            where.setdefault(ref, []).append(i)

        def visit_all(ref: str, data: bytes) -> None:
            for i in where[ref]:
                visit(i, data)

        async def one(ref: str) -> bool:
            data = await self.get(ref)
            if data is not None:
                await asyncio.to_thread(visit_all, ref, data)
            return data is not None

        unique = list(where)
        found = dict(zip(unique, await self._map(one, unique), strict=True))
        return [found[r] for r in refs]

    async def exists(self, ref: str) -> bool:
        key = self.prefix + ref

        async def head() -> bool:
            try:
                await self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _status(exc) == 404:
                    return False
                raise
            return True

        return await self._request("look up", key, head)

    async def delete(self, ref: str) -> None:
        key = self.prefix + ref

        async def remove() -> None:
            await self._client.delete_object(Bucket=self.bucket, Key=key)

        await self._request("delete", key, remove)

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        async for ref, _ in self.list_with_times(prefix):
            yield ref

    async def written_at(self, ref: str) -> float | None:
        key = self.prefix + ref

        async def head() -> float | None:
            try:
                found = await self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _status(exc) == 404:
                    return None
                raise
            return float(found["LastModified"].timestamp())

        return await self._request("look up", key, head)

    async def list_with_times(self, prefix: str = ""
                              ) -> AsyncIterator[tuple[str, float | None]]:
        """References in key order with their last write, a page (up to 1000) per request."""
        start = self.prefix + prefix
        token: dict[str, str] = {}
        while True:
            page = await self._request(
                "list", f"{start}*", functools.partial(
                    self._client.list_objects_v2, Bucket=self.bucket, Prefix=start, **token))
            for item in page.get("Contents", ()):
                yield item["Key"][len(self.prefix):], float(item["LastModified"].timestamp())
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}
