"""The `replication:` section: how the HTTP workers follow the event-triggered policies
([replication.md](replication.md#triggers))."""

from pydantic import Field

from dockyard.config.base import NonNegativeDuration, Section, doc
from dockyard.config.durations import Duration


class ReplicationSettings(Section):
    """Replication to and from other registries ([replication.md](replication.md)); the policies
    themselves live in the database."""

    event_policies_ttl: NonNegativeDuration = Field(
        default=Duration("5s"),
        description="How long each HTTP worker remembers the event-triggered policies: a new or changed "
        "event policy applies to pushes within this long. A push of a tag with no event policy costs a "
        "look at the remembered list; `0s` reads the policies at every tag push.",
        json_schema_extra=doc("duration"),
    )
