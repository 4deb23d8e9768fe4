"""Redis key names, built in one place.

Every key of one user on one channel carries the same hash tag ``{channel:user}``, so a conversation's
session, the user's attributes and the processed-message records share one Redis Cluster slot and one
Lua script may touch them all. Parts are percent-escaped, so an id holding ``:``, ``{`` or ``}`` can
neither break the tag nor collide with another conversation's keys.

Keys outside a user's tag never name a user, so that erasing a user's keys leaves nothing behind:
duplicate markers and leases carry a digest of their item (a web chat or broadcast id holds a user id),
and a channel's user index is sharded under tags of its own (``{users:channel:shard}``), whose names hold
only the channel and the shard (the user ids are members inside, removed by an erase).
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from urllib.parse import unquote

from gateway.core.schema import ConversationKey

_ESCAPES = str.maketrans({"%": "%25", ":": "%3A", "{": "%7B", "}": "%7D", " ": "%20"})

USER_INDEX_SHARDS = 16  # part of the key layout: changing it needs the index rebuilt


def escape(part: str) -> str:
    return part.translate(_ESCAPES)


def unescape(part: str) -> str:
    """The part :func:`escape` was given (it only ever writes ``%25``, ``%3A``, ``%7B``, ``%7D``, ``%20``)."""
    return unquote(part)


def digest(item: str) -> str:
    """128 bits of BLAKE2b of ``item`` in hex: a stand-in of fixed length that does not name its item."""
    return hashlib.blake2b(item.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def shard_of(user: str, shards: int = USER_INDEX_SHARDS) -> int:
    """The shard of a channel's user index that holds ``user`` (stable across processes)."""
    return zlib.crc32(user.encode("utf-8", "surrogatepass")) % shards


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
        """A duplicate-drop marker (a channel message id, a sent reply or email id); expires. The item is
        digested: a reply id such as ``webchat:<user>:<n>/r0`` would otherwise name its user."""
        return f"{self.prefix}:seen:{escape(namespace)}:{digest(item)}"

    def legacy_seen(self, namespace: str, item: str) -> str:
        """Where :meth:`seen` kept a marker before markers were digested (releases before 2026-12); still
        read and removed, so that an upgrade repeats nothing. Such keys expire within the dedup TTL."""
        return f"{self.prefix}:seen:{escape(namespace)}:{escape(item)}"

    def link(self, namespace: str, item: str) -> str:
        """A lookup from an outside id (a Slack thread) to ours; expires. The item is digested."""
        return f"{self.prefix}:link:{escape(namespace)}:{digest(item)}"

    def live_group(self, group: str) -> str:
        """A group of members, each until a time (a sorted set: member → end, in ms), such as the
        conversations handed over now; members are digests, never user ids."""
        return f"{self.prefix}:{{group:{escape(group)}}}:live"

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
        return f"{self.prefix}:lease:{escape(namespace)}:{digest(item)}"

    def user_index(self, channel: str, shard: int, part: str) -> str:
        """One shard of a channel's user index: ``all`` (a sorted set of user ids, all scored 0, walked in
        order by a broadcast), ``seen`` (user id → their last message, in ms, for retention) and ``route``
        (a hash: user id → where a broadcast reaches them). The three share the shard's hash tag."""
        return f"{self.prefix}:{{users:{escape(channel)}:{shard}}}:{part}"

    def broadcast(self, broadcast_id: str) -> str:
        """A broadcast's definition, progress and runner (a hash, in a slot of its own)."""
        return f"{self.prefix}:{{broadcast:{escape(broadcast_id)}}}"

    def broadcasts_pending(self) -> str:
        """The ids of the broadcasts not finished yet (a set), which runners look at."""
        return f"{self.prefix}:broadcasts:pending"

    def user_key_parts(self, channel: str, user: str, key: str) -> list[str] | None:
        """A key of the user's own, split after its tag and unescaped: ``["session", chat]``,
        ``["rec", kind, chat]``, ``["done", message id]``; None for a key that is not under the tag."""
        head = f"{self.prefix}:{self.tag(channel, user)}:"
        if not key.startswith(head):
            return None
        return [unescape(part) for part in key[len(head) :].split(":")]
