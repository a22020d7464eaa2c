"""Exceptions raised by Watchkeeper's edges.

    WatchkeeperError
     ├── ConfigError          settings or detector configuration that cannot work
     │    └── InvalidOwner    an owner entry (CLI flags or owners file) that cannot be registered
     ├── TopologyError        topics missing, or not co-partitioned for the join
     └── EmbeddedError        the embedded broker or Redis could not be started

Bad *events* are never raised: they travel as data to the dead-letter topic.
"""

from __future__ import annotations

__all__ = ["ConfigError", "EmbeddedError", "InvalidOwner", "TopologyError", "WatchkeeperError"]


class WatchkeeperError(Exception):
    """Root of every error the CLI turns into a message and a non-zero exit."""


class ConfigError(WatchkeeperError):
    """Settings or detector configuration that cannot work."""


class InvalidOwner(ConfigError, ValueError):
    """Owner input that cannot be registered.

    Also a ``ValueError`` because it is raised while validating values. ``problems`` holds
    every ``(model_id, field, reason)`` found (model_id None when not about one model), so
    a file with several bad entries is reported at once, not one fix-and-rerun at a time.
    """

    def __init__(
        self, message: str, problems: tuple[tuple[str | None, str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.problems = problems


class TopologyError(WatchkeeperError):
    """Topics that are missing or not co-partitioned as the join requires."""


class EmbeddedError(WatchkeeperError):
    """The embedded broker or Redis server could not be started."""
