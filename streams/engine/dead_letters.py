"""Dead letters as data: what the engine refused or could not process, and from where.

The engine returns them; the worker encodes them (:mod:`streams.contract.dead_letters`)
into the DLQ, and replay counts them. Nothing here raises on bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.contract.dead_letters import (
    MODEL_LIMIT,
    DeadLetterSource,
    dead_letter,
    dead_letter_event,
)
from streams.contract.events import Prediction, Rejected
from streams.engine.join import Unscorable

__all__ = ["DeadLetter", "Source"]

Source = DeadLetterSource
"""Where a record was read (the contract's type, which the envelope is built from)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One DLQ record to be: a ``reason`` from the contract, a sentence, and context."""

    reason: str
    detail: str
    source: Source | None
    index: int | None = None
    original: bytes | None = None
    original_size: int | None = None
    fields: dict[str, Any] | None = None

    @classmethod
    def rejected(cls, r: Rejected, source: Source) -> DeadLetter:
        return cls(r.reason, r.detail, source, r.index, r.original, r.original_size)

    @classmethod
    def unscorable(cls, u: Unscorable) -> DeadLetter:
        return cls(
            "unscorable",
            u.detail,
            None,
            fields={
                "prediction_id": u.prediction_id,
                "model_id": u.model_id,
                "prediction": u.prediction,
                "label": u.label,
            },
        )

    @classmethod
    def model_limit(cls, p: Prediction, source: Source, limit: int) -> DeadLetter:
        return cls(
            MODEL_LIMIT,
            f"model {p.model_id!r} is beyond the cap of {limit} models per partition "
            "(max_models); its predictions are not joined",
            source,
            fields={
                "prediction_id": p.prediction_id,
                "model_id": p.model_id,
                "timestamp_ms": p.timestamp_ms,
            },
        )

    @classmethod
    def processing_error(
        cls, exc: BaseException, source: Source | None, original: bytes | None
    ) -> DeadLetter:
        return cls(
            "processing_error",
            f"{type(exc).__name__}: {exc}",
            source,
            original=original,
            fields={"error_type": type(exc).__name__},
        )

    def encode(self) -> bytes:
        """The DLQ envelope (always under 1 MB, see :mod:`streams.contract.dead_letters`)."""
        source = self.source
        if self.fields is None and source is not None:
            rejected = Rejected(
                self.reason, self.detail, self.index, self.original or b"", self.original_size
            )
            return dead_letter(
                rejected,
                topic=source.topic,
                partition=source.partition,
                offset=source.offset,
                key=source.key,
            )
        return dead_letter_event(
            self.reason, self.detail, fields=self.fields, original=self.original, source=source
        )
