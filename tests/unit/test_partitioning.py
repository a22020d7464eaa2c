"""partition_for must pick what Kafka's default partitioner picks, or the join loses pairs."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import example, given
from hypothesis import strategies as st

from streams.engine.partitioning import partition_for, partitions_for

counts = st.integers(min_value=1, max_value=1024)


@given(st.binary(max_size=64), counts)
@example(b"", 1)
@example(b"p-123", 12)
def test_bytes_keys_match_aiokafka_default_partitioner(key: bytes, n: int) -> None:
    all_partitions = list(range(n))
    assert partition_for(key, n) == DefaultPartitioner()(key, all_partitions, all_partitions)


@given(st.text(max_size=64), counts)
def test_str_keys_are_hashed_as_utf8(key: str, n: int) -> None:
    data = key.encode()
    assert partition_for(key, n) == DefaultPartitioner()(data, list(range(n)), [])
    assert partition_for(key, n) == partition_for(data, n)


# Kafka's UtilsTest.testMurmur2 vectors (signed Java ints); Kafka picks toPositive(h) % n.
JAVA_MURMUR2 = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("key", "java_hash"), JAVA_MURMUR2)
@pytest.mark.parametrize("n", [1, 3, 12, 2**31 - 1])
def test_matches_the_java_client(key: bytes, java_hash: int, n: int) -> None:
    assert partition_for(key, n) == (java_hash & 0x7FFFFFFF) % n


def test_partitions_must_be_positive() -> None:
    with pytest.raises(ValueError, match="partitions"):
        partition_for("p-1", 0)


@given(st.lists(st.text(max_size=24), max_size=300), counts)
@example([f"p-{i:06d}" for i in range(100)], 4)  # equal lengths: one vectorised group
@example(["a", "bb", "ccc", "dddd", "eeeee"] * 8, 7)  # every tail length
def test_many_keys_at_once_match_one_at_a_time(keys: list[str], n: int) -> None:
    assert partitions_for(keys, n) == [partition_for(k, n) for k in keys]


@given(st.binary(max_size=64))
def test_the_engines_murmur2_is_kafkas(data: bytes) -> None:
    from aiokafka.partitioner import murmur2 as kafka_murmur2

    from streams.engine.partitioning import murmur2

    assert murmur2(data) == kafka_murmur2(data)
