"""A hostile third-party stream through one real worker: nothing valid is lost or doubled,
every bad input is dead-lettered with its reason, and nothing poisons the state.

The stream (``helpers.hostile.hostile_stream``, seeded) is over 100,000 Kafka messages,
mostly single valid events of 12 models, sent keyed through librdkafka's default (CRC32)
partitioner, unkeyed, through aiokafka's default (murmur2) producer, and inside JSON
arrays next to bad elements; plus poison of every kind in ``helpers.hostile.POISON``:
900 KB timestamps, messages over 1 MiB, invalid JSON and UTF-8, ids equal to internal
keys, far-future and pre-2000 timestamps, 2,000-character class labels, missing fields,
non-finite numbers. What the system must do is computed by the generator, never read
from the system.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from helpers.hostile import Topics, detector_config_toml, hostile_stream
from helpers.pipeline import (
    DETECTION_KINDS,
    Promises,
    decode_alerts,
    disorder_warnings,
    isolated,
    outcome_ids,
    wait_processed,
)
from helpers.third_party import play

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

SEED = 20261201
MAX_DLQ_RECORD_BYTES = 1_000_000
MAX_DISORDER_WARNINGS = 50  # one summary line per interval is fine; one per event is not


@pytest.mark.separate  # 20-40 s: in .ci/run's own step, to keep the suite under 10 min
def test_a_hostile_third_party_stream_joins_every_valid_pair_once_and_dead_letters_the_rest(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    iso = isolated(kafka_bootstrap, redis_url, tmp_path, partitions=4)
    iso.create_inputs()
    topics = Topics(iso.topics["predictions"], iso.topics["ground_truth"])
    span_ms = 4 * 3_600_000
    base_ms = (int(time.time() * 1000) - span_ms - 3_600_000) // 60_000 * 60_000
    stream = hostile_stream(SEED, topics, base_ms=base_ms, span_ms=span_ms)
    expected = stream.expected
    assert stream.messages >= 100_000, stream.messages
    big = [m for s in stream.segments for m in s.messages if m.value and len(m.value) > 800_000]
    assert len(big) >= 6, f"only {len(big)} poison messages of 900 KB or over 1 MiB"

    config = tmp_path / "detectors.toml"
    config.write_text(detector_config_toml(stream.models))
    worker = iso.worker(args=["--config", str(config)]).start()
    try:
        began = time.monotonic()
        sent = play(kafka_bootstrap, stream.segments)
        produced_s = time.monotonic() - began
        seen = wait_processed(
            iso,
            worker,
            expected.pairs,
            dlq_total=sum(expected.dlq.values()),
            timeout=150,
        )
        alive = worker.alive()
        dead_letters = iso.read("dlq")
        outcomes = iso.read("outcomes")
        alerts = decode_alerts(iso.read("alerts"))
    finally:
        code = worker.stop()
    log = worker.log_path.read_text(errors="replace")
    print(
        f"\n{sent} messages produced in {produced_s:.1f}s; {seen.short()}; "
        f"{sum(expected.pairs.values())} pairs expected"
    )

    promises = Promises()
    promises.check(sent == stream.messages, f"{sent} of {stream.messages} messages delivered")
    promises.check(
        alive and seen.why != "exited",
        f"the worker died while processing (exit code {code}):\n{worker.log_tail(30)}",
    )
    promises.check(seen.why == "done", f"the worker did not finish: {seen.short()}")
    promises.check(code == 0, f"the worker stopped with exit code {code}")

    # every valid pair joined exactly once: the detectors consumed each once...
    wrong = {
        m: f"{seen.outcomes.get(m, 0)} (expected {n}, {seen.outcomes.get(m, 0) - n:+d})"
        for m, n in expected.pairs.items()
        if seen.outcomes.get(m, 0) != n
    }
    promises.check(not wrong, f"outcomes consumed by the detectors per model: {wrong}")
    held = {m: h for m, h in seen.held.items() if h}
    promises.check(not held, f"outcomes still held for the watermark: {held}")
    # ...and the outcomes topic carries each pair (a re-sent outcome has the same id)
    by_model, _ = outcome_ids(outcomes)
    for model, ids in expected.pair_ids.items():
        got = set(by_model.get(model, {}))
        missing, extra = ids - got, got - ids
        promises.check(
            not missing and not extra,
            f"{model}: outcomes topic has {len(got)} distinct prediction ids, expected "
            f"{len(ids)}: {len(missing)} missing (e.g. {sorted(missing)[:3]}), "
            f"{len(extra)} unexpected (e.g. {sorted(extra)[:3]})",
        )
    strangers = sorted(set(by_model) - set(expected.pair_ids))
    promises.check(not strangers, f"outcomes of models that do not exist: {strangers[:10]}")

    # every bad message or element dead-lettered once, with its reason, in <= 1 MB
    reasons: Counter[str] = Counter()
    unreadable = 0
    for r in dead_letters:
        try:
            reasons[orjson.loads(r.value or b"").get("reason", "<none>")] += 1
        except (orjson.JSONDecodeError, AttributeError):
            unreadable += 1
    diff = {
        reason: f"{reasons.get(reason, 0)} (expected {expected.dlq.get(reason, 0)})"
        for reason in set(reasons) | set(expected.dlq)
        if reasons.get(reason, 0) != expected.dlq.get(reason, 0)
    }
    promises.check(
        not diff and not unreadable,
        f"dead letters per reason differ: {diff}; {unreadable} envelopes unreadable; "
        f"{len(dead_letters)} dead letters, {sum(expected.dlq.values())} expected",
    )
    too_big = sorted(len(r.value or b"") for r in dead_letters)
    too_big = [n for n in too_big if n > MAX_DLQ_RECORD_BYTES]
    promises.check(
        not too_big,
        f"{len(too_big)} dead-letter records over {MAX_DLQ_RECORD_BYTES:,} bytes: {too_big[:5]}",
    )

    # absurd regression labels are valid pairs, and no reason to page anybody (every
    # model serves a 10 % canary of 2.2.0, as good as 2.1.0: its version_changed is the
    # info record of a real event; a version_regression would be noise)
    for model in sorted(expected.quiet):
        noisy = [
            (a["kind"], a.get("detector"), a.get("after"))
            for a in alerts
            if a["model_id"] == model and a["kind"] not in ("orphaned_model", "version_changed")
        ]
        promises.check(
            not noisy,
            f"{model} (absurd labels, no real change) raised {len(noisy)} alerts: {noisy[:3]}",
        )
    # the real degradations were detected, after their change
    for model, change_at in sorted(expected.change_at_ms.items()):
        found = [
            a for a in alerts if a["model_id"] == model and a["kind"] == "performance_degradation"
        ]
        promises.check(bool(found), f"{model} degraded at {change_at} but raised no alert")
        early = [a["event_time_ms"] for a in found if a["event_time_ms"] < change_at]
        promises.check(not early, f"{model}: degradation alerts before its change: {early}")
    stable = Counter(
        a["model_id"]
        for a in alerts
        if a["kind"] in DETECTION_KINDS
        and a["model_id"] not in expected.change_at_ms
        and a["model_id"] not in expected.quiet
    )
    print(f"alerts on models without a change (not a promise of this test): {dict(stable)}")

    # disorder is one summary line per interval, not a warning per event
    warnings = disorder_warnings(log)
    promises.check(
        len(warnings) <= MAX_DISORDER_WARNINGS,
        f"{len(warnings)} warning lines about disorder in the worker log, e.g. {warnings[:2]}",
    )
    promises.verify()
