"""What the roles share about support desks (STORIES.md, "Handing over to a person"): the names of the
handoff record, links and reply fields, and the signed conversation tokens.

A desk's replies go out as ordinary replies to the Slack channel (the desk's thread) or as email jobs
(the ticket); their meta names the conversation they are about (:data:`DESK_OF`), so a channel can thread
them. A person's answer comes back as an ``Inbound`` of kind ``staff`` (``handback`` for the hand-back
button) on the user's own conversation, so it is handled in order with the user's messages.

Tokens: what a support desk's reply address and "Hand back" button carry.

A token names one conversation and is signed with ``GATEWAY_SECRET_KEY`` (HMAC-SHA256), so that whoever
reads a ticket cannot make up a token for another conversation or change the one they hold. It is lower
case base32 (letters and digits 2-7), because mail systems may change the case of an address's local part:
``desk+<token>@bot.example.com`` still verifies after that.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from gateway.core.schema import ConversationKey

HANDOFF_RECORD = "handoff"  # the conversation record of a handed-over conversation (its kind)
HANDED_OVER = "handed-over"  # the store's live group of handed-over conversations (digests), for metrics

# Reply.meta keys of a post to a Slack desk: the conversation it is about (str of its ConversationKey),
# "root" (opens the thread; carries DESK_TOKEN) or "thread" (a reply in it), and the seconds to keep
# the thread's links.
DESK_OF, DESK_POST, DESK_TOKEN, DESK_TTL = "desk_of", "desk_post", "desk_token", "desk_ttl"
# Store link namespaces of Slack desk threads: "<channel id>:<thread ts>" -> token, and
# "<channel id>:<token>" -> thread ts.
THREAD_OF_TS, TS_OF_THREAD = "desk-thread", "desk-root"
HANDBACK_PREFIX = "handback:"  # the Hand back button's payload: "handback:<token>"

MAC_BYTES = 10  # 80 bits: forging one by guessing is out of reach
_PURPOSE = b"gateway desk token v1\x00"


class BadToken(ValueError):
    """A token that does not verify: made up, changed, cut, or signed with another key."""


def _mac(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), _PURPOSE + body, hashlib.sha256).digest()[:MAC_BYTES]


def sign(secret: str, key: ConversationKey) -> str:
    """The token of ``key``; the same key and secret always give the same token."""
    if not secret:
        raise ValueError("GATEWAY_SECRET_KEY is required to sign desk tokens")
    body = "\x1f".join((key.channel, key.chat, key.user)).encode()
    raw = body + _mac(secret, body)
    return base64.b32encode(raw).decode().rstrip("=").lower()


def verify(secret: str, token: str) -> ConversationKey:
    """The conversation ``token`` names; :class:`BadToken` unless it was signed with ``secret``."""
    if not secret:
        raise BadToken("no GATEWAY_SECRET_KEY is set: no token verifies")
    cleaned = token.strip().upper()
    try:
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (ValueError, TypeError):
        raise BadToken("not a token") from None
    if len(raw) <= MAC_BYTES:
        raise BadToken("too short to be a token")
    body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(secret, body)):
        raise BadToken("the signature does not match")
    try:
        channel, chat, user = body.decode().split("\x1f")
    except ValueError:
        raise BadToken("a signed token that names no conversation") from None
    return ConversationKey(channel, chat, user)


def reply_address(secret: str, key: ConversationKey, inbox_address: str) -> str:
    """``local+<token>@domain`` for the desk's address ``local@domain`` (GATEWAY_INBOX_ADDRESS)."""
    local, _, domain = inbox_address.rpartition("@")
    if not local or not domain:
        raise ValueError(f"not an email address: {inbox_address!r}")
    return f"{local}+{sign(secret, key)}@{domain}"


def token_of_address(address: str, inbox_address: str) -> str | None:
    """The token part of a reply address to the desk's ``local@domain``, None for any other address."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    desk_local, _, desk_domain = inbox_address.rpartition("@")
    if domain.lower() != desk_domain.lower():
        return None
    base, plus, token = local.partition("+")
    if not plus or base.lower() != desk_local.lower() or not token:
        return None
    return token
