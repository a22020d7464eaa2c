"""A flood of made-up model ids against a real worker with a cap on models.

Five steady models serve first; then 3,000 predictions arrive, each of its own new model
(the probe of the security review sent 50,000 in a minute). The worker runs with
``max_models`` 20 per join partition. Expected, computed here from the rule "each
partition admits the first 20 distinct models it reads, in offset order":

* every refused prediction is in the DLQ as ``model_limit`` (the exact count), and every
  admitted one joins its label;
* the steady models reach their detectors in full;
* one ``model_limit`` alert for the whole flood;
* Redis holds keys for the admitted models only, and each per-model key expires.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from helpers.pipeline import decode_alerts, isolated, wait_processed
from helpers.third_party import Message, produce, producer

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

PARTITIONS = 2
LIMIT = 20
STEADY = [f"steady-{i}" for i in range(5)]
FLOOD = 3_000


@pytest.mark.separate  # 20-40 s: in .ci/run's own step, to keep the suite under 10 min
def test_a_flood_of_new_model_ids_is_capped_counted_and_alerted_once(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    iso = isolated(kafka_bootstrap, redis_url, tmp_path, partitions=PARTITIONS)
    iso.create_inputs()
    t = iso.topics
    base = (int(time.time() * 1000) - 3_600_000) // 1000 * 1000
    preds: list[tuple[str, str, int, int]] = []  # (pid, model, ts, partition)
    for i in range(400):
        preds.append((f"s-{i}", STEADY[i % len(STEADY)], base + i * 100, i % PARTITIONS))
    for i in range(FLOOD):
        ts = base + 40_000 + i * 10
        preds.append((f"f-{i}", f"flood-{i:05d}", ts, i % PARTITIONS))
    admitted: dict[int, list[str]] = {p: [] for p in range(PARTITIONS)}
    refused = 0
    pairs: dict[str, int] = {}
    for _pid, model, _ts, p in preds:  # the rule, in each partition's offset order
        if model in admitted[p] or len(admitted[p]) < LIMIT:
            if model not in admitted[p]:
                admitted[p].append(model)
            pairs[model] = pairs.get(model, 0) + 1
        else:
            refused += 1
    assert refused > FLOOD - 2 * LIMIT  # the scenario really floods

    def message(topic: str, event: dict[str, object], ts: int, p: int) -> Message:
        return Message(topic, None, orjson.dumps(event), ts, partition=p)

    messages = [
        message(t["predictions"], {"prediction_id": pid, "model_id": m, "timestamp": ts,
                                   "prediction": 1}, ts, p)
        for pid, m, ts, p in preds
    ] + [
        message(t["ground_truth"], {"prediction_id": pid, "label": i % 2, "timestamp": ts + 500},
                ts + 500, p)
        for i, (pid, _m, ts, p) in enumerate(preds)
    ]  # fmt: skip
    produce(producer(kafka_bootstrap), messages)
    worker = iso.worker(env={"WATCHKEEPER_MAX_MODELS": str(LIMIT)}).start()
    try:
        seen = wait_processed(iso, worker, pairs, dlq_total=refused, timeout=150)
        alerts = decode_alerts(iso.read("alerts"))
    finally:
        code = worker.stop()
    assert seen.why == "done", seen.short()
    assert code == 0
    assert seen.dlq.get("model_limit") == refused, seen.short()
    assert seen.stats.get("joined") == sum(pairs.values()), seen.short()
    assert all(seen.outcomes[m] == pairs[m] for m in STEADY), seen.outcomes
    limit_alerts = [a for a in alerts if a["kind"] == "model_limit"]
    assert len(limit_alerts) == 1, [a["kind"] for a in alerts]
    assert "model_limit" in limit_alerts[0]["message"]
    client = iso.redis()
    try:
        keys = [k.removeprefix(iso.prefix) for k in client.scan_iter(f"{iso.prefix}model:*")]
        known = {m for ms in admitted.values() for m in ms}
        assert {k.removeprefix("model:") for k in keys} <= known
        assert all(client.pttl(f"{iso.prefix}{k}") > 0 for k in keys)
        dead = list(iso.read("dlq"))
        reasons = [orjson.loads(r.value)["reason"] for r in dead if r.value]
        assert reasons.count("model_limit") == refused
    finally:
        client.close()
