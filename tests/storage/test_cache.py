"""The cache of decoded blobs: least recently used values go first, within a byte budget."""

from __future__ import annotations

from dvidql.storage.cache import DecodedCache


def test_least_recently_used_values_go_first() -> None:
    cache = DecodedCache(30)
    cache.put("a", "A", 10)
    cache.put("b", "B", 10)
    cache.put("c", "C", 10)
    assert cache.get("a") == "A"  # now the most recently used
    cache.put("d", "D", 10)
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == ["A", "C", "D"]
    assert (len(cache), cache.nbytes) == (3, 30)


def test_values_over_the_budget_are_not_kept() -> None:
    cache = DecodedCache(30)
    cache.put("a", "A", 10)
    cache.put("huge", "H", 31)
    assert cache.get("huge") is None
    assert cache.get("a") == "A"
    nothing = DecodedCache(0)
    nothing.put("a", "A", 1)
    assert (len(nothing), nothing.get("a")) == (0, None)


def test_a_key_is_kept_once() -> None:
    cache = DecodedCache(100)
    cache.put("a", "A", 10)
    cache.put("a", "A again", 10)
    assert (cache.get("a"), cache.nbytes) == ("A", 10)
