"""What the engine needs to know of the settings, in one small value (no pydantic here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["InputRules"]


@dataclass(frozen=True)
class InputRules:
    """Limits applied to every input event, live and in replay alike."""

    lag_ms: int = 300_000
    max_bytes: int = 1_048_576
    max_skew_ms: int = 86_400_000
    min_timestamp_ms: int = 946_684_800_000  # 2000-01-01T00:00:00Z
    max_models: int = 10_000  # per join partition (streams.engine.admission)
    model_retention_ms: int = 30 * 86_400_000  # a model unseen this long gives its place up
    label_free: bool = True  # send served predictions to the label-free signals

    @property
    def parse_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the contract's parsers."""
        return {
            "max_bytes": self.max_bytes,
            "max_skew_ms": self.max_skew_ms,
            "min_timestamp_ms": self.min_timestamp_ms,
        }

    @classmethod
    def from_settings(cls, settings: Any) -> InputRules:
        """From :class:`streams.settings.Settings` (duck-typed: the engine imports no
        settings library)."""
        return cls(
            lag_ms=settings.reorder_lag_ms,
            max_bytes=settings.max_message_bytes,
            max_skew_ms=settings.max_clock_skew_ms,
            min_timestamp_ms=settings.min_event_time_ms,
            max_models=settings.max_models,
            model_retention_ms=settings.model_retention_ms,
            label_free=getattr(settings, "label_free", True),
        )
