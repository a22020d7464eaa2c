"""Creates the topics the pipeline needs and checks that the join inputs are co-partitioned.

The join keeps its state in a changelog whose partition is the source partition, so
``predictions``, ``ground-truth``, the re-key topics and the two changelogs must have the
same partition count. Existing topics are respected; a mismatch is an error with the
numbers in it. Changelogs are compacted: only each key's last value is needed.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from streams.connections import aiokafka_kwargs, check_broker
from streams.errors import TopologyError
from streams.settings import Settings

__all__ = [
    "changelog_topic_names",
    "ensure_topics",
    "ensure_topics_named",
    "join_topic_names",
    "partition_count",
]

COMPACTED = {"cleanup.policy": "compact"}


def join_topic_names(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.predictions, t.ground_truth, f"{t.rekey}-predictions", f"{t.rekey}-ground-truth"]


def changelog_topic_names(settings: Settings) -> tuple[str, str]:
    """The join's and the detectors' state changelogs (named as Faust named its tables')."""
    return (
        f"{settings.app_id}-join-state-changelog",
        f"{settings.app_id}-detector-state-changelog",
    )


async def _admin(settings: Settings) -> AIOKafkaAdminClient:
    await check_broker(settings.bootstrap_servers, settings.kafka)  # seconds, not 40 s
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings.bootstrap_servers, settings.kafka))
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        raise TopologyError(f"cannot reach the broker at {settings.broker}: {exc}") from exc
    return admin


async def ensure_topics_named(settings: Settings, names: list[str]) -> None:
    """Create those of ``names`` that are missing (processes outside the join, such as
    the notifier, need only their own topics)."""
    admin = await _admin(settings)
    try:
        missing = [n for n in names if n not in set(await admin.list_topics())]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(n, settings.partitions, settings.replication_factor) for n in missing]
                )
            except TopicAlreadyExistsError:  # another replica was first
                pass
    finally:
        await admin.close()


async def ensure_topics(settings: Settings) -> int:
    """Create missing topics; return the partition count the join runs with."""
    t = settings.topics
    admin = await _admin(settings)
    try:
        existing = set(await admin.list_topics())
        counts: dict[str, int] = {}
        described = [n for n in (t.predictions, t.ground_truth) if n in existing]
        if described:
            for info in await admin.describe_topics(described):
                counts[info["topic"]] = len(info["partitions"])
        if len(set(counts.values())) > 1:
            listing = ", ".join(f"{name} has {n}" for name, n in sorted(counts.items()))
            raise TopologyError(
                f"the join needs co-partitioned inputs but {listing} partitions; "
                "give both topics the same partition count"
            )
        partitions = next(iter(counts.values()), settings.partitions)
        changelogs = changelog_topic_names(settings)
        wanted = [*join_topic_names(settings), t.outcomes, t.alerts, t.dlq, *changelogs]
        missing = [n for n in wanted if n not in existing]
        for name in missing:  # one at a time: workers of a group start together
            config = COMPACTED if name in changelogs else None
            try:
                await admin.create_topics(
                    [NewTopic(name, partitions, settings.replication_factor, topic_configs=config)]
                )
            except TopicAlreadyExistsError:  # another worker of the group was first
                pass
        for name in [*join_topic_names(settings)[2:], t.outcomes, *changelogs]:
            if name in existing:
                (info,) = await admin.describe_topics([name])
                if len(info["partitions"]) != partitions:
                    raise TopologyError(
                        f"{name} has {len(info['partitions'])} partitions, the join inputs "
                        f"have {partitions}; delete it or give it {partitions}"
                    )
        return partitions
    finally:
        await admin.close()


async def partition_count(settings: Settings, name: str) -> int:
    """How many partitions topic ``name`` has (the DLQ may have any number)."""
    admin = await _admin(settings)
    try:
        (info,) = await admin.describe_topics([name])
        return max(1, len(info["partitions"]))
    finally:
        await admin.close()
