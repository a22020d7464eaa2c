"""Counters and per-model health snapshots in Redis, shared by every worker process.

Kafka partitions split the join and the detectors across processes; what an operator
asks ("how many labels did fraud get, what is its error rate now?") spans all of them,
so the workers add their per-batch deltas here and the CLI and status readers read it.

Keys (``prefix`` defaults to ``wk:``):
    {prefix}stats            hash: totals (predictions, labels, joined, dlq, ...)
    {prefix}dlq              hash: dead-lettered records per reason
    {prefix}model:{model}    hash: per-model counters (predictions, joined, outcomes, alerts, ...)
    {prefix}health:{model}   hash: latest detector snapshot (error rates, n, last alert)
    {prefix}models           zset: model -> wall-clock ms when last seen in traffic
    {prefix}series:{model}   hash: per hour of prediction event time (:mod:`streams.engine.series`)
                             ``start -> predictions|outcomes|error sum``: exact counts
                             however fast events are processed (status, ui); the newest
                             120 hours kept, few enough for Redis's compact hash encoding

With ``retention_s`` set (the worker sets ``model_retention_ms``), the per-model hashes
expire that long after their last write and the zset forgets models unseen as long:
producers choose model ids, and keys of ids seen once must not stay forever.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from streams.engine.join import JoinStats
from streams.engine.series import SERIES_BUCKET_MS, SERIES_POINTS, bucket_of
from streams.store.breaker import OUTAGE_ERRORS, RedisBreaker

__all__ = [
    "PLAIN_COUNTERS",
    "SERIES_BUCKET_MS",
    "SERIES_POINTS",
    "HealthBuffer",
    "HealthStore",
    "SeriesPoint",
]

PLAIN_COUNTERS = ("redelivered", "disordered_input", "late_outcomes", "duplicate_outcomes")
"""Counts of input that was skipped (``redelivered``, ``duplicate_outcomes``) or processed
out of order, kept in ``{prefix}stats``; every other reason is a dead letter."""

# Counters and snapshots of many models in one command per 1,000 hashes: redis-py spends
# about 15 µs packing and parsing each command and about 0.3 µs per argument, and with
# 10,000 models a write of four commands per model took 0.6 s of the worker's CPU. ARGV[k]
# holds KEYS[k]'s fields as JSON behind an operation letter: "i" HINCRBY each, "s" HSET,
# "a" absolute: ``field@part`` is set to the value and ``field`` moves by the difference,
# so ``field`` is always the sum over the parts; "b" adds per-bucket counts ``b`` (start ->
# [predictions, outcomes, error sum]) to a series hash, records the starts in index zset
# ``x`` and keeps the newest ``n`` buckets (the older ones' fields deleted). Values travel as
# strings, so Lua's numbers (doubles) never reformat them. An upper-case letter also sets
# the key to expire in ARGV[#KEYS + 1] ms (0: never).
_WRITE_HASHES = """
local ttl = tonumber(ARGV[#KEYS + 1])
for k = 1, #KEYS do
  local arg = ARGV[k]
  local fields = cjson.decode(string.sub(arg, 2))
  local op = string.sub(arg, 1, 1)
  local expire = op ~= string.lower(op)
  op = string.lower(op)
  if op == 'a' then
    for f, v in pairs(fields) do
      local base = string.match(f, '^(.*)@')
      local old = tonumber(redis.call('HGET', KEYS[k], f) or '0')
      local new = tonumber(v)
      if new ~= old then
        redis.call('HSET', KEYS[k], f, v)
        redis.call('HINCRBY', KEYS[k], base, new - old)
      end
    end
  elseif op == 's' then
    local flat = {}
    for f, v in pairs(fields) do
      flat[#flat + 1] = f
      flat[#flat + 1] = v
    end
    redis.call('HSET', KEYS[k], unpack(flat))
  elseif op == 'i' then
    for f, v in pairs(fields) do
      redis.call('HINCRBY', KEYS[k], f, v)
    end
  elseif op == 'b' then
    for b, v in pairs(fields.b) do
      local p, o, e = 0, 0, 0
      local old = redis.call('HGET', KEYS[k], b)
      if old then
        local a, c, d = string.match(old, '^([^|]*)|([^|]*)|([^|]*)$')
        p, o, e = tonumber(a), tonumber(c), tonumber(d)
      end
      p, o, e = p + tonumber(v[1]), o + tonumber(v[2]), e + tonumber(v[3])
      redis.call('HSET', KEYS[k], b, string.format('%d|%d|%.17g', p, o, e))
    end
    local keep = tonumber(fields.n)
    if redis.call('HLEN', KEYS[k]) > keep then
      local starts = redis.call('HKEYS', KEYS[k])
      table.sort(starts, function(x, y) return tonumber(x) < tonumber(y) end)
      for n = 1, #starts - keep do
        redis.call('HDEL', KEYS[k], starts[n])
      end
    end
  end
  if expire and ttl > 0 then
    redis.call('PEXPIRE', KEYS[k], ttl)
  end
end
return #KEYS
"""
_HASHES_PER_CALL = 1000  # bounds how long one script call holds Redis (a few ms)


class _HashWrites:
    """HINCRBY and HSET of many hashes, sent as a few calls of :data:`_WRITE_HASHES`;
    per-model hashes (``expire=True``) expire ``ttl_ms`` after their last write."""

    def __init__(self, ttl_ms: int = 0) -> None:
        self._keys: list[str] = []
        self._args: list[bytes] = []
        self._ttl = str(ttl_ms).encode()

    def _add(self, key: str, op: bytes, expire: bool, fields: Mapping[str, Any]) -> None:
        self._keys.append(key)
        self._args.append((op.upper() if expire else op) + orjson.dumps(fields))

    def incr(self, key: str, fields: Mapping[str, int], *, expire: bool = False) -> None:
        pairs = {f: str(v) for f, v in fields.items() if v}
        if pairs:
            self._add(key, b"i", expire, pairs)

    def absolute(self, key: str, fields: Mapping[str, int], *, expire: bool = False) -> None:
        """``fields`` are ``name@part``: each part's count, summed into ``name``."""
        if fields:
            self._add(key, b"a", expire, {f: str(v) for f, v in fields.items()})

    def set(self, key: str, fields: Mapping[str, Any], *, expire: bool = False) -> None:
        if fields:
            self._add(key, b"s", expire, {f: str(v) for f, v in fields.items()})

    def buckets(
        self, key: str, buckets: Mapping[int, Sequence[float]], keep: int, *, expire: bool = False
    ) -> None:
        """Add ``buckets`` (start -> [predictions, outcomes, error sum]) to series hash
        ``key``, keeping the newest ``keep`` buckets."""
        fields = {
            str(start): [str(int(p)), str(int(o)), repr(float(e)) if math.isfinite(e) else "0"]
            for start, (p, o, e) in buckets.items()
            if p or o
        }
        if fields:
            self._add(key, b"b", expire, {"n": str(keep), "b": fields})

    async def queue(self, pipe: Any, script: Any) -> None:
        for start in range(0, len(self._keys), _HASHES_PER_CALL):
            end = start + _HASHES_PER_CALL
            # queued on the pipeline, sent by its execute()
            args = [*self._args[start:end], self._ttl]
            await script(keys=self._keys[start:end], args=args, client=pipe)


@dataclass(frozen=True)
class SeriesPoint:
    """A model's counts at one hour of prediction event time: its predictions,
    their outcomes joined so far and those outcomes' error sum."""

    t_ms: int
    predictions: int
    outcomes: int
    error_sum: float

    @property
    def error_rate(self) -> float | None:
        """The bucket's mean error (error rate of a classifier); None without outcomes."""
        return self.error_sum / self.outcomes if self.outcomes else None

    @property
    def label_coverage(self) -> float | None:
        """The share of the bucket's predictions labelled so far (recent buckets fill in
        as labels arrive); None without predictions. At most 1: outcomes of predictions
        not counted here (seen before this history began) must not make it exceed 1."""
        return min(self.outcomes / self.predictions, 1.0) if self.predictions else None


class HealthStore:
    """Writes and reads Watchkeeper's shared counters and snapshots."""

    def __init__(self, redis: Redis, prefix: str = "wk:", *, retention_s: float = 0) -> None:
        self.redis = redis
        self.prefix = prefix
        self.retention_ms = int(retention_s * 1000)
        self._write_hashes = redis.register_script(_WRITE_HASHES)

    def _writes(self) -> _HashWrites:
        return _HashWrites(self.retention_ms)

    def _seen(self, pipe: Any, models: Iterable[str]) -> None:
        """Mark ``models`` seen now in the zset, and forget those unseen for the retention."""
        now = int(time.time() * 1000)
        pipe.zadd(self.key("models"), dict.fromkeys(models, now))
        if self.retention_ms:
            pipe.zremrangebyscore(self.key("models"), "-inf", now - self.retention_ms)

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    async def add_join_stats(self, stats: JoinStats) -> None:
        writes = self._writes()
        writes.incr(self.key("stats"), stats.totals())
        per_model: dict[str, Counter[str]] = {}
        for field, counter in (
            ("predictions", stats.predictions),
            ("joined", stats.joined),
            ("expired_predictions", stats.expired_predictions),
            ("unscorable", stats.unscorable),
        ):
            for model, value in counter.items():
                per_model.setdefault(model, Counter())[field] += value
        for model, counts in per_model.items():
            writes.incr(self.key("model", model), counts, expire=True)
        async with self.redis.pipeline(transaction=False) as pipe:
            await writes.queue(pipe, self._write_hashes)
            if per_model:
                self._seen(pipe, per_model)
            await pipe.execute()

    async def add_skipped(self, reasons: Counter[str]) -> None:
        """Count dead-lettered records per reason; :data:`PLAIN_COUNTERS` (skipped or
        suspicious, but not dead-lettered) are plain counters."""
        reasons = Counter(reasons)
        for name in PLAIN_COUNTERS:
            value = reasons.pop(name, 0)
            if value:
                await self.redis.hincrby(self.key("stats"), name, value)
        await self.add_dlq(reasons)

    async def add_dlq(self, reasons: Counter[str]) -> None:
        if not reasons:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for reason, value in reasons.items():
                pipe.hincrby(self.key("dlq"), reason, value)
            pipe.hincrby(self.key("stats"), "dlq", sum(reasons.values()))
            await pipe.execute()

    async def put_health(
        self,
        snapshots: Mapping[str, Mapping[str, Any]],
        counters: Mapping[str, Counter[str]],
        series: Mapping[str, Mapping[int, Sequence[float]]] | None = None,
    ) -> None:
        """Snapshots (replaced), counter deltas and per-bucket series deltas (added; see
        :class:`~streams.engine.detect_step.DetectOutput`), in one round trip."""
        if not snapshots and not counters and not series:
            return
        writes = self._writes()
        for model, snapshot in snapshots.items():
            writes.set(self.key("health", model), snapshot, expire=True)
        for model, buckets in (series or {}).items():
            writes.buckets(self.key("series", model), buckets, SERIES_POINTS, expire=True)
        totals: Counter[str] = Counter()
        for model, counter in counters.items():
            writes.incr(self.key("model", model), counter, expire=True)
            totals.update(counter)
        totals["alerts"] = totals["performance_degradation"] + totals["performance_improvement"]
        writes.incr(self.key("stats"), totals)
        async with self.redis.pipeline(transaction=False) as pipe:
            await writes.queue(pipe, self._write_hashes)
            await pipe.execute()

    async def put_absolute(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        """Per-part counts (``{key: {"name@part": n}}``), each hash's ``name`` their sum."""
        if not counts:
            return
        writes = self._writes()
        for key, fields in counts.items():
            writes.absolute(self.key(key), fields, expire=key.startswith("model:"))
        models = [k.removeprefix("model:") for k in counts if k.startswith("model:")]
        async with self.redis.pipeline(transaction=False) as pipe:
            await writes.queue(pipe, self._write_hashes)
            if models:
                self._seen(pipe, models)
            await pipe.execute()

    async def totals(self) -> dict[str, int]:
        return _sums(await self.redis.hgetall(self.key("stats")))

    async def dlq_reasons(self) -> dict[str, int]:
        return _sums(await self.redis.hgetall(self.key("dlq")))

    async def models(self) -> list[str]:
        members = await self.redis.zrange(self.key("models"), 0, -1)
        return [_s(m) for m in members if isinstance(m, bytes | str)]

    async def model_counters(self, model: str) -> dict[str, int]:
        return _sums(await self.redis.hgetall(self.key("model", model)))

    async def held(self) -> int:
        """Outcomes waiting in the detectors' event-time buffers, over all models."""
        return await self._sum_health("held")

    async def late_outcomes(self) -> int:
        """Outcomes that reached a detector out of event-time order, over all models."""
        return await self._sum_health("late_outcomes")

    async def _sum_health(self, field: str) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for model in await self.models():
            pipe.hget(self.key("health", model), field)
        return sum(int(v) for v in await pipe.execute() if v is not None)

    async def health(self, model: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.key("health", model))
        return {_s(k): _s(v) for k, v in raw.items()}

    async def series(self, model: str, *, since_ms: int | None = None) -> list[SeriesPoint]:
        """The model's buckets of prediction event time, oldest first; with ``since_ms``
        those from the bucket holding it on."""
        points = _points(await self.redis.hgetall(self.key("series", model)))
        if since_ms is not None:
            low = bucket_of(since_ms)
            points = [p for p in points if p.t_ms >= low]
        return points

    async def series_tails(self, models: Sequence[str], n: int) -> dict[str, list[SeriesPoint]]:
        """The newest ``n`` buckets of each of ``models``, oldest first, in one pipelined
        round trip whatever the number of models (the fleet view reads every trend)."""
        pipe = self.redis.pipeline(transaction=False)
        for model in models:
            pipe.hgetall(self.key("series", model))
        replies = await pipe.execute() if models else []
        return {
            m: _points(raw)[-n:] if n > 0 else [] for m, raw in zip(models, replies, strict=True)
        }


def _points(raw: Mapping[Any, Any]) -> list[SeriesPoint]:
    """The buckets of a series hash (``start -> predictions|outcomes|error sum``), oldest
    first; a field that does not parse is left out."""
    points = []
    for start, value in raw.items():
        try:
            p, o, e = _s(value).split("|")
            points.append(SeriesPoint(int(_s(start)), int(p), int(o), float(e)))
        except ValueError:
            continue
    return sorted(points, key=lambda point: point.t_ms)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _sums(raw: Mapping[Any, Any]) -> dict[str, int]:
    """A counters hash without its per-part fields (``name@part``), which only feed
    ``name``; zero counts are left out."""
    out = {}
    for k, v in raw.items():
        name = _s(k)
        if "@" not in name and int(v):
            out[name] = int(v)
    return out


class HealthBuffer:
    """Collects a worker's counter deltas and snapshots and writes them together.

    Writing per batch cost a Redis round trip with a command per model and counter, which
    with small batches (one event per message) took a tenth of the worker's CPU. Deltas
    are summed and the newest snapshot per model kept, then written at most every
    ``interval_s``; readers see counters up to that much late. With many models a write
    is itself slow (10,000 models: about 0.4 s as four commands per model, before they
    went into script calls), so the next write also waits four times as long as the last
    one took: writing never takes more than a fifth of the worker's time (readers then lag
    by up to five write times). A worker that dies loses at most one interval of counts
    (counters are at-least-once anyway: a re-processed batch counts again).

    While Redis is unreachable (see :mod:`streams.redis_outage`) a failed write is put
    back and merged with what came since, and written once Redis answers again; it is
    bounded by the number of models, not by time. A write cut off halfway (the connection
    lost after some of its commands ran) counts that part twice.
    """

    def __init__(
        self,
        store: HealthStore,
        interval_s: float,
        clock: Any = time.monotonic,
        breaker: RedisBreaker | None = None,
    ):
        self.store = store
        self.interval_s = interval_s
        self._clock = clock
        self.breaker = breaker or RedisBreaker(clock=clock)
        self._due = clock() + interval_s
        self._join = JoinStats()
        self._skipped: Counter[str] = Counter()
        self._snapshots: dict[str, Mapping[str, Any]] = {}
        self._counters: dict[str, Counter[str]] = {}
        self._absolute: dict[str, dict[str, int]] = {}
        self._series: dict[str, dict[int, list[float]]] = {}
        # one write at a time: two in flight on different connections could land out of
        # order and leave an older snapshot (say, outcomes still held) as the last word
        self._writing = asyncio.Lock()

    def add_join_stats(self, stats: JoinStats) -> None:
        self._join.add(stats)

    def set_counts(self, key: str, part: str, counts: Mapping[str, int]) -> None:
        """The current counts of one part (a partition's checkpointed state) in hash
        ``key``; written as absolute values, so a restart or a takeover that counts again
        from a checkpoint leaves Redis exact."""
        fields = self._absolute.setdefault(key, {})
        for name, value in counts.items():
            fields[f"{name}@{part}"] = int(value)

    def add_skipped(self, reasons: Counter[str]) -> None:
        self._skipped.update(reasons)

    def put_health(
        self, snapshots: Mapping[str, Mapping[str, Any]], counters: Mapping[str, Counter[str]]
    ) -> None:
        self._snapshots.update(snapshots)
        for model, counter in counters.items():
            mine = self._counters.get(model)
            if mine is None:
                self._counters[model] = Counter(counter)
            else:
                mine.update(counter)

    def add_series(self, series: Mapping[str, Mapping[int, Sequence[float]]]) -> None:
        """Add per-bucket deltas (model -> bucket start -> [predictions, outcomes, error
        sum], :class:`~streams.engine.detect_step.DetectOutput`'s ``series``)."""
        mine = self._series
        for model, buckets in series.items():
            into = mine.get(model)
            if into is None:
                mine[model] = {b: list(v) for b, v in buckets.items()}
                continue
            for b, (p, o, e) in buckets.items():
                counts = into.get(b)
                if counts is None:
                    into[b] = [p, o, e]
                else:
                    counts[0] += p
                    counts[1] += o
                    counts[2] += e

    async def maybe_flush(self) -> None:
        if self._clock() >= self._due:
            await self.flush()

    async def flush(self, *, force: bool = False) -> None:
        """Write everything collected (taken first, so that what arrives during the write
        waits for the next one; if Redis fails, what was not written is put back).
        ``force`` tries even while the breaker waits (the last flush at shutdown)."""
        if not force and not self.breaker.available():
            return
        async with self._writing:
            began = self._clock()
            self._due = began + self.interval_s
            join, self._join = self._join, JoinStats()
            skipped, self._skipped = self._skipped, Counter()
            snapshots, self._snapshots = self._snapshots, {}
            counters, self._counters = self._counters, {}
            absolute, self._absolute = self._absolute, {}
            series, self._series = self._series, {}
            has_join = any(join.totals().values())
            if not (has_join or skipped or snapshots or counters or absolute or series):
                return  # nothing to write, and nothing learnt about Redis
            try:
                if has_join:
                    await self.store.add_join_stats(join)
                join = JoinStats()
                if skipped:
                    await self.store.add_skipped(skipped)
                skipped = Counter()
                await self.store.put_health(snapshots, counters, series)
                snapshots, counters, series = {}, {}, {}
                await self.store.put_absolute(absolute)
            except OUTAGE_ERRORS as exc:
                self._put_back(join, skipped, snapshots, counters, series)
                for key, fields in absolute.items():  # the newer value of a field wins
                    self._absolute[key] = {**fields, **self._absolute.get(key, {})}
                self.breaker.failed("writing counters and health snapshots", exc)
                return
            self.breaker.succeeded()
            took = self._clock() - began
            self._due = max(self._due, began + took + 4 * took)

    def unwritten(self) -> tuple[int, int]:
        """Counter increments and model snapshots not written yet (what a stop would lose);
        the series' predictions and outcomes count as increments."""
        counts = (
            sum(self._join.totals().values())
            + sum(self._skipped.values())
            + sum(sum(c.values()) for c in self._counters.values())
            + sum(len(f) for f in self._absolute.values())
            + sum(int(v[0] + v[1]) for b in self._series.values() for v in b.values())
        )
        return counts, len(self._snapshots)

    def _put_back(
        self,
        join: JoinStats,
        skipped: Counter[str],
        snapshots: dict[str, Mapping[str, Any]],
        counters: dict[str, Counter[str]],
        series: dict[str, dict[int, list[float]]],
    ) -> None:
        """Merge a failed write's content under what was collected since it began."""
        join.add(self._join)
        self._join = join
        skipped.update(self._skipped)
        self._skipped = skipped
        snapshots.update(self._snapshots)  # the newer snapshot of a model wins
        self._snapshots = snapshots
        newer, self._counters = self._counters, counters
        self.put_health({}, newer)
        newer_series, self._series = self._series, series
        self.add_series(newer_series)
