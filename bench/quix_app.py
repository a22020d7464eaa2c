"""The quix-streams peer: the worker's job written the way a quix-streams user would.

    python -m bench.quix_app BROKER GROUP PREDICTIONS_TOPIC GROUND_TRUTH_TOPIC EXPECTED \\
        STATE_DIR OUT.json

Reads both input topics (one JSON event per message, or JSON arrays of events, expanded),
joins each prediction with its label in quix's state store, and feeds the 0/1 error to a
river ADWIN and Page-Hinkley per model. Once it has joined EXPECTED pairs it writes OUT.json
({"pairs", "first", "first_pair", "last", "detections", "out_of_order", "errors"}; times are
``time.perf_counter()`` seconds in this process) and stops; the caller also stops it by its
pid.

How the join is keyed: the two topics are concatenated into one StreamingDataFrame (quix
then reads them with partition time alignment, and both share one state store per
partition), and a stateful ``apply`` keeps whichever side arrives first under
``state.set(prediction_id, event)``. quix scopes a callback's State by the Kafka message
key, and inside that scope any key may be used: one-event messages are keyed by
prediction_id on both topics, and the producer helper's arrays carry no key on both
topics, so a prediction and its label always meet in the same scope, on the same
partition (both forms pick the partition by murmur2(prediction_id)). No ``group_by``, so no
repartition topic. (A prediction sent as a single message and its label inside an array
would not meet: their scopes differ. The bench never mixes forms on one run.)

The detectors live in a plain dict per model in this process, not in quix state: river's
detectors are Python objects (quix state stores JSON, so each update would mean pickling
both into the store and its changelog), and a model's pairs come from every partition
while quix state belongs to one partition and one message key; putting them in state
would need a ``group_by`` by model_id, that is a repartition through an internal topic.
The price is that they are lost on a restart or a rebalance, unlike the worker's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from quixstreams import Application, State
from river import drift


def main() -> None:
    broker, group, predictions_topic, ground_truth_topic, expected, state_dir, out = sys.argv[1:8]
    want = int(expected)
    app = Application(
        broker_address=broker,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
    )
    predictions = app.dataframe(app.topic(predictions_topic, value_deserializer="json"))
    labels = app.dataframe(app.topic(ground_truth_topic, value_deserializer="json"))

    seen: dict[str, Any] = {
        "pairs": 0,
        "first": 0.0,
        "first_pair": 0.0,
        "last": 0.0,
        "detections": 0,
        "out_of_order": 0,
        "errors": 0,
    }
    detectors: dict[str, tuple[drift.ADWIN, drift.PageHinkley]] = {}
    last_ts: dict[str, int] = {}

    def events(value: Any) -> list[dict[str, Any]]:
        if not seen["first"]:
            seen["first"] = time.perf_counter()
        return value if isinstance(value, list) else [value]

    def join(event: dict[str, Any], state: State) -> dict[str, Any] | None:
        pid = event["prediction_id"]
        other = state.get(pid)
        if other is None:
            state.set(pid, event)
            return None
        state.delete(pid)
        prediction, label = (event, other) if "prediction" in event else (other, event)
        return {
            "prediction_id": pid,
            "model_id": prediction["model_id"],
            "timestamp": prediction["timestamp"],
            "error": int(prediction["prediction"] != label["label"]),
        }

    def detect(pair: dict[str, Any]) -> None:
        model = pair["model_id"]
        pair_detectors = detectors.get(model)
        if pair_detectors is None:
            pair_detectors = detectors[model] = (drift.ADWIN(), drift.PageHinkley())
        ts = pair["timestamp"]
        if ts < last_ts.get(model, ts):
            seen["out_of_order"] += 1
        last_ts[model] = ts
        seen["errors"] += pair["error"]
        for detector in pair_detectors:
            detector.update(pair["error"])
            if detector.drift_detected:
                seen["detections"] += 1
        seen["pairs"] += 1
        if seen["pairs"] == 1:
            seen["first_pair"] = time.perf_counter()
        if seen["pairs"] == want:
            seen["last"] = time.perf_counter()
            tmp = Path(out + ".tmp")
            tmp.write_text(json.dumps(seen))
            tmp.replace(out)
            app.stop()

    sdf = predictions.concat(labels)
    sdf = sdf.apply(events, expand=True)
    sdf = sdf.apply(join, stateful=True)
    sdf = sdf.filter(lambda pair: pair is not None)
    sdf.update(detect)
    app.run()


if __name__ == "__main__":
    main()
