"""Kafka's default key partitioner, so Watchkeeper can place events without a client.

The join needs a prediction and its label on the same partition. Producers key both by
prediction_id and let the client's default partitioner pick; the producer helper (which
sends batches with an explicit partition) and the app's re-keying must pick exactly the same
partition, so they call :func:`partition_for` instead of guessing.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

__all__ = ["partition_for"]


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
