"""A partition's state: a dict of its own, changelogged once per batch, and restored
from its changelog only in whole checkpoints.

The worker keeps its state itself rather than in Faust tables. A table's
``table[key] = value`` needs the current event to pick the changelog partition, runs
sensors and sends one changelog record per write; and Faust's own table recovery, run at
every rebalance for every assigned partition, stopped workers with ``ConsistencyError``
when tansu reported a changelog's end below an offset already read. Here each partition
has a dict; :meth:`PartitionView.stage` adds one record per changed key to a batch that
the agent sends with its other output (:mod:`streams.worker.batches`). Agents send it
*after* publishing a batch's output: a crash in between re-processes the batch (a
duplicate at worst) instead of recording state whose output was never published.

The view also checkpoints, in the same changelog partition, its step's ``meta``: the
last offset processed of each source topic, event-time marks and batch numbers (see
:mod:`streams.engine`). Faust can deliver a message twice (it re-seeks to the committed
offset after a rebalance); the engine skips what the checkpoint already includes.
The changelog topics keep the names Faust gave them (``{app_id}-join-state-changelog``,
``{app_id}-detector-state-changelog``), so existing deployments keep their state.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.connections import aiokafka_kwargs
from streams.settings import KafkaSecurity
from streams.worker.batches import RecordBatches

__all__ = ["PartitionView", "ReservedDict", "Restored", "json_key", "load_changelog", "restored"]

_RESERVED = "\x00"  # prefix of internal keys; the id grammar refuses NUL in any id


def restored(data: MutableMapping[str, Any], key: str) -> Any:
    """The live value of ``key``; values restored from the changelog arrive pickled."""
    value = data.get(key)
    if isinstance(value, bytes):
        value = data[key] = pickle.loads(value)  # noqa: S301 - our own changelog
    return value


@dataclass
class Restored:
    """What :func:`load_changelog` applied, and the keys of an unfinished checkpoint."""

    applied: int = 0
    discarded: int = 0
    unfinished: set[str] = field(default_factory=set)  # keys to write again, committed


async def load_changelog(
    bootstrap: str,
    topic: str,
    partition: int,
    data: MutableMapping[str, Any],
    commit_key: str,
    *,
    kafka: KafkaSecurity | None = None,
) -> Restored:
    """Read one changelog partition from its start to its end offset into ``data``,
    applying only whole checkpoints.

    A checkpoint is the changed keys of a partition followed by its ``commit_key`` record
    (the step's meta: offsets processed). It may span several produce batches, so a
    crash can leave its first records in the log without the last: those describe input
    whose offsets the meta does not include, and applying them makes the restored state
    count that input twice when it is read again. Records are therefore applied only
    when the commit record that ends their checkpoint is read; records after the last
    commit are discarded (their keys keep their committed value). The caller writes those
    keys again in its first checkpoint, so that records of a later checkpoint never land
    on an unfinished one.

    tansu was seen to report an end offset below its real log end (3,151 against 3,182
    records): a restore that stopped there came back a few records short and a missing
    pending prediction lost its join. The log is therefore read past the reported end
    until a fetch comes back empty and the end, asked again, is behind the position.

    ``kafka`` is the worker's security settings (None: WATCHKEEPER_KAFKA_* from the
    environment).
    """
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(bootstrap, kafka or KafkaSecurity()),
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,  # the empty fetch at the end answers at once
    )
    await consumer.start()
    out = Restored()
    pending: list[tuple[str, bytes | None]] = []  # since the last commit record
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.seek_to_beginning(tp)
        while True:
            fetched = await consumer.getmany(tp, timeout_ms=200)
            if not fetched and await consumer.position(tp) >= end:
                # an empty fetch on a busy broker is not the end: ask for the end again
                end = (await consumer.end_offsets([tp]))[tp]
                if await consumer.position(tp) >= end:
                    break
            for records in fetched.values():
                for record in records:
                    key = json.loads(record.key) if record.key is not None else None
                    if not isinstance(key, str):
                        continue
                    pending.append((key, record.value))
                    if key != commit_key:
                        continue
                    for k, value in pending:
                        if value is None:
                            data.pop(k, None)
                        else:
                            data[k] = value
                    out.applied += len(pending)
                    pending.clear()
    finally:
        await consumer.stop()
    out.discarded = len(pending)
    out.unfinished = {key for key, _ in pending}
    return out


def json_key(key: str) -> bytes:
    """A table key as Faust's json key serializer writes it, at its exact size.

    (``orjson.dumps`` results each hold a 4 KiB allocation: a batch of 100k changed keys
    held 400 MB until it was sent, and the allocator kept much of it afterwards.)
    """
    if key.isascii() and key.isprintable() and '"' not in key and "\\" not in key:
        return f'"{key}"'.encode()
    return json.dumps(key, ensure_ascii=False).encode()


class PartitionView(MutableMapping[str, Any]):
    """One partition's state, changelogged on :meth:`stage`.

    ``meta`` is the step's own bookkeeping (offsets processed, event-time marks, batch
    numbers), checkpointed under a reserved key after the data it describes. Reserved
    keys start with NUL, which the id grammar never lets an event id contain."""

    def __init__(
        self,
        changelog: str,
        partition: int,
        data: dict[str, Any],
        batches: RecordBatches,
        rewrite: Iterable[str] = (),
    ) -> None:
        self._topic = changelog
        self._batches = batches
        self._data = data  # this partition's keys only, values possibly still pickled
        self._partition = partition
        self._dirty: set[str] = set(rewrite)  # keys of an unfinished checkpoint: write again
        self._meta_key = self.commit_key(partition)
        restored_meta = restored(self._data, self._meta_key)
        self.meta: dict[str, Any] = dict(restored_meta) if isinstance(restored_meta, dict) else {}

    @staticmethod
    def commit_key(partition: int) -> str:
        """The key of the meta record that ends each checkpoint of ``partition``."""
        return f"{_RESERVED}{partition}:meta"

    @property
    def dirty(self) -> bool:
        """Whether keys changed since the last :meth:`stage`."""
        return bool(self._dirty)

    def _reserved_key(self, name: str) -> str:
        return f"{_RESERVED}{self._partition}:{name}"

    def reserved(self, name: str) -> Any:
        """A value of the worker's own next to the state (counters), or None."""
        return restored(self._data, self._reserved_key(name))

    def put_reserved(self, name: str, value: Any) -> None:
        """Set (or mark changed in place) a reserved value for the next :meth:`stage`."""
        key = self._reserved_key(name)
        self._data[key] = value
        self._dirty.add(key)

    def del_reserved(self, name: str) -> None:
        """Remove a reserved value (a tombstone at the next :meth:`stage`)."""
        key = self._reserved_key(name)
        if self._data.pop(key, None) is not None:
            self._dirty.add(key)

    def reserved_items(self, prefix: str) -> Iterator[tuple[str, Any]]:
        """(name without ``prefix``, value) of the reserved values under ``prefix``.
        O(every key of the partition): for a restore, never per batch."""
        full = self._reserved_key(prefix)
        for key in [k for k in self._data if k.startswith(full)]:
            yield key[len(full) :], restored(self._data, key)

    def __getitem__(self, key: str) -> Any:
        value = restored(self._data, key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = restored(self._data, key)
        return default if value is None else value

    def __setitem__(self, key: str, value: Any) -> None:
        if key.startswith(_RESERVED):
            raise KeyError(f"{key!r} is a reserved key")
        self._data[key] = value
        self._dirty.add(key)

    def touch(self, key: str) -> None:
        """Mark a value changed in place (a detector bank) for the next :meth:`stage`."""
        self._dirty.add(key)

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self._dirty.add(key)

    def stage(self) -> int:
        """Add one changelog record per key changed since the last call, and the meta
        checkpoint last, to the shared batches; the caller delivers them, and only then
        acks the input (so its offsets are committed after the state that includes it).
        Returns the number of changed keys."""
        dirty, self._dirty = self._dirty, set()
        topic = self._topic
        partition = self._partition
        add = self._batches.add
        data = self._data
        dumps = pickle.dumps
        for key in dirty:
            value = restored(data, key)  # a key written again after a restore: still a blob
            blob = None if value is None else dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            add(topic, partition, json_key(key), blob)
        # last: the checkpoint never runs ahead of the state
        blob = dumps(self.meta, protocol=pickle.HIGHEST_PROTOCOL)
        data[self._meta_key] = pickle.loads(blob)  # noqa: S301 - a copy of our own value
        add(topic, partition, json_key(self._meta_key), blob)
        return len(dirty)

    def __iter__(self) -> Iterator[str]:
        return (k for k in list(self._data) if not k.startswith(_RESERVED))

    def items(self) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        return ((k, restored(self._data, k)) for k in self)

    def __len__(self) -> int:
        """O(n): for logs and tests, never on the hot path."""
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return True  # truthiness must not fall back to the O(n) __len__


class ReservedDict(MutableMapping[str, Any]):
    """The reserved values of a view under one prefix, as a mapping: read once into a
    dict (at restore), written through to the view (changelogged at its next stage)."""

    def __init__(self, view: PartitionView, prefix: str) -> None:
        self._view = view
        self._prefix = prefix
        self._items = dict(view.reserved_items(prefix))

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._items.get(key, default)  # per prediction: not Mapping.get's try/except

    def __setitem__(self, key: str, value: Any) -> None:
        self._items[key] = value
        self._view.put_reserved(self._prefix + key, value)

    def __delitem__(self, key: str) -> None:
        del self._items[key]
        self._view.del_reserved(self._prefix + key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
