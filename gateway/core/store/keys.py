"""Redis key names, built in one place.

Every key of one user on one channel carries the same hash tag ``{channel:user}``, so a conversation's
session, the user's attributes and the processed-message records share one Redis Cluster slot and one
Lua script may touch them all. Parts are percent-escaped, so an id holding ``:``, ``{`` or ``}`` can
neither break the tag nor collide with another conversation's keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.schema import ConversationKey

_ESCAPES = str.maketrans({"%": "%25", ":": "%3A", "{": "%7B", "}": "%7D", " ": "%20"})


def escape(part: str) -> str:
    return part.translate(_ESCAPES)


@dataclass(frozen=True, slots=True)
class KeyBuilder:
    prefix: str = "gw"

    def tag(self, channel: str, user: str) -> str:
        return "{" + escape(channel) + ":" + escape(user) + "}"

    def session(self, key: ConversationKey) -> str:
        """The conversation's session (JSON: story, waiting step, values); expires after the idle TTL."""
        return f"{self.prefix}:{self.tag(key.channel, key.user)}:session:{escape(key.chat)}"

    def user(self, channel: str, user: str) -> str:
        """The user's attributes (a hash); never expires."""
        return f"{self.prefix}:{self.tag(channel, user)}:user"

    def record(self, key: ConversationKey, kind: str) -> str:
        """A conversation record of one kind (pending timers, a handoff, ...); expires with its ttl."""
        return f"{self.prefix}:{self.tag(key.channel, key.user)}:rec:{escape(kind)}:{escape(key.chat)}"

    def user_keys(self, channel: str, user: str) -> str:
        """The index of the user's expiring keys (a sorted set: key name → when it expires, in ms), so the
        user's data is found without scanning the keyspace; it expires with the last of them."""
        return f"{self.prefix}:{self.tag(channel, user)}:keys"

    def opt_out(self, channel: str, user: str) -> str:
        """The user's refusal of every message (an SMS STOP), with when it was recorded; never expires."""
        return f"{self.prefix}:{self.tag(channel, user)}:optout"

    def processed(self, key: ConversationKey, message_id: str) -> str:
        """The record of an inbound message already committed, with its outputs; expires."""
        return f"{self.prefix}:{self.tag(key.channel, key.user)}:done:{escape(message_id)}"

    def seen(self, namespace: str, item: str) -> str:
        """A duplicate-drop marker (a channel message id, a sent reply or email id); expires."""
        return f"{self.prefix}:seen:{escape(namespace)}:{escape(item)}"

    def schedule(self, partition: int) -> str:
        """The index of one bus partition's timer schedule (a sorted set of buckets, see
        :mod:`gateway.core.schedule.buckets`); a hash tag of its own per partition, so the partitions
        spread over a cluster. Gone once the partition's timers have all fired."""
        return f"{self.prefix}:{{timers:{partition}}}:due"

    def schedule_bucket(self, partition: int, bucket: str) -> str:
        """One bucket of a partition's schedule: up to 120 timers, by due time."""
        return f"{self.prefix}:{{timers:{partition}}}:b:{bucket}"

    def timer_pollers(self) -> str:
        """Which process polls which partition's schedule (a hash: partition → lease); renewed, expires."""
        return f"{self.prefix}:{{timers}}:pollers"

    def lease(self, namespace: str, item: str) -> str:
        """Who holds the right to work on an item now (its value is the holder); expires."""
        return f"{self.prefix}:lease:{escape(namespace)}:{escape(item)}"
