"""Kafka's default key partitioner, so Watchkeeper can place events without a client.

The join needs a prediction and its label on the same partition. Producers key both by
prediction_id and let the client's default partitioner pick; the producer helper (which
sends batches with an explicit partition) and the app's re-keying must pick exactly the same
partition, so they call :func:`partition_for` instead of guessing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["murmur2", "partition_for", "partitions_for"]


def partition_for(key: str | bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions``.

    ``murmur2(key) & 0x7fffffff % partitions``, as in the Java client and aiokafka's
    ``DefaultPartitioner``; a ``str`` key is hashed as its UTF-8 bytes, which is what a plain
    client sends as the key.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    data = key.encode() if isinstance(key, str) else key
    return (murmur2(data) & 0x7FFFFFFF) % partitions


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's ``Utils.murmur2``), as an unsigned 32-bit int
    like aiokafka's (the partitioner masks the sign bit off either way).

    Written out here so the engine imports no Kafka client; a unit test checks it against
    aiokafka's."""
    length = len(data)
    m = 0x5BD1E995
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length & ~3
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length & 3
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


_M = np.uint32(0x5BD1E995)


def partitions_for(keys: Sequence[str], partitions: int) -> list[int]:
    """:func:`partition_for` of many keys at once: the same murmur2, vectorised over keys
    of equal length with numpy (the join hashes every event; in pure Python that was a
    sixth of a busy worker's CPU)."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    if len(keys) < 16:  # numpy's fixed cost is larger than a few scalar hashes
        return [partition_for(key, partitions) for key in keys]
    if partitions == 1:
        return [0] * len(keys)
    encoded = [key.encode() for key in keys]
    sizes = set(map(len, encoded))
    if len(sizes) == 1:  # the usual case: ids of one shape, hashed in one go
        (length,) = sizes
        rows = np.frombuffer(b"".join(encoded), dtype=np.uint8).reshape(len(encoded), length)
        return (_murmur2_rows(rows, length) % partitions).tolist()  # type: ignore[no-any-return]
    out = [0] * len(keys)
    by_length: dict[int, tuple[list[int], list[bytes]]] = {}
    for i, data in enumerate(encoded):
        slot = by_length.get(len(data))
        if slot is None:
            slot = by_length[len(data)] = ([], [])
        slot[0].append(i)
        slot[1].append(data)
    for length, (where, datas) in by_length.items():
        rows = np.frombuffer(b"".join(datas), dtype=np.uint8).reshape(len(datas), length)
        hashed = (_murmur2_rows(rows, length) % partitions).tolist()
        for i, h in zip(where, hashed, strict=True):
            out[i] = h
    return out


def _murmur2_rows(rows: np.ndarray, length: int) -> np.ndarray:
    """Kafka's murmur2 of each row (all of ``length`` bytes), masked to 31 bits."""
    with np.errstate(over="ignore"):
        h = np.full(len(rows), (0x9747B28C ^ length) & 0xFFFFFFFF, dtype=np.uint32)
        whole = length & ~3
        if whole:
            chunks = np.ascontiguousarray(rows[:, :whole]).view("<u4")
            for c in range(whole // 4):
                k = chunks[:, c] * _M
                k ^= k >> np.uint32(24)
                k *= _M
                h *= _M
                h ^= k
        tail = length & 3
        if tail:
            if tail == 3:
                h ^= rows[:, whole + 2].astype(np.uint32) << np.uint32(16)
            if tail >= 2:
                h ^= rows[:, whole + 1].astype(np.uint32) << np.uint32(8)
            h ^= rows[:, whole].astype(np.uint32)
            h *= _M
        h ^= h >> np.uint32(13)
        h *= _M
        h ^= h >> np.uint32(15)
    return (h & np.uint32(0x7FFFFFFF)).astype(np.int64)
