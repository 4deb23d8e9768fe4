"""The Redis key layout: one hash tag (one Cluster slot) per (channel, user), and no two ids share a key."""

from __future__ import annotations

import binascii

from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from gateway.core.schema import ConversationKey
from gateway.core.store.keys import KeyBuilder, escape

KEYS = KeyBuilder("gw")
# Ids built mostly from the characters that could break a tag or a separator.
ids = st.text(alphabet=st.sampled_from(":{}% abc%3A%7B%7D%25%20é🎉\n"), max_size=12) | st.text(max_size=12)
conversations = st.builds(ConversationKey, ids, ids, ids)


def hash_tag(key: str) -> str:
    """The part of ``key`` Redis Cluster hashes (the rule from the cluster spec, written out)."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def conversation_keys(key: ConversationKey, message_id: str) -> list[str]:
    return [KEYS.session(key), KEYS.user(key.channel, key.user), KEYS.processed(key, message_id)]


@given(conversations, ids)
def test_a_conversation_and_its_user_share_one_tag_and_slot(key: ConversationKey, message_id: str) -> None:
    expected_tag = escape(key.channel) + ":" + escape(key.user)
    for name in conversation_keys(key, message_id):
        assert hash_tag(name) == expected_tag
        assert key_slot(name.encode()) == binascii.crc_hqx(expected_tag.encode(), 0) % 16384


@given(conversations, ids, conversations, ids)
def test_distinct_ids_make_distinct_keys(
    one: ConversationKey, one_message: str, other: ConversationKey, other_message: str
) -> None:
    assert (KEYS.session(one) == KEYS.session(other)) == (one == other)
    same_user = (one.channel, one.user) == (other.channel, other.user)
    assert (KEYS.user(one.channel, one.user) == KEYS.user(other.channel, other.user)) == same_user
    same_record = same_user and one_message == other_message
    assert (KEYS.processed(one, one_message) == KEYS.processed(other, other_message)) == same_record
    # No key of one kind is ever a key of another kind.
    assert KEYS.seen(other.channel, other_message) not in conversation_keys(one, one_message)
    assert len(set(conversation_keys(one, one_message))) == 3


@given(ids, ids, ids, ids)
def test_seen_markers_are_distinct_per_namespace_and_item(
    namespace: str, item: str, other_namespace: str, other_item: str
) -> None:
    same = (namespace, item) == (other_namespace, other_item)
    assert (KEYS.seen(namespace, item) == KEYS.seen(other_namespace, other_item)) == same
    assert (KEYS.lease(namespace, item) == KEYS.lease(other_namespace, other_item)) == same
    assert KEYS.lease(namespace, item) != KEYS.seen(other_namespace, other_item)


def test_separators_in_ids_are_escaped() -> None:
    key = ConversationKey("tele:gram", "chat {1}", "user}:%")
    assert KEYS.session(key) == "gw:{tele%3Agram:user%7D%3A%25}:session:chat%20%7B1%7D"
    assert KEYS.user("a{b", "c") == "gw:{a%7Bb:c}:user"
    assert KEYS.processed(key, "m:1") == "gw:{tele%3Agram:user%7D%3A%25}:done:m%3A1"
    assert hash_tag(KEYS.session(key)) == "tele%3Agram:user%7D%3A%25"


def test_known_collisions_of_naive_joining_are_kept_apart() -> None:
    assert KEYS.user("a:b", "c") != KEYS.user("a", "b:c")
    assert KEYS.session(ConversationKey("a", "b", "c}x")) != KEYS.session(ConversationKey("a", "b", "c"))
    assert KEYS.user("a", "%3A") != KEYS.user("a", ":")
    assert KEYS.seen("ns:a", "b") != KEYS.seen("ns", "a:b")


@given(ids, ids)
def test_markers_and_leases_never_name_their_item(namespace: str, item: str) -> None:
    """A reply id holds a web chat user's id: the marker's name must not, so an erase leaves none behind."""
    for name in (KEYS.seen(namespace, "webchat:" + item + "-user"), KEYS.lease(namespace, item + "-user")):
        assert "-user" not in name and len(name.rsplit(":", 1)[1]) == 32
    assert KEYS.legacy_seen(namespace, item) == f"gw:seen:{escape(namespace)}:{escape(item)}"


@given(ids, ids, ids, ids)
def test_a_users_own_keys_split_back_into_their_parts(channel: str, user: str, chat: str, kind: str) -> None:
    key = ConversationKey(channel, chat, user)
    assert KEYS.user_key_parts(channel, user, KEYS.session(key)) == ["session", chat]
    assert KEYS.user_key_parts(channel, user, KEYS.processed(key, chat)) == ["done", chat]
    if kind:
        assert KEYS.user_key_parts(channel, user, KEYS.record(key, kind)) == ["rec", kind, chat]
    assert KEYS.user_key_parts(channel, user + "x", KEYS.session(key)) is None


@given(ids, st.integers(0, 15))
def test_a_shard_of_the_user_index_is_one_slot_that_names_no_user(channel: str, shard: int) -> None:
    parts = [KEYS.user_index(channel, shard, part) for part in ("all", "seen", "route")]
    assert {hash_tag(name) for name in parts} == {f"users:{escape(channel)}:{shard}"}
    assert len(set(parts)) == 3
    assert hash_tag(KEYS.broadcast("b-1")) == "broadcast:b-1"
