"""Exceptions raised by Watchkeeper's edges.

    WatchkeeperError
     ├── ConfigError          settings or detector configuration that cannot work
     ├── TopologyError        topics missing, or not co-partitioned for the join
     └── EmbeddedError        the embedded broker or Redis could not be started

Bad *events* are never raised: they travel as data to the dead-letter topic.
"""

from __future__ import annotations

__all__ = ["ConfigError", "EmbeddedError", "TopologyError", "WatchkeeperError"]


class WatchkeeperError(Exception):
    """Root of every error the CLI turns into a message and a non-zero exit."""


class ConfigError(WatchkeeperError):
    """Settings or detector configuration that cannot work."""


class TopologyError(WatchkeeperError):
    """Topics that are missing or not co-partitioned as the join requires."""


class EmbeddedError(WatchkeeperError):
    """The embedded broker or Redis server could not be started."""
