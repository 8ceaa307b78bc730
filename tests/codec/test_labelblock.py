"""DVID's compressed label block: golden data from DVID, blocks built by hand from the byte
layout (dvid-reference.md §4.2), round trips and every malformed input; reading labels at a
few voxels agrees with decoding the whole block. Every test runs with the numba kernels and with
the numpy fallback, and the two agree on random blocks, valid or corrupted."""

from __future__ import annotations

import gzip
import importlib.util
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dvidql.codec import labelblock
from dvidql.codec.labelblock import (
    block_labels,
    decode_label_block,
    dict_relabel,
    encode_label_block,
    label_counts,
    labels_at_voxels,
    parse_label_block,
    relabel_block,
)

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = ["fib19-64x64x64-sample1", "fib19-64x64x64-sample2", "cx-64x64x64-sample1",
           "cx-64x64x64-sample2"]
CUBE = (64, 64, 64)
NUMBA = importlib.util.find_spec("numba") is not None


@pytest.fixture(autouse=True, params=["numba", "numpy"])
def kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs each test with the numba kernels and with the numpy fallback (a test that
    parametrizes ``kernels`` itself replaces this and chooses on its own)."""
    if request.param == "numba" and not NUMBA:
        pytest.skip("numba (the fast extra) is not installed")
    monkeypatch.setattr(labelblock, "use_numba", request.param == "numba")
    return str(request.param)


def sample(name: str) -> np.ndarray:
    raw = gzip.decompress((FIXTURES / f"{name}.dat.gz").read_bytes())
    return np.frombuffer(raw, "<u8").reshape(CUBE)


def golden_block() -> bytes:
    return gzip.decompress((FIXTURES / "fib19-64x64x64-sample1-block.dat.gz").read_bytes())


def stream_block() -> bytes:
    body = (FIXTURES / "stream_1block.dat").read_bytes()
    bx, by, bz, nbytes = struct.unpack_from("<4i", body)
    assert (bx, by, bz, nbytes + 16) == (0, 0, 0, len(body))
    return gzip.decompress(body[16:])


def sub_blocks(labels: np.ndarray) -> np.ndarray:
    """(number of sub-blocks, 512) voxels in stored order, the layout's reference reading."""
    gz, gy, gx = (n // 8 for n in labels.shape)
    return labels.reshape(gz, 8, gy, 8, gx, 8).transpose(0, 2, 4, 1, 3, 5).reshape(-1, 512)


def reference_encode(labels: np.ndarray) -> bytes:
    """A plain, loop-by-loop reading of §4.2 with DVID's first-appearance orders."""
    subs = sub_blocks(labels).tolist()
    palette = list(dict.fromkeys(v for sub in subs for v in sub))
    where = {v: i for i, v in enumerate(palette)}
    gz, gy, gx = (n // 8 for n in labels.shape)
    out = struct.pack(f"<4I{len(palette)}Q", gx, gy, gz, len(palette), *palette)
    if len(palette) == 1:
        return out
    lists = [list(dict.fromkeys(sub)) for sub in subs]
    out += struct.pack(f"<{len(lists)}H", *map(len, lists))
    out += b"".join(struct.pack(f"<{len(lst)}I", *(where[v] for v in lst)) for lst in lists)
    for sub, lst in zip(subs, lists, strict=True):
        width = (len(lst) - 1).bit_length()
        if width:
            bits = "".join(format(lst.index(v), f"0{width}b") for v in sub)
            out += int(bits, 2).to_bytes(len(bits) // 8, "big")
    return out


# ----- golden data from DVID ------------------------------------------------------------------

def test_golden_block_decodes_to_dvid_labels() -> None:
    np.testing.assert_array_equal(decode_label_block(golden_block(), CUBE),
                                  sample("fib19-64x64x64-sample1"))


def test_encoding_is_byte_exact_with_dvid() -> None:
    """DVID orders the palette, and each sub-block's list, by first appearance."""
    labels = sample("fib19-64x64x64-sample1")
    assert encode_label_block(labels) == golden_block()
    assert block_labels(golden_block()).tolist() == list(dict.fromkeys(
        sub_blocks(labels).ravel().tolist()))


def test_stream_block() -> None:
    """A POST /blocks payload from DVID's tests: its palette is not in first-appearance order
    (DVID built it another way), so re-encoding gives the same voxels and size, not bytes."""
    data = stream_block()
    labels = decode_label_block(data, CUBE)
    assert sorted(block_labels(data).tolist()) == sorted(np.unique(labels).tolist())
    again = encode_label_block(labels)
    assert len(again) == len(data)
    np.testing.assert_array_equal(decode_label_block(again, CUBE), labels)


@pytest.mark.parametrize("name", SAMPLES)
def test_real_samples_match_the_reference_encoder(name: str) -> None:
    labels = sample(name)
    data = encode_label_block(labels)
    assert data == reference_encode(labels)
    np.testing.assert_array_equal(decode_label_block(data, CUBE), labels)


# ----- blocks built by hand ------------------------------------------------------------------

def test_tiny_two_label_block() -> None:
    labels = np.full((8, 8, 8), 7, np.uint64)
    labels[4:] = 9  # the second half, in z, of the only sub-block
    data = (struct.pack("<4I2Q", 1, 1, 1, 2, 7, 9) + struct.pack("<H2I", 2, 0, 1)
            + b"\x00" * 32 + b"\xff" * 32)
    assert encode_label_block(labels) == data
    np.testing.assert_array_equal(decode_label_block(data, (8, 8, 8)), labels)


def test_three_bit_values_cross_byte_boundaries() -> None:
    """Five labels need 3 bits: values 0..4 repeating pack MSB-first across bytes."""
    labels = (np.arange(512) % 5 + 100).astype(np.uint64).reshape(8, 8, 8)
    bits = "".join(format(k % 5, "03b") for k in range(512))
    data = (struct.pack("<4I5Q", 1, 1, 1, 5, 100, 101, 102, 103, 104)
            + struct.pack("<H5I", 5, 0, 1, 2, 3, 4) + int(bits, 2).to_bytes(192, "big"))
    assert data[-192:][:2] == bytes([0b00000101, 0b00111000])
    assert encode_label_block(labels) == data
    np.testing.assert_array_equal(decode_label_block(data, (8, 8, 8)), labels)


def test_solid_block_is_24_bytes() -> None:
    labels = np.full(CUBE, 2**64 - 1, np.uint64)
    data = struct.pack("<4IQ", 8, 8, 8, 1, 2**64 - 1)
    assert encode_label_block(labels) == data and len(data) == 24
    np.testing.assert_array_equal(decode_label_block(data, CUBE), labels)


def test_sub_block_without_labels_is_background() -> None:
    """Ns = 0 gives label 0; Ns = 1 the sub-block's single label, both without bits."""
    data = struct.pack("<4I2Q", 2, 1, 1, 2, 5, 6) + struct.pack("<2HI", 0, 1, 1)
    labels = decode_label_block(data, (8, 8, 16))
    assert (labels[:, :, :8] == 0).all() and (labels[:, :, 8:] == 6).all()


@pytest.mark.parametrize("count", [2, 3, 4, 5, 8, 9, 16, 17, 100, 255, 256, 257, 511, 512])
def test_every_width_up_to_512_labels(count: int) -> None:
    rng = np.random.default_rng(count)
    labels = rng.permutation(np.arange(512) % count).astype(np.uint64).reshape(8, 8, 8)
    data = encode_label_block(labels)
    width = (count - 1).bit_length()
    assert len(data) == 16 + 8 * count + 2 + 4 * count + 64 * width
    assert data == reference_encode(labels)
    np.testing.assert_array_equal(decode_label_block(data, (8, 8, 8)), labels)


# ----- round trips ---------------------------------------------------------------------------

edges = st.sampled_from(range(8, 129, 8))


@st.composite
def label_blocks(draw: st.DrawFn) -> np.ndarray:
    """Blocks of 8 to 128 voxels an edge: per-voxel noise over a pool of 1 to 602 labels
    (up to 512 per sub-block), or smooth regions of ``cell`` voxels, with 0 and 2^64-1."""
    shape = draw(st.tuples(edges, edges, edges))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pool = np.concatenate([np.array([0, 2**64 - 1], np.uint64),
                           rng.integers(0, 2**64 - 1, 600, np.uint64, endpoint=True)])
    pool = pool[:draw(st.integers(1, len(pool)))]
    cell = draw(st.sampled_from([1, 2, 3, 8, 13]))
    coarse = rng.choice(pool, tuple(-(-n // cell) for n in shape))
    labels = coarse.repeat(cell, 0).repeat(cell, 1).repeat(cell, 2)
    return np.ascontiguousarray(labels[:shape[0], :shape[1], :shape[2]])


@settings(max_examples=40, deadline=None)
@given(label_blocks())
def test_round_trip(labels: np.ndarray) -> None:
    data = encode_label_block(labels)
    np.testing.assert_array_equal(decode_label_block(data, labels.shape), labels)
    assert set(block_labels(data).tolist()) == set(np.unique(labels).tolist())


@settings(max_examples=10, deadline=None)
@given(edges, edges, edges, st.integers(0, 2**64 - 1))
def test_solid_round_trip(z: int, y: int, x: int, label: int) -> None:
    labels = np.full((z, y, x), label, np.uint64)
    data = encode_label_block(labels)
    assert data == struct.pack("<4IQ", x // 8, y // 8, z // 8, 1, label)
    np.testing.assert_array_equal(decode_label_block(data, labels.shape), labels)


def test_non_contiguous_input() -> None:
    labels = sample("cx-64x64x64-sample1")
    view = labels[::-1, :, ::-1]
    np.testing.assert_array_equal(decode_label_block(encode_label_block(view), CUBE), view)


# ----- palette access ------------------------------------------------------------------------

def test_relabel_rewrites_only_the_palette() -> None:
    data = golden_block()
    palette = block_labels(data).tolist()
    mapping = {palette[0]: 1, palette[1]: 1, palette[5]: 2**64 - 1}
    mapped = relabel_block(memoryview(data), mapping)
    assert len(mapped) == len(data) and mapped[16 + 8 * len(palette):] == data[
        16 + 8 * len(palette):]
    want = sample("fib19-64x64x64-sample1").copy()
    for old, new in mapping.items():
        want[want == old] = new
    np.testing.assert_array_equal(decode_label_block(mapped, CUBE), want)
    assert block_labels(mapped).tolist() == [mapping.get(v, v) for v in palette]


def test_relabel_solid_block() -> None:
    solid = struct.pack("<4IQ", 8, 8, 8, 1, 5)
    assert relabel_block(solid, {5: 6}) == struct.pack("<4IQ", 8, 8, 8, 1, 6)
    assert relabel_block(solid, {4: 6}) == solid


# ----- malformed input -----------------------------------------------------------------------

TWO = struct.pack("<4I2Q", 1, 1, 1, 2, 7, 9) + struct.pack("<H2I", 2, 0, 1) + bytes(64)


# Each bad part is one that some voxel uses, so reading every voxel meets it too.
MALFORMED = [
    (b"\x01\x00", (8, 8, 8), "shorter than its 16-byte header"),
    (struct.pack("<4I", 1, 1, 1, 0), (8, 8, 8), r"empty palette \(N = 0\)"),
    (struct.pack("<4IQ", 1, 1, 1, 2, 7), (8, 8, 8), "truncated: its palette of 2 labels"),
    (struct.pack("<4IQ", 1, 1, 1, 1, 7), (8, 8, 16), r"\(1, 1, 1\) sub-blocks"),
    (struct.pack("<4IQ", 1, 1, 1, 1, 7) + b"\x00", (8, 8, 8), "solid label block has 25"),
    (struct.pack("<4I2Q", 2, 1, 1, 2, 7, 9) + b"\x01\x00", (8, 8, 16),
     "truncated in its 2 sub-block label counts"),
    (struct.pack("<4I2QH", 1, 1, 1, 2, 7, 9, 513) + bytes(9 * 64 + 513 * 4), (8, 8, 8),
     "claims 513 labels"),
    (TWO[:-1], (8, 8, 8), "label block has 105 bytes; .* need 106"),
    (TWO + b"\x00", (8, 8, 8), "label block has 107 bytes; .* need 106"),
    (TWO[:-72] + struct.pack("<2I", 0, 2) + b"\xff" * 64, (8, 8, 8),
     "palette index 2 but only 2"),
    (struct.pack("<4I3Q", 1, 1, 1, 3, 7, 8, 9) + struct.pack("<H3I", 3, 0, 1, 2)
     + b"\xc0" + bytes(127), (8, 8, 8), "voxel index beyond its sub-block's labels"),
]


@pytest.mark.parametrize(("data", "shape", "message"), MALFORMED)
def test_malformed_blocks(data: bytes, shape: tuple[int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_label_block(data, shape)


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 12), (0, 8, 8), (1032, 8, 8)])
def test_bad_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="multiple of 8 up to 1024"):
        encode_label_block(np.zeros(shape, np.uint64))
    with pytest.raises(ValueError, match="multiple of 8 up to 1024"):
        decode_label_block(struct.pack("<4IQ", 1, 1, 1, 1, 0), shape)  # type: ignore[arg-type]


def test_bad_dtype_and_short_palette_reads() -> None:
    with pytest.raises(ValueError, match="uint64 labels, not int64"):
        encode_label_block(np.zeros((8, 8, 8), np.int64))
    for read in (block_labels, lambda d: relabel_block(d, {})):
        with pytest.raises(ValueError, match="truncated"):
            read(struct.pack("<4IQ", 1, 1, 1, 3, 7))


@given(st.integers(0, 2**32), st.sampled_from([(8, 8, 8), (16, 8, 24)]), st.integers(1, 40))
def test_label_counts_equal_numpy_unique(seed: int, shape: tuple[int, int, int],
                                         labels: int) -> None:
    rng = np.random.default_rng(seed)
    volume = np.sort(rng.integers(0, labels, shape, np.uint64), axis=2)  # runs, as segmentation
    ids, counts = label_counts(volume)
    want_ids, want_counts = np.unique(volume, return_counts=True)
    assert ids.tolist() == want_ids.tolist() and counts.tolist() == want_counts.tolist()


def test_decode_relabels_the_palette() -> None:
    volume = np.arange(16 * 16 * 16, dtype=np.uint64).reshape(16, 16, 16) % 7
    data = encode_label_block(volume)
    mapped = decode_label_block(data, volume.shape, lambda p: p * np.uint64(10))
    assert np.array_equal(mapped, volume * np.uint64(10))


# ----- labels at a few voxels ----------------------------------------------------------------

def every_voxel(shape: tuple[int, ...]) -> np.ndarray:
    return np.indices(shape).reshape(3, -1).T


def assert_points_match_decode(data: bytes, shape: tuple[int, int, int], points: np.ndarray,
                               relabel: object = None) -> None:
    """Also through the block parsed once, as a cache keeps it."""
    want = decode_label_block(data, shape, relabel)[tuple(points.T)]  # type: ignore[arg-type]
    for block in (data, parse_label_block(data, shape)):
        got = labels_at_voxels(block, shape, points, relabel)  # type: ignore[arg-type]
        assert got.dtype == np.uint64 and got.shape == (len(points),)
        np.testing.assert_array_equal(got, want)
    if relabel is None:  # one point at a time, as a single-point read takes it
        parsed = parse_label_block(data, shape)
        some = points[::max(1, len(points) // 500)]
        assert [parsed.label_at(*p) for p in some.tolist()] == want[::max(1, len(points) // 500)
                                                                    ].tolist()


def test_a_parsed_block_is_checked_once_and_keeps_its_shape() -> None:
    data = encode_label_block(np.arange(512, dtype=np.uint64).reshape(8, 8, 8) % 5)
    with pytest.raises(ValueError, match=r"truncated|bytes"):
        parse_label_block(data[:-1], (8, 8, 8))
    with pytest.raises(ValueError, match="sub-blocks"):
        parse_label_block(data, (8, 8, 16))
    block = parse_label_block(memoryview(data), (8, 8, 8))
    assert block.data == data and block.nbytes >= len(data)
    with pytest.raises(ValueError, match="shape"):
        labels_at_voxels(block, (16, 8, 8), np.array([[0, 0, 0]]))


def scramble(labels: np.ndarray) -> np.ndarray:
    return labels ^ np.uint64(0x5DEECE66D)


@pytest.mark.parametrize("name", ["golden", "stream", *SAMPLES])
def test_labels_at_every_voxel_of_real_blocks(name: str) -> None:
    data = {"golden": golden_block, "stream": stream_block}.get(
        name, lambda: encode_label_block(sample(name)))()
    assert_points_match_decode(data, CUBE, every_voxel(CUBE))
    assert_points_match_decode(data, CUBE, every_voxel(CUBE)[::997], scramble)
    assert_points_match_decode(data, CUBE, np.array([[63, 0, 63]]), scramble)


@pytest.mark.parametrize("count", [2, 3, 4, 5, 8, 9, 16, 17, 100, 255, 256, 257, 511, 512])
def test_labels_at_voxels_of_every_width(count: int) -> None:
    """Every bit offset of every width, in sub-blocks after narrower and wider ones."""
    rng = np.random.default_rng(count)
    labels = np.concatenate([rng.permutation(np.arange(512) % n).reshape(8, 8, 8)
                             for n in (3, count, 1, 300)], axis=2).astype(np.uint64)
    assert_points_match_decode(encode_label_block(labels), labels.shape, every_voxel(labels.shape))


def test_labels_at_voxels_beside_sub_blocks_without_labels() -> None:
    """Sub-blocks with Ns = 0 (label 0, never relabeled) take no list entries and no bits."""
    bits = "".join(format(k % 3, "02b") for k in range(512))
    data = (struct.pack("<4I3Q", 4, 1, 1, 3, 5, 6, 7) + struct.pack("<4H", 2, 0, 3, 0)
            + struct.pack("<5I", 2, 0, 1, 2, 0) + b"\x0f" * 64 + int(bits, 2).to_bytes(128, "big"))
    shape = (8, 8, 32)
    labels = decode_label_block(data, shape)
    assert (labels[:, :, 8:16] == 0).all() and (labels[:, :, 24:] == 0).all()
    assert set(labels[:, :, :8].ravel().tolist()) == {7, 5}
    assert set(labels[:, :, 16:24].ravel().tolist()) == {6, 7, 5}
    assert_points_match_decode(data, shape, every_voxel(shape))
    assert_points_match_decode(data, shape, every_voxel(shape), scramble)


@st.composite
def sub_block_counts(draw: st.DrawFn) -> np.ndarray:
    """Blocks of 8 to 64 voxels an edge whose sub-blocks each hold their own number of labels,
    1 to 512 (mostly few), drawn from one pool so that sub-blocks share palette entries."""
    shape = draw(st.tuples(*[st.sampled_from(range(8, 65, 8))] * 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    gz, gy, gx = (n // 8 for n in shape)
    counts = np.minimum(512, np.exp(rng.uniform(0, np.log(600), gz * gy * gx)).astype(int))
    pool = rng.integers(0, 2**64 - 1, 2048, np.uint64, endpoint=True)
    subs = np.stack([pool[rng.integers(0, 1536) + rng.permutation(np.arange(512) % k)]
                     for k in counts.tolist()])
    return np.ascontiguousarray(subs.reshape(gz, gy, gx, 8, 8, 8).transpose(0, 3, 1, 4, 2, 5)
                                .reshape(shape))


def some_points(shape: tuple[int, ...], seed: int, count: int) -> np.ndarray:
    """``count`` random points of the block, with its first and last voxel."""
    rng = np.random.default_rng(seed)
    corners = np.array([[0, 0, 0], [n - 1 for n in shape]])
    return np.concatenate([corners, rng.integers(0, shape, (count, 3))])


@settings(max_examples=40, deadline=None)
@given(st.one_of(sub_block_counts(), label_blocks()), st.integers(0, 2**32),
       st.sampled_from([1, 7, 300]), st.booleans())
def test_labels_at_voxels_match_decode(labels: np.ndarray, seed: int, count: int,
                                       mapped: bool) -> None:
    data = encode_label_block(labels)
    points = some_points(labels.shape, seed, count)
    assert_points_match_decode(data, labels.shape, points, scramble if mapped else None)
    np.testing.assert_array_equal(labels_at_voxels(data, labels.shape, points),
                                  labels[tuple(points.T)])


@settings(max_examples=10, deadline=None)
@given(edges, edges, edges, st.integers(0, 2**64 - 1), st.integers(0, 2**32))
def test_labels_at_voxels_of_solid_blocks(z: int, y: int, x: int, label: int,
                                          seed: int) -> None:
    data = struct.pack("<4IQ", x // 8, y // 8, z // 8, 1, label)
    points = some_points((z, y, x), seed, 5)
    assert labels_at_voxels(data, (z, y, x), points).tolist() == [label] * 7
    assert_points_match_decode(data, (z, y, x), points, scramble)


def test_labels_at_voxels_relabel_sees_few_labels() -> None:
    """The mapping is asked about the points' labels, or the palette when that is shorter."""
    data = golden_block()
    palette = block_labels(data).tolist()
    mapping = {palette[0]: 1, palette[3]: 2**64 - 1}
    asked: list[int] = []

    def relabel(labels: np.ndarray) -> np.ndarray:
        asked.append(len(labels))
        return dict_relabel(mapping)(labels)

    for points in (np.array([[1, 2, 3], [40, 50, 60]]), every_voxel(CUBE)):
        asked.clear()
        assert_points_match_decode(data, CUBE, points, relabel)
        # once by the decode, then by the raw and the parsed block
        assert asked == [len(palette), *[min(len(points), len(palette))] * 2]


def test_labels_at_no_voxels() -> None:
    got = labels_at_voxels(golden_block(), CUBE, np.zeros((0, 3), np.int64))
    assert got.dtype == np.uint64 and got.shape == (0,)


@pytest.mark.parametrize(("data", "shape", "message"), MALFORMED)
def test_labels_at_voxels_of_malformed_blocks(data: bytes, shape: tuple[int, int, int],
                                              message: str) -> None:
    with pytest.raises(ValueError, match=message):
        labels_at_voxels(data, shape, every_voxel(shape))


def test_labels_at_voxels_reads_only_what_points_use() -> None:
    """Only the size is checked for parts no point uses: the bad value here is at voxel 0."""
    bad = MALFORMED[-1][0]
    assert labels_at_voxels(bad, (8, 8, 8), np.array([[7, 7, 7]])).tolist() == [7]


@pytest.mark.parametrize("points", [
    np.array([1, 2, 3]), np.zeros((2, 2), np.int64), np.array([[0.5, 1, 2]]),
    np.array([[0, 0, 8]]), np.array([[-1, 0, 0]]), np.array([[0, 64, 0]], np.uint64),
])
def test_labels_at_bad_points(points: np.ndarray) -> None:
    with pytest.raises(ValueError, match="points must"):
        labels_at_voxels(TWO, (8, 8, 8), points)


@pytest.mark.parametrize("point", [(0, 0, 8), (-1, 0, 0), (0, 64, 0), (8, 0, 0)])
def test_label_at_a_point_outside_the_block(point: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="points must"):
        parse_label_block(TWO, (8, 8, 8)).label_at(*point)


def test_labels_at_voxels_bad_shape() -> None:
    with pytest.raises(ValueError, match="multiple of 8 up to 1024"):
        labels_at_voxels(TWO, (8, 8, 12), np.zeros((1, 3), np.int64))


# ----- the numba kernel against the numpy fallback --------------------------------------------

def both(run: Callable[[], object]) -> list[object]:
    """What ``run`` gives with the numba kernels and with the numpy fallback: its result, or
    its ValueError's message."""
    outcomes: list[object] = []
    for numba in (True, False):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(labelblock, "use_numba", numba)
            try:
                outcomes.append(run())
            except ValueError as error:
                outcomes.append(str(error))
    return outcomes


@pytest.mark.skipif(not NUMBA, reason="numba (the fast extra) is not installed")
@pytest.mark.parametrize("kernels", ["both"])  # replaces the fixture: this test runs both
@settings(max_examples=60, deadline=None)
@given(st.one_of(sub_block_counts(), label_blocks()), st.data(), st.booleans())
def test_numba_and_numpy_agree(kernels: str, labels: np.ndarray, data: st.DataObject,
                               mapped: bool) -> None:
    """The same bytes from the encoders; from the decoders, on valid blocks and on blocks with a
    few bytes changed in their index lists or their packed values (the checks before those are
    shared), the same labels or the same error."""
    encoded, again = both(lambda: encode_label_block(labels))
    assert encoded == again
    block = bytearray(encoded)  # type: ignore[arg-type]
    relabel = scramble if mapped else None

    def decode() -> np.ndarray:
        return decode_label_block(bytes(block), labels.shape, relabel)

    points = data.draw(arrays(np.int64, st.integers(1, 20).map(lambda n: (n, 3)),
                              elements=st.integers(0, min(labels.shape) - 1)))

    def at_points() -> np.ndarray:
        return labels_at_voxels(bytes(block), labels.shape, points, relabel)

    numba, numpy = both(decode)
    np.testing.assert_array_equal(numba, labels if relabel is None else scramble(labels))
    np.testing.assert_array_equal(numpy, numba)
    numba, numpy = both(at_points)
    np.testing.assert_array_equal(numba, decode()[tuple(points.T)])
    np.testing.assert_array_equal(numpy, numba)
    counts = 16 + 8 * len(block_labels(block))
    if counts == len(block):  # a solid block
        return
    lists = counts + 2 * (labels.size // 512)
    values = lists + 4 * int(np.frombuffer(block, "<u2", labels.size // 512, counts).sum())
    parts = [(lo, hi) for lo, hi in ((lists, values), (values, len(block))) if lo < hi]
    lo, hi = data.draw(st.sampled_from(parts))
    for at in data.draw(st.lists(st.integers(lo, hi - 1), min_size=1, max_size=4)):
        block[at] ^= data.draw(st.integers(1, 255))
    def one_at_a_time() -> list[int] | str:
        try:
            parsed = parse_label_block(bytes(block), labels.shape)
            return [parsed.label_at(*p) for p in points.tolist()]
        except ValueError as error:
            return str(error)

    for run in (decode, at_points):
        numba, numpy = both(run)
        if run is at_points and relabel is None:  # point by point: an error, or the labels
            scalar = one_at_a_time()
            if isinstance(numba, str):
                assert isinstance(scalar, str)
            else:
                assert scalar == numba.tolist()
        assert type(numba) is type(numpy)
        if isinstance(numba, str):
            assert numba == numpy
        else:
            np.testing.assert_array_equal(numba, numpy)
