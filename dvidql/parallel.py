"""The worker threads for CPU-heavy batches (block codecs, copies out of the store's memory).

The codecs and numpy's copies release the GIL, so a batch split over the cores runs in
parallel; each part is one thread hop, since a hop costs far more than one small item.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["in_parallel"]

T = TypeVar("T")
_WORKERS = max(2, os.cpu_count() or 2)
_POOL = ThreadPoolExecutor(_WORKERS, thread_name_prefix="voxels")
_INLINE_WORK = 2  # items handled on the event loop without a thread hop


async def in_parallel(items: Sequence[T], work: Callable[[Sequence[T]], list[Any]]) -> list[Any]:
    """``work`` over contiguous parts of ``items`` on the pool; results in order."""
    if len(items) <= _INLINE_WORK:
        return work(items)
    step = -(-len(items) // _WORKERS)
    loop = asyncio.get_running_loop()
    parts = await asyncio.gather(*(loop.run_in_executor(_POOL, work, items[i:i + step])
                                   for i in range(0, len(items), step)))
    return [result for part in parts for result in part]
