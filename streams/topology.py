"""Creates the topics the pipeline needs and checks that the join inputs are co-partitioned.

The join keeps its state in a table whose changelog partition is the source partition,
so ``predictions``, ``ground-truth`` and the re-key topics must have the same partition
count. Existing topics are respected; a mismatch is an error with the numbers in it.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from streams.errors import TopologyError
from streams.settings import Settings

__all__ = ["ensure_topics", "ensure_topics_named", "join_topic_names", "partition_count"]


def join_topic_names(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.predictions, t.ground_truth, f"{t.rekey}-predictions", f"{t.rekey}-ground-truth"]


async def _admin(settings: Settings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
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
        wanted = [*join_topic_names(settings), t.outcomes, t.alerts, t.dlq]
        missing = [n for n in wanted if n not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(n, partitions, settings.replication_factor) for n in missing]
            )
        for name in [*join_topic_names(settings)[2:], t.outcomes]:
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
