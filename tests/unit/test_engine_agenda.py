"""The detect step remembers when each model next has something due (a silence, a label
window) with one entry per model, however many batches serve it."""

from __future__ import annotations

from detectors.config import DetectorSettings
from streams.contract.internal import JoinedOutcomes, JoinMark, Seen
from streams.engine.detect_step import DetectStep, OutcomesRecord

T0 = 1_700_000_000_000
MODELS = 10


def test_a_model_served_every_batch_keeps_one_entry_and_its_silence_is_still_found() -> None:
    step = DetectStep(0, 1, tracks={}, meta={}, detectors=DetectorSettings(), lag_ms=1000)
    offset = 0
    largest = 0
    for b in range(400):
        records = []
        for m in range(MODELS):
            if m == 0 and b >= 300:
                continue  # model-0 stops serving after batch 300
            seen = [
                Seen(f"m{m}-{b}-{i}", f"model-{m}", T0 + b * 10_000 + i * 100, 1, 0.9, "1")
                for i in range(100)
            ]
            records.append(OutcomesRecord("o", offset, JoinedOutcomes(0, [], {"p": b}, seen)))
            offset += 1
        mark = JoinMark(0, b + 1, T0 + b * 10_000, {"p": b}, T0 + b * 10_000)
        records.append(OutcomesRecord("o", offset, mark))
        offset += 1
        out = step.process(records)
        largest = max(largest, len(step._due_p.heap))
        silent = [f for f in out.signals if f.signal.kind == "model_silent"]
        if silent:
            assert b > 300 and {f.model_id for f in silent} == {"model-0"}
            break
    else:
        raise AssertionError("model-0 stopped serving and was never found silent")
    assert largest <= 2 * MODELS, largest
