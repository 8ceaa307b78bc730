"""Garbage collection of blobs that no version references any more.

Blocks reach the blob store before the metadata that points at them, so a failed write or an
overwritten block leaves an unreferenced blob: harmless, but it takes space. Collection
lists the blobs first, then reads every reference, and deletes the blobs listed that nothing
references. A write racing the collection puts its blob (renewing its time, even when the
bytes were stored already) before it commits the reference, so blobs written within
``min_age`` seconds are spared, and each one is looked at again just before it is deleted.
Stores that keep no times (the embedded one) are collected only while no server has them
open, which their directory lock ensures.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from dvidql.storage.versioned import VersionedKV

__all__ = ["GcReport", "collect_garbage"]

_DELETE_BATCH = 64


@dataclass(frozen=True)
class GcReport:
    blobs: int  # listed
    unreferenced: int
    spared: int  # unreferenced but written within min_age (or since the listing)
    deleted: int
    dry_run: bool

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (f"{self.blobs} blobs, {self.unreferenced} unreferenced: {verb} "
                f"{self.deleted}, spared {self.spared} written in the last minutes")


async def collect_garbage(kv: VersionedKV, *, min_age: float = 3600.0,
                          dry_run: bool = False) -> GcReport:
    """Delete (or, with ``dry_run``, count) blobs no entry references, older than
    ``min_age`` seconds."""
    cutoff = time.time() - min_age
    listed = [(ref, written) async for ref, written in kv.blobs.list_with_times()]
    referenced = await kv.blob_refs()  # after the listing: blobs listed are all settled
    unreferenced = [(ref, written) for ref, written in listed if ref not in referenced]
    old = [ref for ref, written in unreferenced if written is None or written <= cutoff]
    spared = len(unreferenced) - len(old)
    deleted = 0
    if dry_run:
        return GcReport(len(listed), len(unreferenced), spared, len(old), True)

    async def delete(ref: str) -> bool:
        written = await kv.blobs.written_at(ref)  # a put since the listing renews the time
        if written is not None and written > cutoff:
            return False
        await kv.blobs.delete(ref)
        return True

    for start in range(0, len(old), _DELETE_BATCH):
        done = await asyncio.gather(*(delete(r) for r in old[start:start + _DELETE_BATCH]))
        deleted += sum(done)
    return GcReport(len(listed), len(unreferenced), spared + len(old) - deleted, deleted,
                    False)
