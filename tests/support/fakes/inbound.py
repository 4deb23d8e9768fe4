"""Valid (signed) inbound webhook requests for each channel, for tests and load generators.

Each builder returns a :class:`SignedRequest` (path, body, headers) that the gateway accepts as if the
channel had sent it; the signatures are computed with the channels' own libraries (slack-sdk's
``SignatureVerifier``, twilio's ``RequestValidator``). The payload makers build the smallest payloads the
real APIs send (the shapes of the documentation's examples, with the given ids).

    request = slack_event_request(slack_message_event("Ev1", "D1", "U1", "hi"), SIGNING_SECRET)
    await client.post(request.path, data=request.body, headers=request.headers)
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from multidict import MultiDict
from slack_sdk.signature import SignatureVerifier
from twilio.request_validator import RequestValidator


@dataclass(frozen=True)
class SignedRequest:
    path: str
    body: bytes
    headers: dict[str, str]


# Telegram


def telegram_update_request(
    update: Mapping[str, Any], secret: str | None, *, path: str = "/webhooks/telegram"
) -> SignedRequest:
    """An update as Telegram posts it: JSON, with the secret token header when a secret is set."""
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
    return SignedRequest(path, json.dumps(update).encode(), headers)


def telegram_user(user_id: int, first_name: str = "Test") -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": first_name}


def telegram_text_update(
    update_id: int, chat_id: int, text: str, *, user_id: int | None = None
) -> dict[str, Any]:
    user = user_id if user_id is not None else chat_id
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": telegram_user(user),
            "text": text,
        },
    }


def telegram_callback_update(
    update_id: int,
    chat_id: int,
    data: str,
    *,
    title: str | None = None,
    user_id: int | None = None,
    message_id: int = 1,
    bot_id: int = 123456789,
) -> dict[str, Any]:
    """A button press on a message the bot sent (whose keyboard holds the button ``title``/``data``)."""
    user = user_id if user_id is not None else chat_id
    message: dict[str, Any] = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
        "from": {"id": bot_id, "is_bot": True, "first_name": "Bot"},
        "text": "Choose",
    }
    if title is not None:
        message["reply_markup"] = {"inline_keyboard": [[{"text": title, "callback_data": data}]]}
    return {
        "update_id": update_id,
        "callback_query": {
            "id": f"cq{update_id}",
            "from": telegram_user(user),
            "chat_instance": f"ci{chat_id}",
            "message": message,
            "data": data,
        },
    }


# Slack


def slack_request(
    body: bytes,
    signing_secret: str,
    *,
    path: str,
    timestamp: int | None = None,
    content_type: str = "application/json",
    retry_num: int | None = None,
) -> SignedRequest:
    """A body signed as Slack signs it (v0 HMAC-SHA256 over ``v0:<timestamp>:<body>``)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=ts, body=body)
    assert signature is not None
    headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return SignedRequest(path, body, headers)


def slack_event_request(
    payload: Mapping[str, Any],
    signing_secret: str,
    *,
    timestamp: int | None = None,
    retry_num: int | None = None,
) -> SignedRequest:
    return slack_request(
        json.dumps(payload).encode(),
        signing_secret,
        path="/webhooks/slack/events",
        timestamp=timestamp,
        retry_num=retry_num,
    )


def slack_interaction_request(
    payload: Mapping[str, Any], signing_secret: str, *, timestamp: int | None = None
) -> SignedRequest:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return slack_request(
        body,
        signing_secret,
        path="/webhooks/slack/interactions",
        timestamp=timestamp,
        content_type="application/x-www-form-urlencoded",
    )


def slack_event_callback(
    event_id: str, event: Mapping[str, Any], *, team: str = "T123ABC456"
) -> dict[str, Any]:
    return {
        "token": "XXYYZZ",
        "team_id": team,
        "api_app_id": "A123ABC456",
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
    }


def slack_message_event(
    event_id: str,
    channel: str,
    user: str,
    text: str,
    *,
    thread_ts: str | None = None,
    ts: str | None = None,
    channel_type: str = "im",
) -> dict[str, Any]:
    """A direct message (``message.im``; ``channel_type="channel"``: ``message.channels``) wrapped in its
    event_callback."""
    stamp = ts or f"{time.time():.6f}"
    event: dict[str, Any] = {
        "type": "message",
        "channel": channel,
        "user": user,
        "text": text,
        "ts": stamp,
        "event_ts": stamp,
        "channel_type": channel_type,
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    return slack_event_callback(event_id, event)


def slack_block_action(
    trigger_id: str,
    channel: str,
    user: str,
    value: str,
    *,
    title: str = "Button",
    message_ts: str = "1548261231.000200",
    thread_ts: str | None = None,
) -> dict[str, Any]:
    """A ``block_actions`` click on a button of a message in ``channel``."""
    message: dict[str, Any] = {"type": "message", "text": "Choose", "user": "U0FAKEBOT", "ts": message_ts}
    container: dict[str, Any] = {"type": "message", "message_ts": message_ts, "channel_id": channel}
    if thread_ts is not None:
        message["thread_ts"] = thread_ts
        container["thread_ts"] = thread_ts
    return {
        "type": "block_actions",
        "team": {"id": "T9TK3CUKW", "domain": "example"},
        "user": {"id": user, "username": "tester", "team_id": "T9TK3CUKW"},
        "api_app_id": "AABA1ABCD",
        "container": container,
        "trigger_id": trigger_id,
        "channel": {"id": channel, "name": "direct"},
        "message": message,
        "response_url": "https://hooks.slack.com/actions/AABA1ABCD/1/x",
        "actions": [
            {
                "action_id": "button-0",
                "block_id": "b0",
                "text": {"type": "plain_text", "text": title, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


# Twilio


def twilio_request(
    params: Sequence[Sequence[str]] | Mapping[str, str],
    auth_token: str,
    public_url: str,
    *,
    path: str = "/webhooks/sms",
) -> SignedRequest:
    """A form post signed as Twilio signs it: over ``public_url`` + ``path`` and the sorted parameters."""
    items = params.items() if isinstance(params, Mapping) else params
    pairs = [(str(name), str(value)) for name, value in items]
    url = public_url.rstrip("/") + path
    signature = RequestValidator(auth_token).compute_signature(url, MultiDict(pairs))
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
    return SignedRequest(path, urlencode(pairs).encode(), headers)


def twilio_sms_params(
    message_sid: str,
    from_number: str,
    body: str,
    *,
    to_number: str = "+15005550006",
    account_sid: str = "AC" + "0123456789abcdef" * 2,
    media: Sequence[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    """The fields Twilio posts for an incoming SMS (MMS when ``media`` lists (url, content type))."""
    fields = [
        ("ToCountry", "US"),
        ("ToState", "CA"),
        ("SmsMessageSid", message_sid),
        ("NumMedia", str(len(media))),
        ("ToCity", ""),
        ("FromZip", ""),
        ("SmsSid", message_sid),
        ("FromState", "CA"),
        ("SmsStatus", "received"),
        ("FromCity", ""),
        ("Body", body),
        ("FromCountry", "US"),
        ("To", to_number),
        ("ToZip", ""),
        ("NumSegments", "1"),
        ("MessageSid", message_sid),
        ("AccountSid", account_sid),
        ("From", from_number),
        ("ApiVersion", "2010-04-01"),
    ]
    for i, (url, mime) in enumerate(media):
        fields += [(f"MediaContentType{i}", mime), (f"MediaUrl{i}", url)]
    return fields
