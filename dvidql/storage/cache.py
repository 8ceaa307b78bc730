"""What was decoded from blobs, kept in memory by content reference.

A blob never changes once written: its reference is the hash of its bytes. So whatever was
decoded from it stays right forever, at every version and in every process sharing the store,
and the cache needs no invalidation. Hot reads (labels at points, which touch one block each)
then fetch and decompress a block once instead of at every request.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

__all__ = ["DecodedCache"]


class DecodedCache:
    """A least-recently-used map of decoded values within a byte budget (0: keeps nothing).
    Used from the event loop only, so it needs no lock."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> Any | None:
        found = self._items.get(key)
        if found is None:
            return None
        self._items.move_to_end(key)
        return found[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Keep ``value`` (weighing ``nbytes``), dropping the least recently used values
        while over budget; a value larger than the whole budget is not kept."""
        if nbytes > self.max_bytes or key in self._items:
            return
        self._items[key] = (value, nbytes)
        self.nbytes += nbytes
        while self.nbytes > self.max_bytes:
            _, (_, dropped) = self._items.popitem(last=False)
            self.nbytes -= dropped
