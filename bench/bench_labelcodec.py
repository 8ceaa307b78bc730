"""DVID's compressed label block codec against neuroglancer's compressed_segmentation.

Both code the same real 64^3 uint64 blocks of fly EM segmentation (DVID's fixtures, four
samples taken in turn), in the same run: dvidql's ``encode_label_block`` /
``decode_label_block`` against the C++ ``compressed_segmentation`` package's
``compress(labels, order='C')`` / ``decompress(...)`` with its 8^3 sub-blocks. dvidql is timed
with the active implementation (numba kernels when numba is installed) and with the numpy
fallback; kernels are compiled, or loaded from numba's cache, before timing. MB/s counts the raw
block (2 MiB of uint64 labels) per operation. The project's goals: decode at least 1.0x and
encode at least 0.5x compressed_segmentation's throughput.

A third group times reading one voxel's label, as ``GET .../label`` does: ``labels_at_voxels``
at one random point of a block, from its bytes and from the block parsed once as the server's
cache of decoded blocks keeps it, against ``decode_label_block`` of the whole block and
indexing it, in the same run. The goal: at least 20x faster.

Run: ``python -m bench.bench_labelcodec [--rounds 25] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import gzip
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import compressed_segmentation as cseg
import numpy as np

from bench.harness import Bench
from dvidql.codec import labelblock
from dvidql.codec.labelblock import (
    decode_label_block,
    encode_label_block,
    labels_at_voxels,
    parse_label_block,
)

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "codec" / "fixtures"
SAMPLES = ["fib19-64x64x64-sample1", "fib19-64x64x64-sample2", "cx-64x64x64-sample1",
           "cx-64x64x64-sample2"]
SHAPE = (64, 64, 64)
GOALS = {"decode": 1.0, "encode": 0.5, "label at a point": 20.0}


def load(name: str) -> np.ndarray:
    raw = gzip.decompress((FIXTURES / f"{name}.dat.gz").read_bytes())
    return np.frombuffer(raw, "<u8").reshape(SHAPE).copy()


@contextmanager
def implementation(name: str) -> Iterator[None]:
    """Code with the ``numba`` kernels or the ``numpy`` fallback inside the block."""
    active = labelblock.use_numba
    labelblock.use_numba = name == "numba"
    try:
        yield
    finally:
        labelblock.use_numba = active


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=25, help="passes over the samples")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    blocks = [load(name) for name in SAMPLES]
    ours = [encode_label_block(b) for b in blocks]
    theirs = [cseg.compress(b, order="C") for b in blocks]
    active = "numba" if labelblock.use_numba else "numpy"
    implementations = list(dict.fromkeys([active, "numpy"]))  # the active one first
    for block, a, b in zip(blocks, ours, theirs, strict=True):
        for name in implementations:  # also compiles the kernels
            with implementation(name):
                assert encode_label_block(block) == a
                assert np.array_equal(decode_label_block(a, SHAPE), block)
        assert np.array_equal(cseg.decompress(b, SHAPE, np.uint64, order="C"), block)
    n = args.rounds * len(blocks)
    nbytes = blocks[0].nbytes
    bench = Bench("labelcodec", repeats=args.repeats, params={
        "samples": ",".join(SAMPLES), "block": "64^3 uint64", "ops": n,
        "implementation": active, "numpy": np.__version__,
        **({"numba": version("numba")} if active == "numba" else {}),
        "dvidql_bytes": sum(map(len, ours)), "cseg_bytes": sum(map(len, theirs))})
    k = len(blocks)
    points = np.random.default_rng(1).integers(0, SHAPE, (n, 1, 3))
    for i, point in enumerate(points):
        assert labels_at_voxels(ours[i % k], SHAPE, point)[0] == blocks[i % k][tuple(point[0])]
    parsed = [parse_label_block(b, SHAPE) for b in ours]  # as the server's block cache keeps
    Op = Callable[[int], object]
    # group: its baseline's name and operation, then dvidql's cases: name, implementation, op
    cases: dict[str, tuple[str, Op, list[tuple[str, str, Op]]]] = {
        "encode": ("compressed_segmentation", lambda i: cseg.compress(blocks[i % k], order="C"),
                   [(f"dvidql labelblock, {name}", name,
                     lambda i: encode_label_block(blocks[i % k])) for name in implementations]),
        "decode": ("compressed_segmentation",
                   lambda i: cseg.decompress(theirs[i % k], SHAPE, np.uint64, order="C"),
                   [(f"dvidql labelblock, {name}", name,
                     lambda i: decode_label_block(ours[i % k], SHAPE))
                    for name in implementations]),
        "label at a point": (
            f"decode_label_block ({active}), then index",
            lambda i: decode_label_block(ours[i % k], SHAPE)[tuple(points[i, 0])],
            [("labels_at_voxels, 1 point", active,
              lambda i: labels_at_voxels(ours[i % k], SHAPE, points[i])),
             ("labels_at_voxels, 1 point, parsed block", active,
              lambda i: labels_at_voxels(parsed[i % k], SHAPE, points[i]))]),
    }
    summary = {}
    for group, (base_name, baseline, mine) in cases.items():
        size = None if group == "label at a point" else nbytes
        base = bench.measure(base_name, baseline, n, baseline=True, group=group, nbytes=size)
        for name, using, op in mine:
            with implementation(using):
                ratio = bench.measure(name, op, n, group=group, nbytes=size).ops_per_s / (
                    base.ops_per_s)
            verdict = "met" if ratio >= GOALS[group] else "NOT met"
            summary[f"{group} throughput of {name} vs {base_name}"] = (
                f"{ratio:.2f}x (goal >= {GOALS[group]}x: {verdict})")
    bench.report(summary)


if __name__ == "__main__":
    main()
