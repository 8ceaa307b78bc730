"""Label downsampling (dvid-reference.md §4.9): against a plain Python mode, exhaustively over
three labels, errors, and the time of one 64^3 output block."""

from __future__ import annotations

import itertools
import time
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dvidql.datatypes.labelmap.downres import downres_labels


def _reference(children: np.ndarray) -> np.ndarray:
    """The most frequent non-zero child of every voxel, smaller label on ties, 0 if none."""
    z, y, x = (n // 2 for n in children.shape)
    out = np.zeros((z, y, x), np.uint64)
    for k, j, i in itertools.product(range(z), range(y), range(x)):
        octant = children[2 * k:2 * k + 2, 2 * j:2 * j + 2, 2 * i:2 * i + 2].ravel().tolist()
        counts = Counter(label for label in octant if label)
        if counts:
            out[k, j, i] = min(counts, key=lambda label: (-counts[label], label))
    return out


# few distinct labels (many zeros and ties), some near the top of uint64
_LABELS = st.sampled_from([0, 0, 0, 1, 2, 3, 7, (1 << 63) + 1, (1 << 64) - 1])


@settings(max_examples=80, deadline=None)
@given(st.tuples(*(st.integers(0, 4) for _ in range(3))).flatmap(
    lambda half: arrays(np.uint64, tuple(2 * n for n in half), elements=_LABELS)))
def test_matches_reference(children: np.ndarray) -> None:
    np.testing.assert_array_equal(downres_labels(children), _reference(children))


def test_every_octant_of_three_labels() -> None:
    """All 3^8 octants over {0, 1, 2}, placed side by side along x."""
    octants = np.array(list(itertools.product((0, 1, 2), repeat=8)), np.uint64)
    children = octants.reshape(-1, 2, 2, 2).transpose(1, 2, 0, 3).reshape(2, 2, -1)
    np.testing.assert_array_equal(downres_labels(children), _reference(children))


def test_majority_ties_and_zeros() -> None:
    children = np.zeros((2, 2, 8), np.uint64)
    children[:, :, 0:2].flat = [0, 0, 0, 0, 0, 0, 0, 9]  # one label among zeros wins
    children[:, :, 2:4].flat = [5, 5, 3, 3, 0, 0, 0, 0]  # tie: smaller label
    children[:, :, 4:6].flat = [8, 8, 8, 4, 4, 0, 0, 0]  # most frequent non-zero
    assert downres_labels(children).tolist() == [[[9, 3, 8, 0]]]


@pytest.mark.parametrize(("children", "message"), [
    (np.zeros((2, 3, 2), np.uint64), r"3 even edges, not \(2, 3, 2\)"),
    (np.zeros((2, 2), np.uint64), r"3 even edges, not \(2, 2\)"),
    (np.zeros((2, 2, 2), np.int64), "must be uint64, not int64"),
])
def test_refuses(children: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        downres_labels(children)


def test_one_block_time() -> None:
    """A 128^3 volume to one 64^3 block; the time is printed (run with -s), not asserted."""
    rng = np.random.default_rng(0)
    children = rng.integers(0, 6, (128, 128, 128)).astype(np.uint64) * 1_000_003
    downres_labels(children)
    seconds = []
    for _ in range(5):
        start = time.perf_counter()
        out = downres_labels(children)
        seconds.append(time.perf_counter() - start)
    print(f"downres_labels 128^3 -> 64^3: best {min(seconds) * 1e3:.1f} ms of 5")
    np.testing.assert_array_equal(out[:4, :4, :4], _reference(children[:8, :8, :8]))


def test_input_is_left_alone() -> None:
    for shape in ((2, 2, 2), (4, 2, 6)):
        children = np.arange(np.prod(shape), dtype=np.uint64).reshape(shape)[::-1].copy()
        before = children.copy()
        downres_labels(children)
        np.testing.assert_array_equal(children, before)
